"""Where classes live on the sphere: prototype generators, the spec resolver, quality, files.

* :func:`generate` / :func:`build`: K prototypes in d dims by a method of :data:`METHODS`.
* :func:`resolve`: the one parser of a prototype spec (a method, ``onehot``, ``data``,
  ``embedding:glove``, a ``.npy`` file or an array), used by ``hpn train`` and
  :mod:`hpn.sklearn`.
* :func:`report`, :func:`load`, :func:`save`: quality figures and files.

>>> P = generate(10, 9)  # K <= d + 1: the regular simplex, exact
>>> round(report(P).worst_cosine, 6)
-0.111111
"""

from __future__ import annotations

from hpn.prototypes.bounds import best_possible_cosine, levenshtein_bound
from hpn.prototypes.io import load, save
from hpn.prototypes.methods import (
    AUTO_DENSE_MAX,
    AUTO_LOW_DIMS,
    AUTO_NEIGHBOUR_MAX,
    HPN_MAX_CLASSES,
    METHODS,
    PrototypeSet,
    auto_starts,
    build,
    generate,
)
from hpn.prototypes.quality import Report, nearest_neighbours, report
from hpn.prototypes.resolver import ResolvedPrototypes, resolve

__all__ = [
    "AUTO_DENSE_MAX",
    "AUTO_LOW_DIMS",
    "AUTO_NEIGHBOUR_MAX",
    "HPN_MAX_CLASSES",
    "METHODS",
    "PrototypeSet",
    "Report",
    "ResolvedPrototypes",
    "auto_starts",
    "best_possible_cosine",
    "build",
    "generate",
    "levenshtein_bound",
    "load",
    "nearest_neighbours",
    "report",
    "resolve",
    "save",
]
