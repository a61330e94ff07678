"""The best worst-pair cosine that geometry allows for K points on S^(d-1).

``best_possible_cosine(K, d)`` returns a value s* such that every set of K unit vectors in
R^d has a pair with cosine >= s*:

* exact where the optimum is known: K <= d + 1 (regular simplex, -1/(K-1)), d + 1 < K <= 2d
  (0; the cross-polytope attains it), d = 2 (regular polygon, cos(2 pi / K)), d = 1 (K = 2);
* otherwise the Levenshtein linear-programming bound, inverted: s* is the smallest s with
  L(d, s) >= K, where L(d, s) bounds the size of any spherical code with all inner
  products <= s (V. I. Levenshtein, "Universal bounds for codes and designs", 1998).

L(n, s) is piecewise. With P_i the Gegenbauer polynomials for S^(n-1) normalised to
P_i(1) = 1 (Jacobi P^(a, a), a = (n-3)/2) and t_k^(1,0), t_k^(1,1) the largest zeros of the
Jacobi polynomials P_k^(a+1, a) and P_k^(a+1, a+1):

    L_{2k-1}(n, s) = C(k+n-3, k-1) [ (2k+n-3)/(n-1) - (P_{k-1}(s) - P_k(s)) / ((1-s) P_k(s)) ]
        for s in [t_{k-1}^(1,1), t_k^(1,0)],   (t_0^(1,1) = -1)
    L_{2k}(n, s)   = C(k+n-2, k)   [ (2k+n-1)/(n-1)
                     - (1+s)(P_k(s) - P_{k+1}(s)) / ((1-s)(P_k(s) + P_{k+1}(s))) ]
        for s in [t_k^(1,0), t_k^(1,1)].

L_1 = (s-1)/s is the simplex bound and L_2 = 2n(1-s)/(1-ns) the cross-polytope one; the bound
is attained, for example, by the 240 roots of E8 (n = 8, s = 1/2) and by 4,224 points in 64
dims at s = 1/8 (Kerdock code plus cross-polytope).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.special import comb, eval_jacobi, roots_jacobi


def _gegenbauer(k: int, n: int, s: float) -> float:
    a = (n - 3) / 2.0
    return float(eval_jacobi(k, a, a, s) / eval_jacobi(k, a, a, 1.0))


@lru_cache(maxsize=4096)
def _largest_zero(k: int, n: int, shift_a: int, shift_b: int) -> float:
    if k == 0:
        return -1.0
    a = (n - 3) / 2.0
    roots, _ = roots_jacobi(k, a + shift_a, a + shift_b)
    return float(np.max(roots))


def levenshtein_function(n: int, s: float) -> float:
    """Levenshtein's upper bound on the size of a code in S^(n-1) with inner products <= s.

    Args:
        n: dimension of the ambient space (n >= 3).
        s: largest allowed inner product, -1 <= s < 1.

    Returns:
        L(n, s), a real number (the code size is at most its floor).

    Example:
        >>> round(levenshtein_function(8, 0.5), 6)
        240.0
    """
    if n < 3:
        raise ValueError(f"levenshtein_function needs n >= 3, got {n}")
    if not -1.0 <= s < 1.0:
        raise ValueError(f"inner product s must be in [-1, 1), got {s}")
    k = 1
    while True:
        lo = _largest_zero(k - 1, n, 1, 1)
        mid = _largest_zero(k, n, 1, 0)
        hi = _largest_zero(k, n, 1, 1)
        if s <= mid and s >= lo:
            pk1, pk = _gegenbauer(k - 1, n, s), _gegenbauer(k, n, s)
            lead = comb(k + n - 3, k - 1, exact=False)
            return float(lead * ((2 * k + n - 3) / (n - 1) - (pk1 - pk) / ((1 - s) * pk)))
        if mid <= s <= hi:
            pk, pk1 = _gegenbauer(k, n, s), _gegenbauer(k + 1, n, s)
            lead = comb(k + n - 2, k, exact=False)
            frac = (1 + s) * (pk - pk1) / ((1 - s) * (pk + pk1))
            return float(lead * ((2 * k + n - 1) / (n - 1) - frac))
        k += 1
        if k > 10_000:  # pragma: no cover - s is within reach for any realistic K
            raise ValueError(f"s = {s} too close to 1 for the Levenshtein bound")


def levenshtein_bound(num_classes: int, dims: int, tol: float = 1e-10) -> float:
    """Smallest s with L(dims, s) >= K: no K points in S^(dims-1) have all cosines below it.

    Example:
        >>> round(levenshtein_bound(4, 3), 6), round(levenshtein_bound(240, 8), 6)  # both tight
        (-0.333333, 0.5)
    """
    lo, hi = -1.0, 1.0 - 1e-12
    if levenshtein_function(dims, lo + 1e-15) >= num_classes:
        return lo
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if levenshtein_function(dims, mid) >= num_classes:
            hi = mid
        else:
            lo = mid
    return hi


def best_possible_cosine(num_classes: int, dims: int) -> tuple[float, bool]:
    """Lower bound on the worst-pair cosine of any K points on S^(d-1).

    Args:
        num_classes: K >= 2.
        dims: d >= 1.

    Returns:
        ``(value, exact)``: ``exact`` is True where the value is the known optimum
        (K <= 2d, or d <= 2), False where it is the Levenshtein bound.

    Example:
        >>> best_possible_cosine(100, 100)
        (-0.010101010101010102, True)
        >>> best_possible_cosine(300, 100)[1]
        False
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if dims < 1:
        raise ValueError(f"dims must be >= 1, got {dims}")
    if dims == 1:
        if num_classes > 2:
            raise ValueError(f"at most 2 points fit on S^0 (dims=1), got num_classes={num_classes}")
        return -1.0, True
    if num_classes <= dims + 1:
        return -1.0 / (num_classes - 1), True
    if num_classes <= 2 * dims:
        return 0.0, True
    if dims == 2:
        return math.cos(2 * math.pi / num_classes), True
    return levenshtein_bound(num_classes, dims), False
