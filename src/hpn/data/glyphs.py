"""Printed characters rendered from installed fonts: thousands of classes of real glyphs.

Each class is one character (e.g. a CJK ideograph), each example one font's rendering of
it: a small grey image (ink 255 on 0, cropped to its ink, centred and scaled to fit with a
small margin). Validation and test images come from *held-out fonts*: no design of theirs
is seen in training, so a score measures reading a new typeface, not recall.

How the data stays honest:

* Coverage comes from the font's own data (fontTools): a character counts as drawn only if
  the face's character map lists it *and* its glyph has an outline (TrueType contours or a
  CFF charstring that draws). Some fonts list characters they do not draw, and some draw an
  empty box for a missing glyph, so the rendered picture never decides coverage.
* Every face renders a fixed set of :data:`PROBES` probe characters. Faces whose renders are
  identical on more than half of the probes both draw are *clones* (TTC regions, renamed
  copies) and render once. Clones and faces of one family name (weights, widths) form one
  *design*: the unit that ``min_train_fonts`` counts and that is held out. Each clone
  group of a design gives one image per character.
* A design holding a validation or test face is held out; a training design with a face
  that renders more than :data:`MAX_SHARED_PROBES` probes (nearly, :data:`NEAR`) like a
  held-out face is left out; a training image identical to a held-out image of its class,
  or repeating another image of its class, is dropped.
* Faces Pillow cannot render (FreeType errors such as "invalid opcode") and placeholder
  fonts (one picture for many characters) are skipped with a warning.

Scans and renders are cached on disk (see :func:`load_glyphs`), so a second run reads
arrays instead of fonts. Debian packages with about 65 CJK designs: :data:`APT_PACKAGES`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hpn.data.base import DataSplits, TensorDataset

#: Named character sets: (first, last) code points, inclusive.
CHARACTER_SETS = {"cjk": (0x4E00, 0x9FFF), "hangul": (0xAC00, 0xD7A3)}
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
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts")
FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
#: Debian packages that give about 65 distinct CJK type designs (721 MB).
APT_PACKAGES = (
    "fonts-noto-cjk fonts-noto-cjk-extra fonts-arphic-ukai fonts-arphic-uming fonts-wqy-zenhei "
    "fonts-droid-fallback fonts-cns11643-kai fonts-cns11643-sung fonts-hanazono "
    "fonts-babelstone-han fonts-lxgw-wenkai fonts-klee fonts-ipamj-mincho fonts-ipafont-gothic "
    "fonts-cwtex-fs fonts-cwtex-heib fonts-cwtex-kai fonts-cwtex-ming fonts-cwtex-yen "
    "fonts-horai-umefont fonts-kouzan-mouhitsu fonts-yozvox-yozfont-standard-kana "
    "fonts-morisawa-bizud-gothic fonts-morisawa-bizud-mincho fonts-seto fonts-mplus "
    "fonts-sawarabi-gothic fonts-sawarabi-mincho fonts-smiley-sans fonts-dotgothic16 "
    "fonts-reggae fonts-yusei-magic fonts-motoya-l-cedar fonts-motoya-l-maruberi fonts-kiloji "
    "fonts-dejima-mincho fonts-mona fonts-oradano-mincho-gsrr fonts-unifont fonts-alee "
    "fonts-baekmuk fonts-nanum fonts-nanum-extra fonts-unfonts-core fonts-unfonts-extra "
    "fonts-naver-d2coding fonts-vlgothic"
)
PROBES = 128  # probe characters rendered by every face to find identical designs
PROBE_SIZE = 32
MAX_SHARED_PROBES = 2  # probes a training face may render (nearly) like a held-out face
NEAR = 3.0  # "nearly alike": mean absolute difference in grey levels (of 255) per pixel
PARALLEL_MIN_GLYPHS = 20_000  # below this, worker start-up costs more than it saves
_CHUNK = 4_000  # glyphs per rendering task
_VERSION = 2  # bump when rendering or scanning changes, to invalidate caches


# --------------------------------------------------------------------------- characters


def parse_characters(spec: str | os.PathLike) -> list[str]:
    """The characters a spec names, sorted by code point, without repeats.

    Args:
        spec: ``"cjk"`` (U+4E00-U+9FFF), ``"hangul"`` (U+AC00-U+D7A3), comma-separated
            ranges or single characters such as ``"U+4E00-U+4FFF"``, ``"A-Z,a-z,0-9"``
            or ``"U+3042"``, or the path of a UTF-8 text file of characters (whitespace is
            ignored).

    Raises:
        ValueError: a spec that is none of these, or an empty set.

    Example:
        >>> "".join(parse_characters("a-e,U+0041"))
        'Aabcde'
    """
    text = os.fspath(spec).strip()
    if text.lower() in CHARACTER_SETS:
        first, last = CHARACTER_SETS[text.lower()]
        return [chr(c) for c in range(first, last + 1)]
    if os.path.isfile(text):
        chars = {c for c in Path(text).read_text(encoding="utf-8") if not c.isspace()}
        if not chars:
            raise ValueError(f"character file {text} holds no characters")
        return sorted(chars)

    def point(token: str) -> int:
        if token[:2].upper() == "U+" and len(token) > 2:
            return int(token[2:], 16)
        if len(token) == 1:
            return ord(token)
        raise ValueError(token)

    points: set[int] = set()
    try:
        for item in text.split(","):
            item = item.strip()
            a, sep, b = item.partition("-") if len(item) > 1 else (item, "", "")
            lo, hi = (point(a), point(b)) if sep else (point(item),) * 2
            if not 0 <= lo <= hi <= 0x10FFFF:
                raise ValueError(item)
            points.update(range(lo, hi + 1))
    except ValueError:
        raise ValueError(
            f"characters {text!r} is not 'cjk', 'hangul', ranges like 'U+4E00-U+9FFF' or "
            "'A-Z', nor an existing text file"
        ) from None
    return [chr(c) for c in sorted(points)]


# --------------------------------------------------------------------------- fonts


def find_font_files(font_dirs: Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """Font files (.ttf, .otf, .ttc, .otc, any case) under folders (searched recursively) or
    given directly, sorted, each real file once (links to one file are dropped)."""
    found: dict[str, Path] = {}
    for entry in font_dirs if font_dirs is not None else FONT_DIRS:
        root = Path(entry).expanduser()
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            if path.suffix.lower() in FONT_SUFFIXES:
                found.setdefault(os.path.realpath(path), path)
    return sorted(found.values())


def _face_count(path: Path) -> int:
    with open(path, "rb") as handle:
        head = handle.read(12)
    return int.from_bytes(head[8:12], "big") if head[:4] == b"ttcf" else 1


def _names(font) -> tuple[str, str, list[str]]:
    table = font["name"]
    names = set()
    for record in table.names:
        if record.nameID in (1, 4, 16):
            try:
                names.add(record.toUnicode())
            except (UnicodeDecodeError, ValueError):
                continue
    family = table.getBestFamilyName() or ""
    return family, table.getBestFullName() or family, sorted(names)


def charstring_draws(code: bytes) -> bool:
    """Whether a Type 2 (CFF / CFF2) charstring draws: it reaches a moveto or calls a
    subroutine before it ends. Operands and hint masks are skipped without decompiling.

    Example:
        >>> charstring_draws(bytes([0x8B, 0x8B, 21, 14]))  # 0 0 rmoveto endchar
        True
        >>> charstring_draws(bytes([0xFC, 0x1D, 14]))  # a width, endchar: no outline
        False
    """
    i, args, stems = 0, 0, 0
    while i < len(code):
        b = code[i]
        if b >= 32 or b == 28:  # an operand: 1, 2, 3 or 5 bytes
            i += 1 if b <= 246 else 2 if b <= 254 else 5
            i += 2 if b == 28 else 0
            args += 1
            continue
        if b in (4, 21, 22, 10, 29):  # vmoveto, rmoveto, hmoveto, callsubr, callgsubr
            return True
        if b == 14:  # endchar
            return False
        if b in (1, 3, 18, 23):  # hstem, vstem, hstemhm, vstemhm
            stems += args // 2
        elif b in (19, 20):  # hintmask, cntrmask: implicit vstems, then the mask bytes
            stems += args // 2
            i += (stems + 7) // 8
        i += 2 if b == 12 else 1
        args = 0
    return False


def _outline_test(font, memo: dict) -> Callable[[str], bool]:
    """Glyph name -> whether the glyph has an outline (TrueType contours / a drawing CFF
    charstring); faces with neither table draw nothing. ``memo`` is shared by the faces
    of one collection, which often share one CFF table."""
    if "glyf" in font.reader:
        loca, raw = font["loca"], font.reader["glyf"]

        def has_contours(name: str) -> bool:
            gid = font.getGlyphID(name)
            start, end = loca[gid], loca[gid + 1]
            # numberOfContours: 0 is empty, -1 is a composite of other glyphs
            return end > start and int.from_bytes(raw[start : start + 2], "big", signed=True) != 0

        return has_contours
    tag = "CFF " if "CFF " in font.reader else "CFF2" if "CFF2" in font.reader else None
    if tag is None:
        return lambda name: False
    charstrings = font[tag].cff.topDictIndex[0].CharStrings
    known = memo.setdefault(font.reader.tables[tag].offset, {})

    def draws(name: str) -> bool:
        if name not in known:
            charstring = charstrings[name]
            if charstring.bytecode is None:  # decompiled before: encode it again
                charstring.compile()
            known[name] = charstring_draws(charstring.bytecode)
        return known[name]

    return draws


def _scan_file(task: tuple[str, str]) -> list[dict]:
    """One font file's faces: names and which of ``chars`` each draws (or an error)."""
    path, chars = task
    memo: dict = {}
    log = logging.getLogger("fontTools")
    level = log.level
    log.setLevel(logging.ERROR)  # quiet about odd timestamps and the like
    try:
        count = _face_count(Path(path))
        return [_scan_face(path, index, chars, memo) for index in range(count)]
    except OSError as err:
        return [{"path": path, "index": 0, "family": "", "full": path, "error": str(err)}]
    finally:
        log.setLevel(level)


