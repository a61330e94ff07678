"""The ``hpn`` command line: ``hpn prototypes | train | demo | transfer | evaluate | predict |
export | bench``.

Errors a user can cause (bad numbers, unknown methods, missing files, a full disk, a
checkpoint that is not plain data) end in one line on stderr and exit status 2; tracebacks
are for bugs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import torch
import yaml

import hpn
from hpn import prototypes as protos
from hpn.demo import demo
from hpn.experiments.registry import add_bench_parsers, run_bench
from hpn.prototypes.optimize import progress_bars
from hpn.prototypes.quality import Report
from hpn.threads import THREADS_ENV, use_threads
from hpn.training.class_report import confusion_report
from hpn.training.config import RunConfig, parse_key_values, to_dict
from hpn.training.export import FORMATS, export_run
from hpn.training.finished import evaluate_run, transfer_report
from hpn.training.predict import predict_run
from hpn.training.progress import ProgressBar
from hpn.training.run import (
    config_description,
    load_config,
    packaged_configs,
    resume_config,
    run,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise UsageError(message)


if TYPE_CHECKING:
    _Subparsers = argparse._SubParsersAction[_Parser]


class UsageError(Exception):
    """A user error: reported in one line, exit status 2."""


def _read_class_names(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"class-name file not found: {path}")
    text = file.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of a name
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) < 2:
        raise UsageError(f"{path} holds {len(names)} class names; need at least 2 (one per line)")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UsageError(f"{path}: class name {dup!r} appears more than once")
    return names


def _cmd_prototypes(args: argparse.Namespace) -> int:
    if args.report:
        p, meta = protos.load(args.report)
        print(
            f"file             {args.report}  (method {meta.get('method', '?')}, seed {meta.get('seed', '?')})"
        )
        print(protos.report(p))
        return 0
    names = _read_class_names(args.classes) if args.classes else None
    k = args.num_classes
    if k is None:
        if names is None:
            raise UsageError("give the number of classes with -k (or a --classes file)")
        k = len(names)
    if names is not None and len(names) != k:
        raise UsageError(f"-k {k} but {args.classes} holds {len(names)} class names")
    if args.dims is None:
        raise UsageError("give the dimensionality with -d")
    if args.output is None:
        raise UsageError("give an output file with -o (or --report FILE to report one)")
    with progress_bars():  # optimisations can take minutes: a bar on a terminal
        built = _build_prototypes(args, k, names)
    path = built.save(args.output)  # first: the report may take long at large K
    print(f"method           {built.method}  (seed {built.seed}, {built.seconds:.2f} s)")
    if "max_cosine" in built.info:
        print(f"guaranteed       cos <= {built.info['max_cosine']:+.6f}  ({built.info['name']})")
    print(f"saved            {path} (+ {path.with_suffix('.json').name})", flush=True)
    if args.no_report:
        return 0
    rep = _report_with_progress(built.prototypes, args.report_mode)
    built.save(args.output, with_report=rep)  # the sidecar now holds the report too
    print(rep)
    if "rank_correlation" in built.info:
        print(
            f"rank correlation {built.info['rank_correlation']:+.4f}  (prototype vs embedding similarity order)"
        )
    return 0


def _build_prototypes(
    args: argparse.Namespace, k: int, names: list[str] | None
) -> protos.PrototypeSet:
    """``protos.build`` with the command line's settings."""
    return protos.build(
        k,
        args.dims,
        method=args.method,
        seed=args.seed,
        class_names=names,
        embedder=args.embedder,
        steps=args.steps,
        reset_momentum=args.reset_momentum,
        semantic_weight=args.semantic_weight,
        time_budget=args.time_budget,
        device=args.device,
    )


def _report_with_progress(prototypes: torch.Tensor, mode: str) -> Report:
    """The quality report with a progress bar over its rows on stderr (drawn only on a
    terminal)."""
    exact = {"auto": None, "exact": True, "estimate": False}[mode]
    bar: ProgressBar | None = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = ProgressBar(total, "report", stream=sys.stderr, unit="row")
        bar.update(done)

    rep = protos.report(prototypes, exact=exact, progress=progress)
    if bar is not None:
        bar.close()
    return rep


def _resume_folder(args: argparse.Namespace) -> str:
    """The run folder ``--resume`` continues: ``--out``, else an ``out_dir=`` override, else
    the ``--config`` file's ``out_dir``."""
    if args.out:
        return args.out
    for item in reversed(args.overrides):
        if item.startswith("out_dir="):
            return item.partition("=")[2]
    if args.config:
        return load_config(args.config).out_dir
    raise UsageError("--resume needs the run folder: hpn train --out DIR --resume")


