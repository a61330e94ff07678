"""``head.prototypes: features:RUN``: the data prior over a finished run's features."""

import json
import math

import pytest
import torch
import yaml

from hpn.data.base import in_batches, iterate_batches
from hpn.heads import PrototypeClassifier
from hpn.prototypes import data_prior
from hpn.training.checkpoint import read_checkpoint
from hpn.training.config import HeadConfig, saved_run_difference, settings_not_taken, to_dict
from hpn.training.feature_prior import warmup_config
from hpn.training.finished import evaluate_run, load_run_backbone
from hpn.training.inference import load_run
from hpn.training.run import load_config, load_splits, run
from hpn.training.trainer import start_at_projection


def _config(tmp_path, run_config, name="hpn", overrides=(), **head):
    config = run_config(std=0.3, head={"kind": "prototype", "dims": 3, **head})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config(str(path), [f"out_dir={tmp_path / name}", *overrides])


def _hpn_on_features(tmp_path, run_config, source, name="hpn", **head):
    cfg = _config(tmp_path, run_config, name, prototypes=f"features:{source}", **head)
    run(cfg, log=lambda *a: None)
    return cfg, tmp_path / name


def _saved_prototypes(out):
    state = read_checkpoint(out / "best.pt", keys=("model",))["model"]
    return next(v for k, v in state.items() if k.endswith("prototypes"))


def _feature_prior(source, cfg):
    """The reference: the source's backbone (loaded another way), its class means in
    batches of 7, the unspread PCA start in 3 dims."""
    backbone, _, _ = load_run_backbone(source)
    backbone.eval()
    splits = load_splits(cfg)
    batches = iterate_batches(splits.train, in_batches(range(len(splits.train)), 7))
    with torch.no_grad():
        features = [(backbone(x), t["label"]) for x, t in batches]
    means, _ = data_prior.class_means(features, 4)
    return data_prior.data_prior_prototypes(means, 3, steps=0)


def test_the_prior_is_the_pca_of_the_class_means_of_the_runs_features(
    clusters_runs, run_config, tmp_path
):
    source = clusters_runs["softmax"]
    cfg, out = _hpn_on_features(tmp_path, run_config, source, spread_steps=0)
    head = json.loads((out / "head.json").read_text())["prototypes"]
    assert head["method"] == "data" and head["features_of"] == str(source)
    prototypes = _saved_prototypes(out)
    assert torch.allclose(prototypes, _feature_prior(source, cfg), atol=1e-5)
    # not the pixel prior: the features are another space
    splits = load_splits(cfg)
    pixels = [(x, t["label"]) for x, t in iterate_batches(splits.train, [range(len(splits.train))])]
    pixel_prior = data_prior.data_prior_prototypes(data_prior.class_means(pixels, 4)[0], 3, steps=0)
    assert not torch.allclose(prototypes, pixel_prior, atol=1e-2)


