"""No code runs from a checkpoint: crafted files are refused by every reader in one line,
checkpoints hold tensors and plain types only, older files say so."""

import os
import random
import shutil

import numpy as np
import pytest
import torch

from hpn.cli import main
from hpn.training import checkpoint
from hpn.training.checkpoint import UnsafeCheckpoint, read_checkpoint
from hpn.training.run import load_config, run

OVERRIDES = [
    "seed=2",
    "data.name=clusters",
    "data.options={num_classes: 4, samples_per_class: 40, dims: 6, std: 0.3}",
    "model.backbone=mlp",
    "model.options={hidden: [16]}",
    "head.dims=3",
    "head.assignment=dynamic",
    "optim.epochs=2",
    "optim.optimizer=adam",
    "optim.lr=0.01",
]


class Payload:
    """Unpickled with ``weights_only=False``, this runs ``touch MARKER``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("safety") / "run"
    run(load_config(None, [*OVERRIDES, f"out_dir={folder}"]), log=lambda *a: None)
    return folder


@pytest.fixture
def copy(finished, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    return folder


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_checkpoints_load_with_weights_only(finished):
    last = torch.load(finished / "last.pt", weights_only=True)
    best = torch.load(finished / "best.pt", weights_only=True)
    assert set(last) >= {"model", "optimizer", "scheduler", "rng", "epoch", "rows"}
    assert last["model"].keys() == best["model"].keys()
    assert isinstance(last["rng"]["numpy"]["keys"], torch.Tensor)


def test_the_plain_random_state_restores_every_generator():
    checkpoint.seed_everything(5)
    state = torch.load(_saved(checkpoint.rng_state()), weights_only=True)
    first = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    checkpoint.set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first  # noqa: NPY002


def _saved(obj, path=None):
    import io

    buffer = io.BytesIO() if path is None else path
    torch.save(obj, buffer)
    if path is None:
        buffer.seek(0)
    return buffer


def _plant(path, where, marker):
    """Put a payload into the checkpoint at ``path``: at its top, or in the optimiser state."""
    state = torch.load(path, weights_only=True)
    if where == "top":
        state["extra"] = Payload(marker)
    elif where == "model":
        state["model"]["head.evil"] = Payload(marker)
    else:  # nested in the optimiser's per-parameter state
        state["optimizer"]["state"][0]["evil"] = [Payload(marker)]
    torch.save(state, path)


@pytest.mark.parametrize("where", ["top", "model"])
@pytest.mark.parametrize("command", ["evaluate", "transfer"])
def test_a_crafted_best_checkpoint_is_refused_and_never_runs(
    copy, tmp_path, capsys, command, where
):
    marker = tmp_path / "MARKER"
    _plant(copy / "best.pt", where, marker)
    args = {
        "evaluate": ["evaluate", str(copy)],
        "transfer": ["transfer", str(copy), "--data", "clusters", "--option", "dims=6"],
    }[command]
    assert main(args) == 2
    err = _one_line(capsys)
    assert "refusing to load" in err and "best.pt" in err and "system" in err
    assert not marker.exists()
    assert not (copy / "evaluations").exists()


@pytest.mark.parametrize("where", ["top", "optimizer"])
def test_a_crafted_last_checkpoint_is_refused_by_resume(copy, tmp_path, capsys, where):
    marker = tmp_path / "MARKER"
    _plant(copy / "last.pt", where, marker)
    before = (copy / "last.pt").read_bytes()
    assert main(["train", "--out", str(copy), "--resume"]) == 2
    err = _one_line(capsys)
    assert "refusing to load" in err and "last.pt" in err
    assert not marker.exists()
    assert (copy / "last.pt").read_bytes() == before


def test_an_older_checkpoint_says_so_and_can_be_upgraded_when_trusted(copy, capsys):
    state = torch.load(copy / "last.pt", weights_only=True)
    state["rng"]["numpy"] = np.random.get_state()  # noqa: NPY002 - how hpn saved it before
    torch.save(state, copy / "last.pt")
    assert main(["train", "--out", str(copy), "--resume"]) == 2
    err = _one_line(capsys)
    assert "older hpn" in err and "upgrade_trusted" in err
    checkpoint.upgrade_trusted(copy / "last.pt")
    assert main(["train", "--out", str(copy), "--resume", "optim.epochs=3"]) == 0


def test_a_damaged_or_foreign_file_is_one_line(tmp_path):
    path = tmp_path / "last.pt"
    for data in (b"not a checkpoint", _saved({"model": {}}).getvalue()[:300]):
        path.write_bytes(data)
        with pytest.raises(ValueError, match="is damaged or not a") as err:
            read_checkpoint(path)
        assert "\n" not in str(err.value)
    torch.save({"weights": torch.ones(1)}, path)
    with pytest.raises(ValueError, match="not an hpn checkpoint .no model"):
        read_checkpoint(path, keys=("model",))
    torch.save({"model": Payload(tmp_path / "M")}, path)
    with pytest.raises(UnsafeCheckpoint):
        read_checkpoint(path)
    assert not (tmp_path / "M").exists()
