"""Closed-form prototype sets that are provably optimal.

* ``simplex``: K <= d + 1 points with every pairwise cosine exactly -1/(K-1), the
  vertices of a regular simplex (Rankin's bound says nothing can do better).
* ``orthoplex``: K <= 2d points taken from the cross-polytope {+e_i, -e_i}; every pair has
  cosine 0 or -1, optimal for d + 1 < K <= 2d (more than d + 1 points cannot all be obtuse).
* ``polygon``: the regular K-gon in the first two coordinates; every neighbour pair at
  cos(2 pi / K), optimal on the circle (d = 2) for every K.
* ``e8_roots``: the 240 roots of the E8 lattice in R^8, every pair at cosine <= 1/2, which
  meets Levenshtein's bound for (240, 8) and is therefore optimal; the optimiser does not find
  it from random starts (54.9 degrees instead of 60 over 8 starts).

Both are computed in float64 and returned as float32.
"""

from __future__ import annotations

import itertools

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


def polygon(num_classes: int, dims: int) -> torch.Tensor:
    """Vertices of the regular K-gon in the plane of the first two coordinates.

    On the circle (d = 2) this is the optimum for every K: K points split the circle into K
    arcs, so some arc, and hence some pair, spans at most 2 pi / K.

    Args:
        num_classes: K >= 2.
        dims: d >= 2; coordinates past the first two are zero.

    Returns:
        (K, d) float32 tensor of unit rows; neighbours have cosine cos(2 pi / K).

    Example:
        >>> P = polygon(4, 2)
        >>> [round(float(v), 6) + 0.0 for v in P @ P[0]]
        [1.0, 0.0, -1.0, 0.0]
    """
    if dims < 2:
        raise ValueError(f"polygon: dims must be >= 2, got {dims}")
    _check(num_classes, dims, num_classes, "polygon")
    angles = 2.0 * np.pi * np.arange(num_classes) / num_classes
    out = np.zeros((num_classes, dims))
    out[:, 0], out[:, 1] = np.cos(angles), np.sin(angles)
    return torch.from_numpy(out).float()


def e8_roots(num_classes: int = 240, dims: int = 8) -> torch.Tensor:
    """The first K of the 240 roots of E8, scaled to unit length, zero-padded to d.

    The roots are the 112 vectors with two entries +-1 and six zeros, and the 128 vectors
    (+-1/2, ..., +-1/2) with an even number of minus signs; all have norm sqrt(2) and
    pairwise inner products in {0, +-1/2, +-1} (times 2 before scaling).

    Args:
        num_classes: K, at most 240.
        dims: d >= 8.

    Returns:
        (K, d) float32 tensor of unit rows; every pair has cosine <= 1/2.

    Example:
        >>> P = e8_roots()
        >>> round(float((P @ P.T - 2 * torch.eye(240)).max()), 6)
        0.5
    """
    if dims < 8:
        raise ValueError(f"e8_roots: dims must be >= 8, got {dims}")
    _check(num_classes, dims, 240, "e8_roots")
    roots = []
    for i, j in itertools.combinations(range(8), 2):
        for si, sj in itertools.product((1.0, -1.0), repeat=2):
            v = np.zeros(8)
            v[i], v[j] = si, sj
            roots.append(v)
    for signs in itertools.product((0.5, -0.5), repeat=8):
        if sum(x < 0 for x in signs) % 2 == 0:
            roots.append(np.array(signs))
    out = np.zeros((num_classes, dims))
    out[:, :8] = np.stack(roots)[:num_classes] / np.sqrt(2.0)
    return torch.from_numpy(out).float()
