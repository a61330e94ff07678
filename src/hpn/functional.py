"""Pure losses and predictions of hyperspherical prototype networks.

Shapes: N batch, d output dims, K classes. Prototypes are (K, d); they are never updated by
these functions (callers keep them as buffers). Every cosine divides by norms clamped at a
per-dtype floor (:func:`default_eps`), so a zero output gives cosine 0 and a bounded
gradient (:func:`unit`); no ``acos`` is used anywhere. Losses are computed in float32 (or
float64 when given float64), also under autocast. Shapes, labels and (for predictions)
finiteness are checked up front, each failure a one-line ``ValueError``.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import torch

Reduction = Literal["sum", "mean", "none"]


@functools.cache
def default_eps(dtype: torch.dtype) -> float:
    """Norm floor for ``dtype``: the square root of its machine epsilon.

    float16 0.031, bfloat16 0.088, float32 3.5e-4, float64 1.5e-8. It is representable (a
    single 1e-8 for all dtypes is 0 in float16, and 0 / 0 is NaN), 1 / eps is finite in the
    dtype, ordinary outputs (norms near 1) lie far above it, and it keeps the paper loss's
    gradient below 2.6 / eps (:func:`prototype_loss`). Non-float dtypes use the default
    float dtype's floor.
    """
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    return torch.finfo(dtype).eps ** 0.5


#: The float32 floor, the largest of the floors the losses use (they compute in float32 or
#: float64): a row whose norm is above it is a direction in every loss.
EPS = default_eps(torch.float32)


def _loss_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _reduce(values: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "sum":
        return values.sum()
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'sum', 'mean' or 'none', got {reduction!r}")


def unit(x: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """Rows of ``x`` divided by their norms clamped at ``eps`` (zero rows stay zero).

    Args:
        x: (..., d) rows.
        eps: norm floor; None: :func:`default_eps` of ``x.dtype``.

    Gradient: exact for rows with norm >= eps. Below eps the exact Jacobian is I / eps,
    which would scale a zero row's gradient by 2.9e3 (float32) or 6.7e7 (float64); it is
    taken as I instead, the Jacobian of x / max(|x|, 1). The value is unchanged.

    Example:
        >>> unit(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
        tensor([[0.6000, 0.8000],
                [0.0000, 0.0000]])
    """
    eps = default_eps(x.dtype) if eps is None else eps
    norm = x.norm(dim=-1, keepdim=True)
    u = x / norm.clamp_min(eps)
    if not (x.requires_grad and torch.is_grad_enabled()):
        return u
    return torch.where(norm < eps, x + (u - x).detach(), u)  # value u, gradient I below eps


def check_dims(z: torch.Tensor, d: int, whose: str = "the prototypes'") -> None:
    """Refuse outputs unless ``z`` is an (N, d) matrix; the message names both d.

    Args:
        z: outputs.
        d: the dimensionality z must have.
        whose: what d belongs to, for the message ("the prototypes'", "the pole's").
    """
    if z.ndim != 2:
        raise ValueError(f"z must be an (N, d) matrix, got shape {tuple(z.shape)}")
    if z.shape[1] != d:
        raise ValueError(f"z's d is {z.shape[1]} but {whose} d is {d}")


def _prototype_dims(prototypes: torch.Tensor) -> int:
    if prototypes.ndim != 2:
        raise ValueError(f"prototypes must be a (K, d) matrix, got shape {tuple(prototypes.shape)}")
    return prototypes.shape[1]


def check_finite(z: torch.Tensor) -> None:
    """Refuse (N, d) outputs holding NaN or inf, saying how many rows do (one reduction when
    all is well)."""
    if not torch.isfinite(z).all():
        bad = ~torch.isfinite(z).all(dim=1)
        first = int(bad.nonzero()[0])
        raise ValueError(
            f"{int(bad.sum())} of {len(z)} rows of z hold NaN or inf (first: row {first})"
        )


def as_labels(
    labels: Any, num: int, num_classes: int, device: torch.device | None = None
) -> torch.Tensor:
    """Labels as an (N,) long tensor, from a tensor, array or list of integer class indices.

    Args:
        labels: (N,) integers in [0, K).
        num: N, the number of outputs they label.
        num_classes: K.
        device: where the result goes (e.g. the outputs' device).

    Raises:
        ValueError: a non-integer dtype (float, bool), a shape other than (N,), or a label
            outside [0, K); the message names the dtype, shape or label.
    """
    t = torch.as_tensor(labels, device=device)
    if t.numel() == 0:
        t = t.long()  # as_tensor([]) is float
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        flat = t.flatten()
        odd = flat[flat != flat.round()] if t.is_floating_point() else flat
        bad = (odd if len(odd) else flat)[0].item()
        raise ValueError(f"labels must be integer class indices, got dtype {t.dtype} ({bad!r})")
    if t.ndim != 1 or len(t) != num:
        raise ValueError(f"labels must have shape ({num},), got {tuple(t.shape)}")
    if len(t) and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        outside = t[(t < 0) | (t >= num_classes)][0]
        raise ValueError(
            f"label {int(outside)} outside the {num_classes} classes [0, {num_classes - 1}]"
        )
    return t.long()


def _checked(z: torch.Tensor, prototypes: torch.Tensor, labels: Any) -> torch.Tensor:
    """Check (N, d) outputs against (K, d) prototypes; returns the (N,) long labels."""
    check_dims(z, _prototype_dims(prototypes))
    return as_labels(labels, len(z), len(prototypes), z.device)


def cosine_to(z: torch.Tensor, targets: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """Row-wise cosine between outputs and the prototype each row should reach.

    Args:
        z: (N, d) outputs.
        targets: (N, d) target prototypes (row i is the prototype of example i), or (d,) for
            one shared prototype.
        eps: norm floor; None: :func:`default_eps` of each tensor's dtype.

    Returns:
        (N,) cosines.
    """
    if targets.ndim == 1:
        check_dims(z, len(targets), "the target's")
    elif targets.shape != z.shape:
        raise ValueError(
            f"targets must be (d,) or z's shape {tuple(z.shape)}, got {tuple(targets.shape)}"
        )
    return (unit(z, eps) * unit(targets, eps)).sum(dim=-1)


def prototype_loss(
    z: torch.Tensor,
    prototypes: torch.Tensor,
    labels: torch.Tensor,
    reduction: Reduction = "sum",
    eps: float | None = None,
) -> torch.Tensor:
    """The paper's classification loss L_c = sum_i (1 - cos(z_i, p_{y_i}))^2.

    Only the target prototype of each example is touched, so the cost is O(N d) whatever K.
    For |z| >= eps the gradient is the paper's dL/dz = 2 (1 - cos) (cos z/|z|^2 - p/(|z||p|)),
    of norm 2 (1 - cos) sin(angle) / |z| <= (3 sqrt(3) / 2) / |z|. Near zero it is bounded
    instead: for |z| < eps it is -2 (1 - cos) p/|p| (see :func:`unit`), of norm <= 4 and
    exactly 2 at z = 0. So every row's gradient norm is at most 2.6 / eps: 7.5e3 in float32
    (also for float16 and bfloat16 outputs, computed in float32) and 1.7e8 in float64.

    Args:
        z: (N, d) network outputs.
        prototypes: (K, d) fixed prototypes.
        labels: (N,) class indices in [0, K): a tensor, array or list of integers.
        reduction: ``sum`` (the paper), ``mean`` or ``none``.
        eps: norm floor; None: :func:`default_eps` of the loss dtype.

    Raises:
        ValueError: z not (N, d) with the prototypes' d, or bad labels (:func:`as_labels`).

    Returns:
        Scalar, or (N,) for ``none``.

    Example:
        >>> P = torch.eye(3)
        >>> z = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
        >>> prototype_loss(z, P, torch.tensor([0, 1]), reduction="none")
        tensor([0.0000, 0.0858])
    """
    labels = _checked(z, prototypes, labels)
    dtype = _loss_dtype(z)
    cos = cosine_to(z.to(dtype), prototypes.to(dtype)[labels], eps)
    return _reduce((1.0 - cos) ** 2, reduction)


def default_scale(num_classes: int) -> float:
    """AdaCos' fixed scale s = sqrt(2) ln(K - 1) for a softmax over K cosines (>= 1).

    It is the scale at which the class probability can still move from near 0 to near 1 as
    the target cosine moves from 0 (orthogonal) to 1, with the K - 1 others orthogonal.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return max(2**0.5 * math.log(num_classes - 1), 1.0)


def check_softmax_params(num_classes: int, scale: float | None, margin: float) -> float:
    """Validate the cosine softmax's scale and margin; returns the scale to use.

    Raises:
        ValueError: a scale that is not a positive number, or a negative margin.
    """
    s = default_scale(num_classes) if scale is None else float(scale)
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"scale must be a positive number, got {scale}")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be >= 0, got {margin}")
    return s


def prototype_softmax_loss(
    z: torch.Tensor,
    prototypes: torch.Tensor,
    labels: torch.Tensor,
    scale: float | None = None,
    margin: float = 0.0,
    reduction: Reduction = "mean",
    eps: float | None = None,
) -> torch.Tensor:
    """Cross-entropy over scaled cosines to fixed prototypes: -log softmax(s (cos - m e_y))_y.

    The variant the DL2PA and equiangular-basis works train with. Unlike the paper's
    :func:`prototype_loss` it also pushes each output away from the other classes'
    prototypes (the paper's loss only pulls towards the target), at the price of an N x K
    cosine matrix per batch. With ``margin`` m > 0 the target cosine is lowered by m
    before the softmax (CosFace's additive margin).

    Args:
        z: (N, d) outputs; prototypes: (K, d) fixed; labels: (N,) in [0, K).
        scale: s > 0; None uses :func:`default_scale` of K.
        margin: m >= 0.
        reduction: ``mean`` (default), ``sum`` or ``none``.
        eps: norm floor; None: :func:`default_eps` of the loss dtype.

    Example:
        >>> P = torch.eye(2)
        >>> z = torch.tensor([[1.0, 0.0]])
        >>> round(float(prototype_softmax_loss(z, P, torch.tensor([0]), scale=2.0)), 6)
        0.126928
        >>> round(math.log(1 + math.exp(-2)), 6)
        0.126928
    """
    labels = _checked(z, prototypes, labels)
    s = check_softmax_params(len(prototypes), scale, margin)
    dtype = _loss_dtype(z)
    cos = unit(z.to(dtype), eps) @ unit(prototypes.to(dtype), eps).T
    if margin:
        cos = cos - margin * torch.nn.functional.one_hot(labels, len(prototypes)).to(dtype)
    return torch.nn.functional.cross_entropy(s * cos, labels, reduction=reduction)


def _neighbour_rows(
    neighbours: torch.Tensor, num_classes: int, labels: torch.Tensor
) -> torch.Tensor:
    """The (N, m) neighbour rows of the labels, checked: a (K, m) integer table with m >= 1,
    entries in [0, K), no row listing its own class. Only the N rows used are read, so the
    check costs O(N m), not O(K m)."""
    if neighbours.ndim != 2 or len(neighbours) != num_classes or neighbours.shape[1] < 1:
        raise ValueError(
            f"neighbours must be a (K, m) table with K = {num_classes} and m >= 1, got shape "
            f"{tuple(neighbours.shape)}"
        )
    if neighbours.is_floating_point() or neighbours.is_complex() or neighbours.dtype == torch.bool:
        raise ValueError(f"neighbours must hold integer class indices, got {neighbours.dtype}")
    rows = neighbours[labels.to(neighbours.device)].to(labels.device).long()
    if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= num_classes):
        bad = rows[(rows < 0) | (rows >= num_classes)][0]
        raise ValueError(f"neighbours holds {int(bad)}, outside the {num_classes} classes")
    own = (rows == labels[:, None]).any(dim=1)
    if own.any():
        c = int(labels[own][0])
        raise ValueError(f"row {c} of neighbours lists class {c} itself")
    return rows


