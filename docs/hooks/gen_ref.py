"""MkDocs hook: the config and CLI reference pages, generated from the code on every build.

* ``reference/config.md``: every key of the run configuration, from the dataclasses in
  ``hpn.training.config`` (``dataclasses.fields``: name, type, default). A key's meaning comes
  from, in this order: the field's ``metadata["doc"]``, the ``Attributes:`` section of its
  class docstring (Google style), or the ``#`` comment on the lines right above the field or
  at the end of its line. The data sources and backbones that ``data.options`` and
  ``model.options`` configure are listed with their keyword arguments and defaults, read from
  the registries the trainer uses.
* ``reference/cli.md``: every ``hpn`` command and option, from ``hpn.cli.build_parser()``.

Run it alone to print both pages: ``python docs/hooks/gen_ref.py``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import os
import re
import tokenize
import types
import typing
from pathlib import Path

CONFIG_PAGE = "reference/config.md"
CLI_PAGE = "reference/cli.md"
NO_MEANING = "*(no description in the code yet)*"


# --------------------------------------------------------------------------- config


def _type_name(hint) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a!r}`" for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "`None`"
    if dataclasses.is_dataclass(hint):
        return "section"
    return f"`{getattr(hint, '__name__', str(hint))}`"


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return f"`{f.default!r}`"
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return "(section)"
        return f"`{value!r}`"
    return "required"


def _attributes_section(doc: str | None) -> dict[str, str]:
    """``name: text`` entries of a Google-style ``Attributes:`` section (continuations joined)."""
    if not doc:
        return {}
    lines = inspect.cleandoc(doc).splitlines()
    out: dict[str, str] = {}
    inside, current, indent = False, None, None
    for line in lines:
        if re.match(r"^(Attributes|Args|Fields):\s*$", line):
            inside, current, indent = True, None, None
            continue
        if not inside:
            continue
        if line and not line[0].isspace():  # the next section or plain text ends it
            inside = False
            continue
        stripped = line.strip()
        if not stripped:
            continue
        lead = len(line) - len(line.lstrip())
        match = re.match(r"^([A-Za-z_][\w, ]*?)(?:\s*\(.*?\))?:\s*(.*)$", stripped)
        if match and (indent is None or lead <= indent):
            indent = lead
            names = [n.strip() for n in match.group(1).split(",")]
            current = names
            for n in names:
                out[n] = match.group(2)
        elif current:
            for n in current:
                out[n] = f"{out[n]} {stripped}".strip()
    return out


def _field_comments(source: str, class_name: str) -> dict[str, str]:
    """The ``#`` comments right above each field of a class, or at the end of its line."""
    tree = ast.parse(source)
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ClassDef) and node.name == class_name):
            continue
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            above: list[str] = []
            line = stmt.lineno - 1
            while line >= 1 and lines[line - 1].strip().startswith("#"):
                above.insert(0, comments.get(line, ""))
                line -= 1
            trailing = comments.get(stmt.end_lineno) if stmt.end_lineno else None
            text = " ".join(part for part in [*above, trailing or ""] if part)
            if text:
                out[stmt.target.id] = text
    return out


def _meanings(cls) -> dict[str, str]:
    source = Path(inspect.getsourcefile(cls)).read_text()
    meanings = _field_comments(source, cls.__name__)
    meanings.update(_attributes_section(cls.__doc__ if _own_doc(cls) else None))
    for f in dataclasses.fields(cls):
        if f.metadata.get("doc"):
            meanings[f.name] = str(f.metadata["doc"])
    return meanings


def _own_doc(cls) -> bool:
    """False for the docstring dataclasses writes itself (``Name(a: int = 0, ...)``)."""
    return bool(cls.__doc__) and not cls.__doc__.startswith(f"{cls.__name__}(")


