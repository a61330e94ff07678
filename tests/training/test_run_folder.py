"""The run folder: resume from its saved config, one live run per folder, clean refusals."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from hpn.cli import main
from hpn.training.checkpoint import LOCK_NAME, RunLock


@pytest.fixture
def config_file(tmp_path, run_config, write_config):
    config = run_config(
        seed=1, per_class=60, dims=8, head={"kind": "prototype", "dims": 3},
        optim={"optimizer": "sgd", "lr": 0.05, "epochs": 2, "batch_size": 32},
    )  # fmt: skip
    return write_config(tmp_path / "tiny.yaml", config)


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_resume_needs_only_the_folder_and_records_the_added_epochs(tmp_path, config_file):
    out = tmp_path / "run"
    assert main(["train", "--config", str(config_file), "--out", str(out), "head.dims=5"]) == 0
    assert main(["train", "--out", str(out), "--resume", "optim.epochs=3"]) == 0
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3  # header + epochs 1-3
    saved = json.loads((out / "config.json").read_text())
    assert saved["optim"]["epochs"] == 3 and saved["head"]["dims"] == 5
    history = json.loads((out / "resumes.json").read_text())
    assert history[0]["at_epoch"] == 2
    assert history[0]["changed"]["optim.epochs"] == [2, 3]
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["model"]["head.prototypes"].shape == (4, 5)
    assert not (out / LOCK_NAME).exists()


def test_resume_refuses_a_changed_model_key_in_one_line(tmp_path, config_file, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(config_file), "--out", str(out), "head.dims=5"]) == 0
    before = (out / "last.pt").read_bytes()
    capsys.readouterr()
    # the README's old command: the config file again, without the first run's override
    assert main(["train", "--config", str(config_file), "--out", str(out), "--resume"]) == 2
    err = _error(capsys)
    assert "head.dims=3" in err and "head.dims=5" in err
    assert main(["train", "--out", str(out), "--resume", "optim.lr=0.5"]) == 2
    assert "optim.lr" in _error(capsys)
    assert (out / "last.pt").read_bytes() == before


def test_a_second_run_into_a_live_folder_refuses_and_writes_nothing(tmp_path, config_file, capsys):
    out = tmp_path / "busy"
    with RunLock(out):
        assert main(["train", "--config", str(config_file), "--out", str(out)]) == 2
        err = _error(capsys)
        assert f"process {os.getpid()}" in err and "in use" in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    assert not (out / LOCK_NAME).exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, config_file):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    out = tmp_path / "stale"
    out.mkdir()
    import socket

    (out / LOCK_NAME).write_text(
        json.dumps({"pid": pid, "host": socket.gethostname(), "started": "x"})
    )
    assert main(["train", "--config", str(config_file), "--out", str(out)]) == 0
    assert (out / "results.json").is_file() and not (out / LOCK_NAME).exists()


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("optim.epochs=0", "optim.epochs"),
        ("optim.batch_size=0", "optim.batch_size"),
        ("optim.lr=-0.1", "optim.lr"),
        ("head.dims=0", "head.dims"),
    ],
)
def test_bad_numbers_are_refused_before_anything_is_written(
    tmp_path, config_file, capsys, override, names
):
    out = tmp_path / "never"
    assert main(["train", "--config", str(config_file), "--out", str(out), override]) == 2
    assert names in _error(capsys)
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line(tmp_path, config_file, capsys):
    out = tmp_path / "never"
    assert main(["train", "--config", str(config_file), "--out", str(out), "device=cuda"]) == 2
    assert "CUDA is not available" in _error(capsys)
    assert not out.exists()


def test_packaged_configs_are_found_by_name_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--list-configs"]) == 0
    assert "demo" in capsys.readouterr().out.split()
    for name in ("demo", "demo.yaml"):
        assert main(["train", "--config", name, "--print-config", "optim.epochs=3"]) == 0
        printed = yaml.safe_load(capsys.readouterr().out)
        assert printed["model"]["backbone"] == "convnet" and printed["optim"]["epochs"] == 3
    assert main(["train", "--config", "no-such-config"]) == 2
    assert "packaged configs: " in _error(capsys)


def test_help_says_where_the_keys_are_documented(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--print-config" in text and "--out" in text and "optional" in text


def test_a_byte_order_mark_is_not_part_of_the_first_class_name(tmp_path):
    names = tmp_path / "names.txt"
    names.write_bytes("\ufeffcat\ndog\nbird\n".encode())
    out = tmp_path / "p.npy"
    assert main(["prototypes", "--classes", str(names), "-d", "3", "-o", str(out)]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["class_names"][0] == "cat"
