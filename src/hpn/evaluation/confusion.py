"""Which classes are mistaken for which: a confusion matrix kept sparse, per-class accuracy.

Only the (true, predicted) pairs that occur are stored, so K = 10,000 classes cost as much as
the examples, not K^2; :meth:`Confusion.matrix` gives the dense K x K counts where they fit.

>>> c = Confusion.from_labels(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 1]), 3)
>>> c.matrix().tolist()
[[1, 1, 0], [0, 1, 0], [0, 1, 0]]
>>> c.per_class()["accuracy"]
[0.5, 1.0, 0.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Largest K whose confusion is written as a K x K table (beyond: one row per occurring pair).
DENSE_LIMIT = 50


@dataclass
class Confusion:
    """Counts of (true class, predicted class) pairs over N examples.

    Attributes:
        num_classes: K.
        pairs: (M, 2) int64 distinct (true, predicted) pairs that occur, in row-major order.
        counts: (M,) int64 examples of each pair; they sum to N.
    """

    num_classes: int
    pairs: torch.Tensor
    counts: torch.Tensor

    @classmethod
    def from_labels(cls, truth: torch.Tensor, guess: torch.Tensor, num_classes: int) -> Confusion:
        """Count (N,) true and (N,) predicted class ids in [0, K).

        Raises:
            ValueError: different lengths, or an id outside [0, K).
        """
        truth, guess = torch.as_tensor(truth).long().cpu(), torch.as_tensor(guess).long().cpu()
        if truth.shape != guess.shape or truth.ndim != 1:
            raise ValueError(
                f"labels must be two (N,) tensors, got {truth.shape} and {guess.shape}"
            )
        for name, ids in (("true", truth), ("predicted", guess)):
            if len(ids) and not (0 <= int(ids.min()) and int(ids.max()) < num_classes):
                raise ValueError(f"{name} class ids must lie in [0, {num_classes}), got {ids}")
        codes, counts = torch.unique(truth * num_classes + guess, return_counts=True)
        pairs = torch.stack([codes // num_classes, codes % num_classes], dim=1)
        return cls(num_classes, pairs, counts)

    @property
    def examples(self) -> int:
        """N."""
        return int(self.counts.sum())

    @property
    def accuracy(self) -> float:
        """The share of examples on the diagonal."""
        return int(self.counts[self.pairs[:, 0] == self.pairs[:, 1]].sum()) / max(self.examples, 1)

    def matrix(self) -> torch.Tensor:
        """(K, K) int64 counts: row = true class, column = predicted class."""
        k = self.num_classes
        dense = torch.zeros(k * k, dtype=torch.long)
        dense[self.pairs[:, 0] * k + self.pairs[:, 1]] = self.counts
        return dense.view(k, k)

    def per_class(self, names: list[str] | None = None) -> dict[str, list]:
        """One row per class: ``class``, ``name`` (with ``names``), ``examples``, ``correct``,
        ``accuracy`` (recall; None without examples), ``predicted`` (times predicted), and the
        class it is most often mistaken for, ``confused_with`` (None if never) and
        ``confused_count``."""
        k, true, pred = self.num_classes, self.pairs[:, 0], self.pairs[:, 1]
        examples = torch.bincount(true, self.counts, minlength=k).long()
        predicted = torch.bincount(pred, self.counts, minlength=k).long()
        correct = torch.zeros(k, dtype=torch.long)
        diagonal = true == pred
        correct[true[diagonal]] = self.counts[diagonal]
        worst: dict[int, tuple[int, int]] = {}  # true class -> (count, predicted class)
        for (t, p), n in zip(self.pairs.tolist(), self.counts.tolist(), strict=True):
            if t != p and n > worst.get(t, (0, -1))[0]:  # ties: the smaller id (rows sorted)
                worst[t] = (n, p)
        columns: dict[str, list] = {"class": list(range(k))}
        if names is not None:
            columns["name"] = list(names)
        columns["examples"] = examples.tolist()
        columns["correct"] = correct.tolist()
        pairs = zip(correct.tolist(), examples.tolist(), strict=True)
        columns["accuracy"] = [c / e if e else None for c, e in pairs]
        columns["predicted"] = predicted.tolist()
        columns["confused_with"] = [worst[c][1] if c in worst else None for c in range(k)]
        columns["confused_count"] = [worst[c][0] if c in worst else 0 for c in range(k)]
        return columns

    def table(self, names: list[str] | None = None) -> dict[str, list]:
        """The confusion as table columns: for K <= :data:`DENSE_LIMIT` one row per true class
        (``true/predicted``, then one column per predicted class, named by ``names`` or the id), else
        one row per occurring pair (``true``, ``predicted``, ``count``)."""
        label = [str(c) for c in range(self.num_classes)] if names is None else list(names)
        if self.num_classes <= DENSE_LIMIT:
            rows = self.matrix().T.tolist()
            return {"true/predicted": label, **{label[p]: rows[p] for p in range(self.num_classes)}}
        return {
            "true": [label[t] for t in self.pairs[:, 0].tolist()],
            "predicted": [label[p] for p in self.pairs[:, 1].tolist()],
            "count": self.counts.tolist(),
        }
