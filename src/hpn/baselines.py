"""Baseline heads with the same interface as :mod:`hpn.heads`: ``loss(features, target,
reduction)`` with a loss object of :mod:`hpn.losses`, and ``predict``.

* :class:`SoftmaxClassifier`: a Linear layer to K logits with cross-entropy.
* :class:`MSERegressor`: a Linear layer to one value, MSE on targets scaled to [-1, 1] with
  the same training-data bounds as the prototype regressor (so learning rates compare).
* :class:`MultiTaskBaseline`: both, each its own Linear layer on the same features,
  L = t CE + (1 - t) MSE.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hpn import functional as F
from hpn.losses import (
    MultiTaskLoss,
    MultiTaskOutput,
    ScaledMSELoss,
    ScaledOutput,
    SoftmaxCrossEntropyLoss,
)


class SoftmaxClassifier(nn.Module):
    """Softmax cross-entropy head (the usual classifier)."""

    target_keys = ("label",)

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.fc = nn.Linear(in_features, num_classes)
        self.criterion = SoftmaxCrossEntropyLoss()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The class logits.

        Args:
            features: (N, in_features) backbone features.

        Returns:
            (N, K) logits; ``argmax(dim=1)`` is the predicted class.

        Example:
            >>> head = SoftmaxClassifier(8, num_classes=3)
            >>> head(torch.randn(4, 8)).shape
            torch.Size([4, 3])
        """
        return self.fc(features)

    def loss(
        self, features: torch.Tensor, target: Any, reduction: F.Reduction = "mean"
    ) -> torch.Tensor:
        """Cross-entropy of the logits against the labels, computed in float32
        (:class:`~hpn.losses.SoftmaxCrossEntropyLoss`).

        Args:
            features: (N, in_features) backbone features.
            target: a dict with ``"label"``, or the labels alone: (N,) int64 class ids in
                [0, K).
            reduction: ``"mean"``, ``"sum"`` or ``"none"``.

        Returns:
            A scalar, or (N,) per-example losses with ``reduction="none"``.

        Example:
            >>> head = SoftmaxClassifier(8, num_classes=3)
            >>> head.loss(torch.randn(4, 8), torch.tensor([0, 1, 2, 0]), "none").shape
            torch.Size([4])
        """
        return self.criterion(self.fc(features), target, reduction)

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """The class with the largest logit (no gradient).

        Args:
            features: (N, in_features) backbone features.

        Returns:
            (N,) int64 class ids in [0, K).

        Example:
            >>> head = SoftmaxClassifier(8, num_classes=3)
            >>> head.predict(torch.randn(4, 8)).shape
            torch.Size([4])
        """
        return self.fc(features).argmax(dim=1)


class MSERegressor(nn.Module):
    """Linear regression head trained with MSE on targets scaled to [-1, 1]."""

    target_keys = ("value",)

    bounds: torch.Tensor  # buffer, (2,) float64 [v_l, v_u]

    def __init__(self, in_features: int, lower: float, upper: float):
        super().__init__()
        F.regression_target(torch.zeros(1), lower, upper)  # validates the bounds
        self.fc = nn.Linear(in_features, 1)
        self.register_buffer(
            "bounds", torch.tensor([float(lower), float(upper)], dtype=torch.float64)
        )
        self.criterion = ScaledMSELoss()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The raw output, the prediction on the [-1, 1] scale (not clamped).

        Args:
            features: (N, in_features) backbone features.

        Returns:
            (N,) outputs; :meth:`predict` maps them back to target units.

        Example:
            >>> head = MSERegressor(8, lower=0.0, upper=10.0)
            >>> head(torch.randn(4, 8)).shape
            torch.Size([4])
        """
        return self.fc(features)[:, 0]

    def loss(
        self, features: torch.Tensor, target: Any, reduction: F.Reduction = "mean"
    ) -> torch.Tensor:
        """Mean squared error between the output and the target scaled to [-1, 1]
        (:class:`~hpn.losses.ScaledMSELoss`).

        Args:
            features: (N, in_features) backbone features.
            target: a dict with ``"value"``, or the values alone: (N,) targets in target
                units; ``lower`` maps to -1 and ``upper`` to 1.
            reduction: ``"mean"``, ``"sum"`` or ``"none"``.

        Returns:
            A scalar, or (N,) per-example losses with ``reduction="none"``.

        Example:
            >>> head = MSERegressor(8, lower=0.0, upper=10.0)
            >>> head.loss(torch.randn(4, 8), torch.tensor([0.0, 2.5, 5.0, 10.0])).shape
            torch.Size([])
        """
        return self.criterion(self._loss_output(features), target, reduction)

    def _loss_output(self, features: torch.Tensor) -> ScaledOutput:
        low, high = self.bounds.tolist()
        return ScaledOutput(self(features), low, high)

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """The prediction in target units (float64, no gradient).

        The output r on the [-1, 1] scale maps back to ``lower + (r + 1) / 2 (upper - lower)``
        by :func:`hpn.functional.regression_inverse`.

        Args:
            features: (N, in_features) backbone features.

        Returns:
            (N,) float64 predictions.

        Example:
            >>> head = MSERegressor(8, lower=0.0, upper=10.0)
            >>> head.predict(torch.randn(4, 8)).dtype
            torch.float64
        """
        low, high = self.bounds.tolist()
        return F.regression_inverse(self(features).double(), low, high)


class MultiTaskBaseline(nn.Module):
    """K logits and one regression output, from two Linear layers on the same features."""

    target_keys = ("label", "value")

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        lower: float,
        upper: float,
        task_weight: float = 0.5,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.classifier = SoftmaxClassifier(in_features, num_classes)
        self.regressor = MSERegressor(in_features, lower, upper)
        self.criterion = MultiTaskLoss(
            self.classifier.criterion, self.regressor.criterion, task_weight
        )

    @property
    def task_weight(self) -> float:
        """t, the cross-entropy's weight."""
        return self.criterion.task_weight

    def loss(
        self, features: torch.Tensor, target: Any, reduction: F.Reduction = "mean"
    ) -> torch.Tensor:
        """``t`` times the cross-entropy plus ``1 - t`` times the MSE, ``t = task_weight``
        (:class:`~hpn.losses.MultiTaskLoss`).

        Args:
            features: (N, in_features) backbone features.
            target: a dict with ``"label"``, (N,) int64 class ids in [0, K), and
                ``"value"``, (N,) regression targets in target units.
            reduction: ``"mean"``, ``"sum"`` or ``"none"``, applied to both terms.

        Returns:
            A scalar, or (N,) per-example losses with ``reduction="none"``.

        Example:
            >>> head = MultiTaskBaseline(8, num_classes=3, lower=0.0, upper=1.0)
            >>> target = {"label": torch.tensor([0, 1, 2, 0]), "value": torch.rand(4)}
            >>> head.loss(torch.randn(4, 8), target, reduction="none").shape
            torch.Size([4])
        """
        output = MultiTaskOutput(
            self.classifier.fc(features), self.regressor._loss_output(features)
        )
        return self.criterion(output, target, reduction)

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The predicted class and value (no gradient).

        Args:
            features: (N, in_features) backbone features.

        Returns:
            ``(labels, values)``: (N,) int64 class ids in [0, K) and (N,) float64 values in
            target units.

        Example:
            >>> head = MultiTaskBaseline(8, num_classes=3, lower=0.0, upper=1.0)
            >>> labels, values = head.predict(torch.randn(4, 8))
            >>> labels.shape, values.shape
            (torch.Size([4]), torch.Size([4]))
        """
        return self.classifier.predict(features), self.regressor.predict(features)
