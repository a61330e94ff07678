"""Prototypes placed where the data already puts the classes (the ``data`` prior).

With many classes and d well below K, the paper's prototypes fix an *arbitrary* direction
for each class: the network then has to learn a map that sends 1,000 clusters to 1,000
unrelated points, a memorisation task that learns slowly and generalises poorly. That is
the collapse the blog measured at K = 1,000, and training runs show it: the
train and validation losses stay equal while accuracy creeps up.

The data prior removes the arbitrariness and keeps everything else of the method: the
prototypes are still fixed before training and still as far apart as this starting point
allows. They start from the training classes' mean inputs, reduced to d by PCA, so that
the map from inputs to prototypes is nearly linear; a short separation run
(:func:`hpn.prototypes.optimize.optimized_prototypes` started there, with a small step)
then pushes the closest pairs apart while keeping the structure. Only the training split is
read, never validation or test.

>>> means = torch.randn(50, 20, generator=torch.Generator().manual_seed(0))
>>> p = data_prior_prototypes(means, dims=8)
>>> p.shape, bool(torch.allclose(p.norm(dim=1), torch.ones(50)))
(torch.Size([50, 8]), True)
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.nn.functional import normalize

from hpn.prototypes.optimize import optimized_prototypes

#: Separation steps and step size of the spread: at K = 1,000, d = 100 (blog clusters)
#: 100 steps at 1e-3 lower the worst-pair cosine of the PCA start from 0.47 to 0.19 while
#: rows keep a mean cosine of 0.98 to their start; 2,000 steps at 1e-2 reach 0.095 but keep
#: only 0.49, and the network trained on them did worse (validation macro F1 0.945 / 0.920).
SPREAD_STEPS = 100
SPREAD_LR = 1e-3

#: Scale s of the cosine softmax used with these prototypes (the ``dcosD`` blog variant and
#: ``HPNClassifier``'s many-class default): chosen on validation macro F1 at K = 1,000,
#: d = 100, seed 0, among 15, 20 and 28 (0.951 / 0.957 / 0.950).
COSINE_SCALE = 20.0


def class_means(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean of flattened inputs, in float64, and the per-class counts.

    Args:
        batches: ``(x, labels)`` pairs; x is flattened to (N, F).
        num_classes: K; labels must lie in [0, K).

    Returns:
        ``(means, counts)``: (K, F) float64 (zero rows for classes never seen) and (K,) int64.

    Example:
        >>> x, labels = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), torch.tensor([0, 0, 1])
        >>> means, counts = class_means([(x, labels)], num_classes=3)
        >>> means.tolist(), counts.tolist()
        ([[2.0, 3.0], [5.0, 6.0], [0.0, 0.0]], [2, 1, 0])
    """
    sums, counts = None, torch.zeros(num_classes, dtype=torch.long)
    for x, labels in batches:
        flat = x.reshape(len(x), -1).double()
        labels = labels.long()
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"labels must lie in [0, {num_classes}), got {labels.tolist()[:5]}...")
        if sums is None:
            sums = torch.zeros(num_classes, flat.shape[1], dtype=torch.float64)
        sums.index_add_(0, labels, flat)
        counts += torch.bincount(labels, minlength=num_classes)
    if sums is None:
        raise ValueError("no training examples to compute class means from")
    return sums / counts.clamp_min(1)[:, None], counts


def pca_basis(means: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The centre and the top principal directions of the class means.

    Uses a randomised low-rank SVD (``torch.svd_lowrank``, fixed seed) when the means are
    wide, so K = 100,000 classes of 3,072-d images stays cheap.

    Returns:
        ``(centre, v)``: the (F,) mean of the class means and (F, r) orthonormal directions,
        float64, with r = min(dims, K, F).
    """
    k, width = means.shape
    centre = means.double().mean(0)
    centred = means.double() - centre
    rank = min(dims, k, width)
    if min(k, width) <= 2048:
        _, _, vt = torch.linalg.svd(centred, full_matrices=False)
        return centre, vt[:rank].T
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        _, _, v = torch.svd_lowrank(centred, q=min(rank + 10, k, width), niter=4)
    return centre, v[:, :rank]


def pca_directions(means: torch.Tensor, dims: int) -> torch.Tensor:
    """Centred class means projected on their top ``dims`` principal directions, (K, dims)
    (:func:`pca_basis`); fewer directions than ``dims`` (K - 1 or F) leave trailing zero
    columns."""
    return _projected(means, dims, pca_basis(means, dims))


def _projected(
    means: torch.Tensor, dims: int, basis: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """(K, dims) float64: the means in the ``(centre, directions)`` basis, zero-padded."""
    centre, v = basis
    out = torch.zeros(means.shape[0], dims, dtype=torch.float64)
    out[:, : v.shape[1]] = (means.double() - centre) @ v
    return out


def data_prior_prototypes(
    means: torch.Tensor,
    dims: int,
    seed: int = 0,
    steps: int = SPREAD_STEPS,
    lr: float = SPREAD_LR,
    seen: torch.Tensor | None = None,
) -> torch.Tensor:
    """(K, dims) unit prototypes that follow the layout of the class means: the prototypes
    of :func:`data_prior_layout`, which takes the same arguments."""
    return data_prior_layout(means, dims, seed, steps, lr, seen)[0]


def data_prior_layout(
    means: torch.Tensor,
    dims: int,
    seed: int = 0,
    steps: int = SPREAD_STEPS,
    lr: float = SPREAD_LR,
    seen: torch.Tensor | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Unit prototypes that follow the layout of the class means, and the PCA they came from.

    Args:
        means: (K, F) class mean inputs (:func:`class_means`), K >= 2, finite.
        dims: d >= 1.
        seed: seeds the random rows given to classes without a usable mean.
        steps: separation steps of the spread (0: the normalised PCA start as it is).
        lr: step size of the spread.
        seen: optional (K,) bool, False for classes with no training example; those (and
            classes whose mean is the overall mean) get random unit rows before the spread.

    Returns:
        ``(prototypes, (centre, directions))``: (K, dims) float32 unit rows, and the (F,)
        centre and (F, r) orthonormal directions of :func:`pca_basis` (r <= dims), so an
        input x sits at ``(x - centre) @ directions`` in the layout before the spread.
    """
    means = torch.as_tensor(means)
    if means.ndim != 2 or means.shape[0] < 2:
        raise ValueError(f"means must be (K >= 2, F), got shape {tuple(means.shape)}")
    if dims < 1:
        raise ValueError(f"dims must be >= 1, got {dims}")
    if not torch.isfinite(means).all():
        raise ValueError("class means hold NaN or inf")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    k = means.shape[0]
    basis = pca_basis(means, dims)
    start = _projected(means, dims, basis)
    norms = start.norm(dim=1)
    bad = norms <= 1e-9 * norms.max().clamp_min(1e-300)
    if seen is not None:
        bad |= ~torch.as_tensor(seen, dtype=torch.bool)
    if bad.any():
        g = torch.Generator().manual_seed(seed)
        start[bad] = torch.randn(int(bad.sum()), dims, generator=g, dtype=torch.float64)
    start = normalize(start, dim=1).float()
    if steps == 0:
        return start, basis
    spread, _ = optimized_prototypes(k, dims, seed=seed, steps=steps, lr=lr, init=start)
    return spread, basis
