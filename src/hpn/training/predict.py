"""``hpn predict``: a finished run's top-k classes for each input, as a CSV or Parquet table.

Inputs are one of:

* ``train``, ``val`` or ``test``: the run's own split (rows named by their number in the
  split, with the true class beside the prediction);
* a folder: every image file below it, sorted (hidden files and folders skipped);
* one image file;
* a ``.csv`` file with a ``path`` column, or any other file listing one path per line (blank
  lines and ``#`` comments skipped); relative paths are read from the file's folder, and rows
  are named by the paths as written.

Image files are prepared as the run's data source prepared its training images
(:mod:`hpn.data.image_inputs`); a run whose source takes no image files accepts split names
only. The table has one row per input: ``input``, for a split ``label`` (and ``label_name``),
then for j = 1..k ``class_j``, ``name_j`` (when the classes have names) and ``cosine_j`` or
``probability_j`` (:attr:`hpn.training.inference.TrainedModel.score_kind`), and ``value`` for
a run that predicts values.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from hpn.data.base import SplitDataset, in_batches, iterate_batches
from hpn.data.folders import IMAGE_EXTENSIONS, _image_files
from hpn.tables import write_table
from hpn.training.inference import TrainedModel, load_run
from hpn.training.progress import ProgressBar

#: The split names INPUTS may be.
SPLITS = ("train", "val", "test")

#: Rows -> (M, *input_shape) inputs and their (M,) true classes, or None without labels.
Loader = Callable[[Sequence[int]], tuple[torch.Tensor, torch.Tensor | None]]


@dataclass
class InputSet:
    """N inputs to predict: their names and a batch loader.

    Attributes:
        ids: N names: file paths, or row numbers of a split.
        load: rows -> ((M, *input_shape) float inputs, (M,) true classes or None).
        labelled: the loader gives true classes (a split with labels).
    """

    ids: list[str]
    load: Loader
    labelled: bool = False


def read_inputs(model: TrainedModel, inputs: str | Path) -> InputSet:
    """What ``inputs`` names, for ``model``: a split name, a folder, an image, a CSV or a list
    file.

    Raises:
        FileNotFoundError: ``inputs`` is neither a split name nor an existing file or folder,
            or a listed image is missing.
        ValueError: file inputs for a run that takes none (the message says what it takes),
            an empty folder or list, a CSV without a ``path`` column, or a file that is
            neither an image nor a text listing.
    """
    if str(inputs) in SPLITS:
        return _split_inputs(model, str(inputs))
    path = Path(inputs)
    if not path.exists():
        raise FileNotFoundError(
            f"inputs {str(inputs)!r}: no such file or folder, and not a split name "
            f"({', '.join(SPLITS)})"
        )
    if model.images is None:
        raise ValueError(
            f"{model.run_dir} was trained on {model.source} inputs, which are not image files: "
            f"give a split name ({', '.join(SPLITS)}) instead of {path}"
        )
    if path.is_dir():
        files = _image_files(path)
        names = [str(f) for f in files]
    elif path.suffix.lower() in IMAGE_EXTENSIONS:
        files, names = [path], [str(path)]
    else:
        names = _listed_names(path)
        files = [path.parent / name for name in names]  # an absolute name stays as it is
    if not files:
        raise ValueError(f"{path} holds no image files")
    images = model.images
    return InputSet(names, lambda rows: (images.load_batch([files[i] for i in rows]), None))


def _split_inputs(model: TrainedModel, split: str) -> InputSet:
    data: SplitDataset = getattr(model.splits, split)

    def load(rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, targets = next(iterate_batches(data, [list(rows)]))
        return x, targets.get("label")

    return InputSet([str(i) for i in range(len(data))], load, model.task != "regression")


def _listed_names(listing: Path) -> list[str]:
    """The paths a CSV (``path`` column) or a list file (one per line) names, as written."""
    try:
        text = listing.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(
            f"{listing}: not a text file listing paths, nor an image file "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))})"
        ) from None
    if listing.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if "path" not in (reader.fieldnames or []):
            raise ValueError(f"{listing}: no 'path' column (columns: {reader.fieldnames})")
        return [row["path"].strip() for row in reader if (row["path"] or "").strip()]
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def predict_table(
    model: TrainedModel,
    inputs: InputSet,
    k: int = 5,
    batch_size: int = 256,
    progress: bool | None = None,
) -> dict[str, list]:
    """The columns of the prediction table (see the module docstring), one row per input.

    Args:
        model: a loaded run.
        inputs: what to predict (:func:`read_inputs`).
        k: classes per row (at most K).
        batch_size: inputs per forward pass.
        progress: draw a bar on stderr (None: when stderr is a terminal).
    """
    batches = in_batches(range(len(inputs.ids)), batch_size)
    bar = ProgressBar(len(batches), "predict", stream=sys.stderr, enabled=progress, unit="batch")
    parts: dict[str, list[torch.Tensor]] = {"label": [], "indices": [], "scores": [], "value": []}
    for step, batch in enumerate(batches, start=1):
        x, labels = inputs.load(batch)
        if labels is not None:
            parts["label"].append(labels)
        if model.score_kind is not None:
            top = model.predict(x, k)
            parts["indices"].append(top.indices.cpu())
            parts["scores"].append(top.scores.cpu())
        if model.task != "classification":
            parts["value"].append(model.values(x).cpu())
        bar.update(step, examples=len(batch))
    bar.close()
    return _columns(model, inputs, {key: torch.cat(v) for key, v in parts.items() if v})


def _columns(model: TrainedModel, inputs: InputSet, parts: dict[str, torch.Tensor]) -> dict:
    names = model.class_names
    columns: dict[str, list] = {"input": inputs.ids}
    if "label" in parts and inputs.labelled:
        columns["label"] = parts["label"].tolist()
        if names:
            columns["label_name"] = [names[c] for c in columns["label"]]
    if "indices" in parts:
        for j in range(parts["indices"].shape[1]):
            classes = parts["indices"][:, j].tolist()
            columns[f"class_{j + 1}"] = classes
            if names:
                columns[f"name_{j + 1}"] = [names[c] for c in classes]
            columns[f"{model.score_kind}_{j + 1}"] = parts["scores"][:, j].tolist()
    if "value" in parts:
        columns["value"] = parts["value"].tolist()
    return columns


def predict_run(
    run_dir: str | Path,
    inputs: str | Path,
    out: str | Path,
    k: int = 5,
    batch_size: int = 256,
    device: str = "cpu",
    progress: bool | None = None,
) -> Path:
    """``hpn predict``: load a run, predict ``inputs`` (:func:`read_inputs`), write ``out``.

    Returns:
        The table's path.
    """
    if k < 1 or batch_size < 1:
        raise ValueError(f"top-k and batch size must be >= 1, got {k} and {batch_size}")
    model = load_run(run_dir, device=device)
    table = predict_table(model, read_inputs(model, inputs), k, batch_size, progress)
    return write_table(table, out)
