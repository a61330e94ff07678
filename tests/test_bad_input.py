"""The bad-input tables. CLI: every case is one line on stderr naming the problem, exit
status 2, no traceback, and no half-written file in the run folder. Library: every case is
one ValueError line naming the bad value."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from hpn import functional as F
from hpn import prototypes as protos
from hpn.cli import main
from hpn.heads import MultiTaskHead, PrototypeClassifier, PrototypeRegressor


def _idx(array: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.float32: 0x0D}[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _idx_folder(folder, test_labels=None, truncate=False, float_images=False):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 10)):
        images = rng.integers(0, 256, (n, 6, 6)).astype(np.float32 if float_images else np.uint8)
        labels = (np.arange(n) % 3).astype(np.uint8)
        if split == "t10k" and test_labels is not None:
            labels[-1] = test_labels
        data = _idx(images)
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(data[: len(data) // 2] if truncate and split == "train" else data)
        )
        (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))
    return folder


def _cifar_folder(root, garbled):
    folder = root / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(garbled)
    (folder / "test").write_bytes(garbled)
    (folder / "meta").write_bytes(
        pickle.dumps(
            {
                b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                b"coarse_label_names": [f"c{i}".encode() for i in range(20)],
            },
            protocol=2,
        )
    )
    return folder


def _omniart(root, rows):
    (root / "img").mkdir()
    csv = root / "art.csv"
    csv.write_text("image_path,style,year\n" + "\n".join(rows) + "\n")
    return ["data.name=omniart", f"data.options={{csv_path: {csv}, image_root: {root / 'img'}}}"]


def _case_protofile(tmp_path):
    protos.save(tmp_path / "p.npy", torch.eye(4), method="orthoplex")
    return [f"head.prototypes={tmp_path / 'p.npy'}"]


CASES = {
    "unknown config key": (lambda t: ["optim.lrr=0.1"], "unknown key(s) ['lrr']"),
    "wrong type": (lambda t: ["optim.epochs=ten"], "config optim.epochs: expected int, got 'ten'"),
    "unknown data source": (lambda t: ["data.name=imagenet"], "unknown data source 'imagenet'"),
    "missing data folder": (
        lambda t: ["data.name=idx", f"data.options={{folder: {t / 'nowhere'}}}"],
        "IDX folder not found",
    ),
    "truncated IDX": (
        lambda t: [
            "data.name=idx",
            f"data.options={{folder: {_idx_folder(t / 'i', truncate=True)}}}",
        ],
        "truncated",
    ),
    "float IDX images": (
        lambda t: [
            "data.name=idx",
            f"data.options={{folder: {_idx_folder(t / 'i', float_images=True)}}}",
        ],
        "expected uint8 images",
    ),
    "test label outside the classes": (
        lambda t: [
            "data.name=idx",
            f"data.options={{folder: {_idx_folder(t / 'i', test_labels=7)}}}",
        ],
        "classes 0..2",
    ),
    "garbled CIFAR pickle": (
        lambda t: [
            "data.name=cifar100",
            f"data.options={{folder: {_cifar_folder(t, b'garbage')}}}",
        ],
        "train",
    ),
    "truncated CIFAR pickle": (
        lambda t: [
            "data.name=cifar100",
            f"data.options={{folder: {_cifar_folder(t, pickle.dumps({b'data': 1}, protocol=2)[:9])}}}",
        ],
        "train",
    ),
    "CSV without a year column": (
        lambda t: [
            "data.name=omniart",
            f"data.options={{csv_path: {_bad_header_csv(t)}, image_root: {t}}}",
        ],
        "missing column",
    ),
    "CSV with a non-numeric year": (lambda t: _omniart(t, ["a.jpg,cubism,early"]), "early"),
    "prototype file of the wrong K": (_case_protofile, "the model needs 6 x 3"),
    "K beyond the method": (lambda t: ["head.prototypes=simplex"], "at most 4 classes in 3 dims"),
    "missing config file": (None, "config file not found"),
    "resume without a run": (lambda t: ["--resume"], "nothing to resume"),
}


def _bad_header_csv(root):
    csv = root / "noyear.csv"
    csv.write_text("image_path,style\na.jpg,cubism\n")
    return csv


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_leaves_no_partial_file(
    case, tmp_path, capsys, run_config, write_config
):
    make, message = CASES[case]
    base = run_config(
        classes=6, per_class=20, dims=5, hidden=(8,), head={"kind": "prototype", "dims": 3},
        optim={"epochs": 1, "batch_size": 16},
    )  # fmt: skip
    config = write_config(tmp_path / "c.yaml", base)
    out = tmp_path / "run"
    if make is None:
        argv = ["train", "--config", str(tmp_path / "missing.yaml")]
    else:
        extra = make(tmp_path)
        flags = [a for a in extra if a.startswith("--")]
        overrides = [a for a in extra if not a.startswith("--")]
        argv = ["train", "--config", str(config), *flags, f"out_dir={out}", *overrides]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hpn: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert "Traceback" not in err
    leftovers = [p.name for p in out.rglob("*")] if out.exists() else []
    assert not [n for n in leftovers if ".tmp" in n or n.startswith(".")], leftovers
    assert "results.json" not in leftovers and "last.pt" not in leftovers


def test_nan_or_inf_features_are_refused_before_training(tmp_path):
    from hpn.data.base import DataSplits, TensorDataset
    from hpn.models import build_backbone
    from hpn.training import RunConfig, from_dict, train

    x = torch.randn(40, 5)
    x[7, 2] = float("nan")
    x[9, 0] = float("inf")
    data = TensorDataset(x, {"label": torch.arange(40) % 4})
    clean = TensorDataset(torch.randn(8, 5), {"label": torch.arange(8) % 4})
    splits = DataSplits(data, clean, clean, "classification", (5,), 4)
    cfg = from_dict(RunConfig, {"out_dir": str(tmp_path / "r"), "head": {"dims": 3}})
    with pytest.raises(
        ValueError, match=r"train split: 2 inputs hold NaN or inf \(first: example 7\)"
    ):
        train(cfg, splits, build_backbone("mlp", (5,), hidden=[8]), log=lambda *_: None)
    assert not (tmp_path / "r").exists()


# The library's own bad-input table: shapes, labels, non-finite outputs and head arguments
# are refused with one ValueError line that names the bad value.

P54 = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
Y3 = torch.tensor([0, 4, 2])


def _with_rows(z, rows, value):
    z = z.clone()
    z[rows, 1] = value
    return z


LIBRARY_CASES = {
    "paper loss, z of the wrong d": (
        lambda: F.prototype_loss(torch.randn(3, 1), P54, Y3),
        "z's d is 1 but the prototypes' d is 4",
    ),
    "softmax loss, z of the wrong d": (
        lambda: F.prototype_softmax_loss(torch.randn(3, 6), P54, Y3),
        "z's d is 6 but the prototypes' d is 4",
    ),
    "nearest prototype, z of the wrong d": (
        lambda: F.nearest_prototype(torch.randn(3, 2), P54),
        "z's d is 2 but the prototypes' d is 4",
    ),
    "z not a matrix": (
        lambda: F.prototype_loss(torch.randn(4), P54, Y3),
        "z must be an (N, d) matrix, got shape (4,)",
    ),
    "prototypes not a matrix": (
        lambda: F.nearest_prototype(torch.randn(3, 4), torch.randn(4)),
        "prototypes must be a (K, d) matrix, got shape (4,)",
    ),
    "cosine to a target of the wrong d": (
        lambda: F.cosine_to(torch.randn(3, 4), torch.randn(3)),
        "z's d is 4 but the target's d is 3",
    ),
    "regression loss, pole of the wrong d": (
        lambda: F.regression_loss(
            torch.randn(3, 3), torch.tensor([1.0, 0.0]), torch.zeros(3), 0, 1
        ),
        "z's d is 3 but the pole's d is 2",
    ),
    "labels of another batch size": (
        lambda: F.prototype_loss(torch.randn(3, 4), P54, [0, 1]),
        "labels must have shape (3,), got (2,)",
    ),
    "float labels": (
        lambda: F.prototype_loss(torch.randn(3, 4), P54, torch.tensor([0.0, 1.5, 2.0])),
        "labels must be integer class indices, got dtype torch.float32 (1.5)",
    ),
    "float labels in a list": (
        lambda: F.prototype_softmax_loss(torch.randn(2, 4), P54, [1.0, 2.0]),
        "labels must be integer class indices, got dtype torch.float32 (1.0)",
    ),
    "bool labels": (
        lambda: F.prototype_loss(torch.randn(2, 4), P54, torch.tensor([True, False])),
        "got dtype torch.bool",
    ),
    "label K": (
        lambda: F.prototype_loss(torch.randn(3, 4), P54, [0, 5, 1]),
        "label 5 outside the 5 classes [0, 4]",
    ),
    "negative label": (
        lambda: F.prototype_softmax_loss(torch.randn(3, 4), P54, [0, -1, 1]),
        "label -1 outside the 5 classes",
    ),
    "NaN and inf outputs": (
        lambda: F.nearest_prototype(
            _with_rows(torch.randn(4, 4), [1, 3], torch.tensor([float("nan"), float("inf")])),
            P54,
        ),
        "2 of 4 rows of z hold NaN or inf (first: row 1)",
    ),
    "head loss, z of the wrong d": (
        lambda: PrototypeClassifier(P54).loss(torch.randn(3, 1), Y3),
        "z's d is 1 but the prototypes' d is 4",
    ),
    "head forward, z of the wrong d": (
        lambda: PrototypeClassifier(P54)(torch.randn(3, 1)),
        "z's d is 1 but the prototypes' d is 4",
    ),
    "head predict, z of the wrong d": (
        lambda: PrototypeClassifier(P54).predict(torch.randn(3, 7)),
        "z's d is 7 but the prototypes' d is 4",
    ),
    "head, features of the wrong size": (
        lambda: PrototypeClassifier(P54, in_features=6).loss(torch.randn(3, 5), Y3),
        "features must be (N, 6) for this head's in_features=6, got shape (3, 5)",
    ),
    "head loss, float labels": (
        lambda: PrototypeClassifier(P54).loss(torch.randn(3, 4), [0.0, 1.0, 2.5]),
        "(2.5)",
    ),
    "head predict, NaN outputs": (
        lambda: PrototypeClassifier(P54, in_features=6).predict(
            _with_rows(torch.randn(3, 6), [2], float("nan"))
        ),
        "1 of 3 rows of z hold NaN or inf (first: row 2)",
    ),
    "regressor, zero pole": (
        lambda: PrototypeRegressor(2, 10.0, 20.0, pole=torch.zeros(2)),
        "pole must be non-zero (it sets the regression direction), got [0.0, 0.0]",
    ),
    "regressor, NaN pole": (
        lambda: PrototypeRegressor(2, 10.0, 20.0, pole=[1.0, float("nan")]),
        "pole must be finite, got [1.0, nan]",
    ),
    "regressor, pole of the wrong d": (
        lambda: PrototypeRegressor(3, 10.0, 20.0, pole=[1.0, 0.0]),
        "pole must have shape (3,), got (2,)",
    ),
    "regressor, infinite upper bound": (
        lambda: PrototypeRegressor(2, 10.0, float("inf")),
        "regression bounds must be finite, got upper=inf",
    ),
    "regressor, NaN lower bound": (
        lambda: PrototypeRegressor(2, float("nan"), 1.0),
        "regression bounds must be finite, got lower=nan",
    ),
    "regressor, lower above upper": (
        lambda: PrototypeRegressor(2, 20.0, 10.0),
        "need lower < upper, got lower=20.0, upper=10.0",
    ),
    "regressor, dims not an integer": (
        lambda: PrototypeRegressor(2.5, 0.0, 1.0),
        "dims must be an integer >= 1, got 2.5",
    ),
    "regressor forward, z of the wrong d": (
        lambda: PrototypeRegressor(3, 0.0, 1.0)(torch.randn(2, 2)),
        "z's d is 2 but the pole's d is 3",
    ),
    "multi-task head, infinite lower bound": (
        lambda: MultiTaskHead(torch.eye(3), float("-inf"), 1.0),
        "regression bounds must be finite, got lower=-inf",
    ),
    "multi-task head forward, z of the wrong d": (
        lambda: MultiTaskHead(P54, 0.0, 1.0)(torch.randn(2, 4)),
        "z's d is 4 but the head's d is 5",
    ),
    "multi-task head loss, float labels": (
        lambda: MultiTaskHead(P54, 0.0, 1.0).loss(
            torch.randn(2, 5), {"label": torch.tensor([0.5, 1.0]), "value": torch.zeros(2)}
        ),
        "got dtype torch.float32 (0.5)",
    ),
}


@pytest.mark.parametrize("case", list(LIBRARY_CASES))
def test_library_bad_input_is_one_value_error_line_naming_the_value(case):
    make, message = LIBRARY_CASES[case]
    with pytest.raises(ValueError) as info:
        make()
    text = str(info.value)
    assert "\n" not in text and message in text, text
