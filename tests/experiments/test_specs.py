"""The training benchmarks' specs, each run on a tiny config through the one sweep runner."""

import io
import json
import statistics

import pytest

from hpn.experiments import sweep
from hpn.experiments.hooks import linear_reference
from hpn.prototypes import data_prior

CONFIG = """
seed: 0
data:
  name: clusters
  options: {num_classes: 4, samples_per_class: 40, dims: 6, std: 0.3}
model:
  backbone: mlp
  options: {hidden: [16]}
head: {kind: prototype}
optim: {optimizer: adam, lr: 0.01, epochs: 2, batch_size: 32}
"""


def _results(folder):
    return json.loads((folder / "results.json").read_text())


def _table(text):
    """The Markdown rows of a printed table, as lists of cells (header line and rule dropped)."""
    lines = [line for line in text.splitlines() if line.startswith("|")][2:]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_classification_prints_a_row_per_head_from_the_run_folders_and_reuses_them(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    out = io.StringIO()
    runs = tmp_path / "runs"
    rows = sweep.run_sweep(
        "classification", config=str(cfg), dims=(2, 3), seeds=(0, 1), out_dir=str(runs), out=out
    )
    assert [(r["head"], r["dims"]) for r in rows] == [
        ("softmax", None),
        ("prototype", 2),
        ("prototype", 3),
    ]
    # every cell is the folder's results.json, computed here another way
    cells = _table(out.getvalue())
    for row, line, name in zip(
        rows, cells, ["softmax", "prototype-d2", "prototype-d3"], strict=True
    ):
        accs = [_results(runs / f"{name}-s{s}")["test_accuracy"] for s in (0, 1)]
        secs = [_results(runs / f"{name}-s{s}")["train_seconds"] for s in (0, 1)]
        assert row["accs"] == accs
        mean, sd = statistics.mean(accs), statistics.stdev(accs)
        assert line[2:] == [
            f"{mean:.4f} ± {sd:.4f}",
            " / ".join(f"{a:.4f}" for a in accs),
            f"{statistics.mean(secs):.1f} s",
        ]
    assert cells[0][:2] == ["softmax", "K"] and cells[2][:2] == ["HPN", "3"]
    config = json.loads((runs / "prototype-d3-s1" / "config.json").read_text())
    assert config["head"]["dims"] == 3 and config["seed"] == 1
    done = runs / "prototype-d3-s1" / "results.json"
    stamp = done.stat().st_mtime_ns
    again = io.StringIO()
    rows_again = sweep.run_sweep(
        "classification", config=str(cfg), dims=(2, 3), seeds=(0, 1), out_dir=str(runs), out=again
    )
    assert done.stat().st_mtime_ns == stamp  # read back, not retrained
    assert rows_again == rows and again.getvalue() == out.getvalue()  # the same table again


MULTITASK = """
seed: 0
select_metric: val_loss
data:
  name: rotated_mnist5k
  options: {max_angle: 90}
model:
  backbone: mlp
  options: {hidden: [32]}
head: {kind: prototype, dims: 11}
optim: {optimizer: adam, lr: 0.001, epochs: 1, batch_size: 128}
"""


def test_multitask_runs_single_task_references_and_both_models_per_weight(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text(MULTITASK)
    out = io.StringIO()
    runs = tmp_path / "runs"
    rows = sweep.run_sweep(
        "multitask", config=str(cfg), weights="0.25", seeds=(0,), out_dir=str(runs), out=out
    )
    assert [(r["model"], r["t"]) for r in rows] == [
        ("softmax alone", 1.0),
        ("MSE alone", 0.0),
        ("HPN classification alone", 1.0),
        ("HPN regression alone", 0.0),
        ("softmax + MSE (multi-task baseline)", 0.25),
        ("HPN multi-task", 0.25),
    ]
    by_model = {r["model"]: r for r in rows}
    # single-task rows are selected on their own task's validation metric
    assert by_model["MSE alone"]["selected_on"] == "val_mae"
    assert by_model["softmax alone"]["selected_on"] == "val_accuracy"
    # angles are in [0, 90): any trained regressor is far better than the worst case
    assert 0.0 < by_model["HPN multi-task"]["maes"][0] < 45.0
    assert by_model["HPN multi-task"]["accs"][0] > 0.5  # 10 classes: chance is 0.1
    table = out.getvalue()
    assert "| MSE alone | 0 | - |" in table and "| softmax alone | 1 |" in table
    runs_made = sorted(p.name for p in runs.iterdir())
    assert "prototype-t0.25-val_loss-s0" in runs_made and "softmax-t0-val_mae-s0" in runs_made
    saved = json.loads((runs / "softmax-t0-val_mae-s0" / "config.json").read_text())
    assert saved["head"]["task_weight"] == 0.0 and saved["select_metric"] == "val_mae"
    mae = _results(runs / "prototype-t0.25-val_loss-s0")["test_mae"]
    assert (
        f"| HPN multi-task | 0.25 | {by_model['HPN multi-task']['accs'][0]:.4f} ± 0.0000 | {mae:.2f} ± 0.00 | val_loss |"
        in table
    )


BLOG = """
seed: 0
select_metric: val_macro_f1
data:
  name: clusters
  options: {num_classes: 10, samples_per_class: 30, dims: 12}
model:
  backbone: mlp
  options: {hidden: [16]}
head: {kind: prototype, dims: 4}
optim: {optimizer: adam, lr: 0.01, epochs: 3, patience: 1, batch_size: 32}
"""


def test_blog_prints_ours_beside_the_blogs_numbers(tmp_path):
    cfg = tmp_path / "b.yaml"
    cfg.write_text(BLOG)
    out = io.StringIO()
    variants = ("softmax", "hpn10", "r10", "cos4", "data4", "dcos4")
    runs = tmp_path / "runs"
    rows = sweep.run_sweep(
        "clusters", classes=(10,), variants=variants, seeds=(0, 1), config=str(cfg),
        out_dir=str(runs), out=out, jobs=2,
    )  # fmt: skip
    assert [r["variant"] for r in rows] == list(variants)
    assert all(len(r["f1"]) == 2 and all(0 <= f <= 100 for f in r["f1"]) for r in rows)
    assert all(1 <= e <= 3 for r in rows for e in r["best_epoch"])
    res = _results(runs / "k10-r10-s1")
    assert rows[2]["f1"][1] == 100 * res["test_macro_f1"]
    assert rows[2]["sec_per_epoch"][1] == res["train_seconds"] / res["epochs_run"]
    table = out.getvalue()
    assert "| 10 | softmax |" in table and "| 91.3 |" in table and "| 78.22 |" in table
    soft = sum(rows[0]["best_epoch"]) / 2
    hpn = sum(rows[1]["best_epoch"]) / 2
    assert f"| 10 | {soft:.0f} | 50 | {hpn:.0f} | 69 |" in table  # Table 3 beside the blog's
    cos = json.loads((runs / "k10-cos4-s0" / "head.json").read_text())
    assert cos["loss"]["kind"] == "cosine_softmax" and cos["prototypes"]["method"] != "random"
    rand = json.loads((runs / "k10-r10-s1" / "head.json").read_text())
    assert rand["prototypes"]["method"] == "random" and rand["loss"]["kind"] == "squared_cosine"
    data = json.loads((runs / "k10-data4-s0" / "head.json").read_text())
    assert data["prototypes"]["method"] == "data" and data["prototypes"]["spread_steps"] == 100
    dcos = json.loads((runs / "k10-dcos4-s1" / "head.json").read_text())
    assert dcos["prototypes"]["spread_steps"] == 0
    assert dcos["loss"] == {
        "kind": "cosine_softmax",
        "scale": data_prior.COSINE_SCALE,
        "margin": 0.0,
    }
    assert (runs / "k10-dcos4-s1.log").is_file()  # trained in its own process
    # a second call reads every run back: same numbers, nothing retrained
    again = sweep.run_sweep(
        "clusters", classes=(10,), variants=("dcos4",), seeds=(0, 1), config=str(cfg),
        out_dir=str(runs), out=io.StringIO(), jobs=2,
    )  # fmt: skip
    assert again[0]["f1"] == rows[-1]["f1"]


def test_blog_trains_the_largest_k_first_in_parallel(tmp_path):
    cfg = tmp_path / "b.yaml"
    cfg.write_text(BLOG)
    _, rows = sweep.plan_sweep(
        sweep.load_spec("clusters"),
        config=str(cfg),
        seeds=(0,),
        classes=(5, 10),
        variants=("softmax",),
    )
    assert [r.fields["K"] for r in rows] == [5, 10]  # the table's order
    assert [r.fields["K"] for r in sorted(rows, key=lambda r: r.train_key)] == [10, 5]


def test_linear_reference_matches_a_numpy_projection(tmp_path):
    import numpy as np
    from sklearn.metrics import f1_score

    from hpn.data.synthetic import gaussian_clusters

    cfg = tmp_path / "b.yaml"
    cfg.write_text(BLOG)
    _, (row,) = sweep.plan_sweep(
        sweep.load_spec("clusters"), config=str(cfg), seeds=(3,), classes=(10,), variants=("lin4",)
    )
    assert row.reference == "linear_reference"
    config, extra, seed, _ = row.cases[0]
    got = linear_reference(config, extra, seed=seed)
    # the same map computed with numpy: PCA of the centred training class means
    splits = gaussian_clusters(10, 30, dims=12, seed=3)
    x, y = splits.train.inputs.double().numpy(), splits.train.targets["label"].numpy()
    means = np.stack([x[y == c].mean(0) for c in range(10)])
    centre = means.mean(0)
    _, _, vt = np.linalg.svd(means - centre, full_matrices=False)
    protos = (means - centre) @ vt[:4].T
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    xt, yt = splits.test.inputs.double().numpy(), splits.test.targets["label"].numpy()
    z = (xt - centre) @ vt[:4].T
    pred = np.argmax((z / np.linalg.norm(z, axis=1, keepdims=True)) @ protos.T, axis=1)
    assert got["test_macro_f1"] == pytest.approx(f1_score(yt, pred, average="macro"), abs=1e-12)
    assert got["test_accuracy"] == pytest.approx(np.mean(pred == yt), abs=1e-12)
    # it is not trained: no run folder, and the table has no epochs for it
    out = io.StringIO()
    rows = sweep.run_sweep(
        "clusters", classes=(10,), variants=("lin4",), seeds=(3,), config=str(cfg),
        out_dir=str(tmp_path / "runs"), out=out,
    )  # fmt: skip
    assert rows[0]["f1"] == [pytest.approx(100 * got["test_macro_f1"])]
    assert "| 10 | lin4 |" in out.getvalue() and "| - | - |" in out.getvalue()
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ValueError, match="spread_steps=0"):
        linear_reference(str(cfg), ["head.prototypes=data"], seed=0)


@pytest.mark.parametrize("name", ["hpn", "softmax10", "x100", "dcos", "data-4", "lin"])
def test_blog_variant_names_are_checked_before_anything_runs(name, tmp_path):
    with pytest.raises(ValueError, match=f"unknown blog variant '{name}'; use softmax, hpnD"):
        sweep.run_sweep(
            "clusters", variants=f"softmax,{name}", out_dir=str(tmp_path), out=io.StringIO()
        )
    assert not any(tmp_path.iterdir())


def test_blog_variant_patterns_give_the_old_overrides():
    _, rows = sweep.plan_sweep(
        sweep.load_spec("clusters"), seeds=(0,), classes=(100,), variants="softmax,hpn10,dcos7,lin3"
    )
    overrides = [r.cases[0][1] for r in rows]
    k = "data.options.num_classes=100"
    assert overrides[0] == [k, "head.kind=softmax"]
    assert overrides[1] == [k, "head.kind=prototype", "head.prototypes=auto",
                            "head.loss.kind=squared_cosine", "head.dims=10"]  # fmt: skip
    assert overrides[2] == [k, "head.kind=prototype", "head.prototypes=data",
                            "head.loss.kind=cosine_softmax", "head.dims=7",
                            f"head.loss.scale={data_prior.COSINE_SCALE:g}",
                            "head.spread_steps=0"]  # fmt: skip
    assert overrides[3][-1] == "head.spread_steps=0" and rows[3].reference
    assert [r.cases[0][3].name for r in rows] == ["k100-softmax-s0", "k100-hpn10-s0",
                                                  "k100-dcos7-s0", "k100-lin3-s0"]  # fmt: skip


def test_assignment_compares_static_and_dynamic_per_dim(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    out = io.StringIO()
    runs = tmp_path / "runs"
    rows = sweep.run_sweep(
        "assignment", config=str(cfg), dims=(2,), seeds=(0, 1), out_dir=str(runs), out=out, jobs=2
    )
    assert [(r["dims"], r["assignment"]) for r in rows] == [(2, "static"), (2, "dynamic")]
    static, dynamic = rows
    assert static["initial_moved"] == [None, None] and static["moves"] == [0, 0]
    assert all(isinstance(m, int) and 0 <= m <= 4 for m in dynamic["initial_moved"])
    head = json.loads((runs / "prototype-d2-dynamic-s1" / "head.json").read_text())
    assert head["assignment"]["kind"] == "dynamic"
    assert head["assignment"]["initial_reassigned"] == dynamic["initial_moved"][1]
    # the moves in training are the sum of metrics.csv's reassigned column
    lines = (runs / "prototype-d2-dynamic-s0" / "metrics.csv").read_text().splitlines()
    col = lines[0].split(",").index("reassigned")
    assert dynamic["moves"][0] == sum(int(float(line.split(",")[col])) for line in lines[1:])
    assert json.loads((runs / "prototype-d2-s0" / "head.json").read_text())["assignment"] == {
        "kind": "static"
    }
    table = out.getvalue()
    assert "| 2 | static |" in table and "| 2 | dynamic |" in table
    assert f"| {dynamic['initial_moved'][0]} / {dynamic['initial_moved'][1]} |" in table
    # the same folders serve the classification benchmark: read back, not retrained
    done = runs / "prototype-d2-s1" / "results.json"
    stamp = done.stat().st_mtime_ns
    again = sweep.run_sweep(
        "classification", config=str(cfg), dims=(2,), seeds=(1,), out_dir=str(runs),
        out=io.StringIO(),
    )  # fmt: skip
    assert done.stat().st_mtime_ns == stamp and again[1]["accs"] == static["accs"][1:]


# CONFIG with more points per class, so that a 0.1 profile fills the many / medium / few groups
LONGTAIL = CONFIG.replace(
    "samples_per_class: 40, dims: 6, std: 0.3", "samples_per_class: 160, dims: 6, std: 0.5"
)


def test_longtail_reports_shot_groups_for_three_models(tmp_path, capsys):
    cfg = tmp_path / "lt.yaml"
    cfg.write_text(LONGTAIL)
    out = io.StringIO()
    rows = sweep.run_sweep(
        "longtail", config=str(cfg), imbalance=(0.1,), dims=(2,), seeds=(0,),
        out_dir=str(tmp_path / "r"), out=out,
    )  # fmt: skip
    assert [r["model"] for r in rows] == [
        "softmax",
        "HPN, d = 2",
        "HPN + dynamic assignment, d = 2",
    ]
    res = _results(tmp_path / "r" / "if0.1-prototype-d2-dynamic-s0")
    counts = res["data"]["train_counts"]
    assert counts[0] > 100 and counts[-1] < 20 and counts == sorted(counts, reverse=True)
    assert res["data"]["imbalance"] == 0.1
    for r in rows:  # every group has a class at this profile
        assert all(0.0 <= r[g][0] <= 1.0 for g in ("many", "medium", "few"))
    assert rows[2]["few"] == [res["test_group_accuracy"]["few"]]
    table = out.getvalue()
    assert "| 0.1 | softmax |" in table and "| 0.1 | HPN + dynamic assignment, d = 2 |" in table
    assert "groups by training examples: many >= 101, medium 20-100, few 0-19;" in table
    assert f"# imbalance 0.1: training examples per class {counts}" in capsys.readouterr().err


def test_transfer_probes_each_models_features_and_keeps_the_report(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    out = io.StringIO()
    target = {"num_classes": 3, "samples_per_class": 30, "dims": 6, "std": 0.3}
    rows = sweep.run_sweep(
        "transfer", config=str(cfg), target="clusters", dims=(2,), seeds=(0,),
        out_dir=str(tmp_path / "r"), target_option=target, out=out,
    )  # fmt: skip
    assert len(rows) == 3
    for r in rows:
        assert 0.0 <= r["probe"][0] <= 1.0 and -1.0 <= r["source_separation"][0] <= 1.0
    kept = list((tmp_path / "r" / "softmax-s0").glob("transfer-clusters-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["target"] == "clusters"
    assert rows[0]["probe"] == [json.loads(kept[0].read_text())["probe_accuracy"]]
    assert "linear probe accuracy (clusters)" in out.getvalue()
    assert f"clusters -> clusters {target}, mlp" in out.getvalue()
    # the kept report is read back
    stamp = kept[0].stat().st_mtime_ns
    again = sweep.run_sweep(
        "transfer", config=str(cfg), target="clusters", dims=(2,), seeds=(0,),
        out_dir=str(tmp_path / "r"), target_option=[f"{k}={v}" for k, v in target.items()],
        out=io.StringIO(),
    )  # fmt: skip
    assert kept[0].stat().st_mtime_ns == stamp and again == rows


def test_glyphs_spec_reports_accuracy_speed_and_head_size_by_k(tmp_path):
    # the glyph spec's sweep on clusters (no fonts needed): K is data.options.num_classes
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    out = io.StringIO()
    runs = tmp_path / "g"
    rows = sweep.run_sweep(
        "glyphs", config=str(cfg), classes="3,5", dims="2",
        heads="auto-squared_cosine,data-neighbour_softmax-batchnorm,auto-cosine_softmax-dynamic",
        degraded=["data.options.std=0.6"], seeds=(0,), out_dir=str(runs), out=out,
        backbone="mlp", backbone_options="{hidden: [16]}",
    )  # fmt: skip
    paper = "HPN d = 2, auto-squared_cosine"
    neighbours = "HPN d = 2, data-neighbour_softmax-batchnorm"
    dynamic = "HPN d = 2, auto-cosine_softmax-dynamic"
    assert [(r["K"], r["model"]) for r in rows] == [
        (3, "softmax"), (3, paper), (3, neighbours), (3, dynamic),
        (5, "softmax"), (5, paper), (5, neighbours), (5, dynamic),
    ]  # fmt: skip
    # the heads' parameters: softmax Linear(16, K); HPN Linear(16, 2), whatever K, plus
    # the batch norm's scale and shift (2 x 2)
    bn = 17 * 2 + 4
    assert [r["head_parameters"] for r in rows] == [
        [17 * 3], [17 * 2], [bn], [17 * 2], [17 * 5], [17 * 2], [bn], [17 * 2],
    ]  # fmt: skip
    assert _results(runs / "k5-softmax-s0")["data"]["num_classes"] == 5
    # the second test: the best weights scored on noisier clusters, kept beside the run
    kept = runs / "k5-softmax-s0" / "evaluations" / "test-std=0.6.json"
    assert rows[4]["degraded_accs"] == [json.loads(kept.read_text())["accuracy"]]
    assert "test accuracy, data.options.std=0.6" in out.getvalue()
    # the style-group column is blank for runs trained without data.options.style_fonts
    assert all(r["style_accs"] == [None] for r in rows)
    assert "| test accuracy, data.options.test_group=styles |" in out.getvalue()
    folder = runs / "k5-d2-data-neighbour_softmax-batchnorm-s0"
    head = json.loads((folder / "head.json").read_text())
    assert head["prototypes"]["method"] == "data" and head["loss"]["kind"] == "neighbour_softmax"
    assert head["output_norm"] == "batchnorm"
    head = json.loads((runs / "k5-d2-auto-cosine_softmax-dynamic-s0" / "head.json").read_text())
    assert head["assignment"]["kind"] == "dynamic" and head["loss"]["kind"] == "cosine_softmax"
    assert "| 5 | softmax |" in out.getvalue() and "| 85 |" in out.getvalue()
    # each HPN row's head against softmax's at the same K: 34 / 85 = 0.4, 38 / 85
    table = [line for line in out.getvalue().splitlines() if line.startswith("| 5 |")]
    assert [line.split("|")[-2].strip() for line in table] == [
        "1.0000", f"{34 / 85:.4f}", f"{38 / 85:.4f}", f"{34 / 85:.4f}",
    ]  # fmt: skip


def test_the_old_spec_name_blog_is_clusters_with_a_warning():
    with pytest.warns(DeprecationWarning, match="'blog' is deprecated; use 'clusters'"):
        spec = sweep.load_spec("blog")
    assert spec == sweep.load_spec("clusters")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"colums": []}, r"spec clusters: unknown key\(s\) \['colums'\]"),
        ({"seeds": "0"}, "spec clusters.seeds: expected list"),
        ({"after": {"function": "os:system"}}, "no function 'os:system'"),
        ({"options": {"x": {"type": "int", "default": 1, "help": ""}}}, "is not one of"),
    ],
)
def test_specs_are_checked_as_strictly_as_configs(tmp_path, change, match):
    import yaml

    spec = {k: v for k, v in sweep.load_spec("clusters").items() if k != "name"}
    path = tmp_path / "clusters.yaml"
    path.write_text(yaml.safe_dump({**spec, **change}))
    with pytest.raises(ValueError, match=match):
        sweep.load_spec(str(path))


def test_a_variant_head_name_is_checked_when_the_spec_loads(tmp_path):
    import yaml

    spec = {k: v for k, v in sweep.load_spec("classification").items() if k != "name"}
    spec["variants"] = [{"folder": "x", "head": "auto-hinge"}]
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match=r"variants\[0\].head: head name 'auto-hinge'"):
        sweep.load_spec(str(path))
