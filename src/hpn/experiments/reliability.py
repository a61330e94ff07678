"""``hpn bench fuzz``: every file reader fed mutated copies of a valid file (:mod:`hpn.fuzz`)."""

from __future__ import annotations

from typing import TextIO

from hpn import fuzz
from hpn.experiments.table import print_header


def fuzz_benchmark(n: int = 100, seed: int = 0, out: TextIO | None = None) -> int:
    """Fuzz every reader with ``n`` mutants per mutation kind; exit status 1 on an unexpected
    error (a bug), else 0."""
    print_header(f"hpn bench fuzz: {n} mutants per mutation kind and reader, seed {seed}", out)
    results = fuzz.fuzz(per_mutation=n, seed=seed)
    fuzz.print_table(results, out=out)
    return 1 if any(r.unexpected for r in results) else 0
