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

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as nnf

from hpn import functional as F

__all__ = [
    "LOSSES",
    "CosineSoftmaxLoss",
    "CosineSoftmaxSettings",
    "LossEntry",
    "LossKind",
    "MultiTaskLoss",
    "MultiTaskOutput",
    "NeighbourSoftmaxLoss",
    "NeighbourSoftmaxSettings",
    "NoSettings",
    "PoleOutput",
    "PrototypeLoss",
    "PrototypeOutput",
    "RegressionLoss",
    "SampledSoftmaxLoss",
    "SampledSoftmaxSettings",
    "ScaledMSELoss",
    "ScaledOutput",
    "SoftmaxCrossEntropyLoss",
    "classification_loss",
    "loss_entry",
    "loss_names",
    "register_loss",
    "target_part",
]

#: The name of a classification loss in :data:`LOSSES` (or one of its old aliases).
LossKind = str


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


@dataclass
class NoSettings:
    """The settings of a loss that has none (the squared cosine)."""


@dataclass
class CosineSoftmaxSettings:
    """The settings of :class:`CosineSoftmaxLoss`.

    Attributes:
        scale: s > 0, the logits are s times the cosines; None: s = sqrt(2) ln(K - 1)
            (:func:`hpn.functional.default_scale`).
        margin: m >= 0, subtracted from the target's cosine (CosFace's additive margin).
    """

    scale: float | None = None
    margin: float = 0.0

    def __post_init__(self) -> None:
        _check_softmax(self.scale, self.margin)


@dataclass
class NeighbourSoftmaxSettings(CosineSoftmaxSettings):
    """The settings of :class:`NeighbourSoftmaxLoss`.

    Attributes:
        neighbours: m >= 1, the wrong classes per example: the prototypes nearest to the
            target's (capped at K - 1, where it is the full softmax).
        random_negatives: r >= 0 classes drawn at random once per batch as extra wrong
            classes, each standing for K / r classes (0: none; the neighbours alone learn
            much more slowly).
    """

    neighbours: int = 32
    random_negatives: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_count("neighbours", self.neighbours, 1)
        _check_count("random_negatives", self.random_negatives, 0)


@dataclass
class SampledSoftmaxSettings(CosineSoftmaxSettings):
    """The settings of :class:`SampledSoftmaxLoss`.

    Attributes:
        negatives: r >= 0 classes drawn at random per training batch beside the batch's own
            classes (default 288, the candidates of the neighbour softmax's defaults: 32
            neighbours + 256 random negatives).
    """

    negatives: int = 288

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_count("negatives", self.negatives, 0)


class PrototypeLoss(nn.Module):
    """The squared-cosine loss of the paper, sum_i (1 - cos(z_i, p_{y_i}))^2 (:func:`hpn.functional.prototype_loss`).

    Only the target prototype is touched: O(N d) whatever K. Output: :class:`PrototypeOutput`;
    target: ``"label"``.
    """

    kind = "squared_cosine"
    aliases = ("paper",)

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

    kind = "cosine_softmax"
    aliases = ("softmax",)

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

    kind = "neighbour_softmax"
    aliases = ("neighbours",)

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


class SampledSoftmaxLoss(nn.Module):
    """Cross-entropy over scaled cosines to a sample of the class centres: the classes of the
    batch plus ``negatives`` drawn at random (Partial FC's sampled softmax).

    Per training-mode call, r = ``negatives`` classes are drawn uniformly from [0, K) (with
    the global torch generator) and joined to the batch's labels; the u <= N + r distinct
    classes are gathered (``index_select``: only their rows take part in the forward, and
    the backward writes gradient to those rows only) and the loss is
    :func:`hpn.functional.prototype_softmax_loss` over them, target cosine lowered by
    ``margin``. Evaluation mode draws none: the softmax runs over the batch's classes. The
    logits cost O(N u d) whatever K; no log-Q correction is made (as in Partial FC), so the
    wrong classes weigh less than in the full softmax.

    Args:
        negatives: r >= 0 classes drawn per training batch.
        scale: s > 0; None: :func:`hpn.functional.default_scale` of K (all classes, not u).
        margin: m >= 0, CosFace's additive margin.

    Output: :class:`PrototypeOutput` whose ``prototypes`` are the (K, d) class centres (any
    norm: the gathered rows are normalised here); target: ``"label"``.
    """

    kind = "sampled_softmax"
    aliases = ()

    def __init__(self, negatives: int = 288, scale: float | None = None, margin: float = 0.0):
        super().__init__()
        self.negatives = _check_count("negatives", negatives, 0)
        self.scale, self.margin = _check_softmax(scale, margin)

    def forward(
        self, output: PrototypeOutput, target: Any, reduction: F.Reduction = "mean"
    ) -> torch.Tensor:
        """Scalar, or (N,) for ``reduction="none"``."""
        z, centres = output.z, output.prototypes
        k = len(centres)
        labels = F.as_labels(target_part(target, "label"), len(z), k, z.device)
        s = F.check_softmax_params(k, self.scale, self.margin)
        r = self.negatives if self.training else 0
        drawn = torch.randint(k, (r,), device=z.device)
        sampled, local = torch.unique(torch.cat([labels, drawn]), return_inverse=True)
        rows = centres.index_select(0, sampled.to(centres.device)).to(z.device)
        return F.prototype_softmax_loss(z, rows, local[: len(z)], s, self.margin, reduction)

    def extra_repr(self) -> str:
        return f"negatives={self.negatives}, scale={self.scale}, margin={self.margin}"


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


