"""Functions that specs name: references computed without training, per-run reports, the
text of a header, a second table.

A spec refers to them by their key in :data:`HOOKS` (``reference``, ``report``,
``header_values``, ``after``), never by a module path, so a spec can call nothing else;
nothing here knows which spec calls it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

import torch

from hpn.data.base import SplitDataset, in_batches, iterate_batches
from hpn.evaluation.metrics import (
    SHOT_GROUPS,
    accuracy_from_counts,
    macro_f1_from_counts,
    prediction_counts,
)
from hpn.experiments.table import mean_sd, print_columns
from hpn.files import atomic_write_json, read_json_or_none
from hpn.prototypes import data_prior
from hpn.training.finished import evaluate_run, run_key, transfer_report
from hpn.training.run import load_config, load_splits


def linear_reference(config: str, overrides: Iterable[str], seed: int) -> dict:
    """Nearest data-prior prototype with no network: a reference for the blog's ``linD`` rows.

    The class means of the training split give the data prior's principal directions V
    and centre c (:func:`hpn.prototypes.data_prior.pca_basis`); a test point x is mapped to
    z = V^T (x - c), on the sphere of ``head.dims`` dimensions, and gets the class of the
    prototype with the largest cosine to z. The prototypes are the unspread data prior
    (``head.spread_steps=0``), so this is the linear map that sends each training class
    mean exactly onto its prototype's direction. Nothing is trained: it measures how much
    of the task that output space keeps, not what a network learns.

    Returns:
        ``{"test_macro_f1", "test_accuracy", "seconds"}``.
    """
    start = time.perf_counter()
    cfg = load_config(config, [*overrides, f"seed={seed}"])
    if cfg.head.prototypes != "data" or cfg.head.spread_steps != 0 or not cfg.head.dims:
        raise ValueError("the linear reference needs head.prototypes=data, spread_steps=0, dims")
    if cfg.head.prior_images is not None or cfg.head.prior_augment is False:
        raise ValueError("the linear reference reads every training image as the split gives it")
    splits = load_splits(cfg)
    k, dims = splits.num_classes, cfg.head.dims
    if k is None:
        raise ValueError(f"the linear reference needs a classification source, not {cfg.data.name}")

    def batches(split: SplitDataset) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, targets in iterate_batches(split, in_batches(range(len(split)), 4096)):
            yield x.reshape(len(x), -1).double(), targets["label"]

    means, _ = data_prior.class_means(batches(splits.train), k)
    centre, v = data_prior.pca_basis(means, dims)
    prototypes = data_prior.data_prior_prototypes(means, dims, steps=0).double()
    counts = torch.zeros(3, k, dtype=torch.long)  # per class: correct, true, predicted
    for x, labels in batches(splits.test):
        z = torch.zeros(len(x), dims, dtype=torch.float64)
        z[:, : v.shape[1]] = (x - centre) @ v
        pred = (torch.nn.functional.normalize(z, dim=1) @ prototypes.T).argmax(1)
        counts += prediction_counts(labels, pred, k)
    return {
        "test_macro_f1": macro_f1_from_counts(*counts),
        "test_accuracy": accuracy_from_counts(counts),
        "seconds": time.perf_counter() - start,
    }


def transfer_or_load(folder: Path, target: str, options: dict) -> dict:
    """:func:`hpn.training.finished.transfer_report` of a run, kept beside it and read back
    while its ``key`` (:func:`hpn.training.finished.run_key` of the target and options:
    ``best.pt``, ``config.json``, the request) is the run's; otherwise computed again."""
    suffix = "".join(f"-{k}={v}" for k, v in sorted(options.items()))
    done = folder / f"transfer-{target}{suffix}.json"
    key = run_key(folder, {"transfer": target, "options": options})
    kept = read_json_or_none(done)
    if isinstance(kept, dict) and kept.get("key") == key:
        return kept
    report = {**transfer_report(folder, target, options), "key": key}
    atomic_write_json(done, report)
    return report


def shot_groups() -> str:
    """The long-tail shot groups (:data:`hpn.evaluation.metrics.SHOT_GROUPS`) in words.

    >>> shot_groups()
    'many >= 101, medium 20-100, few 0-19'
    """
    return ", ".join(
        f"{name} >= {low}" if high == float("inf") else f"{name} {low}-{high}"
        for name, (low, high) in SHOT_GROUPS.items()
    )


