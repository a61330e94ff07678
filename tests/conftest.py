"""Shared fixtures: the small run configs (Gaussian clusters, an MLP, a prototype head) that the
training, CLI and benchmark tests train, written once."""

from pathlib import Path

import pytest
import yaml


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
