"""What trained features are worth elsewhere: linear probes and class separation.

* :func:`extract` runs a frozen backbone over a dataset (penultimate features).
* :func:`class_separation`: R^2 = 1 - (mean within-class cosine distance) / (mean cosine
  distance over all pairs). 0: classes are not separated at all; 1: every class collapses to
  a point. Seed 003 found that losses with higher separation transfer worse.
* :func:`linear_probe`: multinomial logistic regression on frozen features (standardised with
  the training statistics, L2 penalty, full-batch L-BFGS), test accuracy.
* :func:`transfer_scores`: both, for a backbone, its own test split and another source; a
  finished run folder is read by :func:`hpn.training.finished.transfer_report` (this package never
  imports ``hpn.training``).
"""

from __future__ import annotations

import torch
from torch import nn

from hpn.data.base import SplitDataset, in_batches, iterate_batches
from hpn.functional import unit


@torch.no_grad()
def extract(
    backbone: nn.Module, data: SplitDataset, batch_size: int = 256, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, F) float32 features of a frozen backbone (eval mode) and the (N,) labels."""
    backbone.eval().to(device)
    feats, labels = [], []
    for x, targets in iterate_batches(data, in_batches(range(len(data)), batch_size)):
        feats.append(backbone(x.to(device)).float().cpu())
        labels.append(targets["label"])
    return torch.cat(feats), torch.cat(labels)


def class_separation(features: torch.Tensor, labels: torch.Tensor) -> float:
    """R^2 = 1 - d_within / d_total with cosine distance 1 - cos, over all distinct pairs.

    Computed from per-class sums of unit vectors, O(N F): the mean cosine over the distinct
    pairs of a set S of unit vectors is (|sum S|^2 - |S|) / (|S| (|S| - 1)).

    Args:
        features: (N, F) features (any norm), N >= 2.
        labels: (N,) int64 class ids; at least one class has two examples.

    Returns:
        R^2; 1 when every class collapses to one direction.

    Example:
        >>> class_separation(torch.eye(2)[[0, 0, 1, 1]], torch.tensor([0, 0, 1, 1]))
        1.0
    """
    u = unit(features.double())
    n = len(u)
    if n < 2:
        raise ValueError(f"class separation needs at least 2 examples, got {n}")
    total_pairs = n * (n - 1)
    mean_cos_all = (u.sum(0).pow(2).sum() - n) / total_pairs
    k = int(labels.max()) + 1
    sums = torch.zeros(k, u.shape[1], dtype=u.dtype).index_add_(0, labels, u)
    counts = torch.bincount(labels, minlength=k).double()
    pairs = counts * (counts - 1)
    within_cos_sum = (sums.pow(2).sum(1) - counts)[pairs > 0].sum()
    if pairs.sum() == 0:
        raise ValueError("class separation needs a class with at least 2 examples")
    mean_cos_within = within_cos_sum / pairs.sum()
    d_within, d_total = 1 - mean_cos_within, 1 - mean_cos_all
    return float(1 - d_within / d_total)


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    weight_decay: float = 1e-4,
    steps: int = 200,
) -> float:
    """Test accuracy of a multinomial logistic regression fitted on frozen features.

    Features are standardised with the training mean and standard deviation; the
    regression (L-BFGS, float64, L2 penalty ``weight_decay * ||W||^2``) has
    ``K = max label + 1`` classes.

    Args:
        train_x: (N, F) training features.
        train_y: (N,) int64 training labels.
        test_x: (M, F) test features.
        test_y: (M,) int64 test labels.
        weight_decay: L2 penalty on the weights (not the bias).
        steps: L-BFGS iterations.

    Returns:
        The fraction of test rows predicted right, in [0, 1].

    Example:
        >>> x = torch.tensor([[-2.0], [-1.0], [1.0], [2.0]])
        >>> y = torch.tensor([0, 0, 1, 1])
        >>> linear_probe(x, y, x, y)
        1.0
    """
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    xtr, xte = ((train_x - mean) / std).double(), ((test_x - mean) / std).double()
    k = int(max(train_y.max(), test_y.max())) + 1
    w = torch.zeros(xtr.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(xtr @ w + b, train_y) + weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xte @ w + b).argmax(1) == test_y).float().mean())


def transfer_scores(
    backbone: nn.Module,
    source_test: SplitDataset,
    target_train: SplitDataset,
    target_test: SplitDataset,
) -> dict[str, float]:
    """Class separation of a frozen backbone's features on its own test split, and on another
    source's test split with a linear probe fitted on that source's training split.

    The datasets must give inputs of the shape the backbone was trained on and a ``label``
    target. A finished run folder is read by :func:`hpn.training.finished.transfer_report`.

    Returns:
        ``{"source_separation", "target_separation", "probe_accuracy"}``.
    """
    src_x, src_y = extract(backbone, source_test)
    tr_x, tr_y = extract(backbone, target_train)
    te_x, te_y = extract(backbone, target_test)
    return {
        "source_separation": class_separation(src_x, src_y),
        "target_separation": class_separation(te_x, te_y),
        "probe_accuracy": linear_probe(tr_x, tr_y, te_x, te_y),
    }
