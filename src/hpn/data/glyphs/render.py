"""Rendering glyphs with Pillow, in worker processes for big jobs, and the on-disk cache of
the font scan (faces, coverage, probe renders) and of the renders.

Each cache file is named by the sha256 of what makes it (:func:`_key`: the cache version, the
font files' paths, sizes and modification times, and the characters; for renders also the
faces, characters and image side). It is written atomically (:func:`hpn.files.atomic_writer`)
and built under a lock of its own (``.locks/NAME.lock``, :func:`hpn.files.file_lock`): a second
process that wants the same file waits and reads it, and the temporary file of a process
killed mid-write is removed by the next builder. A file that is missing a field or cannot be
read (damaged, truncated) is built again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from hpn.data.glyphs.designs import PROBE_SIZE, _digest, _probe_chars
from hpn.data.glyphs.fonts import _face_count, _scan_file
from hpn.files import atomic_writer, file_lock, remove_partial_writes

PARALLEL_MIN_GLYPHS = 20_000  # below this, worker start-up costs more than it saves
_VERSION = 2  # bump when rendering or scanning changes, to invalidate caches
_SCAN_FIELDS = {"faces", "drawn", "probes", "hashes"}

if TYPE_CHECKING:  # Pillow is optional (the data extra): imported where glyphs are drawn
    from PIL.ImageFont import FreeTypeFont

#: One rendering job: (font file, face index, characters, image side).
RenderTask = tuple[str, int, str, int]
_Task = TypeVar("_Task")
_Result = TypeVar("_Result")


def render_glyph(font: FreeTypeFont, char: str, size: int) -> np.ndarray | None:
    """One character as a (size, size) uint8 image: ink 255 on 0, cropped to the ink,
    scaled to fit inside a margin of ``max(1, size // 16)`` pixels and centred.

    Args:
        font: a Pillow ``FreeTypeFont`` (rendered at about twice ``size``).
        char: the character.
        size: side of the output image.

    Returns:
        The image, or ``None`` when the rendering holds no ink.
    """
    from PIL import Image, ImageDraw  # optional (the data extra)

    left, top, right, bottom = (int(v) for v in font.getbbox(char))  # ints for FreeType
    if right <= left or bottom <= top:
        return None
    canvas = Image.new("L", (right - left + 2, bottom - top + 2))
    ImageDraw.Draw(canvas).text((1 - left, 1 - top), char, fill=255, font=font)
    ink = canvas.getbbox()
    if ink is None:
        return None
    glyph = canvas.crop(ink)
    inner = size - 2 * max(1, size // 16)
    scale = inner / max(glyph.size)
    w, h = (max(1, min(inner, round(s * scale))) for s in glyph.size)
    glyph = glyph.resize((w, h), Image.Resampling.BILINEAR)  # antialiased when shrinking
    out = Image.new("L", (size, size))
    out.paste(glyph, ((size - w) // 2, (size - h) // 2))
    return np.asarray(out)


def _render_task(task: RenderTask) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Render ``chars`` with one face: (images (n, S, S), ok (n,), error of the first
    failing glyph or None). A glyph that fails or holds no ink is not ok."""
    from PIL import ImageFont  # optional (the data extra)

    path, index, chars, size = task
    images = np.zeros((len(chars), size, size), np.uint8)
    ok = np.zeros(len(chars), bool)
    error = None
    try:
        font = ImageFont.truetype(path, 2 * size, index=index, layout_engine=ImageFont.Layout.BASIC)
    except OSError as err:
        return images, ok, str(err)
    for i, char in enumerate(chars):
        try:
            image = render_glyph(font, char, size)
        except OSError as err:
            error = error or str(err)
            continue
        if image is not None:
            images[i], ok[i] = image, True
    return images, ok, error


def _parallel_map(
    function: Callable[[_Task], _Result], tasks: list[_Task], workers: int
) -> list[_Result]:
    if workers <= 1 or len(tasks) <= 1:
        return [function(task) for task in tasks]
    # fork where there is one: the workers only run Pillow / fontTools (never torch), and
    # spawn would re-run a caller's script that lacks an `if __name__ == "__main__"` guard
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=get_context(method)) as pool:
        return list(pool.map(function, tasks))


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/hpn/glyphs`` (``~/.cache/hpn/glyphs``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hpn" / "glyphs"


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([_VERSION, *parts]).encode()).hexdigest()[:24]


def _save(path: Path, compress: bool = False, **arrays: np.ndarray) -> None:
    """Write an .npz atomically (:func:`hpn.files.atomic_writer`), readable by all."""
    with atomic_writer(path, mode=0o644) as out:
        # (numpy's stub types every keyword as if it could be allow_pickle)
        (np.savez_compressed if compress else np.savez)(out, **arrays)  # type: ignore[arg-type]


