"""Progress of a training run: a tqdm bar on a terminal, TensorBoard scalars if asked.

On a terminal :class:`ProgressBar` draws one tqdm bar per epoch (steps, time left, examples
per second, running loss) and clears it at the end of the epoch. Anywhere else (a log file, a
CI job) it prints nothing, and the trainer's one summary line per epoch is the record.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from hpn.extras import install_hint


class ProgressBar:
    """A tqdm bar over the steps of one pass: ``epoch 3/10:  35%|███▌      | 120/340
    [00:27<00:50, 4.40step/s, 812 ex/s, loss 0.1234]``.

    Args:
        total: steps in the pass.
        prefix: text before the bar, e.g. ``"epoch 3/10"``.
        stream: where to draw (default ``sys.stdout``).
        enabled: draw at all; default: only when ``stream`` is a terminal.
        every: redraw at most once per this many seconds (the last step always draws).
        unit: what one step is called in the rate (``step``, ``row``, ...).

    Example:
        >>> bar = ProgressBar(2, "epoch 1/1", enabled=False)
        >>> bar.update(1, examples=32, loss=0.5); bar.update(2, examples=32); bar.close()
        >>> bar.examples
        64
    """

    def __init__(
        self,
        total: int,
        prefix: str = "",
        stream: TextIO | None = None,
        enabled: bool | None = None,
        every: float = 0.1,
        unit: str = "step",
    ):
        if total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        self.total = total
        self.stream = sys.stdout if stream is None else stream
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.examples = 0
        self.start = time.perf_counter()
        self.bar = tqdm(
            total=total,
            desc=prefix,
            file=self.stream,
            disable=not self.enabled,
            leave=False,  # cleared at close: the epoch's summary line follows
            mininterval=every,
            unit=unit,
            dynamic_ncols=True,
        )

    def update(self, step: int, examples: int = 0, loss: float | None = None) -> None:
        """Record that step ``step`` (1-based) is done and processed ``examples`` more
        examples; ``loss`` is the running loss shown after the bar."""
        self.examples += examples
        if not self.enabled:
            return
        fields = []
        if self.examples:
            elapsed = time.perf_counter() - self.start
            fields.append(f"{self.examples / max(elapsed, 1e-9):.0f} ex/s")
        if loss is not None:
            fields.append(f"loss {loss:.4f}")
        self.bar.set_postfix_str(", ".join(fields), refresh=False)
        self.bar.update(step - self.bar.n)
        if step >= self.total:
            self.bar.refresh()  # the last step always shows, whatever the throttle

    def close(self) -> None:
        """Clear the bar's line so the next line starts clean."""
        self.bar.close()


class TensorBoardLog:
    """Per-epoch scalars in TensorBoard event files (the ``tensorboard`` extra).

    Each numeric column of the epoch row (``train_loss``, ``val_accuracy``, ``lr``...) becomes
    a scalar tagged ``train/loss``, ``val/accuracy``, ``optim/lr``... at step = epoch.
    """

    def __init__(self, folder: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional: the tensorboard extra
        except ImportError as err:  # torch raises ImportError naming tensorboard
            raise ImportError(
                f"tensorboard: true needs the tensorboard package: {install_hint('tensorboard')}"
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
