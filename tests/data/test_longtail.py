import pytest
import torch

from hpn.data.base import DataSplits, TensorDataset
from hpn.data.longtail import examples_per_class, long_tailed
from hpn.evaluation.metrics import group_accuracy


def _balanced(k=10, per_class=200):
    labels = torch.arange(k).repeat_interleave(per_class)
    train = TensorDataset(torch.randn(len(labels), 3), {"label": labels})
    test = TensorDataset(torch.randn(k * 5, 3), {"label": torch.arange(k).repeat(5)})
    return DataSplits(train, test, test, "classification", (3,), k, None, {"source": "x"})


def test_exponential_profile_counts_and_untouched_evaluation_splits():
    splits = _balanced()
    lt = long_tailed(splits, 0.01, seed=0)
    counts = examples_per_class(lt.train.targets["label"], 10).tolist()
    expected = [round(200 * 0.01 ** (c / 9)) for c in range(10)]
    assert counts == expected and counts[0] == 200 and counts[-1] == 2
    assert lt.info["train_counts"] == expected and lt.info["imbalance"] == 0.01
    assert lt.val is splits.val and lt.test is splits.test  # balanced, as given
    again = long_tailed(splits, 0.01, seed=0)
    assert torch.equal(again.train.inputs, lt.train.inputs)
    other = long_tailed(splits, 0.01, seed=1)
    assert not torch.equal(other.train.inputs, lt.train.inputs)


def test_group_accuracy_uses_the_shot_thresholds():
    recall = torch.tensor([1.0, 0.8, 0.6, 0.4, 0.2])
    counts = torch.tensor([500, 101, 100, 20, 19])
    groups = group_accuracy(recall, counts)
    assert groups == pytest.approx({"many": 0.9, "medium": 0.5, "few": 0.2})
    assert group_accuracy(recall[:2], counts[:2])["few"] is None


@pytest.mark.parametrize("factor", [0.0, 1.5, -0.01])
def test_bad_imbalance_is_named(factor):
    with pytest.raises(ValueError, match=str(factor)):
        long_tailed(_balanced(), factor)


def test_long_tailed_run_reports_group_accuracy(tmp_path):
    from hpn.training.run import load_config, run

    cfg = load_config(
        None,
        [
            "data.name=clusters",
            "data.options={num_classes: 8, samples_per_class: 250, dims: 10, std: 0.5}",
            "data.imbalance=0.02",
            "model.backbone=mlp",
            "model.options={hidden: [16]}",
            "head.dims=4",
            "optim.epochs=2",
            "optim.optimizer=adam",
            "optim.lr=0.01",
            f"out_dir={tmp_path / 'lt'}",
        ],
    )
    res = run(cfg, log=lambda *_: None)
    groups = res["test_group_accuracy"]
    assert set(groups) == {"many", "medium", "few"}
    assert all(g is None or 0.0 <= g <= 1.0 for g in groups.values())
    assert res["data"]["train_counts"][0] > res["data"]["train_counts"][-1]
