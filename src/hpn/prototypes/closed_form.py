"""Closed-form prototype sets that are provably optimal.

* ``simplex``: K <= d + 1 points with every pairwise cosine exactly -1/(K-1), the
  vertices of a regular simplex (Rankin's bound says nothing can do better).
* ``orthoplex``: K <= 2d points taken from the cross-polytope {+e_i, -e_i}; every pair has
  cosine 0 or -1, optimal for d + 1 < K <= 2d (more than d + 1 points cannot all be obtuse).

Both are computed in float64 and returned as float32.
"""

from __future__ import annotations

import numpy as np
import torch


def _check(num_classes: int, dims: int, limit: int, name: str) -> None:
    if num_classes < 2:
        raise ValueError(f"{name}: num_classes must be >= 2, got {num_classes}")
    if dims < 1:
        raise ValueError(f"{name}: dims must be >= 1, got {dims}")
    if num_classes > limit:
        raise ValueError(
            f"{name}: supports at most {limit} classes in {dims} dims, got {num_classes}"
        )


def simplex(num_classes: int, dims: int) -> torch.Tensor:
    """Vertices of a regular simplex with K vertices in R^d.

    The centred standard basis e_i - 1/K spans a (K-1)-dim subspace; expressing it in the
    orthonormal Helmert basis of that subspace gives coordinates in R^(K-1), zero-padded to d.

    Args:
        num_classes: K, at most ``dims + 1``.
        dims: d.

    Returns:
        (K, d) float32 tensor of unit rows with every off-diagonal cosine -1/(K-1).

    Example:
        >>> P = simplex(3, 2)
        >>> round(float(P[0] @ P[1]), 6)
        -0.5
    """
    _check(num_classes, dims, dims + 1, "simplex")
    k = num_classes
    # Helmert basis: row j (1..K-1) is (1, ..., 1, -j, 0, ...)/sqrt(j(j+1)), orthogonal to ones.
    basis = np.zeros((k - 1, k))
    for j in range(1, k):
        basis[j - 1, :j] = 1.0
        basis[j - 1, j] = -float(j)
        basis[j - 1] /= np.sqrt(j * (j + 1.0))
    centred = np.eye(k) - 1.0 / k
    coords = centred @ basis.T  # (K, K-1)
    coords /= np.linalg.norm(coords, axis=1, keepdims=True)
    out = np.zeros((k, dims))
    out[:, : k - 1] = coords
    return torch.from_numpy(out).float()


def orthoplex(num_classes: int, dims: int) -> torch.Tensor:
    """K vertices of the cross-polytope: e_1..e_d then -e_1, -e_2, ... as needed.

    Args:
        num_classes: K, at most ``2 * dims``.
        dims: d.

    Returns:
        (K, d) float32 tensor; pairwise cosines are 0 or -1.

    Example:
        >>> orthoplex(3, 2).tolist()
        [[1.0, 0.0], [0.0, 1.0], [-1.0, -0.0]]
    """
    _check(num_classes, dims, 2 * dims, "orthoplex")
    eye = torch.eye(dims)
    return torch.cat([eye, -eye])[:num_classes].contiguous()
