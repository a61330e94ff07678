import pytest
import torch

from hpn import prototypes as protos
from hpn.prototypes import data_prior


def _clusters(k, width, per, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(k, width, generator=g) * 2 - 1
    labels = torch.arange(k).repeat_interleave(per)
    x = centres[labels] + 0.3 * torch.randn(len(labels), width, generator=g)
    return centres, x, labels


def test_class_means_match_a_per_class_loop_across_batches():
    _, x, y = _clusters(7, 5, 9)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    x, y = x[perm], y[perm]
    batches = [(x[i : i + 10].reshape(-1, 5, 1), y[i : i + 10]) for i in range(0, len(y), 10)]
    means, counts = data_prior.class_means(batches, 8)  # class 7 never appears
    for c in range(7):
        torch.testing.assert_close(means[c], x[y == c].double().mean(0))
    assert counts.tolist() == [9] * 7 + [0] and means[7].abs().sum() == 0


def test_class_means_reject_labels_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        data_prior.class_means([(torch.zeros(2, 4), torch.tensor([0, 3]))], 3)


def test_pca_directions_match_the_exact_svd_when_low_rank_is_used():
    g = torch.Generator().manual_seed(0)
    # a rank-6 signal plus tiny noise, wide enough (3,000 > 2,048) for the low-rank path
    means = torch.randn(2100, 6, generator=g) @ torch.randn(6, 3000, generator=g)
    means += 1e-6 * torch.randn(2100, 3000, generator=g)
    fast = data_prior.pca_directions(means, 6)
    centred = means.double() - means.double().mean(0)
    _, _, vt = torch.linalg.svd(centred, full_matrices=False)
    exact = centred @ vt[:6].T
    # equal up to the sign of each direction
    signs = torch.sign((fast * exact).sum(0))
    torch.testing.assert_close(fast * signs, exact, rtol=1e-5, atol=1e-5 * exact.abs().max())


def test_pca_directions_pad_with_zeros_when_there_are_fewer_directions_than_dims():
    means = torch.randn(4, 3, dtype=torch.float64)
    out = data_prior.pca_directions(means, 5)
    assert out.shape == (4, 5) and out[:, 3:].abs().max() == 0


def test_the_prior_keeps_the_layout_of_the_class_means():
    centres, _, _ = _clusters(200, 60, 1)
    p = data_prior.data_prior_prototypes(centres, dims=20)
    rand = protos.build(200, 20, method="random", seed=0).prototypes
    start = torch.nn.functional.normalize(data_prior.pca_directions(centres, 20).float(), dim=1)
    # unit rows that stay close to the PCA start, and nearer to the means' cosine structure
    # than unrelated prototypes are
    assert torch.allclose(p.norm(dim=1), torch.ones(200), atol=1e-5)
    assert float((p * start).sum(1).mean()) > 0.9
    c = torch.nn.functional.normalize(centres - centres.mean(0), dim=1)
    target = (c @ c.T)[~torch.eye(200, dtype=torch.bool)]

    def corr(q):
        got = (q @ q.T)[~torch.eye(200, dtype=torch.bool)]
        return float(torch.corrcoef(torch.stack([got, target]))[0, 1])

    assert corr(p) > 0.5 > abs(corr(rand))


def test_the_spread_only_lowers_the_worst_pair_cosine():
    centres, _, _ = _clusters(300, 40, 1, seed=2)
    start = data_prior.data_prior_prototypes(centres, dims=16, steps=0)
    spread = data_prior.data_prior_prototypes(centres, dims=16)
    assert protos.report(spread).worst_cosine < protos.report(start).worst_cosine - 0.05


def test_classes_without_a_usable_mean_get_random_rows():
    means = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # class 6 sits at the overall mean, so its centred row is zero; class 4 was never seen
    means = torch.cat([means, means.mean(0, keepdim=True)])
    seen = torch.tensor([1, 1, 1, 1, 0, 1, 1])
    p = data_prior.data_prior_prototypes(means, dims=3, steps=0, seen=seen)
    assert torch.isfinite(p).all() and torch.allclose(p.norm(dim=1), torch.ones(7), atol=1e-6)
    start = torch.nn.functional.normalize(data_prior.pca_directions(means, 3), dim=1).float()
    kept = torch.tensor([0, 1, 2, 3, 5])
    torch.testing.assert_close(p[kept], start[kept])
    torch.testing.assert_close(p, data_prior.data_prior_prototypes(means, 3, steps=0, seen=seen))


@pytest.mark.parametrize(
    ("means", "dims", "match"),
    [
        (torch.zeros(1, 3), 2, "K >= 2"),
        (torch.zeros(3, 3), 0, "dims"),
        (torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), 2, "NaN"),
    ],
)
def test_bad_arguments_are_named(means, dims, match):
    with pytest.raises(ValueError, match=match):
        data_prior.data_prior_prototypes(means, dims)
