"""The network ``hpn train`` trains, its head as the config asks, and its evaluation pass.

The run itself (seeding, resume, the epochs, the run folder) is :func:`hpn.training.run.train`;
the epoch loop is :mod:`hpn.training.loop`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from hpn import assignment
from hpn import prototypes as protos
from hpn.baselines import MSERegressor, MultiTaskBaseline, SoftmaxClassifier
from hpn.data.base import DataSplits, in_batches, iterate_batches
from hpn.heads import MultiTaskHead, PrototypeClassifier, PrototypeRegressor
from hpn.training import distributed as dist_
from hpn.training.config import HeadConfig


class Network(nn.Module):
    """A backbone that returns features and a head with ``loss`` and ``predict``.

    Every head (:mod:`hpn.heads`, :mod:`hpn.baselines`) takes the batch's target dict in
    ``loss`` and names the parts it predicts in ``target_keys``, so nothing here depends on
    the task; ``task`` is kept for the metrics.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, task: str):
        super().__init__()
        self.backbone, self.head, self.task = backbone, head, task

    def forward(
        self,
        x: torch.Tensor,
        targets: dict[str, torch.Tensor] | None = None,
        reduction: str = "mean",
    ):
        """Head scores, or with ``targets`` the loss (so that DDP's forward computes it)."""
        if targets is not None:
            return self.loss(x, targets, reduction)
        return self.head(self.backbone(x))

    def loss(
        self, x: torch.Tensor, targets: dict[str, torch.Tensor], reduction: str
    ) -> torch.Tensor:
        """The head's loss of a batch: ``targets`` holds ``label`` and/or ``value`` (N,)."""
        return self.head.loss(self.backbone(x), targets, reduction)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"label": (N,)}``, ``{"value": (N,)}`` or both: the head's ``target_keys``."""
        out = self.head.predict(self.backbone(x))
        keys = self.head.target_keys
        return dict(zip(keys, out if len(keys) > 1 else (out,), strict=True))


def train_values(dataset: Dataset) -> torch.Tensor:
    """All regression targets of a dataset (from its target table when it has one)."""
    targets = getattr(dataset, "targets", None)
    if isinstance(targets, dict) and "value" in targets:
        return torch.as_tensor(targets["value"]).double()
    return torch.tensor(
        [float(dataset[i][1]["value"]) for i in range(len(dataset))], dtype=torch.float64
    )


def make_prototypes(
    cfg: HeadConfig, num_classes: int, dims: int, class_names=None, train: Dataset | None = None
) -> tuple[torch.Tensor, dict]:
    """Prototypes for a head: a generator method, ``onehot`` (d = K), ``data`` (laid out
    like the training classes' mean inputs, :mod:`hpn.prototypes.data_prior`),
    ``embedding:glove`` or ``embedding:minilm`` (class-name embeddings used directly,
    reduced to d by PCA), or a ``.npy`` file."""
    if cfg.prototypes == "onehot":
        return torch.eye(num_classes), {"method": "onehot"}
    if cfg.prototypes == "data":
        if train is None:
            raise ValueError("prototypes 'data' need the training split")
        from hpn.prototypes import data_prior

        batches = iterate_batches(train, in_batches(range(len(train)), 4096))
        means, counts = data_prior.class_means(
            ((x, targets["label"]) for x, targets in batches), num_classes
        )
        p = data_prior.data_prior_prototypes(
            means, dims, seed=cfg.prototype_seed, steps=cfg.spread_steps, seen=counts > 0
        )
        info = {"spread_steps": cfg.spread_steps, "spread_lr": data_prior.SPREAD_LR}
        return p, {"method": "data", **info, **protos.report(p).to_dict()}
    if cfg.prototypes.startswith("embedding:"):
        model = cfg.prototypes.partition(":")[2]
        if model not in ("glove", "minilm"):
            raise ValueError(
                f"prototypes {cfg.prototypes!r}: use embedding:glove or embedding:minilm"
            )
        if not class_names:
            raise ValueError(f"prototypes {cfg.prototypes!r} need class names; this data has none")
        from hpn.prototypes.semantic import embedding_prototypes

        p = embedding_prototypes(class_names, dims, model)
        return p, {"method": cfg.prototypes, **protos.report(p).to_dict()}
    if cfg.prototypes.endswith(".npy"):
        p, meta = protos.load(cfg.prototypes)
        if p.shape != (num_classes, dims):
            raise ValueError(
                f"prototype file {cfg.prototypes} holds {p.shape[0]} x {p.shape[1]} prototypes; "
                f"the model needs {num_classes} x {dims}"
            )
        return p, {"method": meta.get("method", "file"), "file": cfg.prototypes}
    built = protos.build(
        num_classes, dims, method=cfg.prototypes, seed=cfg.prototype_seed, class_names=class_names
    )
    return built.prototypes, {
        "method": built.method,
        "seed": built.seed,
        **protos.report(built.prototypes).to_dict(),
    }


