"""Image folders: an ImageNet-200-style tree of class folders, decoded lazily with Pillow.

Layout::

    root/train/<class>/...*.JPEG|*.jpg|*.png
    root/val/<class>/...      (or root/test/<class>/...)

Class ids follow the sorted training folder names; images may sit in sub-folders of a
class folder (Tiny ImageNet's ``train/<wnid>/images/``). A Tiny ImageNet ``val`` folder
(``val/images/`` plus ``val/val_annotations.txt``) is read through its annotation file.
Images are decoded on access, so the tree never has to fit in memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from hpn.data.base import DataSplits, Example, Transform, split_train_val
from hpn.extras import install_hint

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def _pil_image():
    try:
        from PIL import Image  # optional: the data extra
    except ImportError as err:
        raise ImportError(f"image folders need Pillow: {install_hint('data')}") from err
    return Image


def _size_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        size: tuple[int, ...] = (image_size, image_size)
    else:
        size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be a positive int or (height, width), got {image_size}")
    return size[0], size[1]


def load_image(path: str | os.PathLike, image_size: int | Sequence[int]) -> torch.Tensor:
    """Decode one image file to RGB, resized (bilinear) to ``image_size``.

    Args:
        path: the image file.
        image_size: side length, or (height, width).

    Returns:
        (3, H, W) uint8 tensor.

    Raises:
        FileNotFoundError: no such file.
        ValueError: Pillow cannot read or decode the file (the message names it).
    """
    image_module = _pil_image()
    height, width = _size_hw(image_size)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with image_module.open(path) as image:
            image = image.convert("RGB")
            if image.size != (width, height):
                image = image.resize((width, height), image_module.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, image_module.DecompressionBombError) as err:
        raise ValueError(f"{path}: unreadable image ({type(err).__name__}: {err})") from err
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


class ImageFileDataset(Dataset):
    """Images on disk with in-memory targets, decoded on access.

    Items are ``(x, target)`` as in :class:`hpn.data.base.TensorDataset`: x is (3, H, W)
    float in [0, 1] after ``transform``; target a dict of the targets' rows.

    Args:
        paths: N image files.
        targets: dict of (N,) tensors, e.g. ``{"label": int64}``.
        image_size: side length, or (height, width), every image is resized to.
        transform: optional callable on the float image.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        targets: dict[str, torch.Tensor],
        image_size: int | Sequence[int] = 64,
        transform: Transform | None = None,
    ):
        self.paths = [str(p) for p in paths]
        for key, value in targets.items():
            if len(value) != len(self.paths):
                raise ValueError(
                    f"target {key!r} has {len(value)} rows for {len(self.paths)} images"
                )
        self.targets, self.image_size, self.transform = targets, _size_hw(image_size), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Example:
        x = load_image(self.paths[index], self.image_size).float() / 255.0
        if self.transform is not None:
            x = self.transform(x)
        return x, {key: value[index] for key, value in self.targets.items()}

    def subset(self, indices: torch.Tensor) -> ImageFileDataset:
        """The items at ``indices`` (same image size and transform).

        Args:
            indices: (M,) int64 indices into the N images (a tensor or a list).

        Returns:
            An :class:`ImageFileDataset` of M images; no image is read.
        """
        indices = torch.as_tensor(indices, dtype=torch.long)
        return ImageFileDataset(
            [self.paths[i] for i in indices.tolist()],
            {k: v[indices] for k, v in self.targets.items()},
            self.image_size,
            self.transform,
        )

    def verify(self) -> None:
        """Decode every image once; raises the error of the first unreadable one."""
        for path in self.paths:
            load_image(path, self.image_size)


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_classes(folder: Path) -> dict[str, list[Path]]:
    classes = {}
    for class_dir in _class_folders(folder):
        files = _image_files(class_dir)
        if not files:
            raise ValueError(
                f"class folder {class_dir} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        classes[class_dir.name] = files
    return classes


def _scan_annotated(folder: Path, annotations: Path) -> dict[str, list[Path]]:
    # Tiny ImageNet: "<file>\t<class>\t<box...>" per line, files in folder/images/.
    classes: dict[str, list[Path]] = {}
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise ValueError(f"{annotations}:{number}: expected '<file>\\t<class>', got {line!r}")
        classes.setdefault(fields[1], []).append(folder / "images" / fields[0])
    missing = [p for files in classes.values() for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{annotations} lists {len(missing)} missing image(s), e.g. {missing[0]}"
        )
    return classes


def _split_folders(root: Path, test_dir: str | None) -> tuple[Path, Path]:
    """``root/train`` and the test folder (``test_dir``, else ``val`` or ``test``), checked."""
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder root not found: {root} (the option root; data.options.root in a "
            "run config: a folder holding train/ and val/ or test/, one subfolder per class)"
        )
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise FileNotFoundError(f"training folder not found: {train_dir}")
    if test_dir is None:
        test_dir = "val" if (root / "val").is_dir() else "test"
    test_path = root / test_dir
    if not test_path.is_dir():
        raise FileNotFoundError(f"test folder not found: {test_path} (looked for val/ and test/)")
    return train_dir, test_path


def load_image_folders(
    root: str | os.PathLike,
    image_size: int | Sequence[int] = 64,
    val_fraction: float = 0.1,
    seed: int = 0,
    test_dir: str | None = None,
    verify: bool = False,
) -> DataSplits:
    """An ImageNet-200-style tree of class folders as train / val / test splits.

    ``root/train`` gives the training data, from which validation is carved by
    :func:`hpn.data.base.split_train_val`; ``root/val`` (or else ``root/test``) is the test
    split, since such trees usually ship no labelled test set of their own. Its class
    folders must be training classes (it may lack some).

    Args:
        root: the folder holding ``train`` and ``val`` or ``test``.
        image_size: side length, or (height, width), every image is resized to.
        val_fraction: share of the training images used for validation.
        seed: seed of the train / val split.
        test_dir: name of the test folder under ``root``; by default ``val`` if present,
            else ``test``.
        verify: decode every image now (slow) instead of failing on first access.

    Returns:
        Classification :class:`DataSplits` of :class:`ImageFileDataset` splits; x is
        (3, H, W) float in [0, 1], target ``{"label": int64}``, class names the folder
        names in sorted order.

    Raises:
        ImportError: Pillow is not installed.
        FileNotFoundError: ``root``, ``root/train`` or the test folder is missing.
        ValueError: no class folders, an empty class folder, a test class unknown to the
            training data, or (when decoded) an unreadable image; messages name the path.
    """
    _pil_image()
    height, width = _size_hw(image_size)
    root = Path(root)
    train_dir, test_path = _split_folders(root, test_dir)
    test_dir = test_path.name

    train_classes = _scan_classes(train_dir)
    if not train_classes:
        raise ValueError(f"no class folders in {train_dir}")
    class_names = sorted(train_classes)
    index = {name: i for i, name in enumerate(class_names)}
    annotations = test_path / "val_annotations.txt"
    if annotations.is_file() and (test_path / "images").is_dir():
        test_classes = _scan_annotated(test_path, annotations)
    else:
        test_classes = _scan_classes(test_path)
    unknown = sorted(set(test_classes) - set(index))
    if unknown:
        raise ValueError(
            f"{test_path}: class(es) {unknown[:5]} not among the {len(index)} training "
            f"classes of {train_dir}"
        )
    if not test_classes:
        raise ValueError(f"no class folders in {test_path}")

    def dataset(classes: dict[str, list[Path]]) -> ImageFileDataset:
        paths = [p for name in sorted(classes) for p in classes[name]]
        labels = [index[name] for name in sorted(classes) for _ in classes[name]]
        return ImageFileDataset(
            paths, {"label": torch.tensor(labels, dtype=torch.long)}, (height, width)
        )

    full_train, test = dataset(train_classes), dataset(test_classes)
    if verify:
        full_train.verify()
        test.verify()
    train, val = split_train_val(full_train, val_fraction, seed)
    return DataSplits(
        train=train,
        val=val,
        test=test,
        task="classification",
        input_shape=(3, height, width),
        num_classes=len(class_names),
        class_names=class_names,
        info={
            "source": "image_folders",
            "root": str(root),
            "test_dir": test_dir,
            "image_size": [height, width],
            "seed": seed,
            "val_fraction": val_fraction,
            "counts": {"train": len(train), "val": len(val), "test": len(test)},
        },
    )
