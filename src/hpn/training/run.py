"""From a config file to a finished run: config -> data -> model -> loop -> run folder.

The layer that knows about YAML, data sources and backbones. :func:`run` loads what a config
names and calls :func:`train`, which seeds everything, builds the head and optimiser, resumes
or starts the run folder, runs the epochs through :func:`hpn.training.loop.train_epoch`,
keeps the best validation epoch (:class:`hpn.training.loop.Watch`) and evaluates it on the test
split once, at the end.

A run folder holds ``config.json`` (resolved config), ``versions.json``, ``metrics.csv`` (one
row per epoch), ``last.pt`` (every epoch) and ``best.pt`` (best validation epoch), all written
atomically, and ``results.json`` with the test metrics of the best-validation model
(:mod:`hpn.training.recorder`, :mod:`hpn.training.checkpoint`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import cast

import torch
import yaml
from torch import nn

from hpn.assignment import dynamic_classifier
from hpn.data.base import DataSplits, in_batches, iterate_batches
from hpn.data.longtail import long_tailed
from hpn.data.registry import load_data
from hpn.evaluation.metrics import group_accuracy
from hpn.models import build_backbone
from hpn.training import distributed as dist_
from hpn.training.checkpoint import (
    RunLock,
    RunState,
    load_best,
    load_last,
    save_best,
    save_last,
    seed_everything,
)
from hpn.training.config import RunConfig, apply_overrides, config_changes, from_dict
from hpn.training.feature_prior import (
    WARMUP_FOLDER,
    check_warmup_folder,
    feature_run,
    needs_warmup,
    start_from_run,
    warm_prior,
    warmup_config,
)
from hpn.training.loop import (
    Batch,
    Watch,
    initial_assignment,
    reassign,
    train_epoch,
)
from hpn.training.order import epoch_order
from hpn.training.progress import ProgressBar
from hpn.training.recorder import Recorder
from hpn.training.schedule import fit_schedule, make_optimizer, make_scheduler
from hpn.training.trainer import Network, build_head, evaluate

#: Keys that may change when a run resumes; any other difference from the saved config is an
#: error. More epochs stretch the learning-rate schedule to the new length from where it is.
RESUMABLE_KEYS = ("optim.epochs", "optim.patience", "tensorboard", "device", "out_dir")


def packaged_configs() -> list[str]:
    """Names of the run configs shipped with the package (``hpn train --config NAME``)."""
    folder = resources.files("hpn.configs")
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def config_description(name: str, width: int = 100) -> str:
    """The first sentence of a packaged config's leading comment, cut to ``width`` characters.

    >>> config_description("demo")
    '`hpn demo` runs this config twice, with a prototype head and a softmax head.'
    """
    lines = config_path(name).read_text().splitlines()
    words = " ".join(
        line.lstrip("# ").strip()
        for line in lines[
            : next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
        ]
    )
    end = words.find(". ")
    sentence = words if end < 0 else words[: end + 1]
    return sentence if len(sentence) <= width else sentence[: width - 3].rstrip() + "..."


def config_path(name: str) -> Path:
    """A config file: ``name`` as a path if it exists, else the packaged config of that name.

    Raises:
        FileNotFoundError: neither exists; the message lists the packaged names.
    """
    file = Path(name)
    if file.is_file():
        return file
    packaged = resources.files("hpn.configs") / f"{file.name.removesuffix('.yaml')}.yaml"
    if file.parent == Path(".") and packaged.is_file():
        return Path(str(packaged))
    raise FileNotFoundError(
        f"config file not found: {name} (packaged configs: {', '.join(packaged_configs())})"
    )


def _read_yaml(name: str) -> dict:
    file = config_path(name)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8-sig")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{name} is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{name}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def load_config(path: str | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML run config (a file, or a packaged config by name, or the defaults when
    None) and apply ``key.sub=value`` overrides."""
    data = _read_yaml(path) if path is not None else {}
    return from_dict(RunConfig, apply_overrides(data, list(overrides)))


