"""Benchmark specs checked as strictly as run configs: unknown keys and wrong types are
one-line errors that name the key (``spec glyphs: variants[1].variants[0].pattern: ...``).

The shape is the one :mod:`hpn.experiments.sweep` documents; functions are named by their
key in :data:`hpn.experiments.hooks.HOOKS`, and head names are checked by
:func:`hpn.registry.head_overrides` where they are written out (not templates).
"""

from __future__ import annotations

from typing import Any

OPTION_TYPES = ("ints", "floats", "names", "text", "pairs")

_TOP = {
    "help": str, "config": str, "out_dir": str, "seeds": list, "options": dict, "header": str,
    "header_values": dict, "variants": list, "metrics": dict, "columns": list, "after": dict,
    "name": str,
}  # fmt: skip
_REQUIRED = ("help", "config", "out_dir", "seeds", "header", "variants", "metrics", "columns")
_OPTION = {"type": str, "default": object, "help": str}
_COMMON = {"overrides": list, "fields": dict, "head": str, "reference": str}
_VARIANT = {"folder": str, **_COMMON}
_GROUP = {"for": dict, "variants": list, "overrides": list, "note": str, "largest_first": bool}
_EACH = {"each": str, "kind": str, "folder": str, "fields": dict, "patterns": list, "head": str,
         "overrides": list}  # fmt: skip
_PATTERN = {"match": str, "usage": str, **_COMMON}
_METRIC = {"key": str, "file": str, "scale": (int, float), "per_epoch": bool, "sum": str,
           "report": dict, "run_folder": bool}  # fmt: skip
_REPORT = {"function": str, "args": list}
_COLUMN = {
    "title": str, "text": str, "mean_sd": str, "mean": str, "per_seed": str, "ratio": str,
    "lookup": dict, "keys": list, "to": dict, "same": list, "format": str, "digits": int,
    "blank_when": dict,
}  # fmt: skip


def _keys(where: str, data: Any, allowed: dict, required: tuple[str, ...] = ()) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {data!r}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(allowed)}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}")
    for key, value in data.items():
        kind = allowed[key]
        if kind is not object and not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(t.__name__ for t in kind)
            raise ValueError(f"{where}.{key}: expected {names}, got {value!r}")


def _function(where: str, name: str, hooks: dict) -> None:
    if name not in hooks:
        raise ValueError(f"{where}: no function {name!r}; known: {sorted(hooks)}")


def _head(where: str, entry: dict) -> None:
    """A head name written out (no template) must parse."""
    from hpn.registry import head_overrides

    name = entry.get("head")
    if name is not None and "{" not in name:
        try:
            head_overrides(name)
        except ValueError as err:
            raise ValueError(f"{where}.head: {err}") from None


def _variants(where: str, entries: list, hooks: dict) -> None:
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        if isinstance(entry, dict) and "for" in entry:
            _keys(at, entry, _GROUP, ("variants",))
            _variants(f"{at}.variants", entry["variants"], hooks)
        elif isinstance(entry, dict) and "each" in entry:
            _keys(at, entry, _EACH, ("folder", "fields"))
            if "patterns" not in entry and "head" not in entry:
                raise ValueError(f"{at}: an 'each' entry needs patterns or head")
            for j, pattern in enumerate(entry.get("patterns", [])):
                _keys(f"{at}.patterns[{j}]", pattern, _PATTERN, ("match",))
                _head(f"{at}.patterns[{j}]", pattern)
                if "reference" in pattern:
                    _function(f"{at}.patterns[{j}].reference", pattern["reference"], hooks)
        else:
            _keys(at, entry, _VARIANT, ("folder",))
            _head(at, entry)
            if "reference" in entry:
                _function(f"{at}.reference", entry["reference"], hooks)


def check_spec(spec: Any, name: str, hooks: dict) -> dict:
    """``spec`` if it has the shape of a benchmark spec; else a one-line ``ValueError``.

    Args:
        spec: the loaded YAML.
        name: the spec's name, for the messages.
        hooks: the functions a spec may name (:data:`hpn.experiments.hooks.HOOKS`).
    """
    where = f"spec {name}"
    _keys(where, spec, _TOP, _REQUIRED)
    for key, option in spec.get("options", {}).items():
        _keys(f"{where}.options.{key}", option, _OPTION, ("type", "default", "help"))
        if option["type"] not in OPTION_TYPES:
            raise ValueError(
                f"{where}.options.{key}.type: {option['type']!r} is not one of {OPTION_TYPES}"
            )
    for key, function in spec.get("header_values", {}).items():
        _function(f"{where}.header_values.{key}", function, hooks)
    _variants(f"{where}.variants", spec["variants"], hooks)
    for key, metric in spec["metrics"].items():
        if isinstance(metric, str):
            continue
        keyless = "sum" in metric or "run_folder" in metric
        _keys(f"{where}.metrics.{key}", metric, _METRIC, () if keyless else ("key",))
        if "report" in metric:
            _keys(f"{where}.metrics.{key}.report", metric["report"], _REPORT, ("function",))
            _function(f"{where}.metrics.{key}.report", metric["report"]["function"], hooks)
    for i, column in enumerate(spec["columns"]):
        _keys(f"{where}.columns[{i}]", column, _COLUMN, ("title",))
    if "after" in spec:
        if "function" not in spec["after"]:
            raise ValueError(f"{where}.after: missing key(s) ['function']")
        _function(f"{where}.after.function", spec["after"]["function"], hooks)
    return spec