def test_a_folder_that_is_no_finished_run_is_one_line(tmp_path, run_config):
    with pytest.raises(
        FileNotFoundError, match=r"features:.*is not a finished run folder \(no config.json\)"
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


# ---- head.prototypes: features (the warm-up trained inside the run) -------------------------


def test_features_trains_a_warmup_and_equals_the_two_command_recipe(run_config, tmp_path):
    logged = []
    cfg = _config(tmp_path, run_config, prototypes="features", warmup_epochs=2, spread_steps=0)
    run(cfg, log=logged.append)
    out, warm = tmp_path / "hpn", tmp_path / "hpn" / "warmup"
    assert "warm-up: 2 epoch(s)" in logged[0] and any(
        x.startswith("warm-up: epoch 2/2") for x in logged
    )
    # the warm-up: the same run with the pixel data prior, 2 epochs, finished
    saved = json.loads((warm / "config.json").read_text())
    assert saved["head"]["prototypes"] == "data" and saved["optim"]["epochs"] == 2
    warm_results = json.loads((warm / "results.json").read_text())
    assert warm_results["epochs_run"] == 2
    # what the warm-up cost is part of the run's results
    results = json.loads((out / "results.json").read_text())
    # (its training and the pass that built its own pixel prior)
    warm_seconds = warm_results["train_seconds"] + warm_results["prototype_seconds"]
    assert results["warmup_seconds"] == pytest.approx(warm_seconds, abs=1e-3)
    # (recorded to the millisecond: a fast machine builds a tiny prior in less than one)
    assert warm_results["prototype_seconds"] >= 0 and warm_results["train_seconds"] > 0
    per_epoch = math.ceil(len(load_splits(cfg).train) / 32)
    assert results["warmup_steps"] == warm_results["train_steps"] == 2 * per_epoch
    # the run records what was asked, and where its prior came from
    assert json.loads((out / "config.json").read_text())["head"]["prototypes"] == "features"
    head = json.loads((out / "head.json").read_text())["prototypes"]
    assert head["features_of"] == str(warm)
    # the pass over the training split that lays the prior out is timed, and reported
    assert results["prototype_seconds"] == head["seconds"] >= 0
    assert torch.allclose(_saved_prototypes(out), _feature_prior(warm, cfg), atol=1e-5)
    # the same run made by hand from the warm-up's folder: the same final weights
    _, by_hand = _hpn_on_features(tmp_path, run_config, warm, name="by_hand", spread_steps=0)
    mine = read_checkpoint(out / "best.pt", keys=("model",))["model"]
    theirs = read_checkpoint(by_hand / "best.pt", keys=("model",))["model"]
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_a_finished_warmup_is_read_back_and_a_foreign_one_refused(run_config, tmp_path):
    cfg = _config(tmp_path, run_config, prototypes="features")
    run(warmup_config(cfg), log=lambda *a: None)  # the warm-up alone, as a stop would leave it
    before = (tmp_path / "hpn" / "warmup" / "best.pt").read_bytes()
    logged = []
    run(cfg, log=logged.append)
    assert logged[0] == f"warm-up: read back {tmp_path / 'hpn' / 'warmup'}"
    assert (tmp_path / "hpn" / "warmup" / "best.pt").read_bytes() == before
    # a warm-up of 3 epochs is not the one of this folder (1 epoch)
    other = _config(tmp_path, run_config, "other", prototypes="features", warmup_epochs=3)
    (tmp_path / "other").mkdir()
    (tmp_path / "hpn" / "warmup").rename(tmp_path / "other" / "warmup")
    with pytest.raises(ValueError, match=r"holds a warm-up run with optim.epochs=1 where .* 3"):
        run(other, log=lambda *a: None)


def test_a_run_with_the_warmup_prior_is_scored_and_loaded_after_it_moves(run_config, tmp_path):
    prior_pass = {"prior_images": 5, "prior_augment": False}
    cfg = _config(tmp_path, run_config, prototypes="features", **prior_pass)
    run(cfg, log=lambda *a: None)
    assert warmup_config(cfg).head.prior_augment is False  # the warm-up inherits them
    for folder in (tmp_path / "hpn", tmp_path / "hpn" / "warmup"):
        prior = json.loads((folder / "head.json").read_text())["prototypes"]
        assert (prior["images_read"], prior["augmented"]) == (4 * 5, False)
    moved = tmp_path / "moved"
    (tmp_path / "hpn").rename(moved)  # features_of now names a folder that is gone
    results = json.loads((moved / "results.json").read_text())
    assert evaluate_run(moved)["accuracy"] == pytest.approx(results["test_accuracy"])
    model = load_run(moved)
    assert torch.equal(model.prototypes, _saved_prototypes(moved))


@pytest.mark.parametrize(
    ("head", "message"),
    [
        ({"prototypes": "data", "warmup_epochs": 2}, "head.warmup_epochs: applies to head.prototypes=features only"),
        ({"prototypes": "features", "warmup_epochs": 0}, r"head.warmup_epochs: must be >= 1, got 0"),
        ({"kind": "softmax", "warmup_epochs": 1}, "head.warmup_epochs: does not apply to head kind 'softmax'"),
        ({"prototypes": "data", "warm_start": True}, "head.warm_start: applies to head.prototypes=features or features:RUN only"),
        ({"prototypes": "features", "warm_start": True, "output_norm": "batchnorm"}, "head.warm_start: needs head.output_norm none"),
        ({"kind": "cosine", "warm_start": True}, "head.warm_start: does not apply to head kind 'cosine'"),
    ],
)  # fmt: skip
def test_bad_warmup_and_warm_start_settings_are_one_line(run_config, tmp_path, head, message):
    config = run_config(std=0.3, head={"kind": "prototype", **head})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=message):
        load_config(str(path))