def _scan_face(path: str, index: int, chars: str, memo: dict) -> dict:
    from fontTools.ttLib import TTFont

    face = {"path": path, "index": index, "family": "", "full": f"{path}#{index}"}
    try:
        font = TTFont(path, fontNumber=index, lazy=True)
        face["family"], face["full"], face["names"] = _names(font)
        cmap = font.getBestCmap() or {}
        drawn = _outline_test(font, memo)
        face["drawn"] = [c for c in chars if ord(c) in cmap and drawn(cmap[ord(c)])]
    except Exception as err:  # fontTools raises many types on broken fonts
        face["error"] = f"fontTools cannot read it ({type(err).__name__}: {err})"
    return face


def _matches(face: dict, patterns: Sequence[str]) -> list[str]:
    names = [n.lower() for n in face.get("names", [face["family"]])]
    return [p for p in patterns if any(p.lower() in n for n in names)]


# --------------------------------------------------------------------------- rendering


def render_glyph(font, char: str, size: int) -> np.ndarray | None:
    """One character as a (size, size) uint8 image: ink 255 on 0, cropped to the ink,
    scaled to fit inside a margin of ``max(1, size // 16)`` pixels and centred.

    Args:
        font: a Pillow ``FreeTypeFont`` (rendered at about twice ``size``).
        char: the character.
        size: side of the output image.

    Returns:
        The image, or ``None`` when the rendering holds no ink.
    """
    from PIL import Image, ImageDraw

    left, top, right, bottom = font.getbbox(char)
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


