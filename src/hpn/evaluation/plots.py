"""Plots written into run folders (matplotlib, an optional extra; the Agg backend, no screen).

* :func:`learning_curves`: losses and the validation metric per epoch from ``metrics.csv``.
* :func:`compare_curves`: one validation metric of several runs against training steps and
  against measured training seconds, one line per run (who is ahead after how long).
* :func:`sphere_plot`: unit outputs on S^2 coloured by class, with the prototypes, as the
  paper's rotated-digits figure.
* :func:`confusion_figure`: the row-normalised confusion matrix for K <= 50 classes, else
  the histogram of per-class accuracy and the worst classes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpn.extras import install_hint
from hpn.files import atomic_write_bytes

if TYPE_CHECKING:  # matplotlib is an optional extra (hpn[data]), imported when a plot is made
    from matplotlib.figure import Figure

    from hpn.evaluation.confusion import Confusion


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(f"plots need matplotlib: {install_hint('data')}") from err
    return plt


def _save(fig: Figure, path: str | Path, title: str = "", tight: bool = True) -> Path:
    """Write ``fig`` as a PNG atomically (with ``title`` above it), then close it."""
    if title:
        fig.suptitle(title)
    if tight:
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    _pyplot().close(fig)
    return Path(path)


def learning_curves(metrics_csv: str | Path, out_png: str | Path) -> Path:
    """Train / validation loss, validation accuracy or MAE, and (with dynamic assignment) the
    number of classes that changed prototype, against the epoch."""
    plt = _pyplot()
    with open(metrics_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{metrics_csv} holds no epochs")
    epochs = [int(r["epoch"]) for r in rows]

    def column(name):
        return [float(r[name]) if r.get(name) not in (None, "") else np.nan for r in rows]

    # "reassigned": classes that changed prototype at each dynamic-assignment update
    metrics = [
        m for m in ("val_accuracy", "val_mae", "reassigned") if not np.isnan(column(m)).all()
    ]
    fig, axes = plt.subplots(1, 1 + len(metrics), figsize=(4.5 * (1 + len(metrics)), 3.4))
    axes = np.atleast_1d(axes)
    axes[0].plot(epochs, column("train_loss"), label="train")
    axes[0].plot(epochs, column("val_loss"), label="validation")
    axes[0].set(xlabel="epoch", ylabel="loss per example", title="loss")
    axes[0].legend()
    for ax, name in zip(axes[1:], metrics, strict=True):
        ax.plot(epochs, column(name), color="C2")
        ax.set(xlabel="epoch", ylabel=name.replace("_", " "), title=name.replace("_", " "))
    return _save(fig, out_png)


def read_curve(folder: str | Path, metric: str = "val_accuracy") -> dict[str, np.ndarray]:
    """One run's ``metric`` per epoch with the training steps and seconds spent so far.

    Args:
        folder: a run folder with ``metrics.csv`` (finished or not).
        metric: a column of ``metrics.csv``.

    Returns:
        ``{"steps", "seconds", metric}``: (E,) arrays over the E epochs recorded; steps are
        counted where the rows record them (``steps``), else left NaN. A run that trained a
        warm-up first (``folder/warmup``, ``head.prototypes: features``) starts with the
        warm-up's epochs, so its steps and seconds count what the warm-up spent. Seconds also
        count building the prototypes (:func:`prototype_seconds`) before the run's first
        epoch, and the warm-up's own before its first: time spent, though no training step.
    """
    warmup = _metric_rows(Path(folder) / "warmup")
    rows = warmup + _metric_rows(Path(folder))
    if not rows:
        raise ValueError(f"{folder}/metrics.csv holds no epochs")
    if metric not in rows[0]:
        raise ValueError(f"{folder}/metrics.csv has no column {metric!r}")

    def column(name: str) -> np.ndarray:
        return np.array([float(r[name]) if r.get(name) not in (None, "") else np.nan for r in rows])

    seconds = column("seconds")
    if warmup:  # the warm-up built its own (pixel) prior before its first epoch
        seconds[0] += prototype_seconds(Path(folder) / "warmup")
    if len(rows) > len(warmup):
        seconds[len(warmup)] += prototype_seconds(folder)
    return {
        "steps": np.cumsum(column("steps")),
        "seconds": np.cumsum(seconds),
        metric: column(metric),
    }


def prototype_seconds(folder: str | Path) -> float:
    """The seconds a run spent building its prototypes before its first epoch: what
    ``results.json`` records (``prototype_seconds``) once the run is finished, else what
    ``head.json`` does (``prototypes.seconds``); 0 for a head without prototypes or a run
    recorded before these were timed."""
    folder = Path(folder)
    if (folder / "results.json").is_file():
        return float(json.loads((folder / "results.json").read_text()).get("prototype_seconds", 0))
    if (folder / "head.json").is_file():
        head = json.loads((folder / "head.json").read_text())
        return float(head.get("prototypes", {}).get("seconds", 0))
    return 0.0


def _metric_rows(folder: Path) -> list[dict[str, str]]:
    """The rows of ``folder/metrics.csv`` (none when it has no such file)."""
    if not (folder / "metrics.csv").is_file():
        return []
    with open(folder / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def compare_curves(
    runs: Mapping[str, str | Path],
    out_png: str | Path,
    metric: str = "val_accuracy",
    title: str = "",
) -> Path:
    """Two panels, ``metric`` against training steps and against training seconds, one line
    per run (label -> run folder)."""
    plt = _pyplot()
    curves = {label: read_curve(folder, metric) for label, folder in runs.items()}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for label, curve in curves.items():
        for ax, x in zip(axes, ("steps", "seconds"), strict=True):
            ax.plot(curve[x], curve[metric], marker="o", markersize=3, label=label)
    axes[0].set(xlabel="training steps", ylabel=metric.replace("_", " "))
    axes[1].set(xlabel="training seconds (measured)")
    axes[1].legend(fontsize="small", loc="lower right")
    return _save(fig, out_png, title)


def sphere_plot(
    outputs: np.ndarray,
    labels: np.ndarray,
    prototypes: np.ndarray | None,
    out_png: str | Path,
    title: str = "outputs on the sphere",
    max_points: int = 2000,
) -> Path:
    """Scatter (N, 3) outputs, normalised onto S^2 and coloured by label, with prototypes."""
    plt = _pyplot()
    z = np.asarray(outputs, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != 3:
        raise ValueError(f"sphere_plot needs (N, 3) outputs, got shape {z.shape}")
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    labels = np.asarray(labels)
    if len(z) > max_points:
        keep = np.random.default_rng(0).choice(len(z), max_points, replace=False)
        z, labels = z[keep], labels[keep]
    fig = plt.figure(figsize=(5.5, 5.5))
    ax = fig.add_subplot(projection="3d")
    u, v = np.mgrid[0 : 2 * np.pi : 30j, 0 : np.pi : 15j]
    ax.plot_wireframe(
        np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", linewidth=0.4
    )
    ax.scatter(z[:, 0], z[:, 1], z[:, 2], c=labels, cmap="tab10", s=6, alpha=0.7)
    if prototypes is not None:
        p = np.asarray(prototypes, dtype=np.float64)
        p = p / np.linalg.norm(p, axis=1, keepdims=True)
        ax.scatter(p[:, 0], p[:, 1], p[:, 2], c="black", marker="*", s=120, label="prototypes")
        ax.legend(loc="upper left")
    ax.set(title=title, xlabel="x", ylabel="y", zlabel="z")
    ax.set(xticks=[-1, 0, 1], yticks=[-1, 0, 1], zticks=[-1, 0, 1])  # default ticks overlap
    ax.set_box_aspect((1, 1, 1))
    return _save(fig, out_png, tight=False)


def confusion_figure(
    confusion: Confusion,
    out_png: str | Path,
    names: list[str] | None = None,
    title: str = "",
    worst: int = 20,
) -> Path:
    """Per-class errors at a glance.

    For K <= :data:`hpn.evaluation.confusion.DENSE_LIMIT` the K x K matrix, each row divided
    by its class's examples (true class down, predicted across); for more classes, where such
    an image is unreadable, two panels: the histogram of per-class accuracy and the ``worst``
    classes of lowest accuracy with the class each is most often mistaken for.
    """
    from hpn.evaluation.confusion import DENSE_LIMIT

    plt = _pyplot()
    k = confusion.num_classes
    label = [str(c) for c in range(k)] if names is None else list(names)
    if k <= DENSE_LIMIT:
        fig = _confusion_matrix_axes(plt, confusion, label)
    else:
        fig = _per_class_axes(plt, confusion, label, worst)
    return _save(fig, out_png, title)


def _confusion_matrix_axes(plt: Any, confusion: Confusion, label: list[str]) -> Figure:
    k = confusion.num_classes
    counts = confusion.matrix().double()
    rates = (counts / counts.sum(1, keepdim=True).clamp_min(1)).numpy()
    side = min(3.0 + 0.3 * k, 16.0)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    ax.set(xlabel="predicted class", ylabel="true class", xticks=range(k), yticks=range(k))
    ax.set_xticklabels(label, rotation=90, fontsize="small")
    ax.set_yticklabels(label, fontsize="small")
    if k <= 20:  # counts in the cells while they are legible
        for (t, p), n in zip(confusion.pairs.tolist(), confusion.counts.tolist(), strict=True):
            colour = "white" if rates[t, p] > 0.5 else "black"
            ax.text(p, t, str(n), ha="center", va="center", fontsize="x-small", color=colour)
    return fig


def _per_class_axes(plt: Any, confusion: Confusion, label: list[str], worst: int) -> Figure:
    rows = confusion.per_class()
    scored = [(a, c) for c, a in enumerate(rows["accuracy"]) if a is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.hist([a for a, _ in scored], bins=20, range=(0.0, 1.0), color="C0")
    left.set(xlabel="per-class accuracy", ylabel="classes", title=f"{len(scored)} classes")
    shown = sorted(scored)[:worst]
    text = [
        f"{label[c]} (→ {label[rows['confused_with'][c]]})"
        if rows["confused_with"][c] is not None
        else label[c]
        for _, c in shown
    ]
    bars = right.barh(range(len(shown)), [a for a, _ in shown], color="C3")
    right.bar_label(bars, fmt="%.2f", padding=2, fontsize="x-small")
    right.set(
        xlim=(0.0, 1.0),
        xlabel="accuracy",
        title=f"{len(shown)} worst classes (→ most confused with)",
    )
    right.set_yticks(range(len(shown)), text, fontsize="small")
    right.invert_yaxis()
    return fig
