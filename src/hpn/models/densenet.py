"""DenseNet-BC (Huang et al. 2017), DenseNet-121 by default, with a CIFAR or an ImageNet stem."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hpn.models.convnet import init_weights
from hpn.models.mlp import check_dropout, check_sizes


class DenseLayer(nn.Module):
    """Bottleneck layer ``BN-ReLU-conv1x1(bn_size * growth)-BN-ReLU-conv3x3(growth)``.

    Shape:
        (N, C, H, W) -> (N, C + growth_rate, H, W): the new maps are concatenated to the input.
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int, drop_rate: float):
        super().__init__()
        inner = bn_size * growth_rate
        self.layers = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, inner, 1, bias=False),
            nn.BatchNorm2d(inner),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner, growth_rate, 3, padding=1, bias=False),
        )
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) maps -> (N, C + growth_rate, H, W): the input, then the new maps.

        Example:
            >>> layer = DenseLayer(8, growth_rate=4, bn_size=2, drop_rate=0.0)
            >>> layer(torch.randn(2, 8, 5, 5)).shape
            torch.Size([2, 12, 5, 5])
        """
        new = F.dropout(self.layers(x), self.drop_rate, self.training)
        return torch.cat([x, new], dim=1)


class Transition(nn.Sequential):
    """``BN-ReLU-conv1x1-avgpool2``: (N, C, H, W) -> (N, out_channels, H // 2, W // 2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.AvgPool2d(2),
        )


class DenseNet(nn.Module):
    """DenseNet-BC feature extractor; the defaults give DenseNet-121.

    Stems: ``small_input=True`` uses the CIFAR stem (a single 3x3 conv to ``num_init_features``
    channels, no pooling: the dense layers start with BN-ReLU themselves); ``False`` uses the
    ImageNet stem (7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool). After the last block:
    BN, ReLU, global average pooling. No classifier: 6,953,856 parameters with the ImageNet
    stem (torchvision's 7,978,856 minus its 1000-way layer), 6,946,048 with the CIFAR stem.

    Args:
        in_channels: input channels.
        growth_rate: channels added by every dense layer (k).
        block_config: dense layers per block.
        bn_size: bottleneck width factor (the 1x1 conv outputs ``bn_size * k`` channels).
        compression: channel factor of each transition, in (0, 1].
        num_init_features: stem output channels.
        small_input: CIFAR stem if True, ImageNet stem if False.
        drop_rate: dropout after each dense layer, in [0, 1).

    Shape:
        - Input: (N, in_channels, H, W); H, W >= 8 (CIFAR stem) or >= 32 (ImageNet stem).
        - Output: (N, out_features), 1024 for DenseNet-121, non-negative (after ReLU).

    Example:
        >>> net = DenseNet(3, growth_rate=4, block_config=(1, 1), num_init_features=8)
        >>> net(torch.randn(2, 3, 16, 16)).shape, net.out_features
        (torch.Size([2, 10]), 10)
    """

    def __init__(
        self,
        in_channels: int = 3,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        bn_size: int = 4,
        compression: float = 0.5,
        num_init_features: int = 64,
        small_input: bool = True,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        (in_channels, growth_rate, bn_size, num_init_features) = check_sizes(
            (in_channels, growth_rate, bn_size, num_init_features),
            "in_channels, growth_rate, bn_size and num_init_features",
        )
        block_config = check_sizes(block_config, "block_config")
        if isinstance(compression, bool) or not isinstance(compression, int | float):
            raise ValueError(f"compression must be a number in (0, 1], got {compression!r}")
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression must be a number in (0, 1], got {compression!r}")
        drop_rate = check_dropout(drop_rate, "drop_rate")
        c = num_init_features
        if small_input:
            stem: list[nn.Module] = [nn.Conv2d(in_channels, c, 3, padding=1, bias=False)]
        else:
            stem = [
                nn.Conv2d(in_channels, c, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            ]
        body: list[nn.Module] = []
        for i, n_layers in enumerate(block_config):
            for _ in range(n_layers):
                body.append(DenseLayer(c, growth_rate, bn_size, drop_rate))
                c += growth_rate
            if i < len(block_config) - 1:
                body.append(Transition(c, int(c * compression)))
                c = int(c * compression)
        self.stem = nn.Sequential(*stem)
        self.blocks = nn.Sequential(*body)
        self.head = nn.Sequential(
            nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.small_input = bool(small_input)
        self.out_features = c
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, out_features) features."""
        return self.head(self.blocks(self.stem(x)))