def resume_config(
    out_dir: str | Path, path: str | None = None, overrides: Sequence[str] = ()
) -> tuple[RunConfig, dict[str, tuple]]:
    """The config of the run in ``out_dir``, with the changes a resume may make.

    The saved ``config.json`` is the base. Overrides (and, when ``path`` is given, that file's
    values) may change only :data:`RESUMABLE_KEYS`; ``out_dir`` always becomes the folder
    being resumed.

    Returns:
        ``(config, changes)`` with ``changes`` as in :func:`config_changes`.

    Raises:
        FileNotFoundError: ``out_dir`` holds no saved config.
        ValueError: a key outside :data:`RESUMABLE_KEYS` would change (named in the message).
    """
    saved_file = Path(out_dir) / "config.json"
    if not saved_file.is_file():
        raise FileNotFoundError(f"nothing to resume: {saved_file} does not exist")
    saved_dict = json.loads(saved_file.read_text())
    saved = from_dict(RunConfig, {**saved_dict, "out_dir": str(out_dir)})
    # a fresh copy: overrides edit nested dicts in place, and `saved` shares saved_dict's
    base = _read_yaml(path) if path is not None else json.loads(saved_file.read_text())
    wanted = from_dict(RunConfig, apply_overrides({**base, "out_dir": str(out_dir)}, overrides))
    changes = config_changes(saved, wanted)
    for key, (old, new) in changes.items():
        if key not in RESUMABLE_KEYS:
            raise ValueError(
                f"cannot resume {out_dir} with {key}={new!r}: the run was started with "
                f"{key}={old!r} (on --resume only {', '.join(RESUMABLE_KEYS[:4])} may change)"
            )
    return wanted, changes


def load_splits(cfg: RunConfig) -> DataSplits:
    """The data the config names; every source takes ``seed``, which defaults to the run's.

    ``data.task`` narrows a multi-task source to classification or regression;
    ``data.imbalance`` makes its training split long-tailed.
    """
    splits = load_data(cfg.data.name, **{"seed": cfg.seed, **cfg.data.options})
    splits = splits.for_task(cfg.data.task)
    if cfg.data.imbalance is not None:
        splits = long_tailed(splits, cfg.data.imbalance, seed=cfg.seed)
    return splits


def check_device(device: str) -> None:
    """Refuse, in one line, a device this machine does not have."""
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ValueError(
            f"config device: {device!r} is not a torch device (cpu, cuda, cuda:0, ...)"
        ) from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"config device: {device!r} asked for, but CUDA is not available "
            f"(torch {torch.__version__}); use device=cpu"
        )
    if kind == "cuda" and torch.device(device).index is not None:
        if torch.device(device).index >= torch.cuda.device_count():
            raise ValueError(
                f"config device: {device!r} but this machine has {torch.cuda.device_count()} GPUs"
            )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"config device: {device!r} asked for, but MPS is not available")


def run(cfg: RunConfig, resume: bool = False, log: Callable[[str], None] = print) -> dict:
    """Load the data and backbone the config names and train.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) this process joins the group
    first (gloo on CPU, nccl on CUDA, one GPU per local rank) and leaves it at the end.
    """
    check_device(cfg.device)
    ctx, device = dist_.init_from_env(cfg.device)
    if device != cfg.device:
        cfg = dataclasses.replace(cfg, device=device)
    try:
        return _run(cfg, resume, log)
    finally:
        if ctx.distributed:
            dist_.shutdown()


def _run(cfg: RunConfig, resume: bool, log: Callable[[str], None]) -> dict:
    splits = load_splits(cfg)
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(cfg.model.backbone, splits.input_shape, **cfg.model.options)
    return train(cfg, splits, backbone, resume=resume, log=log)


def _silent(*_args: object) -> None:
    """The log of ranks other than 0."""


