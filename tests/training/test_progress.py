import io
import sys

import pytest

from hpn.training import progress
from hpn.training.progress import ProgressBar, TensorBoardLog


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_bar_draws_on_a_terminal_and_ends_on_the_last_step():
    term = FakeTerminal()
    bar = ProgressBar(4, "epoch 1/2", stream=term, every=1e9)
    for step in range(1, 5):
        bar.update(step, 32, loss=0.5)
    bar.close()
    drawn = term.getvalue()
    # drawn when opened and on the last step; the middle ones are throttled
    assert drawn.count("epoch 1/2:") == 2
    assert "0/4" in drawn and "4/4" in drawn and "2/4" not in drawn
    assert "ex/s" in drawn and "loss 0.5000" in drawn and "<00:00" in drawn
    assert drawn.endswith("\r") and drawn.rstrip("\r").split("\r")[-1].strip() == ""  # cleared
    assert bar.examples == 128


def test_bar_is_silent_off_a_terminal():
    plain = io.StringIO()
    bar = ProgressBar(3, "epoch 1/1", stream=plain)
    for step in range(1, 4):
        bar.update(step, 10)
    bar.close()
    assert plain.getvalue() == ""
    assert bar.examples == 30


def test_bar_rejects_a_negative_total():
    with pytest.raises(ValueError, match="-1"):
        ProgressBar(-1)


@pytest.mark.parametrize(
    ("column", "tag"),
    [
        ("train_loss", "train/loss"),
        ("val_accuracy", "val/accuracy"),
        ("lr", "optim/lr"),
        ("seconds", "run/seconds"),
    ],
)
def test_tensorboard_tags(column, tag):
    assert TensorBoardLog.tag(column) == tag


def test_tensorboard_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[tensorboard\]" in the hpn'):
        progress.TensorBoardLog(tmp_path)
