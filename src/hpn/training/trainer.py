"""The network ``hpn train`` trains, its head as the config asks, and its evaluation pass.

The run itself (seeding, resume, the epochs, the run folder) is :func:`hpn.training.run.train`;
the epoch loop is :mod:`hpn.training.loop`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn

from hpn import assignment
from hpn import prototypes as protos
from hpn.baselines import MSERegressor, MultiTaskBaseline, SoftmaxClassifier
from hpn.data.base import (
    DataSplits,
    SplitDataset,
    in_batches,
    iterate_batches,
    without_augmentation,
)
from hpn.evaluation.metrics import EpochMetrics, MetricCounts
from hpn.functional import Reduction
from hpn.heads import MultiTaskHead, PrototypeClassifier, PrototypeRegressor
from hpn.learned import LearnedCentresClassifier
from hpn.losses import classification_loss
from hpn.registry import HEADS
from hpn.training import distributed as dist_
from hpn.training.config import HeadConfig
from hpn.training.feature_prior import feature_batches, feature_run, run_backbone

#: The heads :func:`build_head` makes (:mod:`hpn.heads`, :mod:`hpn.baselines`).
Head = (
    PrototypeClassifier
    | PrototypeRegressor
    | MultiTaskHead
    | SoftmaxClassifier
    | MSERegressor
    | MultiTaskBaseline
    | LearnedCentresClassifier
)


class Network(nn.Module):
    """A backbone that returns features and a head with ``loss`` and ``predict``.

    Every head (:mod:`hpn.heads`, :mod:`hpn.baselines`) takes the batch's target dict in
    ``loss`` and names the parts it predicts in ``target_keys``, so nothing here depends on
    the task; ``task`` is kept for the metrics.
    """

    backbone: nn.Module
    head: Head

    def __init__(self, backbone: nn.Module, head: Head, task: str):
        super().__init__()
        self.backbone, self.head, self.task = backbone, head, task

    def forward(
        self,
        x: torch.Tensor,
        targets: dict[str, torch.Tensor] | None = None,
        reduction: Reduction = "mean",
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Head scores, or with ``targets`` the loss (so that DDP's forward computes it)."""
        if targets is not None:
            return self.loss(x, targets, reduction)
        return self.head(self.backbone(x))

    def loss(
        self, x: torch.Tensor, targets: dict[str, torch.Tensor], reduction: Reduction
    ) -> torch.Tensor:
        """The head's loss of a batch: ``targets`` holds ``label`` and/or ``value`` (N,)."""
        return self.head.loss(self.backbone(x), targets, reduction)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"label": (N,)}``, ``{"value": (N,)}`` or both: the head's ``target_keys``."""
        out = self.head.predict(self.backbone(x))
        parts = out if isinstance(out, tuple) else (out,)
        return dict(zip(self.head.target_keys, parts, strict=True))


def _all_targets(dataset: SplitDataset, key: str, dtype: torch.dtype) -> torch.Tensor:
    """Target ``key`` of every item, (N,) of ``dtype``: from the dataset's target table when
    it has one, else item by item (without the augmentation, which targets do not need)."""
    targets = getattr(dataset, "targets", None)
    if isinstance(targets, dict) and key in targets:
        return torch.as_tensor(targets[key]).to(dtype)
    plain = without_augmentation(dataset)
    items = (torch.as_tensor(plain[i][1][key]).item() for i in range(len(plain)))
    return torch.tensor(list(items), dtype=dtype)


def train_values(dataset: SplitDataset) -> torch.Tensor:
    """All regression targets of a dataset, (N,) float64."""
    return _all_targets(dataset, "value", torch.float64)


def train_labels(dataset: SplitDataset) -> torch.Tensor:
    """All class labels of a dataset, (N,) int64."""
    return _all_targets(dataset, "label", torch.long)


def _resolve_prototypes(
    cfg: HeadConfig, splits: DataSplits, dims: int | None, default: int | None = None
) -> protos.ResolvedPrototypes:
    """The head's prototypes from ``cfg.prototypes`` (:func:`hpn.prototypes.resolve`); the
    data prior reads the training split in batches of 4,096 (at most ``cfg.prior_images``
    per class; through its augmentation unless ``cfg.prior_augment`` is false), through a
    finished run's backbone for ``features:RUN`` (:mod:`hpn.training.feature_prior`).

    Their record (``head.json``) says how many wall seconds building them took
    (``seconds``: the optimisation, or the pass over the training split and the spread), a
    cost the run pays before its first epoch."""
    start = time.perf_counter()
    source = splits.train if cfg.prior_augment is not False else without_augmentation(splits.train)
    indices = _prior_indices(splits.train, cfg.prior_images, cfg.prototype_seed or 0)
    batches = iterate_batches(source, in_batches(indices, 4096))
    train: Iterable[tuple[torch.Tensor, torch.Tensor]] = (
        (x, targets["label"]) for x, targets in batches
    )
    spec, run = cfg.prototypes or "auto", feature_run(cfg.prototypes)
    if run is not None:
        train = feature_batches(run_backbone(run, splits.input_shape), train)
        spec = "data"
    # the pass's augmentation draws leave the run's random numbers (initial weights, batches)
    # as they were, whatever the prior's settings
    with torch.random.fork_rng(devices=[]):
        resolved = protos.resolve(
            spec, _num_classes(splits), dims, default_dims=default, train=train,
            names=splits.class_names, seed=cfg.prototype_seed or 0,
            spread_steps=cfg.spread_steps or 0,
        )  # fmt: skip
    info = {**resolved.info, "seconds": round(time.perf_counter() - start, 3)}
    if run is not None:
        info["features_of"] = str(run)
    if spec == "data":  # the record says what the class means were taken over
        info |= {
            "images_read": len(indices),
            "augmented": getattr(source, "transform", None) is not None,
        }
    return dataclasses.replace(resolved, info=info)