@dataclass(frozen=True)
class LossEntry:
    """A classification loss by name: its class, its settings and the heads that take it.

    Attributes:
        name: what configs, estimators and specs call it (``head.loss.kind``).
        loss: the ``nn.Module`` class, constructed as ``loss(**settings)``.
        settings: the dataclass of its settings (field names = constructor arguments).
        heads: the head kinds (:data:`hpn.registry.HEADS`) that take it.
        aliases: old names that still work, with a ``DeprecationWarning``.
    """

    name: str
    loss: type[nn.Module]
    settings: type
    heads: tuple[str, ...]
    aliases: tuple[str, ...] = ()

    def setting_names(self) -> list[str]:
        """The settings this loss takes, in declaration order."""
        return [f.name for f in dataclasses.fields(self.settings)]


#: The classification losses by name, in the order configs and help texts list them.
LOSSES: dict[str, LossEntry] = {}


def register_loss(loss: type[nn.Module], settings: type, heads: tuple[str, ...]) -> LossEntry:
    """Add a loss class to :data:`LOSSES` under its ``kind`` (old names: its ``aliases``).

    That is all a new loss needs: configs (``head.loss.kind`` and its settings), the command
    line, :class:`hpn.sklearn.HPNClassifier`'s ``loss=`` and the benchmark specs' head names
    read :data:`LOSSES`.

    Args:
        loss: an ``nn.Module`` class with a class attribute ``kind`` (its name), optionally
            ``aliases``, called as ``loss(output, target, reduction)``.
        settings: a dataclass whose fields are the constructor's keyword arguments.
        heads: the head kinds it suits (``"prototype"``: fixed prototypes, ...).
    """
    name = loss.kind  # type: ignore[attr-defined]
    entry = LossEntry(name, loss, settings, tuple(heads), tuple(getattr(loss, "aliases", ())))
    LOSSES[name] = entry
    return entry


def loss_names() -> list[str]:
    """The loss names configs accept (aliases aside).

    >>> loss_names()
    ['squared_cosine', 'cosine_softmax', 'neighbour_softmax', 'sampled_softmax']
    """
    return list(LOSSES)


def loss_entry(name: str, where: str = "loss") -> LossEntry:
    """The :data:`LOSSES` entry of a name or an old alias (the latter warns).

    Raises:
        ValueError: an unknown name; the message lists the names.
    """
    if name in LOSSES:
        return LOSSES[name]
    for entry in LOSSES.values():
        if name in entry.aliases:
            warnings.warn(
                f"{where} {name!r} is deprecated; use {entry.name!r}",
                DeprecationWarning,
                stacklevel=2,
            )
            return entry
    raise ValueError(f"{where} must be one of {loss_names()}, got {name!r}")


def classification_loss(kind: LossKind = PrototypeLoss.kind, **settings: Any) -> nn.Module:
    """The classification loss a name (:data:`LOSSES`) and its settings make.

    Args:
        kind: a name of :func:`loss_names` (or an old alias: ``"paper"``, ``"softmax"``,
            ``"neighbours"``).
        **settings: the loss's settings (its :attr:`LossEntry.settings` fields); None values
            are left at their defaults.

    Raises:
        ValueError: an unknown kind, a setting the loss does not take, or a bad value,
            naming it.

    Example:
        >>> classification_loss("cosine_softmax", scale=16.0)
        CosineSoftmaxLoss(scale=16.0, margin=0.0)
    """
    entry = loss_entry(kind)
    given = {k: v for k, v in settings.items() if v is not None}
    extra = sorted(set(given) - set(entry.setting_names()))
    if extra:
        raise ValueError(
            f"loss {entry.name!r} takes no {', '.join(extra)} (its settings: "
            f"{entry.setting_names() or 'none'})"
        )
    checked = entry.settings(**given)  # validates
    return entry.loss(**dataclasses.asdict(checked))


register_loss(PrototypeLoss, NoSettings, ("prototype",))
register_loss(CosineSoftmaxLoss, CosineSoftmaxSettings, ("prototype", "cosine"))
register_loss(NeighbourSoftmaxLoss, NeighbourSoftmaxSettings, ("prototype",))
register_loss(SampledSoftmaxLoss, SampledSoftmaxSettings, ("sampled",))
