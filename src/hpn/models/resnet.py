"""CIFAR-style ResNet (He et al. 2016, section 4.2): ResNet-32 and the other 6n+2 depths."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hpn.models.convnet import init_weights
from hpn.models.mlp import check_sizes

SHORTCUTS = ("A", "B")


class PadShortcut(nn.Module):
    """Option A shortcut: subsample by ``stride`` and zero-pad the new channels. No parameters."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride = stride
        self.pad = planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_planes, H, W) -> (N, planes, ceil(H / stride), ceil(W / stride)).

        Every ``stride``-th row and column is kept; the ``planes - in_planes`` new channels,
        split evenly before and after the old ones, are zero.

        Example:
            >>> out = PadShortcut(2, 4, stride=2)(torch.ones(1, 2, 5, 5))
            >>> out.shape, out.sum(dim=(2, 3)).flatten().tolist()
            (torch.Size([1, 4, 3, 3]), [0.0, 9.0, 9.0, 0.0])
        """
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.pad // 2
        return F.pad(x, (0, 0, 0, 0, half, self.pad - half))


class BasicBlock(nn.Module):
    """``conv3x3-BN-ReLU-conv3x3-BN`` plus shortcut, then ReLU.

    Args:
        in_planes: input channels.
        planes: output channels.
        stride: stride of the first conv (2 at a stage start, else 1).
        shortcut: ``"A"`` (zero-padded identity) or ``"B"`` (1x1 conv + BN projection); only
            used where the shape changes, the identity otherwise.

    Shape:
        (N, in_planes, H, W) -> (N, planes, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride == 1 and in_planes == planes:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(in_planes, planes, stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_planes, H, W) -> (N, planes, ceil(H / stride), ceil(W / stride)), >= 0.

        Example:
            >>> block = BasicBlock(16, 32, stride=2)
            >>> block(torch.randn(2, 16, 7, 7)).shape
            torch.Size([2, 32, 4, 4])
        """
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNet of He et al. (2016): a 3x3 stem, 3 stages of n basic blocks with 16, 32
    and 64 channels (stride 2 at the start of stages 2 and 3), global average pooling.

    ``depth = 6n + 2`` counts the conv layers plus the (omitted) classifier: 32 gives n = 5 and
    about 0.46M parameters with a 10-way classifier (463,504 without it, option A). Shortcut
    option A, the parameter-free zero-padded identity, is the default as in the paper's CIFAR
    experiments; option B uses 1x1 conv projections where the shape changes.

    Args:
        in_channels: input channels.
        depth: 6n + 2 (20, 32, 44, 56, 110, ...).
        shortcut: ``"A"`` or ``"B"``.
        widths: channels of the three stages (the paper's 16, 32, 64).

    Shape:
        - Input: (N, in_channels, H, W), any size (32x32 as designed, 28x28 works too).
        - Output: (N, widths[-1]), non-negative (after ReLU).

    Example:
        >>> net = CifarResNet(3, depth=20)
        >>> net(torch.randn(2, 3, 32, 32)).shape, net.out_features
        (torch.Size([2, 64]), 64)
    """

    def __init__(
        self,
        in_channels: int = 3,
        depth: int = 32,
        shortcut: str = "A",
        widths: Sequence[int] = (16, 32, 64),
    ):
        super().__init__()
        (in_channels,) = check_sizes((in_channels,), "in_channels")
        self.widths = check_sizes(widths, "widths")
        if len(self.widths) != 3:
            raise ValueError(f"widths must be three stage widths, got {widths!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or depth % 6 != 2:
            raise ValueError(f"depth must be 6n + 2 with n >= 1, got {depth!r}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, self.widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(self.widths[0]),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        in_planes = self.widths[0]
        for stage, planes in enumerate(self.widths):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(in_planes, planes, stride, shortcut))
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.depth = depth
        self.out_features = in_planes
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, 64) features."""
        return self.pool(self.blocks(self.stem(x)))