def _prior_indices(train: SplitDataset, per_class: int | None, seed: int) -> torch.Tensor:
    """The training rows the data prior reads, (M,) int64 in order: all of them, or at most
    ``per_class`` of each class, drawn at random (seeded by ``seed``)."""
    if per_class is None:
        return torch.arange(len(train))
    labels = train_labels(train)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    order = order[torch.sort(labels[order], stable=True).indices]  # by class, shuffled within
    grouped = labels[order]
    first = torch.searchsorted(grouped, grouped, side="left")  # where each row's class starts
    rank = torch.arange(len(grouped)) - first
    return torch.sort(order[rank < per_class]).values


def _num_classes(splits: DataSplits) -> int:
    """K of a source with labels (classification or multi-task)."""
    if splits.num_classes is None:
        raise ValueError(f"a {splits.task} source must give num_classes")
    return splits.num_classes


def _regression_bounds(splits: DataSplits) -> tuple[float, float]:
    """(v_l, v_u), the smallest and largest training regression target."""
    lower, upper = (float(v) for v in torch.aminmax(train_values(splits.train)))
    if not upper > lower:
        raise ValueError(f"all training regression targets equal {lower}")
    return lower, upper


def build_head(cfg: HeadConfig, splits: DataSplits, in_features: int) -> tuple[Head, dict]:
    """The head the config asks for (:data:`hpn.registry.HEADS`), with its prototypes or
    centres and regression bounds; and what to record of it in ``head.json``."""
    task = splits.task
    info: dict = {"kind": cfg.kind}
    if task not in HEADS[cfg.kind].tasks:
        raise ValueError(f"head kind {cfg.kind!r} does not fit a {task} task")
    if cfg.warm_start and task != "classification":
        raise ValueError(f"config head.warm_start: applies to classification, not a {task} task")
    lower = upper = 0.0  # the regression bounds, set below for a task with values
    if task != "classification":
        lower, upper = _regression_bounds(splits)
        info["bounds"] = [lower, upper]
    if cfg.kind == "softmax" and task == "classification":
        return SoftmaxClassifier(in_features, _num_classes(splits)), info
    if cfg.kind in ("softmax", "mse") and task == "multitask":
        k = _num_classes(splits)
        return MultiTaskBaseline(in_features, k, lower, upper, cfg.task_weight), info
    if cfg.kind == "mse":
        return MSERegressor(in_features, lower, upper), info
    info["output_norm"] = cfg.output_norm
    if cfg.kind != "prototype":  # learned class centres (hpn.learned)
        return _learned_classifier(cfg, splits, in_features, info), info
    if task == "regression":
        regressor = PrototypeRegressor(
            cfg.dims or 2, lower, upper, in_features=in_features, output_norm=_norm(cfg)
        )
        return regressor, info
    if task == "classification":
        return _prototype_classifier(cfg, splits, in_features, info), info
    return _multitask_head(cfg, splits, in_features, (lower, upper), info), info


def _norm(cfg: HeadConfig) -> Literal["none", "batchnorm"]:
    return cfg.output_norm or "none"


def _loss(cfg: HeadConfig) -> nn.Module:
    """The loss object ``head.loss`` names, with its settings."""
    assert cfg.loss is not None  # HeadConfig fills it for every head kind that takes one
    return classification_loss(cfg.loss.kind, **dataclasses.asdict(cfg.loss.settings))


def _loss_info(head: PrototypeClassifier | LearnedCentresClassifier) -> dict:
    """What ``head.json`` records of a classification head's loss: its kind, its softmax
    settings resolved against K, and its other settings."""
    loss = head.criterion
    info = {"kind": head.loss_kind, "scale": head.scale, "margin": head.margin}
    table = getattr(head, "neighbours", None)
    if table is not None:
        info["neighbours"] = table.shape[1]
    for name in ("random_negatives", "negatives"):
        if hasattr(loss, name):
            info[name] = getattr(loss, name)
    return info