def _clashes(candidates: torch.Tensor, kinds: torch.Tensor) -> torch.Tensor:
    """(N, u) bool: ``kinds[j]`` (sorted, distinct) is among row i of the (N, c)
    ``candidates``. A binary search per candidate, O(N c log u), instead of comparing
    every candidate with every kind (an (N, c, u) tensor, ten times slower at c = 33,
    u = 256)."""
    # bucketize is searchsorted (left) with the arguments swapped, and faster on CPU
    at = torch.bucketize(candidates, kinds).clamp_max(len(kinds) - 1)  # (N, c)
    hit = kinds[at] == candidates
    rows = torch.arange(len(candidates), device=candidates.device)[:, None].expand_as(at)
    clash = torch.zeros(len(candidates), len(kinds), dtype=torch.bool, device=candidates.device)
    clash[rows[hit], at[hit]] = True
    return clash


def neighbour_softmax_loss(
    z: torch.Tensor,
    prototypes: torch.Tensor,
    labels: torch.Tensor,
    neighbours: torch.Tensor,
    scale: float | None = None,
    margin: float = 0.0,
    reduction: Reduction = "mean",
    negatives: torch.Tensor | None = None,
    eps: float | None = None,
) -> torch.Tensor:
    """Cosine softmax restricted to the target and the prototypes nearest to the target's.

    With c_ij = cos(z_i, p_j), y = y_i, n(y) = ``neighbours[y]`` the m precomputed nearest
    prototypes of p_y (m = ``neighbours.shape[1]``) and R the optional r ``negatives`` drawn
    uniformly for the whole batch::

        a_i    = s (c_iy - margin)
        loss_i = -a_i + log( e^{a_i} + sum_{j in n(y)} e^{s c_ij}
                                     + (K / r) sum_{j in R, j not y, j not in n(y)} e^{s c_ij} )

    i.e. :func:`prototype_softmax_loss` with the sum over all K classes replaced by the sum
    over the m wrong classes most likely to be confused with y (the prototypes are fixed, so
    these are known before training) plus, with negatives, an unbiased estimate of the sum
    over the other K - 1 - m classes: each uniform draw stands for K / r classes (the
    log-Q correction of a sampled softmax). The full softmax weighs wrong class j by
    e^{s c_ij}, so once outputs lie near their targets most of its push comes from the
    prototypes nearest the target; early in training, outputs far from their targets also
    need the push from the rest, which the negatives give. Cost: O(N (m + 1 + r) d) time and
    memory (plus an (N, r) mask) whatever K, where the full softmax costs O(N K d). When each
    row of ``neighbours`` lists all K - 1 other classes it *is* the full cosine softmax.

    The neighbour table is fixed with the prototypes, so it is computed once
    (:func:`hpn.prototypes.quality.nearest_neighbours`, blockwise). A drawn negative equal to
    a row's target or listed neighbour is masked for that row (it would count twice), which
    keeps the estimate unbiased; repeated draws count as often as they are drawn.

    Args:
        z: (N, d) outputs.
        prototypes: (K, d) fixed prototypes; only the rows used are read and normalised.
        labels: (N,) class indices in [0, K).
        neighbours: (K, m) integer table, m >= 1; row c lists the m classes whose prototypes
            lie nearest to p_c, without c itself (only the N rows used are checked).
        scale: s > 0; None uses :func:`default_scale` of K, as the full softmax.
        margin: >= 0, subtracted from the target's cosine (CosFace's additive margin).
        reduction: ``mean`` (default), ``sum`` or ``none``.
        negatives: optional (r,) class indices drawn uniformly with replacement from [0, K),
            shared by the batch, each scored as K / r wrong classes. None: neighbours only.
        eps: norm floor; None: :func:`default_eps` of the loss dtype.

    Returns:
        Scalar, or (N,) for ``none``.

    Raises:
        ValueError: bad shapes or labels, a neighbour table that is not (K, m) integers in
            [0, K) or lists a class as its own neighbour, or bad negatives.

    Example:
        >>> P = torch.eye(3)
        >>> table = torch.tensor([[1, 2], [0, 2], [0, 1]])  # every other class: the full softmax
        >>> z, y = torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([0])
        >>> a = neighbour_softmax_loss(z, P, y, table, scale=4.0)
        >>> bool(torch.isclose(a, prototype_softmax_loss(z, P, y, scale=4.0)))
        True
    """
    labels = _checked(z, prototypes, labels)
    num_classes = len(prototypes)
    s = check_softmax_params(num_classes, scale, margin)
    candidates = torch.cat([labels[:, None], _neighbour_rows(neighbours, num_classes, labels)], 1)
    dtype = _loss_dtype(z)
    zu = unit(z.to(dtype), eps)
    # gather first: only the (N, m + 1) rows used are touched; the raw rows' dot products
    # divided by their norms are the unit rows' (no normalised copy of the gather is made)
    flat = prototypes.to(z.device).index_select(0, candidates.reshape(-1)).to(dtype)
    near = flat.view(*candidates.shape, prototypes.shape[1])  # (N, m + 1, d)
    floor = default_eps(dtype) if eps is None else eps
    # a product and a sum: three times faster than bmm for these (m + 1) x d slices on CPU
    cos = (near * zu[:, None, :]).sum(2) / near.norm(dim=2).clamp_min(floor)  # target: column 0
    if margin:
        cos = torch.cat([cos[:, :1] - margin, cos[:, 1:]], dim=1)
    logits = s * cos
    negatives = None if negatives is None else torch.as_tensor(negatives, device=z.device)
    if negatives is not None and negatives.numel():
        if negatives.ndim != 1 or negatives.is_floating_point() or negatives.dtype == torch.bool:
            raise ValueError(
                "negatives must be an (r,) vector of class indices, got shape "
                f"{tuple(negatives.shape)} of {negatives.dtype}"
            )
        if int(negatives.min()) < 0 or int(negatives.max()) >= num_classes:
            bad = negatives[(negatives < 0) | (negatives >= num_classes)][0]
            raise ValueError(f"negatives must lie in [0, {num_classes}), got {int(bad)}")
        kinds, counts = torch.unique(negatives, return_counts=True)  # (u,) sorted, (u,)
        sampled = unit(prototypes.to(z.device).index_select(0, kinds).to(dtype), eps)  # (u, d)
        # each draw stands for K / r classes (uniform draws): the log-Q correction; a class
        # drawn n times is one column weighted n K / r, the same sum as n equal columns
        weight = torch.log(counts.to(dtype) * (num_classes / len(negatives)))
        extra = s * (zu @ sampled.T) + weight  # (N, u)
        logits = torch.cat([logits, extra.masked_fill(_clashes(candidates, kinds), -math.inf)], 1)
    target = torch.zeros(len(z), dtype=torch.long, device=z.device)
    return torch.nn.functional.cross_entropy(logits, target, reduction=reduction)