def convergence_table(rows: list[dict], out: TextIO | None, blog: dict) -> None:
    """The blog's Table 3 beside ours: mean best-validation epoch of softmax and of the paper's
    HPN with d = K (variant ``hpnK``), for each K that has either row.

    Args:
        rows: the blog sweep's rows (``K``, ``variant``, ``best_epoch``).
        blog: the blog's numbers, ``{K: {"softmax": epochs, "hpn": epochs}}``.
    """
    epochs = {
        (r["K"], r["variant"]): mean_sd(r["best_epoch"])[0]
        for r in rows
        if r["best_epoch"] and None not in r["best_epoch"]
    }
    lines = []
    for k in sorted({r["K"] for r in rows}):
        ours = (epochs.get((k, "softmax")), epochs.get((k, f"hpn{k}")))
        if ours == (None, None):
            continue
        theirs = blog.get(k, {})
        cells = [
            "-" if v is None else f"{v:.0f}" for v in (ours[0], theirs.get("softmax"), ours[1])
        ]
        lines.append(f"| {k:,} | {' | '.join(cells)} | {theirs.get('hpn', '-')} |")
    if lines:
        print("\nEpochs to convergence (best validation epoch, mean over seeds):", file=out)
        print_columns(
            ["K", "softmax (ours)", "softmax (blog)", "HPN d = K (ours)", "HPN d = K (blog)"], out
        )
        for line in lines:
            print(line, file=out)


def evaluation_or_load(folder: Path, overrides: dict) -> dict:
    """:func:`hpn.training.finished.evaluate_run` of a run's test split with ``data.*``
    overrides (e.g. ``{"data.options.degrade": 1}``), kept in the run folder and read back."""
    return evaluate_run(folder, [f"{k}={v}" for k, v in overrides.items()])


def validation_evaluation(folder: Path, overrides: dict) -> dict:
    """:func:`evaluation_or_load` of a run's *validation* split: a score to tune on when the
    plain validation accuracy is at its ceiling (e.g. the scan-like validation renders,
    ``{"data.options.degrade": 1}``, degraded with the validation seed)."""
    return evaluate_run(folder, [f"{k}={v}" for k, v in overrides.items()], split="val")


def style_evaluation(folder: Path, overrides: dict) -> dict:
    """:func:`evaluation_or_load` of a glyphs run on its second held-out group (``overrides``
    such as ``{"data.options.test_group": "styles"}``); empty (a blank cell) for a run
    trained without ``data.options.style_fonts``, whose style designs were in training."""
    options = json.loads((folder / "config.json").read_text())["data"].get("options", {})
    return evaluation_or_load(folder, overrides) if options.get("style_fonts") else {}


def learning_curves(
    rows: list[dict], out: TextIO | None, label: str = "model", metric: str = "val_accuracy"
) -> None:
    """Per K, the first seed's runs' ``metric`` after each epoch: a table (one line per run, one
    column per epoch, with the training steps and the measured seconds so far) and a figure
    beside the runs, ``curves-kK.png`` (:func:`hpn.evaluation.plots.compare_curves`).

    Args:
        rows: the sweep's rows; each needs ``K``, ``label`` and the metric ``folder`` (the run
            folders, a ``run_folder`` metric).
        label: the field that names a run in the table and the legend.
        metric: a column of ``metrics.csv``.
    """
    from hpn.evaluation.plots import compare_curves, read_curve

    for k in sorted({r["K"] for r in rows}):
        folders = {str(r[label]): r["folder"][0] for r in rows if r["K"] == k and r.get("folder")}
        runs = {n: Path(f) for n, f in folders.items() if f and (Path(f) / "metrics.csv").is_file()}
        if not runs:
            continue
        curves = {name: read_curve(folder, metric) for name, folder in runs.items()}
        epochs = max(len(c[metric]) for c in curves.values())
        first = next(iter(runs.values()))
        seed = _run_seed(first)
        print(f"\n{metric} after each epoch at K = {k:,} ({seed}; steps and seconds so far):",
              file=out)  # fmt: skip
        print_columns([label, *(f"epoch {e + 1}" for e in range(epochs))], out)
        for name, curve in curves.items():
            cells = [
                f"{value:.4f} ({steps:,.0f} steps, {seconds:,.0f} s)"
                for value, steps, seconds in zip(
                    curve[metric], curve["steps"], curve["seconds"], strict=True
                )
            ]
            print(f"| {name} | {' | '.join(cells + [''] * (epochs - len(cells)))} |", file=out)
        png = compare_curves(runs, first.parent / f"curves-k{k}.png", metric, f"K = {k:,}, {seed}")
        print(f"figure: {png}", file=out)


def _run_seed(folder: Path) -> str:
    """``seed N`` from a run folder's ``config.json`` (the runs a curve table shows share
    it); ``seed ?`` without one."""
    config = read_json_or_none(folder / "config.json")
    return f"seed {config['seed']}" if isinstance(config, dict) and "seed" in config else "seed ?"


#: The functions specs may name, by the name they use.
HOOKS: dict[str, Callable] = {
    fn.__name__: fn
    for fn in (
        linear_reference,
        transfer_or_load,
        shot_groups,
        convergence_table,
        learning_curves,
        evaluation_or_load,
        validation_evaluation,
        style_evaluation,
    )
}
