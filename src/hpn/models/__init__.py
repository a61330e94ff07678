"""Backbones: ``nn.Module`` feature extractors without a classifier.

Every backbone maps a batch to penultimate features of shape (N, ``out_features``); a
prototype head (:mod:`hpn.heads`) or a softmax ``Linear`` goes on top. The features of every
backbone come after a ReLU and are non-negative, so give the head a linear projection
(``in_features=backbone.out_features``) rather than normalising them directly.

=============== ======================= ============== =================================
name            input                   out_features   parameters (defaults, no head)
=============== ======================= ============== =================================
``mlp``         any shape, flattened    300            prod(shape) * 300 + 91,200
``convnet``     (C, H, W), ~28x28       128            420,448 (C = 1)
``resnet32``    (C, H, W), ~32x32       64             463,504 (C = 3, option A)
``resnet``      (C, H, W), ~32x32       widths[-1]     268,784 (depth 20, C = 1)
``densenet121`` (C, H, W)               1024           6,946,048 (CIFAR stem, C = 3)
``glyphnet``    (C, H, W), ~32x32       256            1,210,944 (C = 1)
``glyphcnn``    (C, H, W), fixed size   256            617,696 (C = 1, 32 x 32)
=============== ======================= ============== =================================

Example:
    >>> import torch
    >>> net = build_backbone("resnet32", (3, 32, 32))
    >>> net(torch.randn(2, 3, 32, 32)).shape, net.out_features
    (torch.Size([2, 64]), 64)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

from torch import nn

from hpn.models.convnet import ConvNet, init_weights
from hpn.models.densenet import DenseNet
from hpn.models.glyphnet import GlyphNet
from hpn.models.mlp import MLP
from hpn.models.resnet import CifarResNet

__all__ = [
    "BACKBONES",
    "MLP",
    "CifarResNet",
    "ConvNet",
    "DenseNet",
    "GlyphNet",
    "build_backbone",
    "init_weights",
]

#: Largest side (pixels) for which ``densenet121`` picks the CIFAR stem with ``stem="auto"``.
SMALL_INPUT_MAX = 64


def _image_shape(name: str, shape: tuple[int, ...], min_side: int) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(f"{name} needs input_shape (C, H, W), got {shape}")
    c, h, w = shape
    if min(h, w) < min_side:
        raise ValueError(f"{name} needs H and W >= {min_side}, got input_shape {shape}")
    return c, h, w


def _mlp(
    shape: tuple[int, ...],
    hidden: Sequence[int] = (300, 300),
    batch_norm: bool = True,
    dropout: float = 0.2,
    activation: str = "relu",
) -> nn.Module:
    return MLP(math.prod(shape), hidden, batch_norm, dropout, activation)


def _convnet(
    shape: tuple[int, ...],
    features: int = 128,
    channels: Sequence[int] = (32, 64),
    dropout: float = 0.0,
) -> nn.Module:
    n_stages = len(channels) if isinstance(channels, Sequence) else 0
    c, _, _ = _image_shape("convnet", shape, 2**n_stages)
    return ConvNet(c, features, channels, dropout)


def _resnet32(shape: tuple[int, ...], shortcut: str = "A") -> nn.Module:
    c, _, _ = _image_shape("resnet32", shape, 1)
    return CifarResNet(c, depth=32, shortcut=shortcut)


def _resnet(
    shape: tuple[int, ...],
    depth: int = 20,
    widths: Sequence[int] = (16, 32, 64),
    shortcut: str = "A",
) -> nn.Module:
    c, _, _ = _image_shape("resnet", shape, 1)
    return CifarResNet(c, depth=depth, shortcut=shortcut, widths=widths)


def _densenet121(shape: tuple[int, ...], stem: str = "auto", drop_rate: float = 0.0) -> nn.Module:
    if stem not in ("auto", "cifar", "imagenet"):
        raise ValueError(f"stem must be 'auto', 'cifar' or 'imagenet', got {stem!r}")
    _, h, w = _image_shape("densenet121", shape, 1)
    if stem == "auto":
        stem = "cifar" if max(h, w) <= SMALL_INPUT_MAX else "imagenet"
    c, _, _ = _image_shape("densenet121", shape, 8 if stem == "cifar" else 32)
    return DenseNet(c, small_input=stem == "cifar", drop_rate=drop_rate)


def _glyphnet(
    shape: tuple[int, ...],
    features: int = 256,
    channels: Sequence[int] = (64, 128, 256),
    convs: int = 2,
    dropout: float = 0.0,
    pool: Literal["average", "flatten"] = "average",
    batch_norm: bool = False,
    feature_dropout: float = 0.0,
) -> nn.Module:
    n_stages = len(channels) if isinstance(channels, Sequence) else 0
    c, h, w = _image_shape("glyphnet", shape, 2**n_stages)
    return GlyphNet(
        c, features, channels, convs, dropout, pool, batch_norm, feature_dropout, (h, w)
    )


def _glyphcnn(
    shape: tuple[int, ...],
    features: int = 256,
    channels: Sequence[int] = (32, 64, 128),
    convs: int = 1,
    feature_dropout: float = 0.3,
) -> nn.Module:
    """The layout-keeping glyph CNN: ``glyphnet`` with a flatten instead of the average pool,
    batch norm on the features and dropout after them."""
    return _glyphnet(
        shape,
        features,
        channels,
        convs,
        pool="flatten",
        batch_norm=True,
        feature_dropout=feature_dropout,
    )


#: Backbone name -> builder ``(input_shape, **options) -> nn.Module``.
BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "mlp": _mlp,
    "convnet": _convnet,
    "resnet32": _resnet32,
    "resnet": _resnet,
    "densenet121": _densenet121,
    "glyphnet": _glyphnet,
    "glyphcnn": _glyphcnn,
}


def build_backbone(name: str, input_shape: Sequence[int], **options: Any) -> nn.Module:
    """Build a backbone by name for inputs of one sample's shape.

    Args:
        name: ``"mlp"``, ``"convnet"``, ``"resnet32"``, ``"densenet121"``, ``"glyphnet"``,
            ``"glyphcnn"`` or ``"resnet"``.
        input_shape: shape of one sample without the batch dimension, e.g. ``(3, 32, 32)``
            (``(C, H, W)`` for the conv nets, anything for the MLP).
        **options: keyword arguments of the chosen backbone:

            - mlp: ``hidden=(300, 300)``, ``batch_norm=True``, ``dropout=0.2``,
              ``activation="relu"`` (see :class:`MLP`).
            - convnet: ``features=128``, ``channels=(32, 64)``, ``dropout=0.0``.
            - resnet32: ``shortcut="A"`` (zero-padded identity) or ``"B"`` (1x1 projection).
            - resnet: ``depth=20`` (6n + 2), ``widths=(16, 32, 64)`` (channels of the three
              stages), ``shortcut="A"``.
            - densenet121: ``stem="auto"`` (CIFAR stem when H and W <= 64, else ImageNet),
              ``"cifar"`` or ``"imagenet"``; ``drop_rate=0.0``.
            - glyphnet: ``features=256``, ``channels=(64, 128, 256)``, ``convs=2``,
              ``dropout=0.0``, ``pool="average"`` (or ``"flatten"``, keeping the layout),
              ``batch_norm=False``, ``feature_dropout=0.0``.
            - glyphcnn: ``features=256``, ``channels=(32, 64, 128)``, ``convs=1``,
              ``feature_dropout=0.3`` (``glyphnet`` with ``pool="flatten"`` and batch norm
              on the features; the network takes inputs of ``input_shape`` only).

    Returns:
        An ``nn.Module`` mapping (N, *input_shape) to (N, ``module.out_features``) features.

    Raises:
        ValueError: unknown name or option, a bad option value, or an unusable input shape.
    """
    builder = BACKBONES.get(name) if isinstance(name, str) else None
    if builder is None:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    shape = tuple(input_shape) if isinstance(input_shape, Sequence) else ()
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(
            f"input_shape must be a non-empty tuple of positive ints, got {input_shape!r}"
        )
    allowed = list(inspect.signature(builder).parameters)[1:]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {name!r}; allowed: {allowed}")
    return builder(shape, **options)