def train(
    cfg: RunConfig,
    splits: DataSplits,
    backbone: nn.Module,
    resume: bool = False,
    log: Callable[[str], None] = print,
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
    log: Callable[[str], None],
    ctx: dist_.Context,
) -> dict:
    """:func:`train` inside the run folder's lock (rank 0) with ``log`` silenced elsewhere."""
    out = Path(cfg.out_dir)
    _check_folder(out, resume)
    check_finite_inputs(splits)
    head_cfg = cfg.head
    if needs_warmup(cfg, splits.task):
        head_cfg = warm_prior(cfg, _warm_up(cfg, splits, backbone, log)).head
    seed_everything(cfg.seed)
    # every backbone of hpn.models, and any other that `train` takes, says its feature width
    head, head_info = build_head(head_cfg, splits, cast(int, backbone.out_features))
    if head_info.get("warm_start") and not resume:  # a resumed run restores its own weights
        start_from_run(backbone, cast(Path, feature_run(head_cfg.prototypes)))
    net = Network(backbone, head, splits.task).to(cfg.device)
    opt = make_optimizer((p for p in net.parameters() if p.requires_grad), cfg.optim)
    sched = make_scheduler(opt, cfg.optim.schedule, cfg.optim.epochs)
    column, higher = _select(splits.task, cfg.select_metric)
    ties = _ties(cfg, column)
    recorder = Recorder(out, active=ctx.main, tensorboard=cfg.tensorboard)
    if resume:
        state = load_last(out, net, opt, sched, cfg.device)
        fit_schedule(sched, cfg.optim.schedule, cfg.optim.epochs)
        start, rows = state.epoch + 1, state.rows
        recorder.resumed(cfg, start)
        log(f"resumed {out} at the start of epoch {start + 1} of {cfg.optim.epochs}")
    else:
        _first_assignment(net, splits, cfg, head_info, ctx, log)
        recorder.start(cfg, head_info, ctx.world)
        start, rows = 0, []
    watch = _replayed_watch(rows, column, higher, cfg.optim.patience, ties)
    # DDP broadcasts rank 0's weights at construction and averages gradients in backward
    model = nn.parallel.DistributedDataParallel(net) if ctx.distributed else net
    for epoch in range(start, cfg.optim.epochs):
        if watch.exhausted:
            break  # stopped early; a resumed run that had stopped stays stopped
        row = _epoch(cfg, splits, net, model, opt, sched, epoch, ctx)
        rows.append(row)
        if watch.update(row[column], epoch + 1, _tie(rows, epoch + 1, ties)) and ctx.main:
            save_best(out, net, epoch)
        recorder.metrics(rows)
        if ctx.main:
            state = RunState(epoch, watch.best, watch.best_epoch, rows)
            save_last(out, net, opt, sched, state, ctx.world)
        dist_.barrier(ctx)  # no rank runs ahead of the checkpoint it may resume from
        recorder.board_epoch(row)
        log(_epoch_line(row, cfg.optim.epochs))
    recorder.close()
    built = _prototype_cost(head_info)
    return _finish(cfg, splits, net, rows, column, recorder, ctx, log, built)


def _warm_up(
    cfg: RunConfig, splits: DataSplits, backbone: nn.Module, log: Callable[[str], None]
) -> Path:
    """Train (or resume, or read back) the warm-up run of ``head.prototypes: features``
    (:func:`hpn.training.feature_prior.warmup_config`) on a copy of the untrained
    ``backbone``; returns its folder."""
    warm = warmup_config(cfg)
    out = Path(warm.out_dir)
    check_warmup_folder(warm)
    if (out / "results.json").is_file():
        log(f"warm-up: read back {out}")
        return out
    log(f"warm-up: {warm.optim.epochs} epoch(s) in {out}; its features lay the prototypes out")
    train(warm, splits, copy.deepcopy(backbone), resume=(out / "last.pt").exists(),
          log=lambda line: log(f"warm-up: {line}"))  # fmt: skip
    return out


def _check_folder(out: Path, resume: bool) -> None:
    """A new run needs a folder without a run; a resume needs one."""
    last = out / "last.pt"
    if last.exists() and not resume:
        raise ValueError(
            f"{out} already holds a run (last.pt); pass --resume or choose another out_dir"
        )
    if resume and not last.exists():
        raise FileNotFoundError(f"nothing to resume: {last} does not exist; {_start_again(out)}")


def _start_again(out: Path) -> str:
    """What to do when a folder has no checkpoint to resume from."""
    if (out / "config.json").is_file():
        return (
            "the run stopped before its first epoch ended, so run the same command again "
            "without --resume"
        )
    if (out / WARMUP_FOLDER).is_dir():
        return (
            f"the run stopped in its warm-up ({out / WARMUP_FOLDER}), so run the same command again "
            "without --resume: the warm-up resumes"
        )
    return f"no run was started in {out}: train one there first (hpn train --out {out})"


