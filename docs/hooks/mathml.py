"""MkDocs hook: LaTeX formulas to MathML at build time, so pages need no script and no network.

``$...$`` (inline, on one line) and ``$$...$$`` (display, may span lines) in a page's Markdown
are converted by ``latex2mathml``; browsers render MathML natively. Code blocks and code spans
are left alone. A formula is swapped for a placeholder before Markdown runs and the MathML is
put back into the page's HTML afterwards, so Markdown never reads the formula (``_`` and ``*``
in it are not emphasis). A formula that does not convert, or keeps a command latex2mathml does
not know, fails the build. The hook also drops Sphinx roles (``:func:``) that docstrings put
before code spans in the API pages.
"""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,}).*?^\1\2[ \t]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
# inline: may wrap onto the next line, never across a blank line
_INLINE = re.compile(r"(?<![\\$\w])\$(?=\S)((?:[^$\n]|\n(?![ \t]*\n))+?)(?<=\S)\$(?![\w$])")
_TOKEN = "MATHMLPLACEHOLDER{}X"

_formulas: dict[str, list[tuple[str, bool]]] = {}


def _protect(markdown: str) -> tuple[str, list[str]]:
    """Markdown with code blocks and code spans swapped for markers, and the swapped text."""
    saved: list[str] = []

    def keep(match: re.Match) -> str:
        saved.append(match.group(0))
        return f"\x00{len(saved) - 1}\x00"

    return _CODE_SPAN.sub(keep, _FENCE.sub(keep, markdown)), saved


def _restore(markdown: str, saved: list[str]) -> str:
    return re.sub("\x00(\\d+)\x00", lambda m: saved[int(m.group(1))], markdown)


def on_page_markdown(markdown, page, config, files):
    text, saved = _protect(markdown)
    formulas: list[tuple[str, bool]] = []

    def swap(display: bool):
        def inner(match: re.Match) -> str:
            formulas.append((match.group(1).strip(), display))
            return _TOKEN.format(len(formulas) - 1)

        return inner

    text = _DISPLAY.sub(swap(True), text)
    text = _INLINE.sub(swap(False), text)
    _formulas[page.file.src_uri] = formulas
    return _restore(text, saved)


def _mathml(latex: str, display: bool, where: str) -> str:
    try:
        out = convert(html.unescape(latex), display="block" if display else "inline")
    except Exception as err:  # latex2mathml raises several kinds
        raise ValueError(f"{where}: cannot convert formula {latex!r}: {err}") from err
    if "\\" in out:  # a command latex2mathml does not know is copied through as text
        raise ValueError(f"{where}: formula {latex!r} has a command MathML cannot show: {out}")
    return f'<div class="math-display">{out}</div>' if display else out


def on_page_content(content, page, config, files):
    formulas = _formulas.pop(page.file.src_uri, [])
    for index, (latex, display) in enumerate(formulas):
        token = _TOKEN.format(index)
        math = _mathml(latex, display, page.file.src_uri)
        if display and f"<p>{token}</p>" in content:
            content = content.replace(f"<p>{token}</p>", math)
        else:
            content = content.replace(token, math)
    # Sphinx roles in docstrings (:func:`x`) read as plain code in these pages
    return re.sub(r":(?:func|class|meth|mod|data|attr|exc|obj):(?=<code>)", "", content)
