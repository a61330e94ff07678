"""How an image file becomes an input of a source's network, for prediction on new files.

A source whose training inputs are images scaled to [0, 1] can take new image files prepared
the same way: decoded by :func:`hpn.data.folders.load_image` (RGB, bilinear resize to the
source's (H, W)), scaled by 1/255, and for one-channel sources reduced to gray with Pillow's
luma weights (a gray file gives back its own pixel values). ``image_folders`` and ``omniart``
decode their training files exactly so; ``cifar100`` and the MNIST family store the same
uint8 pixels in arrays. Other sources (synthetic vectors, glyph renders cropped to their ink)
take no image files: :func:`image_inputs` returns None for them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hpn.data.folders import load_image

#: Sources whose inputs are whole images in [0, 1], by registry name; channels and size come
#: from the source's ``input_shape``.
IMAGE_SOURCES = frozenset(
    {
        "image_folders",
        "omniart",
        "cifar100",
        "mnist5k",
        "fashion_mnist",
        "idx",
        "rotated_mnist5k",
        "rotated_fashion_mnist",
    }
)

#: ITU-R 601-2 luma weights, as Pillow's ``convert("L")``.
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class ImageInputs:
    """Image files as a source's inputs: RGB or gray, resized to (H, W), scaled to [0, 1].

    Attributes:
        channels: 3 (RGB) or 1 (gray).
        size: (H, W) every image is resized to.

    Example:
        >>> ImageInputs(1, (28, 28)).describe()
        'image files, decoded to gray, resized to 28x28, scaled to [0, 1]'
    """

    channels: int
    size: tuple[int, int]

    def load(self, path: str | os.PathLike) -> torch.Tensor:
        """One file as a (C, H, W) float32 input in [0, 1].

        Raises:
            FileNotFoundError: no such file.
            ValueError: an unreadable image (the message names the file).
        """
        x = load_image(path, self.size).float() / 255.0
        if self.channels == 1:
            x = (torch.tensor(_LUMA)[:, None, None] * x).sum(0, keepdim=True)
        return x

    def load_batch(self, paths: Sequence[str | os.PathLike]) -> torch.Tensor:
        """Files as one (M, C, H, W) float32 batch."""
        return torch.stack([self.load(path) for path in paths])

    def describe(self) -> str:
        """What files the run takes, in words."""
        colour = "RGB" if self.channels == 3 else "gray"
        return (
            f"image files, decoded to {colour}, resized to {self.size[0]}x{self.size[1]}, "
            "scaled to [0, 1]"
        )


def image_inputs(source: str, input_shape: Sequence[int]) -> ImageInputs | None:
    """How image files become inputs of a network trained on ``source``, or None when that
    source's inputs are not images (vectors, glyph renders).

    Args:
        source: a data source name (:mod:`hpn.data.registry`; ``-`` may stand for ``_``).
        input_shape: the source's shape of one input, (C, H, W) for images.

    Example:
        >>> image_inputs("image_folders", (3, 64, 64))
        ImageInputs(channels=3, size=(64, 64))
        >>> image_inputs("clusters", (300,)) is None
        True
    """
    key = source.strip().lower().replace("-", "_")
    shape = tuple(int(s) for s in input_shape)
    if key not in IMAGE_SOURCES or len(shape) != 3 or shape[0] not in (1, 3):
        return None
    return ImageInputs(shape[0], (shape[1], shape[2]))
