"""The training loop: backbone + head, seeded, validated, checkpointed, resumable.

A run folder holds ``config.json`` (resolved config), ``versions.json``, ``metrics.csv`` (one
row per epoch), ``last.pt`` (every epoch) and ``best.pt`` (best validation epoch), all written
atomically, and ``results.json`` with the test metrics of the best-validation model. The test
split is evaluated once, at the end, on the model selected on validation.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import io
import json
import math
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from hpn import __version__, assignment
from hpn import prototypes as protos
from hpn.baselines import MSERegressor, MultiTaskBaseline, SoftmaxClassifier
from hpn.data.base import DataSplits, in_batches, iterate_batches
from hpn.evaluation.metrics import EpochMetrics, MetricCounts
from hpn.files import atomic_torch_save, atomic_write_json, atomic_write_text
from hpn.functional import unit
from hpn.heads import MultiTaskHead, PrototypeClassifier, PrototypeRegressor
from hpn.training import distributed as dist_
from hpn.training.checkpoint import RunLock
from hpn.training.config import HeadConfig, RunConfig, config_changes, from_dict, to_dict
from hpn.training.progress import ProgressBar, TensorBoardLog


def _silent(*_args) -> None:
    """The log of ranks other than 0."""


class Network(nn.Module):
    """A backbone that returns features and a head with ``loss`` and ``predict``."""

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
        feats = self.backbone(x)
        if self.task == "classification":
            return self.head.loss(feats, targets["label"], reduction)
        if self.task == "regression":
            return self.head.loss(feats, targets["value"], reduction)
        return self.head.loss(feats, targets["label"], targets["value"], reduction)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"label": (N,)}``, ``{"value": (N,)}`` or both, by the task."""
        out = self.head.predict(self.backbone(x))
        if self.task == "classification":
            return {"label": out}
        if self.task == "regression":
            return {"value": out}
        return {"label": out[0], "value": out[1]}


def train_values(dataset: Dataset) -> torch.Tensor:
    """All regression targets of a dataset (from its target table when it has one)."""
    targets = getattr(dataset, "targets", None)
    if isinstance(targets, dict) and "value" in targets:
        return torch.as_tensor(targets["value"]).double()
    return torch.tensor(
        [float(dataset[i][1]["value"]) for i in range(len(dataset))], dtype=torch.float64
    )


def _resolve_prototypes(
    cfg: HeadConfig, splits: DataSplits, dims: int | None, default: int | None = None
) -> protos.ResolvedPrototypes:
    """The head's prototypes from ``cfg.prototypes`` (:func:`hpn.prototypes.resolve`); the
    data prior reads the training split in batches of 4,096."""
    batches = iterate_batches(splits.train, in_batches(range(len(splits.train)), 4096))
    return protos.resolve(
        cfg.prototypes, splits.num_classes, dims, default_dims=default,
        train=((x, targets["label"]) for x, targets in batches), names=splits.class_names,
        seed=cfg.prototype_seed, spread_steps=cfg.spread_steps,
    )  # fmt: skip


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
        resolved = _resolve_prototypes(cfg, splits, cfg.dims, default=k)
        p, info["prototypes"] = resolved.prototypes, resolved.record()
        head = PrototypeClassifier(
            p, in_features, cfg.loss, cfg.scale, cfg.margin, output_norm=cfg.output_norm,
            neighbours=cfg.neighbours, random_negatives=cfg.random_negatives,
        )  # fmt: skip
        info["loss"] = {"kind": head.loss_kind, "scale": head.scale, "margin": head.margin}
        if head.neighbours is not None:
            info["loss"]["neighbours"] = head.neighbours.shape[1]
            info["loss"]["random_negatives"] = head.random_negatives
        info["assignment"] = _assignment(head, cfg, resolved.class_informed)
        return head, info
    dims = cfg.dims or 3
    if dims < 3:
        raise ValueError(f"a multi-task head needs dims >= 3 (one axis for regression), got {dims}")
    resolved = _resolve_prototypes(cfg, splits, dims - 1)
    p, info["prototypes"] = resolved.prototypes, resolved.record()
    head = MultiTaskHead(
        p, lower, upper, in_features, cfg.task_weight, cfg.loss, cfg.scale, cfg.margin,
        output_norm=cfg.output_norm, neighbours=cfg.neighbours,
        random_negatives=cfg.random_negatives,
    )  # fmt: skip
    info["assignment"] = _assignment(head.classifier, cfg, resolved.class_informed)
    return head, info


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