@pytest.mark.parametrize("spec", ["data", "auto", "onehot", "features:runs/x", "features"])
def test_a_spec_refuses_exactly_the_settings_an_override_of_it_drops(spec):
    """One table says which specs take which settings: the config refuses each setting that
    :func:`settings_not_taken` lists (and only those), naming the spec given."""
    values = {"warmup_epochs": 2, "prior_images": 5, "prior_augment": False, "warm_start": True}
    not_taken = settings_not_taken(spec)
    for key, value in values.items():
        if key in not_taken:
            with pytest.raises(ValueError, match=rf"head.{key}: applies to .*'{spec}'"):
                HeadConfig(prototypes=spec, **{key: value})
        else:
            assert getattr(HeadConfig(prototypes=spec, **{key: value}), key) == value
    assert {"data": 2, "auto": 4, "onehot": 4, "features:runs/x": 1, "features": 0}[spec] == len(
        not_taken
    )


@pytest.mark.parametrize("spec", ["data", "auto", "features:runs/x", "features"])
def test_a_new_prototype_spec_drops_the_settings_it_does_not_take(spec):
    """The glyphs config starts warm from its warm-up; ``head.prototypes=SPEC`` keeps only
    what SPEC takes, as :meth:`HeadConfig.with_prototypes` does (two ways, one answer)."""
    given = ["head.warmup_epochs=2", "head.prior_images=5", "head.prior_augment=false"]
    glyphs = load_config("glyphs", given).head
    assert (glyphs.prototypes, glyphs.warm_start, glyphs.warmup_epochs) == ("features", True, 2)
    head = load_config("glyphs", [*given, f"head.prototypes={spec}"]).head
    assert head == glyphs.with_prototypes(spec)
    expected = {
        "data": (None, 5, False, None),
        "auto": (None, None, None, None),
        "features:runs/x": (None, 5, False, True),
        "features": (2, 5, False, True),
    }[spec]
    assert (head.warmup_epochs, head.prior_images, head.prior_augment, head.warm_start) == expected


def test_a_setting_given_after_the_new_spec_is_checked_and_unset_means_false(tmp_path):
    with pytest.raises(ValueError, match="head.warm_start: applies to head.prototypes=features"):
        load_config("glyphs", ["head.prototypes=data", "head.warm_start=true"])
    cold = load_config("glyphs", ["head.warm_start=false", f"out_dir={tmp_path}"])
    saved = to_dict(cold)
    saved["head"]["warm_start"] = None  # a folder saved before the key had a default
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert saved_run_difference(tmp_path, cold) is None
    warm = load_config("glyphs", [f"out_dir={tmp_path}"])
    assert saved_run_difference(tmp_path, warm) == ("head.warm_start", False, True)


def test_a_resume_after_a_stop_in_the_warmup_says_what_to_do(run_config, tmp_path):
    cfg = _config(tmp_path, run_config, prototypes="features")
    run(warmup_config(cfg), log=lambda *a: None)
    with pytest.raises(FileNotFoundError, match=r"stopped in its warm-up .* without --resume"):
        run(cfg, resume=True, log=lambda *a: None)


# ---- head.warm_start: the run starts where the prior's network ended ------------------------


def _weights(out, prefix):
    """The run's best.pt parameters under ``prefix`` (batch-norm statistics left out: they
    move in training mode even at learning rate 0)."""
    state = read_checkpoint(out / "best.pt", keys=("model",))["model"]
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return {
        k.removeprefix(prefix): v
        for k, v in state.items()
        if k.startswith(prefix) and not k.endswith(skip)
    }


def test_start_at_projection_sends_each_class_mean_to_its_unspread_prototype():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(6, 5, generator=g, dtype=torch.float64) * 3 + 1
    prototypes, (centre, directions) = data_prior.data_prior_layout(means, 3, steps=0)
    head = PrototypeClassifier(prototypes, in_features=5)
    start_at_projection(head, centre, directions)
    # the reference: the unspread prior itself, made by data_prior_prototypes
    reference = data_prior.data_prior_prototypes(means, 3, steps=0)
    assert torch.allclose(head.embed(means.float()), reference, atol=1e-5)
    assert head(means.float()).argmax(1).tolist() == list(range(6))


def test_start_at_projection_pads_the_axes_the_pca_does_not_fill():
    means = torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    prototypes, (centre, directions) = data_prior.data_prior_layout(means, 5, steps=0)
    assert directions.shape == (4, 3)  # min(K, F) directions for d = 5
    head = PrototypeClassifier(prototypes, in_features=4)
    start_at_projection(head, centre, directions)
    assert torch.all(head.proj.weight[3:] == 0) and torch.all(head.proj.bias[3:] == 0)
    assert torch.allclose(head.embed(means.float()), prototypes, atol=1e-5)
    with pytest.raises(ValueError, match=r"is not the Linear\(7, >= 2\)"):
        start_at_projection(head, torch.zeros(7), torch.zeros(7, 2))


