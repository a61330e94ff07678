import io

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
