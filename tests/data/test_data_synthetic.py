import pytest
import torch

from hpn.data.synthetic import cluster_centres, default_std, gaussian_clusters


def all_points(splits):
    parts = (splits.train, splits.val, splits.test)
    x = torch.cat([p.inputs for p in parts])
    y = torch.cat([p.targets["label"] for p in parts])
    return x, y


def test_shapes_counts_and_types():
    splits = gaussian_clusters(4, 50, dims=7, val_fraction=0.25, test_fraction=0.2, seed=1)
    assert splits.task == "classification" and splits.input_shape == (7,)
    assert splits.num_classes == 4
    assert (len(splits.train), len(splits.val), len(splits.test)) == (120, 40, 40)
    assert torch.bincount(splits.test.targets["label"]).tolist() == [10] * 4
    x, target = splits.train[0]
    assert x.shape == (7,) and x.dtype == torch.float32
    assert target["label"].dtype == torch.int64
    assert splits.info["std"] == 3.0 and splits.info["seed"] == 1
    assert torch.isfinite(all_points(splits)[0]).all()


def test_class_means_near_centres_and_spread_is_std():
    splits = gaussian_clusters(10, 400, dims=300, seed=3)
    centres = cluster_centres(10, 300, seed=3)
    assert centres.shape == (10, 300) and centres.dtype == torch.float32
    assert float(centres.min()) >= -1.0 and float(centres.max()) <= 1.0
    assert float(centres.abs().mean()) == pytest.approx(0.5, abs=0.05)  # uniform on [-1, 1]
    x, y = all_points(splits)
    for k in range(10):
        points = x[y == k]
        assert len(points) == 400
        error = (points.mean(0) - centres[k]).pow(2).mean().sqrt()
        assert float(error) < 0.2  # expected 3 / sqrt(400) = 0.15
        assert float((points - centres[k]).std()) == pytest.approx(3.0, rel=0.02)
    means = torch.stack([x[y == k].mean(0) for k in range(10)])
    assert torch.cdist(means, centres).argmin(1).tolist() == list(range(10))


def test_explicit_std_and_dims():
    splits = gaussian_clusters(3, 200, dims=5, std=0.01, seed=0)
    x, y = all_points(splits)
    centres = cluster_centres(3, 5, seed=0)
    assert float((x - centres[y]).abs().max()) < 0.06
    assert splits.info["std"] == 0.01


def test_deterministic_per_seed():
    a, b = gaussian_clusters(5, 20, dims=4, seed=7), gaussian_clusters(5, 20, dims=4, seed=7)
    c = gaussian_clusters(5, 20, dims=4, seed=8)
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(a, name).inputs, getattr(b, name).inputs)
        assert torch.equal(getattr(a, name).targets["label"], getattr(b, name).targets["label"])
    assert not torch.equal(a.train.inputs, c.train.inputs)
    # centres do not depend on the number of samples
    assert torch.equal(cluster_centres(5, 4, 7), cluster_centres(5, 4, 7))
    assert not torch.equal(cluster_centres(5, 4, 7), cluster_centres(5, 4, 8))


def test_default_std_follows_the_protocol():
    assert default_std(10) == 3.0 and default_std(100) == 2.5 and default_std(1000) == 1.25
    assert default_std(2) == 3.0 and default_std(5000) == 1.25
    assert 2.5 < default_std(50) < 3.0 and 1.25 < default_std(200) < 2.5
    assert gaussian_clusters(100, 3, dims=2).info["std"] == 2.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, "num_classes must be >= 2"),
        ({"samples_per_class": 1}, "samples_per_class must be >= 2"),
        ({"dims": 0}, "dims must be >= 1"),
        ({"std": 0.0}, "std must be a positive finite number, got 0.0"),
        ({"std": float("nan")}, "std must be a positive finite number, got nan"),
        ({"std": float("inf")}, "std must be a positive finite number, got inf"),
        ({"test_fraction": 0.0}, "fraction must be in"),
        ({"val_fraction": 1.5}, "val_fraction must be in"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"num_classes": 3, "samples_per_class": 10, "dims": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        gaussian_clusters(**args)


@pytest.mark.parametrize(("n", "k", "fraction", "seed"), [(1000, 7, 0.2, 0), (50, 50, 0.5, 3),
                                                          (997, 13, 0.33, 5), (9, 4, 0.5, 1)])  # fmt: skip
def test_stratified_split_matches_a_pass_per_class(n, k, fraction, seed):
    from hpn.data.base import stratified_split

    labels = torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(seed))
    kept, held = stratified_split(labels, fraction, seed)
    # the reference: each class's members in the order of the same seeded permutation
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    want = []
    for cls in torch.unique(labels).tolist():
        members = perm[labels[perm] == cls]
        want += members[: round(len(members) * fraction)].tolist()
    assert held.tolist() == sorted(want)
    assert sorted(kept.tolist() + held.tolist()) == list(range(n))
