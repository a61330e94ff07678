"""CNNs for small grey glyph images (printed characters, 32 x 32), as :mod:`hpn.data.glyphs`
renders them: one class, two ways to end the conv stack (average away where the strokes
are, or keep the layout)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from hpn.models.convnet import init_weights
from hpn.models.mlp import check_dropout, check_sizes

POOLS = ("average", "flatten")


class GlyphNet(nn.Module):
    """Blocks of ``convs`` x ``conv3x3-BN-ReLU`` then ``maxpool2``; then either a global
    average pool (``pool="average"``) or a flatten that keeps where the strokes are
    (``pool="flatten"``); then ``Linear[-BN]-ReLU[-Dropout]`` to ``features``.

    With the defaults on 32 x 32 input: blocks of 64, 128 and 256 channels, two convs each,
    32 -> 16 -> 8 -> 4, then the 256 channels averaged over the 4 x 4 grid and mapped to 256
    features: 1,210,944 parameters (C = 1), about 150 M multiply-adds per image. The global
    pool makes any size of at least ``2 ** len(channels)`` work.

    The ``glyphcnn`` backbone is this class with ``channels=(32, 64, 128)``, ``convs=1``,
    ``pool="flatten"``, ``batch_norm=True`` and ``feature_dropout=0.3``: the 128 x 4 x 4 map
    is flattened to 2,048 values, so the linear layer sees the glyph's layout (about 10 M
    multiply-adds per image, 617,696 parameters on 32 x 32).

    Args:
        in_channels: input channels (1 for grey glyphs).
        features: width of the final linear layer, the output size.
        channels: output channels of each block.
        convs: conv layers per block.
        dropout: dropout probability before the linear layer, in [0, 1).
        pool: ``"average"`` (global average pool) or ``"flatten"`` (keep the spatial map; the
            linear layer then depends on the input size).
        batch_norm: BatchNorm1d between the linear layer and its ReLU.
        feature_dropout: dropout probability on the output features, in [0, 1).
        input_size: (H, W) the network is built for; needed with ``pool="flatten"`` only.

    Shape:
        - Input: (N, in_channels, H, W), H and W >= 2 ** len(channels) (``pool="flatten"``:
          exactly ``input_size``).
        - Output: (N, features), non-negative (after ReLU).

    Example:
        >>> net = GlyphNet()
        >>> net(torch.randn(2, 1, 32, 32)).shape
        torch.Size([2, 256])
        >>> net = GlyphNet(channels=(32, 64, 128), convs=1, pool="flatten", input_size=(32, 32))
        >>> net(torch.randn(2, 1, 32, 32)).shape
        torch.Size([2, 256])
    """

    def __init__(
        self,
        in_channels: int = 1,
        features: int = 256,
        channels: Sequence[int] = (64, 128, 256),
        convs: int = 2,
        dropout: float = 0.0,
        pool: Literal["average", "flatten"] = "average",
        batch_norm: bool = False,
        feature_dropout: float = 0.0,
        input_size: tuple[int, int] = (32, 32),
    ):
        super().__init__()
        (in_channels,) = check_sizes((in_channels,), "in_channels")
        (features,) = check_sizes((features,), "features")
        (convs,) = check_sizes((convs,), "convs")
        channels = check_sizes(channels, "channels")
        dropout = check_dropout(dropout)
        feature_dropout = check_dropout(feature_dropout, "feature_dropout")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if not isinstance(batch_norm, bool):
            raise ValueError(f"batch_norm must be True or False, got {batch_norm!r}")
        layers: list[nn.Module] = []
        width = in_channels
        for c in channels:
            for _ in range(convs):
                layers += [
                    nn.Conv2d(width, c, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c),
                    nn.ReLU(inplace=True),
                ]
                width = c
            layers.append(nn.MaxPool2d(2))
        if pool == "average":
            layers.append(nn.AdaptiveAvgPool2d(1))
        else:
            h, w = (side // 2 ** len(channels) for side in input_size)
            width *= h * w
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(width, features, bias=not batch_norm),
            nn.BatchNorm1d(features) if batch_norm else nn.Identity(),
            nn.ReLU(inplace=True),
            nn.Dropout(feature_dropout) if feature_dropout > 0 else nn.Identity(),
        )
        self.out_features = features
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) glyphs -> (N, features) features."""
        return self.head(self.features(x))
