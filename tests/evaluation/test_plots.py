import csv
import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from hpn.evaluation.plots import compare_curves, read_curve, sphere_plot


def write_metrics(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_read_curve_adds_up_steps_and_seconds(tmp_path):
    rows = [
        {"epoch": 1, "val_accuracy": 0.5, "seconds": 10.0, "steps": 100},
        {"epoch": 2, "val_accuracy": 0.7, "seconds": 12.5, "steps": 100},
        {"epoch": 3, "val_accuracy": 0.75, "seconds": 11.0, "steps": 100},
    ]
    curve = read_curve(write_metrics(tmp_path / "a", rows))
    assert curve["steps"].tolist() == [100, 200, 300]
    assert curve["seconds"].tolist() == [10.0, 22.5, 33.5]
    assert curve["val_accuracy"].tolist() == [0.5, 0.7, 0.75]


def test_a_run_with_a_warmup_counts_the_warmups_steps_and_seconds_first(tmp_path):
    warm = [{"epoch": 1, "val_accuracy": 0.4, "seconds": 9.0, "steps": 100}]
    own = [
        {"epoch": e, "val_accuracy": a, "seconds": 10.0, "steps": 100}
        for e, a in ((1, 0.8), (2, 0.9))
    ]
    write_metrics(tmp_path / "run" / "warmup", warm)
    curve = read_curve(write_metrics(tmp_path / "run", own))
    assert curve["steps"].tolist() == [100, 200, 300]
    assert curve["seconds"].tolist() == [9.0, 19.0, 29.0]
    assert curve["val_accuracy"].tolist() == [0.4, 0.8, 0.9]


def test_seconds_count_building_the_prototypes_before_the_first_epoch(tmp_path):
    warm = [{"epoch": 1, "val_accuracy": 0.4, "seconds": 9.0, "steps": 100}]
    own = [{"epoch": e, "val_accuracy": 0.8, "seconds": 10.0, "steps": 100} for e in (1, 2)]
    write_metrics(tmp_path / "run" / "warmup", warm)
    folder = write_metrics(tmp_path / "run", own)
    (folder / "head.json").write_text(json.dumps({"prototypes": {"seconds": 4.0}}))
    # unfinished: head.json's record; steps do not move, seconds do, after the warm-up
    assert read_curve(folder)["seconds"].tolist() == [9.0, 23.0, 33.0]
    assert read_curve(folder)["steps"].tolist() == [100, 200, 300]
    # finished: what results.json records (a resumed run built them again)
    (folder / "results.json").write_text(json.dumps({"prototype_seconds": 6.0}))
    assert read_curve(folder)["seconds"].tolist() == [9.0, 25.0, 35.0]
    # a head without prototypes (softmax: head.json has none) adds nothing
    (folder / "results.json").write_text(json.dumps({"test_accuracy": 0.9}))
    assert read_curve(folder)["seconds"].tolist() == [9.0, 19.0, 29.0]
    # the warm-up's own prior comes before the warm-up's first epoch
    (folder / "warmup" / "results.json").write_text(json.dumps({"prototype_seconds": 2.0}))
    assert read_curve(folder)["seconds"].tolist() == [11.0, 21.0, 31.0]


def test_read_curve_of_older_runs_without_steps_and_bad_metric(tmp_path):
    folder = write_metrics(tmp_path / "old", [{"epoch": 1, "val_accuracy": 0.5, "seconds": 3}])
    assert np.isnan(read_curve(folder)["steps"]).all()
    with pytest.raises(ValueError, match="has no column 'val_mae'"):
        read_curve(folder, "val_mae")


def test_compare_curves_writes_one_png(tmp_path):
    rows = [{"epoch": e, "val_accuracy": e / 10, "seconds": 5, "steps": 50} for e in (1, 2)]
    runs = {
        "softmax": write_metrics(tmp_path / "s", rows),
        "hpn": write_metrics(tmp_path / "h", rows),
    }
    path = compare_curves(runs, tmp_path / "curves.png", title="K = 2")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sphere_plot_has_three_ticks_per_axis(tmp_path, monkeypatch):
    import matplotlib.figure

    seen = {}
    save = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        ax = fig.axes[0]
        seen["ticks"] = [list(ax.get_xticks()), list(ax.get_yticks()), list(ax.get_zticks())]
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    z = np.random.default_rng(0).normal(size=(50, 3))
    sphere_plot(z, np.arange(50) % 3, np.eye(3), tmp_path / "s.png")
    assert seen["ticks"] == [[-1, 0, 1]] * 3