def _classifier(head: nn.Module) -> PrototypeClassifier | None:
    if isinstance(head, PrototypeClassifier):
        return head
    if isinstance(head, MultiTaskHead):
        return head.classifier
    return None


def _reassign(head: nn.Module, ctx: dist_.Context) -> int | None:
    """One dynamic-assignment update with the class means averaged over ranks."""
    cls = _classifier(head)
    if cls is None or cls.assignment is None:
        return None
    tracker = cls.assignment.tracker
    seen = tracker.seen.double()[:, None]
    total = dist_.all_reduce_sum(tracker.means.double().cpu() * seen.cpu(), ctx)
    count = dist_.all_reduce_sum(seen.cpu(), ctx)
    tracker.seen.copy_((count[:, 0] > 0).to(tracker.seen.device))
    means = (total / count.clamp_min(1)).to(tracker.means)
    return cls.reassign(means)


@torch.no_grad()
def _initial_assignment(
    net: Network, train: Dataset, batch_size: int, device: str, ctx: dist_.Context
) -> int | None:
    """Match classes to prototypes from the untrained network's class means; None: no head.

    One pass over this rank's share of the training split in eval mode (no dropout, batch
    norm untouched, no random numbers drawn), exact per-class means of the unit outputs,
    summed over ranks. The running means start afresh afterwards.
    """
    cls = _classifier(net.head)
    if cls is None or cls.assignment is None:
        return None
    was_training = net.training
    net.eval()
    k, d = cls.prototypes.shape
    sums = torch.zeros(k, d, dtype=torch.float64)
    counts = torch.zeros(k, 1, dtype=torch.float64)
    mine = range(ctx.rank, len(train), ctx.world)
    for x, targets in iterate_batches(train, in_batches(mine, batch_size)):
        feats = net.backbone(x.to(device))
        z = net.head.proj(feats)
        if cls is not net.head:  # multi-task: the class part of the shared output
            z = z[:, 1:]
        labels = targets["label"]
        sums.index_add_(0, labels, unit(z.float()).double().cpu())
        counts.index_add_(0, labels, torch.ones(len(labels), 1, dtype=torch.float64))
    net.train(was_training)
    sums, counts = dist_.all_reduce_sum(sums, ctx), dist_.all_reduce_sum(counts, ctx)
    return cls.initial_reassign(sums / counts.clamp_min(1), counts[:, 0] > 0)


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


def _versions() -> dict:
    return {
        "hpn": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - the global RNG is what resumes
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()  # dropout masks drawn on the GPU
    return state


def _set_rng_state(state: dict) -> None:
    # a checkpoint loaded with map_location="cuda" moves these byte tensors to the GPU too
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)


def _scheduler(opt: torch.optim.Optimizer, kind: str, epochs: int):
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    if kind == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, _step_milestones(epochs), 0.1)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _step_milestones(epochs: int) -> list[int]:
    """Epochs where the ``step`` schedule divides the learning rate by 10: 50 % and 75 %."""
    return [int(epochs * 0.5), int(epochs * 0.75)]


def _fit_schedule(sched, kind: str, epochs: int) -> None:
    """Stretch a loaded schedule to ``epochs`` (a resume may add epochs); a no-op when the
    length is unchanged, so an interrupted run resumes exactly."""
    if kind == "cosine":
        sched.T_max = max(epochs, 1)
    elif kind == "step":
        sched.milestones = collections.Counter(_step_milestones(epochs))


def _record_resume(out: Path, cfg: RunConfig, epoch: int) -> None:
    """Rewrite ``config.json`` with the resumed config and append what changed, and when, to
    ``resumes.json``."""
    saved = from_dict(
        RunConfig, {**json.loads((out / "config.json").read_text()), "out_dir": cfg.out_dir}
    )
    changes = {k: list(v) for k, v in config_changes(saved, cfg).items()}
    history_file = out / "resumes.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    history.append(
        {"at_epoch": epoch, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "changed": changes}
    )
    atomic_write_json(history_file, history)
    atomic_write_json(out / "config.json", to_dict(cfg))


