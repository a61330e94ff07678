"""hpn evaluate --confusion: per-class accuracy and the confusion matrix of a finished run."""

import csv
import json

import pytest

from hpn.cli import main
from hpn.training.class_report import confusion_report
from hpn.training.finished import evaluate_run


def _read(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_tables_and_figure_agree_with_the_evaluation(clusters_runs, capsys):
    pytest.importorskip("matplotlib")
    folder = clusters_runs["prototype"]
    assert main(["evaluate", str(folder), "--split", "val", "--confusion"]) == 0
    printed = capsys.readouterr().out.splitlines()[-1]
    evaluations = folder / "evaluations"
    assert printed == (
        f"{folder}: {evaluations / 'val-per-class.csv'}, {evaluations / 'val-confusion.csv'}, "
        f"{evaluations / 'val-confusion.png'}"
    )
    scored = evaluate_run(folder, split="val")
    per_class = _read(evaluations / "val-per-class.csv")
    assert [int(r["class"]) for r in per_class] == [0, 1, 2, 3]
    assert sum(int(r["examples"]) for r in per_class) == scored["examples"]
    assert sum(int(r["correct"]) for r in per_class) / scored["examples"] == scored["accuracy"]
    matrix = _read(evaluations / "val-confusion.csv")
    assert [r["true/predicted"] for r in matrix] == ["0", "1", "2", "3"]
    diagonal = [int(r[str(c)]) for c, r in enumerate(matrix)]
    assert diagonal == [int(r["correct"]) for r in per_class]
    assert (evaluations / "val-confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_names_and_worst_classes_of_an_image_run(image_run):
    pytest.importorskip("matplotlib")
    report = confusion_report(image_run)
    rows = _read(report["per_class_csv"])
    assert [r["name"] for r in rows] == ["blue", "green", "red"]
    assert len(report["per_class_accuracy"]) == 3
    worst = report["worst_classes"]
    accuracy = report["per_class_accuracy"]
    assert accuracy[worst[0]] == min(accuracy)
    assert json.loads(json.dumps(report)) == report  # plain types only


def test_an_unknown_split_is_refused(clusters_runs):
    with pytest.raises(ValueError, match="split must be one of"):
        confusion_report(clusters_runs["prototype"], split="dev")
