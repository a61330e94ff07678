"""Progress of a training run: a redrawn bar on a terminal, TensorBoard scalars if asked.

On a terminal :class:`ProgressBar` redraws one line per epoch (steps, examples per second,
time left in the epoch, running loss). Anywhere else (a log file, a CI job) it prints nothing
per step, and the trainer's one summary line per epoch is the record.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = max(round(seconds), 0)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class ProgressBar:
    """``epoch 3/10 [#######.............] 120/340 812 ex/s 00:27 left loss 0.1234``.

    Args:
        total: steps in the epoch.
        prefix: text before the bar, e.g. ``"epoch 3/10"``.
        stream: where to draw (default ``sys.stdout``).
        enabled: draw at all; default: only when ``stream`` is a terminal.
        width: characters of the bar.
        every: redraw at most once per this many seconds (the last step always draws).
    """

    def __init__(
        self,
        total: int,
        prefix: str = "",
        stream: TextIO | None = None,
        enabled: bool | None = None,
        width: int = 20,
        every: float = 0.1,
    ):
        if total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        self.total, self.prefix, self.width, self.every = total, prefix, width, every
        self.stream = sys.stdout if stream is None else stream
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.start = time.perf_counter()
        self.last_draw = -float("inf")
        self.examples = 0

    def line(self, step: int, loss: float | None = None) -> str:
        """The text drawn after ``step`` of ``total`` steps (1-based).

        Example:
            >>> ProgressBar(10, "epoch 1/3", enabled=False).line(5, loss=0.5)
            'epoch 1/3 [##########..........] 5/10 0 ex/s 00:00 left loss 0.5000'
        """
        elapsed = time.perf_counter() - self.start
        filled = self.width * step // max(self.total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        rate = self.examples / elapsed if elapsed > 0 else 0.0
        left = elapsed / step * (self.total - step) if step else 0.0
        text = f"{self.prefix} [{bar}] {step}/{self.total} {rate:.0f} ex/s {_clock(left)} left"
        return text if loss is None else f"{text} loss {loss:.4f}"

    def update(self, step: int, examples: int, loss: float | None = None) -> None:
        """Record that step ``step`` (1-based) processed ``examples`` more examples."""
        self.examples += examples
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last_draw < self.every and step < self.total:
            return
        self.last_draw = now
        print(f"\r{self.line(step, loss)}\033[K", end="", file=self.stream, flush=True)

    def close(self) -> None:
        """Clear the bar's line so the next line starts clean."""
        if self.enabled:
            print("\r\033[K", end="", file=self.stream, flush=True)


class TensorBoardLog:
    """Per-epoch scalars in TensorBoard event files (``pip install hpn[tensorboard]``).

    Each numeric column of the epoch row (``train_loss``, ``val_accuracy``, ``lr``...) becomes
    a scalar tagged ``train/loss``, ``val/accuracy``, ``optim/lr``... at step = epoch.
    """

    def __init__(self, folder: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:  # torch raises ImportError naming tensorboard
            raise ImportError(
                "tensorboard: true needs the tensorboard package: pip install 'hpn[tensorboard]'"
            ) from err
        self.writer = SummaryWriter(log_dir=str(folder))

    @staticmethod
    def tag(column: str) -> str:
        """The TensorBoard tag of an epoch-row column.

        ``train_*``, ``val_*`` and ``test_*`` columns go under ``train/``, ``val/`` and
        ``test/``, ``lr`` under ``optim/``, anything else under ``run/``.

        Example:
            >>> [TensorBoardLog.tag(c) for c in ("train_loss", "val_accuracy", "lr", "seconds")]
            ['train/loss', 'val/accuracy', 'optim/lr', 'run/seconds']
        """
        head, _, rest = column.partition("_")
        if head in ("train", "val", "test") and rest:
            return f"{head}/{rest}"
        return f"optim/{column}" if column == "lr" else f"run/{column}"

    def epoch(self, row: dict) -> None:
        """Write the numeric columns of one epoch row at step ``row["epoch"]`` and flush.

        Args:
            row: the trainer's epoch row, ``{"epoch": 3, "train_loss": 0.12, ...}``;
                non-numeric values are skipped.
        """
        step = int(row["epoch"])
        for column, value in row.items():
            if column != "epoch" and isinstance(value, int | float):
                self.writer.add_scalar(self.tag(column), float(value), step)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