def build_head(cfg: HeadConfig, splits: DataSplits, in_features: int) -> tuple[nn.Module, dict]:
    """The head the config asks for, with its prototypes and regression bounds."""
    task, k = splits.task, splits.num_classes
    info: dict = {"kind": cfg.kind}
    if task != "classification":
        lower, upper = (float(v) for v in torch.aminmax(train_values(splits.train)))
        if not upper > lower:
            raise ValueError(f"all training regression targets equal {lower}")
        info["bounds"] = [lower, upper]
    if cfg.kind == "softmax" and task == "classification":
        return SoftmaxClassifier(in_features, k), info
    if cfg.kind in ("softmax", "mse") and task == "multitask":
        return MultiTaskBaseline(in_features, k, lower, upper, cfg.task_weight), info
    if cfg.kind == "mse" and task == "regression":
        return MSERegressor(in_features, lower, upper), info
    if cfg.kind != "prototype":
        raise ValueError(f"head kind {cfg.kind!r} does not fit a {task} task")
    info["output_norm"] = cfg.output_norm
    if task == "regression":
        head = PrototypeRegressor(
            cfg.dims or 2, lower, upper, in_features=in_features, output_norm=cfg.output_norm
        )
        return head, info
    if task == "classification":
        dims = k if cfg.prototypes == "onehot" else (cfg.dims or k)
        p, info["prototypes"] = make_prototypes(cfg, k, dims, splits.class_names, splits.train)
        head = PrototypeClassifier(
            p, in_features, cfg.loss, cfg.scale, cfg.margin, output_norm=cfg.output_norm,
            neighbours=cfg.neighbours, random_negatives=cfg.random_negatives,
        )  # fmt: skip
        info["loss"] = {"kind": head.loss_kind, "scale": head.scale, "margin": head.margin}
        if head.neighbours is not None:
            info["loss"]["neighbours"] = head.neighbours.shape[1]
            info["loss"]["random_negatives"] = head.random_negatives
        informed = _class_informed(cfg, info["prototypes"]["method"])
        info["assignment"] = _assignment(head, cfg, informed)
        return head, info
    dims = cfg.dims or 3
    if dims < 3:
        raise ValueError(f"a multi-task head needs dims >= 3 (one axis for regression), got {dims}")
    p, info["prototypes"] = make_prototypes(cfg, k, dims - 1, splits.class_names, splits.train)
    head = MultiTaskHead(
        p, lower, upper, in_features, cfg.task_weight, cfg.loss, cfg.scale, cfg.margin,
        output_norm=cfg.output_norm, neighbours=cfg.neighbours,
        random_negatives=cfg.random_negatives,
    )  # fmt: skip
    informed = _class_informed(cfg, info["prototypes"]["method"])
    info["assignment"] = _assignment(head.classifier, cfg, informed)
    return head, info


def _class_informed(cfg: HeadConfig, method: str) -> bool:
    """The prototypes already belong to their classes: a class-informed method
    (:data:`hpn.assignment.CLASS_INFORMED`), class-name embeddings or a file."""
    p = cfg.prototypes
    return method in assignment.CLASS_INFORMED or p.startswith("embedding:") or p.endswith(".npy")


def _assignment(head: PrototypeClassifier, cfg: HeadConfig, informed: bool) -> dict:
    """Enable dynamic assignment on a classification head if the config asks for it.

    ``informed``: the prototypes already belong to their classes, so the first match is off
    unless ``assignment_init`` asks for it.
    """
    if cfg.assignment == "static":
        return {"kind": "static"}
    head.enable_dynamic_assignment(cfg.assignment_momentum)
    method = assignment.resolve_method(head.num_classes)
    return {
        "kind": "dynamic",
        "every": cfg.assignment_every,
        "momentum": cfg.assignment_momentum,
        "method": method,
        "init": (not informed) if cfg.assignment_init is None else cfg.assignment_init,
    }