def _select(task: str, metric: str) -> tuple[str, bool]:
    """(column, higher_is_better) of the validation metric that picks the best epoch."""
    if metric == "auto":
        metric = {"classification": "val_accuracy", "regression": "val_mae"}.get(task, "val_loss")
    if metric not in ("val_accuracy", "val_macro_f1", "val_mae", "val_loss"):
        raise ValueError(
            "select_metric must be auto, val_accuracy, val_macro_f1, val_mae or val_loss, "
            f"got {metric!r}"
        )
    if metric in ("val_accuracy", "val_macro_f1") and task == "regression":
        raise ValueError(f"select_metric {metric} needs class labels; this is a regression task")
    if metric == "val_mae" and task == "classification":
        raise ValueError(
            "select_metric val_mae needs regression values; this is a classification task"
        )
    return metric, metric in ("val_accuracy", "val_macro_f1")


def _write_csv(path: Path, rows: list[dict]) -> None:
    out = io.StringIO()
    fields = list(dict.fromkeys(key for row in rows for key in row))  # rows of older versions
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, out.getvalue())


def check_finite_inputs(splits: DataSplits) -> None:
    """Refuse NaN or inf in the in-memory float inputs of every split, naming the first."""
    for name in ("train", "val", "test"):
        inputs = getattr(getattr(splits, name), "inputs", None)
        if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point():
            continue
        bad = ~torch.isfinite(inputs.flatten(1) if inputs.ndim > 1 else inputs[:, None]).all(1)
        if bad.any():
            first = int(bad.nonzero()[0])
            raise ValueError(
                f"{name} split: {int(bad.sum())} inputs hold NaN or inf (first: example {first})"
            )


def train(
    cfg: RunConfig,
    splits: DataSplits,
    backbone: nn.Module,
    resume: bool = False,
    log=print,
) -> dict:
    """Train ``backbone`` + the configured head on ``splits``; returns the results dict.

    Args:
        cfg: the run configuration (``out_dir`` is the run folder).
        splits: the data.
        backbone: a module mapping inputs to (N, out_features) features.
        resume: continue from ``out_dir/last.pt``; without it an existing checkpoint is an
            error, so a finished or interrupted run is never overwritten by accident.
        log: where progress lines go (rank 0 only under a process group).

    Under ``torch.distributed`` (see :mod:`hpn.training.distributed`) every rank calls this
    with the same config; the network is wrapped in ``DistributedDataParallel``, each global
    batch is split across ranks, metrics are reduced and only rank 0 writes.
    """
    ctx = dist_.context()
    lock = RunLock(cfg.out_dir) if ctx.main else contextlib.nullcontext()
    with lock:
        return _train(cfg, splits, backbone, resume, log if ctx.main else _silent, ctx)


