"""The glyph caches under faults: two builders at once, a builder killed mid-write, a full
disk, a damaged cache file, a damaged font among the fonts."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL")
pytest.importorskip("fontTools")
pytest.importorskip("matplotlib")

from test_data_glyphs import folder_with, fonts, load  # noqa: F401 - the fixture

from hpn.data.glyphs import render

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork, SIGKILL and flock")

CHILD = """
import hashlib, json, sys, time
from pathlib import Path
{prelude}
from hpn.data.glyphs import load_glyphs
folder, cache, ready = sys.argv[1:4]
Path(ready).touch()
while not Path(ready + ".go").exists():
    time.sleep(0.005)
def load():
    return load_glyphs(characters="A-Z,a-z", num_classes=10, val_fonts=["STIXGeneral"],
                       test_fonts=["DejaVu Serif"], min_train_fonts=3, font_dirs=[folder],
                       cache_dir=cache, workers=1)
{body}
"""

REPORT = """
data = load()
print(json.dumps({"scan_hit": data.info["cache"]["scan_hit"],
                  "render_hit": data.info["render"]["cache_hit"],
                  "train": hashlib.sha256(data.train.inputs.numpy().tobytes()).hexdigest()}))
"""

DIE_WHILE_WRITING = """
import os, signal
import numpy as np
def dying(handle, **arrays):
    handle.write(b"PK" + bytes(4096))
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)
np.savez_compressed = dying
"""


FILE_SIZE_LIMIT = """
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
"""


def _start(
    folder: Path, cache: Path, ready: Path, prelude: str = "", body: str = REPORT
) -> subprocess.Popen:
    code = CHILD.format(prelude=prelude, body=body)
    return subprocess.Popen(
        [sys.executable, "-c", code, str(folder), str(cache), str(ready)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _go(ready: list[Path], children: list[subprocess.Popen]) -> None:
    """Wait until every child has imported everything, then let them all start at once."""
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready):
        assert all(c.poll() is None for c in children), [c.stderr.read() for c in children]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    for r in ready:
        Path(f"{r}.go").touch()


def _every_cache_file_is_whole(cache: Path) -> int:
    for path in cache.glob("*.npz"):
        fields = {"images", "ok"} if path.name.startswith("render") else render._SCAN_FIELDS
        assert render._load(path, fields) is not None, f"{path} read half-written"
    return len(list(cache.glob("*.npz")))


def test_two_processes_build_one_cache_once_and_never_read_half_a_file(tmp_path, fonts):  # noqa: F811
    cache = tmp_path / "cache"
    ready = [tmp_path / "ready0", tmp_path / "ready1"]
    children = [_start(fonts, cache, r) for r in ready]
    _go(ready, children)
    while any(c.poll() is None for c in children):  # read what appears while they build
        if cache.is_dir():
            _every_cache_file_is_whole(cache)
        time.sleep(0.005)
    outs = []
    for child in children:
        out, err = child.communicate()
        assert child.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert outs[0]["train"] == outs[1]["train"]
    # the lock makes the second builder wait and read what the first one wrote
    assert sorted(o["scan_hit"] for o in outs) == [False, True]
    assert sorted(o["render_hit"] for o in outs) == [False, True]
    assert _every_cache_file_is_whole(cache) == 2 and not list(cache.glob(".*.tmp"))


def test_a_builder_killed_while_writing_is_noticed_and_the_cache_rebuilt(tmp_path, fonts):  # noqa: F811
    cache, ready = tmp_path / "cache", tmp_path / "ready"
    child = _start(fonts, cache, ready, prelude=DIE_WHILE_WRITING)
    _go([ready], [child])
    child.communicate()
    assert child.returncode == -signal.SIGKILL
    (partial,) = cache.glob(".scan-*.npz.*.tmp")
    assert not list(cache.glob("*.npz"))
    with pytest.warns(UserWarning, match="left by a process killed while writing"):
        first = load(fonts, cache)
    assert not first.info["cache"]["scan_hit"] and not partial.exists()
    assert load(fonts, cache).info["cache"]["scan_hit"]


def test_a_damaged_cache_file_is_built_again(tmp_path, fonts):  # noqa: F811
    first = load(fonts, tmp_path)
    for path in tmp_path.glob("*.npz"):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    again = load(fonts, tmp_path)
    assert not again.info["cache"]["scan_hit"] and not again.info["render"]["cache_hit"]
    assert np.array_equal(first.train.inputs.numpy(), again.train.inputs.numpy())
    assert load(fonts, tmp_path).info["render"]["cache_hit"]


def test_a_full_disk_while_caching_is_one_line_and_leaves_no_file(tmp_path, fonts, full_disk):  # noqa: F811
    full_disk("render-*.npz")
    with pytest.raises(OSError, match=r"could not write .*render-.*\(No space left") as err:
        load(fonts, tmp_path)
    assert "\n" not in str(err.value)
    assert not list(tmp_path.glob("render-*")) and not list(tmp_path.glob(".*.tmp"))
    full_disk()
    assert not load(fonts, tmp_path).info["render"]["cache_hit"]  # the scan was kept
    assert load(fonts, tmp_path).info["cache"]["scan_hit"]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_font_is_skipped_with_a_warning_naming_it(tmp_path, fonts, damage):  # noqa: F811
    folder = folder_with(tmp_path, fonts)
    whole = (fonts / "cmss10.ttf").read_bytes()
    bad = folder / "broken.ttf"
    bad.write_bytes(b"\x00\x01\x00\x00 not a font" if damage == "garbage" else whole[:2000])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load(folder, tmp_path / "cache")
    named = [str(w.message) for w in caught if str(w.message).startswith(f"skipping {bad}")]
    assert len(named) == 1, [str(w.message) for w in caught]
    clean = load(fonts, tmp_path / "clean")
    assert data.class_names == clean.class_names
    assert data.info["fonts"]["files"] == clean.info["fonts"]["files"] + 1


def test_a_real_file_size_limit_while_caching_is_one_error_and_no_file(tmp_path, fonts):  # noqa: F811
    """The kernel refuses the cache write (EFBIG), as on a full disk: no monkeypatching."""
    cache = tmp_path / "cache"
    body = "try:\n    load()\nexcept OSError as err:\n    print(err)"
    ready = tmp_path / "ready"
    child = _start(fonts, cache, ready, prelude=FILE_SIZE_LIMIT, body=body)
    _go([ready], [child])
    out, err = child.communicate()
    assert child.returncode == 0, err
    assert re.fullmatch(r"\[Errno 27\] could not write \S+\.npz \(File too large\); .*\n", out), out
    assert not list(cache.glob(".*.tmp")) and not list(cache.glob("*.npz"))
    assert not load(fonts, cache).info["cache"]["scan_hit"]  # and the next run builds it