@dataclass
class EpochMetrics:
    """One evaluation pass: mean loss, and accuracy, MAE, macro F1 and per-class recall where
    the task has them (None otherwise)."""

    loss: float
    accuracy: float | None = None
    mae: float | None = None
    macro_f1: float | None = None
    recall: torch.Tensor | None = None  # (K,) per-class accuracy


def macro_f1(confusion: torch.Tensor) -> float:
    """Unweighted mean over classes of F1 = 2 TP / (2 TP + FP + FN), from a K x K confusion
    matrix (rows true, columns predicted); see :func:`macro_f1_from_counts`."""
    confusion = confusion.double()
    return macro_f1_from_counts(confusion.diagonal(), confusion.sum(1), confusion.sum(0))


def class_counts(truth: torch.Tensor, guess: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(3, K) int64 per-class counts of correct predictions, true examples and predictions,
    the inputs of :func:`macro_f1_from_counts`; sums over batches add up."""
    return torch.stack([
        torch.bincount(truth[truth == guess], minlength=num_classes),
        torch.bincount(truth, minlength=num_classes),
        torch.bincount(guess, minlength=num_classes),
    ])  # fmt: skip


def macro_f1_from_counts(
    true_positive: torch.Tensor, support: torch.Tensor, predicted: torch.Tensor
) -> float:
    """Macro F1 from per-class counts: correct predictions, true examples, predictions.

    As scikit-learn's ``f1_score(average="macro")`` does by default, the mean runs over the
    classes that occur in the labels or the predictions; a class with neither is left out.
    Three length-K vectors instead of a K x K matrix, so 10,000+ classes cost nothing.
    """
    tp, support, predicted = true_positive.double(), support.double(), predicted.double()
    seen = (support + predicted) > 0
    if not seen.any():
        return 0.0
    f1 = 2 * tp[seen] / (support[seen] + predicted[seen])
    return float(f1.mean())


@torch.no_grad()
def evaluate(
    net: Network,
    data: Dataset,
    batch_size: int,
    device: str,
    reduction: str,
    ctx: dist_.Context | None = None,
) -> EpochMetrics:
    """Mean loss per example, accuracy, macro F1 and mean absolute error over a dataset.

    Under a process group each rank scores every ``world``-th example and the sums are
    reduced, so every rank gets the metrics of the whole dataset.
    """
    ctx = ctx or dist_.Context()
    net.eval()
    # every world-th example on each rank (every example when not distributed)
    batches = in_batches(range(ctx.rank, len(data), ctx.world), batch_size)
    k = getattr(net.head, "num_classes", None) or 0
    sums = torch.zeros(4, dtype=torch.float64)  # loss, n, correct, absolute error
    counts = torch.zeros(3, k, dtype=torch.long)  # per class: correct, true, predicted
    for x, targets in iterate_batches(data, batches):
        x = x.to(device)
        targets = {name: v.to(device) for name, v in targets.items()}
        sums[0] += float(net.loss(x, targets, "sum"))
        sums[1] += len(x)
        pred = net.predict(x)
        if "label" in pred:
            sums[2] += int((pred["label"] == targets["label"]).sum())
            truth, guess = targets["label"].cpu(), pred["label"].cpu()
            counts += class_counts(truth, guess, k)
        if "value" in pred:
            sums[3] += float((pred["value"] - targets["value"].double()).abs().sum())
    sums = dist_.all_reduce_sum(sums, ctx)
    counts = dist_.all_reduce_sum(counts, ctx)
    total, n, correct, abs_err = sums.tolist()
    n = max(n, 1)
    task = net.task
    return EpochMetrics(
        loss=total / n,
        accuracy=correct / n if task != "regression" else None,
        mae=abs_err / n if task != "classification" else None,
        macro_f1=macro_f1_from_counts(*counts) if task != "regression" else None,
        recall=(counts[0] / counts[1].clamp_min(1)).double() if task != "regression" else None,
    )
