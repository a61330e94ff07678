"""Random changes of glyph images: :class:`GlyphAugment` (and :class:`ScanAugment`, which adds
scan-like degradations) while training, and :func:`degrade_images` to make held-out renders
look scanned."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(
    n: int,
    generator: torch.Generator | None,
    rotation: float,
    scale: float,
    shear: float,
    shift: float,
) -> torch.Tensor:
    """(n, 2, 3) affine matrices for ``F.affine_grid``: rotation up to ``rotation`` degrees,
    scale in ``1 +- scale``, shear up to ``shear``, shift up to ``shift`` of the half-width,
    each uniform and independent."""
    u = torch.rand(n, 5, generator=generator) * 2 - 1
    angle = u[:, 0] * math.radians(rotation)
    s = 1 + u[:, 1] * scale
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin + u[:, 2] * shear
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    theta[:, :, 2] = u[:, 3:] * shift
    return theta


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


class GlyphAugment:
    """Training-time augmentation of one glyph: a small random affine map, then a random
    change of stroke width (a blend towards a 3 x 3 max filter, thicker, or min filter,
    thinner). Randomness comes from torch's global generator (the trainer seeds it).

    Args:
        rotation: largest rotation, degrees.
        scale: largest relative change of size.
        shear: largest shear.
        shift: largest shift, as a share of the half-width.
        stroke: probability of changing the stroke width.

    Call:
        x: (C, H, W) float image in [0, 1] -> (C, H, W).
    """

    def __init__(self, rotation=6.0, scale=0.08, shear=0.1, shift=0.06, stroke=0.5):
        self.rotation, self.scale, self.shear, self.shift = rotation, scale, shear, shift
        self.stroke = stroke

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        theta = random_affine(1, None, self.rotation, self.scale, self.shear, self.shift)
        x = _warp(x[None], theta)
        r = float(torch.rand(()))
        if r < self.stroke:
            sign = 1.0 if r < self.stroke / 2 else -1.0
            filtered = sign * F.max_pool2d(sign * x, 3, stride=1, padding=1)
            x = torch.lerp(x, filtered, float(torch.rand(())))
        return x[0]

    def __repr__(self) -> str:
        return (
            f"GlyphAugment(rotation={self.rotation}, scale={self.scale}, shear={self.shear}, "
            f"shift={self.shift}, stroke={self.stroke})"
        )


def _scan_parameters(n: int, generator: torch.Generator | None, strength: float) -> dict:
    """Random per-image settings of a scan-like degradation, ``strength`` scaling each."""
    g = generator
    return {
        "theta": random_affine(
            n, g, 4 * strength, 0.06 * strength, 0.08 * strength, 0.1 * strength
        ),
        "low": (torch.rand(n, generator=g) * strength + 1).reciprocal(),
        "sigma": torch.rand(n, generator=g) * 0.9 * strength,
        "ink": 1 - torch.rand(n, generator=g) * 0.3 * strength,
        "paper": torch.rand(n, generator=g) * 0.15 * strength,
        "noise_std": torch.rand(n, generator=g) * 0.06 * strength,
    }


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with one sigma (N,) per image (5 taps)."""
    _, c, h, w = x.shape
    taps = torch.arange(-2, 3, dtype=torch.float32)
    kernel = torch.exp(-(taps**2) / (2 * sigma[:, None].clamp(min=1e-3) ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)
    flat = x.reshape(1, -1, h, w)
    k = kernel.repeat_interleave(c, 0)
    flat = F.conv2d(F.pad(flat, (2, 2, 0, 0), mode="replicate"), k[:, None, None, :], groups=len(k))
    flat = F.conv2d(F.pad(flat, (0, 0, 2, 2), mode="replicate"), k[:, None, :, None], groups=len(k))
    return flat.reshape(x.shape)


def _scan(x: torch.Tensor, p: dict, generator: torch.Generator | None) -> torch.Tensor:
    """Apply the settings ``p`` (one row per image) to (N, C, H, W) floats in [0, 1]: the
    affine map, a lower resolution and back, blur, contrast, noise. Returns (N, C, H, W)
    in [0, 1]."""
    _, _, h, w = x.shape
    x = _warp(x, p["theta"])
    sides = (p["low"] * min(h, w)).round().clamp(min=4).long()
    for side in sides.unique().tolist():
        rows = torch.nonzero(sides == side).flatten()
        small = F.interpolate(x[rows], scale_factor=side / min(h, w), mode="area")
        x[rows] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    x = _blur(x, p["sigma"])
    lo, hi = p["paper"].view(-1, 1, 1, 1), p["ink"].view(-1, 1, 1, 1)
    x = lo + (hi - lo) * x
    x = x + torch.randn(x.shape, generator=generator) * p["noise_std"].view(-1, 1, 1, 1)
    return x.clamp(0, 1)


def degrade_images(images: torch.Tensor, strength: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Make clean renders look scanned or photographed, the same way for the same seed.

    Per image, scaled by ``strength``: an affine map (up to 4 degrees, 6 % size, 0.08
    shear, 5 % shift), a lower resolution (side down to 1 / (1 + strength)) and back, a
    Gaussian blur (sigma up to 0.9 px), lower contrast on a grey background, and noise
    (std up to 6 % of the range).

    Args:
        images: (N, C, H, W) uint8.
        strength: 0 leaves the images as they are; 1 is the default level.
        seed: seed of every random choice.

    Returns:
        (N, C, H, W) uint8.
    """
    if strength <= 0 or len(images) == 0:
        return images
    g = torch.Generator().manual_seed(seed)
    params = _scan_parameters(len(images), g, strength)
    out = torch.empty_like(images)
    for start in range(0, len(images), 4096):
        part = slice(start, start + 4096)
        x = _scan(images[part].float() / 255, {k: v[part] for k, v in params.items()}, g)
        out[part] = (x * 255).round().to(torch.uint8)
    return out


class ScanAugment(GlyphAugment):
    """:class:`GlyphAugment`, then with probability ``scan`` a scan-like degradation of a
    random strength up to ``strength`` (the affine map, lower resolution and back, blur,
    contrast, noise of :func:`degrade_images`), thresholded to two levels with probability
    ``threshold`` (a bilevel scan). Randomness comes from torch's global generator; the
    held-out degraded renders use their own seeded draws, so training never sees them.

    Args:
        scan: probability of the degradation.
        strength: largest strength (1 is :func:`degrade_images`' default level).
        threshold: probability of thresholding a degraded image, at a random level in
            [0.35, 0.65] between its darkest and lightest value.
        **kwargs: :class:`GlyphAugment`'s settings.

    Call:
        x: (C, H, W) float image in [0, 1] -> (C, H, W).
    """

    def __init__(self, scan=0.5, strength=1.5, threshold=0.2, **kwargs):
        super().__init__(**kwargs)
        self.scan, self.strength, self.threshold = scan, strength, threshold

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = super().__call__(x)
        if float(torch.rand(())) >= self.scan:
            return x
        strength = float(torch.rand(())) * self.strength
        x = _scan(x[None].clone(), _scan_parameters(1, None, strength), None)[0]
        if float(torch.rand(())) < self.threshold:
            lo, hi = x.min(), x.max()
            level = lo + (hi - lo) * (0.35 + 0.3 * float(torch.rand(())))
            x = (x > level).to(x.dtype)
        return x

    def __repr__(self) -> str:
        return (
            f"ScanAugment(scan={self.scan}, strength={self.strength}, "
            f"threshold={self.threshold}, {super().__repr__()})"
        )