def _escape(text: str) -> str:
    """Text for a Markdown table cell: no HTML tags, no cell breaks, one line."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # outside code spans
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts).replace("|", "\\|").replace("\n", " ")


def config_fields(root=None, prefix: str = ""):
    """``(key, type, default, meaning, section_class)`` rows of every config key, depth first."""
    from hpn.training.config import LossConfig, RunConfig, _section

    cls = root or RunConfig
    hints = typing.get_type_hints(cls)
    meanings = _meanings(cls)
    rows = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        hint = hints[f.name]
        section = _section(hint)
        rows.append((key, section or hint, f, meanings.get(f.name), cls))
        if section is not None and section is not LossConfig:  # losses: _losses_section
            rows.extend(config_fields(section, f"{key}."))
    return rows


def missing_meanings() -> list[str]:
    """Config keys whose meaning the code does not state (for the report)."""
    return [
        key
        for key, hint, _, meaning, _ in config_fields()
        if not meaning and not dataclasses.is_dataclass(hint)
    ]


def _signature_rows(fn) -> list[str]:
    rows = []
    for name, p in inspect.signature(fn).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = "required" if p.default is p.empty else f"`{p.default!r}`"
        rows.append(f"`{name}` = {default}")
    return rows


def _first_line(fn) -> str:
    doc = inspect.getdoc(fn) or ""
    return _escape(doc.split("\n\n")[0].replace("\n", " "))


def _hints() -> dict[str, str]:
    """Text generated from the registries, shown after a key's meaning (or in its place)."""
    from hpn.data.registry import SOURCES
    from hpn.models import BACKBONES
    from hpn.registry import HEADS

    def names(registry) -> str:
        return ", ".join(f"`{name}`" for name in registry)

    return {
        "head.kind": f"One of {names(HEADS)}: see [heads](#heads).",
        "data.name": f"One of {names(SOURCES)}: see [data sources](#data-sources).",
        "data.options": "Keyword arguments of the data source: see [data sources](#data-sources).",
        "model.backbone": f"One of {names(BACKBONES)}: see [backbones](#backbones).",
        "model.options": "Keyword arguments of the backbone: see [backbones](#backbones).",
    }


def config_page() -> str:
    from hpn.training.config import RunConfig

    out = [
        "# Run configuration",
        "",
        "`hpn train --config FILE.yaml key.sub=value ...` reads a YAML file into the dataclasses "
        "of `hpn.training.config` and applies the overrides. Unknown keys and wrong types are "
        "one-line errors naming the key. The configs shipped with the package are in "
        "`src/hpn/configs/` (e.g. `demo.yaml`).",
        "",
        '!!! note "Generated"',
        "    This page is generated from the code on every build of the site "
        "(`docs/hooks/gen_ref.py`): the keys, types and defaults are those of "
        "`dataclasses.fields`, the meanings come from the field docs and comments.",
        "",
    ]
    rows = config_fields()
    hints = _hints()
    sections: dict[str, list] = {}
    for key, hint, f, meaning, cls in rows:
        section = key.rpartition(".")[0]
        sections.setdefault(section, []).append((key, hint, f, meaning, cls))
    for section, items in sections.items():
        cls = items[0][4]
        title = f"`{section}`" if section else "Top level"
        out += [f"## {title}", ""]
        if _own_doc(cls):
            out += [inspect.cleandoc(cls.__doc__).split("\n\n")[0], ""]
        out += [f"Class `hpn.training.config.{cls.__name__}`.", ""]
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for key, hint, f, meaning, _ in items:
            if key == "head.loss":
                text = f"{_escape(meaning or '')} See [losses](#losses)."
                out.append(f"| `{key}` | section | `None` | {text} |")
                continue
            if dataclasses.is_dataclass(hint):
                anchor = key.replace(".", "")
                text = f"section: see [`{key}`](#{anchor})"
            else:
                text = _escape(meaning) if meaning else ""
                text = f"{text} {hints.get(key, '')}".strip() or NO_MEANING
            out.append(f"| `{key}` | {_type_name(hint)} | {_default(f)} | {text} |")
        out.append("")
    out += _heads_section() + _losses_section() + _sources_section() + _backbones_section()
    example = Path(inspect.getsourcefile(RunConfig)).parent.parent / "configs" / "demo.yaml"
    if example.is_file():
        out += [
            "## Example: `demo.yaml`",
            "",
            "```yaml",
            example.read_text().rstrip(),
            "```",
            "",
        ]
    return "\n".join(out)


def _heads_section() -> list[str]:
    from hpn.registry import HEADS

    out = [
        "## Heads {#heads}",
        "",
        "A head kind takes only its own settings (a key of another kind is an error); an "
        "override that changes `head.kind` drops the file's settings the new kind does not take.",
        "",
        "| `head.kind` | what it is | settings | losses (default first) |",
        "|---|---|---|---|",
    ]
    for name, entry in HEADS.items():
        settings = ", ".join(f"`{k}`" for k in entry.settings) or "(none)"
        losses = entry.losses()
        if entry.default_loss in losses:
            losses.remove(entry.default_loss)
            losses.insert(0, entry.default_loss)
        shown = ", ".join(f"`{k}`" for k in losses) or "-"
        out.append(f"| `{name}` | {_escape(entry.summary)} | {settings} | {shown} |")
    return [*out, ""]


