"""Every packaged experiment config is valid: known keys and types, a known data source whose
function takes the given options, a known backbone with valid options."""

import inspect
from importlib import resources

import pytest

from hpn.data.base import DataSplits, TensorDataset
from hpn.data.registry import SOURCES
from hpn.models import BACKBONES
from hpn.training.run import load_config

CONFIGS = sorted(
    p.name for p in resources.files("hpn.configs").iterdir() if p.name.endswith(".yaml")
)


def test_every_mission_experiment_has_a_config():
    assert {
        "demo.yaml",
        "fashion_mnist.yaml",
        "rotated_multitask.yaml",
        "rotated_multitask_sphere.yaml",
        "cifar100_resnet32.yaml",
        "imagenet200_resnet32.yaml",
        "omniart_year.yaml",
        "omniart_multitask.yaml",
        "blog_clusters.yaml",
    } <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_packaged_config_is_valid(name):
    cfg = load_config(str(resources.files("hpn.configs") / name))
    source = SOURCES[cfg.data.name]
    inspect.signature(source).bind(**{"seed": cfg.seed, **cfg.data.options})
    builder = BACKBONES[cfg.model.backbone]
    inspect.signature(builder).bind((1, 28, 28), **cfg.model.options)
    assert cfg.optim.epochs >= 1 and cfg.optim.lr > 0


def _multitask_splits():
    import torch

    data = TensorDataset(
        torch.zeros(4, 2), {"label": torch.arange(4) % 2, "value": torch.arange(4.0)}
    )
    return DataSplits(data, data, data, "multitask", (2,), 2, ["a", "b"], {"source": "x"})


def test_a_multitask_source_narrows_to_either_task():
    splits = _multitask_splits()
    cls = splits.for_task("classification")
    reg = splits.for_task("regression")
    assert (cls.task, cls.num_classes, cls.class_names) == ("classification", 2, ["a", "b"])
    assert (reg.task, reg.num_classes, reg.class_names) == ("regression", None, None)
    assert reg.info == {"source": "x", "task": "regression", "source_task": "multitask"}
    assert splits.for_task(None) is splits and splits.for_task("multitask") is splits
    assert splits.task == "multitask"  # unchanged


def test_a_single_task_source_cannot_change_task():
    cls = _multitask_splits().for_task("classification")
    with pytest.raises(ValueError, match="classification source cannot be used for regression"):
        cls.for_task("regression")
    with pytest.raises(ValueError, match="'ranking'"):
        cls.for_task("ranking")


def test_data_task_trains_a_regression_only_model_on_a_multitask_source(tmp_path):
    from hpn.training.run import run

    cfg = load_config(
        None,
        [
            "data.name=rotated_mnist5k",
            "data.task=regression",
            "data.options={max_angle: 90}",
            "model.backbone=mlp",
            "model.options={hidden: [16]}",
            "head.dims=2",
            "optim.epochs=1",
            f"out_dir={tmp_path / 'r'}",
        ],
    )
    res = run(cfg, log=lambda *_: None)
    assert res["test_accuracy"] is None
    assert 0.0 < res["test_mae"] < 45.0  # angles in [0, 90)
    assert res["data"]["task"] == "regression" and res["selected_on"] == "val_mae"
