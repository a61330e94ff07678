"""CNN for small grey glyph images (printed characters, 32 x 32), as :mod:`hpn.data.glyphs`
renders them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hpn.models.convnet import init_weights
from hpn.models.mlp import check_dropout, check_sizes


class GlyphNet(nn.Module):
    """Blocks of ``convs`` x ``conv3x3-BN-ReLU`` then ``maxpool2``; a global average pool;
    ``Linear-ReLU`` to ``features``.

    With the defaults on 32 x 32 input: blocks of 64, 128 and 256 channels, two convs each,
    32 -> 16 -> 8 -> 4, then the 256 channels averaged over the 4 x 4 grid and mapped to 256
    features: 1,210,944 parameters (C = 1), about 150 M multiply-adds per image. The global
    pool makes any size of at least ``2 ** len(channels)`` work.

    Args:
        in_channels: input channels (1 for grey glyphs).
        features: width of the final linear layer, the output size.
        channels: output channels of each block.
        convs: conv layers per block.
        dropout: dropout probability before the linear layer, in [0, 1).

    Shape:
        - Input: (N, in_channels, H, W), H and W >= 2 ** len(channels).
        - Output: (N, features), non-negative (after ReLU).

    Example:
        >>> net = GlyphNet()
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
    ):
        super().__init__()
        (in_channels,) = check_sizes((in_channels,), "in_channels")
        (features,) = check_sizes((features,), "features")
        (convs,) = check_sizes((convs,), "convs")
        channels = check_sizes(channels, "channels")
        dropout = check_dropout(dropout)
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
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(width, features),
            nn.ReLU(inplace=True),
        )
        self.out_features = features
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) glyphs -> (N, features) features."""
        return self.head(self.features(x))
