"""Type designs: probe renders that find clones (identical faces), grouping faces into
designs, and the checks that keep held-out designs out of training."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from hpn.data.glyphs.fonts import _matches

PROBES = 128  # probe characters rendered by every face to find identical designs
PROBE_SIZE = 32
MAX_SHARED_PROBES = 2  # probes a training face may render (nearly) like a held-out face
NEAR = 3.0  # "nearly alike": mean absolute difference in grey levels (of 255) per pixel
HELD_OUT_SPLITS = ("val", "test", "style")  # the splits of held-out designs


def _probe_chars(chars: list[str], drawn: np.ndarray) -> list[str]:
    """:data:`PROBES` characters drawn by many faces (``drawn`` is (F, C)), spread over the
    code points (so not only the simplest ideographs at the start of a block)."""
    counts = drawn.sum(0)
    order = np.lexsort((np.arange(len(chars)), -counts))[: 4 * PROBES]
    common = np.sort(order[counts[order] > 0])
    if len(common) > PROBES:
        common = common[((np.arange(PROBES) + 0.5) * len(common) / PROBES).astype(int)]
    return [chars[i] for i in common]


def _digest(images: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """(n,) uint64 hashes of (n, ...) uint8 images, 0 where not ok: a sum of the images'
    64-bit words times fixed random odd numbers, mixed (equal images, equal hashes; a
    different pair collides with a chance of about 2 ** -60)."""
    flat = images.reshape(len(images), -1)
    width = -(-flat.shape[1] // 8)
    rng = np.random.default_rng(0x5EED)
    weights = rng.integers(0, 2**64 - 1, width, dtype=np.uint64, endpoint=True) | np.uint64(1)
    out = np.zeros(len(images), np.uint64)
    for start in range(0, len(flat), 65536):
        part = flat[start : start + 65536]
        words = np.zeros((len(part), width * 8), np.uint8)
        words[:, : flat.shape[1]] = part
        h = (words.view(np.uint64) * weights).sum(1, dtype=np.uint64)
        h ^= h >> np.uint64(31)
        h *= np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
        out[start : start + 65536] = h
    out[out == 0] = 1
    out[~np.asarray(ok, bool)] = 0
    return out


def _identical(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair of faces: probes both draw, and probes rendered identically (F, F)."""
    drawn = hashes != 0
    shared = drawn.astype(np.int32) @ drawn.T.astype(np.int32)
    same = np.zeros_like(shared)
    for j in range(hashes.shape[1]):
        column = hashes[:, j]
        same += (column[:, None] == column[None, :]) & drawn[:, j, None] & drawn[None, :, j]
    return shared, same


def _components(n: int, pairs: Iterable[tuple[Any, Any]]) -> np.ndarray:
    """(n,) int64 ids of the connected components of the pairs, numbered by first member."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = root(int(a)), root(int(b))
        parent[max(ra, rb)] = min(ra, rb)
    roots = [root(i) for i in range(n)]
    ids = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return np.array([ids[r] for r in roots], dtype=np.int64)


def group_faces(hashes: np.ndarray, families: Sequence[str] | None = None) -> np.ndarray:
    """Group faces: by identical renders, and optionally by family name too.

    Two faces whose probe renders are identical on more than half of the probes both draw
    are clones (grouped transitively). With ``families``, faces of one family name are
    joined as well, so that a type design's weights and widths, and their clones, form
    one group: the unit that is counted and held out.

    Args:
        hashes: (F, P) uint64 hashes of the probe renders, 0 where a face lacks a probe.
        families: F family names, or None to group clones only.

    Returns:
        (F,) int64 group ids, numbered by first face.

    Example:
        >>> h = np.array([[1, 2, 3], [1, 2, 4], [5, 6, 7], [8, 9, 0]], dtype=np.uint64)
        >>> group_faces(h).tolist(), group_faces(h, ["a", "b", "c", "c"]).tolist()
        ([0, 0, 1, 2], [0, 0, 1, 1])
    """
    shared, same = _identical(hashes)
    pairs = list(zip(*np.nonzero(np.triu(2 * same > shared, 1)), strict=True))
    if families is not None:
        first: dict[str, int] = {}
        pairs += [(first.setdefault(name, i), i) for i, name in enumerate(families)]
    return _components(len(hashes), pairs)


def _near(probes: np.ndarray, drawn: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per face and face of ``rows``: probes rendered (nearly) alike, and probes both draw,
    (F, len(rows)) each. Alike: a mean absolute difference under :data:`NEAR` grey levels."""
    flat = probes.reshape(*probes.shape[:2], -1).astype(np.int16)
    limit = NEAR * flat.shape[2]
    close = np.zeros((len(flat), len(rows)), np.int64)
    shared = np.zeros_like(close)
    for k, j in enumerate(rows):
        both = drawn & drawn[j]
        gap = np.abs(flat - flat[j]).sum(2, dtype=np.int32)
        close[:, k], shared[:, k] = ((gap < limit) & both).sum(1), both.sum(1)
    return close, shared


def _held_out(
    faces: list[dict[str, Any]],
    design: np.ndarray,
    probes: np.ndarray,
    hashes: np.ndarray,
    val_fonts: Sequence[str],
    test_fonts: Sequence[str],
    style_fonts: Sequence[str] = (),
) -> tuple[dict[int, str], dict[int, str]]:
    """Design id -> "val" / "test" / "style" for the held-out fonts' designs, and design
    id -> why for training designs left out for rendering more than
    :data:`MAX_SHARED_PROBES` probes (nearly) like a held-out face."""
    role: dict[int, str] = {}
    for split, patterns in (("val", val_fonts), ("test", test_fonts), ("style", style_fonts)):
        for pattern in patterns:
            hits = [i for i, face in enumerate(faces) if _matches(face, [pattern])]
            if not hits:
                raise ValueError(
                    f"{split}_fonts entry {pattern!r} matches no installed face that draws "
                    "any of these characters"
                )
            for i in hits:
                other = role.setdefault(int(design[i]), split)
                if other != split:
                    raise ValueError(
                        f"{split} font {pattern!r} ({faces[i]['full']}) is the same design as "
                        f"a {other} font"
                    )
    held = np.flatnonzero(np.isin(design, list(role)))
    close, shared = _near(probes, hashes != 0, held)
    excluded: dict[int, str] = {}
    for i in np.flatnonzero(~np.isin(design, list(role))).tolist():
        k = int(np.argmax(close[i]))
        if close[i, k] > MAX_SHARED_PROBES and int(design[i]) not in excluded:
            excluded[int(design[i])] = (
                f"{faces[i]['full']} renders {close[i, k]} of {shared[i, k]} probes like "
                f"held-out {faces[held[k]]['full']}"
            )
    return role, excluded


def _drop_copies(split: np.ndarray, labels: np.ndarray, digests: np.ndarray) -> dict[str, int]:
    """Mark (in place) training images identical to a held-out image of their class as
    ``"copy"``, then repeats of an image of a class within a split as ``"duplicate"``."""
    key = digests ^ (labels.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    copy = (split == "train") & np.isin(key, key[np.isin(split, HELD_OUT_SPLITS)])
    split[copy] = "copy"
    duplicates = 0
    for name in ("train", *HELD_OUT_SPLITS):
        rows = np.flatnonzero(split == name)
        repeat = np.ones(len(rows), bool)
        repeat[np.unique(key[rows], return_index=True)[1]] = False
        split[rows[repeat]] = "duplicate"
        duplicates += int(repeat.sum())
    return {
        "empty": int((split == "empty").sum()),
        "copies_of_held_out": int(copy.sum()),
        "duplicates": duplicates,
    }
