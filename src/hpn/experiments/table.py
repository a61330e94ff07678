"""The one table printer of ``hpn bench``: a header line with the machine, a Markdown table.

Every benchmark prints ``# hpn bench NAME: what ran; date, machine, torch, threads``, then a
Markdown table whose rows appear as they are computed (a long benchmark shows progress). The
cells of a sweep (:mod:`hpn.experiments.sweep`) are declared by its spec's ``columns``; this
module turns one declared column and one row of per-seed values into a cell's text.

Templates are Python format strings whose fields are dotted paths into a context
(``{cfg.optim.lr}``, ``{cfg.data.options.num_classes}``), with a fallback after ``|``
(``{cfg.data.options.num_classes|from the data}``) and the conversion ``!e`` that prints an
empty value as nothing, and ``!p`` that prints a mapping as ``key=value`` pairs.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import string
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import torch

#: A cell whose values are missing or not applicable.
BLANK = "-"


def machine_line() -> str:
    """Date, CPU cores, torch version and intra-op threads: the end of every header line."""
    cpu = platform.processor() or platform.machine()
    return (
        f"{datetime.date.today().isoformat()}, {os.cpu_count()} CPU cores ({cpu}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )


def print_header(text: str, out: TextIO | None = None) -> None:
    """``# {text}; {machine_line()}``: what ran, and where."""
    print(f"# {text}; {machine_line()}", file=out)


def print_columns(titles: Sequence[str], out: TextIO | None = None) -> None:
    """The Markdown table head: the titles, then the rule.

    >>> print_columns(["K", "d"])
    | K | d |
    |---|---|
    """
    print(f"| {' | '.join(titles)} |", file=out)
    print("|" + "---|" * len(titles), file=out)


def print_row(cells: Sequence[str], out: TextIO | None = None) -> None:
    """One Markdown row, flushed at once.

    >>> print_row(["1,000", "0.5000"])
    | 1,000 | 0.5000 |
    """
    print(f"| {' | '.join(cells)} |", file=out, flush=True)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value).

    >>> mean_sd([1.0, 2.0, 3.0])
    (2.0, 1.0)
    >>> mean_sd([0.5])
    (0.5, 0.0)
    """
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_sd_cell(values: Sequence[float | None], digits: int = 4) -> str:
    """``mean ± sd`` with ``digits`` decimals; :data:`BLANK` when a value is missing.

    >>> mean_sd_cell([0.9, 0.92])
    '0.9100 ± 0.0141'
    >>> mean_sd_cell([0.9, None], 3)
    '-'
    """
    present = [v for v in values if v is not None]
    if not present or len(present) < len(values):
        return BLANK
    return "{:.{d}f} ± {:.{d}f}".format(*mean_sd(present), d=digits)


def mean_cell(values: Sequence[float | None], fmt: str = "{:.4f}") -> str:
    """The mean in ``fmt``; :data:`BLANK` when a value is missing.

    >>> mean_cell([2.0, 4.0], "{:.1f} s")
    '3.0 s'
    >>> mean_cell([])
    '-'
    """
    present = [v for v in values if v is not None]
    if not present or len(present) < len(values):
        return BLANK
    return fmt.format(statistics.mean(present))


def per_seed_cell(values: Sequence[Any], fmt: str = "{}") -> str:
    """Each seed's value in ``fmt``, joined by `` / `` (a missing one prints ``None``).

    >>> per_seed_cell([0.91, 0.9], "{:.4f}")
    '0.9100 / 0.9000'
    >>> per_seed_cell([3, None])
    '3 / None'
    """
    return " / ".join(fmt.format(v) if v is not None else str(v) for v in values)


def resolve(context: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path``: mapping keys or attributes, step by step.

    >>> resolve({"cfg": {"data": {"name": "mnist5k"}}}, "cfg.data.name")
    'mnist5k'

    Raises:
        KeyError: a step is missing (the message names the whole path).
    """
    value: Any = context
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif not isinstance(value, Mapping) and hasattr(value, part):
            value = getattr(value, part)
        else:
            raise KeyError(f"{path} (no {part!r})")
    return value


class _Formatter(string.Formatter):
    def get_field(self, field_name, args, kwargs):
        path, sep, fallback = field_name.partition("|")
        try:
            return resolve(kwargs, path), path
        except KeyError:
            if sep:
                return fallback, path
            raise KeyError(f"template field {{{path}}} is not known here") from None

    def convert_field(self, value, conversion):
        if conversion == "e":  # an empty value prints as nothing
            return value or ""
        if conversion == "p":  # a mapping as key=value pairs
            return " ".join(f"{k}={v}" for k, v in dict(value).items())
        return super().convert_field(value, conversion)