def _train_config(args: argparse.Namespace) -> RunConfig:
    overrides = list(args.overrides)
    if args.resume:
        folder = _resume_folder(args)
        overrides = [o for o in overrides if not o.startswith("out_dir=")]
        cfg, changes = resume_config(folder, args.config, overrides)
        for key, (old, new) in changes.items():
            if key != "out_dir":
                print(f"resume: {key} {old!r} -> {new!r}", file=sys.stderr)
        return cfg
    if args.out:
        overrides.append(f"out_dir={args.out}")
    return load_config(args.config, overrides)


def _cmd_train(args: argparse.Namespace) -> int:
    if args.list_configs:
        names = packaged_configs()
        width = max(map(len, names))
        print("\n".join(f"{n:<{width}}  {config_description(n)}" for n in names))
        return 0
    cfg = _train_config(args)
    if args.print_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    args.out_dir_used = cfg.out_dir  # for the interrupt line
    results = run(cfg, resume=args.resume)
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun only rank 0 reports
    shown = {k: v for k, v in results.items() if k.startswith("test_") and isinstance(v, float)}
    print("test " + "  ".join(f"{k[5:]} {v:.4f}" for k, v in shown.items()) + f"  ({cfg.out_dir})")
    return 0


def _cmd_transfer(args: argparse.Namespace) -> int:
    options = parse_key_values(args.option, "--option")
    rows = [transfer_report(run, args.data, options) for run in args.runs]
    print(
        "| run | head | source | target | separation (source test) | separation (target test) | linear probe accuracy |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run']} | {r['head']} | {r['source']} | {r['target']} | "
            f"{r['source_separation']:.3f} | {r['target_separation']:.3f} | {r['probe_accuracy']:.4f} |"
        )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    print("| run | split | data overrides | accuracy | macro F1 | loss | examples |")
    print("|---|---|---|---|---|---|---|")
    for folder in args.runs:
        r = evaluate_run(folder, args.overrides, split=args.split, device=args.device)
        shown = {k: r[k] if r[k] is not None else float("nan") for k in ("accuracy", "macro_f1")}
        print(
            f"| {folder} | {r['split']} | {' '.join(r['overrides']) or '(none)'} | "
            f"{shown['accuracy']:.4f} | {shown['macro_f1']:.4f} | {r['loss']:.4f} | "
            f"{r['examples']} |"
        )
    if args.confusion:
        for folder in args.runs:
            r = confusion_report(folder, args.overrides, split=args.split, device=args.device)
            print(f"{folder}: {r['per_class_csv']}, {r['confusion_csv']}, {r['confusion_png']}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    out = predict_run(
        args.run, args.inputs, args.out, k=args.top_k, batch_size=args.batch_size,
        device=args.device,
    )  # fmt: skip
    print(f"predictions of {args.inputs} by {args.run}: {out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    out = export_run(args.run, args.format, args.out)
    print(f"{args.format} model of {args.run}: {out} (inputs -> (N, K) class scores)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    demo(out_dir=args.out, config=args.config, seed=args.seed)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    return run_bench(args)


def _add_prototypes(sub: _Subparsers) -> None:
    pro = sub.add_parser("prototypes", help="generate prototypes, or report a prototype file")
    pro.add_argument("-k", "--num-classes", type=int, help="number of classes K")
    pro.add_argument("-d", "--dims", type=int, help="output dimensionality d")
    pro.add_argument(
        "--method",
        default="auto",
        help="|".join(protos.METHODS) + " (hpn: the old name of paper_optimizer). auto: "
        "the exact form where one is optimal (simplex K <= d + 1, cross-polytope K <= 2d, "
        "polygon d = 2); up to K = 2,048 the better of the optimiser and a binary code; "
        "above, a code filling all d dims when one exists (instant; the optimiser can be "
        "slightly better at minutes' cost, e.g. K = 5,000, d = 64: worst cosine 0.25 "
        "against 0.2397), else the better of a padded code and the neighbour-list optimiser "
        "up to K = 10,000, and the code beyond",
    )
    pro.add_argument("--seed", type=int, default=0)
    pro.add_argument(
        "--report-mode",
        choices=["auto", "exact", "estimate"],
        default="auto",
        help="quality report: exact all pairs, or estimated from 4,096 sampled rows; auto: "
        "exact up to 200,000 prototypes",
    )
    pro.add_argument(
        "--no-report", action="store_true", help="write the file without the quality report"
    )
    pro.add_argument("--classes", help="text file with one class name per line")
    pro.add_argument(
        "-o", "--output", help="output .npy file (a .json sidecar is written beside it)"
    )
    pro.add_argument("--report", metavar="FILE", help="report an existing prototype file and exit")
    pro.add_argument("--steps", type=int, help="optimisation steps (hpn: epochs)")
    pro.add_argument(
        "--reset-momentum",
        action="store_true",
        help="hpn: drop momentum each step like the reference code",
    )
    pro.add_argument("--embedder", default="glove", help="semantic: glove|minilm")
    pro.add_argument("--semantic-weight", type=float, help="semantic: weight of the ranking loss")
    pro.add_argument(
        "--time-budget",
        type=float,
        help="auto/optimized: cap on optimisation seconds (then not deterministic)",
    )
    pro.add_argument("--device", default="cpu")
    pro.set_defaults(func=_cmd_prototypes)


def _add_train(sub: _Subparsers) -> None:
    train = sub.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train a model. Every key has a default, so --config is optional; "
        "key.sub=value overrides change any key. `hpn train --print-config` lists every key "
        "with its value; the config reference in the docs (docs/reference/config.md) says "
        "what each means.",
    )
    train.add_argument(
        "--config",
        help="a YAML run config: a file, or the name of a packaged one (see --list-configs)",
    )
    train.add_argument("--out", help="the run folder (the out_dir key)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its saved config (only optim.epochs, "
        "optim.patience, tensorboard and device may change)",
    )
    train.add_argument("--list-configs", action="store_true", help="list the packaged configs")
    train.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )
    train.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. optim.lr=0.1")
    train.set_defaults(func=_cmd_train)


