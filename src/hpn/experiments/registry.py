"""``hpn bench NAME``: the table of benchmarks, their command-line options, the dispatch.

A training benchmark is a spec file (``specs/NAME.yaml``, run by
:func:`hpn.experiments.sweep.run_sweep`): adding one adds no Python. Its options are the
sweep's own (``--config``, ``--seeds``, ``--out``, ``--jobs``, overrides) plus those its spec
declares, with the spec's defaults. A micro-benchmark (:data:`MICRO`) is a function whose
keyword defaults are the options' defaults.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hpn.experiments import sweep


def _ints(text: str) -> list[int]:
    try:
        return sweep.parse_option("ints", text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _names(text: str) -> list[str]:
    return sweep.parse_option("names", text)


@dataclass(frozen=True)
class Option:
    """A micro-benchmark's command-line option, passed on only when given."""

    flag: str
    dest: str
    help: str
    type: Callable[[str], Any] | None = None  # None: a switch (store_true)


@dataclass(frozen=True)
class Micro:
    """A benchmark that is not a sweep: ``function(**options, out=stream)``; a returned int
    is the exit status."""

    function: str
    options: tuple[Option, ...] = ()


_SEED = Option("--seed", "seed", "random seed", int)
_QUICK = Option("--quick", "quick", "small cases only (seconds)")

#: The benchmarks that are not sweeps, in the order ``hpn bench -h`` lists them.
MICRO = {
    "prototypes": Micro("hpn.experiments.prototypes:prototype_benchmark", (_SEED, _QUICK)),
    "optima": Micro("hpn.experiments.prototypes:optima_benchmark", (_SEED,)),
    "scale": Micro(
        "hpn.experiments.scale:scale_benchmark",
        (
            Option("--classes", "classes", "numbers of classes K, comma-separated", _ints),
            Option("--dims", "dims", "HPN output dims d", int),
            Option("--features", "features", "penultimate units (the heads' input)", int),
            Option("--batch", "batch", "examples per step", int),
            Option("--losses", "losses", "HPN losses to time, comma-separated", _names),
            Option("--peers", "peers", "learned-centre heads to time, comma-separated", _names),
            Option("--optimizer", "optimizer", "sgd (with momentum) or adam", str),
            Option("--device", "device", "cpu or cuda", str),
        ),
    ),
    "fuzz": Micro(
        "hpn.experiments.reliability:fuzz_benchmark",
        (Option("--n", "n", "mutants per mutation kind and reader", int), _SEED),
    ),
    "sklearn": Micro(
        "hpn.experiments.estimators:sklearn_benchmark",
        (Option("--quick", "quick", "30 clusters instead of 200 / 1,000"),),
    ),
}


def benchmark_names() -> list[str]:
    """Every ``hpn bench NAME``: the micro-benchmarks, then the specs.

    >>> benchmark_names()[:2], "clusters" in benchmark_names()
    (['prototypes', 'optima'], True)
    """
    return [*MICRO, *sweep.spec_names()]


def _first_line(text: str | None) -> str:
    """A docstring's first paragraph as plain help text.

    >>> _first_line("``auto`` against codes (:mod:`hpn.prototypes.known`). More.")
    'auto against codes (hpn.prototypes.known). More'
    """
    first = (text or "").strip().split("\n\n")[0].replace("\n", " ").rstrip(".")
    return re.sub(r"(:\w+:)?`+([^`]*)`+", r"\2", first)


def _shown(value: object) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _add_micro(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, micro: Micro
) -> None:
    fn = sweep.named_function(micro.function)
    defaults = inspect.signature(fn).parameters
    parser = sub.add_parser(name, help=_first_line(fn.__doc__))
    for opt in micro.options:
        param = defaults.get(opt.dest)
        if opt.type is None:
            parser.add_argument(opt.flag, dest=opt.dest, action="store_true", help=opt.help,
                                default=argparse.SUPPRESS)  # fmt: skip
        else:
            shown = "" if param is None else f" (default {_shown(param.default)})"
            parser.add_argument(opt.flag, dest=opt.dest, type=opt.type, default=argparse.SUPPRESS,
                                help=f"{opt.help}{shown}")  # fmt: skip
    parser.set_defaults(bench=name)


def _add_spec(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str) -> None:
    spec = sweep.load_spec(name)
    old = [alias for alias, new in sweep.SPEC_ALIASES.items() if new == name]
    parser = sub.add_parser(name, help=spec["help"], aliases=old)
    parser.add_argument("--config", help=f"base run config (default {spec['config']})")
    parser.add_argument("--seeds", help=f"seeds (default {_shown(spec['seeds'])})")
    parser.add_argument("--out", help=f"run folders (default {spec['out_dir']})")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs trained at a time, each a one-thread process (default 1: in turn)",
    )
    for opt_name, opt in spec.get("options", {}).items():
        flag = "--" + opt_name.replace("_", "-")
        default = _shown(opt["default"]) if opt["default"] else "none"
        kwargs: dict[str, Any] = {"action": "append"} if opt["type"] == "pairs" else {}
        parser.add_argument(flag, dest=opt_name, default=argparse.SUPPRESS,
                            help=f"{opt['help']} (default {default})", **kwargs)  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides of every run")
    parser.set_defaults(bench=name)


def add_bench_parsers(bench: argparse.ArgumentParser) -> None:
    """One subcommand per benchmark under ``hpn bench``."""
    sub = bench.add_subparsers(dest="which", metavar="NAME", required=True)
    for name, micro in MICRO.items():
        _add_micro(sub, name, micro)
    for name in sweep.spec_names():
        _add_spec(sub, name)


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark ``args`` name, printing to stdout; the exit status."""
    name = args.bench
    if name in MICRO:
        micro = MICRO[name]
        given = {o.dest: getattr(args, o.dest) for o in micro.options if hasattr(args, o.dest)}
        status = sweep.named_function(micro.function)(**given, out=sys.stdout)
        return status if isinstance(status, int) else 0
    if getattr(args, "which", None) in sweep.SPEC_ALIASES:
        print(f"hpn bench {args.which} is now hpn bench {name}; the old name goes in the next "
              "release", file=sys.stderr)  # fmt: skip
    spec = sweep.load_spec(name)
    options = {o: getattr(args, o) for o in spec.get("options", {}) if hasattr(args, o)}
    sweep.run_sweep(
        name,
        config=args.config,
        seeds=args.seeds,
        out_dir=args.out,
        overrides=args.overrides,
        jobs=args.jobs,
        out=sys.stdout,
        **options,
    )
    return 0
