"""Figures of the documentation, made by the library itself.

    python docs/make_figures.py      # writes docs/figures/separation.png (5-15 minutes on 2 cores)

* ``separation.png``: the worst-pair cosine of ``auto`` prototypes (and, for contrast, of
  random ones) against the number of classes K, for a few dimensions d, with the best value
  geometry allows (``hpn.prototypes.report``'s bound: exact up to K = 2d, Levenshtein's
  bound above).

The rotated-digits picture (``docs/rotated_sphere.png``) comes from a training run:
``hpn train --config src/hpn/configs/rotated_multitask_sphere.yaml``.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from hpn import prototypes as protos

OUT = Path(__file__).parent / "figures"
DIMS = (3, 10, 50)
CLASSES = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 100, 150, 200, 300, 500, 1000)


def separation_figure(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=110)
    for d, color in zip(DIMS, ("tab:blue", "tab:orange", "tab:green"), strict=True):
        ks, worst, rand, bound = [], [], [], []
        for k in CLASSES:
            start = time.perf_counter()
            r = protos.report(protos.generate(k, d, method="auto", seed=0))
            ks.append(k)
            worst.append(r.worst_cosine)
            bound.append(r.bound)
            rand.append(protos.report(protos.generate(k, d, method="random")).worst_cosine)
            print(f"d={d} K={k}: auto {r.worst_cosine:+.4f}, bound {r.bound:+.4f} "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)  # fmt: skip
        ax.plot(ks, worst, "o-", color=color, ms=3.5, label=f"d = {d}: auto")
        ax.plot(ks, bound, "--", color=color, lw=1, label=f"d = {d}: best possible")
        ax.plot(ks, rand, ":", color=color, lw=1, alpha=0.7, label=f"d = {d}: random")
    ax.set_xscale("log")
    ax.set_xlabel("number of classes K")
    ax.set_ylabel("worst-pair cosine (lower is better)")
    ax.set_title("Prototype separation against the geometric limit")
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    separation_figure(OUT / "separation.png")
    print(f"wrote {OUT / 'separation.png'}")