@torch.no_grad()
def nearest_prototype(
    z: torch.Tensor,
    prototypes: torch.Tensor,
    chunk_size: int = 16_384,
    eps: float | None = None,
    query_block: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """c* = argmax_c cos(z, p_c), over blocks of queries and chunks of prototypes.

    One (query_block, chunk_size) score buffer is allocated once and reused, so a million
    prototypes never build an N x K matrix, and no chunk pays for fresh pages (throughput:
    ``hpn bench scale``, docs/results/many-classes.md).

    Args:
        z: (N, d) outputs.
        prototypes: (K, d) prototypes.
        chunk_size: prototypes compared at once.
        eps: norm floor; None: float32's (:func:`default_eps`).
        query_block: queries scored at once.

    Returns:
        ``(classes, cosines)``: (N,) long indices and (N,) their cosines.

    Raises:
        ValueError: z not (N, d) with the prototypes' d, or rows of z holding NaN or inf
            (they would all come out as class 0).

    Example:
        >>> nearest_prototype(torch.tensor([[0.1, 2.0]]), torch.eye(2))[0]
        tensor([1])
    """
    if chunk_size < 1 or query_block < 1:
        raise ValueError(
            f"chunk_size and query_block must be >= 1, got {chunk_size} and {query_block}"
        )
    check_dims(z, _prototype_dims(prototypes))
    check_finite(z)
    zu = unit(z.float(), eps)
    n, k = len(z), len(prototypes)
    best_cos = torch.full((n,), -torch.inf, device=z.device)
    best_idx = torch.zeros(n, dtype=torch.long, device=z.device)
    buffer = torch.empty(min(n, query_block) * min(k, chunk_size), device=z.device)
    for start in range(0, k, chunk_size):
        chunk = unit(prototypes[start : start + chunk_size].float().to(z.device), eps)
        for q in range(0, n, query_block):
            zq = zu[q : q + query_block]
            scores = buffer[: len(zq) * len(chunk)].view(len(zq), len(chunk))
            torch.mm(zq, chunk.T, out=scores)
            cos, idx = scores.max(dim=1)
            block_cos, block_idx = best_cos[q : q + query_block], best_idx[q : q + query_block]
            better = cos > block_cos  # strict: the earlier chunk keeps a tie
            block_cos.copy_(torch.where(better, cos, block_cos))
            block_idx.copy_(torch.where(better, idx + start, block_idx))
    return best_idx, best_cos


def regression_bounds(values: torch.Tensor) -> tuple[float, float]:
    """(v_l, v_u): the smallest and largest training target, the two poles' values."""
    values = torch.as_tensor(values)
    if values.numel() < 2 or not torch.isfinite(values).all():
        raise ValueError("regression targets need at least two finite values")
    low, high = float(values.min()), float(values.max())
    if low == high:
        raise ValueError(f"all regression targets equal {low}; the bounds need v_l < v_u")
    return low, high


def check_regression_bounds(lower: float, upper: float) -> tuple[float, float]:
    """(v_l, v_u) as floats, refused unless both are finite and v_l < v_u."""
    low, high = float(lower), float(upper)
    for name, value in (("lower", low), ("upper", high)):
        if not math.isfinite(value):
            raise ValueError(f"regression bounds must be finite, got {name}={value}")
    if not high > low:
        raise ValueError(f"need lower < upper, got lower={lower}, upper={upper}")
    return low, high


def regression_target(y: torch.Tensor, lower: float, upper: float) -> torch.Tensor:
    """r = 2 (y - v_l) / (v_u - v_l) - 1: v_l maps to -1, v_u to +1 (the cosine to p_u)."""
    check_regression_bounds(lower, upper)
    return 2.0 * (y - lower) / (upper - lower) - 1.0


def regression_inverse(cos: torch.Tensor, lower: float, upper: float) -> torch.Tensor:
    """y = v_l + (cos + 1) / 2 (v_u - v_l): the prediction from the cosine to p_u."""
    check_regression_bounds(lower, upper)
    return lower + (cos + 1.0) * 0.5 * (upper - lower)


def regression_loss(
    z: torch.Tensor,
    upper_prototype: torch.Tensor,
    y: torch.Tensor,
    lower: float,
    upper: float,
    reduction: Reduction = "sum",
    eps: float | None = None,
) -> torch.Tensor:
    """The paper's regression loss L_r = sum_i (r_i - cos(z_i, p_u))^2.

    Args:
        z: (N, d) outputs.
        upper_prototype: (d,) p_u; the lower bound's prototype is -p_u.
        y: (N,) targets (a tensor, array or list).
        lower: v_l, from the training data (:func:`regression_bounds`).
        upper: v_u.
        reduction: ``sum`` (the paper), ``mean`` or ``none``.
        eps: norm floor; None: :func:`default_eps` of the loss dtype.

    Raises:
        ValueError: z not (N, d) with the pole's d, y not (N,), or bad bounds.

    Example:
        >>> z = torch.tensor([[1.0, 1.0]])
        >>> loss = regression_loss(z, torch.tensor([1.0, 0.0]), torch.tensor([5.0]), 0.0, 10.0)
        >>> round(float(loss), 6)  # r = 0, cos = 1/sqrt(2)
        0.5
    """
    if upper_prototype.ndim != 1:
        raise ValueError(
            f"the pole must be a (d,) vector, got shape {tuple(upper_prototype.shape)}"
        )
    check_dims(z, len(upper_prototype), "the pole's")
    y = torch.as_tensor(y, device=z.device)
    if y.shape != z.shape[:1]:
        raise ValueError(f"targets must have shape ({len(z)},), got {tuple(y.shape)}")
    dtype = _loss_dtype(z)
    cos = cosine_to(z.to(dtype), upper_prototype.to(dtype), eps)
    r = regression_target(y.to(dtype), lower, upper)
    return _reduce((r - cos) ** 2, reduction)


def multitask_loss(
    classification: torch.Tensor, regression: torch.Tensor, task_weight: float = 0.5
) -> torch.Tensor:
    """L = t L_c + (1 - t) L_r, both losses on the same sphere and of the same form."""
    if not 0.0 <= task_weight <= 1.0:
        raise ValueError(f"task_weight must be in [0, 1], got {task_weight}")
    return task_weight * classification + (1.0 - task_weight) * regression
