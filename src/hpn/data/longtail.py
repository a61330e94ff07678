"""Long-tailed training sets with the exponential profile.

Class c of K keeps ``round(n_max * imbalance ** (c / (K - 1)))`` training examples (class 0
the most, class K - 1 the fewest, ``imbalance`` = n_min / n_max, e.g. 0.01 for a 100:1 tail),
as in the long-tailed CIFAR benchmarks. Validation and test splits stay as they were
(balanced), so test accuracy weighs every class equally and model selection is not tuned to
the imbalance. The accuracy of the many-, medium- and few-shot classes is
:func:`hpn.evaluation.metrics.group_accuracy`.
"""

from __future__ import annotations

import torch

from hpn.data.base import DataSplits, TensorDataset


def examples_per_class(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Examples per class.

    Args:
        labels: (N,) int64 class ids in [0, K) (a tensor or anything ``torch.as_tensor``
            takes).
        num_classes: K; classes without examples count 0.

    Returns:
        (K,) int64 counts (longer than K if a label is >= K).

    Example:
        >>> examples_per_class(torch.tensor([0, 2, 2, 0, 2]), 4).tolist()
        [2, 0, 3, 0]
    """
    return torch.bincount(torch.as_tensor(labels), minlength=num_classes)


def long_tailed(splits: DataSplits, imbalance: float, seed: int = 0) -> DataSplits:
    """A long-tailed version of a classification source's training split.

    Args:
        splits: a classification (or multi-task) source whose train split is a
            :class:`TensorDataset` with a ``"label"`` target.
        imbalance: n_min / n_max in (0, 1], e.g. 0.005, 0.01, 0.02.
        seed: which examples of each class are kept.

    Raises:
        ValueError: a bad factor, a source without labels, or a class with no training data.
    """
    if not (isinstance(imbalance, int | float) and 0.0 < imbalance <= 1.0):
        raise ValueError(f"imbalance must be in (0, 1], got {imbalance!r}")
    train, k = splits.train, splits.num_classes
    if not isinstance(train, TensorDataset) or "label" not in train.targets or k is None:
        raise ValueError("a long-tailed split needs an in-memory labelled training set")
    labels = train.targets["label"]
    counts = examples_per_class(labels, k)
    if int(counts.min()) < 1:
        empty = int(torch.nonzero(counts == 0)[0])
        raise ValueError(f"class {empty} has no training examples")
    n_max = int(counts.max())
    profile = [max(1, round(n_max * imbalance ** (c / max(k - 1, 1)))) for c in range(k)]
    generator = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(k):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        keep.append(members[: min(profile[c], len(members))])
    index = torch.cat(keep).sort().values
    kept = examples_per_class(labels[index], k)
    return DataSplits(
        train=train.subset(index),
        val=splits.val,
        test=splits.test,
        task=splits.task,
        input_shape=splits.input_shape,
        num_classes=k,
        class_names=splits.class_names,
        info={
            **splits.info,
            "imbalance": imbalance,
            "train_counts": kept.tolist(),
            "long_tail_seed": seed,
        },
    )
