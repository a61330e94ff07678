"""Interrupts and resume edges: SIGTERM as Ctrl-C, what the lines say, file modes."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from hpn.cli import main
from hpn.training.checkpoint import LOCK_NAME

# many small steps per epoch: an epoch takes about a second, so a signal lands inside one
SLOW = {
    "seed": 0,
    "data": {
        "name": "clusters",
        "options": {"num_classes": 8, "samples_per_class": 400, "dims": 64},
    },
    "model": {"backbone": "mlp", "options": {"hidden": [256, 256]}},
    "head": {"kind": "prototype", "dims": 4},
    "optim": {"optimizer": "sgd", "lr": 0.05, "epochs": 200, "batch_size": 4},
}


def start(tmp_path, out):
    config = tmp_path / "slow.yaml"
    config.write_text(yaml.safe_dump(SLOW))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HPN_THREADS": "1"}
    cmd = [sys.executable, "-m", "hpn", "train", "--config", str(config), "--out", str(out)]
    # a shell's background job inherits SIGINT ignored, and Python then keeps it ignored:
    # give the child the default disposition, as a terminal's foreground process has
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(path, proc, timeout=240.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_keeps_the_checkpoint_releases_the_lock_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    proc = start(tmp_path, out)
    wait_for(out / "last.pt", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    last = err.strip().splitlines()[-1]
    assert (
        last
        == f"hpn: terminated (SIGTERM); the last finished epoch is kept: hpn train --out {out} --resume"
    )
    assert err.rstrip().endswith("\n" + last) or err.strip() == last  # on a line of its own
    assert not (out / LOCK_NAME).exists() and (out / "last.pt").is_file()
    done = len((out / "metrics.csv").read_text().strip().splitlines()) - 1
    assert done >= 1


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_an_interrupt_before_the_first_checkpoint_says_to_start_again(tmp_path, capsys):
    out = tmp_path / "run"
    proc = start(tmp_path, out)
    wait_for(out / "config.json", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == (
        "hpn: interrupted before the first epoch ended (no checkpoint): run the same command "
        "again without --resume"
    )
    assert not (out / LOCK_NAME).exists() and not (out / "last.pt").exists()
    assert main(["train", "--out", str(out), "--resume"]) == 2
    assert "run the same command again without --resume" in capsys.readouterr().err


def test_resume_of_a_folder_without_a_run_says_to_train_one(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_resumed_line_names_the_next_epoch_and_files_follow_the_umask(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    tiny = {
        **SLOW,
        "data": {
            "name": "clusters",
            "options": {"num_classes": 3, "samples_per_class": 20, "dims": 4},
        },
    }
    config.write_text(
        yaml.safe_dump({**tiny, "optim": {**SLOW["optim"], "epochs": 2, "batch_size": 16}})
    )
    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        assert main(["train", "--config", str(config), "--out", str(out)]) == 0
        assert main(["train", "--out", str(out), "--resume", "optim.epochs=3"]) == 0
    finally:
        os.umask(old)
    assert "resumed" in capsys.readouterr().out
    for name in ("results.json", "last.pt", "best.pt", "metrics.csv", "config.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name
    assert json.loads((out / "results.json").read_text())["epochs_run"] == 3
