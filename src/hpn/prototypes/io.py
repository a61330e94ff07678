"""Prototype files: ``name.npy`` (float32, K x d) with a JSON sidecar ``name.json``.

The sidecar records K, d, the method and seed that made the set, optional class names, the
quality report and the method's own details, so a file says where it came from. Both files are
written atomically (temporary file in the same folder, then rename), so an interrupted save
never leaves a half-written set behind.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import tokenize
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpn.files import atomic_write_bytes

FORMAT = "hpn-prototypes"
FORMAT_VERSION = 1


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar that belongs to a ``.npy`` prototype file."""
    return Path(path).with_suffix(".json")


def save(
    path: str | os.PathLike,
    prototypes: torch.Tensor,
    method: str,
    seed: int | None = None,
    class_names: Sequence[str] | None = None,
    report: dict | None = None,
    info: dict | None = None,
) -> Path:
    """Save prototypes and their metadata.

    Args:
        path: target ``.npy`` file (the suffix is added if missing).
        prototypes: (K, d) tensor or array.
        method: the method that made them.
        seed: the seed used, if any.
        class_names: optional K names, row i belongs to class_names[i].
        report: optional quality report (``Report.to_dict()``).
        info: optional method-specific details (JSON-serialisable).

    Returns:
        The path of the ``.npy`` file written.
    """
    path = Path(path)
    if path.suffix != ".npy":
        path = path.with_name(path.name + ".npy")
    array = np.ascontiguousarray(
        torch.as_tensor(prototypes).detach().cpu().numpy(), dtype=np.float32
    )
    if array.ndim != 2:
        raise ValueError(f"prototypes must be 2-D (K, d), got shape {array.shape}")
    if class_names is not None and len(class_names) != len(array):
        raise ValueError(f"{len(class_names)} class names for {len(array)} prototypes")
    # imported here: hpn/__init__.py imports this module before it sets __version__ (a cycle)
    from hpn import __version__

    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "num_classes": int(array.shape[0]),
        "dims": int(array.shape[1]),
        "method": method,
        "seed": seed,
        "class_names": list(class_names) if class_names is not None else None,
        "report": report,
        "info": info or {},
        "hpn_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())
    atomic_write_bytes(sidecar_path(path), (json.dumps(meta, indent=2) + "\n").encode())
    return path


def load(path: str | os.PathLike) -> tuple[torch.Tensor, dict]:
    """Load a prototype file and its sidecar.

    A bare ``.npy`` without a sidecar loads too (metadata then holds only K and d).

    Args:
        path: the ``.npy`` file.

    Returns:
        ``(P, meta)``: (K, d) float32 tensor and the metadata dict.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a 2-D float array, or disagrees with its sidecar.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prototype file not found: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError) as err:
        # numpy parses the header as a Python literal: a garbled one raises
        # SyntaxError or TokenError, not ValueError (found by hpn.fuzz)
        raise ValueError(f"{path} is not a readable .npy file ({err})") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{path}: expected a 2-D float array, got {array.dtype} {array.shape}")
    meta: dict[str, Any] = {"num_classes": int(array.shape[0]), "dims": int(array.shape[1])}
    side = sidecar_path(path)
    if side.is_file():
        try:
            meta = json.loads(side.read_text())
        except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"{side}: corrupt sidecar ({err})") from None
        if not isinstance(meta, dict):
            raise ValueError(f"{side}: corrupt sidecar (a JSON object was expected)")
        if (meta.get("num_classes"), meta.get("dims")) != array.shape:
            raise ValueError(
                f"{path} holds {array.shape[0]} x {array.shape[1]} prototypes but {side} says "
                f"{meta.get('num_classes')} x {meta.get('dims')}"
            )
    return torch.from_numpy(array.astype(np.float32, copy=False)), meta
