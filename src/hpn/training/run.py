"""From a config file to a finished run: the layer that knows about YAML, data and models."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch
import yaml
from torch import nn

from hpn.data.base import DataSplits
from hpn.data.registry import load_data
from hpn.evaluation.transfer import transfer_scores
from hpn.models import build_backbone
from hpn.training.config import RunConfig, apply_overrides, config_changes, from_dict
from hpn.training.trainer import train

#: Keys that may change when a run resumes; any other difference from the saved config is an
#: error. More epochs stretch the learning-rate schedule to the new length from where it is.
RESUMABLE_KEYS = ("optim.epochs", "optim.patience", "tensorboard", "device", "out_dir")


def packaged_configs() -> list[str]:
    """Names of the run configs shipped with the package (``hpn train --config NAME``)."""
    folder = resources.files("hpn.configs")
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


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


def load_config(path: str | None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML run config (a file, or a packaged config by name, or the defaults when
    None) and apply ``key.sub=value`` overrides."""
    data = _read_yaml(path) if path is not None else {}
    return from_dict(RunConfig, apply_overrides(data, list(overrides)))


def resume_config(
    out_dir: str | Path, path: str | None = None, overrides: list[str] = ()
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


def load_splits(cfg: RunConfig):
    """The data the config names; every source takes ``seed``, which defaults to the run's.

    ``data.task`` narrows a multi-task source to classification or regression;
    ``data.imbalance`` makes its training split long-tailed.
    """
    splits = load_data(cfg.data.name, **{"seed": cfg.seed, **cfg.data.options})
    splits = splits.for_task(cfg.data.task)
    if cfg.data.imbalance is not None:
        from hpn.data.longtail import long_tailed

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


def run(cfg: RunConfig, resume: bool = False, log=print) -> dict:
    """Load the data and backbone the config names and train.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) this process joins the group
    first (gloo on CPU, nccl on CUDA, one GPU per local rank) and leaves it at the end.
    """
    import dataclasses

    from hpn.training import distributed

    check_device(cfg.device)
    ctx, device = distributed.init_from_env(cfg.device)
    if device != cfg.device:
        cfg = dataclasses.replace(cfg, device=device)
    try:
        return _run(cfg, resume, log)
    finally:
        if ctx.distributed:
            distributed.shutdown()


def _run(cfg: RunConfig, resume: bool, log) -> dict:
    splits = load_splits(cfg)
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(cfg.model.backbone, splits.input_shape, **cfg.model.options)
    return train(cfg, splits, backbone, resume=resume, log=log)


def load_run_backbone(run_dir: str | Path) -> tuple[nn.Module, RunConfig, DataSplits]:
    """The backbone of a finished run (its best-validation weights), its config and data.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``config.json`` or ``best.pt``.
    """
    run_dir = Path(run_dir)
    for name in ("config.json", "best.pt"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir} is not a finished run folder (no {name})")
    cfg = from_dict(RunConfig, json.loads((run_dir / "config.json").read_text()))
    splits = load_splits(cfg)
    backbone = build_backbone(cfg.model.backbone, splits.input_shape, **cfg.model.options)
    state = torch.load(run_dir / "best.pt", weights_only=False, map_location="cpu")["model"]
    backbone.load_state_dict(
        {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    )
    return backbone, cfg, splits


def transfer_report(run_dir: str | Path, target: str, options: dict | None = None) -> dict:
    """What a finished run's frozen features are worth on the data source ``target``
    (:func:`hpn.evaluation.transfer.transfer_scores`): class separation on the run's own test
    split and on the target's, and a linear probe fitted on the target's training split and
    scored on its test split.

    ``target`` is loaded with the run's seed unless ``options`` sets one, and must have the
    input shape the backbone was trained on.
    """
    backbone, cfg, source = load_run_backbone(run_dir)
    tgt = load_data(target, **{"seed": cfg.seed, **(options or {})})
    if tuple(tgt.input_shape) != tuple(source.input_shape):
        raise ValueError(
            f"{target} inputs are {tuple(tgt.input_shape)} but the backbone was trained on "
            f"{tuple(source.input_shape)}"
        )
    return {
        "run": str(run_dir),
        "head": cfg.head.kind,
        "source": cfg.data.name,
        "target": target,
        **transfer_scores(backbone, source.test, tgt.train, tgt.test),
    }
