"""The glyphs source: :func:`load_glyphs` turns installed fonts into train / val / test
splits, one class per character, held-out fonts' designs never in training.

Two held-out groups can be tested: the test fonts (standard designs that draw every candidate)
and the style fonts (designs far from the training styles, each scored on the classes it
draws). The classes and the training split do not depend on which one ``test_group`` picks, so
one trained network is scored on both (``hpn evaluate RUN --set
data.options.test_group=styles``).

Two caches under ``cache_dir``, both written atomically under a lock: the scan (faces,
coverage, probe hashes), keyed by the font files' paths, sizes and mtimes and the characters,
and the renders, keyed by the same fonts, the faces and characters rendered and the size.
"""

from __future__ import annotations

import importlib.util
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpn.data.base import DataSplits, TensorDataset
from hpn.data.glyphs.augment import GlyphAugment, ScanAugment, degrade_images
from hpn.data.glyphs.characters import CHARACTER_SETS, parse_characters
from hpn.data.glyphs.designs import _digest, _drop_copies, _held_out, group_faces
from hpn.data.glyphs.fonts import APT_PACKAGES, FONT_DIRS, FONT_SUFFIXES, _matches, find_font_files
from hpn.data.glyphs.render import _render, _scan, default_cache_dir
from hpn.extras import install_hint

_CHUNK = 4_000  # glyphs per rendering task

#: Default held-out fonts (family-name substrings) per character set: (validation, test).
#: Both measured clean on Debian's fonts (:data:`APT_PACKAGES`): no training face renders
#: any of the 128 probes nearly like a held-out face (see :data:`NEAR`). For Hangul,
#: UnDotum ~ WenQuanYi Zen Hei and UnBatang ~ cwTeXMing are near copies: hold out both or
#: neither.
HELD_OUT_FONTS = {
    "cjk": (("HanaMinA", "Droid Sans Fallback"), ("TW-Kai", "TW-Sung", "WenQuanYi Zen Hei")),
    "hangul": (
        ("Baekmuk Batang", "NanumBarunpen"),
        ("NanumMyeongjo", "NanumGothic", "Baekmuk Gulim"),
    ),
}


#: Default second held-out group (``style_fonts="default"``) per character set: designs far
#: from the training styles (handwriting, brush, pixel, rounded), held out of training and
#: validation as a group and scored with ``test_group="styles"``.
STYLE_FONTS = {
    "cjk": ("LXGW WenKai", "Klee One", "KouzanBrushFont", "Unifont", "DotGothic16", "cwTeXYen"),
}
TEST_GROUPS = ("fonts", "styles")


def _character_set(chars: list[str]) -> str | None:
    """The name of the :data:`CHARACTER_SETS` entry whose range holds every one of ``chars``."""
    points = [ord(c) for c in chars]
    for name, (first, last) in CHARACTER_SETS.items():
        if first <= min(points) and max(points) <= last:
            return name
    return None


def _default_held_out(
    spec: object,
    chars: list[str],
    val_fonts: Sequence[str] | None,
    test_fonts: Sequence[str] | None,
) -> tuple[list[str], list[str]]:
    if val_fonts is None or test_fonts is None:
        name = _character_set(chars)
        if name not in HELD_OUT_FONTS:
            raise ValueError(
                f"characters {spec!r} have no default held-out fonts; pass val_fonts and test_fonts"
            )
        val_fonts = HELD_OUT_FONTS[name][0] if val_fonts is None else val_fonts
        test_fonts = HELD_OUT_FONTS[name][1] if test_fonts is None else test_fonts
    for name, value in (("val_fonts", val_fonts), ("test_fonts", test_fonts)):
        if isinstance(value, str) or not value or not all(isinstance(v, str) and v for v in value):
            raise ValueError(
                f"{name} must be a non-empty list of family-name substrings, got {value!r}"
            )
    return list(val_fonts), list(test_fonts)


