"""Griffe extension: show hpn's doctests as code in the API pages.

* A Google-style ``Example:`` section is read as ``Examples:``: griffe knows only the plural
  as the examples section and renders the singular as a plain admonition, where ``>>>``
  lines become Markdown block quotes.
* A doctest in the free text of a docstring (a module's, typically) is fenced as ``pycon``
  for the same reason.

Loaded by mkdocstrings (``extensions`` in ``mkdocs.yml``); the source files are not changed.
"""

from __future__ import annotations

import re

import griffe

_SINGULAR = re.compile(r"^(\s*)Example:[ \t]*$", re.M)


def _fence_doctests(text: str) -> str:
    """Fence runs of unindented ``>>>`` lines (with their output, up to a blank line)."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith(">>>"):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                i += 1
            out += ["```pycon", *block, "```"]
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


class ExampleSections(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            value = _SINGULAR.sub(r"\1Examples:", obj.docstring.value)
            obj.docstring.value = _fence_doctests(value)
