"""``hpn demo``: HPN and softmax, same backbone and data, side by side.

Runs the demo config (``configs/demo.yaml``, shipped inside the package) twice, once with a
prototype head and once with a softmax head, and prints accuracy, training time and the size of
the output layer.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from hpn.training.run import load_config, run

DEFAULT_CONFIG = "demo.yaml"


def demo(
    out_dir: str | None = None,
    config: str | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Train HPN and the softmax baseline; print and return the comparison rows."""
    if out_dir is None:
        out_dir = f"runs/demo-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    if config is None:
        config = str(resources.files("hpn.configs") / DEFAULT_CONFIG)
    rows = []
    for label, kind in (("HPN (prototypes)", "prototype"), ("softmax", "softmax")):
        cfg = load_config(
            config, [f"head.kind={kind}", f"seed={seed}", f"out_dir={Path(out_dir) / kind}"]
        )
        log(f"== {label}: {cfg.data.name}, {cfg.model.backbone}, {cfg.optim.epochs} epochs")
        res = run(cfg, log=log)
        rows.append({"model": label, **res, "dims": cfg.head.dims if kind == "prototype" else None})
    log("")
    log(
        f"| model | test accuracy | train time | output size | parameters |  (seed {seed}, {out_dir})"
    )
    log("|---|---|---|---|---|")
    for r in rows:
        log(
            f"| {r['model']} | {r['test_accuracy']:.4f} | {r['train_seconds']:.1f} s | "
            f"{r['output_size']} | {r['parameters']:,} |"
        )
    return rows
