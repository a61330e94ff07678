"""A full disk while a run saves its checkpoint or results: one line, the previous file kept,
and the run resumes."""

import shutil

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
