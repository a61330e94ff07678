"""From a config file to a finished run: the layer that knows about YAML, data and models."""

from __future__ import annotations

from pathlib import Path

import torch

from hpn.training.config import RunConfig, apply_overrides, from_dict
from hpn.training.trainer import train


def load_config(path: str | None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML run config (or start from defaults) and apply ``key.sub=value`` overrides."""
    import yaml

    data: dict = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{path} is not valid YAML ({str(err).splitlines()[0]})") from None
    return from_dict(RunConfig, apply_overrides(data, list(overrides)))


def load_splits(cfg: RunConfig):
    """The data the config names; every source takes ``seed``, which defaults to the run's.

    ``data.task`` narrows a multi-task source to classification or regression;
    ``data.imbalance`` makes its training split long-tailed.
    """
    from hpn.data.registry import load_data

    splits = load_data(cfg.data.name, **{"seed": cfg.seed, **cfg.data.options})
    splits = splits.for_task(cfg.data.task)
    if cfg.data.imbalance is not None:
        from hpn.data.longtail import long_tailed

        splits = long_tailed(splits, cfg.data.imbalance, seed=cfg.seed)
    return splits


def run(cfg: RunConfig, resume: bool = False, log=print) -> dict:
    """Load the data and backbone the config names and train.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) this process joins the group
    first (gloo on CPU, nccl on CUDA, one GPU per local rank) and leaves it at the end.
    """
    import dataclasses

    from hpn.training import distributed

    ctx, device = distributed.init_from_env(cfg.device)
    if device != cfg.device:
        cfg = dataclasses.replace(cfg, device=device)
    try:
        return _run(cfg, resume, log)
    finally:
        if ctx.distributed:
            distributed.shutdown()


def _run(cfg: RunConfig, resume: bool, log) -> dict:
    from hpn.models import build_backbone

    splits = load_splits(cfg)
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(cfg.model.backbone, splits.input_shape, **cfg.model.options)
    return train(cfg, splits, backbone, resume=resume, log=log)
