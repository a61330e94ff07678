"""Tests for hpn.prototypes.codes: BCH and Kerdock code prototypes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hpn.prototypes import codes
from hpn.prototypes.codes import CodeSpec, best_code, code_families, code_prototypes


def bch(length: int, k: int) -> CodeSpec:
    (spec,) = [s for s in code_families(length) if s.family == "bch" and s.k == k]
    return spec


def kerdock(length: int) -> CodeSpec:
    (spec,) = [s for s in code_families(length) if s.family == "kerdock"]
    return spec


def all_codewords(spec: CodeSpec) -> np.ndarray:
    """All 2^k codeword bits of a BCH member, row i = encoding of message i."""
    messages = np.arange(2**spec.k, dtype="<i8").view(np.uint8).reshape(-1, 8)
    gen = codes._bch_generator(spec.length.bit_length() - 1, spec.designed_distance)
    return codes._encode(messages[:, : (spec.k + 7) // 8], gen)


def max_offdiag_cosine(points: torch.Tensor, block: int = 2048) -> float:
    points = points.double()
    worst = -2.0
    for start in range(0, len(points), block):
        gram = points[start : start + block] @ points.T
        rows = torch.arange(gram.shape[0])
        gram[rows, rows + start] = -2.0
        worst = max(worst, float(gram.max()))
    return worst


# ---------------------------------------------------------------------------- BCH algebra


@pytest.mark.parametrize("m", range(2, 13))
def test_primitive_polynomials_have_full_order(m):
    exp = codes._gf_exp(m)  # raises if alpha has order < 2^m - 1
    assert len(np.unique(exp)) == 2**m - 1


def test_bch_127_dimensions_follow_designed_distance():
    members = dict((delta, k) for k, delta in codes._bch_members(7))
    assert [members[d] for d in (3, 5, 7, 9, 11, 13, 15)] == [120, 113, 106, 99, 92, 85, 78]


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        # (k, extended distance) of every distinct narrow-sense BCH code, from published tables
        (32, [(31, 2), (26, 4), (21, 6), (16, 8), (11, 12), (6, 16), (1, 32)]),
        (64, [(63, 2), (57, 4), (51, 6), (45, 8), (39, 10), (36, 12), (30, 14)]),
        (64, [(24, 16), (18, 22), (16, 24), (10, 28), (7, 32), (1, 64)]),
    ],
)
def test_bch_members_at_length(length, expected):
    got = sorted(
        ((s.k, s.min_distance) for s in code_families(length) if s.family == "bch"), reverse=True
    )
    assert set(expected) <= set(got)
    assert len(got) == {32: 7, 64: 13}[length]


@pytest.mark.parametrize(
    ("length", "k", "distance"),
    [
        (64, 16, 24),
        (128, 15, 56),
        (32, 6, 16),
        (128, 22, 48),
        (64, 18, 22),
        (128, 8, 64),
        (1024, 11, 512),
    ],
)
def test_known_extended_bch_parameters(length, k, distance):
    spec = bch(length, k)
    assert spec.min_distance == distance
    assert spec.size == 2**k
    assert spec.max_cosine == 1 - 2 * distance / length


def test_generator_matrix_has_full_rank_and_even_rows():
    gen = codes._bch_generator(7, 47).astype(np.int64)  # [128, 22, 48]
    assert gen.shape == (22, 128)
    assert np.all(gen.sum(axis=1) % 2 == 0)  # extended code: every codeword has even weight
    assert np.linalg.matrix_rank(gen.astype(float)) == 22


@pytest.mark.parametrize(
    ("length", "k"),
    [(16, 5), (16, 7), (16, 11), (32, 6), (32, 11), (32, 16), (64, 16), (64, 18), (128, 15)],
)
def test_bch_minimum_distance_by_brute_force(length, k):
    spec = bch(length, k)
    words = all_codewords(spec)
    assert len(np.unique(np.packbits(words, axis=1), axis=0)) == 2**k  # injective encoding
    weights = words[1:].sum(axis=1)  # linear code: min distance = min nonzero weight
    assert weights.min() == spec.min_distance


def test_biorthogonal_code_cosines_are_zero_or_minus_one():
    spec = bch(32, 6)
    points, _ = code_prototypes(64, 32, spec=spec)
    gram = (points @ points.T).numpy()
    off = gram[~np.eye(64, dtype=bool)]
    assert np.allclose(np.sort(np.unique(off.round(6))), [-1.0, 0.0])


def test_bch_gram_matches_guarantee_on_whole_code():
    spec = bch(32, 11)
    points, _ = code_prototypes(spec.size, 32, spec=spec, seed=3)
    assert max_offdiag_cosine(points) == pytest.approx(spec.max_cosine, abs=1e-6)


# ---------------------------------------------------------------------------- Kerdock


@pytest.mark.parametrize("m", [3, 5, 7, 9, 11])
def test_hensel_lift_reduces_to_the_binary_polynomial(m):
    h = codes._hensel_lift(m)
    f = [(codes._PRIMITIVE_POLYS[m] >> i) & 1 for i in range(m + 1)]
    assert h[-1] == 1
    assert list(h % 2) == f
    assert codes._kerdock_traces(m)[0] == m % 4  # raises if the lift is not basic primitive


@pytest.mark.parametrize("length", [16, 64])
def test_kerdock_points_exact_worst_cosine(length):
    spec = kerdock(length)
    assert spec.size == length**2 + 2 * length
    points, info = code_prototypes(spec.size, length, spec=spec)
    assert info["family"] == "kerdock"
    assert len(torch.unique(points, dim=0)) == spec.size
    assert max_offdiag_cosine(points) == pytest.approx(1 / np.sqrt(length), abs=1e-6)
    # closed under negation: every point's antipode is in the set
    assert len(torch.unique(torch.cat([points, -points]), dim=0)) == spec.size


@pytest.mark.parametrize("m", [3, 5])
def test_kerdock_codewords_distinct_and_closed_under_complement(m):
    n = 2 ** (m + 1)
    words = codes._kerdock_bits(m, np.arange(n * n))
    packed = {row.tobytes() for row in np.packbits(words, axis=1)}
    assert len(packed) == n * n
    assert all((np.packbits(1 - row)).tobytes() in packed for row in words)


def test_kerdock_256_weight_distribution():
    # The Gray image of a Z4-linear code is distance invariant: distances = weights.
    words = codes._kerdock_bits(7, np.arange(256 * 256))
    assert sorted(set(words.sum(axis=1).tolist())) == [0, 120, 128, 136, 256]


# ---------------------------------------------------------------------------- selection


def test_code_families_sorted_and_validated():
    fam = code_families(64)
    assert [s.max_cosine for s in fam] == sorted(s.max_cosine for s in fam)
    assert fam[0].max_cosine == -1.0  # repetition code
    assert code_families(8192) == []
    with pytest.raises(ValueError, match="48"):
        code_families(48)
    with pytest.raises(ValueError, match="2"):
        code_families(2)


def test_best_code_facts():
    assert best_code(10_000, 128).max_cosine == 0.125
    assert best_code(100_000, 128).max_cosine <= 0.25
    spec = best_code(4224, 64)
    assert (spec.family, spec.max_cosine) == ("kerdock", 0.125)
    spec = best_code(100_000, 100)
    assert (spec.family, spec.length, spec.k, spec.max_cosine) == ("bch", 64, 18, 0.3125)
    assert best_code(4225, 64).max_cosine > 0.125
    assert best_code(10, 3) is None
    assert best_code(10**6, 16) is None


# ---------------------------------------------------------------------------- prototypes


def test_prototypes_unit_deterministic_and_seeded():
    a, info = code_prototypes(10_000, 128, seed=1)
    b, _ = code_prototypes(10_000, 128, seed=1)
    c, _ = code_prototypes(10_000, 128, seed=2)
    assert a.shape == (10_000, 128) and a.dtype == torch.float32
    assert torch.allclose(a.norm(dim=1), torch.ones(10_000), atol=1e-6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    json.dumps(info)
    assert info["max_cosine"] == 0.125 and info["length"] == 128
    assert max_offdiag_cosine(a) <= info["max_cosine"] + 1e-6


def test_prototypes_zero_padding():
    points, info = code_prototypes(5_000, 100, seed=0)
    assert info["length"] == 64 and points.shape == (5_000, 100)
    assert torch.all(points[:, 64:] == 0)
    assert torch.allclose(points.norm(dim=1), torch.ones(5_000), atol=1e-6)
    assert max_offdiag_cosine(points) <= info["max_cosine"] + 1e-6


def test_whole_code_is_each_point_once():
    spec = bch(16, 7)
    points, _ = code_prototypes(128, 16, spec=spec, seed=5)
    assert len(torch.unique(points, dim=0)) == 128
    other, _ = code_prototypes(128, 16, spec=spec, seed=6)
    assert not torch.equal(points, other)


def test_huge_code_sampling_without_enumeration():
    spec = bch(128, 120)  # 2^120 codewords
    points, info = code_prototypes(2_000, 128, spec=spec, seed=0)
    assert len(torch.unique(points, dim=0)) == 2_000
    assert max_offdiag_cosine(points) <= spec.max_cosine + 1e-6
    json.dumps(info)


def test_kerdock_prototypes_include_basis_points():
    spec = kerdock(64)
    points, _ = code_prototypes(4_000, 64, spec=spec, seed=0)
    basis_like = (points.abs() > 0.5).sum(dim=1) == 1
    assert 0 < int(basis_like.sum()) <= 128
    assert torch.allclose(points.norm(dim=1), torch.ones(4_000), atol=1e-6)
    assert max_offdiag_cosine(points) <= 0.125 + 1e-6


def test_impossible_requests_raise():
    with pytest.raises(ValueError, match="num_classes"):
        code_prototypes(1, 64)
    with pytest.raises(ValueError, match="dims"):
        code_prototypes(4, 3)
    with pytest.raises(ValueError, match="1000000"):
        code_prototypes(1_000_000, 16)
    with pytest.raises(ValueError, match="num_classes=300"):
        code_prototypes(300, 64, spec=bch(64, 7))
    with pytest.raises(ValueError, match="dims=32"):
        code_prototypes(10, 32, spec=bch(64, 7))
