"""Multi-layer perceptron backbone: flatten, then Linear -> BatchNorm1d -> activation -> Dropout."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}


def check_dropout(p: float, name: str = "dropout") -> float:
    """Return ``p`` as a float if it is a probability in [0, 1), else raise ``ValueError``."""
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {p!r}")
    return float(p)


def check_sizes(sizes: Sequence[int], name: str, allow_empty: bool = False) -> tuple[int, ...]:
    """Return ``sizes`` as a tuple of positive ints, else raise ``ValueError`` naming ``name``."""
    if isinstance(sizes, int | str) or not isinstance(sizes, Sequence):
        raise ValueError(f"{name} must be a sequence of positive ints, got {sizes!r}")
    sizes = tuple(sizes)
    bad = [s for s in sizes if isinstance(s, bool) or not isinstance(s, int) or s < 1]
    if bad or (not sizes and not allow_empty):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {sizes!r}")
    return sizes


class MLP(nn.Module):
    """Fully connected backbone (the blog's 300-300 net with batch norm, ReLU and dropout).

    Every hidden layer is ``Linear -> BatchNorm1d -> activation -> Dropout``. Linear layers keep
    PyTorch's default initialisation; BatchNorm starts at weight 1, bias 0. There is no
    output layer: a head goes on top.

    Args:
        in_features: size of the flattened input.
        hidden: widths of the hidden layers; ``()`` makes the module a plain flatten.
        batch_norm: put a ``BatchNorm1d`` after each ``Linear`` (whose bias is then dropped).
        dropout: dropout probability after each activation, in [0, 1).
        activation: one of ``"relu"``, ``"gelu"``, ``"elu"``, ``"leaky_relu"``, ``"tanh"``,
            ``"silu"``.

    Shape:
        - Input: (N, *) with ``in_features`` elements per sample.
        - Output: (N, out_features), ``out_features = hidden[-1]`` (``in_features`` if none).

    Example:
        >>> net = MLP(784)
        >>> net(torch.randn(4, 1, 28, 28)).shape, net.out_features
        (torch.Size([4, 300]), 300)
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (300, 300),
        batch_norm: bool = True,
        dropout: float = 0.2,
        activation: str = "relu",
    ):
        super().__init__()
        (in_features,) = check_sizes((in_features,), "in_features")
        hidden = check_sizes(hidden, "hidden", allow_empty=True)
        dropout = check_dropout(dropout)
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {list(ACTIVATIONS)}")
        if not isinstance(batch_norm, bool):
            raise ValueError(f"batch_norm must be a bool, got {batch_norm!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.layers = nn.Sequential(*layers)
        self.in_features = in_features
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, *) input -> (N, out_features) features."""
        return self.layers(x)
