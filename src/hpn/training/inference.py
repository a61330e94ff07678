"""A finished run as a model to use: :func:`load_run` and :class:`TrainedModel`.

:func:`load_run` reads a run folder (``config.json``, ``best.pt``) through
:func:`hpn.training.finished._read_run`, which also loads the run's data for its class names
and input shape, and rebuilds the network of the best validation epoch in eval mode. The head
is rebuilt around random prototypes of the trained width, which ``best.pt`` then replaces: the
prototype method (an optimiser, class-name embeddings, the data prior) is not run again.

Class scores are what the head gives: cosines to the prototypes (N, K) for a prototype head,
softmax probabilities (N, K) for a softmax head (:attr:`TrainedModel.score_kind` says which).
Either way the largest score is the predicted class. :class:`ClassScores` is that map from
inputs to scores as one ``nn.Module``, the network :mod:`hpn.training.export` writes.

For example, after ``hpn demo --out runs/demo``::

    model = load_run("runs/demo/prototype")
    top = model.predict(x, k=3)     # x: (N, 1, 28, 28) digits in [0, 1]
    top.indices, top.scores         # (N, 3) classes, best first, and their cosines
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from torch import nn

from hpn.baselines import MultiTaskBaseline, SoftmaxClassifier
from hpn.data.base import DataSplits
from hpn.data.image_inputs import ImageInputs, image_inputs
from hpn.heads import MultiTaskHead, PrototypeClassifier
from hpn.learned import LearnedCentresClassifier
from hpn.training.config import RunConfig
from hpn.training.finished import _read_run, trained_network
from hpn.training.trainer import Network

ScoreKind = Literal["cosine", "probability"]


class TopK(NamedTuple):
    """The k best classes of N examples, best first.

    Attributes:
        indices: (N, k) int64 class ids.
        scores: (N, k) float32 scores of those classes (cosines or probabilities).
    """

    indices: torch.Tensor
    scores: torch.Tensor


class ClassScores(nn.Module):
    """Inputs (N, *input_shape) -> class scores (N, K): the backbone and the class part of the
    head. Cosines for a prototype head; for a softmax head the softmax of its logits.

    Args:
        backbone: inputs -> (N, F) features.
        head: features -> (N, K) scores, or a tuple whose first part they are (multi-task).
        probabilities: apply a softmax over the K scores (softmax heads).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, probabilities: bool):
        super().__init__()
        self.backbone, self.head, self.probabilities = backbone, head, probabilities

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) class scores of (N, *input_shape) inputs."""
        out = self.head(self.backbone(x))
        scores = out[0] if isinstance(out, tuple) else out
        return torch.softmax(scores.float(), dim=1) if self.probabilities else scores


@dataclass
class TrainedModel:
    """A finished run's network (best validation epoch, eval mode) and what it was trained on.

    Attributes:
        network: backbone + head (:class:`hpn.training.trainer.Network`).
        task: ``classification``, ``regression`` or ``multitask``.
        input_shape: shape of one input, e.g. (3, 64, 64).
        class_names: the K class names where the data has them, else None.
        prototypes: (K, d) unit prototypes of a prototype head (row c: class c's), else None.
        score_kind: ``"cosine"`` (prototype heads, and the learned cosine classifier and
            sampled softmax, to their learned centres), ``"probability"`` (softmax heads) or
            None (regression: no classes).
        images: how image files become inputs, or None when the run takes no image files.
        source: the data source's name (``config.json``'s ``data.name``).
        run_dir: the run folder.
        config: the run's config (with any ``data.*`` overrides given to :func:`load_run`).
        splits: the run's data, as loaded to read its class names and input shape.
    """

    network: Network
    task: str
    input_shape: tuple[int, ...]
    class_names: list[str] | None
    prototypes: torch.Tensor | None
    score_kind: ScoreKind | None
    images: ImageInputs | None
    source: str
    run_dir: Path
    config: RunConfig
    splits: DataSplits = dataclasses.field(repr=False)

    def __repr__(self) -> str:
        head = type(self.network.head).__name__
        return (
            f"TrainedModel({str(self.run_dir)!r}, {self.task}, {head}, K={self.num_classes}, "
            f"input_shape={self.input_shape}, scores={self.score_kind})"
        )

    @property
    def num_classes(self) -> int | None:
        """K, or None for a regression run."""
        return getattr(self.network.head, "num_classes", None)

    @property
    def device(self) -> torch.device:
        """Where the network's weights are."""
        return next(self.network.parameters()).device

    def class_scores(self) -> ClassScores:
        """The network as inputs -> (N, K) scores (shares this model's weights).

        Raises:
            ValueError: a regression run, which has no classes.
        """
        head = self.network.head
        if self.score_kind is None:
            raise ValueError(f"{self.run_dir} is a regression run: it has no class scores")
        if isinstance(head, MultiTaskBaseline):
            return ClassScores(self.network.backbone, head.classifier, probabilities=True)
        return ClassScores(self.network.backbone, head, self.score_kind == "probability")

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) float class scores of (N, *input_shape) inputs; see :attr:`score_kind`."""
        return self.class_scores()(self._batch(x)).float()

    @torch.no_grad()
    def predict(self, x: torch.Tensor, k: int = 5) -> TopK:
        """The ``k`` best classes of each input, best first.

        Args:
            x: (N, *input_shape) inputs, prepared as the run's data (e.g. images in [0, 1]).
            k: classes per example; more than K is cut to K.

        Returns:
            :class:`TopK` of (N, min(k, K)) class ids and their scores.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        scores = self.scores(x)
        top = scores.topk(min(k, scores.shape[1]), dim=1)
        return TopK(top.indices, top.values)

    @torch.no_grad()
    def values(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) float64 regression predictions of a regression or multi-task run."""
        if self.task == "classification":
            raise ValueError(f"{self.run_dir} is a classification run: it predicts no values")
        return self.network.predict(self._batch(x))["value"].double()

    def _batch(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"inputs must be (N, {', '.join(map(str, self.input_shape))}) for this run, "
                f"got shape {tuple(x.shape)}"
            )
        return x.to(self.device, torch.float32)


def load_run(
    run_dir: str | Path, overrides: Sequence[str] = (), device: str = "cpu"
) -> TrainedModel:
    """The network of a finished run (``best.pt``), ready for inference.

    Args:
        run_dir: a run folder with ``config.json`` and ``best.pt``.
        overrides: ``data.key=value`` items for loading the run's data another way.
        device: where the network goes.

    Returns:
        A :class:`TrainedModel` in eval mode.

    Raises:
        FileNotFoundError: not a finished run folder.
        ValueError: an override outside ``data.*``, or data the network does not fit.
    """
    run_dir = Path(run_dir)
    for item in overrides:
        if not item.startswith("data."):
            raise ValueError(f"override {item!r}: only data.* keys may change for a trained run")
    cfg, splits, backbone, state = _read_run(run_dir, list(overrides))
    network = trained_network(cfg, splits, backbone, state, run_dir).to(device).eval()
    head = network.head
    proto_head = head.classifier if isinstance(head, MultiTaskHead) else head
    return TrainedModel(
        network=network,
        task=splits.task,
        input_shape=tuple(splits.input_shape),
        class_names=list(splits.class_names) if splits.class_names else None,
        prototypes=proto_head.prototypes if isinstance(proto_head, PrototypeClassifier) else None,
        score_kind=_score_kind(head),
        images=image_inputs(cfg.data.name, splits.input_shape),
        source=cfg.data.name,
        run_dir=run_dir,
        config=cfg,
        splits=splits,
    )


def _score_kind(head: nn.Module) -> ScoreKind | None:
    if isinstance(head, PrototypeClassifier | MultiTaskHead | LearnedCentresClassifier):
        return "cosine"
    if isinstance(head, SoftmaxClassifier | MultiTaskBaseline):
        return "probability"
    return None