def _render_task(task: tuple[str, int, str, int]) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Render ``chars`` with one face: (images (n, S, S), ok (n,), error of the first
    failing glyph or None). A glyph that fails or holds no ink is not ok."""
    from PIL import ImageFont

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


def _parallel_map(function, tasks: list, workers: int) -> list:
    if workers <= 1 or len(tasks) <= 1:
        return [function(task) for task in tasks]
    # fork where there is one: the workers only run Pillow / fontTools (never torch), and
    # spawn would re-run a caller's script that lacks an `if __name__ == "__main__"` guard
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=get_context(method)) as pool:
        return list(pool.map(function, tasks))


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


def _components(n: int, pairs) -> np.ndarray:
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


# --------------------------------------------------------------------------- augmentation


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
    n, _, h, w = images.shape
    theta = random_affine(n, g, 4 * strength, 0.06 * strength, 0.08 * strength, 0.1 * strength)
    low = (torch.rand(n, generator=g) * strength + 1).reciprocal()
    sigma = torch.rand(n, generator=g) * 0.9 * strength
    ink = 1 - torch.rand(n, generator=g) * 0.3 * strength
    paper = torch.rand(n, generator=g) * 0.15 * strength
    noise_std = torch.rand(n, generator=g) * 0.06 * strength
    out = torch.empty_like(images)
    for start in range(0, n, 4096):
        part = slice(start, start + 4096)
        x = _warp(images[part].float() / 255, theta[part])
        sides = (low[part] * min(h, w)).round().clamp(min=4).long()
        for side in sides.unique().tolist():
            rows = torch.nonzero(sides == side).flatten()
            small = F.interpolate(x[rows], scale_factor=side / min(h, w), mode="area")
            x[rows] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        taps = torch.arange(-2, 3, dtype=torch.float32)
        kernel = torch.exp(-(taps**2) / (2 * sigma[part, None].clamp(min=1e-3) ** 2))
        kernel = kernel / kernel.sum(1, keepdim=True)
        c = x.shape[1]
        flat = x.reshape(1, -1, h, w)
        k = kernel.repeat_interleave(c, 0)
        flat = F.conv2d(
            F.pad(flat, (2, 2, 0, 0), mode="replicate"), k[:, None, None, :], groups=len(k)
        )
        flat = F.conv2d(
            F.pad(flat, (0, 0, 2, 2), mode="replicate"), k[:, None, :, None], groups=len(k)
        )
        x = flat.reshape(x.shape)
        lo, hi = paper[part].view(-1, 1, 1, 1), ink[part].view(-1, 1, 1, 1)
        x = lo + (hi - lo) * x
        x = x + torch.randn(x.shape, generator=g) * noise_std[part].view(-1, 1, 1, 1)
        out[part] = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return out


# --------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/hpn/glyphs`` (``~/.cache/hpn/glyphs``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hpn" / "glyphs"


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps([_VERSION, *parts]).encode()).hexdigest()[:24]


def _save(path: Path, compress: bool = False, **arrays) -> None:
    """Write an .npz atomically: a temporary file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            (np.savez_compressed if compress else np.savez)(out, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError):
        return None


