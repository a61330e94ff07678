import io
import json

import pytest

from hpn import bench

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


def test_classification_benchmark_prints_a_row_per_head_and_reuses_finished_runs(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    out = io.StringIO()
    rows = bench.classification_benchmark(
        str(cfg), dims=(2, 3), seeds=(0, 1), out_dir=str(tmp_path / "runs"), out=out
    )
    assert [(r["head"], r["dims"]) for r in rows] == [
        ("softmax", None),
        ("prototype", 2),
        ("prototype", 3),
    ]
    assert all(len(r["accs"]) == 2 and 0.0 <= r["mean"] <= 1.0 for r in rows)
    table = out.getvalue()
    assert "| softmax | K |" in table and "| HPN | 3 |" in table
    done = tmp_path / "runs" / "prototype-d3-s1" / "results.json"
    stamp = done.stat().st_mtime_ns
    again = bench.classification_benchmark(
        str(cfg), dims=(3,), seeds=(1,), out_dir=str(tmp_path / "runs"), out=io.StringIO()
    )
    assert done.stat().st_mtime_ns == stamp  # read back, not retrained
    assert again[1]["accs"] == rows[2]["accs"][1:]


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


def test_multitask_benchmark_runs_single_task_references_and_both_models_per_weight(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text(MULTITASK)
    out = io.StringIO()
    rows = bench.multitask_benchmark(
        str(cfg), weights=(0.25,), seeds=(0,), out_dir=str(tmp_path / "runs"), out=out
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
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert "prototype-t0.25-val_loss-s0" in runs and "softmax-t0-val_mae-s0" in runs


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


def test_blog_benchmark_prints_ours_beside_the_blogs_numbers(tmp_path):
    cfg = tmp_path / "b.yaml"
    cfg.write_text(BLOG)
    out = io.StringIO()
    rows = bench.blog_benchmark(
        classes=(10,),
        variants=("softmax", "hpn10", "r10", "cos4", "data4", "dcos4"),
        seeds=(0, 1),
        config=str(cfg),
        out_dir=str(tmp_path / "runs"),
        out=out,
        jobs=2,
    )
    assert [r["variant"] for r in rows] == ["softmax", "hpn10", "r10", "cos4", "data4", "dcos4"]
    assert all(len(r["f1"]) == 2 and all(0 <= f <= 100 for f in r["f1"]) for r in rows)
    assert all(1 <= e <= 3 for r in rows for e in r["best_epoch"])
    table = out.getvalue()
    assert "| 10 | softmax |" in table and "| 91.3 |" in table and "| 78.22 |" in table
    soft = sum(rows[0]["best_epoch"]) / 2
    hpn = sum(rows[1]["best_epoch"]) / 2
    assert f"| 10 | {soft:.0f} | 50 | {hpn:.0f} | 69 |" in table  # Table 3 beside the blog's
    cos = json.loads((tmp_path / "runs" / "k10-cos4-s0" / "head.json").read_text())
    assert cos["loss"]["kind"] == "softmax" and cos["prototypes"]["method"] != "random"
    rand = json.loads((tmp_path / "runs" / "k10-r10-s1" / "head.json").read_text())
    assert rand["prototypes"]["method"] == "random" and rand["loss"]["kind"] == "paper"
    data = json.loads((tmp_path / "runs" / "k10-data4-s0" / "head.json").read_text())
    assert data["prototypes"]["method"] == "data" and data["prototypes"]["spread_steps"] == 100
    dcos = json.loads((tmp_path / "runs" / "k10-dcos4-s1" / "head.json").read_text())
    assert dcos["prototypes"]["spread_steps"] == 0
    assert dcos["loss"] == {"kind": "softmax", "scale": bench.DATA_COSINE_SCALE, "margin": 0.0}
    assert (tmp_path / "runs" / "k10-dcos4-s1.log").is_file()  # trained in its own process
    # a second call reads every run back: same numbers, nothing retrained
    again = bench.blog_benchmark(
        classes=(10,), variants=("dcos4",), seeds=(0, 1), config=str(cfg),
        out_dir=str(tmp_path / "runs"), out=io.StringIO(), jobs=2,
    )  # fmt: skip
    assert again[0]["f1"] == rows[-1]["f1"]


def test_linear_reference_matches_a_numpy_projection(tmp_path):
    import numpy as np
    from sklearn.metrics import f1_score

    from hpn.data.synthetic import gaussian_clusters

    cfg = tmp_path / "b.yaml"
    cfg.write_text(BLOG)
    extra = ["data.options.num_classes=10", *bench.blog_variant("lin4")]
    got = bench.linear_reference(str(cfg), extra, seed=3)
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
    rows = bench.blog_benchmark(
        classes=(10,), variants=("lin4",), seeds=(3,), config=str(cfg),
        out_dir=str(tmp_path / "runs"), out=out,
    )  # fmt: skip
    assert rows[0]["f1"] == [pytest.approx(100 * got["test_macro_f1"])]
    assert "| 10 | lin4 |" in out.getvalue() and "| - | - |" in out.getvalue()
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ValueError, match="spread_steps=0"):
        bench.linear_reference(str(cfg), ["head.prototypes=data"], seed=0)


def test_run_parallel_names_the_failed_run(tmp_path):
    cfg = tmp_path / "b.yaml"
    cfg.write_text(BLOG)
    with pytest.raises(RuntimeError, match="k-bad.*failed.*k-bad.log"):
        bench.run_parallel([(str(cfg), ["head.kind=nonsense"], 0, tmp_path / "k-bad")], jobs=2)


@pytest.mark.parametrize("name", ["hpn", "softmax10", "x100", "dcos", "data-4", "lin"])
def test_blog_variant_names_are_checked(name):
    with pytest.raises(ValueError, match=name):
        bench.blog_variant(name)


def test_scale_benchmark_measures_both_heads_in_fresh_processes():
    out = io.StringIO()
    k, features = 300_000, 16
    rows = bench.scale_benchmark(
        classes=(k,),
        dims=8,
        features=features,
        batch=32,
        steps=2,
        queries=64,
        chunk=100_000,
        out=out,
    )
    (row, predict) = rows
    assert row["K"] == k and row["hpn_s"] > 0 and row["softmax_s"] > 0
    # the softmax head's process must hold at least its weight, gradient and momentum (3 x K x
    # features floats) plus the (batch, K) logits; the HPN head has no K-sized parameter
    softmax_floor = (3 * k * features + 32 * k) * 4 / 2**20
    assert row["softmax_mib"] >= 0.9 * softmax_floor, (row, softmax_floor)
    assert row["hpn_mib"] < row["softmax_mib"] / 2
    assert 64 / 600 < predict["predict_queries_per_s"] < float("inf")  # 64 queries in < 10 min
    table = out.getvalue()
    assert f"| {k:,} |" in table and f"K = {k:,}, d = 8" in table and "chunks of 100,000" in table


def test_assignment_benchmark_compares_static_and_dynamic_per_dim(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    out = io.StringIO()
    rows = bench.assignment_benchmark(
        str(cfg), dims=(2,), seeds=(0, 1), out_dir=str(tmp_path / "runs"), out=out, jobs=2
    )
    assert [(r["dims"], r["assignment"]) for r in rows] == [(2, "static"), (2, "dynamic")]
    static, dynamic = rows
    assert static["initial_moved"] == [None, None] and static["moves"] == [0, 0]
    assert all(isinstance(m, int) and 0 <= m <= 4 for m in dynamic["initial_moved"])
    head = json.loads((tmp_path / "runs" / "prototype-d2-dynamic-s1" / "head.json").read_text())
    assert head["assignment"]["kind"] == "dynamic"
    assert head["assignment"]["initial_reassigned"] == dynamic["initial_moved"][1]
    assert json.loads((tmp_path / "runs" / "prototype-d2-s0" / "head.json").read_text())[
        "assignment"
    ] == {"kind": "static"}
    table = out.getvalue()
    assert "| 2 | static |" in table and "| 2 | dynamic |" in table
    # the same folders serve the classification benchmark: read back, not retrained
    done = tmp_path / "runs" / "prototype-d2-s1" / "results.json"
    stamp = done.stat().st_mtime_ns
    again = bench.classification_benchmark(
        str(cfg), dims=(2,), seeds=(1,), out_dir=str(tmp_path / "runs"), out=io.StringIO()
    )
    assert done.stat().st_mtime_ns == stamp and again[1]["accs"] == static["accs"][1:]


# CONFIG with more points per class, so that a 0.1 profile fills the many / medium / few groups
LONGTAIL = CONFIG.replace(
    "samples_per_class: 40, dims: 6, std: 0.3", "samples_per_class: 160, dims: 6, std: 0.5"
)


def test_longtail_benchmark_reports_shot_groups_for_three_models(tmp_path):
    cfg = tmp_path / "lt.yaml"
    cfg.write_text(LONGTAIL)
    out = io.StringIO()
    rows = bench.longtail_benchmark(
        str(cfg), imbalances=(0.1,), dims=(2,), seeds=(0,), out_dir=str(tmp_path / "r"), out=out
    )
    assert [r["model"] for r in rows] == [
        "softmax",
        "HPN, d = 2",
        "HPN + dynamic assignment, d = 2",
    ]
    res = json.loads(
        (tmp_path / "r" / "if0.1-prototype-d2-dynamic-s0" / "results.json").read_text()
    )
    counts = res["data"]["train_counts"]
    assert counts[0] > 100 and counts[-1] < 20 and counts == sorted(counts, reverse=True)
    assert res["data"]["imbalance"] == 0.1
    for r in rows:  # every group has a class at this profile
        assert all(0.0 <= r[g][0] <= 1.0 for g in ("many", "medium", "few"))
    table = out.getvalue()
    assert "| 0.1 | softmax |" in table and "| 0.1 | HPN + dynamic assignment, d = 2 |" in table


def test_transfer_benchmark_probes_each_models_features_and_keeps_the_report(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    out = io.StringIO()
    target = {"num_classes": 3, "samples_per_class": 30, "dims": 6, "std": 0.3}
    rows = bench.transfer_benchmark(
        str(cfg), target="clusters", dims=(2,), seeds=(0,), out_dir=str(tmp_path / "r"),
        target_options=target, out=out,
    )  # fmt: skip
    assert len(rows) == 3
    for r in rows:
        assert 0.0 <= r["probe"][0] <= 1.0 and -1.0 <= r["source_separation"][0] <= 1.0
    kept = list((tmp_path / "r" / "softmax-s0").glob("transfer-clusters-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["target"] == "clusters"
    assert "linear probe accuracy (clusters)" in out.getvalue()
    # the kept report is read back
    stamp = kept[0].stat().st_mtime_ns
    again = bench.transfer_benchmark(
        str(cfg), target="clusters", dims=(2,), seeds=(0,), out_dir=str(tmp_path / "r"),
        target_options=target, out=io.StringIO(),
    )  # fmt: skip
    assert kept[0].stat().st_mtime_ns == stamp and again == rows


def test_sklearn_benchmark_prints_both_recipes_and_the_default(monkeypatch):
    import numpy as np

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(103), 4)
    X = rng.normal(size=(103, 6))[y] + 0.05 * rng.normal(size=(len(y), 6))
    y3 = np.repeat(np.arange(3), 20)
    x3 = 3 * np.eye(3)[y3] + rng.normal(size=(60, 3))
    sets = [("three", x3, y3, None, None), ("many", X, y, X, y)]
    monkeypatch.setattr(bench, "_sklearn_sets", lambda quick=False: sets)
    out = io.StringIO()
    rows = bench.sklearn_benchmark(max_iter=2, out=out)
    assert [r["default"] for r in rows] == ["paper", "data prior"]
    assert len(rows[0]["paper"]) == 5 and len(rows[1]["data prior"]) == 1  # 5 folds; one fit
    assert all(0 <= v <= 1 for r in rows for m in ("paper", "data prior") for v in r[m])
    table = out.getvalue()
    assert "| three | 3 |" in table and "| many | 103 |" in table and "data prior |" in table
