import pytest
import torch

from hpn.prototypes import closed_form


@pytest.mark.parametrize(("k", "d"), [(2, 1), (3, 2), (10, 9), (10, 50), (101, 100), (64, 64)])
def test_simplex_every_pair_at_minus_one_over_k_minus_one(k, d):
    p = closed_form.simplex(k, d).double()
    assert p.shape == (k, d) and p.dtype == torch.float64
    gram = p @ p.T
    expected = torch.full((k, k), -1.0 / (k - 1), dtype=torch.float64)
    expected.fill_diagonal_(1.0)
    assert torch.allclose(gram, expected, atol=1e-6)
    # centred: the vertices sum to zero
    assert p.sum(0).abs().max() < 1e-5


@pytest.mark.parametrize(("k", "d"), [(2, 1), (3, 2), (7, 4), (150, 100), (200, 100)])
def test_orthoplex_cosines_are_zero_or_minus_one(k, d):
    p = closed_form.orthoplex(k, d)
    gram = p @ p.T
    off = gram[~torch.eye(k, dtype=torch.bool)]
    assert set(off.unique().tolist()) <= {0.0, -1.0}
    assert torch.allclose(p.norm(dim=1), torch.ones(k))
    assert len({tuple(r) for r in p.tolist()}) == k  # all distinct


@pytest.mark.parametrize(
    ("fn", "k", "d", "match"),
    [
        (closed_form.simplex, 12, 10, "at most 11"),
        (closed_form.orthoplex, 21, 10, "at most 20"),
        (closed_form.simplex, 1, 10, "num_classes"),
        (closed_form.orthoplex, 4, 0, "dims"),
    ],
)
def test_closed_forms_refuse_what_they_cannot_do(fn, k, d, match):
    with pytest.raises(ValueError, match=match):
        fn(k, d)