def _learned_classifier(
    cfg: HeadConfig, splits: DataSplits, in_features: int, info: dict
) -> LearnedCentresClassifier:
    """A head with learned class centres (``cosine``, ``sampled``)."""
    cls = HEADS[cfg.kind].classifier
    assert cls is not None and issubclass(cls, LearnedCentresClassifier)
    head = cls(in_features, _num_classes(splits), cfg.dims, loss=_loss(cfg), output_norm=_norm(cfg))
    info["loss"] = _loss_info(head)
    return head


def _prototype_classifier(
    cfg: HeadConfig, splits: DataSplits, in_features: int, info: dict
) -> PrototypeClassifier:
    """A classification head on the resolved prototypes; records them, the loss and the
    assignment in ``info``."""
    resolved = _resolve_prototypes(cfg, splits, cfg.dims, default=_num_classes(splits))
    p, info["prototypes"] = resolved.prototypes, resolved.record()
    head = PrototypeClassifier(p, in_features, _loss(cfg), output_norm=_norm(cfg))
    if cfg.warm_start:
        assert resolved.projection is not None  # a feature prior is a data prior
        start_at_projection(head, *resolved.projection)
        info["warm_start"] = True
    info["loss"] = _loss_info(head)
    info["assignment"] = _assignment(head, cfg, resolved.class_informed)
    return head


@torch.no_grad()
def start_at_projection(
    head: PrototypeClassifier, centre: torch.Tensor, directions: torch.Tensor
) -> None:
    """Set the head's linear layer to the PCA map of a data prior (``head.warm_start``):
    z = (f - centre) @ directions, zero in the d - r trailing axes, so a class whose mean
    features the prior read starts with z pointing at its prototype before the spread.

    Args:
        head: a prototype head whose ``proj`` is a ``Linear(F, d)``.
        centre: (F,) the mean of the class means.
        directions: (F, r) orthonormal columns, r <= d.

    Raises:
        ValueError: the head has no plain linear layer of that width.
    """
    linear, (width, r) = head.proj, directions.shape
    if not isinstance(linear, nn.Linear) or linear.in_features != width or r > linear.out_features:
        raise ValueError(
            f"head.warm_start: the head's output layer ({linear}) is not the Linear({width}, "
            f">= {r}) the prior's PCA map needs"
        )
    weight = torch.zeros_like(linear.weight)
    weight[:r] = directions.T.to(weight.dtype)
    linear.weight.copy_(weight)
    linear.bias.copy_(-(weight @ centre.to(weight.dtype)))


def _multitask_head(
    cfg: HeadConfig,
    splits: DataSplits,
    in_features: int,
    bounds: tuple[float, float],
    info: dict,
) -> MultiTaskHead:
    """A multi-task head: axis 0 for the regression, the prototypes in the other d - 1."""
    dims = cfg.dims or 3
    if dims < 3:
        raise ValueError(f"a multi-task head needs dims >= 3 (one axis for regression), got {dims}")
    resolved = _resolve_prototypes(cfg, splits, dims - 1)
    p, info["prototypes"] = resolved.prototypes, resolved.record()
    head = MultiTaskHead(
        p, *bounds, in_features, cfg.task_weight, _loss(cfg), output_norm=_norm(cfg)
    )
    info["assignment"] = _assignment(head.classifier, cfg, resolved.class_informed)
    return head


def _assignment(head: PrototypeClassifier, cfg: HeadConfig, informed: bool) -> dict:
    """Enable dynamic assignment on a classification head if the config asks for it.

    ``informed``: the prototypes already belong to their classes, so the first match is off
    unless ``head.assignment.init`` asks for it.
    """
    a = cfg.assignment
    if a is None or a.kind == "static":
        return {"kind": "static"}
    assert a.every is not None and a.momentum is not None  # AssignmentConfig fills them
    head.enable_dynamic_assignment(a.momentum)
    method = assignment.resolve_method(head.num_classes)
    return {
        "kind": "dynamic",
        "every": a.every,
        "momentum": a.momentum,
        "method": method,
        "init": (not informed) if a.init is None else a.init,
    }


@torch.no_grad()
def evaluate(
    net: Network,
    data: SplitDataset,
    batch_size: int,
    device: str,
    reduction: Reduction,
    ctx: dist_.Context | None = None,
) -> EpochMetrics:
    """Mean loss per example, accuracy, macro F1 and mean absolute error over a dataset.

    Under a process group each rank scores every ``world``-th example and the counts
    (:class:`hpn.evaluation.metrics.MetricCounts`) are summed, so every rank gets the metrics
    of the whole dataset.
    """
    ctx = ctx or dist_.Context()
    net.eval()
    # every world-th example on each rank (every example when not distributed)
    batches = in_batches(range(ctx.rank, len(data), ctx.world), batch_size)
    counts = MetricCounts.zeros(getattr(net.head, "num_classes", None) or 0)
    for x, targets in iterate_batches(data, batches):
        x = x.to(device)
        targets = {name: v.to(device) for name, v in targets.items()}
        counts.update(float(net.loss(x, targets, "sum")), net.predict(x), targets)
    counts = counts.map(lambda t: dist_.all_reduce_sum(t, ctx))
    return counts.compute(net.task)