def _first_assignment(
    net: Network,
    splits: DataSplits,
    cfg: RunConfig,
    head_info: dict,
    ctx: dist_.Context,
    log: Callable[[str], None],
) -> None:
    """Match classes to prototypes from the untrained network when the head asks for it.

    One pass over this rank's share of the training split in eval mode (no dropout, batch
    norm untouched, no random numbers drawn); ``head_info`` records how many classes moved.
    """
    head = net.head
    cls = dynamic_classifier(head)
    if cls is None or not head_info.get("assignment", {}).get("init"):
        return
    was_training = net.training
    net.eval()
    mine = range(ctx.rank, len(splits.train), ctx.world)
    batches = iterate_batches(splits.train, in_batches(mine, cfg.optim.batch_size))

    def outputs() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, targets in batches:
            z = cast(nn.Module, head.proj)(net.backbone(x.to(cfg.device)))
            # multi-task: the class part of the shared output
            yield (z if cls is head else z[:, 1:]), targets["label"]

    moved = initial_assignment(cls, outputs(), ctx)
    net.train(was_training)
    head_info["assignment"]["initial_reassigned"] = moved
    log(f"initial assignment from the untrained network: {moved} classes moved")


def _epoch(
    cfg: RunConfig,
    splits: DataSplits,
    net: Network,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    epoch: int,
    ctx: dist_.Context,
) -> dict:
    """Train one epoch (``model`` is ``net``, or ``net`` wrapped by DDP), step the schedule,
    re-assign if due, validate; returns the epoch's metrics row."""
    oc = cfg.optim
    net.train()
    tic = time.perf_counter()
    # the same order on every rank and after a resume: it depends on (seed, epoch) only
    permutation = epoch_order(len(splits.train), cfg.seed, epoch, oc.steps_per_epoch, oc.batch_size)
    parts, global_sizes = dist_.shard_batches(permutation, oc.batch_size, ctx)
    bar = ProgressBar(
        len(parts), f"epoch {epoch + 1}/{oc.epochs}", enabled=None if ctx.main else False
    )
    loss = train_epoch(
        (Batch(x, targets) for x, targets in iterate_batches(splits.train, parts)),
        model if ctx.distributed else net.loss,
        opt,
        reduction=cfg.head.reduction,
        device=cfg.device,
        bf16=cfg.precision == "bf16",
        ctx=ctx,
        global_sizes=global_sizes,
        on_step=bar.update,
        epoch=epoch,
    )
    bar.close()
    sched.step()
    reassigned = None
    every = cfg.head.assignment.every if cfg.head.assignment is not None else None
    if cfg.head.dynamic and every and (epoch + 1) % every == 0:
        reassigned = reassign(net.head, ctx)
    seconds = time.perf_counter() - tic
    dist_.broadcast_buffers(net, ctx)  # e.g. BatchNorm statistics: rank 0's everywhere
    val = evaluate(net, splits.val, oc.batch_size, cfg.device, cfg.head.reduction, ctx)
    row = {
        "epoch": epoch + 1,
        "train_loss": loss.mean,
        "val_loss": val.loss,
        "val_accuracy": val.accuracy,
        "val_mae": val.mae,
        "val_macro_f1": val.macro_f1,
        "lr": opt.param_groups[0]["lr"],
        "seconds": round(seconds, 3),
        "steps": len(parts),
    }
    if cfg.head.dynamic:
        row["reassigned"] = reassigned
    return row


def _epoch_line(row: dict, epochs: int) -> str:
    """The log line of an epoch row."""
    acc = "" if row["val_accuracy"] is None else f" val acc {row['val_accuracy']:.4f}"
    mae = "" if row["val_mae"] is None else f" val mae {row['val_mae']:.4f}"
    moved = "" if row.get("reassigned") is None else f" reassigned {row['reassigned']}"
    return (
        f"epoch {row['epoch']}/{epochs} loss {row['train_loss']:.4f}{acc}{mae}{moved} "
        f"({row['seconds']:.1f} s)"
    )