def _style_group(
    spec: object, chars: list[str], style_fonts: Sequence[str] | str, test_group: str
) -> list[str]:
    """The style fonts as a list (``"default"``: :data:`STYLE_FONTS` of the character set),
    checked against ``test_group``."""
    if test_group not in TEST_GROUPS:
        raise ValueError(f"test_group must be one of {', '.join(TEST_GROUPS)}, got {test_group!r}")
    if style_fonts == "default":
        name = _character_set(chars)
        if name not in STYLE_FONTS:
            raise ValueError(f"characters {spec!r} have no default style_fonts; name them")
        style_fonts = STYLE_FONTS[name]
    if isinstance(style_fonts, str) or not all(isinstance(v, str) and v for v in style_fonts):
        raise ValueError(
            f"style_fonts must be a list of family-name substrings or 'default', got {style_fonts!r}"
        )
    if test_group == "styles" and not style_fonts:
        raise ValueError("test_group='styles' needs style_fonts (a list, or 'default')")
    return list(style_fonts)


def load_glyphs(
    characters: str = "cjk",
    num_classes: int | None = 1000,
    val_fonts: Sequence[str] | None = None,
    test_fonts: Sequence[str] | None = None,
    min_train_fonts: int = 20,
    size: int = 32,
    seed: int = 0,
    font_dirs: Sequence[str | os.PathLike] | None = None,
    exclude_fonts: Sequence[str] = (),
    style_fonts: Sequence[str] | str = (),
    test_group: str = "fonts",
    cache_dir: str | os.PathLike | None = None,
    augment: bool | str = False,
    degrade: float = 0.0,
    workers: int | None = None,
) -> DataSplits:
    """Characters rendered from installed fonts: one class per character, one image per
    rendering of it; training designs in ``train``, held-out fonts' designs in ``val`` and
    ``test``.

    A character is a candidate when at least ``min_train_fonts`` training designs draw it
    and every entry of ``val_fonts`` and ``test_fonts`` draws it; ``num_classes`` of them
    are drawn with ``seed`` and numbered by code point (so ``seed`` picks the problem).
    Each clone group of a design (a weight or width; see the module notes) renders a class
    once, with its first face (in file order) that draws the character; weights of one
    design count once for ``min_train_fonts`` but each gives an image.

    The held-out groups and the caches are described in the module notes.

    Args:
        characters: see :func:`parse_characters` (``"cjk"``, ``"hangul"``, ranges, a file).
        num_classes: K; ``None`` takes every candidate.
        val_fonts, test_fonts: family-name substrings (any case) of the held-out fonts.
            ``None``: for CJK ideographs, validation HanaMinA and Droid Sans Fallback and
            test TW-Kai, TW-Sung and WenQuanYi Zen Hei; for Hangul see
            :data:`HELD_OUT_FONTS`. Other character sets must name them.
        min_train_fonts: training designs a candidate needs.
        size: side of the square images, >= 8.
        seed: seed of the class draw and of the degradation.
        font_dirs: folders (searched recursively) or font files; default :data:`FONT_DIRS`.
        exclude_fonts: family-name substrings of faces to leave out entirely.
        style_fonts: family-name substrings of a second held-out group, or ``"default"``
            (:data:`STYLE_FONTS`: for CJK ideographs, handwriting, brush, pixel and rounded
            designs). Their designs never train or validate, and they do not limit the
            candidate characters: each renders the classes it draws.
        test_group: ``"fonts"``: the test split is the ``test_fonts``' renders;
            ``"styles"``: the ``style_fonts``' renders.
        cache_dir: default :func:`default_cache_dir`.
        augment: ``True``: use :class:`GlyphAugment` as the transform of the training split
            (per item, each time it is read); ``"scan"``: :class:`ScanAugment`, which also
            degrades half the items like scans (blur, lower resolution, noise, contrast,
            thresholding); val and test stay as rendered.
        degrade: strength of :func:`degrade_images` on val and test (0: clean renders;
            1: the default level), the same images for the same seed.
        workers: processes for scanning and rendering (``None``: the CPUs available; 1:
            this process only); jobs under :data:`PARALLEL_MIN_GLYPHS` glyphs use one.

    Returns:
        Classification :class:`DataSplits`; x is (1, size, size) float in [0, 1] (stored
        as uint8, ink bright), target ``{"label": int64}``, class names the characters;
        ``info`` states fonts, designs, characters and counts per split.

    Raises:
        ModuleNotFoundError: fontTools or Pillow is not installed (the ``data`` extra).
        FileNotFoundError: no font files (the message says where it looked and what to
            install).
        ValueError: a bad option, a held-out entry no face matches, a validation font of
            the same design as a test font, characters no font draws, or K beyond the
            candidates (the message names the largest K available).
    """
    chars = _check_options(characters, num_classes, min_train_fonts, size, degrade, augment)
    val_fonts, test_fonts = _default_held_out(characters, chars, val_fonts, test_fonts)
    style_fonts = _style_group(characters, chars, style_fonts, test_group)
    workers = _available_cpus() if workers is None else workers
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dirs, files, manifest = _font_files(font_dirs)
    found = _find_designs(files, manifest, chars, cache, workers, exclude_fonts, characters, dirs)
    found.role, found.excluded = _held_out(
        found.faces, found.design, found.probes, found.hashes, val_fonts, test_fonts, style_fonts
    )
    candidates = _candidates(
        found, val_fonts + test_fonts, min_train_fonts, num_classes, characters
    )
    k = num_classes or len(candidates)
    picked = np.sort(np.random.default_rng(seed).choice(candidates, k, replace=False))
    classes = [chars[i] for i in picked]
    made = _render_classes(found, picked, classes, size, manifest, cache, workers)
    tested = "style" if test_group == "styles" else "test"
    splits = [_dataset(made, name, degrade, seed) for name in ("train", "val", tested)]
    if augment:
        splits[0].transform = ScanAugment() if augment == "scan" else GlyphAugment()
    info = {
        "source": "glyphs",
        "characters": str(characters),
        "classes": "".join(classes),
        "candidates": len(candidates),
        "min_train_fonts": min_train_fonts,
        "size": size,
        "seed": seed,
        "font_dirs": dirs,
        "fonts": _font_counts(found, len(files)),
        "val_fonts": val_fonts,
        "test_fonts": test_fonts,
        "style_fonts": style_fonts,
        "test_group": test_group,
        **_describe(found, made, splits, k, augment, degrade),
    }
    train, val, test = splits
    return DataSplits(train, val, test, "classification", (1, size, size), k, classes, info)