def _add_demo(sub: _Subparsers) -> None:
    demo = sub.add_parser("demo", help="the main job: HPN vs softmax on the embedded digits")
    demo.add_argument("--out", help="run folder (default runs/demo-<time>)")
    demo.add_argument("--config", default=None, help="base config (default configs/demo.yaml's)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)


def _add_transfer(sub: _Subparsers) -> None:
    tra = sub.add_parser(
        "transfer",
        help="frozen features of finished runs: class separation and a linear probe elsewhere",
    )
    tra.add_argument("runs", nargs="+", help="run folders (config.json + best.pt)")
    tra.add_argument("--data", required=True, help="target data source, e.g. fashion_mnist")
    tra.add_argument(
        "--option", action="append", default=[], help="target source option key=value (repeat)"
    )
    tra.set_defaults(func=_cmd_transfer)


def _add_evaluate(sub: _Subparsers) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="score finished runs' best weights on their data with data.* overrides",
        description="Score each run's best.pt on one split of its data loaded with data.* "
        "overrides (e.g. data.options.degrade=1: scan-like glyphs; "
        "data.options.test_group=styles: the held-out style group of a glyphs run trained "
        "with data.options.style_fonts). Nothing is trained; the "
        "scores are kept in RUN/evaluations/ and read back.",
    )
    ev.add_argument("runs", nargs="+", help="run folders (config.json + best.pt)")
    ev.add_argument("--split", default="test", help="train, val or test (default test)")
    ev.add_argument("--device", default="cpu")
    ev.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="a data.* override, e.g. data.options.degrade=1 (repeat)",
    )  # fmt: skip
    ev.add_argument(
        "--confusion", action="store_true",
        help="also write per-class accuracy and the confusion matrix (CSV tables and a PNG "
        "figure) to RUN/evaluations/",
    )  # fmt: skip
    ev.set_defaults(func=_cmd_evaluate)


def _add_predict(sub: _Subparsers) -> None:
    pre = sub.add_parser(
        "predict",
        help="a finished run's top-k classes and scores for each input, to CSV or Parquet",
        description="Predict INPUTS with RUN's best.pt: the run's own split (train, val, "
        "test), an image folder or file, a file listing image paths (one per line) or a CSV with a "
        "path column. Images are prepared as the run's data source prepared its training "
        "images; runs on other inputs (vectors, glyph renders) take split names only. One "
        "row per input: class_j, name_j and cosine_j (prototype heads) or probability_j "
        "(softmax heads) for j = 1..k.",
    )
    pre.add_argument("run", help="a run folder (config.json + best.pt)")
    pre.add_argument("inputs", help="train|val|test, an image folder or file, a list file or a CSV")
    pre.add_argument("--out", required=True, help="the table: FILE.csv, or FILE.parquet")
    pre.add_argument("--top-k", type=int, default=5, help="classes per input (default 5)")
    pre.add_argument("--batch-size", type=int, default=256)
    pre.add_argument("--device", default="cpu")
    pre.set_defaults(func=_cmd_predict)