def _finish(
    cfg: RunConfig,
    splits: DataSplits,
    net: Network,
    rows: list[dict],
    column: str,
    recorder: Recorder,
    ctx: dist_.Context,
    log: Callable[[str], None],
    built: dict,
) -> dict:
    """Evaluate the best-validation model on the test split once; record the results
    (``built``: what building the prototypes cost, :func:`_prototype_cost`)."""
    oc, out = cfg.optim, Path(cfg.out_dir)
    best_epoch = load_best(out, net, cfg.device)
    test = evaluate(net, splits.test, oc.batch_size, cfg.device, cfg.head.reduction, ctx)
    results = {
        "test_loss": test.loss,
        "test_accuracy": test.accuracy,
        "test_mae": test.mae,
        "test_macro_f1": test.macro_f1,
        "best_epoch": best_epoch + 1,
        "selected_on": f"{column}, then val_loss" if _ties(cfg, column) else column,
        "best_val_accuracy": rows[best_epoch]["val_accuracy"] if best_epoch < len(rows) else None,
        "epochs": oc.epochs,
        "epochs_run": len(rows),
        "stopped_early": len(rows) < oc.epochs,
        "train_seconds": round(sum(r["seconds"] for r in rows), 3),
        "train_steps": sum(r.get("steps") or 0 for r in rows),
        **_warmup_cost(cfg, splits.task),
        **built,
        "output_size": _output_size(net.head),
        "parameters": sum(p.numel() for p in net.parameters()),
        "head_parameters": sum(p.numel() for p in net.head.parameters()),
        "seed": cfg.seed,
        "data": splits.info,
        "world_size": ctx.world,
    }
    if "train_counts" in splits.info and test.recall is not None:
        counts = torch.as_tensor(splits.info["train_counts"])
        results["test_group_accuracy"] = group_accuracy(test.recall, counts)
    recorder.results(results)
    recorder.figures(net, splits.test, oc.batch_size, cfg.device, log)
    dist_.barrier(ctx)
    return results


def _prototype_cost(head_info: dict) -> dict:
    """``{"prototype_seconds"}``: the wall seconds the head's prototypes took to build before
    the first epoch (none for a head without prototypes). A resumed run builds them again, so
    this is what the process that finishes the run measured."""
    seconds = head_info.get("prototypes", {}).get("seconds")
    return {} if seconds is None else {"prototype_seconds": seconds}


def _warmup_cost(cfg: RunConfig, task: str) -> dict:
    """``{"warmup_seconds", "warmup_steps"}`` of the run's warm-up (none without one): what
    ``head.prototypes: features`` spent before the run's own epochs. The seconds are the
    warm-up's training and the building of its own pixel prior (a warm-up recorded before
    that was timed adds none)."""
    if not needs_warmup(cfg, task):
        return {}
    warm = json.loads((Path(warmup_config(cfg).out_dir) / "results.json").read_text())
    seconds = warm["train_seconds"] + warm.get("prototype_seconds", 0.0)
    return {"warmup_seconds": round(seconds, 3), "warmup_steps": warm["train_steps"]}


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


def _ties(cfg: RunConfig, column: str) -> bool:
    """Epochs equal on ``column`` are told apart by their validation loss."""
    return cfg.select_tie_break == "val_loss" and column != "val_loss"


def _replayed_watch(
    rows: list[dict], column: str, higher: bool, patience: int | None, ties: bool
) -> Watch:
    """The :class:`Watch` of a run's recorded epochs (none for a new run), replayed in order,
    so that a resumed run's best epoch, its tie value and the epochs without progress are
    what the run had before it was interrupted (counting from the best epoch instead would
    restart patience at an epoch kept by the tie break alone)."""
    watch = Watch(higher, patience, limit=_limit(higher), ties=ties)
    for epoch, row in enumerate(rows, start=1):
        watch.update(float(row[column]), epoch, _tie(rows, epoch, ties))
    return watch


def _tie(rows: list[dict], epoch: int, ties: bool) -> float:
    """The tie value (validation loss) of the 1-based ``epoch`` of ``rows``; inf without
    ties or before the first epoch."""
    if not ties or epoch < 1 or rows[epoch - 1].get("val_loss") is None:
        return math.inf
    return float(rows[epoch - 1]["val_loss"])


def _limit(higher: bool) -> float:
    """The best value a selection metric of :func:`_select` can take: accuracy and macro F1
    reach 1.0, an error or a loss 0.0."""
    return 1.0 if higher else 0.0


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


def _output_size(head: nn.Module) -> int:
    """Trainable outputs of the head's last layer (d for prototypes, K for softmax)."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return sum(m.out_features for m in linears)
