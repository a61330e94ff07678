"""``hpn export``: a finished run's network as a file that runs without hpn.

The exported network is :class:`hpn.training.inference.ClassScores`: inputs
(N, *input_shape), float32, prepared as the run's data, to class scores (N, K), float32
(cosines for a prototype head, softmax probabilities for a softmax head); the batch size N is
free. Two formats:

* ``torchscript``: ``torch.jit.trace`` of the eval-mode network, loaded back with
  ``torch.jit.load`` (needs torch only);
* ``onnx``: ``torch.onnx.export`` (the dynamo exporter, which needs the ``onnx`` and
  ``onnxscript`` packages: the ``export`` extra), input ``input``, output ``scores``; run it
  with onnxruntime, for one.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch

from hpn.files import atomic_write_bytes
from hpn.training.inference import ClassScores, load_run

ExportFormat = Literal["torchscript", "onnx"]

#: The formats :func:`export_run` writes.
FORMATS: tuple[ExportFormat, ...] = ("torchscript", "onnx")


def export_run(run_dir: str | Path, format: str, out: str | Path) -> Path:
    """Write a finished run's inputs -> (N, K) scores network to ``out``.

    Args:
        run_dir: a run folder with ``config.json`` and ``best.pt``.
        format: ``torchscript`` or ``onnx``.
        out: the file to write (atomically).

    Returns:
        ``out`` as a path.

    Raises:
        ValueError: an unknown format, or a regression run (no class scores).
        ImportError: ONNX export without the ``onnx`` / ``onnxscript`` packages.
    """
    if format not in FORMATS:
        raise ValueError(f"export format must be one of {list(FORMATS)}, got {format!r}")
    if format == "onnx":
        _require_onnx()
    model = load_run(run_dir)
    network = model.class_scores().eval()
    example = torch.zeros(2, *model.input_shape)
    write = export_torchscript if format == "torchscript" else export_onnx
    return write(network, example, out)


def export_torchscript(network: ClassScores, example: torch.Tensor, out: str | Path) -> Path:
    """``network`` traced on ``example`` (M, *input_shape) and saved for ``torch.jit.load``.

    The heads' shape checks read the feature width, which no batch changes, so the trace's
    warnings that they become constants are silenced, as is torch's notice that TorchScript
    is deprecated in favour of ``torch.export`` (kept for libtorch and older runtimes).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        with torch.no_grad():
            traced = torch.jit.trace(network, example)
        return _write_via_temp(out, lambda path: torch.jit.save(traced, path))


def export_onnx(network: ClassScores, example: torch.Tensor, out: str | Path) -> Path:
    """``network`` as one ONNX file (weights inside) with a free batch dimension."""
    batch = torch.export.Dim("batch", min=1)

    def save(path: str) -> None:
        torch.onnx.export(
            network, (example,), path, input_names=["input"], output_names=["scores"],
            dynamic_shapes={"x": {0: batch}}, dynamo=True, external_data=False, verbose=False,
        )  # fmt: skip

    # the exporter's notes on its own internals (torchvision ops it skips, a deprecated
    # pytree check) are not the user's concern; errors still surface
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return _write_via_temp(out, save)
    finally:
        logger.setLevel(level)


def _require_onnx() -> None:
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"ONNX export needs {' and '.join(missing)}: pip install onnx onnxscript "
            '(the export extra of hpn: pip install -e ".[export]")'
        )


def _write_via_temp(out: str | Path, save: Callable[[str], None]) -> Path:
    """Let ``save(path)`` write a temporary file, then put its bytes at ``out`` atomically."""
    out = Path(out)
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / f"model{out.suffix or '.bin'}")
        save(path)
        atomic_write_bytes(out, Path(path).read_bytes())
    return out
