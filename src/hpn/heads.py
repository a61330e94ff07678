"""Prototype heads: ``nn.Module`` wrappers that own fixed prototypes and a loss object.

Prototypes (and regression bounds) are persistent buffers: ``state_dict()`` saves them,
``.to()`` moves them, and the optimiser never sees them. Every head's
``loss(features, target, reduction)`` hands its outputs and buffers to its loss object
(:mod:`hpn.losses`) with the target dict the data sources yield, and ``target_keys`` names
the parts of that dict it reads and ``predict`` returns. Each head may carry a linear layer
from a backbone's features to the d-dim output space, so it can replace a model's final
``nn.Linear`` (:func:`replace_classifier`). Features are (N, in_features), or (N, d) without
a linear layer; other shapes are refused with a ``ValueError`` naming both sizes.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import torch
from torch import nn

from hpn import functional as F
from hpn.assignment import DynamicAssignment
from hpn.losses import (
    LossKind,
    MultiTaskLoss,
    MultiTaskOutput,
    NeighbourSoftmaxLoss,
    PoleOutput,
    PrototypeLoss,
    PrototypeOutput,
    RegressionLoss,
    classification_loss,
    target_part,
)
from hpn.prototypes.quality import nearest_neighbours

OutputNorm = Literal["none", "batchnorm"]


def _projection(in_features: int | None, dims: int, output_norm: str = "none") -> nn.Module:
    """``Linear(in_features, dims)``, followed by ``BatchNorm1d(dims)`` for ``"batchnorm"``.

    The batch norm keeps z centred with a bounded scale. Without it, non-negative (post-ReLU)
    features can grow until every z points the same way; the gradient through the
    normalisation z / |z| shrinks as 1 / |z|, so such a network stops learning.
    """
    if output_norm not in ("none", "batchnorm"):
        raise ValueError(f"output_norm must be 'none' or 'batchnorm', got {output_norm!r}")
    if in_features is None:
        if output_norm != "none":
            raise ValueError("output_norm needs a projection (in_features)")
        return nn.Identity()
    if in_features < 1:
        raise ValueError(f"in_features must be >= 1, got {in_features}")
    if output_norm == "batchnorm":
        return nn.Sequential(nn.Linear(in_features, dims), nn.BatchNorm1d(dims))
    return nn.Linear(in_features, dims)


def _check_prototypes(prototypes: torch.Tensor) -> torch.Tensor:
    p = torch.as_tensor(prototypes)
    if p.ndim != 2 or len(p) < 2:
        raise ValueError(f"prototypes must be (K, d) with K >= 2, got shape {tuple(p.shape)}")
    if not torch.isfinite(p).all():
        raise ValueError("prototypes contain NaN or inf")
    return _exact_unit(p.detach().float())


def _exact_unit(p: torch.Tensor) -> torch.Tensor:
    """Rows divided by their exact norms (not :func:`hpn.functional.unit`'s floor, which is
    for outputs); zero rows stay zero."""
    return p / p.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)


def _check_pole(pole: torch.Tensor | None, dims: int) -> torch.Tensor:
    """The unit (d,) upper pole: e_1 by default, else ``pole`` normalised if it is finite and
    non-zero."""
    if pole is None:
        return torch.eye(dims)[0]
    p = torch.as_tensor(pole).detach().float()
    if p.shape != (dims,):
        raise ValueError(f"pole must have shape ({dims},), got {tuple(p.shape)}")
    if not torch.isfinite(p).all():
        raise ValueError(f"pole must be finite, got {p.tolist()}")
    if not p.any():
        raise ValueError(
            f"pole must be non-zero (it sets the regression direction), got {p.tolist()}"
        )
    return _exact_unit(p)


def _classification_criterion(loss: LossKind | nn.Module, settings: dict[str, Any]) -> nn.Module:
    """The loss object a classification head was given, or the one its name and the settings
    given (not None) make (:func:`hpn.losses.classification_loss`)."""
    given = {k: v for k, v in settings.items() if v is not None}
    if isinstance(loss, str):
        return classification_loss(loss, **given)
    if not isinstance(loss, nn.Module):
        raise ValueError(f"loss must be a loss name or a loss object, got {loss!r}")
    if given:
        raise ValueError(
            f"{', '.join(sorted(given))} are the loss object's settings; pass them to "
            f"{type(loss).__name__}, not to the head"
        )
    return loss


def _outputs(head: nn.Module, features: torch.Tensor, whose: str) -> torch.Tensor:
    """z = head.proj(features), after checking features against ``head.in_features`` and z
    against ``head.dims`` (``whose`` d, in the message)."""
    width = getattr(head, "in_features", None)  # absent from heads pickled before it existed
    if width is not None and (features.ndim != 2 or features.shape[1] != width):
        raise ValueError(
            f"features must be (N, {width}) for this head's in_features={width}, "
            f"got shape {tuple(features.shape)}"
        )
    z = cast(nn.Module, head.proj)(features)
    F.check_dims(z, cast(int, head.dims), whose)
    return z


class PrototypeClassifier(nn.Module):
    """Classification head: outputs z in R^d, scores cos(z, p_c) for every class.

    ``forward`` returns (N, K) cosine scores so ``argmax`` works as after a softmax layer;
    :meth:`predict` does the same in chunks of prototypes for very many classes.

    Args:
        prototypes: (K, d) fixed prototypes (normalised and stored as a buffer).
        in_features: if given, a ``Linear(in_features, d)`` maps backbone features to z.
        loss: a classification loss object of :mod:`hpn.losses` (any ``nn.Module`` called
            as ``loss(PrototypeOutput, target, reduction)``), or the name of one in
            :data:`hpn.losses.LOSSES`: ``"squared_cosine"``,
            :class:`~hpn.losses.PrototypeLoss`, the paper's (1 - cos(z, p_y))^2 (touches only
            the target prototype); ``"cosine_softmax"``, :class:`~hpn.losses.CosineSoftmaxLoss`,
            cross-entropy over ``scale``-d cosines to all prototypes with an optional additive
            ``margin`` (O(N K d) per batch); or ``"neighbour_softmax"``,
            :class:`~hpn.losses.NeighbourSoftmaxLoss`, the same softmax over the target and the
            ``neighbours`` prototypes nearest to it (O(N (m + 1) d) whatever K). The
            arguments ``scale`` to ``random_negatives`` go with a name only, and only those the
            named loss takes (None: its default); a loss object carries its own.
        scale: softmax scale s; None: :func:`hpn.functional.default_scale` of K.
        margin: softmax additive cosine margin m >= 0 (None: 0).
        neighbours: m >= 1 (None: 32), wrong classes per example for
            ``"neighbour_softmax"``; capped at K - 1 (where the loss is the full cosine
            softmax). Row c of the ``neighbours`` buffer (K, m) lists the classes whose
            prototypes lie nearest to class c's, computed blockwise at construction
            (O(K^2 d) once, never a K x K matrix) and kept in step with dynamic assignment;
            call :meth:`refresh_neighbours` after changing ``prototypes`` by hand.
        random_negatives: r >= 0 (None: 256) classes drawn uniformly once per training batch
            and shared by it, as extra wrong classes of ``"neighbour_softmax"``, each standing
            for K / r classes: an unbiased estimate of the push from the classes not listed
            (0: none; evaluation-mode losses draw none). Without them the neighbours alone
            learn much more slowly: outputs far from their targets are confused with
            prototypes that are not the target's neighbours.
        output_norm: ``"none"`` (the paper) or ``"batchnorm"``: batch norm on z before it
            is normalised (needs ``in_features``; see :func:`_projection`).

    Example:
        >>> head = PrototypeClassifier(torch.eye(3), in_features=5)
        >>> head(torch.randn(2, 5)).shape
        torch.Size([2, 3])
    """

    #: The parts of the target dict :meth:`loss` reads, in the order :meth:`predict` returns
    #: them.
    target_keys = ("label",)

    # buffers (state_dict() keeps them), declared for the type checker
    prototypes: torch.Tensor  # (K, d) unit rows, row c the prototype class c owns
    neighbours: torch.Tensor | None  # (K, m) long, or None unless the loss uses neighbours
    proj: nn.Module
    criterion: nn.Module
    assignment: DynamicAssignment | None

    def __init__(
        self,
        prototypes: torch.Tensor,
        in_features: int | None = None,
        loss: LossKind | nn.Module = PrototypeLoss.kind,
        scale: float | None = None,
        margin: float | None = None,
        output_norm: OutputNorm = "none",
        neighbours: int | None = None,
        random_negatives: int | None = None,
    ):
        super().__init__()
        p = _check_prototypes(prototypes)
        settings = {"scale": scale, "margin": margin, "neighbours": neighbours}
        criterion = _classification_criterion(
            loss, {**settings, "random_negatives": random_negatives}
        )
        self.num_classes, self.dims = p.shape
        self.in_features = in_features
        # the softmax settings in use, kept (resolved against K) for run records; under the
        # paper's loss, the ones it was given, unused
        self.margin = float(getattr(criterion, "margin", margin or 0.0))
        self.scale = F.check_softmax_params(
            self.num_classes, getattr(criterion, "scale", scale), self.margin
        )
        self.proj = _projection(in_features, self.dims, output_norm)
        self.register_buffer("prototypes", p)
        self.register_buffer("neighbours", None)
        self.criterion = criterion
        if isinstance(criterion, NeighbourSoftmaxLoss):
            m = min(criterion.neighbours, self.num_classes - 1)
            self.neighbours = torch.empty(self.num_classes, m, dtype=torch.long)
            self.refresh_neighbours()
        self.assignment = None

    @property
    def loss_kind(self) -> str:
        """The loss's name (:data:`hpn.losses.LOSSES`), else its class's."""
        return getattr(self.criterion, "kind", type(self.criterion).__name__)

    @property
    def random_negatives(self) -> int:
        """r, the negatives the loss draws per training batch (0 for losses that draw none)."""
        return getattr(self.criterion, "random_negatives", 0)

    @torch.no_grad()
    def refresh_neighbours(self) -> None:
        """Recompute the ``neighbours`` table from the current ``prototypes`` (a no-op for
        the other losses): row c, the classes whose prototypes are nearest to p_c."""
        if self.neighbours is not None:
            m = self.neighbours.shape[1]
            self.neighbours.copy_(nearest_neighbours(self.prototypes, m)[1])

    def enable_dynamic_assignment(self, momentum: float = 0.9, method: str = "auto") -> None:
        """Track class mean directions while training and allow :meth:`reassign`.

        See :mod:`hpn.assignment`. The current prototypes become the fixed set; the
        ``prototypes`` buffer then always holds, in row c, the prototype class c owns.
        """
        self.assignment = DynamicAssignment(self.prototypes, momentum, method).to(
            self.prototypes.device
        )

    def reassign(self, means: torch.Tensor | None = None) -> int:
        """Re-match classes to prototypes from the tracked means; returns how many changed
        (:meth:`hpn.assignment.DynamicAssignment.reassign`)."""
        if self.assignment is None:
            raise ValueError("dynamic assignment is not enabled on this head")
        return self.assignment.reassign(self.prototypes, means, self.neighbours)

    def initial_reassign(self, means: torch.Tensor, seen: torch.Tensor) -> int:
        """Match classes to prototypes once from given class means, then restart the running
        means (:meth:`hpn.assignment.DynamicAssignment.initial_reassign`)."""
        if self.assignment is None:
            raise ValueError("dynamic assignment is not enabled on this head")
        return self.assignment.initial_reassign(self.prototypes, means, seen, self.neighbours)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """(N, d) unit output vectors."""
        return F.unit(_outputs(self, features, "the prototypes'"))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, K) cosine scores."""
        return self.embed(features) @ self.prototypes.to(features.dtype).T

    def loss(
        self, features: torch.Tensor, target: Any, reduction: F.Reduction = "sum"
    ) -> torch.Tensor:
        """The loss object's value for a batch (:mod:`hpn.losses`).

        Args:
            features: (N, in_features) features, or (N, d) without a linear layer.
            target: a dict with ``"label"``, or the labels alone: (N,) integers in [0, K) (a
                tensor, array or list).
            reduction: ``"sum"`` (the paper), ``"mean"`` or ``"none"``.

        Returns:
            A scalar, or (N,) per-example losses for ``"none"``. With dynamic assignment
            enabled, a training-mode call also folds the outputs into the class means.
        """
        z = _outputs(self, features, "the prototypes'")
        return self.criterion(self._loss_output(z, target), target, reduction)

    def _loss_output(self, z: torch.Tensor, target: Any) -> PrototypeOutput:
        """What the loss needs of (N, d) outputs ``z``; in training mode with dynamic
        assignment, ``z`` also goes into the class means."""
        if self.assignment is not None and self.training:
            self.assignment.observe(z, target_part(target, "label"))
        return PrototypeOutput(z, self.prototypes, self.neighbours)

    @torch.no_grad()
    def predict(self, features: torch.Tensor, chunk_size: int = 16_384) -> torch.Tensor:
        """(N,) nearest-prototype classes without an N x K matrix; NaN or inf outputs are
        refused (:func:`hpn.functional.nearest_prototype`)."""
        z = _outputs(self, features, "the prototypes'")
        return F.nearest_prototype(z, self.prototypes, chunk_size)[0]


