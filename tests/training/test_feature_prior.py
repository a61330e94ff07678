"""``head.prototypes: features:RUN``: the data prior over a finished run's features."""

import json

import pytest
import torch
import yaml

from hpn.data.base import in_batches, iterate_batches
from hpn.prototypes import data_prior
from hpn.training.checkpoint import read_checkpoint
from hpn.training.finished import load_run_backbone
from hpn.training.run import load_config, load_splits, run


def _hpn_on_features(tmp_path, run_config, source, **head):
    config = run_config(
        std=0.3, head={"kind": "prototype", "dims": 3, "prototypes": f"features:{source}", **head}
    )
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    cfg = load_config(str(path), [f"out_dir={tmp_path / 'hpn'}"])
    run(cfg, log=lambda *a: None)
    return cfg, tmp_path / "hpn"


def test_the_prior_is_the_pca_of_the_class_means_of_the_runs_features(
    clusters_runs, run_config, tmp_path
):
    source = clusters_runs["softmax"]
    cfg, out = _hpn_on_features(tmp_path, run_config, source, spread_steps=0)
    head = json.loads((out / "head.json").read_text())["prototypes"]
    assert head["method"] == "data" and head["features_of"] == str(source)
    # reference: the source's backbone (loaded another way), its class means, the PCA start
    backbone, _, _ = load_run_backbone(source)
    backbone.eval()
    splits = load_splits(cfg)
    batches = iterate_batches(splits.train, in_batches(range(len(splits.train)), 7))
    with torch.no_grad():
        features = [(backbone(x), t["label"]) for x, t in batches]
    means, _ = data_prior.class_means(features, 4)
    expected = data_prior.data_prior_prototypes(means, 3, steps=0)
    state = read_checkpoint(out / "best.pt", keys=("model",))["model"]
    prototypes = next(v for k, v in state.items() if k.endswith("prototypes"))
    assert torch.allclose(prototypes, expected, atol=1e-5)
    # not the pixel prior: the features are another space
    pixels = [(x, t["label"]) for x, t in iterate_batches(splits.train, [range(len(splits.train))])]
    pixel_prior = data_prior.data_prior_prototypes(data_prior.class_means(pixels, 4)[0], 3, steps=0)
    assert not torch.allclose(prototypes, pixel_prior, atol=1e-2)


def test_a_folder_that_is_no_finished_run_is_one_line(tmp_path, run_config):
    with pytest.raises(
        FileNotFoundError, match=r"features:.*not a finished run folder \(no config.json\)"
    ):
        _hpn_on_features(tmp_path, run_config, tmp_path / "nothing")


def test_a_backbone_for_other_inputs_is_refused(clusters_runs, run_config, tmp_path):
    config = run_config(std=0.3, dims=9, head={"kind": "prototype", "dims": 3,
                        "prototypes": f"features:{clusters_runs['softmax']}"})  # fmt: skip
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    cfg = load_config(str(path), [f"out_dir={tmp_path / 'hpn'}"])
    with pytest.raises(ValueError, match=r"does not take inputs of shape \(9,\)"):
        run(cfg, log=lambda *a: None)
