"""The one sweep runner of ``hpn bench``: a spec's variants x seeds, trained or read back.

A spec (``specs/NAME.yaml``) is data: a base run config, options with their defaults (the
only place they are written), variants, metrics and the table's columns. :func:`run_sweep`
expands the variants, runs or reads back one folder per (variant, seed) under ``out_dir``
(:func:`run_or_load`: finished runs are read back, interrupted ones resumed), and prints one
row per variant: per-seed values, mean ± sd, extra columns from ``results.json``,
``head.json``, ``metrics.csv`` or a per-run report. ``jobs`` > 1 first trains the missing
runs that many at a time in one-thread processes (:func:`run_parallel`).

Spec keys:

``help``, ``config`` (a packaged config name or a file), ``out_dir``, ``seeds``
    what ``hpn bench NAME -h`` says, and the defaults of ``--config``, ``--out``, ``--seeds``.
``options``
    ``name: {type, default, help}``, each also a command-line option ``--name``; ``type`` is
    ``ints``, ``floats`` or ``names`` (comma-separated lists), ``text`` (one string) or
    ``pairs`` (repeated ``key=value``, values read as YAML, into a dict).
``header``
    a template (:func:`hpn.experiments.table.fill`) of what ran, filled from the options,
    ``seeds``, ``cfg`` (the base config after the overrides) and ``header_values`` (names of
    functions returning text); printed as ``# hpn bench NAME: ...; machine``.
``variants``
    a list; an entry is a variant (``fields``, ``folder``, ``overrides``, optional ``head``:
    a head name of :func:`hpn.registry.head_overrides` whose overrides go before the
    variant's, optional ``reference``: a function ``(config, overrides, seed) -> results``
    used instead of training), a group ``{for: {var: option}, variants: [...]}`` repeated for each value of
    an option (with ``overrides`` put before its variants' and a stderr ``note`` after each
    value; ``largest_first`` trains the largest values first), or ``{each: option,
    patterns: [...]}``: one variant per name in the option, from the pattern whose ``match``
    (a regular expression, named groups join the context) fits it.
``metrics``
    ``name: results_key`` or ``name: {key, file, scale, per_epoch, sum, report}``: one list
    per row, a value per seed; ``name: {run_folder: true}`` is the folder each run is read
    from (where the bench's ``--out`` is now, not the ``out_dir`` it was trained in).
``columns``
    ``{title, ...}`` cells as :func:`hpn.experiments.table.cell` declares them.
``after``
    ``{function, ...arguments}``: called as ``function(rows, out, **arguments)`` at the end.

Functions (``reference``, ``report``, ``header_values``, ``after``) are names in
:data:`hpn.experiments.hooks.HOOKS`. :func:`load_spec` checks a spec's keys and types
(:func:`hpn.experiments.spec_check.check_spec`).

Templates see the options, ``seeds``, ``cfg``, the group variables, the pattern's groups and
``name``, and the variant's ``fields``; a row is the group variables, the fields and the
metric lists.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import import_module, resources
from pathlib import Path
from typing import Any, TextIO

import yaml

from hpn.experiments import table
from hpn.experiments.hooks import HOOKS
from hpn.experiments.spec_check import check_spec
from hpn.experiments.table import fill
from hpn.registry import head_overrides
from hpn.training.config import RunConfig, parse_key_values, saved_run_difference
from hpn.training.run import config_path, load_config, run

#: One run: (config, overrides, seed, folder), as ``hpn train --config CONFIG OVERRIDES
#: seed=SEED out_dir=FOLDER`` would do it.
Case = tuple[str, list[str], int, Path]


def spec_names() -> list[str]:
    """The benchmarks defined by a spec file (``hpn bench NAME``).

    >>> "classification" in spec_names() and "glyphs" in spec_names()
    True
    """
    folder = resources.files("hpn.experiments") / "specs"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


#: Old spec names that still work for one release, with a ``DeprecationWarning``.
SPEC_ALIASES = {"blog": "clusters"}


def load_spec(name: str) -> dict:
    """The spec ``name`` (a packaged spec or an old name of one, or a YAML file), with its
    ``name`` set and its keys checked.

    >>> load_spec("classification")["options"]["dims"]["default"]
    [2, 3, 5, 10]
    """
    if name in SPEC_ALIASES:
        new = SPEC_ALIASES[name]
        warnings.warn(f"spec {name!r} is deprecated; use {new!r}", DeprecationWarning, 2)
        name = new
    path = Path(name)
    if not path.is_file():
        if name not in spec_names():
            raise ValueError(f"no benchmark spec {name!r}; known: {', '.join(spec_names())}")
        path = Path(str(resources.files("hpn.experiments") / "specs" / f"{name}.yaml"))
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(spec, dict):
        spec.setdefault("name", path.stem)
    return check_spec(spec, path.stem, HOOKS)


def named_function(dotted: str) -> Callable:
    """``"package.module:function"`` as the function (for the micro-benchmarks' table in
    :mod:`hpn.experiments.registry`, written in Python; specs name :data:`HOOKS`)."""
    module, _, attr = dotted.partition(":")
    return getattr(import_module(module), attr)


def hook(name: str) -> Callable:
    """The function a spec names (:data:`hpn.experiments.hooks.HOOKS`)."""
    if name not in HOOKS:
        raise ValueError(f"no spec function {name!r}; known: {sorted(HOOKS)}")
    return HOOKS[name]


def parse_option(kind: str, value: Any) -> Any:
    """An option value as its spec ``type`` says: a comma string or a sequence for lists.

    >>> parse_option("ints", "0,1,2"), parse_option("floats", (0.5,)), parse_option("names", "a,b")
    ([0, 1, 2], [0.5], ['a', 'b'])
    >>> parse_option("pairs", ["num_classes=3", "std=0.5"])
    {'num_classes': 3, 'std': 0.5}
    """
    if kind == "text":
        return str(value)
    if kind == "pairs":
        if isinstance(value, dict):
            return dict(value)
        return parse_key_values(list(value))
    convert = {"ints": int, "floats": float, "names": str}[kind]
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        return [convert(item) for item in items]
    except ValueError:
        raise ValueError(f"expected comma-separated {convert.__name__}s, got {value!r}") from None


class ModuleValues:
    """``const.hpn.prototypes.data_prior.COSINE_SCALE`` in a template: a module's value, so a
    spec can use a library constant instead of writing its number again.

    >>> f"{ModuleValues().hpn.prototypes.data_prior.COSINE_SCALE:g}"
    '20'
    """

    def __init__(self, prefix: str = ""):
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or (not self._prefix and name != "hpn"):
            raise AttributeError(name)  # only hpn's own modules are imported
        path = f"{self._prefix}.{name}" if self._prefix else name
        try:
            import_module(path)
            return ModuleValues(path)
        except ModuleNotFoundError:
            if not self._prefix or not hasattr(import_module(self._prefix), name):
                raise AttributeError(path) from None
            return getattr(import_module(self._prefix), name)


@dataclass
class Row:
    """One table row: its fields, and one case per seed (trained, or a reference)."""

    fields: dict
    cases: list[Case]
    reference: str | None = None
    train_key: tuple = ()
    note: tuple[str, dict] | None = None  # (template, context) printed after this row
    _results: list[dict] = field(default_factory=list)


def _pattern_variant(entry: dict, name: str) -> tuple[dict, dict]:
    """(the pattern that fits ``name``, its named groups, numbers as ints)."""
    for pattern in entry["patterns"]:
        match = re.fullmatch(pattern["match"], name)
        if match:
            groups = {k: int(v) if v.isdigit() else v for k, v in match.groupdict().items()}
            return pattern, groups
    usages = [p.get("usage", p["match"]) for p in entry["patterns"]]
    raise ValueError(
        f"unknown {entry.get('kind', 'variant')} {name!r}; use {', '.join(usages[:-1])} or "
        f"{usages[-1]}"
    )


def _variant_row(variant: dict, context: dict, plan: dict, key: tuple) -> Row:
    fields = fill(variant.get("fields", {}), context)
    context = {**context, **fields}
    folder = fill(variant["folder"], context)
    head = head_overrides(fill(variant["head"], context)) if variant.get("head") else []
    overrides = [*plan["overrides"], *head, *fill(variant.get("overrides", []), context)]
    cases = [
        (plan["config"], overrides, s, Path(plan["out_dir"]) / f"{folder}-s{s}")
        for s in plan["seeds"]
    ]
    row_fields = {**{v: context[v] for v in plan["group_vars"]}, **fields}
    return Row(row_fields, cases, variant.get("reference"), key)


def _expand(entries: list[dict], context: dict, plan: dict, key: tuple = ()) -> list[Row]:
    """The rows of a ``variants`` list, in table order (see the module docstring)."""
    rows: list[Row] = []
    for i, entry in enumerate(entries):
        if "for" in entry:
            ((var, option),) = entry["for"].items()
            values = list(context[option])
            order = sorted(values, reverse=True) if entry.get("largest_first") else values
            for value in values:
                inner = {**context, var: value}
                sub = {
                    **plan,
                    "overrides": [*plan["overrides"], *fill(entry.get("overrides", []), inner)],
                    "group_vars": [*plan["group_vars"], var],
                }
                got = _expand(entry["variants"], inner, sub, (*key, i, order.index(value)))
                if entry.get("note") and got:
                    got[-1].note = (entry["note"], {**inner, "first": got[0]})
                rows += got
        elif "each" in entry:
            for j, name in enumerate(context[entry["each"]]):
                pattern, groups = _pattern_variant(entry, name) if "patterns" in entry else ({}, {})
                variant = {"head": entry.get("head"), **pattern}
                overrides = [*entry.get("overrides", []), *pattern.get("overrides", [])]
                variant.update(folder=entry["folder"], fields=entry["fields"], overrides=overrides)
                inner = {**context, **groups, "name": name}
                rows.append(_variant_row(variant, inner, plan, (*key, i, j)))
        else:
            rows.append(_variant_row(entry, context, plan, (*key, i)))
    return rows


def plan_sweep(
    spec: dict,
    config: str | None = None,
    seeds: Iterable[int] | str | None = None,
    out_dir: str | None = None,
    overrides: Iterable[str] = (),
    **options: Any,
) -> tuple[dict, list[Row]]:
    """(the template context, the rows) of a spec with these options; nothing runs.

    Raises:
        ValueError: an unknown option, a bad value, or a variant name no pattern fits.
    """
    unknown = sorted(set(options) - set(spec.get("options", {})))
    if unknown:
        raise ValueError(f"hpn bench {spec['name']} has no option(s) {unknown}")
    context: dict[str, Any] = {}
    for name, opt in spec.get("options", {}).items():
        value = options.get(name)
        context[name] = parse_option(opt["type"], opt["default"] if value is None else value)
    context["seeds"] = parse_option("ints", spec["seeds"] if seeds is None else seeds)
    config = str(config_path(config or spec["config"]))
    overrides = list(overrides)
    context["cfg"] = load_config(config, overrides)
    context["const"] = ModuleValues()
    plan = {
        "config": config,
        "seeds": context["seeds"],
        "out_dir": out_dir or spec["out_dir"],
        "overrides": overrides,
        "group_vars": [],
    }
    rows = _expand(spec["variants"], context, plan)
    for row in rows:
        for case in row.cases:
            check_kept(overrides, case[1][len(overrides) :])
    return context, rows


def check_kept(given: Sequence[str], later: Sequence[str]) -> None:
    """Refuse an override of the command line that the benchmark's own overrides of a run
    (``later``: its variants and head names) set again to another value, which would
    otherwise replace it without a word.

    >>> check_kept(["head.dims=128"], ["head.kind=prototype", "head.loss.kind=cosine_softmax"])
    >>> check_kept(["head.prototypes=features:r"], ["head.prototypes=data"])
    Traceback (most recent call last):
    ...
    ValueError: override head.prototypes=features:r would be replaced by this benchmark's head.prototypes=data; a head name or an option of the benchmark sets that key
    """
    mine = parse_key_values(list(given), "override")
    for item in later:
        ((key, value),) = parse_key_values([item], "override").items()
        if key in mine and mine[key] != value:
            raise ValueError(
                f"override {key}={mine[key]} would be replaced by this benchmark's "
                f"{item}; a head name or an option of the benchmark sets that key"
            )


def run_or_load(config: str, overrides: Iterable[str], seed: int, folder: Path) -> dict:
    """Results of one run of ``config`` + ``overrides`` in ``folder``.

    A finished run (``results.json`` present) is read back, an interrupted one (``last.pt``)
    resumed, otherwise the run is trained from scratch; so every benchmark continues where
    it stopped. A folder is keyed by the config it was run with (its ``config.json``): one
    made with other settings is refused (:func:`check_same_run`), never read back as this one.
    """
    cfg = load_config(config, [*overrides, f"seed={seed}", f"out_dir={folder}"])
    check_same_run(folder, cfg)
    done = folder / "results.json"
    if done.is_file():
        return json.loads(done.read_text())
    return run(cfg, resume=(folder / "last.pt").is_file(), log=lambda *_: None)


def check_same_run(folder: Path, cfg: RunConfig) -> None:
    """Refuse a run folder whose ``config.json`` differs from ``cfg`` in what it computes
    (:func:`hpn.training.config.saved_run_difference`); a folder without one passes.

    Raises:
        ValueError: names the first key that differs, both values and what to do.
    """
    difference = saved_run_difference(folder, cfg)
    if difference is not None:
        key, old, new = difference
        raise ValueError(
            f"{folder} holds a run made with {key}={old!r}, but this benchmark asks for "
            f"{key}={new!r}; move the folder away or choose another --out"
        )


def run_parallel(
    cases: list[Case], jobs: int, threads: int = 1, log: Callable[[str], None] = print
) -> None:
    """Train the unfinished ``(config, overrides, seed, folder)`` cases, ``jobs`` at a time.

    Each case is a separate ``python -m hpn train`` process with ``threads`` intra-op
    threads (two 2-thread torch processes on 2 cores run about 4x slower than alone), its
    output in ``folder.log``; an interrupted case resumes. Finished cases are skipped, so
    :func:`run_or_load` then reads every result back.

    Raises:
        RuntimeError: a case failed; names it and its log.
    """
    if jobs < 1 or threads < 1:
        raise ValueError(f"jobs and threads must be >= 1, got {jobs} and {threads}")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}

    def one(case: Case) -> None:
        config, overrides, seed, folder = case
        if (folder / "results.json").is_file():  # finished, maybe meanwhile by another process
            return
        folder.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "hpn", "train", "--config", config, *overrides]
        cmd += [f"seed={seed}", f"out_dir={folder}"]
        if (folder / "last.pt").is_file():
            cmd.append("--resume")
        logfile = folder.with_name(folder.name + ".log")
        with open(logfile, "a") as fh:
            code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
        if code != 0:
            raise RuntimeError(f"run {folder} failed (exit {code}); see {logfile}")
        log(f"# done {folder}")

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(one, c) for c in cases]:
            future.result()


def _metric_value(metric: Any, case: Case, result: dict, reports: dict, context: dict) -> Any:
    """One seed's value of a declared metric; None where the run does not have it."""
    if isinstance(metric, str):
        metric = {"key": metric}
    folder = case[3]
    if metric.get("run_folder"):  # where the run is read from, even if moved since
        return str(folder)
    source = metric.get("file", "results.json")
    try:
        if "report" in metric:
            report = metric["report"]
            args = [context[a] for a in report.get("args", [])]
            # one report per run, function and arguments: two metrics may call one function
            # with different arguments (a scan-like and a style-group evaluation)
            key = (folder, report["function"], repr(args))
            if key not in reports:
                reports[key] = hook(report["function"])(folder, *args)
            data = reports[key]
        elif source == "results.json":
            data = result
        elif source == "metrics.csv":
            with open(folder / source, newline="") as fh:
                rows = list(csv.DictReader(fh))
            return sum(int(float(r.get(metric["sum"]) or 0)) for r in rows)
        else:
            data = json.loads((folder / source).read_text())
        value = table.resolve(data, metric["key"])
    except (KeyError, FileNotFoundError):
        return None
    if value is not None and metric.get("per_epoch"):
        value = value / max(result.get("epochs_run", result["epochs"]), 1)
    if value is not None and "scale" in metric:
        value = metric["scale"] * value
    return value


