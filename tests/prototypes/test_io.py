import json

import numpy as np
import pytest
import torch

from hpn import prototypes as protos


def test_save_load_round_trip_with_metadata(tmp_path):
    built = protos.build(5, 3, method="random", seed=7, class_names=list("abcde"))
    rep = protos.report(built.prototypes)
    path = built.save(tmp_path / "sub" / "p", with_report=rep)
    assert path.suffix == ".npy" and path.is_file()
    p, meta = protos.load(path)
    assert torch.equal(p, built.prototypes)
    assert meta["num_classes"] == 5 and meta["dims"] == 3
    assert meta["method"] == "random" and meta["seed"] == 7
    assert meta["class_names"] == list("abcde")
    assert meta["report"]["worst_cosine"] == pytest.approx(rep.worst_cosine)
    assert json.loads((tmp_path / "sub" / "p.json").read_text())["format"] == "hpn-prototypes"
    # no temporary files left behind by the atomic writes
    assert sorted(f.name for f in (tmp_path / "sub").iterdir()) == ["p.json", "p.npy"]


def test_bare_npy_loads_without_sidecar(tmp_path):
    np.save(tmp_path / "bare.npy", np.eye(3, dtype=np.float64))
    p, meta = protos.load(tmp_path / "bare.npy")
    assert p.dtype == torch.float32 and meta == {"num_classes": 3, "dims": 3}


def test_sidecar_mismatch_is_an_error(tmp_path):
    protos.save(tmp_path / "p.npy", torch.eye(4), method="orthoplex")
    np.save(tmp_path / "p.npy", np.eye(5, dtype=np.float32))
    with pytest.raises(ValueError, match="5 x 5 .* says 4 x 4"):
        protos.load(tmp_path / "p.npy")


def test_corrupt_and_missing_files_are_clear_errors(tmp_path):
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match="not a readable .npy"):
        protos.load(tmp_path / "junk.npy")
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        protos.load(tmp_path / "nope.npy")
    np.save(tmp_path / "vec.npy", np.ones(4, dtype=np.float32))
    with pytest.raises(ValueError, match="2-D float"):
        protos.load(tmp_path / "vec.npy")


def test_class_names_must_match_rows(tmp_path):
    with pytest.raises(ValueError, match="2 class names for 3"):
        protos.save(tmp_path / "p.npy", torch.eye(3), method="x", class_names=["a", "b"])
