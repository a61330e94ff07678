"""A real training process killed with SIGKILL mid-run resumes to the uninterrupted result."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch


def _train(cfg, out, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "hpn", "train", "--config", str(cfg), f"out_dir={out}", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkilled_run_resumes_to_the_same_weights_and_results(tmp_path, run_config, write_config):
    config = run_config(
        seed=3, classes=20, per_class=600, dims=64, hidden=(256, 256),
        head={"kind": "prototype", "dims": 8},
        optim={"optimizer": "sgd", "lr": 0.05, "epochs": 12, "batch_size": 32},
    )  # fmt: skip
    cfg = write_config(tmp_path / "c.yaml", config)
    full = _train(cfg, tmp_path / "full")
    assert full.wait(timeout=300) == 0, full.stderr.read().decode()

    cut = _train(cfg, tmp_path / "cut")
    last = tmp_path / "cut" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.exists():  # let it finish at least one epoch, then kill it mid-epoch
        assert cut.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)
    cut.send_signal(signal.SIGKILL)
    assert cut.wait(timeout=60) == -signal.SIGKILL
    killed_at = torch.load(last, weights_only=True)["epoch"] + 1
    print(f"killed after epoch {killed_at}")
    assert killed_at < 12, "killed after the last epoch: nothing left to resume"
    assert not (tmp_path / "cut" / "results.json").exists()

    resumed = _train(cfg, tmp_path / "cut", "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert [strip(r) for r in a["rows"]] == [strip(r) for r in b["rows"]]
    results = [(tmp_path / run / "results.json").read_text() for run in ("full", "cut")]
    drop = lambda text: [ln for ln in text.splitlines() if "seconds" not in ln]  # noqa: E731
    assert drop(results[0]) == drop(results[1])
