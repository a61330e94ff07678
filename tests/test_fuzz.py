from pathlib import Path

import numpy as np
import pytest

from hpn import fuzz
from hpn import prototypes as protos


def test_every_reader_fails_cleanly_on_truncated_and_garbled_files():
    results = fuzz.fuzz(per_mutation=8, seed=0)
    assert {r.reader for r in results} == set(fuzz.TARGETS)
    for r in results:
        assert r.tried == 8 * len(fuzz.MUTATIONS)
        assert r.loaded + r.clean_errors + len(r.unexpected) == r.tried
        assert r.unexpected == [], r.reader
        assert r.clean_errors > 0  # the mutants really were broken


def test_an_unexpected_exception_is_counted_not_raised():
    def make(folder: Path) -> Path:
        path = folder / "f.bin"
        path.write_bytes(b"0123456789")
        return path

    def read(path: Path):
        data = path.read_bytes()
        if data != b"0123456789":
            return data[100]  # IndexError on every mutant that changed the file
        return data

    (result,) = fuzz.fuzz(per_mutation=3, targets={"toy": (make, read)})
    assert result.tried == 3 * len(fuzz.MUTATIONS)
    assert result.unexpected and all("IndexError" in u for u in result.unexpected)


def test_garbled_npy_header_is_a_value_error_naming_the_file(tmp_path):
    path = tmp_path / "p.npy"
    protos.save(path, protos.generate(4, 3, method="orthoplex"), method="orthoplex")
    data = bytearray(path.read_bytes())
    data[10:60] = b"{" * 50  # numpy's header is a Python literal; this one never closes
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"p\.npy is not a readable \.npy file"):
        protos.load(path)
    path.with_suffix(".json").write_text("[1, 2]")
    np.save(path, np.eye(4, 3, dtype=np.float32))
    with pytest.raises(ValueError, match="a JSON object was expected"):
        protos.load(path)
