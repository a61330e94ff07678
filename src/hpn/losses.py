"""Loss objects: the losses of :mod:`hpn.functional` with their settings, behind one contract.

Every loss here is called as ``loss(output, target, reduction)`` and returns a scalar, or (N,)
per-example losses for ``reduction="none"``:

* ``output`` is what a head produces for its loss, one of (N batch, d dims, K classes):

  - :class:`PrototypeOutput` ``(z, prototypes, neighbours)``: (N, d) raw outputs (normalised
    inside the loss), the (K, d) prototypes, and the (K, m) neighbour table or None
    (:class:`PrototypeLoss`, :class:`CosineSoftmaxLoss`, :class:`NeighbourSoftmaxLoss`);
  - :class:`PoleOutput` ``(z, pole, lower, upper)``: (N, d) raw outputs, the (d,) upper
    pole p_u and the bounds v_l < v_u (:class:`RegressionLoss`);
  - an (N, K) tensor of logits (:class:`SoftmaxCrossEntropyLoss`, the baseline);
  - :class:`ScaledOutput` ``(values, lower, upper)``: (N,) outputs on the [-1, 1] scale and
    the bounds (:class:`ScaledMSELoss`, the baseline);
  - :class:`MultiTaskOutput` ``(classes, values)``: one output of each kind above
    (:class:`MultiTaskLoss`).

* ``target`` is what the data sources yield (:mod:`hpn.data`): a dict with ``"label"``, (N,)
  integer classes in [0, K), and/or ``"value"``, (N,) regression targets in target units. A
  classification loss reads ``"label"``, a regression loss ``"value"``, the multi-task loss
  both. A single-task loss also takes the part it reads alone, in place of the dict (the
  prototype losses, as :mod:`hpn.functional`, a tensor, array or list; the baselines' a
  tensor).

* ``reduction`` is ``"sum"``, ``"mean"`` or ``"none"``. The default is the paper's ``"sum"``
  for its losses (:class:`PrototypeLoss`, :class:`RegressionLoss`, :class:`MultiTaskLoss`)
  and ``"mean"`` for the softmax family, as in :mod:`hpn.functional` and ``torch.nn``.

The losses are ``nn.Module`` objects without parameters or buffers: saving a head saves no loss
state, and ``head.train()`` / ``head.eval()`` reach the loss, which only
:class:`NeighbourSoftmaxLoss` uses (random negatives are drawn in training mode only). The
prototypes, the neighbour table and the regression bounds are the head's buffers; the head
hands them to its loss in ``output``.

Example:
    >>> P = torch.eye(3)
    >>> z = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    >>> PrototypeLoss()(PrototypeOutput(z, P), {"label": torch.tensor([0, 1])}, "none")
    tensor([0.0000, 0.0858])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import torch
from torch import nn
from torch.nn import functional as nnf

from hpn import functional as F

__all__ = [
    "LOSSES",
    "CosineSoftmaxLoss",
    "LossKind",
    "MultiTaskLoss",
    "MultiTaskOutput",
    "NeighbourSoftmaxLoss",
    "PoleOutput",
    "PrototypeLoss",
    "PrototypeOutput",
    "RegressionLoss",
    "ScaledMSELoss",
    "ScaledOutput",
    "SoftmaxCrossEntropyLoss",
    "classification_loss",
    "target_part",
]

#: The classification losses a string can name (``head.loss`` in a run config, the heads'
#: and :class:`hpn.sklearn.HPNClassifier`'s ``loss=``).
LossKind = Literal["paper", "softmax", "neighbours"]
LOSSES = ("paper", "softmax", "neighbours")


class PrototypeOutput(NamedTuple):
    """A prototype classifier's output for its loss.

    Attributes:
        z: (N, d) raw outputs.
        prototypes: (K, d) prototypes, row c the prototype of class c.
        neighbours: (K, m) integer table, row c the m classes whose prototypes lie nearest
            to p_c (needed by :class:`NeighbourSoftmaxLoss` only), or None.
    """

    z: torch.Tensor
    prototypes: torch.Tensor
    neighbours: torch.Tensor | None = None


class PoleOutput(NamedTuple):
    """A prototype regressor's output for its loss.

    Attributes:
        z: (N, d) raw outputs.
        pole: (d,) the upper pole p_u (the lower pole is -p_u).
        lower: v_l, the target the lower pole stands for.
        upper: v_u, the target p_u stands for.
    """

    z: torch.Tensor
    pole: torch.Tensor
    lower: float
    upper: float


class ScaledOutput(NamedTuple):
    """A baseline regressor's output for its loss.

    Attributes:
        values: (N,) outputs on the [-1, 1] scale (v_l at -1, v_u at 1).
        lower: v_l.
        upper: v_u.
    """

    values: torch.Tensor
    lower: float
    upper: float


class MultiTaskOutput(NamedTuple):
    """A multi-task head's output for its loss: one output for each task's loss.

    Attributes:
        classes: the classification loss's output (:class:`PrototypeOutput` or (N, K) logits).
        values: the regression loss's output (:class:`PoleOutput` or :class:`ScaledOutput`).
    """

    classes: Any
    values: Any


def target_part(target: Any, key: str) -> Any:
    """``target[key]`` from a target dict; any other target is taken as that part itself.

    Args:
        target: a dict with ``"label"`` and/or ``"value"`` (N,), or one (N,) tensor, array or
            list.
        key: ``"label"`` or ``"value"``.

    Raises:
        ValueError: a dict without ``key``; the message names the keys it has.

    Example:
        >>> target_part({"label": [1, 0], "value": [0.5, 2.0]}, "value")
        [0.5, 2.0]
    """
    if not isinstance(target, Mapping):
        return target
    if key not in target:
        raise ValueError(f"the target has no {key!r} (it has {sorted(target)})")
    return target[key]


def _check_count(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_softmax(scale: float | None, margin: float) -> tuple[float | None, float]:
    """``(scale, margin)`` as floats (None: the default scale of K, chosen at the call)."""
    # K = 2 only stands in for the default scale, which is not kept
    F.check_softmax_params(2, scale, margin)
    return (None if scale is None else float(scale)), float(margin)


class PrototypeLoss(nn.Module):
    """The paper's loss, sum_i (1 - cos(z_i, p_{y_i}))^2 (:func:`hpn.functional.prototype_loss`).

    Only the target prototype is touched: O(N d) whatever K. Output: :class:`PrototypeOutput`;
    target: ``"label"``.
    """

    kind = "paper"

    def forward(
        self, output: PrototypeOutput, target: Any, reduction: F.Reduction = "sum"
    ) -> torch.Tensor:
        """Scalar, or (N,) for ``reduction="none"``."""
        return F.prototype_loss(
            output.z, output.prototypes, target_part(target, "label"), reduction
        )


class CosineSoftmaxLoss(nn.Module):
    """Cross-entropy over ``scale``-d cosines to all K prototypes, the target's lowered by
    ``margin`` (:func:`hpn.functional.prototype_softmax_loss`, O(N K d)).

    Args:
        scale: s > 0; None: :func:`hpn.functional.default_scale` of K.
        margin: m >= 0, CosFace's additive margin.

    Output: :class:`PrototypeOutput`; target: ``"label"``.
    """

    kind = "softmax"

    def __init__(self, scale: float | None = None, margin: float = 0.0):
        super().__init__()
        self.scale, self.margin = _check_softmax(scale, margin)

    def forward(
        self, output: PrototypeOutput, target: Any, reduction: F.Reduction = "mean"
    ) -> torch.Tensor:
        """Scalar, or (N,) for ``reduction="none"``."""
        labels = target_part(target, "label")
        return F.prototype_softmax_loss(
            output.z, output.prototypes, labels, self.scale, self.margin, reduction
        )

    def extra_repr(self) -> str:
        return f"scale={self.scale}, margin={self.margin}"


class NeighbourSoftmaxLoss(nn.Module):
    """The cosine softmax over the target and the m prototypes nearest to it, plus, in
    training mode, ``random_negatives`` classes drawn once per call
    (:func:`hpn.functional.neighbour_softmax_loss`, O(N (m + 1 + r) d) whatever K).

    Args:
        neighbours: m >= 1, the wrong classes per example; a head keeps a (K, min(m, K - 1))
            table of them, computed from its prototypes, and hands it over in the output.
        random_negatives: r >= 0 classes drawn uniformly (with the global torch generator)
            per training-mode call and shared by the batch, each standing for K / r classes;
            evaluation mode draws none.
        scale, margin: as :class:`CosineSoftmaxLoss`'s.

    Output: :class:`PrototypeOutput` with its ``neighbours`` table; target: ``"label"``.
    """

    kind = "neighbours"

    def __init__(
        self,
        neighbours: int = 32,
        random_negatives: int = 256,
        scale: float | None = None,
        margin: float = 0.0,
    ):
        super().__init__()
        self.neighbours = _check_count("neighbours", neighbours, 1)
        self.random_negatives = _check_count("random_negatives", random_negatives, 0)
        self.scale, self.margin = _check_softmax(scale, margin)

    def forward(
        self, output: PrototypeOutput, target: Any, reduction: F.Reduction = "mean"
    ) -> torch.Tensor:
        """Scalar, or (N,) for ``reduction="none"``."""
        z, prototypes, table = output
        if table is None:
            raise ValueError("the neighbour softmax needs the output's neighbour table")
        k, r = len(prototypes), (self.random_negatives if self.training else 0)
        negatives = torch.randint(k, (r,), device=z.device) if r else None
        return F.neighbour_softmax_loss(
            z, prototypes, target_part(target, "label"), table, self.scale, self.margin,
            reduction, negatives,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"neighbours={self.neighbours}, random_negatives={self.random_negatives}, "
            f"scale={self.scale}, margin={self.margin}"
        )


class RegressionLoss(nn.Module):
    """The paper's regression loss, sum_i (r_i - cos(z_i, p_u))^2 with r_i the target scaled
    to [-1, 1] (:func:`hpn.functional.regression_loss`).

    Output: :class:`PoleOutput`; target: ``"value"``.
    """

    def forward(
        self, output: PoleOutput, target: Any, reduction: F.Reduction = "sum"
    ) -> torch.Tensor:
        """Scalar, or (N,) for ``reduction="none"``."""
        z, pole, lower, upper = output
        return F.regression_loss(z, pole, target_part(target, "value"), lower, upper, reduction)


class SoftmaxCrossEntropyLoss(nn.Module):
    """The baseline classifier's cross-entropy of (N, K) logits, computed in float32.

    Output: the logits; target: ``"label"``, an (N,) int64 tensor.
    """

    def forward(
        self, output: torch.Tensor, target: Any, reduction: F.Reduction = "mean"
    ) -> torch.Tensor:
        """Scalar, or (N,) for ``reduction="none"``."""
        return nnf.cross_entropy(output.float(), target_part(target, "label"), reduction=reduction)


class ScaledMSELoss(nn.Module):
    """The baseline regressor's squared error between its output and the target scaled to
    [-1, 1] by the bounds (:func:`hpn.functional.regression_target`), in float32.

    Output: :class:`ScaledOutput`; target: ``"value"``, an (N,) tensor.
    """

    def forward(
        self, output: ScaledOutput, target: Any, reduction: F.Reduction = "mean"
    ) -> torch.Tensor:
        """Scalar, or (N,) for ``reduction="none"``."""
        values, lower, upper = output
        r = F.regression_target(target_part(target, "value").float(), lower, upper)
        return nnf.mse_loss(values.float(), r, reduction=reduction)


class MultiTaskLoss(nn.Module):
    """L = t L_c + (1 - t) L_r (:func:`hpn.functional.multitask_loss`), both terms with the
    same reduction.

    Args:
        classification: the loss of ``output.classes``; it reads the target's ``"label"``.
        regression: the loss of ``output.values``; it reads the target's ``"value"``.
        task_weight: t in [0, 1].

    Output: :class:`MultiTaskOutput`; target: a dict with ``"label"`` and ``"value"``.
    """

    def __init__(self, classification: nn.Module, regression: nn.Module, task_weight: float = 0.5):
        super().__init__()
        F.multitask_loss(torch.zeros(()), torch.zeros(()), task_weight)  # validates t
        self.classification, self.regression = classification, regression
        self.task_weight = task_weight

    def forward(
        self, output: MultiTaskOutput, target: Any, reduction: F.Reduction = "sum"
    ) -> torch.Tensor:
        """Scalar, or (N,) for ``reduction="none"``."""
        if not isinstance(target, Mapping):
            raise ValueError(
                f"a multi-task loss needs a target dict with 'label' and 'value', got "
                f"{type(target).__name__}"
            )
        return F.multitask_loss(
            self.classification(output.classes, target, reduction),
            self.regression(output.values, target, reduction),
            self.task_weight,
        )

    def extra_repr(self) -> str:
        return f"task_weight={self.task_weight}"


def classification_loss(
    kind: str = "paper",
    scale: float | None = None,
    margin: float = 0.0,
    neighbours: int = 32,
    random_negatives: int = 256,
) -> nn.Module:
    """The classification loss a string names, the way run configs and the heads' ``loss=``
    choose it: ``"paper"`` (:class:`PrototypeLoss`), ``"softmax"``
    (:class:`CosineSoftmaxLoss`) or ``"neighbours"`` (:class:`NeighbourSoftmaxLoss`).

    Every argument is checked whatever the kind (a ``scale`` given to ``"paper"`` is checked
    and unused).

    Raises:
        ValueError: an unknown kind, or a bad scale, margin or count, naming the value.

    Example:
        >>> classification_loss("softmax", scale=16.0)
        CosineSoftmaxLoss(scale=16.0, margin=0.0)
    """
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {kind!r}")
    _check_count("neighbours", neighbours, 1)
    _check_count("random_negatives", random_negatives, 0)
    _check_softmax(scale, margin)
    if kind == "softmax":
        return CosineSoftmaxLoss(scale, margin)
    if kind == "neighbours":
        return NeighbourSoftmaxLoss(neighbours, random_negatives, scale, margin)
    return PrototypeLoss()