# --------------------------------------------------------------------------- the source


def _scan(files: list[Path], manifest: list, chars: list[str], cache: Path, workers: int):
    """Every face of the files: its names (or why it is unusable), which of ``chars`` it
    draws (F, C), its probe renders (F, P, S, S) and their hashes (F, P; 0 where a face
    lacks a probe). Cached by the fonts and characters."""
    path = cache / f"scan-{_key(manifest, ''.join(chars))}.npz"
    cached = _load(path)
    if cached is not None and {"faces", "drawn", "probes", "hashes"} <= set(cached):
        drawn = np.unpackbits(cached["drawn"], axis=1, count=len(chars)).astype(bool)
        faces = json.loads(str(cached["faces"]))
        return faces, drawn, cached["probes"], cached["hashes"], True
    text = "".join(chars)
    heavy = sum(map(_face_count, files)) * len(chars) >= PARALLEL_MIN_GLYPHS
    tasks = [(str(f), text) for f in files]
    faces = [
        face for part in _parallel_map(_scan_file, tasks, workers if heavy else 1) for face in part
    ]
    index = {c: n for n, c in enumerate(chars)}
    drawn = np.zeros((len(faces), len(chars)), bool)
    for row, face in enumerate(faces):
        drawn[row, [index[c] for c in face.pop("drawn", [])]] = True
    probes = _probe_chars(chars, drawn)
    rows = [r for r, face in enumerate(faces) if "error" not in face and drawn[r].any()]
    tasks = [(faces[r]["path"], faces[r]["index"], "".join(probes), PROBE_SIZE) for r in rows]
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
    return faces, drawn, images, hashes, False


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


