"""hpn predict: per-example top-k classes of a finished run, from its splits or image files."""

import csv
import json

import numpy as np
import pytest
import torch

from hpn.cli import main
from hpn.data.image_inputs import ImageInputs, image_inputs
from hpn.training.inference import load_run
from hpn.training.predict import predict_run


def _read(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_split_gives_one_row_per_example_with_the_recorded_accuracy(clusters_runs, tmp_path):
    folder = clusters_runs["prototype"]
    out = tmp_path / "test.csv"
    assert main(["predict", str(folder), "test", "--out", str(out), "--top-k", "2"]) == 0
    rows = _read(out)
    assert list(rows[0]) == ["input", "label", "class_1", "cosine_1", "class_2", "cosine_2"]
    results = json.loads((folder / "results.json").read_text())
    assert len(rows) == 32  # 4 classes x 40, a fifth held out for test
    hits = [r["class_1"] == r["label"] for r in rows]
    assert sum(hits) / len(rows) == results["test_accuracy"]
    assert all(float(r["cosine_1"]) >= float(r["cosine_2"]) for r in rows)
    assert all(-1.0 <= float(r["cosine_2"]) <= 1.0 for r in rows)


def test_parquet_holds_the_csv_rows(clusters_runs, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    folder = clusters_runs["softmax"]
    predict_run(folder, "val", tmp_path / "val.csv", k=3, progress=False)
    predict_run(folder, "val", tmp_path / "val.parquet", k=3, progress=False)
    table = pq.read_table(tmp_path / "val.parquet").to_pydict()
    rows = _read(tmp_path / "val.csv")
    assert list(table) == list(rows[0]) and "probability_3" in table
    assert [str(v) for v in table["class_1"]] == [r["class_1"] for r in rows]
    assert np.allclose(table["probability_1"], [float(r["probability_1"]) for r in rows])


def test_a_run_on_vectors_takes_split_names_only(clusters_runs, tmp_path, capsys):
    (tmp_path / "images").mkdir()
    argv = ["predict", str(clusters_runs["prototype"]), str(tmp_path / "images"), "--out", "x.csv"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "trained on clusters inputs, which are not image files" in err
    assert "give a split name (train, val, test)" in err and len(err.splitlines()) == 1
    argv[2] = "nowhere"
    assert main(argv) == 2
    assert "no such file or folder, and not a split name" in capsys.readouterr().err


def test_folder_list_and_csv_inputs_match_the_runs_own_test_split(image_run, tmp_path):
    """The test split of an image-folder run is root/val: the same files predicted as a
    folder, a list and a CSV give the split's own scores, so files are prepared as the source
    prepared them."""
    root = json.loads((image_run / "config.json").read_text())["data"]["options"]["root"]
    split = _read(predict_run(image_run, "test", tmp_path / "split.csv", k=3, progress=False))
    folder = _read(predict_run(image_run, f"{root}/val", tmp_path / "f.csv", k=3, progress=False))
    listed = sorted(r["input"] for r in folder)
    (tmp_path / "list.txt").write_text("# images\n\n" + "\n".join(listed) + "\n")
    (tmp_path / "paths.csv").write_text(
        "id,path\n" + "".join(f"{i},{p}\n" for i, p in enumerate(listed))
    )
    by_list = _read(
        predict_run(image_run, tmp_path / "list.txt", tmp_path / "l.csv", k=3, progress=False)
    )
    by_csv = _read(
        predict_run(image_run, tmp_path / "paths.csv", tmp_path / "c.csv", k=3, progress=False)
    )
    assert len(split) == len(folder) == 9
    assert (
        [r["name_1"] for r in split]
        == [r["name_1"] for r in folder]
        == [r["name_1"] for r in by_list]
    )
    for a, b, c in zip(split, folder, by_csv, strict=True):
        assert float(a["cosine_1"]) == pytest.approx(float(b["cosine_1"]), abs=1e-6)
        assert b["input"] == c["input"] and b["cosine_2"] == c["cosine_2"]
    assert [r["label_name"] for r in split] == sorted(r["label_name"] for r in split)


def test_relative_paths_single_images_and_bad_listings(image_run, tmp_path):
    root = json.loads((image_run / "config.json").read_text())["data"]["options"]["root"]
    red = f"{root}/val/red/0.png"
    (tmp_path / "val").symlink_to(f"{root}/val")
    (tmp_path / "paths.csv").write_text("path\nval/red/0.png\n")
    listed = _read(predict_run(image_run, tmp_path / "paths.csv", tmp_path / "l.csv", k=1))
    single = _read(predict_run(image_run, red, tmp_path / "one.csv", k=1))
    assert [r["input"] for r in listed] == ["val/red/0.png"] and single[0]["input"] == red
    assert listed[0]["cosine_1"] == single[0]["cosine_1"] and single[0]["name_1"] == "red"
    (tmp_path / "bad.csv").write_text("file\na.png\n")
    with pytest.raises(ValueError, match=r"bad.csv: no 'path' column \(columns: \['file'\]\)"):
        predict_run(image_run, tmp_path / "bad.csv", tmp_path / "o.csv")
    (tmp_path / "list.txt").write_text("missing.png\n")
    with pytest.raises(FileNotFoundError, match="image file not found: .*missing.png"):
        predict_run(image_run, tmp_path / "list.txt", tmp_path / "o.csv", progress=False)
    (tmp_path / "weights.bin").write_bytes(bytes(range(256)))
    with pytest.raises(
        ValueError, match="weights.bin: not a text file listing paths, nor an image"
    ):
        predict_run(image_run, tmp_path / "weights.bin", tmp_path / "o.csv")


@pytest.mark.parametrize(("mode", "channels"), [("L", 1), ("RGB", 3)])
def test_image_files_give_back_their_pixels(tmp_path, mode, channels):
    image_module = pytest.importorskip("PIL.Image")
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28, 3)).astype(np.uint8)
    image = image_module.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)
    image.save(tmp_path / "x.png")
    x = ImageInputs(channels, (28, 28)).load(tmp_path / "x.png")
    expected = pixels[..., :1] if mode == "L" else pixels
    assert x.shape == (channels, 28, 28)
    torch.testing.assert_close(x, torch.from_numpy(expected).permute(2, 0, 1).float() / 255)
    assert image_inputs("mnist5k", (1, 28, 28)) == ImageInputs(1, (28, 28))
    assert image_inputs("glyphs", (1, 32, 32)) is None  # renders cropped to their ink


def test_the_model_reads_image_files_as_the_split(image_run):
    model = load_run(image_run)
    data = model.splits.test
    x = model.images.load_batch(data.paths[:3])
    torch.testing.assert_close(x, torch.stack([data[i][0] for i in range(3)]))


def test_value_columns(value_runs, tmp_path):
    multitask = _read(predict_run(value_runs["multitask"], "test", tmp_path / "m.csv", k=1))
    assert list(multitask[0]) == [
        "input",
        "label",
        "label_name",
        "class_1",
        "name_1",
        "cosine_1",
        "value",
    ]
    regression = _read(predict_run(value_runs["regression"], "test", tmp_path / "r.csv"))
    assert list(regression[0]) == ["input", "value"] and len(regression) == 1000
