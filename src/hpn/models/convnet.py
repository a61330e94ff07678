"""Small CNN for 28x28 grey images (MNIST-like), plus the shared conv/BN initialisation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hpn.models.mlp import check_dropout, check_sizes


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) conv weights with zero bias; BatchNorm weight 1, bias 0.

    Linear layers keep PyTorch's default initialisation.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ConvNet(nn.Module):
    """``conv3x3-BN-ReLU-maxpool2`` stages, a 7x7 adaptive average pool, ``Linear-ReLU``.

    With the defaults on 28x28 input: 32 and 64 channels, 28 -> 14 -> 7, so the adaptive pool
    is the identity and the linear layer sees 64*7*7 = 3136 values. Other small sizes (e.g.
    32x32) are pooled to 7x7 first.

    Args:
        in_channels: input channels (1 for grey images).
        features: width of the final linear layer, the output size.
        channels: output channels of each conv stage.
        dropout: dropout probability before the linear layer, in [0, 1).

    Shape:
        - Input: (N, in_channels, H, W), H and W >= 2 ** len(channels).
        - Output: (N, features), non-negative (after ReLU).

    Example:
        >>> net = ConvNet(1)
        >>> net(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 128])
    """

    pool_size = 7

    def __init__(
        self,
        in_channels: int = 1,
        features: int = 128,
        channels: Sequence[int] = (32, 64),
        dropout: float = 0.0,
    ):
        super().__init__()
        (in_channels,) = check_sizes((in_channels,), "in_channels")
        (features,) = check_sizes((features,), "features")
        channels = check_sizes(channels, "channels")
        dropout = check_dropout(dropout)
        stages: list[nn.Module] = []
        width = in_channels
        for c in channels:
            stages += [
                nn.Conv2d(width, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            width = c
        self.features = nn.Sequential(*stages, nn.AdaptiveAvgPool2d(self.pool_size))
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(width * self.pool_size**2, features),
            nn.ReLU(inplace=True),
        )
        self.out_features = features
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, features) features."""
        return self.head(self.features(x))
