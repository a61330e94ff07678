"""Hyperspherical Prototype Networks: class prototypes placed on the sphere before training.

The names users reach for first::

    from hpn import generate, report, PrototypeClassifier, CosineSoftmaxLoss, prototype_loss
    P = generate(100, 25)                      # (K, d) unit prototypes, best available
    head = PrototypeClassifier(P, in_features=512)              # the paper's loss
    head = PrototypeClassifier(P, 512, loss=CosineSoftmaxLoss())  # or another loss object

``HPNClassifier`` and ``HPNRegressor`` (scikit-learn) are imported on first use, so
``import hpn`` does not need scikit-learn.
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

_LAZY = {"HPNClassifier": "hpn.sklearn", "HPNRegressor": "hpn.sklearn"}

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
    "__version__",
    "build",
    "generate",
    "load",
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
