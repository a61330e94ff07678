"""A new loss is one class and one registry entry: it then appears in config validation, the
command line, the scikit-learn estimator, the specs' head names and the config reference."""

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from torch import nn

from hpn import functional as F
from hpn.cli import main
from hpn.experiments import sweep
from hpn.losses import LOSSES, register_loss, target_part
from hpn.registry import HEADS, head_overrides
from hpn.sklearn import HPNClassifier
from hpn.training.config import RunConfig, from_dict
from hpn.training.run import load_config


class CosineHingeLoss(nn.Module):
    """max(0, margin - cos(z, p_y)): pulls each output to within ``margin`` of its prototype."""

    kind = "cosine_hinge"

    def __init__(self, margin: float = 0.5):
        super().__init__()
        self.margin = margin

    def forward(self, output, target, reduction="mean"):
        labels = target_part(target, "label")
        cos = F.cosine_to(output.z, output.prototypes[labels])
        per = (self.margin - cos).clamp_min(0)
        return {"mean": per.mean, "sum": per.sum}.get(reduction, lambda: per)()


@dataclass
class CosineHingeSettings:
    """The settings of :class:`CosineHingeLoss`.

    Attributes:
        margin: how close to its prototype an output must come.
    """

    margin: float = 0.5


@pytest.fixture
def hinge():
    # the one registry entry the new loss needs
    entry = register_loss(CosineHingeLoss, CosineHingeSettings, ("prototype",))
    yield entry
    del LOSSES[entry.name]


def test_a_registered_loss_is_a_config_value_with_its_own_settings(hinge):
    cfg = from_dict(RunConfig, {"head": {"loss": {"kind": "cosine_hinge", "margin": 0.3}}})
    assert cfg.head.loss.settings == CosineHingeSettings(0.3)
    assert "cosine_hinge" in HEADS["prototype"].losses()
    with pytest.raises(ValueError, match=r"\['scale'\] do not apply to loss 'cosine_hinge'"):
        from_dict(RunConfig, {"head": {"loss": {"kind": "cosine_hinge", "scale": 3.0}}})
    with pytest.raises(ValueError, match="does not suit head kind 'cosine'"):
        from_dict(RunConfig, {"head": {"kind": "cosine", "loss": {"kind": "cosine_hinge"}}})


def test_a_registered_loss_trains_from_the_command_line(hinge, tmp_path):
    config = {
        "data": {"name": "clusters", "options": {"num_classes": 4, "samples_per_class": 30}},
        "model": {"backbone": "mlp", "options": {"hidden": [16]}},
        "head": {"dims": 3},
        "optim": {"optimizer": "adam", "lr": 0.01, "epochs": 2},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    args = ["head.loss.kind=cosine_hinge", "head.loss.margin=0.2", f"out_dir={out}"]
    assert main(["train", "--config", str(path), *args]) == 0
    head = json.loads((out / "head.json").read_text())
    assert head["loss"]["kind"] == "cosine_hinge"
    assert json.loads((out / "config.json").read_text())["head"]["loss"] == {
        "kind": "cosine_hinge",
        "margin": 0.2,
    }


def test_a_registered_loss_fits_the_estimator(hinge):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    X = rng.normal(size=(3, 4))[y] + 0.1 * rng.normal(size=(60, 4))
    clf = HPNClassifier(loss="cosine_hinge", max_iter=5, random_state=0).fit(X, y)
    assert clf.recipe_["loss"] == "cosine_hinge" and isinstance(
        clf.model_.head.criterion, CosineHingeLoss
    )
    with pytest.raises(ValueError, match="takes no scale"):
        HPNClassifier(loss="cosine_hinge", scale=3.0, max_iter=1).fit(X, y)


def test_a_registered_loss_is_a_head_name_in_the_specs(hinge):
    assert head_overrides("data-cosine_hinge-dynamic") == [
        "head.kind=prototype",
        "head.prototypes=data",
        "head.loss.kind=cosine_hinge",
        "head.assignment.kind=dynamic",
    ]
    _, rows = sweep.plan_sweep(sweep.load_spec("glyphs"), heads="auto-cosine_hinge")
    assert "head.loss.kind=cosine_hinge" in rows[-1].cases[0][1]


def test_the_flags_of_a_head_name_stack_in_order_and_make_a_loadable_config():
    overrides = head_overrides("features-neighbour_softmax-dynamic-warm")
    assert overrides[-2:] == ["head.assignment.kind=dynamic", "head.warm_start=true"]
    head = load_config("glyphs", overrides).head
    assert (head.prototypes, head.warm_start, head.assignment.kind) == ("features", True, "dynamic")
    with pytest.raises(ValueError, match=r"head.warm_start: applies to head.prototypes=features"):
        load_config("glyphs", head_overrides("data-neighbour_softmax-warm"))
    # the glyphs config starts warm; -cold names its cold start, a pixel prior needs neither
    starts = [load_config("glyphs", head_overrides(f"{p}-neighbour_softmax{f}")).head.warm_start
              for p, f in [("features", ""), ("features", "-cold"), ("data", "")]]  # fmt: skip
    assert starts == [True, False, None]


def test_a_registered_loss_is_in_the_config_reference(hinge):
    path = Path(__file__).parents[1] / "docs" / "hooks" / "gen_ref.py"
    spec = importlib.util.spec_from_file_location("gen_ref", path)
    gen_ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_ref)
    rows = [r for r in gen_ref._losses_section() if r.startswith("| `cosine_hinge`")]
    assert len(rows) == 1 and "`margin` = `0.5`" in rows[0]
