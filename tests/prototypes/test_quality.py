import math

import pytest
import torch

from hpn.prototypes import closed_form, quality


def _dense_reference(p: torch.Tensor):
    unit = p.double() / p.double().norm(dim=1, keepdim=True)
    gram = unit @ unit.T
    gram.fill_diagonal_(-math.inf)
    nn = gram.max(dim=1).values
    return float(nn.max()), float(nn.mean())


@pytest.mark.parametrize(
    ("k", "d", "tile"), [(50, 7, (8, 16)), (257, 16, (100, 33)), (300, 3, (1024, 16384))]
)
def test_blockwise_report_equals_dense_computation(k, d, tile):
    p = torch.randn(k, d, generator=torch.Generator().manual_seed(k))
    rep = quality.report(p, row_tile=tile[0], col_tile=tile[1])  # many tile boundaries
    worst, mean_nn = _dense_reference(p)
    assert rep.worst_cosine == pytest.approx(worst, abs=1e-6)
    assert rep.mean_nn_cosine == pytest.approx(mean_nn, abs=1e-6)
    i, j = rep.worst_pair
    unit = p / p.norm(dim=1, keepdim=True)
    assert float(unit[i] @ unit[j]) == pytest.approx(worst, abs=1e-6)
    assert rep.gap == pytest.approx(rep.worst_cosine - rep.bound)


def test_nearest_neighbours_topk_matches_sort():
    p = torch.nn.functional.normalize(
        torch.randn(90, 5, generator=torch.Generator().manual_seed(1)), dim=1
    )
    vals, idx = quality.nearest_neighbours(p, k=4, row_tile=7, col_tile=11)
    gram = p @ p.T
    gram.fill_diagonal_(-math.inf)
    ref_vals, _ = gram.sort(dim=1, descending=True)
    assert torch.allclose(vals, ref_vals[:, :4], atol=1e-6)
    assert torch.allclose(gram.gather(1, idx), vals, atol=1e-6)
    assert not (idx == torch.arange(90)[:, None]).any()


def test_report_of_an_optimal_set_has_zero_gap():
    rep = quality.report(closed_form.simplex(50, 60))
    assert rep.bound_exact
    assert rep.gap == pytest.approx(0.0, abs=1e-6)
    assert rep.max_norm_error < 1e-6
    assert "exact optimum" in str(rep)


def test_report_normalises_rows_and_flags_the_norm_error():
    p = closed_form.orthoplex(6, 3) * 2.0
    rep = quality.report(p)
    assert rep.worst_cosine == pytest.approx(0.0, abs=1e-7)
    assert rep.max_norm_error == pytest.approx(1.0)


def test_report_to_dict_is_json_ready():
    rep = quality.report(closed_form.simplex(4, 3))
    d = rep.to_dict()
    assert d["num_classes"] == 4 and d["dims"] == 3 and isinstance(d["worst_pair"], list)
    assert '"worst_cosine"' in rep.to_json()


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.ones(1, 3), "K >= 2"),
        (torch.ones(3), "shape"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), "NaN"),
        (torch.tensor([[0.0, 0.0], [0.0, 1.0]]), "row 0 is all zeros"),
    ],
)
def test_report_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        quality.report(bad)
