"""The run folder's record: what a run did, written atomically for people and programs.

================  =============================================================
``config.json``   the resolved run config (rewritten by a resume)
``versions.json`` hpn, torch, numpy, Python, platform and the world size
``head.json``     the head: kind, prototypes and their quality, loss, assignment
``metrics.csv``   one row per epoch (train loss, validation metrics, lr, seconds)
``resumes.json``  one entry per resume: when, at which epoch, what changed
``results.json``  the test metrics of the best-validation model and the run's facts
``*.png``         learning curves; the outputs on S^2 when d = 3 (with ``hpn[data]``)
``tensorboard/``  per-epoch scalars when ``tensorboard: true``
================  =============================================================

The checkpoints (``last.pt``, ``best.pt``) and the lock are :mod:`hpn.training.checkpoint`'s.
Only rank 0 records under a process group: a :class:`Recorder` made with ``active=False``
writes nothing.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hpn import __version__
from hpn.data.base import SplitDataset, in_batches, iterate_batches
from hpn.evaluation import plots
from hpn.files import atomic_write_json, atomic_write_text
from hpn.heads import MultiTaskHead, PrototypeClassifier
from hpn.training.config import RunConfig, config_changes, from_dict, to_dict
from hpn.training.progress import TensorBoardLog


def versions() -> dict:
    """The versions a run records: hpn, torch, numpy, Python and the platform."""
    return {
        "hpn": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` as CSV with the union of their keys as columns (rows of older versions
    may lack some), atomically."""
    out = io.StringIO()
    fields = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, out.getvalue())


class Recorder:
    """Writes a run folder's record (see the module docstring).

    Args:
        folder: the run folder (it exists: the run holds its lock).
        active: write at all (rank 0); an inactive recorder does nothing.
        tensorboard: also write each epoch row to ``folder/tensorboard``.
    """

    def __init__(self, folder: str | Path, active: bool = True, tensorboard: bool = False):
        self.folder, self.active = Path(folder), active
        self.board = TensorBoardLog(self.folder / "tensorboard") if tensorboard and active else None

    def start(self, cfg: RunConfig, head_info: dict, world: int) -> None:
        """A new run: its config, versions and head."""
        if not self.active:
            return
        atomic_write_json(self.folder / "config.json", to_dict(cfg))
        atomic_write_json(self.folder / "versions.json", {**versions(), "world_size": world})
        atomic_write_json(self.folder / "head.json", head_info)

    def resumed(self, cfg: RunConfig, epoch: int) -> None:
        """Rewrite ``config.json`` with the resumed config and append what changed, and
        when, to ``resumes.json``."""
        if not self.active:
            return
        saved = from_dict(
            RunConfig,
            {**json.loads((self.folder / "config.json").read_text()), "out_dir": cfg.out_dir},
        )
        changes = {k: list(v) for k, v in config_changes(saved, cfg).items()}
        history_file = self.folder / "resumes.json"
        history = json.loads(history_file.read_text()) if history_file.is_file() else []
        history.append(
            {"at_epoch": epoch, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "changed": changes}
        )
        atomic_write_json(history_file, history)
        atomic_write_json(self.folder / "config.json", to_dict(cfg))

    def metrics(self, rows: list[dict]) -> None:
        """Rewrite ``metrics.csv`` with every epoch row so far."""
        if self.active:
            write_csv(self.folder / "metrics.csv", rows)

    def board_epoch(self, row: dict) -> None:
        """Send an epoch row to TensorBoard (when asked for)."""
        if self.board is not None:
            self.board.epoch(row)

    def close(self) -> None:
        """Close the TensorBoard file."""
        if self.board is not None:
            self.board.close()
            self.board = None

    def results(self, results: dict) -> None:
        """Write ``results.json``."""
        if self.active:
            atomic_write_json(self.folder / "results.json", results)

    def figures(
        self,
        net: nn.Module,
        test: SplitDataset,
        batch_size: int,
        device: str,
        log: Callable[[str], None],
    ) -> None:
        """Learning curves, and the test outputs on the sphere when the head's is S^2; a
        missing matplotlib is logged, not raised."""
        if not self.active:
            return
        try:  # matplotlib is optional (hpn[data]); plots raise ImportError without it
            plots.learning_curves(self.folder / "metrics.csv", self.folder / "learning_curves.png")
            sphere = sphere_outputs(net, test, batch_size, device)
            if sphere is not None:
                plots.sphere_plot(
                    *sphere, self.folder / "sphere.png", title="test outputs and prototypes"
                )
        except ImportError as err:
            log(f"plots skipped: {err}")


def _sphere_parts(head: nn.Module) -> tuple[nn.Module, torch.Tensor] | None:
    """(projection to S^2, (K, 3) prototypes) of a head whose output space is S^2."""
    if isinstance(head, PrototypeClassifier) and head.dims == 3:
        return head.proj, torch.as_tensor(head.prototypes)
    if isinstance(head, MultiTaskHead) and head.dims == 3:
        p = torch.as_tensor(head.classifier.prototypes)
        return head.proj, torch.cat([torch.zeros(len(p), 1, device=p.device), p], dim=1)
    return None


@torch.no_grad()
def sphere_outputs(
    net: nn.Module, data: SplitDataset, batch_size: int, device: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(outputs (N, 3), labels (N,), prototypes (K, 3)) as numpy arrays when the head's
    output space is S^2, else None. ``net`` has ``backbone`` and ``head``; ``data`` is sized
    and yields ``label`` targets."""
    head, backbone = net.get_submodule("head"), net.get_submodule("backbone")
    parts = _sphere_parts(head)
    if parts is None:
        return None
    project, protos3 = parts
    net.eval()
    outs, labels = [], []
    for x, targets in iterate_batches(data, in_batches(range(len(data)), batch_size)):
        outs.append(project(backbone(x.to(device))).cpu())
        labels.append(targets["label"])
    z, protos3 = torch.cat(outs), protos3.cpu()
    if isinstance(head, MultiTaskHead):
        # draw the regression axis (axis 0) as z, like the paper
        z, protos3 = z[:, [1, 2, 0]], protos3[:, [1, 2, 0]]
    return z.numpy(), torch.cat(labels).numpy(), protos3.numpy()
