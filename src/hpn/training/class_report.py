"""``hpn evaluate --confusion``: a finished run's errors class by class.

:func:`confusion_report` predicts one split of the run's data (with ``data.*`` overrides, as
:func:`hpn.training.finished.evaluate_run`) with the best-validation network and writes, in
``RUN/evaluations/``, next to the evaluation's ``<tag>.json``:

* ``<tag>-per-class.csv``: one row per class (:meth:`hpn.evaluation.confusion.Confusion.per_class`);
* ``<tag>-confusion.csv``: the K x K counts for K <= 50, else one row per occurring
  (true, predicted) pair (:meth:`~hpn.evaluation.confusion.Confusion.table`);
* ``<tag>-confusion.png``: the matrix, or for K > 50 the accuracy histogram and the worst
  classes (:func:`hpn.evaluation.plots.confusion_figure`; needs matplotlib).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from hpn.data.base import in_batches, iterate_batches
from hpn.evaluation.confusion import Confusion
from hpn.evaluation.plots import confusion_figure
from hpn.tables import write_table
from hpn.training.finished import SPLITS, evaluation_tag
from hpn.training.inference import TrainedModel, load_run


def split_confusion(model: TrainedModel, split: str, batch_size: int = 256) -> Confusion:
    """The confusion of ``model``'s predicted classes on one split of its data.

    Raises:
        ValueError: an unknown split, or a regression run (no classes).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if model.num_classes is None:
        raise ValueError(f"{model.run_dir} is a regression run: it has no confusion matrix")
    return Confusion.from_labels(*split_predictions(model, split, batch_size), model.num_classes)


def split_predictions(
    model: TrainedModel, split: str, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) true and (N,) predicted classes of ``model`` on one split of its data, in order."""
    data = getattr(model.splits, split)
    truth, guess = [], []
    for x, targets in iterate_batches(data, in_batches(range(len(data)), batch_size)):
        truth.append(targets["label"])
        guess.append(model.network.predict(x.to(model.device))["label"].cpu())
    return torch.cat(truth), torch.cat(guess)


def confusion_report(
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    split: str = "test",
    device: str = "cpu",
) -> dict:
    """Write a run's per-class table, confusion table and figure for one split.

    Args:
        run_dir: a finished run folder.
        overrides: ``data.key=value`` items, as for ``hpn evaluate``.
        split: ``train``, ``val`` or ``test``.
        device: where the network runs.

    Returns:
        ``{"confusion_accuracy", "per_class_accuracy" (K floats or None), "worst_classes"
        (up to 5 ids, lowest accuracy first), "per_class_csv", "confusion_csv",
        "confusion_png"}``, the paths as strings.

    Raises:
        FileNotFoundError: not a finished run folder.
        ValueError: as :func:`split_confusion` and :func:`hpn.training.inference.load_run`.
        ImportError: no matplotlib for the figure (the tables are written first).
    """
    model = load_run(run_dir, overrides, device)
    confusion = split_confusion(model, split, model.config.optim.batch_size)
    stem = Path(run_dir) / "evaluations" / evaluation_tag(list(overrides), split)
    stem.parent.mkdir(exist_ok=True)
    names = model.class_names
    per_class = confusion.per_class(names)
    paths = {
        "per_class_csv": write_table(per_class, f"{stem}-per-class.csv"),
        "confusion_csv": write_table(confusion.table(names), f"{stem}-confusion.csv"),
    }
    title = f"{Path(run_dir).name}: {split} ({confusion.examples} examples)"
    paths["confusion_png"] = confusion_figure(confusion, f"{stem}-confusion.png", names, title)
    scored = [(a, c) for c, a in enumerate(per_class["accuracy"]) if a is not None]
    return {
        "confusion_accuracy": confusion.accuracy,
        "per_class_accuracy": per_class["accuracy"],
        "worst_classes": [c for _, c in sorted(scored)[:5]],
        **{key: str(path) for key, path in paths.items()},
    }
