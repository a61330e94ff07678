"""Synthetic Gaussian clusters: K classes, each an isotropic Gaussian around its own centre.

The protocol follows the blog post on hyperspherical prototypes: class centres are drawn
uniformly from ``[-1, 1]^dims`` (dims = 300) and each class's points from an isotropic
Gaussian around its centre, with standard deviation 3 for 10 classes, 2.5 for 100 and
1.25 for 1,000 (more classes, less noise, so that the task stays learnable).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hpn.data.base import DataSplits, TensorDataset, holdout_splits

# (log10 K, std) anchors of the blog protocol; other K interpolate between them.
_STD_ANCHORS = ((1.0, 3.0), (2.0, 2.5), (3.0, 1.25))


def default_std(num_classes: int) -> float:
    """Default per-class noise: 3 / 2.5 / 1.25 for 10 / 100 / 1,000 classes.

    Other class counts interpolate linearly in ``log10(K)`` between these anchors and are
    clamped outside them: 3.0 for K <= 10 and 1.25 for K >= 1,000; e.g. K = 50 gives about
    2.65 and K = 200 about 2.12.

    Args:
        num_classes: K >= 1.

    Returns:
        The standard deviation.

    Example:
        >>> default_std(10), round(default_std(50), 2), default_std(1000)
        (3.0, 2.65, 1.25)
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    xs, ys = zip(*_STD_ANCHORS, strict=True)
    return float(np.interp(math.log10(num_classes), xs, ys))


def cluster_centres(num_classes: int, dims: int = 300, seed: int = 0) -> torch.Tensor:
    """The class centres that :func:`gaussian_clusters` uses for the same arguments.

    Args:
        num_classes: K.
        dims: feature dimensions d.
        seed: the data seed.

    Returns:
        (K, d) float32 centres, uniform in ``[-1, 1]``.

    Example:
        >>> centres = cluster_centres(4, dims=3)
        >>> centres.shape, bool(centres.abs().max() <= 1)
        (torch.Size([4, 3]), True)
    """
    centre_stream, _ = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(centre_stream)
    return torch.from_numpy(rng.uniform(-1.0, 1.0, size=(num_classes, dims)).astype(np.float32))


def gaussian_clusters(
    num_classes: int,
    samples_per_class: int,
    dims: int = 300,
    std: float | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DataSplits:
    """K Gaussian clusters in ``dims`` dimensions, split into train / val / test.

    The centres (:func:`cluster_centres`) and the points come from two independent streams
    of ``numpy.random.SeedSequence(seed)``: the centres do not depend on
    ``samples_per_class``. The test split holds ``round(samples_per_class * test_fraction)``
    points of every class (stratified, seeded with ``seed``); validation is carved from
    the rest by :func:`hpn.data.base.split_train_val`. ``seed`` fixes the whole problem,
    so different seeds are different problems, not just different splits.

    Args:
        num_classes: K >= 2.
        samples_per_class: points drawn per class (before splitting), >= 2.
        dims: feature dimensions d.
        std: per-class standard deviation; ``None`` uses :func:`default_std` (3 / 2.5 /
            1.25 for 10 / 100 / 1,000 classes).
        val_fraction: share of the non-test points used for validation.
        test_fraction: share of each class held out as the test split.
        seed: seed of centres, points and splits.

    Returns:
        Classification :class:`DataSplits`; x is (d,) float32, target ``{"label": int64}``;
        ``info`` records the std and seed.

    Raises:
        ValueError: a non-positive count or dimension, or a std that is not a positive
            finite number.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if samples_per_class < 2:
        raise ValueError(f"samples_per_class must be >= 2, got {samples_per_class}")
    if dims < 1:
        raise ValueError(f"dims must be >= 1, got {dims}")
    if std is None:
        std = default_std(num_classes)
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"std must be a positive finite number, got {std}")
    centres = cluster_centres(num_classes, dims, seed)
    _, point_stream = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(point_stream)
    noise = rng.standard_normal((num_classes, samples_per_class, dims), dtype=np.float32)
    features = torch.from_numpy(noise).mul_(std).add_(centres[:, None, :])  # in place
    features = features.reshape(num_classes * samples_per_class, dims)
    labels = torch.arange(num_classes).repeat_interleave(samples_per_class)
    data = TensorDataset(features, {"label": labels})
    train, val, test = holdout_splits(data, labels, val_fraction, test_fraction, seed, seed)
    return DataSplits(
        train=train,
        val=val,
        test=test,
        task="classification",
        input_shape=(dims,),
        num_classes=num_classes,
        class_names=None,
        info={
            "source": "clusters",
            "num_classes": num_classes,
            "samples_per_class": samples_per_class,
            "dims": dims,
            "std": float(std),
            "seed": seed,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "counts": {"train": len(train), "val": len(val), "test": len(test)},
        },
    )
