import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hpn import prototypes as protos
from hpn.cli import main


def test_prototypes_command_writes_file_and_prints_report(tmp_path, capsys):
    out = tmp_path / "p.npy"
    assert (
        main(
            [
                "prototypes",
                "-k",
                "12",
                "-d",
                "4",
                "--method",
                "optimized",
                "--steps",
                "100",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "worst pair" in text and "best possible" in text and "saved" in text
    p, meta = protos.load(out)
    assert p.shape == (12, 4) and meta["method"] == "optimized"
    assert f"{protos.report(p).worst_cosine:+.6f}" in text


def test_report_flag_reports_an_existing_file(tmp_path, capsys):
    protos.save(
        tmp_path / "s.npy", protos.generate(5, 4, method="simplex"), method="simplex", seed=0
    )
    assert main(["prototypes", "--report", str(tmp_path / "s.npy")]) == 0
    text = capsys.readouterr().out
    assert "-0.250000" in text and "exact optimum" in text


def test_class_names_file_sets_k_and_is_stored(tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\n\ntruck\n")
    assert (
        main(["prototypes", "-d", "5", "--classes", str(names), "-o", str(tmp_path / "c.npy")]) == 0
    )
    _, meta = protos.load(tmp_path / "c.npy")
    assert meta["class_names"] == ["cat", "dog", "truck"] and meta["method"] == "simplex"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-k", "1", "-d", "3"], "num_classes must be >= 2, got 1"),
        (["-k", "5", "-d", "0"], "dims must be >= 1, got 0"),
        (["-k", "5", "-d", "3", "--method", "nope"], "unknown method 'nope'"),
        (["-k", "50", "-d", "3", "--method", "simplex"], "at most 4 classes in 3 dims, got 50"),
        (["-k", "abc", "-d", "3"], "invalid int value: 'abc'"),
        (["--report", "missing.npy"], "prototype file not found: missing.npy"),
        (["-k", "5", "-d", "3"], "give an output file"),
    ],
)
def test_invalid_input_is_one_line_with_exit_status_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = argv + (
        ["-o", "x.npy"]
        if "-o" not in argv and "output" not in message and "--report" not in argv
        else []
    )
    assert main(["prototypes", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x.npy").exists()


def test_python_dash_m_entry_point_exits_2_without_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpn",
            "prototypes",
            "-k",
            "0",
            "-d",
            "3",
            "-o",
            str(tmp_path / "x.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "hpn: error: num_classes must be >= 2, got 0"
    assert proc.stdout == ""


def test_seed_changes_random_prototypes(tmp_path):
    for seed in ("1", "2"):
        argv = ["prototypes", "-k", "9", "-d", "3", "--method", "random", "--seed", seed]
        assert main([*argv, "-o", str(tmp_path / f"{seed}.npy")]) == 0
    first, second = (protos.load(tmp_path / f"{s}.npy")[0] for s in ("1", "2"))
    assert not torch.equal(first, second)


def test_bench_list_options_name_the_bad_value(capsys):
    assert main(["bench", "classification", "--seeds", "0,x"]) == 2
    assert "expected comma-separated ints, got '0,x'" in capsys.readouterr().err


def test_overrides_may_follow_options_and_stray_arguments_are_refused(
    monkeypatch, tmp_path, capsys
):
    from hpn import cli
    from hpn.experiments import sweep

    seen = {}
    monkeypatch.setattr(sweep, "run_sweep", lambda name, **kw: seen.update(kw, name=name))
    args = ["bench", "blog", "--classes", "10", "--out", str(tmp_path), "device=cuda"]
    assert cli.main([*args, "optim.epochs=3", "--jobs", "3"]) == 0
    assert seen["overrides"] == ["device=cuda", "optim.epochs=3"] and seen["jobs"] == 3
    assert (
        seen["name"] == "clusters" and seen["classes"] == "10" and seen["out_dir"] == str(tmp_path)
    )
    assert cli.main([*args, "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_the_file_is_written_before_the_report_and_large_reports_are_estimates(
    tmp_path, capsys, monkeypatch
):
    from hpn import prototypes as protos

    out = tmp_path / "codes.npy"
    assert (
        main(
            [
                "prototypes",
                "-k",
                "5000",
                "-d",
                "64",
                "--method",
                "code",
                "-o",
                str(out),
                "--report-mode",
                "estimate",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "guaranteed       cos <= +0.250000" in text and "estimate from 4096 sampled rows" in text
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["report"]["estimated"] and meta["report"]["sampled_rows"] == 4096
    assert meta["report"]["worst_cosine"] <= 0.25 + 1e-6  # the code's guarantee holds

    def broken(*_args, **_kwargs):
        raise KeyboardInterrupt  # e.g. the user gave up waiting for the report

    monkeypatch.setattr(protos, "report", broken)
    again = tmp_path / "again.npy"
    assert main(["prototypes", "-k", "300", "-d", "8", "-o", str(again)]) == 130
    assert again.is_file() and json.loads(again.with_suffix(".json").read_text())["report"] is None
    assert (
        main(["prototypes", "-k", "300", "-d", "8", "-o", str(tmp_path / "n.npy"), "--no-report"])
        == 0
    )


def test_the_image_folder_how_to_trains_and_evaluates_a_tiny_tree(tmp_path, monkeypatch):
    # docs/how-to/image-folder.md's commands, on 3 classes of 8 x 8 PNGs and one epoch
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 3)):
        for c, name in enumerate(("cat", "dog", "eel")):
            folder = tmp_path / "my-images" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (8, 8, 3)) + 60 * c
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    args = ["train", "--config", "demo", "--out", "runs/my-images", "data.name=image_folders"]
    args += ["data.options.root=my-images", "data.options.image_size=8", "model.backbone=convnet"]
    assert main([*args, "head.dims=2", "optim.epochs=1", "optim.batch_size=8"]) == 0
    results = json.loads((tmp_path / "runs/my-images/results.json").read_text())
    assert results["data"]["counts"]["test"] == 9 and results["output_size"] == 2
    assert main(["evaluate", "runs/my-images", "--split", "val"]) == 0


def test_list_configs_gives_each_a_one_line_description(capsys):
    assert main(["train", "--list-configs"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.split()[0] for line in lines]
    assert "demo" in names and "glyphs" in names and len(lines) == len(set(names))
    for line in lines:
        description = line.split(maxsplit=1)[1]
        assert description.endswith(".") and len(description) <= 100, line