class PrototypeRegressor(nn.Module):
    """Regression head: the target is read off the cosine to the upper pole p_u.

    Args:
        dims: output dimensionality d (the paper uses S^1 and S^2, i.e. d = 2 or 3).
        lower: v_l, the smallest training target (see :func:`hpn.functional.regression_bounds`).
        upper: v_u, the largest.
        in_features: optional input size of a linear layer to z.
        pole: optional (d,) p_u, finite and non-zero; default the first axis e_1. The lower
            pole is -p_u.
        output_norm: as :class:`PrototypeClassifier`'s.
        loss: the loss object, called as ``loss(PoleOutput, target, reduction)``; default
            :class:`~hpn.losses.RegressionLoss`, the paper's (r - cos(z, p_u))^2.

    Raises:
        ValueError: non-finite bounds, lower >= upper, or a pole of the wrong shape, not
            finite or zero; the message names the value.
    """

    target_keys = ("value",)

    # buffers (state_dict() keeps them), declared for the type checker
    pole: torch.Tensor  # (d,) unit upper pole p_u
    bounds: torch.Tensor  # (2,) float64 [v_l, v_u]
    proj: nn.Module
    criterion: nn.Module

    def __init__(
        self,
        dims: int,
        lower: float,
        upper: float,
        in_features: int | None = None,
        pole: torch.Tensor | None = None,
        output_norm: OutputNorm = "none",
        loss: nn.Module | None = None,
    ):
        super().__init__()
        if isinstance(dims, bool) or int(dims) != dims or dims < 1:
            raise ValueError(f"dims must be an integer >= 1, got {dims!r}")
        low, high = F.check_regression_bounds(lower, upper)
        self.dims, self.in_features = int(dims), in_features
        self.proj = _projection(in_features, self.dims, output_norm)
        self.register_buffer("pole", _check_pole(pole, self.dims))
        self.register_buffer("bounds", torch.tensor([low, high], dtype=torch.float64))
        self.criterion = RegressionLoss() if loss is None else loss

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N,) cosine to the upper pole, in [-1, 1]."""
        z = _outputs(self, features, "the pole's")
        return F.cosine_to(z, self.pole.to(features.dtype))

    def loss(
        self, features: torch.Tensor, target: Any, reduction: F.Reduction = "sum"
    ) -> torch.Tensor:
        """The loss object's value for a batch, by default the paper's (r - cos(z, p_u))^2.

        Args:
            features: (N, in_features) features, or (N, d) without a linear layer.
            target: a dict with ``"value"``, or the values alone: (N,) targets in target
                units (a tensor, array or list).
            reduction: ``"sum"`` (the paper), ``"mean"`` or ``"none"``.

        Returns:
            A scalar, or (N,) per-example losses for ``"none"``.
        """
        z = _outputs(self, features, "the pole's")
        return self.criterion(self._loss_output(z), target, reduction)

    def _loss_output(self, z: torch.Tensor) -> PoleOutput:
        low, high = self.bounds.tolist()
        return PoleOutput(z, self.pole, low, high)

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """(N,) float64 predictions v_l + (cos(z, p_u) + 1) / 2 (v_u - v_l) from (N, F) features."""
        low, high = self.bounds.tolist()
        return F.regression_inverse(self(features).double(), low, high)


class MultiTaskHead(nn.Module):
    """Regression and classification on one sphere, as in the paper's rotated digits.

    Axis 0 carries the regression (poles ±e_1); the class prototypes live in the other d - 1
    axes, and the class is read from the direction of z in that subspace. Both losses have the
    same form; ``task_weight`` t gives L = t L_c + (1 - t) L_r.

    Args:
        class_prototypes: (K, d - 1) prototypes of the classification subspace.
        lower, upper: regression bounds v_l < v_u, both finite.
        in_features: optional input size of a linear layer to z.
        task_weight: t in [0, 1].
        loss, scale, margin, neighbours, random_negatives: the classification loss, a loss
            object or a name, as in :class:`PrototypeClassifier`; the head's loss is the
            :class:`~hpn.losses.MultiTaskLoss` of it and the paper's regression loss.
        output_norm: as :class:`PrototypeClassifier`'s, on the whole z.
    """

    target_keys = ("label", "value")

    proj: nn.Module
    criterion: MultiTaskLoss

    def __init__(
        self,
        class_prototypes: torch.Tensor,
        lower: float,
        upper: float,
        in_features: int | None = None,
        task_weight: float = 0.5,
        loss: LossKind | nn.Module = PrototypeLoss.kind,
        scale: float | None = None,
        margin: float | None = None,
        output_norm: OutputNorm = "none",
        neighbours: int | None = None,
        random_negatives: int | None = None,
    ):
        super().__init__()
        p = _check_prototypes(class_prototypes)
        self.num_classes, self.dims = len(p), p.shape[1] + 1
        self.in_features = in_features
        self.proj = _projection(in_features, self.dims, output_norm)
        self.classifier = PrototypeClassifier(
            p, loss=loss, scale=scale, margin=margin, neighbours=neighbours,
            random_negatives=random_negatives,
        )  # fmt: skip
        self.regressor = PrototypeRegressor(self.dims, lower, upper)
        self.criterion = MultiTaskLoss(
            self.classifier.criterion, self.regressor.criterion, task_weight
        )

    @property
    def task_weight(self) -> float:
        """t, the classification term's weight."""
        return self.criterion.task_weight

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """((N, K) class cosines in the classification subspace, (N,) cosine to the pole)."""
        z = _outputs(self, features, "the head's")
        return self.classifier(z[:, 1:]), self.regressor(z)

    def loss(
        self, features: torch.Tensor, target: Any, reduction: F.Reduction = "sum"
    ) -> torch.Tensor:
        """t L_c + (1 - t) L_r (:class:`~hpn.losses.MultiTaskLoss`).

        Args:
            features: (N, in_features) features, or (N, d) without a linear layer.
            target: a dict with ``"label"``, (N,) integers in [0, K), and ``"value"``, (N,)
                regression targets.
            reduction: ``"sum"`` (the paper), ``"mean"`` or ``"none"``, for both terms.

        Returns:
            A scalar, or (N,) per-example losses for ``"none"``.
        """
        z = _outputs(self, features, "the head's")
        output = MultiTaskOutput(
            self.classifier._loss_output(z[:, 1:], target), self.regressor._loss_output(z)
        )
        return self.criterion(output, target, reduction)

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """((N,) classes, (N,) regression predictions)."""
        z = _outputs(self, features, "the head's")
        return self.classifier.predict(z[:, 1:]), self.regressor.predict(z)


def replace_classifier(
    model: nn.Module, prototypes: torch.Tensor, name: str | None = None
) -> nn.Module:
    """Swap a model's final ``nn.Linear`` for a :class:`PrototypeClassifier` of the same input size.

    Args:
        model: e.g. a ResNet with ``fc`` or a ``nn.Sequential`` ending in a Linear.
        prototypes: (K, d) prototypes; the new head maps ``in_features`` to d.
        name: dotted name of the layer to replace (``"fc"``, ``"head.classifier"``); default
            the last ``nn.Linear`` in ``model.named_modules()`` order.

    Returns:
        The same model, modified in place. The new head (prototypes included) takes the
        replaced layer's dtype and device.
    """
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if name is None:
        if not linears:
            raise ValueError("the model has no nn.Linear layer to replace; pass name=")
        name = linears[-1]
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child, None)
    if not isinstance(old, nn.Linear):
        raise ValueError(
            f"{name!r} is not an nn.Linear layer of the model (Linear layers: {linears})"
        )
    head = PrototypeClassifier(prototypes, in_features=old.in_features)
    setattr(parent, child, head.to(device=old.weight.device, dtype=old.weight.dtype))
    return model
