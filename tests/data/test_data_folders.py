import sys

import numpy as np
import pytest
import torch

from hpn.data.folders import ImageFileDataset, load_image, load_image_folders

Image = pytest.importorskip("PIL.Image")


def save_image(path, colour, size=(10, 8), fmt=None):
    """A solid-colour RGB image of (width, height) ``size``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


COLOURS = {"zebra": (250, 10, 10), "ant": (10, 250, 10), "moth": (10, 10, 250)}


def make_tree(root, test_name="val", per_class=4):
    for name, colour in COLOURS.items():
        for i in range(per_class):
            ext = ("png", "jpg", "JPEG", "jpeg")[i % 4]
            save_image(root / "train" / name / f"{name}_{i}.{ext}", colour)
        save_image(root / test_name / name / f"t_{name}.png", colour, size=(20, 30))
    return root


def test_tree_loads_lazily_with_sorted_classes(tmp_path):
    make_tree(tmp_path)
    splits = load_image_folders(tmp_path, image_size=16, val_fraction=0.25, seed=0)
    assert splits.class_names == ["ant", "moth", "zebra"] and splits.num_classes == 3
    assert splits.task == "classification" and splits.input_shape == (3, 16, 16)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 3, 3)
    assert isinstance(splits.train, ImageFileDataset) and splits.info["test_dir"] == "val"
    for part in (splits.train, splits.val, splits.test):
        for i in range(len(part)):
            x, target = part[i]
            assert x.shape == (3, 16, 16) and x.dtype == torch.float32
            assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
            assert target["label"].dtype == torch.int64
            name = splits.class_names[int(target["label"])]
            assert name in part.paths[i]
            colour = torch.tensor(COLOURS[name], dtype=torch.float32) / 255
            # JPEG is lossy: compare the mean colour
            torch.testing.assert_close(x.mean((1, 2)), colour, atol=0.03, rtol=0)
    labels = torch.cat([splits.train.targets["label"], splits.val.targets["label"]])
    assert torch.bincount(labels).tolist() == [4, 4, 4]


def test_test_folder_fallback_and_choice(tmp_path):
    make_tree(tmp_path, test_name="test")
    splits = load_image_folders(tmp_path, image_size=(6, 12))
    assert splits.info["test_dir"] == "test" and splits.input_shape == (3, 6, 12)
    assert splits.test[0][0].shape == (3, 6, 12)
    save_image(tmp_path / "val" / "ant" / "v.png", COLOURS["ant"])
    assert load_image_folders(tmp_path).info["test_dir"] == "val"
    assert len(load_image_folders(tmp_path, test_dir="test").test) == 3


def test_test_split_may_lack_classes_and_labels_follow_training_ids(tmp_path):
    make_tree(tmp_path)
    for path in (tmp_path / "val" / "ant").iterdir():
        path.unlink()
    (tmp_path / "val" / "ant").rmdir()
    splits = load_image_folders(tmp_path, image_size=4)
    assert splits.test.targets["label"].tolist() == [1, 2]  # moth, zebra


def test_seeded_split(tmp_path):
    make_tree(tmp_path, per_class=8)
    a, b, c = (load_image_folders(tmp_path, seed=s) for s in (1, 1, 2))
    assert a.val.paths == b.val.paths and a.val.paths != c.val.paths
    assert not set(a.val.paths) & set(a.train.paths)


def test_nested_and_non_image_files(tmp_path):
    make_tree(tmp_path)
    save_image(tmp_path / "train" / "ant" / "images" / "deep.png", COLOURS["ant"])
    (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
    save_image(tmp_path / "train" / "ant" / ".hidden" / "x.png", COLOURS["ant"])
    (tmp_path / "train" / ".cache").mkdir()
    splits = load_image_folders(tmp_path, val_fraction=0.1)
    assert splits.num_classes == 3
    paths = splits.train.paths + splits.val.paths
    assert len(paths) == 13 and any(p.endswith("deep.png") for p in paths)


def test_tiny_imagenet_val_annotations(tmp_path):
    make_tree(tmp_path, test_name="unused")
    val = tmp_path / "val"
    save_image(val / "images" / "val_0.JPEG", COLOURS["moth"], fmt="JPEG")
    save_image(val / "images" / "val_1.JPEG", COLOURS["zebra"], fmt="JPEG")
    (val / "val_annotations.txt").write_text(
        "val_0.JPEG\tmoth\t0\t0\t5\t5\nval_1.JPEG\tzebra\t1\t1\t3\t3\n"
    )
    splits = load_image_folders(tmp_path, image_size=8)
    assert sorted(splits.test.targets["label"].tolist()) == [1, 2]
    (val / "val_annotations.txt").write_text("val_9.JPEG\tmoth\t0\t0\t5\t5\n")
    with pytest.raises(FileNotFoundError, match=r"lists 1 missing image\(s\), e.g. .*val_9\.JPEG"):
        load_image_folders(tmp_path)


def test_unreadable_image_named_on_access_and_with_verify(tmp_path):
    make_tree(tmp_path)
    bad = tmp_path / "train" / "moth" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    splits = load_image_folders(tmp_path, val_fraction=0.1)
    data = splits.train if str(bad) in splits.train.paths else splits.val
    with pytest.raises(ValueError, match=r"broken\.png: unreadable image"):
        data[data.paths.index(str(bad))]
    with pytest.raises(ValueError, match=r"broken\.png: unreadable image"):
        load_image_folders(tmp_path, verify=True)


def test_truncated_jpeg_is_named(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        path, quality=95
    )
    path.write_bytes(path.read_bytes()[:600])
    with pytest.raises(ValueError, match=r"cut\.jpg: unreadable image"):
        load_image(path, 32)


def test_load_image_converts_and_resizes(tmp_path):
    grey = tmp_path / "grey.png"
    Image.new("L", (5, 3), 128).save(grey)
    out = load_image(grey, (4, 6))
    assert out.shape == (3, 4, 6) and out.dtype == torch.uint8
    assert out.unique().tolist() == [128]
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (7, 7), (1, 2, 3, 4)).save(rgba)
    assert load_image(rgba, 7)[:, 0, 0].tolist() == [1, 2, 3]
    with pytest.raises(FileNotFoundError, match="image file not found: .*none.png"):
        load_image(tmp_path / "none.png", 4)
    with pytest.raises(ValueError, match="image_size must be"):
        load_image(grey, 0)


@pytest.mark.parametrize(
    ("breakage", "error", "message"),
    [
        (
            "no_root",
            FileNotFoundError,
            r"image folder root not found: .*missing \(the option root; data.options.root",
        ),
        ("no_train", FileNotFoundError, r"training folder not found: .*train"),
        ("no_test", FileNotFoundError, r"test folder not found: .*test \(looked for val/"),
        ("empty_class", ValueError, r"class folder .*train[/\\]empty holds no images"),
        ("no_classes", ValueError, r"no class folders in .*train"),
        ("unknown_test_class", ValueError, r"val: class\(es\) \['whale'\] not among the 3"),
    ],
)
def test_tree_errors_name_the_path(tmp_path, breakage, error, message):
    root = tmp_path / "data"
    make_tree(root)
    if breakage == "no_root":
        root = tmp_path / "missing"
    elif breakage == "no_train":
        (root / "train").rename(root / "training")
    elif breakage == "no_test":
        (root / "val").rename(root / "validation")
    elif breakage == "empty_class":
        (root / "train" / "empty").mkdir()
        (root / "train" / "empty" / "readme.txt").write_text("x")
    elif breakage == "no_classes":
        (root / "train").rename(root / "old")
        (root / "train").mkdir()
    elif breakage == "unknown_test_class":
        save_image(root / "val" / "whale" / "w.png", (0, 0, 0))
    with pytest.raises(error, match=message):
        load_image_folders(root)


def test_dataset_subset_and_checks(tmp_path):
    paths = [save_image(tmp_path / f"{i}.png", (i * 20, 0, 0)) for i in range(5)]
    data = ImageFileDataset(paths, {"label": torch.arange(5)}, image_size=3)
    sub = data.subset(torch.tensor([4, 1]))
    assert sub.paths == [str(paths[4]), str(paths[1])] and sub.targets["label"].tolist() == [4, 1]
    assert float(sub[0][0][0, 0, 0]) == pytest.approx(80 / 255)
    with pytest.raises(ValueError, match="target 'label' has 4 rows for 5 images"):
        ImageFileDataset(paths, {"label": torch.arange(4)})


def test_missing_pillow_gives_install_hint(tmp_path, monkeypatch):
    make_tree(tmp_path)
    monkeypatch.setitem(sys.modules, "PIL", None)
    hint = r'image folders need Pillow: pip install -e "\.\[data\]" in the hpn source folder, or .*pillow'
    with pytest.raises(ImportError, match=hint):
        load_image_folders(tmp_path)
