"""Shared fixtures: the small run configs (Gaussian clusters, an MLP, a prototype head) that the
training, CLI and benchmark tests train, written once, and a disk that fills up."""

import errno
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

import hpn.files


def clusters_run(
    *,
    seed: int = 0,
    classes: int = 4,
    per_class: int = 40,
    dims: int = 6,
    std: float | None = None,
    hidden: tuple[int, ...] = (16,),
    model: dict | None = None,
    head: dict | None = None,
    optim: dict | None = None,
    **top: object,
) -> dict:
    """A run config as a dict: ``classes`` Gaussian clusters of ``per_class`` points in
    ``dims`` dims, an MLP with ``hidden`` layers (plus ``model`` options), ``head`` (default a
    prototype head) and ``optim`` (default Adam, lr 0.01, 2 epochs, batch 32)."""
    options: dict = {"num_classes": classes, "samples_per_class": per_class, "dims": dims}
    if std is not None:
        options["std"] = std
    return {
        "seed": seed,
        "data": {"name": "clusters", "options": options},
        "model": {"backbone": "mlp", "options": {"hidden": list(hidden), **(model or {})}},
        "head": {"kind": "prototype"} if head is None else head,
        "optim": optim or {"optimizer": "adam", "lr": 0.01, "epochs": 2, "batch_size": 32},
        **top,
    }


@pytest.fixture(scope="session")
def run_config():
    """:func:`clusters_run`, the factory of the shared run configs."""
    return clusters_run


@pytest.fixture(scope="session")
def write_config():
    """``write_config(path, config)``: the config as YAML at ``path``; returns the path."""

    def write(path: Path, config: dict) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


class _FullDisk:
    """A file handle that takes half of the first write, then fails as a full disk does."""

    def __init__(self, handle):
        self._handle = handle

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self._handle.write(view[: len(view) // 2])
        self._handle.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()


@pytest.fixture
def full_disk(monkeypatch) -> Callable[..., None]:
    """``full_disk("last.pt", ...)``: from then on, every atomic write (:mod:`hpn.files`) of a
    file whose name matches one of the globs fails part-way with ENOSPC; ``full_disk()``: the
    disk has room again."""
    real, patterns = hpn.files._open_temp, []

    def open_temp(path):
        handle, tmp = real(path)
        if any(fnmatch(path.name, p) for p in patterns):
            return _FullDisk(handle), tmp
        return handle, tmp

    def fill(*globs: str) -> None:
        patterns[:] = globs

    monkeypatch.setattr(hpn.files, "_open_temp", open_temp)
    return fill
