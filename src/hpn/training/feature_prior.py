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
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from hpn.models import build_backbone
from hpn.training.checkpoint import BEST, backbone_weights, read_checkpoint
from hpn.training.config import ModelConfig, from_dict

#: The prefix of a ``head.prototypes`` spec that names a run whose features lay out the prior.
PREFIX = "features:"


def feature_run(spec: object) -> Path | None:
    """The run folder a ``features:RUN`` spec names; None for any other spec.

    >>> feature_run("features:runs/brief"), feature_run("data")
    (PosixPath('runs/brief'), None)
    """
    if isinstance(spec, str) and spec.startswith(PREFIX):
        return Path(spec.removeprefix(PREFIX))
    return None


def run_backbone(run_dir: Path, input_shape: Sequence[int]) -> nn.Module:
    """The backbone of the finished run in ``run_dir`` for inputs of ``input_shape``, with its
    best-validation weights, in eval mode.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``config.json`` or ``best.pt``.
        ValueError: its weights do not fit a backbone for these inputs.
    """
    for name in ("config.json", BEST):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(
                f"prototypes features:{run_dir}: not a finished run folder (no {name})"
            )
    saved = json.loads((run_dir / "config.json").read_text()).get("model", {})
    model = from_dict(ModelConfig, saved, "model")
    backbone = build_backbone(model.backbone, input_shape, **model.options)
    state = read_checkpoint(run_dir / BEST, "cpu", ("model",))["model"]
    try:
        backbone.load_state_dict(backbone_weights(state))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(
            f"prototypes features:{run_dir}: its backbone does not take inputs of shape "
            f"{tuple(input_shape)} ({first})"
        ) from None
    return backbone.eval()


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
