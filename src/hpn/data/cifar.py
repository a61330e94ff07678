"""CIFAR-100 from the standard python-pickle release (``cifar-100-python/``).

The folder holds three pickles written by Python 2: ``train`` (50,000 images), ``test``
(10,000) and ``meta``. ``train`` and ``test`` are dicts with ``b"data"`` (N, 3072) uint8 —
each row the red, green and blue 32 x 32 planes — and ``b"fine_labels"`` (0..99) and
``b"coarse_labels"`` (0..19); ``meta`` has ``b"fine_label_names"`` and
``b"coarse_label_names"``. The files are read with a restricted unpickler that only builds
numpy arrays and plain containers, so a tampered file cannot run code.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

from hpn.data.base import DataSplits, TensorDataset, split_train_val

_NUM_CLASSES = {"fine": 100, "coarse": 20}


# (module, name) -> object; everything else is refused.
_ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): lambda: _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): lambda: _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: codecs.encode,
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that builds numpy arrays, bytes, str, numbers, lists and dicts only."""

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return factory()


def load_pickle(path: str | os.PathLike) -> Any:
    """Load one CIFAR pickle (``encoding="bytes"``, as the Python 2 files need).

    Args:
        path: the file.

    Returns:
        The unpickled object (for CIFAR a dict with bytes keys).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a truncated or garbled pickle, or one that asks for anything beyond
            numpy arrays and plain containers; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR file not found: {path}")
    try:
        return _SafeUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as err:  # pickle raises many types on garbage
        raise ValueError(
            f"{path}: not a readable CIFAR pickle ({type(err).__name__}: {err})"
        ) from err


def _field(record: Any, key: bytes, path: Path) -> Any:
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(record).__name__}")
    if key not in record:
        found = sorted(k.decode("latin-1") if isinstance(k, bytes) else str(k) for k in record)
        raise ValueError(f"{path}: no {key!r} entry (entries: {found})")
    return record[key]


def _names(meta: Any, key: bytes, count: int, path: Path) -> list[str]:
    names = _field(meta, key, path)
    if not isinstance(names, list | tuple) or len(names) != count:
        raise ValueError(f"{path}: {key!r} must list {count} names")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def _load_split(path: Path, label_key: bytes, num_classes: int) -> TensorDataset:
    record = load_pickle(path)
    data = np.asarray(_field(record, b"data", path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: b'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    try:
        labels = np.asarray(_field(record, label_key, path), dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {label_key!r} must be a list of integers ({err})") from err
    if labels.shape != (len(data),):
        raise ValueError(f"{path}: {len(data)} images but {label_key!r} has shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise ValueError(
            f"{path}: label {bad} in {label_key!r} outside the {num_classes} classes "
            f"0..{num_classes - 1}"
        )
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return TensorDataset(images, {"label": torch.from_numpy(labels)})


class RandomCropFlip:
    """Train-time augmentation: random crop after zero padding, and a horizontal flip.

    The setting of the paper's CIFAR ResNets: pad by 4 pixels, crop back to the input size
    at a random offset, flip left-right with probability 1/2. Randomness comes from torch's
    global generator (seed it, or rely on the DataLoader's per-worker seeding).

    Args:
        padding: pixels of zero padding on each side.
        flip: whether to flip.

    Call:
        x: (C, H, W) float image -> (C, H, W) augmented image.
    """

    def __init__(self, padding: int = 4, flip: bool = True):
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.padding, self.flip = padding, flip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if self.padding:
            p = self.padding
            x = torch.nn.functional.pad(x, (p, p, p, p))
            top, left = torch.randint(0, 2 * p + 1, (2,)).tolist()
            x = x[..., top : top + height, left : left + width]
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip})"


def _find_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise FileNotFoundError(f"CIFAR-100 folder not found: {folder}")
    if not (folder / "train").is_file() and (folder / "cifar-100-python" / "train").is_file():
        return folder / "cifar-100-python"
    return folder


def load_cifar100(
    folder: str | os.PathLike,
    val_fraction: float = 0.1,
    seed: int = 0,
    label_mode: Literal["fine", "coarse"] = "fine",
    augment: bool = False,
) -> DataSplits:
    """CIFAR-100 (50,000 training / 10,000 test images) from the python-pickle release.

    Validation is carved from the training pickle by :func:`hpn.data.base.split_train_val`;
    the test pickle is the test split.

    Args:
        folder: the ``cifar-100-python`` folder (with ``train``, ``test``, ``meta``) or the
            folder that contains it.
        val_fraction: share of the training images used for validation.
        seed: seed of the train / val split.
        label_mode: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).
        augment: add :class:`RandomCropFlip` (4-pixel padding, flips) to the train split
            only; val and test stay unaugmented.

    Returns:
        Classification :class:`DataSplits`; x is (3, 32, 32) float in [0, 1] (stored as
        uint8; no mean / std normalisation), target ``{"label": int64}``, class names from
        ``meta``.

    Raises:
        FileNotFoundError: the folder or one of its files is missing.
        ValueError: a bad ``label_mode``, or a garbled, truncated or inconsistent file
            (the message names it).
    """
    if label_mode not in _NUM_CLASSES:
        raise ValueError(f"label_mode must be 'fine' or 'coarse', got {label_mode!r}")
    folder = _find_folder(Path(folder))
    num_classes = _NUM_CLASSES[label_mode]
    label_key = f"{label_mode}_labels".encode()
    meta_path = folder / "meta"
    class_names = _names(
        load_pickle(meta_path), f"{label_mode}_label_names".encode(), num_classes, meta_path
    )
    full_train = _load_split(folder / "train", label_key, num_classes)
    test = _load_split(folder / "test", label_key, num_classes)
    train, val = split_train_val(full_train, val_fraction, seed)
    if augment:
        train.transform = RandomCropFlip(padding=4, flip=True)
    return DataSplits(
        train=train,
        val=val,
        test=test,
        task="classification",
        input_shape=(3, 32, 32),
        num_classes=num_classes,
        class_names=class_names,
        info={
            "source": "cifar100",
            "folder": str(folder),
            "label_mode": label_mode,
            "augment": repr(train.transform) if augment else None,
            "seed": seed,
            "val_fraction": val_fraction,
            "counts": {"train": len(train), "val": len(val), "test": len(test)},
        },
    )
