"""The flat head keys of the previous release keep working for one release, each with a
DeprecationWarning naming its new key: in config files, in overrides, and in the config.json
of earlier run folders, which still load, resume and evaluate."""

import json
import warnings

import pytest
import torch
import yaml

from hpn.cli import main
from hpn.training.config import RunConfig, from_dict, to_dict
from hpn.training.finished import evaluate_run
from hpn.training.run import load_config, resume_config

DATA = {"name": "clusters", "options": {"num_classes": 5, "samples_per_class": 30, "dims": 6}}
MODEL = {"backbone": "mlp", "options": {"hidden": [16]}}
OPTIM = {"optimizer": "adam", "lr": 0.01, "epochs": 2, "batch_size": 32}

#: A head section as the previous release wrote it into config.json: flat, every key.
OLD_HEAD = {
    "kind": "prototype", "dims": 3, "prototypes": "auto", "prototype_seed": 0,
    "spread_steps": 100, "task_weight": 0.5, "reduction": "mean", "loss": "neighbours",
    "scale": 10.0, "margin": 0.0, "neighbours": 2, "random_negatives": 3,
    "assignment": "dynamic", "assignment_every": 1, "assignment_momentum": 0.9,
    "assignment_init": None, "output_norm": "none",
}  # fmt: skip
NEW_HEAD = {
    "kind": "prototype", "dims": 3,
    "loss": {"kind": "neighbour_softmax", "scale": 10.0, "neighbours": 2, "random_negatives": 3},
    "assignment": {"kind": "dynamic"},
}  # fmt: skip


def _head(data):
    return from_dict(RunConfig, {"head": data}).head


def test_the_flat_keys_read_as_their_new_keys_with_a_warning_naming_them():
    with pytest.warns(DeprecationWarning) as caught:
        old = _head(OLD_HEAD)
    said = " ".join(str(w.message) for w in caught)
    for new in ("head.loss.kind", "head.loss.scale", "head.loss.neighbours",
                "head.assignment.kind", "head.assignment.every", "'neighbour_softmax'"):  # fmt: skip
        assert new in said
    assert old == _head(NEW_HEAD)


def test_a_flat_head_of_another_kind_drops_the_settings_it_did_not_use():
    soft = {**OLD_HEAD, "kind": "softmax", "loss": "paper", "assignment": "static"}
    with pytest.warns(DeprecationWarning):
        head = _head(soft)
    assert head.kind == "softmax" and head.loss is None and head.prototypes is None
    assert to_dict(from_dict(RunConfig, {"head": to_dict(head)}).head) == to_dict(head)


@pytest.mark.parametrize(
    ("override", "new"),
    [
        ("head.loss=softmax", "head.loss.kind=softmax"),
        ("head.scale=7", "head.loss.scale"),
        ("head.assignment=dynamic", "head.assignment.kind=dynamic"),
        ("head.assignment_every=2", "head.assignment.every"),
    ],
)
def test_flat_overrides_still_work_with_a_warning(tmp_path, override, new):
    path = tmp_path / "c.yaml"
    head = {"dims": 3, "loss": {"kind": "cosine_softmax"}, "assignment": {"kind": "dynamic"}}
    path.write_text(yaml.safe_dump({"head": head}))
    with pytest.warns(DeprecationWarning, match=new):
        cfg = load_config(str(path), [override])
    assert cfg.head.loss.kind == "cosine_softmax"


def test_the_loss_override_of_the_glyphs_config_keeps_the_settings_the_new_loss_takes():
    with pytest.warns(DeprecationWarning, match="'softmax' is deprecated"):
        cfg = load_config("glyphs", ["head.loss=softmax"])
    assert (cfg.head.loss.kind, cfg.head.loss.settings.scale) == ("cosine_softmax", 20.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_config("glyphs", ["head.kind=softmax"]).head.loss is None
        cosine = load_config("glyphs", ["head.kind=cosine"]).head
        assert (cosine.dims, cosine.loss.kind, cosine.loss.settings.scale) == (
            64, "cosine_softmax", 20.0
        )  # fmt: skip
        with pytest.raises(ValueError, match=r"head.loss: \['neighbours'\] do not apply"):
            load_config("glyphs", ["head.kind=cosine", "head.loss.neighbours=8"])
        # the prior's settings, given before the kind switches (as a bench's overrides
        # are), go with the prototypes
        prior = ["head.warmup_epochs=2", "head.prior_images=5", "head.prior_augment=false"]
        softmax = load_config("glyphs", [*prior, "head.kind=softmax"]).head
        assert (softmax.warmup_epochs, softmax.prior_images, softmax.prior_augment) == (None,) * 3
        kept = load_config("glyphs", prior).head
        assert (kept.warmup_epochs, kept.prior_images, kept.prior_augment) == (2, 5, False)


@pytest.mark.parametrize(
    ("head", "match"),
    [
        ({"kind": "softmax", "dims": 3}, "config head.dims: does not apply to head kind 'softmax'"),
        ({"kind": "cosine", "assignment": {"kind": "dynamic"}}, "head.assignment: does not"),
        ({"loss": {"scale": 2.0}}, r"\['scale'\] do not apply to loss 'squared_cosine'"),
        ({"assignment": {"every": 2}}, "head.assignment.every: does not apply to head"),
        ({"kind": "sampled", "loss": {"kind": "cosine_softmax"}}, "does not suit head kind"),
        ({"kind": "linear"}, r"head.kind: 'linear' is not one of \['prototype'"),
    ],
)
def test_settings_that_do_not_apply_are_errors_naming_them(head, match):
    with pytest.raises(ValueError, match=match):
        _head(head)


def test_a_run_folder_with_a_flat_config_resumes_and_evaluates(tmp_path, capsys):
    out = tmp_path / "run"
    config = {"data": DATA, "model": MODEL, "head": NEW_HEAD, "optim": OPTIM}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(path), f"out_dir={out}"]) == 0
    # the folder as the previous release wrote it: config.json with the flat head
    saved = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**saved, "head": OLD_HEAD}))
    with pytest.warns(DeprecationWarning):
        cfg, changes = resume_config(out, overrides=["optim.epochs=3"])
    assert changes == {"optim.epochs": (2, 3)} and cfg.head == _head(NEW_HEAD)
    assert main(["train", "--resume", "--out", str(out), "optim.epochs=3"]) == 0
    # the command line prints each deprecation as one line, once (the resume reads the
    # folder's config more than once)
    assert capsys.readouterr().err.count("hpn: warning: config head.scale is deprecated") == 1
    assert json.loads((out / "results.json").read_text())["epochs_run"] == 3
    assert json.loads((out / "config.json").read_text())["head"]["loss"]["kind"] == (
        "neighbour_softmax"
    )  # rewritten in the new shape by the resume
    (out / "config.json").write_text(json.dumps({**saved, "head": OLD_HEAD}))
    with pytest.warns(DeprecationWarning):
        report = evaluate_run(out)
    assert 0.0 <= report["accuracy"] <= 1.0
    state = torch.load(out / "best.pt", weights_only=True)
    assert "head.assignment.perm" in state["model"]
