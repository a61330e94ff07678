"""Baseline heads with the same interface as :mod:`hpn.heads`: ``loss`` and ``predict``.

* :class:`SoftmaxClassifier`: a Linear layer to K logits with cross-entropy.
* :class:`MSERegressor`: a Linear layer to one value, MSE on targets scaled to [-1, 1] with
  the same training-data bounds as the prototype regressor (so learning rates compare).
* :class:`MultiTaskBaseline`: both on one Linear layer, L = t CE + (1 - t) MSE.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as nnf

from hpn import functional as F


class SoftmaxClassifier(nn.Module):
    """Softmax cross-entropy head (the usual classifier)."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def loss(
        self, features: torch.Tensor, labels: torch.Tensor, reduction: F.Reduction = "mean"
    ) -> torch.Tensor:
        return nnf.cross_entropy(self.fc(features).float(), labels, reduction=reduction)

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features).argmax(dim=1)


class MSERegressor(nn.Module):
    """Linear regression head trained with MSE on targets scaled to [-1, 1]."""

    def __init__(self, in_features: int, lower: float, upper: float):
        super().__init__()
        F.regression_target(torch.zeros(1), lower, upper)  # validates the bounds
        self.fc = nn.Linear(in_features, 1)
        self.register_buffer(
            "bounds", torch.tensor([float(lower), float(upper)], dtype=torch.float64)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)[:, 0]

    def loss(
        self, features: torch.Tensor, y: torch.Tensor, reduction: F.Reduction = "mean"
    ) -> torch.Tensor:
        low, high = self.bounds.tolist()
        r = F.regression_target(y.float(), low, high)
        return nnf.mse_loss(self(features).float(), r, reduction=reduction)

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        low, high = self.bounds.tolist()
        return F.regression_inverse(self(features).double(), low, high)


class MultiTaskBaseline(nn.Module):
    """K logits and one regression output from one Linear layer."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        lower: float,
        upper: float,
        task_weight: float = 0.5,
    ):
        super().__init__()
        F.multitask_loss(torch.zeros(()), torch.zeros(()), task_weight)  # validates t
        self.task_weight = task_weight
        self.num_classes = num_classes
        self.classifier = SoftmaxClassifier(in_features, num_classes)
        self.regressor = MSERegressor(in_features, lower, upper)

    def loss(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        y: torch.Tensor,
        reduction: F.Reduction = "mean",
    ) -> torch.Tensor:
        return F.multitask_loss(
            self.classifier.loss(features, labels, reduction),
            self.regressor.loss(features, y, reduction),
            self.task_weight,
        )

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.classifier.predict(features), self.regressor.predict(features)
