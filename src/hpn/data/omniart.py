"""OmniArt-style multi-task data: classify an artwork's style and regress its year.

The source is a CSV file with a header naming (at least) the columns ``image_path``,
``style`` and ``year``; image paths are relative to an image folder. Images are decoded
lazily with Pillow (see :class:`hpn.data.folders.ImageFileDataset`).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from hpn.data.base import DataSplits, split_train_val, stratified_split
from hpn.data.folders import ImageFileDataset, _pil_image, _size_hw

COLUMNS = ("image_path", "style", "year")


def read_omniart_csv(csv_path: str | os.PathLike) -> list[tuple[str, str, float]]:
    """Read and check the rows of an OmniArt CSV.

    Args:
        csv_path: UTF-8 CSV with a header holding ``image_path``, ``style`` and ``year``
            (other columns are ignored).

    Returns:
        ``(image_path, style, year)`` per data row, in file order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column, an empty field, or a year that is not a finite
            number; the message names the file and line.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"OmniArt CSV not found: {csv_path}")
    rows = []
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise ValueError(
                    f"{csv_path}: missing column(s) {missing}; the header must name "
                    f"{list(COLUMNS)}, found {header}"
                )
            reader.fieldnames = header
            for row in reader:
                line = reader.line_num
                values = [(row.get(c) or "").strip() for c in COLUMNS]
                if not all(values):
                    raise ValueError(f"{csv_path}:{line}: empty or missing field in {row}")
                path, style, year_text = values
                try:
                    year = float(year_text)
                except ValueError:
                    raise ValueError(
                        f"{csv_path}:{line}: year {year_text!r} is not a number"
                    ) from None
                if not math.isfinite(year):
                    raise ValueError(f"{csv_path}:{line}: year {year_text!r} is not finite")
                rows.append((path, style, year))
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{csv_path}: not a readable UTF-8 CSV file ({err})") from err
    if not rows:
        raise ValueError(f"{csv_path}: no data rows")
    return rows


def load_omniart(
    csv_path: str | os.PathLike,
    image_root: str | os.PathLike,
    image_size: int | Sequence[int] = 64,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    test_seed: int = 0,
) -> DataSplits:
    """OmniArt-style artworks: style classification and year regression.

    Style ids follow the sorted style names. There is no official split, so the test split
    holds ``round(n_style * test_fraction)`` artworks of each style (stratified, drawn with
    ``test_seed``, which stays fixed while ``seed`` varies); validation is carved from the
    rest by :func:`hpn.data.base.split_train_val` with ``seed``.

    Args:
        csv_path: the CSV (see :func:`read_omniart_csv`).
        image_root: folder the ``image_path`` entries are relative to (absolute entries
            are used as they are).
        image_size: side length, or (height, width), every image is resized to.
        val_fraction: share of the non-test artworks used for validation.
        test_fraction: share of each style held out as the test split.
        seed: seed of the train / val split.
        test_seed: seed of the test split.

    Returns:
        Multi-task :class:`DataSplits` of :class:`ImageFileDataset` splits; x is
        (3, H, W) float in [0, 1], target ``{"label": int64 style id, "value": float32
        year}``; ``info["value_range"]`` is the [min, max] year of the training split.

    Raises:
        ImportError: Pillow is not installed.
        FileNotFoundError: the CSV, the image folder or listed images are missing (the
            message names them).
        ValueError: a broken CSV (see :func:`read_omniart_csv`).
    """
    _pil_image()
    height, width = _size_hw(image_size)
    image_root = Path(image_root)
    rows = read_omniart_csv(csv_path)
    if not image_root.is_dir():
        raise FileNotFoundError(f"OmniArt image folder not found: {image_root}")
    paths = [image_root / path for path, _, _ in rows]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise FileNotFoundError(f"{len(missing)} image(s) listed in {csv_path} missing: {shown}")
    styles = sorted({style for _, style, _ in rows})
    index = {style: i for i, style in enumerate(styles)}
    labels = torch.tensor([index[style] for _, style, _ in rows], dtype=torch.long)
    years = torch.tensor([year for _, _, year in rows], dtype=torch.float32)
    data = ImageFileDataset(paths, {"label": labels, "value": years}, (height, width))
    kept, held = stratified_split(labels, test_fraction, test_seed)
    if len(kept) < 2:
        raise ValueError(
            f"{csv_path}: {len(rows)} rows leave {len(kept)} for training and validation"
        )
    test = data.subset(held)
    train, val = split_train_val(data.subset(kept), val_fraction, seed)
    train_years = train.targets["value"]
    return DataSplits(
        train=train,
        val=val,
        test=test,
        task="multitask",
        input_shape=(3, height, width),
        num_classes=len(styles),
        class_names=styles,
        info={
            "source": "omniart",
            "csv_path": str(csv_path),
            "image_root": str(image_root),
            "image_size": [height, width],
            "seed": seed,
            "test_seed": test_seed,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "value_range": [float(train_years.min()), float(train_years.max())],
            "counts": {"train": len(train), "val": len(val), "test": len(test)},
        },
    )