def _collect(spec: dict, row: Row, context: dict, reports: dict) -> dict:
    """The row's fields and, per metric, one value per seed (training what is missing)."""
    results = []
    for case in row.cases:
        if row.reference:
            results.append(hook(row.reference)(*case[:3]))
        else:
            results.append(run_or_load(*case))
    row._results = results
    values = {
        name: [
            _metric_value(m, case, res, reports, context)
            for case, res in zip(row.cases, results, strict=True)
        ]
        for name, m in spec["metrics"].items()
    }
    return {**row.fields, **values}


def _header(spec: dict, context: dict) -> str:
    values = {k: hook(f)() for k, f in spec.get("header_values", {}).items()}
    return f"hpn bench {spec['name']}: {fill(spec['header'], {**context, **values})}"


def run_sweep(
    spec: str | dict,
    *,
    config: str | None = None,
    seeds: Iterable[int] | str | None = None,
    out_dir: str | None = None,
    overrides: Iterable[str] = (),
    jobs: int = 1,
    out: TextIO | None = None,
    **options: Any,
) -> list[dict]:
    """Run (or read back) the spec's sweep and print its table; returns the rows.

    Args:
        spec: a spec name (``hpn bench NAME``), a YAML file, or a loaded spec.
        config: the base run config (default: the spec's).
        seeds: the seeds (default: the spec's), as ints or ``"0,1,2"``.
        out_dir: where the run folders go (default: the spec's).
        overrides: ``key.sub=value`` overrides of every run.
        jobs: > 1 trains the missing runs that many at a time in one-thread processes.
        out: the stream the table goes to (stdout when None).
        **options: the spec's options (default: the spec's defaults).

    Returns:
        One dict per row: its fields and, per metric, the list of per-seed values.
    """
    spec = load_spec(spec) if isinstance(spec, str) else spec
    context, rows = plan_sweep(spec, config, seeds, out_dir, overrides, **options)
    table.print_header(_header(spec, context), out)
    if jobs > 1:
        trainable = [
            c for r in sorted(rows, key=lambda r: r.train_key) if not r.reference for c in r.cases
        ]
        run_parallel(trainable, jobs, log=lambda line: print(line, file=sys.stderr, flush=True))
    columns = spec["columns"]
    table.print_columns([fill(c["title"], context) for c in columns], out)
    reports: dict = {}
    done = []
    for row in rows:
        values = _collect(spec, row, context, reports)
        done.append(values)
        table.print_row([table.cell(c, {**context, **values}, done) for c in columns], out)
        if row.note:
            template, note_context = row.note
            first = note_context["first"]._results[0]
            print(f"# {fill(template, {**note_context, 'result': first})}", file=sys.stderr)
    if spec.get("after"):
        after = dict(spec["after"])
        hook(after.pop("function"))(done, out, **after)
    return done
