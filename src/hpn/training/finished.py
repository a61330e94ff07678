"""What a finished run is worth afterwards: its weights scored on its data seen another way
(``hpn evaluate``), its frozen features on other data (``hpn transfer``).

A run is selected and tested on the data its config names. To ask how the same weights fare
on, say, scan-like renders of the held-out fonts (``data.options.degrade=1`` of the glyph
source), :func:`evaluate_run` rebuilds the run's network from ``config.json``, loads
``best.pt`` and scores one split of the data loaded with ``data.*`` overrides. Nothing is
trained and the run's own files are not changed: the scores go to
``evaluations/<tag>.json`` in the run folder, written atomically, with a ``key`` (the sha256
of ``best.pt``'s bytes and of the canonical JSON of ``config.json``, the overrides and the
split); a second call reads them back only under the same key, so a replaced ``best.pt`` or
an edited config is scored again. Checkpoints are read with ``weights_only=True``
(:func:`hpn.training.checkpoint.read_checkpoint`). :func:`transfer_report` reads the run's
backbone for :func:`hpn.evaluation.transfer.transfer_scores` (``evaluation/`` never reads run
folders).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import torch
from torch import nn

from hpn.data.base import DataSplits
from hpn.data.registry import load_data
from hpn.evaluation.transfer import transfer_scores
from hpn.files import atomic_write_json, content_key, read_json_or_none
from hpn.models import build_backbone
from hpn.training.checkpoint import BEST, backbone_weights, read_checkpoint, require_finished
from hpn.training.config import RunConfig, apply_overrides, from_dict
from hpn.training.run import load_splits
from hpn.training.trainer import Network, build_head, evaluate

#: The splits a run can be scored on.
SPLITS = ("train", "val", "test")


def evaluation_tag(overrides: Sequence[str], split: str) -> str:
    """A file-name-safe name for an evaluation.

    >>> evaluation_tag(["data.options.degrade=1"], "test")
    'test-degrade=1'
    """
    parts = [split] + [o.removeprefix("data.options.").removeprefix("data.") for o in overrides]
    return re.sub(r"[^A-Za-z0-9=.,_+-]", "_", "-".join(parts))


def _read_run(
    run_dir: Path, overrides: Sequence[str] = ()
) -> tuple[RunConfig, DataSplits, nn.Module, dict]:
    """A finished run's config (with ``overrides``), its data, a fresh backbone of its shape
    and the ``best.pt`` state dict of the whole network (keys ``backbone.*``, ``head.*``)."""
    require_finished(run_dir)
    saved = json.loads((run_dir / "config.json").read_text())
    cfg = from_dict(RunConfig, apply_overrides(saved, list(overrides)))
    splits = load_splits(cfg)
    backbone = build_backbone(cfg.model.backbone, splits.input_shape, **cfg.model.options)
    state = read_checkpoint(run_dir / BEST, "cpu", ("model",))["model"]
    return cfg, splits, backbone, state


def trained_network(
    cfg: RunConfig, splits: DataSplits, backbone: nn.Module, state: dict, run_dir: Path
) -> Network:
    """The run's network holding the ``best.pt`` weights ``state``.

    A prototype head is built on random prototypes of the trained width, which the saved
    buffer replaces: no prior is computed again (``data`` and ``features`` read the whole
    training split, ``features:RUN`` another folder that may have moved).

    Raises:
        ValueError: ``state`` is not a prototype head's when the config says it is, or the
            network rebuilt for ``splits`` (another K, input shape...) does not take it.
    """
    head_cfg = cfg.head
    if head_cfg.kind == "prototype" and splits.task != "regression":
        key = "head.prototypes" if splits.task == "classification" else "head.classifier.prototypes"
        if key not in state:
            raise ValueError(f"{run_dir}/best.pt holds no {key}: not a prototype head's weights")
        width = int(state[key].shape[1])  # a multi-task head has one more axis, the values'
        dims = width + 1 if splits.task == "multitask" else width
        head_cfg = head_cfg.with_prototypes("random", dims=dims)
    torch.manual_seed(cfg.seed)
    head, _ = build_head(head_cfg, splits, cast(int, backbone.out_features))
    network = Network(backbone, head, splits.task)
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        lines = str(err).splitlines()
        detail = lines[1].strip() if len(lines) > 1 else str(err)
        raise ValueError(
            f"{run_dir}: the trained network does not fit the data it was loaded with: {detail}"
        ) from None
    return network


def run_key(run_dir: Path, values: object) -> str:
    """What a result computed from a finished run depends on: ``best.pt``'s bytes, the
    run's ``config.json`` and ``values`` (the request: overrides, split, target...)."""
    config = json.loads((run_dir / "config.json").read_text())
    return content_key([run_dir / BEST], {"config": config, "request": values})


def _check(run_dir: Path, overrides: Sequence[str], split: str) -> None:
    require_finished(run_dir)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    for item in overrides:
        if not item.startswith("data."):
            raise ValueError(
                f"override {item!r}: only data.* keys may change when a trained run is scored"
            )


def evaluate_run(
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    split: str = "test",
    device: str = "cpu",
) -> dict:
    """Score a finished run's ``best.pt`` on ``split`` of its data with ``data.*`` overrides.

    Args:
        run_dir: a run folder with ``config.json`` and ``best.pt``.
        overrides: ``data.key=value`` items, e.g. ``["data.options.degrade=1"]``.
        split: ``train``, ``val`` or ``test``.
        device: where the network runs.

    Returns:
        ``{"run", "split", "overrides", "loss", "accuracy", "macro_f1", "mae", "examples",
        "seconds", "key"}``, also kept in ``run_dir/evaluations/<tag>.json`` and read back
        from there while its ``key`` (:func:`run_key`) is the run's.

    Raises:
        FileNotFoundError: not a finished run folder.
        ValueError: an override outside ``data.*``, an unknown split, data whose classes
            or input shape the trained network cannot take (the message says which), or a
            ``best.pt`` that is not a plain checkpoint
            (:class:`~hpn.training.checkpoint.UnsafeCheckpoint`).
    """
    run_dir, overrides = Path(run_dir), list(overrides)
    _check(run_dir, overrides, split)
    done = run_dir / "evaluations" / f"{evaluation_tag(overrides, split)}.json"
    key = run_key(run_dir, {"overrides": overrides, "split": split})
    kept = read_json_or_none(done)
    if isinstance(kept, dict) and kept.get("key") == key:
        return kept
    start = time.perf_counter()
    cfg, splits, backbone, state = _read_run(run_dir, overrides)
    net = trained_network(cfg, splits, backbone, state, run_dir).to(device)
    data = getattr(splits, split)
    metrics = evaluate(net, data, cfg.optim.batch_size, device, cfg.head.reduction)
    report = {
        "run": str(run_dir),
        "split": split,
        "overrides": overrides,
        "loss": metrics.loss,
        "accuracy": metrics.accuracy,
        "macro_f1": metrics.macro_f1,
        "mae": metrics.mae,
        "examples": len(data),
        "seconds": round(time.perf_counter() - start, 3),
        "key": key,
    }
    done.parent.mkdir(exist_ok=True)
    atomic_write_json(done, report)
    return report


def load_run_backbone(run_dir: str | Path) -> tuple[nn.Module, RunConfig, DataSplits]:
    """The backbone of a finished run (its best-validation weights), its config and data.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``config.json`` or ``best.pt``.
    """
    cfg, splits, backbone, state = _read_run(Path(run_dir))
    backbone.load_state_dict(backbone_weights(state))
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