_FORMATTER = _Formatter()


def fill(template: Any, context: Mapping[str, Any]) -> Any:
    """A template filled from ``context``; a template of one bare field keeps the value's type.

    Non-strings pass through, lists and mappings are filled item by item.

    >>> fill("head.dims={d}", {"d": 3})
    'head.dims=3'
    >>> fill("{d}", {"d": 3})
    3
    >>> fill("K = {cfg.options.k|from the data}, t {t:g}", {"cfg": {"options": {}}, "t": 1.0})
    'K = from the data, t 1'
    >>> fill("test on {data!p}", {"data": {"data.options.degrade": 1}})
    'test on data.options.degrade=1'
    """
    if isinstance(template, list):
        return [fill(t, context) for t in template]
    if isinstance(template, dict):
        return {k: fill(v, context) for k, v in template.items()}
    if not isinstance(template, str):
        return template
    parts = list(_FORMATTER.parse(template))
    if len(parts) == 1 and parts[0][0] == "" and parts[0][1] and not parts[0][2]:
        if not parts[0][3]:  # "{x}": the value itself
            return _FORMATTER.get_field(parts[0][1], (), context)[0]
    return _FORMATTER.vformat(template, (), context)


def cell(
    column: Mapping[str, Any], row: Mapping[str, Any], earlier: Sequence[Mapping[str, Any]] = ()
) -> str:
    """The text of one declared ``column`` in ``row`` (fields and per-seed metric lists).

    A column is one of ``text: TEMPLATE`` (filled from the row), ``mean_sd: METRIC`` (with
    ``digits``, default 4), ``mean: METRIC`` (with ``format``), ``per_seed: METRIC`` (with
    ``format``), ``lookup: {a: {b: value}}`` with ``keys: [field_a, field_b]``, or ``ratio:
    METRIC`` with ``to: {field: value}`` and ``same: [fields]`` (with ``format``): the mean
    of METRIC over the mean in the last of the rows printed so far (``earlier``, this one
    included) that has those field values and the same ``same`` fields as this row (a
    baseline measured in the same sweep). With
    ``blank_when: {field: value}`` it prints :data:`BLANK` in rows where a field has that value.

    >>> row = {"t": 0.0, "accs": [0.5, 0.7], "K": 10, "name": "softmax"}
    >>> cell({"mean_sd": "accs", "digits": 2}, row)
    '0.60 ± 0.14'
    >>> cell({"mean_sd": "accs", "blank_when": {"t": 0}}, row)
    '-'
    >>> cell({"lookup": {10: {"softmax": 91.3}}, "keys": ["K", "name"]}, row)
    '91.3'
    >>> base = {"K": 10, "name": "softmax", "accs": [0.4, 0.4]}
    >>> cell({"ratio": "accs", "to": {"name": "softmax"}, "same": ["K"]}, row, [base])
    '1.50'
    """
    for field, value in (column.get("blank_when") or {}).items():
        if row.get(field) == value:
            return BLANK
    if "text" in column:
        return str(fill(column["text"], row))
    if "mean_sd" in column:
        return mean_sd_cell(row[column["mean_sd"]], column.get("digits", 4))
    if "mean" in column:
        return mean_cell(row[column["mean"]], column.get("format", "{:.4f}"))
    if "per_seed" in column:
        return per_seed_cell(row[column["per_seed"]], column.get("format", "{}"))
    if "ratio" in column:
        return _ratio_cell(column, row, earlier)
    if "lookup" in column:
        found: Any = column["lookup"]
        for key in column["keys"]:
            found = found.get(row[key]) if isinstance(found, Mapping) else None
        return BLANK if found is None else str(found)
    raise ValueError(
        f"column {dict(column)} has none of text, mean_sd, mean, per_seed, ratio, lookup"
    )


def _ratio_cell(
    column: Mapping[str, Any], row: Mapping[str, Any], earlier: Sequence[Mapping[str, Any]]
) -> str:
    """A ``ratio`` column's text: this row's mean over its baseline row's, or :data:`BLANK`."""
    metric, same = column["ratio"], column.get("same", [])
    wanted = {**{f: row.get(f) for f in same}, **column["to"]}
    base = [r for r in earlier if all(r.get(f) == v for f, v in wanted.items())]
    mine = [v for v in row[metric] if v is not None]
    theirs = [v for v in base[-1][metric] if v is not None] if base else []
    if not mine or not theirs or not statistics.fmean(theirs):
        return BLANK
    ratio = statistics.fmean(mine) / statistics.fmean(theirs)
    return column.get("format", "{:.2f}").format(ratio)
