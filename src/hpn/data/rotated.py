"""Rotated digits: a multi-task source (classify the digit, regress its rotation angle).

Every image of a base source is rotated once by its own seeded random angle, so the
result is a fixed dataset: the same ``seed`` gives the same angles in every run.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from hpn.data.base import DataSplits, TensorDataset

_SPLITS = ("train", "val", "test")


def rotate_images(images: torch.Tensor, angles: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Rotate images about their centre, counter-clockwise as displayed (row 0 on top).

    Bilinear sampling with :func:`torch.nn.functional.affine_grid` /
    :func:`~torch.nn.functional.grid_sample` (``align_corners=False``, zeros outside the
    image). The rotation is done in pixel units, so non-square images are not sheared.
    An angle of 0 returns the image; 90 equals ``torch.rot90(x, 1, (-2, -1))`` for square
    images.

    Args:
        images: (N, C, H, W) uint8 or float images.
        angles: (N,) angles in degrees.
        chunk: images rotated per call, to bound memory.

    Returns:
        (N, C, H, W) rotated images of the input dtype (uint8 is rounded and clamped).

    Example:
        >>> x = torch.zeros(1, 1, 3, 3, dtype=torch.uint8)
        >>> x[0, 0, 0, 1] = 255  # top middle
        >>> rotate_images(x, torch.tensor([90.0]))[0, 0].tolist()  # now left middle
        [[0, 0, 0], [255, 0, 0], [0, 0, 0]]
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    angles = torch.as_tensor(angles, dtype=torch.float64).flatten()
    if len(angles) != len(images):
        raise ValueError(f"{len(angles)} angles for {len(images)} images")
    if not torch.isfinite(angles).all():
        raise ValueError("rotation angles must be finite")
    height, width = images.shape[-2:]
    out = torch.empty_like(images)
    for start in range(0, len(images), chunk):
        stop = min(start + chunk, len(images))
        x = images[start:stop].to(torch.float32)
        rad = torch.deg2rad(angles[start:stop])
        cos, sin = torch.cos(rad), torch.sin(rad)
        # Output pixel p (centred, pixel units, y pointing down) samples the input at
        # R(-angle) p as seen on screen; in y-down coordinates that is [[c, -s], [s, c]].
        # affine_grid works in normalised coordinates: x_n = x / (W / 2), y_n = y / (H / 2).
        ratio_yx, ratio_xy = height / width, width / height
        theta = torch.zeros(stop - start, 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = cos
        theta[:, 0, 1] = -sin * ratio_yx
        theta[:, 1, 0] = sin * ratio_xy
        theta[:, 1, 1] = cos
        grid = F.affine_grid(theta.to(torch.float32), list(x.shape), align_corners=False)
        rotated = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if images.dtype == torch.uint8:
            rotated = rotated.round().clamp(0, 255)
        out[start:stop] = rotated.to(images.dtype)
    return out


def rotated_digits(base: DataSplits, seed: int = 0, max_angle: float = 360.0) -> DataSplits:
    """Turn a digit source into a multi-task one: digit class and rotation angle.

    Each image of every split is rotated by an angle drawn uniformly from
    ``[0, max_angle)`` degrees (counter-clockwise, see :func:`rotate_images`), once, when
    this function runs. The train / val / test angles come from three independent streams
    of ``numpy.random.SeedSequence(seed)``, so the splits stay as the base source made them
    and each split's angles do not depend on the other splits' sizes. Note that with
    ``max_angle=360`` the angle is periodic (359 degrees looks like -1) while the target
    treats it as a plain number.

    Args:
        base: splits of :class:`TensorDataset` images (N, C, H, W) with a ``"label"``
            target, e.g. from :func:`hpn.data.mnist.load_mnist5k`.
        seed: seed of the angles.
        max_angle: upper end of the angle range in degrees, in (0, 360].

    Returns:
        Multi-task :class:`DataSplits`; x is the rotated image (stored like the base, uint8
        stays uint8), target ``{"label": int64 digit, "value": float32 angle in degrees}``.
        ``info["value_range"]`` is ``[0, max_angle]``.

    Raises:
        ValueError: a bad ``max_angle``, or base splits that are not labelled image tensors.
    """
    if not (math.isfinite(max_angle) and 0.0 < max_angle <= 360.0):
        raise ValueError(f"max_angle must be in (0, 360] degrees, got {max_angle}")
    streams = np.random.SeedSequence(seed).spawn(len(_SPLITS))
    splits = {}
    for name, stream in zip(_SPLITS, streams, strict=True):
        data = getattr(base, name)
        if not isinstance(data, TensorDataset):
            raise ValueError(
                f"rotated_digits needs in-memory TensorDataset splits; the {name} split is "
                f"a {type(data).__name__}"
            )
        if "label" not in data.targets:
            raise ValueError(f"the {name} split has no 'label' target to keep")
        if data.inputs.ndim != 4:
            raise ValueError(
                f"the {name} split must hold images (N, C, H, W), got shape "
                f"{tuple(data.inputs.shape)}"
            )
        rng = np.random.default_rng(stream)
        angles = torch.from_numpy(rng.uniform(0.0, max_angle, size=len(data)))
        # uniform() may round up to max_angle in float64 -> float32; keep [0, max_angle).
        angles = angles.to(torch.float32).clamp(max=float(np.nextafter(np.float32(max_angle), 0)))
        images = rotate_images(data.inputs, angles.double())
        splits[name] = TensorDataset(
            images, {"label": data.targets["label"], "value": angles}, data.transform
        )
    return DataSplits(
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        task="multitask",
        input_shape=base.input_shape,
        num_classes=base.num_classes,
        class_names=base.class_names,
        info={
            **base.info,
            "source": f"rotated_{base.info.get('source', 'digits')}",
            "base_source": base.info.get("source"),
            "rotation_seed": seed,
            "max_angle": max_angle,
            "value_range": [0.0, float(max_angle)],
        },
    )
