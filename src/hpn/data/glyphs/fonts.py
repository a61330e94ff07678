"""Font files and faces: finding them, their names, and which characters each face draws.

Coverage comes from the font's own data (fontTools), never from a rendered picture: a
character counts as drawn only if the face's character map lists it *and* its glyph has an
outline (TrueType contours, or a CFF / CFF2 charstring that draws).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # fontTools is optional (the data extra)
    from fontTools.ttLib import TTFont

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


def _names(font: TTFont) -> tuple[str, str, list[str]]:
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


def _outline_test(font: TTFont, memo: dict[int, dict[str, bool]]) -> Callable[[str], bool]:
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


def _scan_file(task: tuple[str, str]) -> list[dict[str, Any]]:
    """One font file's faces: names and which of ``chars`` each draws (or an error)."""
    path, chars = task
    memo: dict[int, dict[str, bool]] = {}
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


def _scan_face(
    path: str, index: int, chars: str, memo: dict[int, dict[str, bool]]
) -> dict[str, Any]:
    from fontTools.ttLib import TTFont  # optional (with matplotlib, the data extra)

    face: dict[str, Any] = {"path": path, "index": index, "family": "", "full": f"{path}#{index}"}
    try:
        with TTFont(path, fontNumber=index, lazy=True) as font:  # closes the file
            face["family"], face["full"], face["names"] = _names(font)
            cmap = font.getBestCmap() or {}
            drawn = _outline_test(font, memo)
            face["drawn"] = [c for c in chars if ord(c) in cmap and drawn(cmap[ord(c)])]
    except Exception as err:  # fontTools raises many types on broken fonts
        face["error"] = f"fontTools cannot read it ({type(err).__name__}: {err})"
    return face


def _matches(face: dict[str, Any], patterns: Sequence[str]) -> list[str]:
    names = [n.lower() for n in face.get("names", [face["family"]])]
    return [p for p in patterns if any(p.lower() in n for n in names)]
