"""hpn evaluate: a finished run's best weights scored on its data loaded another way."""

import json

import pytest

from hpn.cli import main
from hpn.training.finished import evaluate_run, evaluation_tag
from hpn.training.run import load_config, run


@pytest.fixture(scope="module")
def finished(tmp_path_factory, run_config, write_config):
    folder = tmp_path_factory.mktemp("eval") / "run"
    optim = {"optimizer": "adam", "lr": 0.01, "epochs": 3, "batch_size": 32}
    head = {"kind": "prototype", "dims": 3}
    config = write_config(folder.parent / "c.yaml", run_config(std=0.3, head=head, optim=optim))
    run(load_config(str(config), [f"out_dir={folder}"]), log=lambda *a: None)
    return folder


def test_the_runs_own_data_gives_its_own_test_score(finished):
    results = json.loads((finished / "results.json").read_text())
    report = evaluate_run(finished)
    assert report["accuracy"] == results["test_accuracy"]
    assert report["loss"] == pytest.approx(results["test_loss"])
    assert (finished / "evaluations" / "test.json").is_file()


def test_noisier_data_scores_lower_and_is_read_back(finished):
    clean = evaluate_run(finished, [], split="val")
    noisy = evaluate_run(finished, ["data.options.std=3.0"], split="val")
    assert noisy["accuracy"] < clean["accuracy"] and noisy["overrides"] == ["data.options.std=3.0"]
    kept = finished / "evaluations" / "val-std=3.0.json"
    stamp = kept.stat().st_mtime_ns
    assert evaluate_run(finished, ["data.options.std=3.0"], split="val") == noisy
    assert kept.stat().st_mtime_ns == stamp


def test_the_validation_hook_of_specs_scores_the_validation_split(finished):
    from hpn.experiments.hooks import evaluation_or_load, validation_evaluation

    noisy = validation_evaluation(finished, {"data.options.std": 3.0})
    assert noisy["split"] == "val" and noisy["overrides"] == ["data.options.std=3.0"]
    assert noisy == evaluate_run(finished, ["data.options.std=3.0"], split="val")
    assert evaluation_or_load(finished, {"data.options.std": 3.0})["split"] == "test"
    assert (finished / "evaluations" / "val-std=3.0.json").is_file()


def test_bad_requests_are_one_line(finished, tmp_path, capsys):
    with pytest.raises(ValueError, match="only data.\\* keys"):
        evaluate_run(finished, ["optim.lr=1"])
    with pytest.raises(ValueError, match="split must be one of"):
        evaluate_run(finished, split="dev")
    with pytest.raises(ValueError, match="does not fit the data"):
        evaluate_run(finished, ["data.options.num_classes=5"])
    with pytest.raises(FileNotFoundError, match="not a finished run folder"):
        evaluate_run(tmp_path)
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a finished run folder" in capsys.readouterr().err


def test_the_command_prints_one_row_per_run(finished, capsys):
    assert main(["evaluate", str(finished), "--split", "val"]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert row.startswith(f"| {finished} | val | (none) | ")
    assert (
        evaluation_tag(["data.options.degrade=1", "data.seed=3"], "test") == "test-degrade=1-seed=3"
    )


def test_a_kept_evaluation_is_scored_again_when_best_pt_or_the_config_changes(finished, tmp_path):
    import shutil

    import torch

    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    first = evaluate_run(folder, split="val")
    state = torch.load(folder / "best.pt", weights_only=True)
    state["model"] = {k: torch.zeros_like(v) for k, v in state["model"].items()}
    torch.save(state, folder / "best.pt")  # another model under the same name
    second = evaluate_run(folder, split="val")
    assert second["key"] != first["key"] and second["loss"] != first["loss"]
    assert evaluate_run(folder, split="val") == second  # read back while nothing changes
    config = json.loads((folder / "config.json").read_text())
    config["data"]["options"]["std"] = 2.0
    (folder / "config.json").write_text(json.dumps(config))
    third = evaluate_run(folder, split="val")
    assert third["key"] != second["key"]
    (folder / "evaluations" / "val.json").write_text('{"accuracy": ')  # a damaged record
    assert evaluate_run(folder, split="val")["key"] == third["key"]


def test_a_kept_transfer_report_is_computed_again_when_best_pt_changes(finished, tmp_path):
    import shutil

    import torch

    from hpn.experiments.hooks import transfer_or_load

    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    options = {"num_classes": 3, "samples_per_class": 20, "dims": 6, "seed": 1}
    first = transfer_or_load(folder, "clusters", options)
    assert transfer_or_load(folder, "clusters", options) == first  # read back
    state = torch.load(folder / "best.pt", weights_only=True)
    state["model"] = {k: v + 0.5 for k, v in state["model"].items()}
    torch.save(state, folder / "best.pt")
    second = transfer_or_load(folder, "clusters", options)
    assert second["key"] != first["key"]
    assert second["source_separation"] != first["source_separation"]