def _add_export(sub: _Subparsers) -> None:
    exp = sub.add_parser(
        "export",
        help="a finished run's network as TorchScript or ONNX (inputs -> class scores)",
        description="Write RUN's best network, inputs (N, *input shape) -> class scores "
        "(N, K) (cosines, or softmax probabilities for a softmax head), as a TorchScript or "
        "ONNX file. ONNX needs the onnx and onnxscript packages (the export extra).",
    )
    exp.add_argument("run", help="a run folder (config.json + best.pt)")
    exp.add_argument("--format", required=True, choices=FORMATS)
    exp.add_argument("--out", required=True, help="the file to write, e.g. model.pt or model.onnx")
    exp.set_defaults(func=_cmd_export)


def _add_bench(sub: _Subparsers) -> None:
    bench = sub.add_parser(
        "bench",
        help="benchmarks that print the results tables",
        description="Each NAME prints one table of the results pages; `hpn bench NAME -h` "
        "lists its options. Training benchmarks keep one run folder per model and seed and "
        "read finished runs back.",
    )
    add_bench_parsers(bench)
    bench.set_defaults(func=_cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    """The ``hpn`` parser: one subcommand per verb (prototypes, train, demo, transfer,
    evaluate, predict, export, bench)."""
    parser = _Parser(prog="hpn", description="Hyperspherical Prototype Networks")
    parser.add_argument("--version", action="version", version=f"hpn {hpn.__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for add in (
        _add_prototypes, _add_train, _add_demo, _add_transfer, _add_evaluate, _add_predict,
        _add_export, _add_bench,
    ):  # fmt: skip
        add(sub)
    for i, each in enumerate(_all_parsers(parser)):
        each.add_argument(
            "--threads",
            metavar="N|auto",
            default=None if i == 0 else argparse.SUPPRESS,
            help=f"torch CPU threads (default: ${THREADS_ENV}, else $OMP_NUM_THREADS, else "
            "auto: the free cores by the load average)",
        )
    return parser


def _all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every subcommand's parser below it."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += _all_parsers(child)
    return found


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so the run's lock and checkpoints are handled
    as after Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def _interrupted(args: argparse.Namespace | None, stop: KeyboardInterrupt) -> str:
    """The one line after an interrupt: on its own line, with how to go on."""
    what = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
    line = f"\nhpn: {what}"
    out = getattr(args, "out_dir_used", None)
    if out is None:
        return line
    if (Path(out) / "last.pt").is_file():
        return f"{line}; the last finished epoch is kept: hpn train --out {out} --resume"
    return (
        f"{line} before the first epoch ended (no checkpoint): run the same command again "
        "without --resume"
    )


def _show_deprecations() -> None:
    """Old names and flat config keys each print one line on stderr, once per command however
    many run folders repeat them (Python hides ``DeprecationWarning`` outside ``__main__``);
    call inside ``warnings.catch_warnings``."""

    shown: set[str] = set()  # Python's "once" forgets when any code changes a filter

    def show(message: Warning | str, *_args: object, **_kwargs: object) -> None:
        if str(message) not in shown:
            shown.add(str(message))
            print(f"hpn: warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    warnings.filterwarnings("default", r".*(deprecated|will be removed)", DeprecationWarning)


def main(argv: list[str] | None = None) -> int:
    """Run ``hpn`` with ``argv`` (default: the command line); returns the exit status.

    User errors print one line on stderr and return 2; Ctrl-C returns 130 and SIGTERM 143,
    each after one line that says how to go on (a run folder's lock is released and its last
    finished epoch kept either way).
    """
    parser = build_parser()
    args: argparse.Namespace | None = None
    in_main_thread = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        args = _parse(parser, argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        use_threads(args.threads)
        with warnings.catch_warnings():
            _show_deprecations()
            return args.func(args)
    except BrokenPipeError:  # e.g. piped into `head` (before OSError, its base)
        return 0
    except (UsageError, ValueError, OSError, ImportError, FloatingPointError) as err:
        print(f"hpn: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        print(_interrupted(args, stop), file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, before)


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The parsed arguments; ``key=value`` overrides may also follow the options (argparse
    stops filling a positional list once an option came between)."""
    args, extra = parser.parse_known_args(argv)
    if isinstance(getattr(args, "overrides", None), list):
        late = [e for e in extra if "=" in e and not e.startswith("-")]
        args.overrides = [*args.overrides, *late]
        extra = [e for e in extra if e not in late]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


if __name__ == "__main__":
    raise SystemExit(main())