def _held_out(faces: list[dict], design: np.ndarray, probes, hashes, val_fonts, test_fonts):
    """Design id -> "val" / "test" for the held-out fonts' designs, and design id -> why
    for training designs left out for rendering more than :data:`MAX_SHARED_PROBES`
    probes (nearly) like a held-out face."""
    role: dict[int, str] = {}
    for split, patterns in (("val", val_fonts), ("test", test_fonts)):
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
    for i in np.flatnonzero(~np.isin(design, list(role))):
        k = int(np.argmax(close[i]))
        if close[i, k] > MAX_SHARED_PROBES and int(design[i]) not in excluded:
            excluded[int(design[i])] = (
                f"{faces[i]['full']} renders {close[i, k]} of {shared[i, k]} probes like "
                f"held-out {faces[held[k]]['full']}"
            )
    return role, excluded


def _render(tasks: list, size: int, manifest: list, cache: Path, workers: int):
    """Images of the (path, index, chars, size) tasks, concatenated, with an ok mask;
    cached by the fonts, the tasks and the size."""
    path = cache / f"render-{_key(manifest, tasks, size)}.npz"
    cached = _load(path)
    if cached is not None and {"images", "ok"} <= set(cached):
        return cached["images"], cached["ok"], path, True
    heavy = sum(len(t[2]) for t in tasks) >= PARALLEL_MIN_GLYPHS
    results = _parallel_map(_render_task, tasks, workers if heavy else 1)
    for (font, index, _, _), (_, _, error) in zip(tasks, results, strict=True):
        if error is not None:
            warnings.warn(f"{font} face {index}: some glyphs failed ({error})", stacklevel=3)
    images = np.concatenate([r[0] for r in results] or [np.zeros((0, size, size), np.uint8)])
    ok = np.concatenate([r[1] for r in results] or [np.zeros(0, bool)])
    _save(path, images=images, ok=ok)
    return images, ok, path, False


