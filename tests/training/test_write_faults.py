"""A full disk while a run saves its checkpoint or results: one line, the previous file kept,
and the run resumes."""

import errno
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from hpn.cli import main
from hpn.training.checkpoint import LOCK_NAME, save_best
from hpn.training.run import load_config, run

OVERRIDES = [
    "seed=4",
    "data.name=clusters",
    "data.options={num_classes: 4, samples_per_class: 30, dims: 6}",
    "model.backbone=mlp",
    "model.options={hidden: [16]}",
    "head.dims=3",
    "optim.epochs=2",
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults") / "run"
    run(load_config(None, [*OVERRIDES, f"out_dir={folder}"]), log=lambda *a: None)
    return folder


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("hpn: error")]
    assert len(lines) == 1, err
    return lines[0]


def _no_leftovers(folder) -> None:
    assert not list(folder.glob(".*.tmp")) and not (folder / LOCK_NAME).exists()


@pytest.mark.parametrize("name", ["last.pt", "metrics.csv"])
def test_a_full_disk_during_an_epoch_keeps_the_checkpoint_and_resumes(
    finished, tmp_path, capsys, full_disk, name
):
    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    before = (folder / name).read_bytes()
    full_disk(name)
    assert main(["train", "--out", str(folder), "--resume", "optim.epochs=4"]) == 2
    line = _error_line(capsys)
    assert f"could not write {folder / name} (No space left on device)" in line
    assert (folder / name).read_bytes() == before
    _no_leftovers(folder)
    full_disk()  # room again
    assert main(["train", "--out", str(folder), "--resume", "optim.epochs=4"]) == 0
    assert len((folder / "metrics.csv").read_text().splitlines()) == 1 + 4


def test_a_full_disk_keeps_the_best_checkpoint(finished, tmp_path, full_disk):
    net = torch.nn.Linear(2, 2)
    shutil.copy(finished / "best.pt", tmp_path / "best.pt")
    before = (tmp_path / "best.pt").read_bytes()
    full_disk("best.pt")
    with pytest.raises(OSError, match="could not write .*best.pt .No space left") as err:
        save_best(tmp_path, net, 7)
    assert "\n" not in str(err.value)
    assert (tmp_path / "best.pt").read_bytes() == before
    _no_leftovers(tmp_path)


def test_a_full_disk_when_results_are_written_leaves_a_resumable_run(tmp_path, capsys, full_disk):
    folder = tmp_path / "run"
    full_disk("results.json")
    assert main(["train", *OVERRIDES, f"out_dir={folder}"]) == 2
    assert "could not write" in _error_line(capsys)
    assert not (folder / "results.json").exists()
    _no_leftovers(folder)
    assert torch.load(folder / "last.pt", weights_only=True)["epoch"] == 1
    full_disk()
    assert main(["train", "--out", str(folder), "--resume"]) == 0
    assert (folder / "results.json").is_file()


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE")
def test_a_real_file_size_limit_stops_the_run_in_one_line_and_it_resumes(finished, tmp_path):
    """The kernel refuses the write (EFBIG), as on a full disk: no monkeypatching."""
    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    before = (folder / "last.pt").read_bytes()
    limit = len(before) // 2  # room for every run file but the checkpoint

    import resource  # POSIX only

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    command = [sys.executable, "-m", "hpn", "train", "--out", str(folder), "--resume"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cut = subprocess.run(
        [*command, "optim.epochs=3"],
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=small_files,
    )
    assert cut.returncode == 2, cut.stderr
    assert "Traceback" not in cut.stderr
    assert cut.stderr.strip().splitlines()[-1].startswith(f"hpn: error: [Errno {errno.EFBIG}]")
    assert f"could not write {folder / 'last.pt'}" in cut.stderr
    assert (folder / "last.pt").read_bytes() == before
    _no_leftovers(folder)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert torch.load(folder / "last.pt", weights_only=True)["epoch"] == 2
