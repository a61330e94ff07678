"""Which characters a spec names: a named set, code-point ranges, or a text file."""

from __future__ import annotations

import os
from pathlib import Path

#: Named character sets: (first, last) code points, inclusive.
CHARACTER_SETS = {"cjk": (0x4E00, 0x9FFF), "hangul": (0xAC00, 0xD7A3)}


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
