import itertools
import math

import pytest
from scipy.special import eval_gegenbauer

from hpn.prototypes import bounds


@pytest.mark.parametrize(
    ("n", "s", "size"),
    [
        (8, 0.5, 240),  # E8 root system, tight
        (24, 0.5, 196560),  # Leech lattice kissing configuration, tight
        (3, 1 / math.sqrt(5), 12),  # icosahedron, tight
        (10, 0.0, 20),  # cross-polytope: L_2(n, 0) = 2n
        (10, -0.1, 11),  # simplex: L_1 = (s - 1)/s
    ],
)
def test_levenshtein_function_at_known_tight_codes(n, s, size):
    assert bounds.levenshtein_function(n, s) == pytest.approx(size, rel=1e-9)


def test_low_pieces_match_their_closed_forms():
    n = 17
    for s in [-0.9, -0.5, -0.2, -1 / n - 1e-9]:
        assert bounds.levenshtein_function(n, s) == pytest.approx((s - 1) / s)
    for s in [-1 / n + 1e-9, -0.03, -0.01, 0.0]:
        assert bounds.levenshtein_function(n, s) == pytest.approx(2 * n * (1 - s) / (1 - n * s))


def test_gegenbauer_normalisation_agrees_with_scipy():
    n, k, s = 12, 4, 0.3
    alpha = (n - 2) / 2
    ref = eval_gegenbauer(k, alpha, s) / eval_gegenbauer(k, alpha, 1.0)
    assert bounds._gegenbauer(k, n, s) == pytest.approx(ref, rel=1e-12)


def test_levenshtein_function_is_continuous_and_increasing():
    n = 20
    values = [bounds.levenshtein_function(n, -0.99 + 0.01 * i) for i in range(190)]
    assert all(b > a for a, b in itertools.pairwise(values))
    # the pieces L_{2k-1}, L_{2k} meet at the zeros t_k^(1,0) and t_k^(1,1)
    for k in range(1, 6):
        for shift_b in (0, 1):
            t = bounds._largest_zero(k, n, 1, shift_b)
            left = bounds.levenshtein_function(n, t - 1e-9)
            right = bounds.levenshtein_function(n, t + 1e-9)
            assert right == pytest.approx(left, rel=1e-5)


@pytest.mark.parametrize(
    ("k", "d", "value", "exact"),
    [
        (100, 100, -1 / 99, True),
        (101, 100, -1 / 100, True),
        (150, 100, 0.0, True),
        (200, 100, 0.0, True),
        (6, 2, 0.5, True),  # hexagon
        (2, 1, -1.0, True),
        (240, 8, 0.5, False),
        (4, 3, -1 / 3, True),
    ],
)
def test_best_possible_cosine_known_cases(k, d, value, exact):
    got, is_exact = bounds.best_possible_cosine(k, d)
    assert is_exact is exact
    assert got == pytest.approx(value, abs=1e-8)


@pytest.mark.parametrize(
    ("k", "d", "value"),
    [
        (100, 25, 0.069),
        (200, 50, 0.037),
        (1000, 100, 0.054),
        (10_000, 128, 0.083),
        (100_000, 128, 0.126),
    ],
)
def test_bound_values_quoted_in_the_issue(k, d, value):
    assert bounds.best_possible_cosine(k, d)[0] == pytest.approx(value, abs=6e-4)


def test_inverted_bound_is_where_the_function_reaches_k():
    k, d = 1000, 100
    s = bounds.levenshtein_bound(k, d)
    assert bounds.levenshtein_function(d, s) >= k
    assert bounds.levenshtein_function(d, s - 1e-6) < k


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="num_classes"):
        bounds.best_possible_cosine(1, 5)
    with pytest.raises(ValueError, match="dims"):
        bounds.best_possible_cosine(5, 0)
    with pytest.raises(ValueError, match="at most 2"):
        bounds.best_possible_cosine(3, 1)
