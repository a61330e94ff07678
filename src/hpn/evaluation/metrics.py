"""Metrics as counts that add across batches and ranks, then one compute step.

As torchmetrics keeps its states: a :class:`MetricCounts` holds sums (summed loss, examples,
correct labels, summed absolute error) and per-class counts (correct, true, predicted). The
counts of two halves of a dataset add up to the counts of the whole, so batches are counted
one at a time, processes reduce the tensors by a sum (:meth:`MetricCounts.map`), and
:meth:`MetricCounts.compute` turns the sums into :class:`EpochMetrics` at the end. Macro F1
needs only three length-K vectors, not a K x K confusion matrix, so 10,000+ classes cost
nothing.

>>> counts = MetricCounts.zeros(3)
>>> counts.update(1.5, {"label": torch.tensor([0, 1, 1])}, {"label": torch.tensor([0, 1, 2])})
>>> m = counts.compute("classification")
>>> m.loss, round(m.accuracy, 4), round(m.macro_f1, 4), m.recall.tolist()
(0.5, 0.6667, 0.5556, [1.0, 1.0, 0.0])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

#: Shot groups by training examples per class (Liu et al., OLTR): many > 100 >= medium >= 20 > few.
SHOT_GROUPS = {"many": (101, math.inf), "medium": (20, 100), "few": (0, 19)}


def prediction_counts(truth: torch.Tensor, guess: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class counts of correct predictions, true examples and predictions.

    Args:
        truth: (N,) int64 true classes in [0, K).
        guess: (N,) int64 predicted classes in [0, K).
        num_classes: K.

    Returns:
        (3, K) int64: rows correct, true, predicted; sums over batches add up. The inputs of
        :func:`macro_f1_from_counts` and :func:`recall_from_counts`.

    Example:
        >>> prediction_counts(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]), 3).tolist()
        [[1, 1, 0], [1, 1, 1], [1, 2, 0]]
    """
    return torch.stack([
        torch.bincount(truth[truth == guess], minlength=num_classes),
        torch.bincount(truth, minlength=num_classes),
        torch.bincount(guess, minlength=num_classes),
    ])  # fmt: skip


def macro_f1_from_counts(
    true_positive: torch.Tensor, support: torch.Tensor, predicted: torch.Tensor
) -> float:
    """Macro F1 from per-class counts: correct predictions, true examples, predictions (K,).

    F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (support + predicted) per class. As scikit-learn's
    ``f1_score(average="macro")`` does by default, the mean runs over the classes that occur
    in the labels or the predictions; a class with neither is left out (0.0 when none occurs).
    """
    tp, support, predicted = true_positive.double(), support.double(), predicted.double()
    seen = (support + predicted) > 0
    if not seen.any():
        return 0.0
    f1 = 2 * tp[seen] / (support[seen] + predicted[seen])
    return float(f1.mean())


def macro_f1(confusion: torch.Tensor) -> float:
    """Macro F1 from a (K, K) confusion matrix (rows true, columns predicted); see
    :func:`macro_f1_from_counts`.

    Example:
        >>> macro_f1(torch.tensor([[2, 0], [1, 1]]))
        0.7333333333333334
    """
    confusion = confusion.double()
    return macro_f1_from_counts(confusion.diagonal(), confusion.sum(1), confusion.sum(0))


def accuracy_from_counts(counts: torch.Tensor) -> float:
    """The share of correct predictions from (3, K) :func:`prediction_counts`."""
    return int(counts[0].sum()) / int(counts[1].sum())


def recall_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """(K,) float64 per-class accuracy (recall) from (3, K) :func:`prediction_counts`; 0 for
    a class without examples."""
    return (counts[0] / counts[1].clamp_min(1)).double()


def group_accuracy(recall: torch.Tensor, train_counts: torch.Tensor) -> dict[str, float | None]:
    """Mean per-class accuracy over the many / medium / few-shot classes (None: no class).

    Args:
        recall: (K,) accuracy of each class on the test split (:func:`recall_from_counts`).
        train_counts: (K,) training examples of each class
            (:func:`hpn.data.longtail.examples_per_class`); the groups are
            :data:`SHOT_GROUPS`.

    Returns:
        ``{"many": ..., "medium": ..., "few": ...}``.

    Example:
        >>> acc = group_accuracy(torch.tensor([0.75, 0.5, 0.25]), torch.tensor([500, 50, 5]))
        >>> acc == {"many": 0.75, "medium": 0.5, "few": 0.25}
        True
    """
    out: dict[str, float | None] = {}
    for name, (low, high) in SHOT_GROUPS.items():
        members = (train_counts >= low) & (train_counts <= high)
        out[name] = float(recall[members].mean()) if members.any() else None
    return out


@dataclass
class EpochMetrics:
    """One evaluation pass: mean loss, and accuracy, MAE, macro F1 and per-class recall where
    the task has them (None otherwise)."""

    loss: float
    accuracy: float | None = None
    mae: float | None = None
    macro_f1: float | None = None
    recall: torch.Tensor | None = None  # (K,) per-class accuracy


@dataclass
class MetricCounts:
    """Sums over the examples seen so far; counts of disjoint parts add up.

    Attributes:
        totals: (4,) float64: summed loss, examples, correct labels, summed absolute error.
        per_class: (3, K) int64 :func:`prediction_counts` (correct, true, predicted per
            class); K = 0 for regression.
    """

    totals: torch.Tensor
    per_class: torch.Tensor

    @classmethod
    def zeros(cls, num_classes: int) -> MetricCounts:
        """Nothing counted yet, for K classes (0 for regression)."""
        return cls(
            torch.zeros(4, dtype=torch.float64), torch.zeros(3, num_classes, dtype=torch.long)
        )

    def update(
        self,
        loss_sum: float,
        predictions: dict[str, torch.Tensor],
        targets: dict[str, torch.Tensor],
    ) -> None:
        """Count one batch.

        Args:
            loss_sum: the batch's summed loss.
            predictions: ``{"label": (N,)}``, ``{"value": (N,)}`` or both.
            targets: the true ``label`` and/or ``value``, (N,) each.
        """
        self.totals[0] += loss_sum
        self.totals[1] += len(next(iter(targets.values())))
        if "label" in predictions:
            truth, guess = targets["label"], predictions["label"]
            self.totals[2] += int((guess == truth).sum())
            self.per_class += prediction_counts(truth.cpu(), guess.cpu(), self.per_class.shape[1])
        if "value" in predictions:
            self.totals[3] += float((predictions["value"] - targets["value"].double()).abs().sum())

    def __add__(self, other: MetricCounts) -> MetricCounts:
        return MetricCounts(self.totals + other.totals, self.per_class + other.per_class)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> MetricCounts:
        """``fn`` applied to every count tensor, e.g. a sum over processes."""
        return MetricCounts(fn(self.totals), fn(self.per_class))

    def compute(self, task: str) -> EpochMetrics:
        """The metrics of everything counted; ``task`` (classification, regression,
        multitask) says which apply."""
        total, n, correct, abs_err = self.totals.tolist()
        n = max(n, 1)
        labels = task != "regression"
        return EpochMetrics(
            loss=total / n,
            accuracy=correct / n if labels else None,
            mae=abs_err / n if task != "classification" else None,
            macro_f1=macro_f1_from_counts(*self.per_class) if labels else None,
            recall=recall_from_counts(self.per_class) if labels else None,
        )