def _losses_section() -> list[str]:
    from hpn.losses import LOSSES

    out = [
        "## `head.loss` {#losses}",
        "",
        "One mapping: `kind` (a name below) and that loss's settings, e.g. "
        "`head.loss: {kind: neighbour_softmax, scale: 20.0, neighbours: 32}`; a setting the "
        "loss does not take is an error. Generated from `hpn.losses.LOSSES`; a loss added with "
        "`register_loss` appears here.",
        "",
        "| `head.loss.kind` | heads | settings (default) | what it is |",
        "|---|---|---|---|",
    ]
    for name, entry in LOSSES.items():
        meanings = _attributes_section(entry.settings.__doc__)
        settings = "<br>".join(
            f"`{f.name}` = `{f.default!r}`: {_escape(meanings.get(f.name, ''))}"
            for f in dataclasses.fields(entry.settings)
        )
        aliases = f" (was {', '.join(f'`{a}`' for a in entry.aliases)})" if entry.aliases else ""
        doc = inspect.getdoc(entry.loss) or ""
        heads = ", ".join(f"`{h}`" for h in entry.heads)
        what = _escape(doc.split("\n\n")[0].replace("\n", " "))
        out.append(f"| `{name}`{aliases} | {heads} | {settings or '(none)'} | {what} |")
    return [*out, ""]


def _sources_section() -> list[str]:
    from hpn.data.registry import SOURCES

    out = [
        "## Data sources {#data-sources}",
        "",
        "`data.options` are the keyword arguments of the source's loader; `seed` defaults to "
        "the run's `seed`. Nothing is downloaded.",
        "",
        "| `data.name` | loader | options (default) | what it is |",
        "|---|---|---|---|",
    ]
    for name, fn in SOURCES.items():
        options = "<br>".join(_signature_rows(fn))
        out.append(
            f"| `{name}` | `{fn.__module__}.{fn.__name__}` | {options} | {_first_line(fn)} |"
        )
    return [*out, ""]


def _backbones_section() -> list[str]:
    from hpn.models import BACKBONES

    out = [
        "## Backbones {#backbones}",
        "",
        "`model.options` are the keyword arguments of the backbone (see `hpn.models`).",
        "",
        "| `model.backbone` | options (default) |",
        "|---|---|",
    ]
    for name, fn in BACKBONES.items():
        rows = _signature_rows(fn)[1:]  # the first parameter is the input shape
        out.append(f"| `{name}` | {'<br>'.join(rows) or '(none)'} |")
    return [*out, ""]


# --------------------------------------------------------------------------- CLI


def _subcommands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, sub, helps.get(name, "")


def _option_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | default | meaning |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            flags = ", ".join(f"`{s}`" for s in action.option_strings)
            if action.nargs != 0:
                flags += f" `{action.metavar or action.dest.upper()}`"
        else:
            flags = f"`{action.metavar or action.dest}`"
            if action.nargs in ("*", "+"):
                flags += " ..."
        default = action.default
        hidden = default in (None, [], argparse.SUPPRESS) or default is False
        shown = "" if hidden else f"`{default!r}`"
        text = action.help or ""
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            choices = ", ".join(f"`{c}`" for c in action.choices)
            text = f"{text.rstrip('.')}. One of: {choices}." if text else f"One of: {choices}."
        rows.append(f"| {flags} | {shown} | {_escape(text)} |")
    return rows


def _command_section(command: str, sub, help_text: str, level: str) -> list[str]:
    return [
        f"{level} `{command}`",
        "",
        f"{help_text[:1].upper()}{help_text[1:]}." if help_text else "",
        "",
        "```text",
        sub.format_usage().strip(),
        "```",
        "",
        *_option_rows(sub),
        "",
    ]


def cli_page() -> str:
    from hpn.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "84"  # argparse wraps usage lines at the terminal width
    try:
        parser = build_parser()
        out = [
            "# Command line",
            "",
            f"`hpn` — {parser.description}. Errors a user can cause end in one line on stderr "
            "and exit status 2.",
            "",
            '!!! note "Generated"',
            "    This page is generated from `hpn.cli.build_parser()` on every build of the "
            "site (`docs/hooks/gen_ref.py`).",
            "",
        ]
        for name, sub, help_text in _subcommands(parser):
            out += _command_section(f"hpn {name}", sub, help_text, "##")
            for inner, inner_sub, inner_help in _subcommands(sub):  # hpn bench NAME
                out += _command_section(f"hpn {name} {inner}", inner_sub, inner_help, "###")
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(out)


# --------------------------------------------------------------------------- MkDocs


def on_files(files, config):
    """Add the generated pages to the build (they exist only in memory)."""
    from mkdocs.structure.files import File

    for uri, make in ((CONFIG_PAGE, config_page), (CLI_PAGE, cli_page)):
        files.append(File.generated(config, uri, content=make()))
    return files


if __name__ == "__main__":
    print(config_page())
    print(cli_page())
    print("\nconfig keys without a meaning:", ", ".join(missing_meanings()) or "none")
