"""The data prior in a trained network's feature space: ``head.prototypes: features:RUN``.

The ``data`` prior lays the prototypes out like the training classes' mean *inputs* (PCA of
the pixel class means, then a short spread; :mod:`hpn.prototypes.data_prior`). With
``features:RUN`` the same construction reads the class means of the *features* of the
finished run in folder RUN instead: each training batch goes through that run's backbone
(its best-validation weights, in eval mode) before the means are taken. Classes that look
alike to a trained network then get nearby prototypes, rather than classes whose pixels
overlap.

RUN may be any finished run whose backbone takes inputs of this run's shape, for example a
network trained briefly, on other classes of the same source, or with another head; only
its ``config.json`` (``model.backbone``, ``model.options``) and ``best.pt`` are read, with
``weights_only=True``.

``head.prototypes: features`` (no RUN) makes the brief network part of the run: the run
first trains :func:`warmup_config` in its folder's ``warmup/`` (the same config with the
pixel ``data`` prior, for ``head.warmup_epochs`` epochs, without early stopping), then lays
its own prototypes out in that network's features and trains from its own initial weights,
or, with ``head.warm_start``, from where that network ended (its backbone, and an output
layer that is the PCA map the prototypes came from).
The warm-up costs what its epochs cost with the run's own head, so a head whose step does
not grow with K keeps that property; a stopped warm-up resumes, a finished one is read back.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from hpn.models import build_backbone
from hpn.training.checkpoint import BEST, backbone_weights, read_checkpoint, require_finished
from hpn.training.config import (
    FEATURES_PREFIX,
    WARMUP_PRIOR,
    ModelConfig,
    RunConfig,
    from_dict,
    saved_run_difference,
)

#: The sub-folder of a run folder where ``head.prototypes: features`` trains its warm-up.
WARMUP_FOLDER = "warmup"


def feature_run(spec: object) -> Path | None:
    """The run folder a ``features:RUN`` spec names; None for any other spec.

    >>> feature_run("features:runs/brief"), feature_run("data")
    (PosixPath('runs/brief'), None)
    """
    if isinstance(spec, str) and spec.startswith(FEATURES_PREFIX):
        return Path(spec.removeprefix(FEATURES_PREFIX))
    return None


def run_backbone(run_dir: Path, input_shape: Sequence[int]) -> nn.Module:
    """The backbone of the finished run in ``run_dir`` for inputs of ``input_shape``, with its
    best-validation weights, in eval mode.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``config.json`` or ``best.pt``.
        ValueError: its weights do not fit a backbone for these inputs.
    """
    require_finished(run_dir, "prototypes features:")
    saved = json.loads((run_dir / "config.json").read_text()).get("model", {})
    model = from_dict(ModelConfig, saved, "model")
    backbone = build_backbone(model.backbone, input_shape, **model.options)
    shape = tuple(input_shape)
    _load_best(backbone, run_dir, f"prototypes features:{run_dir}: its backbone does not take "
               f"inputs of shape {shape}")  # fmt: skip
    return backbone.eval()


def start_from_run(backbone: nn.Module, run_dir: Path) -> None:
    """Give ``backbone`` the best-validation weights of the finished run in ``run_dir``
    (``head.warm_start``: the run starts where that network ended).

    Raises:
        FileNotFoundError: ``run_dir`` has no ``config.json`` or ``best.pt``.
        ValueError: its backbone's weights do not fit ``backbone``.
    """
    require_finished(run_dir, "head.warm_start from ")
    _load_best(backbone, run_dir, f"head.warm_start: the backbone of {run_dir} does not fit "
               "this run's")  # fmt: skip


def _load_best(backbone: nn.Module, run_dir: Path, misfit: str) -> None:
    """Load the backbone weights of ``run_dir/best.pt`` into ``backbone``; weights that do
    not fit raise ValueError(``misfit`` and the first line of torch's reason)."""
    state = read_checkpoint(run_dir / BEST, "cpu", ("model",))["model"]
    try:
        backbone.load_state_dict(backbone_weights(state))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"{misfit} ({first})") from None


def feature_batches(
    backbone: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(backbone(x), labels)`` for each ``(x, labels)`` batch, without gradients.

    Args:
        backbone: a module in eval mode, (N, ...) -> (N, F).
        batches: the training split as ``(x, labels)``.
    """
    with torch.no_grad():
        for x, labels in batches:
            yield backbone(x), labels


def needs_warmup(cfg: RunConfig, task: str) -> bool:
    """The run lays its prototypes out in the features of a warm-up it trains first (a
    prototype head with ``prototypes: features`` on data with class labels)."""
    prototype = cfg.head.kind == "prototype" and task != "regression"
    return prototype and cfg.head.prototypes == WARMUP_PRIOR


def warmup_config(cfg: RunConfig) -> RunConfig:
    """The warm-up run of a ``head.prototypes: features`` run: the same config in
    ``OUT/warmup`` with the pixel ``data`` prior, ``head.warmup_epochs`` epochs and no early
    stopping or TensorBoard.

    >>> from hpn.training.config import HeadConfig
    >>> cfg = RunConfig(out_dir="runs/a", head=HeadConfig(prototypes="features", warmup_epochs=2))
    >>> warm = warmup_config(cfg)
    >>> warm.out_dir, warm.head.prototypes, warm.optim.epochs
    ('runs/a/warmup', 'data', 2)
    """
    epochs = cfg.head.warmup_epochs or 1
    head = cfg.head.with_prototypes("data")
    optim = dataclasses.replace(cfg.optim, epochs=epochs, patience=None)
    out = str(Path(cfg.out_dir) / WARMUP_FOLDER)
    return dataclasses.replace(cfg, head=head, optim=optim, out_dir=out, tensorboard=False)


def check_warmup_folder(warm: RunConfig) -> None:
    """Refuse a warm-up folder that holds a run of another config
    (:func:`hpn.training.config.saved_run_difference`), so a finished or stopped warm-up is
    read back only for the run it belongs to.

    Raises:
        ValueError: names the first key that differs, with both values.
    """
    difference = saved_run_difference(Path(warm.out_dir), warm)
    if difference is not None:
        key, old, new = difference
        raise ValueError(
            f"{warm.out_dir} holds a warm-up run with {key}={old!r} where this run's warm-up "
            f"has {new!r}; move it away or choose another out_dir"
        )


def warm_prior(cfg: RunConfig, warm_dir: Path) -> RunConfig:
    """``cfg`` with its prototypes read from the finished warm-up in ``warm_dir``
    (``features:WARM_DIR``); what the head is built from, not what the run folder records."""
    head = cfg.head.with_prototypes(f"{FEATURES_PREFIX}{warm_dir}")
    return dataclasses.replace(cfg, head=head)
