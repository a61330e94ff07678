"""Hyperspherical Prototype Networks: class prototypes placed on the sphere before training.

The names users reach for first::

    from hpn import generate, report, PrototypeClassifier, CosineSoftmaxLoss, prototype_loss
    P = generate(100, 25)                      # (K, d) unit prototypes, best available
    head = PrototypeClassifier(P, in_features=512)              # the paper's loss
    head = PrototypeClassifier(P, 512, loss=CosineSoftmaxLoss())  # or another loss object

A finished run, ready for inference (:func:`hpn.training.inference.load_run`)::

    model = hpn.load_run("runs/demo/prototype")    # backbone + head, class names, prototypes
    top = model.predict(x, k=5)                     # (N, 5) classes and their cosines

``HPNClassifier`` and ``HPNRegressor`` (scikit-learn) and ``load_run`` are imported on first
use, so ``import hpn`` does not need scikit-learn or load the training code.
"""

from __future__ import annotations

import importlib
from typing import Any

from hpn.functional import (
    nearest_prototype,
    neighbour_softmax_loss,
    prototype_loss,
    prototype_softmax_loss,
    regression_loss,
    unit,
)
from hpn.heads import MultiTaskHead, PrototypeClassifier, PrototypeRegressor, replace_classifier
from hpn.losses import (
    CosineSoftmaxLoss,
    MultiTaskLoss,
    NeighbourSoftmaxLoss,
    PrototypeLoss,
    RegressionLoss,
)
from hpn.prototypes import build, generate, load, report, resolve, save

__version__ = "0.1.0"

_LAZY = {
    "HPNClassifier": "hpn.sklearn",
    "HPNRegressor": "hpn.sklearn",
    "TrainedModel": "hpn.training.inference",
    "load_run": "hpn.training.inference",
}

__all__ = [
    "CosineSoftmaxLoss",
    "HPNClassifier",
    "HPNRegressor",
    "MultiTaskHead",
    "MultiTaskLoss",
    "NeighbourSoftmaxLoss",
    "PrototypeClassifier",
    "PrototypeLoss",
    "PrototypeRegressor",
    "RegressionLoss",
    "TrainedModel",
    "__version__",
    "build",
    "generate",
    "load",
    "load_run",
    "nearest_prototype",
    "neighbour_softmax_loss",
    "prototype_loss",
    "prototype_softmax_loss",
    "regression_loss",
    "replace_classifier",
    "report",
    "resolve",
    "save",
    "unit",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hpn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