def _train(
    cfg: RunConfig,
    splits: DataSplits,
    backbone: nn.Module,
    resume: bool,
    log,
    ctx: dist_.Context,
) -> dict:
    out = Path(cfg.out_dir)
    last, best_path = out / "last.pt", out / "best.pt"
    if last.exists() and not resume:
        raise ValueError(
            f"{out} already holds a run (last.pt); pass --resume or choose another out_dir"
        )
    if resume and not last.exists():
        raise FileNotFoundError(f"nothing to resume: {last} does not exist")
    check_finite_inputs(splits)
    _seed_everything(cfg.seed)
    head, head_info = build_head(cfg.head, splits, backbone.out_features)
    net = Network(backbone, head, splits.task).to(cfg.device)
    oc = cfg.optim
    params = [p for p in net.parameters() if p.requires_grad]
    if oc.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=oc.lr, momentum=oc.momentum, weight_decay=oc.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=oc.lr, weight_decay=oc.weight_decay)
    sched = _scheduler(opt, oc.schedule, oc.epochs)
    column, higher = _select(splits.task, cfg.select_metric)
    rows: list[dict] = []
    start_epoch, best, best_epoch = 0, -math.inf if higher else math.inf, 0
    if resume:
        state = torch.load(last, weights_only=False, map_location=cfg.device)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start_epoch, best, rows = state["epoch"] + 1, state["best"], state["rows"]
        best_epoch = state.get("best_epoch", start_epoch)
        _fit_schedule(sched, oc.schedule, oc.epochs)
        if ctx.main:
            _record_resume(out, cfg, start_epoch)
        log(f"resumed {out} at epoch {start_epoch}")
    else:
        if head_info.get("assignment", {}).get("init"):
            moved = _initial_assignment(net, splits.train, oc.batch_size, cfg.device, ctx)
            if moved is not None:
                head_info["assignment"]["initial_reassigned"] = moved
                log(f"initial assignment from the untrained network: {moved} classes moved")
    if not resume and ctx.main:
        atomic_write_json(out / "config.json", to_dict(cfg))
        atomic_write_json(out / "versions.json", {**_versions(), "world_size": ctx.world})
        atomic_write_json(out / "head.json", head_info)
    # DDP broadcasts rank 0's weights at construction and averages gradients in backward
    model = nn.parallel.DistributedDataParallel(net) if ctx.distributed else net
    board = TensorBoardLog(out / "tensorboard") if cfg.tensorboard and ctx.main else None
    # bf16 autocast: matmuls and convolutions in bfloat16, the losses in float32
    # (hpn.functional upcasts); no gradient scaling is needed for bfloat16
    autocast = torch.autocast(
        torch.device(cfg.device).type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"
    )
    for epoch in range(start_epoch, oc.epochs):
        if oc.patience is not None and epoch - best_epoch >= oc.patience:
            break  # stopped early; a resumed run that had stopped stays stopped
        net.train()
        tic = time.perf_counter()
        order = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        permutation = torch.randperm(len(splits.train), generator=order)
        batches, global_sizes = dist_.shard_batches(permutation, oc.batch_size, ctx)
        loader = iterate_batches(splits.train, batches)
        total, n = 0.0, 0  # summed loss and examples of this rank
        bar = ProgressBar(
            len(batches), f"epoch {epoch + 1}/{oc.epochs}", enabled=None if ctx.main else False
        )
        for step, (x, targets) in enumerate(loader):
            x = x.to(cfg.device)
            targets = {k: v.to(cfg.device) for k, v in targets.items()}
            with autocast:
                if ctx.distributed:
                    # DDP averages gradients over ranks: scale this rank's summed loss so
                    # that the average is the gradient of the whole global batch's loss
                    summed = model(x, targets, "sum")
                    per = global_sizes[step] if cfg.head.reduction == "mean" else 1
                    loss, batch_sum = summed * (ctx.world / per), float(summed.detach())
                else:
                    loss = model.loss(x, targets, cfg.head.reduction)
                    per = len(x) if cfg.head.reduction == "mean" else 1
                    batch_sum = float(loss.detach()) * per
            if not math.isfinite(batch_sum):
                raise FloatingPointError(f"loss became {batch_sum} at epoch {epoch}, step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + batch_sum, n + len(x)
            bar.update(step + 1, len(x), total / max(n, 1))
        bar.close()
        sched.step()
        reassigned = None
        if cfg.head.assignment == "dynamic" and (epoch + 1) % cfg.head.assignment_every == 0:
            reassigned = _reassign(net.head, ctx)
        seconds = time.perf_counter() - tic
        totals = torch.tensor([total, n], dtype=torch.float64)
        total, n = dist_.all_reduce_sum(totals, ctx).tolist()
        dist_.broadcast_buffers(net, ctx)  # e.g. BatchNorm statistics: rank 0's everywhere
        val = evaluate(net, splits.val, oc.batch_size, cfg.device, cfg.head.reduction, ctx)
        row = {
            "epoch": epoch + 1,
            "train_loss": total / max(n, 1),
            "val_loss": val.loss,
            "val_accuracy": val.accuracy,
            "val_mae": val.mae,
            "val_macro_f1": val.macro_f1,
            "lr": opt.param_groups[0]["lr"],
            "seconds": round(seconds, 3),
        }
        if cfg.head.assignment == "dynamic":
            row["reassigned"] = reassigned
        rows.append(row)
        score = row[column]
        improved = score > best if higher else score < best
        if improved:
            best, best_epoch = score, epoch + 1
            if ctx.main:
                atomic_torch_save(best_path, {"model": net.state_dict(), "epoch": epoch})
        if ctx.main:
            _write_csv(out / "metrics.csv", rows)
            atomic_torch_save(
                last,
                {
                    "model": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "rng": _rng_state(),
                    "epoch": epoch,
                    "best": best,
                    "best_epoch": best_epoch,
                    "rows": rows,
                    "world_size": ctx.world,
                },
            )
        dist_.barrier(ctx)  # no rank runs ahead of the checkpoint it may resume from
        acc = "" if val.accuracy is None else f" val acc {val.accuracy:.4f}"
        mae = "" if val.mae is None else f" val mae {val.mae:.4f}"
        if board is not None:
            board.epoch(row)
        moved = "" if reassigned is None else f" reassigned {reassigned}"
        log(
            f"epoch {epoch + 1}/{oc.epochs} loss {row['train_loss']:.4f}{acc}{mae}{moved} "
            f"({seconds:.1f} s)"
        )
    if board is not None:
        board.close()
    best_state = torch.load(best_path, weights_only=False, map_location=cfg.device)
    net.load_state_dict(best_state["model"])
    test = evaluate(net, splits.test, oc.batch_size, cfg.device, cfg.head.reduction, ctx)
    results = {
        "test_loss": test.loss,
        "test_accuracy": test.accuracy,
        "test_mae": test.mae,
        "test_macro_f1": test.macro_f1,
        "best_epoch": int(best_state["epoch"]) + 1,
        "selected_on": column,
        "epochs": oc.epochs,
        "epochs_run": len(rows),
        "stopped_early": len(rows) < oc.epochs,
        "train_seconds": round(sum(r["seconds"] for r in rows), 3),
        "output_size": _output_size(net.head),
        "parameters": sum(p.numel() for p in net.parameters()),
        "head_parameters": sum(p.numel() for p in net.head.parameters()),
        "seed": cfg.seed,
        "data": splits.info,
        "world_size": ctx.world,
    }
    if "train_counts" in splits.info and test.recall is not None:
        from hpn.data.longtail import group_accuracy

        counts = torch.as_tensor(splits.info["train_counts"])
        results["test_group_accuracy"] = group_accuracy(test.recall, counts)
    if ctx.main:
        atomic_write_json(out / "results.json", results)
        _plots(net, splits.test, out, oc.batch_size, cfg.device, log)
    dist_.barrier(ctx)
    return results


@torch.no_grad()
def _sphere_outputs(net: Network, data: Dataset, batch_size: int, device: str):
    """(outputs, labels, prototypes) in 3-d when the head's output space is S^2, else None."""
    head = net.head
    if isinstance(head, PrototypeClassifier) and head.dims == 3:
        project, protos3 = head.proj, head.prototypes
    elif isinstance(head, MultiTaskHead) and head.dims == 3:
        p = head.classifier.prototypes
        project, protos3 = head.proj, torch.cat([torch.zeros(len(p), 1, device=p.device), p], dim=1)
    else:
        return None
    net.eval()
    outs, labels = [], []
    for x, targets in iterate_batches(data, in_batches(range(len(data)), batch_size)):
        outs.append(project(net.backbone(x.to(device))).cpu())
        labels.append(targets["label"])
    outs, protos3 = torch.cat(outs), protos3.cpu()
    if isinstance(head, MultiTaskHead):  # draw the regression axis (axis 0) as z, like the paper
        outs, protos3 = outs[:, [1, 2, 0]], protos3[:, [1, 2, 0]]
    return outs.numpy(), torch.cat(labels).numpy(), protos3.numpy()


def _plots(net: Network, test: Dataset, out: Path, batch_size: int, device: str, log) -> None:
    try:
        from hpn.evaluation import plots

        plots.learning_curves(out / "metrics.csv", out / "learning_curves.png")
        sphere = _sphere_outputs(net, test, batch_size, device)
        if sphere is not None:
            plots.sphere_plot(*sphere, out / "sphere.png", title="test outputs and prototypes")
    except ImportError as err:
        log(f"plots skipped: {err}")


def _output_size(head: nn.Module) -> int:
    """Trainable outputs of the head's last layer (d for prototypes, K for softmax)."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return sum(m.out_features for m in linears)