def test_warm_start_begins_with_the_source_backbone_and_the_pca_map(
    clusters_runs, run_config, tmp_path
):
    source = clusters_runs["prototype"]  # the same MLP backbone
    frozen = ["optim.lr=0"]  # what the run starts from is what it saves
    cfg = _config(
        tmp_path, run_config, overrides=frozen,
        prototypes=f"features:{source}", spread_steps=0, warm_start=True,
    )  # fmt: skip
    run(cfg, log=lambda *a: None)
    out = tmp_path / "hpn"
    assert json.loads((out / "head.json").read_text())["warm_start"] is True
    mine, theirs = _weights(out, "backbone."), _weights(source, "backbone.")
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    # the class means of the source's features land on their (unspread) prototypes
    backbone, _, _ = load_run_backbone(source)
    splits = load_splits(cfg)
    batches = iterate_batches(splits.train, [range(len(splits.train))])
    with torch.no_grad():
        means, _ = data_prior.class_means([(backbone.eval()(x), t["label"]) for x, t in batches], 4)
    head = _weights(out, "head.")
    z = means.float() @ head["proj.weight"].T + head["proj.bias"]
    expected = _feature_prior(source, cfg)
    assert torch.allclose(torch.nn.functional.normalize(z, dim=1), expected, atol=1e-4)
    # without it, the same config starts from its own initial weights
    _config_cold = _config(
        tmp_path, run_config, "cold", overrides=frozen,
        prototypes=f"features:{source}", spread_steps=0,
    )  # fmt: skip
    run(_config_cold, log=lambda *a: None)
    cold = _weights(tmp_path / "cold", "backbone.")
    assert not all(torch.equal(cold[k], theirs[k]) for k in cold)


def test_a_warm_start_learns_faster_than_a_cold_one(clusters_runs, run_config, tmp_path):
    source = clusters_runs["prototype"]
    losses = {}
    for name, warm in (("warm", True), ("cold", None)):
        cfg = _config(tmp_path, run_config, name, prototypes=f"features:{source}", warm_start=warm)
        run(cfg, log=lambda *a: None)
        rows = (tmp_path / name / "metrics.csv").read_text().splitlines()
        losses[name] = float(rows[1].split(",")[1])  # epoch 1's training loss
    assert losses["warm"] < 0.5 * losses["cold"]


def test_the_warmup_warm_start_equals_the_two_command_recipe(run_config, tmp_path):
    cfg = _config(tmp_path, run_config, prototypes="features", warm_start=True)
    run(cfg, log=lambda *a: None)
    warm = tmp_path / "hpn" / "warmup"
    _, by_hand = _hpn_on_features(tmp_path, run_config, warm, name="by_hand", warm_start=True)
    mine = read_checkpoint(tmp_path / "hpn" / "best.pt", keys=("model",))["model"]
    theirs = read_checkpoint(by_hand / "best.pt", keys=("model",))["model"]
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    # a warm-start run stopped after its first epoch and resumed ends where one run does
    two = _config(tmp_path, run_config, "two", prototypes="features", warm_start=True)

    def stop_after_epoch_one(line):
        if line.startswith("epoch 1/2"):
            raise _Stop

    with pytest.raises(_Stop):
        run(two, log=stop_after_epoch_one)
    run(two, resume=True, log=lambda *a: None)
    again = read_checkpoint(tmp_path / "two" / "best.pt", keys=("model",))["model"]
    assert all(torch.equal(again[k], mine[k]) for k in mine)


class _Stop(Exception):
    """Raised from a log line to stop a run the way an interrupt would."""


def test_a_warm_start_from_a_backbone_of_another_width_is_one_line(
    clusters_runs, run_config, tmp_path
):
    config = run_config(std=0.3, hidden=(8,), head={
        "kind": "prototype", "dims": 3, "warm_start": True,
        "prototypes": f"features:{clusters_runs['prototype']}"})  # fmt: skip
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    cfg = load_config(str(path), [f"out_dir={tmp_path / 'hpn'}"])
    with pytest.raises(ValueError, match=r"head.warm_start: the head's output layer .* Linear\(16"):
        run(cfg, log=lambda *a: None)
