"""Best known spherical codes for small (K, d): the yardstick for ``auto`` in few dimensions.

Each entry gives the largest known smallest angle between K points on S^(d-1) (the Tammes
problem). Entries marked proven are optimal; the rest are the best configurations known. The
tests check every entry that has a construction against that construction
(``tests/prototypes/test_known_optima.py``), and ``hpn bench optima`` prints how close
``auto`` gets.

>>> round(known_cosine(12, 3), 6)  # the icosahedron, 1/sqrt(5)
0.447214
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TextIO

from hpn.prototypes import build, report


@dataclass(frozen=True)
class KnownCode:
    """One best known configuration.

    Attributes:
        num_classes: K.
        dims: d.
        degrees: the smallest pairwise angle of the best known K-point set in R^d.
        proven: whether that set is proven optimal.
        source: where the value comes from.
    """

    num_classes: int
    dims: int
    degrees: float
    proven: bool
    source: str

    @property
    def cosine(self) -> float:
        """The worst-pair cosine of the configuration."""
        return math.cos(math.radians(self.degrees))


def _deg(cosine: float) -> float:
    return math.degrees(math.acos(cosine))


KNOWN: tuple[KnownCode, ...] = (
    *(
        KnownCode(k, 2, 360.0 / k, True, "regular polygon (K arcs sum to 360 degrees)")
        for k in (5, 7, 10, 12)
    ),
    KnownCode(7, 3, 77.8695, True, "Schuette & van der Waerden 1951"),
    KnownCode(8, 3, 74.8585, True, "square antiprism; Schuette & van der Waerden 1951"),
    KnownCode(9, 3, _deg(1 / 3), True, "Schuette & van der Waerden 1951"),
    KnownCode(10, 3, 66.1468, True, "Danzer 1963"),
    KnownCode(11, 3, _deg(1 / math.sqrt(5)), True, "icosahedron less a vertex; Danzer 1963"),
    KnownCode(12, 3, _deg(1 / math.sqrt(5)), True, "icosahedron; Fejes Toth 1943"),
    KnownCode(13, 3, 57.1367, True, "Musin & Tarasov 2012"),
    KnownCode(14, 3, 55.6706, True, "Musin & Tarasov 2015"),
    KnownCode(24, 3, 43.6908, True, "snub cube; Robinson 1961"),
    KnownCode(10, 4, _deg(1 / 6), False, "best known (Sloane's tables)"),
    KnownCode(24, 4, 60.0, False, "24-cell; optimality open"),
    KnownCode(120, 4, 36.0, True, "600-cell; Andreev 1999"),
    KnownCode(240, 8, 60.0, True, "E8 roots; meets Levenshtein's bound"),
)


def known_cosine(num_classes: int, dims: int) -> float:
    """The worst-pair cosine of the best known K-point code in R^d (KeyError if not listed)."""
    for code in KNOWN:
        if (code.num_classes, code.dims) == (num_classes, dims):
            return code.cosine
    raise KeyError(f"no known code for K={num_classes}, d={dims}")


def compare_auto(seed: int = 0) -> list[dict]:
    """Run ``generate(K, d, "auto")`` for every known code and measure how close it gets.

    Returns:
        One dict per entry of :data:`KNOWN`: K, d, best known and ours (degrees), their ratio
        (ours / best known; 1 is optimal), the method ``auto`` chose, and seconds.
    """
    rows = []
    for code in KNOWN:
        start = time.perf_counter()
        built = build(code.num_classes, code.dims, seed=seed)
        seconds = time.perf_counter() - start
        ours = _deg(min(1.0, report(built.prototypes).worst_cosine))
        rows.append(
            {
                "K": code.num_classes,
                "d": code.dims,
                "best_known_deg": code.degrees,
                "proven": code.proven,
                "ours_deg": ours,
                "ratio": ours / code.degrees,
                "method": built.method,
                "seconds": seconds,
                "source": code.source,
            }
        )
    return rows


def print_table(rows: list[dict], out: TextIO | None = None) -> None:
    """The rows of :func:`compare_auto` as a Markdown table."""
    print(
        "| K | d | best known (deg) | proven | ours: auto (deg) | ours / best | method | time |",
        file=out,
    )
    print("|---|---|---|---|---|---|---|---|", file=out)
    for r in rows:
        print(
            f"| {r['K']} | {r['d']} | {r['best_known_deg']:.4f} | {'yes' if r['proven'] else 'no'} "
            f"| {r['ours_deg']:.4f} | {r['ratio']:.4f} | {r['method']} | {r['seconds']:.1f} s |",
            file=out,
        )