def _load(path: Path, fields: set[str]) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file, or None when it is missing, unreadable or lacks one of
    ``fields`` (then it is built again)."""
    try:
        # the handle is ours: numpy leaves it open when the zip cannot be read
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error):
        return None
    return arrays if fields <= set(arrays) else None


@contextlib.contextmanager
def _building(path: Path) -> Iterator[None]:
    """Hold the lock of the cache file ``path`` and clear what a killed writer left."""
    with file_lock(path.parent / ".locks" / f"{path.name}.lock"):
        for tmp in remove_partial_writes(path):
            warnings.warn(f"removed {tmp}, left by a process killed while writing", stacklevel=4)
        yield


# --------------------------------------------------------------------------- the source


def _scan(
    files: list[Path], manifest: list[Any], chars: list[str], cache: Path, workers: int
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray, np.ndarray, bool]:
    """Every face of the files: its names (or why it is unusable), which of ``chars`` it
    draws (F, C), its probe renders (F, P, S, S) and their hashes (F, P; 0 where a face
    lacks a probe). Cached by the fonts and characters."""
    path = cache / f"scan-{_key(manifest, ''.join(chars))}.npz"
    cached = _load(path, _SCAN_FIELDS)
    if cached is None:
        with _building(path):
            cached = _load(path, _SCAN_FIELDS)  # built meanwhile by another process?
            if cached is None:
                return (*_scan_fonts(files, chars, workers, path), False)
    drawn = np.unpackbits(cached["drawn"], axis=1, count=len(chars)).astype(bool)
    faces = json.loads(str(cached["faces"]))
    return faces, drawn, cached["probes"], cached["hashes"], True


def _scan_fonts(
    files: list[Path], chars: list[str], workers: int, path: Path
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_scan` without the cache: scan and probe the faces, and save them to ``path``."""
    text = "".join(chars)
    heavy = sum(map(_face_count, files)) * len(chars) >= PARALLEL_MIN_GLYPHS
    scans = [(str(f), text) for f in files]
    faces = [
        face for part in _parallel_map(_scan_file, scans, workers if heavy else 1) for face in part
    ]
    index = {c: n for n, c in enumerate(chars)}
    drawn = np.zeros((len(faces), len(chars)), bool)
    for row, face in enumerate(faces):
        drawn[row, [index[c] for c in face.pop("drawn", [])]] = True
    probes = _probe_chars(chars, drawn)
    rows = [r for r, face in enumerate(faces) if "error" not in face and drawn[r].any()]
    tasks: list[RenderTask] = [
        (faces[r]["path"], faces[r]["index"], "".join(probes), PROBE_SIZE) for r in rows
    ]
    heavy = len(tasks) * len(probes) >= PARALLEL_MIN_GLYPHS
    images = np.zeros((len(faces), len(probes), PROBE_SIZE, PROBE_SIZE), np.uint8)
    hashes = np.zeros((len(faces), len(probes)), np.uint64)
    mine = drawn[:, [index[p] for p in probes]]
    for r, (rendered, ok, error) in zip(
        rows, _parallel_map(_render_task, tasks, workers if heavy else 1), strict=True
    ):
        if error is not None:
            faces[r]["error"] = f"Pillow cannot render it ({error})"
            continue
        images[r] = rendered * (ok & mine[r])[:, None, None]
        hashes[r] = _digest(rendered, ok & mine[r])
        seen = hashes[r][hashes[r] != 0]
        if len(seen) >= 4 and 2 * len(np.unique(seen)) < len(seen):
            faces[r]["error"] = "it draws one picture for many characters (a placeholder font)"
    arrays = {"faces": np.array(json.dumps(faces)), "drawn": np.packbits(drawn, axis=1)}
    _save(path, compress=True, **arrays, probes=images, hashes=hashes)
    return faces, drawn, images, hashes


def _render(
    tasks: list[RenderTask], size: int, manifest: list[Any], cache: Path, workers: int
) -> tuple[np.ndarray, np.ndarray, Path, bool]:
    """Images of the (path, index, chars, size) tasks, concatenated, with an ok mask;
    cached by the fonts, the tasks and the size."""
    path = cache / f"render-{_key(manifest, tasks, size)}.npz"
    cached = _load(path, {"images", "ok"})
    if cached is None:
        with _building(path):
            cached = _load(path, {"images", "ok"})
            if cached is None:
                return (*_render_tasks(tasks, size, workers, path), path, False)
    return cached["images"], cached["ok"], path, True


def _render_tasks(
    tasks: list[RenderTask], size: int, workers: int, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_render` without the cache: render the tasks and save them to ``path``."""
    heavy = sum(len(t[2]) for t in tasks) >= PARALLEL_MIN_GLYPHS
    results = _parallel_map(_render_task, tasks, workers if heavy else 1)
    for (font, index, _, _), (_, _, error) in zip(tasks, results, strict=True):
        if error is not None:
            warnings.warn(f"{font} face {index}: some glyphs failed ({error})", stacklevel=5)
    images = np.concatenate([r[0] for r in results] or [np.zeros((0, size, size), np.uint8)])
    ok = np.concatenate([r[1] for r in results] or [np.zeros(0, bool)])
    _save(path, images=images, ok=ok)
    return images, ok
