import inspect

import numpy as np
import pytest
import torch

from hpn.data import registry
from hpn.data.registry import available, load_data
from hpn.data.synthetic import gaussian_clusters

NAMES = [
    "cifar100",
    "clusters",
    "fashion_mnist",
    "glyphs",
    "idx",
    "image_folders",
    "mnist5k",
    "omniart",
    "rotated_fashion_mnist",
    "rotated_mnist5k",
]


def test_names():
    assert available() == NAMES


def test_every_source_takes_seed():
    for name, function in registry.SOURCES.items():
        assert "seed" in inspect.signature(function).parameters, name


def test_unknown_name_lists_the_names():
    with pytest.raises(
        ValueError,
        match=r"unknown data source 'mnist'; known: cifar100, clusters, .*rotated_mnist5k",
    ):
        load_data("mnist")


def test_bad_or_missing_options():
    with pytest.raises(
        ValueError,
        match=r"data source 'clusters': .*'colour'.*its options \(data.options.NAME in a run config\): num_classes, samples_per_class, dims=300",
    ):
        load_data("clusters", num_classes=3, samples_per_class=4, colour="red")
    with pytest.raises(
        ValueError, match=r"data source 'cifar100': missing a required argument: 'folder'"
    ):
        load_data("cifar100")


def test_clusters_by_name_equal_direct_call():
    a = load_data("Clusters", num_classes=3, samples_per_class=10, dims=4, seed=2)
    b = gaussian_clusters(3, 10, dims=4, seed=2)
    assert torch.equal(a.train.inputs, b.train.inputs) and a.info == b.info


def test_idx_and_fashion_by_name(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 5)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = bytes([0, 0, 8, array.ndim]) + b"".join(
                int(s).to_bytes(4, "big") for s in array.shape
            )
            (tmp_path / f"{split}-{kind}-ubyte").write_bytes(header + array.tobytes())
    idx = load_data("idx", folder=tmp_path, val_fraction=0.25, seed=1)
    assert idx.info["source"] == "idx" and len(idx.train) == 15
    fashion = load_data("fashion-mnist", folder=tmp_path, seed=1)
    assert fashion.class_names[0] == "T-shirt/top"
    rotated = load_data("rotated_fashion_mnist", folder=tmp_path, seed=1, max_angle=45.0)
    assert rotated.task == "multitask" and float(rotated.train.targets["value"].max()) < 45.0
    assert rotated.info["source"] == "rotated_fashion_mnist"


def test_mnist_sources_by_name():
    plain = load_data("mnist5k", seed=3)
    rotated = load_data("rotated_mnist5k", seed=3, max_angle=30.0)
    assert plain.task == "classification" and rotated.task == "multitask"
    assert torch.equal(plain.val.targets["label"], rotated.val.targets["label"])
    assert rotated.info["max_angle"] == 30.0 and rotated.info["seed"] == 3
    assert float(rotated.val.targets["value"].max()) < 30.0
