import json
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


def _dense_nearest(p: torch.Tensor) -> torch.Tensor:
    unit = p.double() / p.double().norm(dim=1, keepdim=True)
    gram = unit @ unit.T
    gram.fill_diagonal_(-math.inf)
    return gram.max(dim=1).values


def test_estimate_is_the_exact_nearest_neighbours_of_the_sampled_rows():
    p = torch.randn(3000, 6, generator=torch.Generator().manual_seed(3))
    rep = quality.report(p, row_tile=64, col_tile=700, exact=False, sample_size=200, seed=7)
    assert rep.estimated and rep.sampled_rows == 200
    rows = quality.sample_rows(3000, 200, seed=7)
    nn = _dense_nearest(p)
    assert rep.worst_cosine == pytest.approx(float(nn[rows].max()), abs=1e-6)
    assert rep.mean_nn_cosine == pytest.approx(float(nn[rows].mean()), abs=1e-6)
    assert rep.worst_cosine <= float(nn.max()) + 1e-6  # a lower bound on the true worst
    i, j = rep.worst_pair
    unit = p / p.norm(dim=1, keepdim=True)
    assert float(unit[i] @ unit[j]) == pytest.approx(rep.worst_cosine, abs=1e-6)
    assert rep.gap == pytest.approx(rep.worst_cosine - rep.bound)
    text = str(rep)
    assert "(estimate from 200 sampled rows)" in text and "the true worst is at least" in text


def test_report_estimates_only_above_the_threshold_unless_told(monkeypatch):
    p = torch.randn(150, 5, generator=torch.Generator().manual_seed(4))
    exact = quality.report(p)
    assert not exact.estimated and exact.sampled_rows is None
    assert "estimate" not in str(exact)
    monkeypatch.setattr(quality, "EXACT_MAX", 100)
    assert quality.report(p, sample_size=64).sampled_rows == 64
    assert quality.report(p, exact=True) == exact
    assert quality.report(p, exact=False, sample_size=150) == exact  # the sample is every row


def test_report_to_dict_round_trips_also_for_estimates_and_old_dicts():
    p = torch.randn(500, 4, generator=torch.Generator().manual_seed(5))
    for rep in (quality.report(p), quality.report(p, exact=False, sample_size=50)):
        assert quality.Report.from_dict(rep.to_dict()) == rep
        assert quality.Report.from_dict(json.loads(rep.to_json())) == rep
    old = quality.report(p).to_dict()
    del old["estimated"], old["sampled_rows"]
    assert not quality.Report.from_dict(old).estimated


def test_progress_is_called_after_each_tile_of_rows():
    p = torch.randn(50, 3, generator=torch.Generator().manual_seed(6))
    calls = []
    quality.report(p, row_tile=16, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(16, 50), (32, 50), (48, 50), (50, 50)]
    calls.clear()
    quality.report(p, row_tile=16, exact=False, sample_size=20, progress=lambda *a: calls.append(a))
    assert calls == [(16, 20), (20, 20)]


def test_nearest_neighbours_of_some_rows_equal_those_of_all_rows():
    p = torch.nn.functional.normalize(
        torch.randn(90, 5, generator=torch.Generator().manual_seed(7)), dim=1
    )
    all_vals, all_idx = quality.nearest_neighbours(p, k=3, row_tile=7, col_tile=11)
    rows = torch.tensor([0, 5, 6, 44, 89])
    vals, idx = quality.nearest_neighbours(p, k=3, row_tile=2, col_tile=11, rows=rows)
    assert torch.allclose(vals, all_vals[rows], atol=1e-6) and torch.equal(idx, all_idx[rows])


def test_sample_rows_are_distinct_sorted_and_seeded():
    rows = quality.sample_rows(1000, 100, seed=1)
    assert len(rows.unique()) == 100 and torch.equal(rows, rows.sort().values)
    assert 0 <= int(rows.min()) and int(rows.max()) < 1000
    assert torch.equal(rows, quality.sample_rows(1000, 100, seed=1))
    assert not torch.equal(rows, quality.sample_rows(1000, 100, seed=2))
    assert len(quality.sample_rows(10, 100)) == 10
    with pytest.raises(ValueError, match="at least 1 row, got 0"):
        quality.sample_rows(10, 0)