def _default_held_out(spec, chars: list[str], val_fonts, test_fonts) -> tuple[list, list]:
    if val_fonts is None or test_fonts is None:
        points = [ord(c) for c in chars]
        for name, (first, last) in CHARACTER_SETS.items():
            if first <= min(points) and max(points) <= last:
                val_fonts = HELD_OUT_FONTS[name][0] if val_fonts is None else val_fonts
                test_fonts = HELD_OUT_FONTS[name][1] if test_fonts is None else test_fonts
                break
        else:
            raise ValueError(
                f"characters {spec!r} have no default held-out fonts; pass val_fonts and test_fonts"
            )
    for name, value in (("val_fonts", val_fonts), ("test_fonts", test_fonts)):
        if isinstance(value, str) or not value or not all(isinstance(v, str) and v for v in value):
            raise ValueError(
                f"{name} must be a non-empty list of family-name substrings, got {value!r}"
            )
    return list(val_fonts), list(test_fonts)


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
    cache_dir: str | os.PathLike | None = None,
    augment: bool = False,
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

    Two caches under ``cache_dir``, both written atomically: the scan (faces, coverage,
    probe hashes), keyed by the font files' paths, sizes and mtimes and the characters, and
    the renders, keyed by the same fonts, the faces and characters rendered and ``size``.

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
        cache_dir: default :func:`default_cache_dir`.
        augment: use :class:`GlyphAugment` as the transform of the training split (per
            item, each time it is read); val and test stay as rendered.
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
    for module in ("fontTools", "PIL"):
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(
                f"the glyphs source needs fontTools and Pillow; {module} is missing: "
                'pip install "hpn[data]"'
            )
    chars = parse_characters(characters)
    for name, value, low in (("size", size, 8), ("min_train_fonts", min_train_fonts, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
        raise ValueError(f"num_classes must be an int >= 2 (or None for all), got {num_classes!r}")
    if not 0 <= float(degrade) <= 3:
        raise ValueError(f"degrade must be a strength in [0, 3], got {degrade!r}")
    val_fonts, test_fonts = _default_held_out(characters, chars, val_fonts, test_fonts)
    if workers is None:
        affinity = getattr(os, "sched_getaffinity", None)
        workers = len(affinity(0)) if affinity else os.cpu_count() or 1
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dirs = [str(Path(d).expanduser()) for d in (font_dirs if font_dirs is not None else FONT_DIRS)]
    files = find_font_files(dirs)
    if not files:
        raise FileNotFoundError(
            f"no font files ({', '.join(FONT_SUFFIXES)}) found in {', '.join(dirs)}; for CJK "
            f"ideographs run: apt-get install -y --no-install-recommends {APT_PACKAGES}"
        )
    manifest = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    faces, drawn, probes, hashes, scan_hit = _scan(files, manifest, chars, cache, workers)

    n_faces, skipped = len(faces), [f for f in faces if "error" in f]
    for face in skipped:
        warnings.warn(
            f"skipping {face['path']} face {face['index']}: {face['error']}", stacklevel=2
        )
    keep = [
        i
        for i, face in enumerate(faces)
        if "error" not in face and drawn[i].any() and not _matches(face, exclude_fonts)
    ]
    if not keep:
        raise ValueError(f"no font in {', '.join(dirs)} draws any character of {characters!r}")
    faces, drawn, probes, hashes = [faces[i] for i in keep], drawn[keep], probes[keep], hashes[keep]
    clone = group_faces(hashes)
    design = group_faces(hashes, [face["family"] for face in faces])
    role, excluded = _held_out(faces, design, probes, hashes, val_fonts, test_fonts)
    designs = list(dict.fromkeys(design.tolist()))
    train_designs = [d for d in designs if d not in role and d not in excluded]

    count = np.zeros(len(chars), np.int64)
    for d in train_designs:
        count += drawn[design == d].any(0)
    ok = count >= min_train_fonts
    for pattern in (*val_fonts, *test_fonts):
        ok &= drawn[[i for i, face in enumerate(faces) if _matches(face, [pattern])]].any(0)
    candidates = np.flatnonzero(ok)
    if len(candidates) == 0 or (num_classes or 0) > len(candidates):
        raise ValueError(
            f"num_classes={num_classes} but only {len(candidates)} characters of {characters!r} "
            f"have >= {min_train_fonts} training designs and every held-out font; the largest "
            f"K available is {len(candidates)}"
        )
    k = num_classes or len(candidates)
    picked = np.sort(np.random.default_rng(seed).choice(candidates, k, replace=False))
    classes = [chars[i] for i in picked]

    # one rendering per clone group and class, by the group's first face that draws it
    design_of = {int(g): int(design[np.flatnonzero(clone == g)[0]]) for g in np.unique(clone)}
    split_of = {g: role.get(d, "train") for g, d in design_of.items() if d not in excluded}
    plan: dict[int, list[int]] = {}  # face -> labels it renders
    for g in split_of:
        members = np.flatnonzero(clone == g)
        has = drawn[members][:, picked]  # (members, K)
        for label in np.flatnonzero(has.any(0)).tolist():
            plan.setdefault(int(members[has[:, label].argmax()]), []).append(label)
    jobs = [
        (f, lab[s : s + _CHUNK])
        for f, lab in sorted(plan.items())
        for s in range(0, len(lab), _CHUNK)
    ]
    tasks = [
        (faces[f]["path"], faces[f]["index"], "".join(classes[i] for i in lab), size)
        for f, lab in jobs
    ]
    started = time.perf_counter()
    images, rendered, render_path, render_hit = _render(tasks, size, manifest, cache, workers)
    seconds = time.perf_counter() - started
    face_of = np.concatenate([np.full(len(lab), f) for f, lab in jobs]).astype(np.int64)
    labels = np.concatenate([np.asarray(lab) for _, lab in jobs]).astype(np.int64)
    by_group = np.array([split_of.get(g, "") for g in range(int(clone.max()) + 1)], "<U9")
    split = by_group[clone[face_of]]  # train / val / test, then empty / copy / duplicate
    split[~rendered] = "empty"
    removed = _drop_copies(split, labels, _digest(images, rendered))

    def dataset(name: str) -> TensorDataset:
        rows = np.flatnonzero(split == name)
        x = torch.from_numpy(images[rows]).unsqueeze(1)
        if name != "train" and degrade > 0:
            x = degrade_images(x, float(degrade), seed=2 * seed + (name == "test"))
        return TensorDataset(x, {"label": torch.from_numpy(labels[rows])})

    train, val, test = dataset("train"), dataset("val"), dataset("test")
    if augment:
        train.transform = GlyphAugment()
    title = {d: faces[int(np.flatnonzero(design == d)[0])]["family"] for d in designs}

    def listing(chosen) -> dict[str, int]:  # design -> its clone groups (weights, widths)
        return {title[d]: len(np.unique(clone[design == d])) for d in sorted(chosen, key=title.get)}

    per_class = np.bincount(labels[split == "train"], minlength=k)
    return DataSplits(
        train=train,
        val=val,
        test=test,
        task="classification",
        input_shape=(1, size, size),
        num_classes=k,
        class_names=classes,
        info={
            "source": "glyphs",
            "characters": str(characters),
            "classes": "".join(classes),
            "candidates": len(candidates),
            "min_train_fonts": min_train_fonts,
            "size": size,
            "seed": seed,
            "font_dirs": dirs,
            "fonts": {
                "files": len(files),
                "faces": n_faces,
                "faces_used": len(faces),
                "skipped": [f"{f['full']}: {f['error']}" for f in skipped],
            },
            "val_fonts": val_fonts,
            "test_fonts": test_fonts,
            "designs": {
                "train": listing(train_designs),
                "val": listing(d for d, r in role.items() if r == "val"),
                "test": listing(d for d, r in role.items() if r == "test"),
                "excluded": sorted(excluded.values()),
            },
            "counts": {"train": len(train), "val": len(val), "test": len(test)},
            "train_images_per_class": {"min": int(per_class.min()), "max": int(per_class.max())},
            "removed": removed,
            "augment": repr(train.transform) if augment else None,
            "degrade": float(degrade),
            "render": {
                "glyphs": len(images),
                "seconds": round(seconds, 2),
                "cache_hit": render_hit,
            },
            "cache": {"scan_hit": scan_hit, "render": str(render_path)},
        },
    )


def _drop_copies(split: np.ndarray, labels: np.ndarray, digests: np.ndarray) -> dict[str, int]:
    """Mark (in place) training images identical to a held-out image of their class as
    ``"copy"``, then repeats of an image of a class within a split as ``"duplicate"``."""
    key = digests ^ (labels.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    copy = (split == "train") & np.isin(key, key[(split == "val") | (split == "test")])
    split[copy] = "copy"
    duplicates = 0
    for name in ("train", "val", "test"):
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
