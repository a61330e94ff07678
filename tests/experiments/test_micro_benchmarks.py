"""The micro-benchmarks that are not sweeps: scale and sklearn (prototypes, optima and fuzz
are checked by tests/prototypes and tests/test_fuzz on the functions they print)."""

import io

import pytest

from hpn.experiments import estimators, scale


def test_scale_benchmark_measures_both_heads_in_fresh_processes():
    out = io.StringIO()
    k, features = 300_000, 16
    rows = scale.scale_benchmark(
        classes=(k,),
        dims=8,
        features=features,
        batch=32,
        steps=2,
        queries=64,
        chunk=100_000,
        peers=(),
        out=out,
    )
    (row, predict) = rows
    assert row["K"] == k and row["hpn_s"] > 0 and row["softmax_s"] > 0
    # the softmax head's process must hold at least its weight, gradient and momentum (3 x K x
    # features floats) plus the (batch, K) logits; the HPN head has no K-sized parameter
    softmax_floor = (3 * k * features + 32 * k) * 4 / 2**20
    assert row["softmax_mib"] >= 0.9 * softmax_floor, (row, softmax_floor)
    # both processes pay the same runtime overhead (~85 MiB); softmax's K-sized state comes on top
    assert row["softmax_mib"] - row["hpn_mib"] >= 0.9 * 3 * k * features * 4 / 2**20, row
    assert 64 / 600 < predict["predict_queries_per_s"] < float("inf")  # 64 queries in < 10 min
    table = out.getvalue()
    assert f"| {k:,} |" in table and f"K = {k:,}, d = 8" in table and "chunks of 100,000" in table


def test_scale_benchmark_times_each_hpn_loss_against_one_softmax_run():
    out = io.StringIO()
    rows = scale.scale_benchmark(
        classes=(500,), dims=8, features=16, batch=32, steps=2, queries=16, chunk=1_000,
        losses=("squared_cosine", "neighbour_softmax"), optimizer="adam", out=out,
    )  # fmt: skip
    paper, neighbours, cosine, sampled, _ = rows
    assert (paper["loss"], neighbours["loss"]) == ("squared_cosine", "neighbour_softmax")
    assert (cosine["loss"], sampled["loss"]) == ("cosine", "sampled")  # the peers, by default
    assert paper["softmax_s"] == neighbours["softmax_s"]  # one softmax measurement per K
    assert "| 500 | neighbour_softmax |" in out.getvalue() and "| 500 | sampled |" in out.getvalue()
    assert "adam" in out.getvalue().splitlines()[0]
    with pytest.raises(ValueError, match="losses must be among"):
        scale.scale_benchmark(classes=(10,), losses=("hinge",), out=io.StringIO())
    with pytest.raises(ValueError, match="peers among"):
        scale.scale_benchmark(classes=(10,), peers=("prototype",), out=io.StringIO())


def test_sklearn_benchmark_prints_both_recipes_and_the_default(monkeypatch):
    import numpy as np

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(103), 4)
    X = rng.normal(size=(103, 6))[y] + 0.05 * rng.normal(size=(len(y), 6))
    y3 = np.repeat(np.arange(3), 20)
    x3 = 3 * np.eye(3)[y3] + rng.normal(size=(60, 3))
    sets = [("three", x3, y3, None, None), ("many", X, y, X, y)]
    monkeypatch.setattr(estimators, "_sklearn_sets", lambda quick=False: sets)
    out = io.StringIO()
    rows = estimators.sklearn_benchmark(max_iter=2, out=out)
    assert [r["default"] for r in rows] == ["paper", "data prior"]
    assert len(rows[0]["paper"]) == 5 and len(rows[1]["data prior"]) == 1  # 5 folds; one fit
    assert all(0 <= v <= 1 for r in rows for m in ("paper", "data prior") for v in r[m])
    table = out.getvalue()
    assert "| three | 3 |" in table and "| many | 103 |" in table and "data prior |" in table
    three = rows[0]["paper"]
    assert f"| three | 3 | {np.mean(three):.3f} ± {np.std(three):.3f} |" in table


def test_peak_memory_of_a_worker_is_its_own_not_its_large_parents():
    """A spawned worker used to report its parent's peak (ru_maxrss survives exec)."""
    ballast = bytearray(300 * 2**20)  # a 300 MiB parent, like a long test session
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page so it is resident
    seconds, peak = scale._in_fresh_process(
        scale._scale_case, "softmax", 300_000, 8, 16, 32, 2, "cpu", "sgd"
    )
    assert seconds > 0 and peak >= 0.9 * (3 * 300_000 * 16 + 32 * 300_000) * 4 / 2**20
    del ballast