def _check_options(
    characters: str,
    num_classes: int | None,
    min_train_fonts: int,
    size: int,
    degrade: float,
    augment: bool | str,
) -> list[str]:
    """The characters of the spec, after checking the libraries and the numeric options."""
    for module in ("fontTools", "PIL"):
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(
                f"the glyphs source needs fontTools and Pillow; {module} is missing: "
                f"{install_hint('data')}"
            )
    chars = parse_characters(characters)
    for name, value, low in (("size", size, 8), ("min_train_fonts", min_train_fonts, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
        raise ValueError(f"num_classes must be an int >= 2 (or None for all), got {num_classes!r}")
    if not 0 <= float(degrade) <= 3:
        raise ValueError(f"degrade must be a strength in [0, 3], got {degrade!r}")
    if augment not in (True, False, "scan"):
        raise ValueError(f"augment must be true, false or 'scan', got {augment!r}")
    return chars


@dataclass
class _Designs:
    """The usable faces of the fonts and how they group (see the package notes)."""

    faces: list[dict[str, Any]]  # F faces: path, index, names
    drawn: np.ndarray  # (F, C) bool: the characters each face draws
    probes: np.ndarray  # (F, P, S, S) uint8 probe renders
    hashes: np.ndarray  # (F, P) uint64 hashes of the probe renders, 0 where not drawn
    clone: np.ndarray  # (F,) clone group of each face
    design: np.ndarray  # (F,) design of each face
    total: int  # faces in the files, usable or not
    skipped: list[dict[str, Any]]  # faces that cannot be read or rendered
    scan_hit: bool  # the scan came from the cache
    # both filled by _held_out once the held-out fonts are known:
    role: dict[int, str] = field(default_factory=dict)  # held-out design -> "val" / "test"
    excluded: dict[int, str] = field(default_factory=dict)  # training design left out -> why

    @property
    def designs(self) -> list[int]:
        return list(dict.fromkeys(self.design.tolist()))

    @property
    def train_designs(self) -> list[int]:
        return [d for d in self.designs if d not in self.role and d not in self.excluded]


def _font_files(
    font_dirs: Sequence[str | os.PathLike] | None,
) -> tuple[list[str], list[Path], list[tuple[str, int, int]]]:
    """The folders searched, the font files found there and their (path, size, mtime)."""
    dirs = [str(Path(d).expanduser()) for d in (font_dirs if font_dirs is not None else FONT_DIRS)]
    files = find_font_files(dirs)
    if not files:
        raise FileNotFoundError(
            f"no font files ({', '.join(FONT_SUFFIXES)}) found in {', '.join(dirs)}; for CJK "
            f"ideographs run: apt-get install -y --no-install-recommends {APT_PACKAGES}"
        )
    return dirs, files, [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]


def _find_designs(
    files: list[Path],
    manifest: list[tuple[str, int, int]],
    chars: list[str],
    cache: Path,
    workers: int,
    exclude_fonts: Sequence[str],
    spec: str,
    dirs: list[str],
) -> _Designs:
    """Scan the faces (warning about the unusable ones), keep those that draw any of
    ``chars`` and are not excluded, and group them into clones and designs."""
    faces, drawn, probes, hashes, scan_hit = _scan(files, manifest, chars, cache, workers)
    n_faces, skipped = len(faces), [f for f in faces if "error" in f]
    for face in skipped:
        warnings.warn(
            f"skipping {face['path']} face {face['index']}: {face['error']}", stacklevel=3
        )
    keep = [
        i
        for i, face in enumerate(faces)
        if "error" not in face and drawn[i].any() and not _matches(face, exclude_fonts)
    ]
    if not keep:
        raise ValueError(f"no font in {', '.join(dirs)} draws any character of {spec!r}")
    faces, drawn, probes, hashes = [faces[i] for i in keep], drawn[keep], probes[keep], hashes[keep]
    clone = group_faces(hashes)
    design = group_faces(hashes, [face["family"] for face in faces])
    return _Designs(faces, drawn, probes, hashes, clone, design, n_faces, skipped, scan_hit)


def _available_cpus() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def _candidates(
    found: _Designs, held_out: list[str], min_train_fonts: int, k: int | None, spec: str
) -> np.ndarray:
    """Indices of the characters drawn by >= ``min_train_fonts`` training designs and by
    every held-out font; refused if there are fewer than ``k`` (or none)."""
    count = np.zeros(found.drawn.shape[1], np.int64)
    for d in found.train_designs:
        count += found.drawn[found.design == d].any(0)
    ok = count >= min_train_fonts
    for pattern in held_out:
        faces = [i for i, face in enumerate(found.faces) if _matches(face, [pattern])]
        ok &= found.drawn[faces].any(0)
    candidates = np.flatnonzero(ok)
    if len(candidates) == 0 or (k or 0) > len(candidates):
        raise ValueError(
            f"num_classes={k} but only {len(candidates)} characters of {spec!r} "
            f"have >= {min_train_fonts} training designs and every held-out font; the largest "
            f"K available is {len(candidates)}"
        )
    return candidates


@dataclass
class _Renders:
    """Every rendered glyph, its class and the split it went to."""

    images: np.ndarray  # (n, S, S) uint8
    labels: np.ndarray  # (n,) int64
    split: np.ndarray  # (n,) train / val / test, or empty / copy / duplicate (not used)
    removed: dict[str, int]
    seconds: float
    path: Path
    cache_hit: bool


def _render_classes(
    found: _Designs,
    picked: np.ndarray,
    classes: list[str],
    size: int,
    manifest: list[tuple[str, int, int]],
    cache: Path,
    workers: int,
) -> _Renders:
    """Render each class once per clone group, with the group's first face that draws it;
    mark every image with its split, and drop copies of held-out images and repeats."""
    clone, design = found.clone, found.design
    design_of = {int(g): int(design[np.flatnonzero(clone == g)[0]]) for g in np.unique(clone)}
    split_of = {
        g: found.role.get(d, "train") for g, d in design_of.items() if d not in found.excluded
    }
    plan: dict[int, list[int]] = {}  # face -> labels it renders
    for g in split_of:
        members = np.flatnonzero(clone == g)
        has = found.drawn[members][:, picked]  # (members, K)
        for label in np.flatnonzero(has.any(0)).tolist():
            plan.setdefault(int(members[has[:, label].argmax()]), []).append(label)
    jobs = [
        (f, lab[s : s + _CHUNK])
        for f, lab in sorted(plan.items())
        for s in range(0, len(lab), _CHUNK)
    ]
    faces = found.faces
    tasks = [
        (faces[f]["path"], faces[f]["index"], "".join(classes[i] for i in lab), size)
        for f, lab in jobs
    ]
    started = time.perf_counter()
    images, rendered, path, hit = _render(tasks, size, manifest, cache, workers)
    seconds = time.perf_counter() - started
    face_of = np.concatenate([np.full(len(lab), f) for f, lab in jobs]).astype(np.int64)
    labels = np.concatenate([np.asarray(lab) for _, lab in jobs]).astype(np.int64)
    by_group = np.array([split_of.get(g, "") for g in range(int(clone.max()) + 1)], "<U9")
    split = by_group[clone[face_of]]  # train / val / test, then empty / copy / duplicate
    split[~rendered] = "empty"
    removed = _drop_copies(split, labels, _digest(images, rendered))
    return _Renders(images, labels, split, removed, seconds, path, hit)


def _dataset(made: _Renders, name: str, degrade: float, seed: int) -> TensorDataset:
    """The images of one split (``train``, ``val``, ``test`` or ``style``); the held-out
    ones degraded with the seed of their role (validation or test)."""
    rows = np.flatnonzero(made.split == name)
    x = torch.from_numpy(made.images[rows]).unsqueeze(1)
    if name != "train" and degrade > 0:
        x = degrade_images(x, float(degrade), seed=2 * seed + (name != "val"))
    return TensorDataset(x, {"label": torch.from_numpy(made.labels[rows])})


def _design_lists(found: _Designs) -> dict[str, Any]:
    """Family name -> clone groups (weights, widths) of the training, validation, test and
    left-out designs."""
    design, clone = found.design, found.clone
    title = {d: found.faces[int(np.flatnonzero(design == d)[0])]["family"] for d in found.designs}

    def listing(chosen: Iterable[int]) -> dict[str, int]:
        ordered = sorted(chosen, key=title.__getitem__)
        return {title[d]: len(np.unique(clone[design == d])) for d in ordered}

    return {
        "train": listing(found.train_designs),
        "val": listing(d for d, r in found.role.items() if r == "val"),
        "test": listing(d for d, r in found.role.items() if r == "test"),
        "style": listing(d for d, r in found.role.items() if r == "style"),
        "excluded": sorted(found.excluded.values()),
    }


def _font_counts(found: _Designs, files: int) -> dict[str, Any]:
    return {
        "files": files,
        "faces": found.total,
        "faces_used": len(found.faces),
        "skipped": [f"{f['full']}: {f['error']}" for f in found.skipped],
    }


def _describe(
    found: _Designs,
    made: _Renders,
    splits: list[TensorDataset],
    k: int,
    augment: bool | str,
    degrade: float,
) -> dict[str, Any]:
    """The ``info`` entries about designs, counts, removals, the transform, renders and
    caches."""
    per_class = np.bincount(made.labels[made.split == "train"], minlength=k)
    styled = made.split == "style"
    return {
        "designs": _design_lists(found),
        "counts": dict(zip(("train", "val", "test"), map(len, splits), strict=True)),
        "style": {"images": int(styled.sum()), "classes": len(np.unique(made.labels[styled]))},
        "train_images_per_class": {"min": int(per_class.min()), "max": int(per_class.max())},
        "removed": made.removed,
        "augment": repr(splits[0].transform) if augment else None,
        "degrade": float(degrade),
        "render": {
            "glyphs": len(made.images),
            "seconds": round(made.seconds, 2),
            "cache_hit": made.cache_hit,
        },
        "cache": {"scan_hit": found.scan_hit, "render": str(made.path)},
    }
