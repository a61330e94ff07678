"""``auto`` against the best known spherical codes in few dimensions.

Every reference value that has a simple construction is first checked against that
construction, built here independently of the library; the E8 value is checked against
Levenshtein's bound, which it meets.
"""

import itertools
import math

import numpy as np
import pytest
import torch

from hpn import prototypes as protos
from hpn.prototypes import closed_form
from hpn.prototypes.known import KNOWN, compare_auto, known_cosine

GOLDEN = (1 + math.sqrt(5)) / 2


def _worst(points: np.ndarray) -> float:
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    gram = unit @ unit.T
    np.fill_diagonal(gram, -2.0)
    return float(gram.max())


def _icosahedron() -> np.ndarray:
    base = [(0, s1, s2 * GOLDEN) for s1 in (1, -1) for s2 in (1, -1)]
    return np.array([np.roll(v, r) for v in base for r in range(3)], dtype=float)


def _cell24() -> np.ndarray:
    rows = []
    for i, j in itertools.combinations(range(4), 2):
        for si, sj in itertools.product((1, -1), repeat=2):
            v = np.zeros(4)
            v[i], v[j] = si, sj
            rows.append(v)
    return np.array(rows)


def _cell600() -> np.ndarray:
    rows = [s * e for e in np.eye(4) for s in (1, -1)]
    rows += [np.array(v) / 2 for v in itertools.product((0.5 * 2, -0.5 * 2), repeat=4)]
    even = [p for p in itertools.permutations(range(4)) if _parity(p) == 0]
    for signs in itertools.product((1, -1), repeat=3):
        base = np.array([GOLDEN * signs[0], signs[1], signs[2] / GOLDEN, 0.0]) / 2
        rows += [base[list(p)] for p in even]
    return np.array(rows)


def _parity(perm) -> int:
    return sum(a > b for a, b in itertools.combinations(perm, 2)) % 2


def test_reference_values_match_independent_constructions():
    assert len(_cell600()) == 120 and len(_cell24()) == 24 and len(_icosahedron()) == 12
    assert known_cosine(12, 3) == pytest.approx(_worst(_icosahedron()), abs=1e-6)
    assert known_cosine(11, 3) == pytest.approx(_worst(_icosahedron()[:11]), abs=1e-6)
    assert known_cosine(24, 4) == pytest.approx(_worst(_cell24()), abs=1e-9)
    assert known_cosine(120, 4) == pytest.approx(_worst(_cell600()), abs=1e-9)
    # E8 (and the icosahedron) meet Levenshtein's bound: no set can do better.
    assert known_cosine(240, 8) == pytest.approx(protos.levenshtein_bound(240, 8), abs=1e-6)
    assert known_cosine(12, 3) == pytest.approx(protos.levenshtein_bound(12, 3), abs=1e-6)
    for k in (5, 7, 10, 12):
        angles = np.linspace(0, 2 * np.pi, k, endpoint=False)
        circle = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        assert known_cosine(k, 2) == pytest.approx(_worst(circle), abs=1e-9)


def test_no_reference_beats_the_lp_bound():
    for code in KNOWN:
        bound, _ = protos.best_possible_cosine(code.num_classes, code.dims)
        assert code.cosine >= bound - 1e-6, code


@pytest.mark.parametrize("k", [3, 5, 10, 12, 100])
def test_d2_is_the_exact_regular_polygon(k):
    built = protos.build(k, 2)
    assert built.method in ("simplex", "orthoplex", "polygon")
    assert protos.report(built.prototypes).worst_cosine == pytest.approx(
        math.cos(2 * math.pi / k), abs=1e-6
    )


def test_e8_roots_are_240_unit_vectors_at_cosine_at_most_one_half():
    p = closed_form.e8_roots(240, 10).double()
    gram = p @ p.T
    assert torch.allclose(gram.diagonal(), torch.ones(240, dtype=torch.float64))
    off = gram - 2 * torch.eye(240, dtype=torch.float64)
    assert float(off.max()) == pytest.approx(0.5, abs=1e-6)
    assert float(p[:, 8:].abs().max()) == 0.0  # zero-padded


@pytest.mark.slow
def test_auto_is_within_two_percent_of_every_best_known_angle():
    for row in compare_auto(seed=0):
        assert row["ratio"] >= 0.98, row
        assert row["ratio"] <= 1.0 + 1e-4, row  # never better than a proven optimum or the bound


def test_ten_points_in_four_dims_reach_one_sixth_for_every_seed():
    for seed in range(3):
        worst = protos.report(protos.generate(10, 4, seed=seed)).worst_cosine
        assert worst == pytest.approx(1 / 6, abs=1e-4)
