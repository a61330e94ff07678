"""The placement methods: :data:`METHODS`, :func:`build` (K prototypes in d dims and how they
were made) and :func:`generate` (just the tensor).

>>> build(6, 3, method="orthoplex").method
'orthoplex'
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from torch.nn.functional import normalize

from hpn.prototypes import closed_form, codes, optimize
from hpn.prototypes.io import save
from hpn.prototypes.quality import Report, nearest_neighbours

METHODS = (
    "auto",
    "random",
    "paper_optimizer",
    "optimized",
    "simplex",
    "orthoplex",
    "polygon",
    "e8",
    "code",
    "semantic",
)

#: Old method names that still work for one release, with a ``DeprecationWarning``.
METHOD_ALIASES = {"hpn": "paper_optimizer"}


def method_name(method: str) -> str:
    """The current name of a method or of an old alias (which warns).

    >>> method_name("orthoplex")
    'orthoplex'
    """
    if method in METHOD_ALIASES:
        new = METHOD_ALIASES[method]
        warnings.warn(
            f"prototype method {method!r} is deprecated; use {new!r}", DeprecationWarning, 3
        )
        return new
    return method


#: The paper's recipe and the dense optimiser build K x K matrices; past this K they refuse.
HPN_MAX_CLASSES = 20_000
#: ``auto`` optimises (densely, seconds) up to this K and keeps the better of that and a code.
AUTO_DENSE_MAX = 2048
#: Above AUTO_DENSE_MAX, ``auto`` takes a code that fills all d dims; a code padded from a
#: shorter length (d not a power of two) is compared with the neighbour-list optimiser up to
#: this K (about 2 minutes at d = 100), and taken as it is above it.
AUTO_NEIGHBOUR_MAX = 10_000
#: Up to this d (and AUTO_DENSE_MAX classes), ``auto`` keeps the best of several optimiser
#: starts: in few dimensions single runs often end in local optima (see ``auto_starts``).
AUTO_LOW_DIMS = 16


@dataclass
class PrototypeSet:
    """A generated prototype set and how it was made.

    Attributes:
        prototypes: (K, d) float32 tensor of unit rows.
        method: the method that produced it (``auto`` resolved to the one it chose).
        seed: the seed used.
        info: method-specific details (JSON-serialisable).
        class_names: optional names, row i is class i.
        seconds: wall-clock time taken.
    """

    prototypes: torch.Tensor
    method: str
    seed: int
    info: dict = field(default_factory=dict)
    class_names: list[str] | None = None
    seconds: float = 0.0

    def save(self, path: str | os.PathLike, with_report: Report | None = None) -> Path:
        """Write ``path`` (.npy) and its JSON sidecar, atomically."""
        return save(
            path,
            self.prototypes,
            method=self.method,
            seed=self.seed,
            class_names=self.class_names,
            report=with_report.to_dict() if with_report is not None else None,
            info={**self.info, "seconds": self.seconds},
        )


def _validate(num_classes: int, dims: int, method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise ValueError(f"num_classes must be an integer, got {num_classes!r}")
    if isinstance(dims, bool) or not isinstance(dims, int | np.integer):
        raise ValueError(f"dims must be an integer, got {dims!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if dims < 1:
        raise ValueError(f"dims must be >= 1, got {dims}")
    if dims == 1 and num_classes > 2:
        raise ValueError(f"at most 2 prototypes fit in 1 dimension, got num_classes={num_classes}")
    if method == "paper_optimizer" and num_classes > HPN_MAX_CLASSES:
        raise ValueError(
            f"method 'paper_optimizer' builds a K x K matrix and supports at most {HPN_MAX_CLASSES} classes, "
            f"got {num_classes}; use method 'optimized' or 'auto'"
        )


def _random(num_classes: int, dims: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return normalize(
        torch.randn(num_classes, dims, generator=gen, dtype=torch.float64), dim=1
    ).float()


def auto_starts(num_classes: int) -> int:
    """How many optimiser starts ``auto`` runs in few dimensions: 8 up to 256 classes, 4 up to
    512, then 2 (one start at K = 1,000, d = 16 takes about 5-10 s here)."""
    if num_classes <= 256:
        return 8
    return 4 if num_classes <= 512 else 2


def _optimise(
    num_classes: int, dims: int, seed: int, device: torch.device | str, time_budget: float | None
) -> tuple[torch.Tensor, dict]:
    if dims <= AUTO_LOW_DIMS and num_classes <= AUTO_DENSE_MAX and time_budget is None:
        starts = auto_starts(num_classes)
        return optimize.multistart_prototypes(
            num_classes, dims, seed=seed, starts=starts, device=device
        )
    return optimize.optimized_prototypes(
        num_classes, dims, seed=seed, device=device, time_budget=time_budget
    )


def _auto(
    num_classes: int, dims: int, seed: int, device: torch.device | str, time_budget: float | None
) -> tuple[str, torch.Tensor, dict]:
    if num_classes <= dims + 1:
        return "simplex", closed_form.simplex(num_classes, dims), {"optimal": True}
    if num_classes <= 2 * dims:
        return "orthoplex", closed_form.orthoplex(num_classes, dims), {"optimal": True}
    if dims == 2:
        return "polygon", closed_form.polygon(num_classes, dims), {"optimal": True}
    spec = codes.best_code(num_classes, dims)
    if (
        spec is not None
        and num_classes > AUTO_DENSE_MAX
        and (spec.length == dims or num_classes > AUTO_NEIGHBOUR_MAX)
    ):
        # A code that fills all d dims is near the bound and takes well under a second; a
        # polish by the optimiser did not move eBCH[128,15,56] off 0.125 at K = 10,000.
        p, info = codes.code_prototypes(num_classes, dims, seed=seed, spec=spec)
        return "code", p, info
    p, info = _optimise(num_classes, dims, seed, device, time_budget)
    if dims == 8 and num_classes <= 240 and info["worst_cosine"] > 0.5:
        return "e8", closed_form.e8_roots(num_classes, dims), {"optimal": num_classes == 240}
    if spec is None or info["worst_cosine"] <= spec.max_cosine:
        return "optimized", p, info
    p, info = codes.code_prototypes(num_classes, dims, seed=seed, spec=spec)
    return "code", p, info


def _warn_duplicates(prototypes: torch.Tensor, method: str) -> None:
    """Warn when a method produced coincident rows (the paper's recipe does at d = 2)."""
    worst = float(nearest_neighbours(prototypes, k=1)[0].max())
    if worst > 1.0 - 1e-6:
        warnings.warn(
            f"method {method!r} produced coincident prototypes (worst-pair cosine "
            f"{worst:.6f}); method 'auto' places them without this failure",
            stacklevel=3,
        )


def _semantic(
    num_classes: int,
    dims: int,
    seed: int,
    class_names: Sequence[str] | None,
    embeddings: np.ndarray | torch.Tensor | None,
    embedder: str,
    options: dict[str, Any],
) -> tuple[torch.Tensor, dict]:
    """The ``semantic`` method: embed the names unless embeddings are given, then spread."""
    # imported here: hpn.prototypes.semantic imports scipy.stats, slow for `import hpn`
    from hpn.prototypes import semantic

    info: dict = {}
    if embeddings is None:
        if class_names is None:
            raise ValueError("method 'semantic' needs class_names or embeddings")
        model = cast(Literal["glove", "minilm"], embedder)  # checked by embed_class_names
        embeddings = semantic.embed_class_names(class_names, model=model)
        info["embedder"] = embedder
    if len(embeddings) != num_classes:
        raise ValueError(f"got {len(embeddings)} embeddings for num_classes={num_classes}")
    p, sem_info = semantic.semantic_prototypes(embeddings, dims, seed=seed, **options)
    return p, {**info, **sem_info}


def build(
    num_classes: int,
    dims: int,
    method: str = "auto",
    seed: int = 0,
    *,
    class_names: Sequence[str] | None = None,
    embeddings: np.ndarray | torch.Tensor | None = None,
    embedder: str = "glove",
    steps: int | None = None,
    reset_momentum: bool = False,
    semantic_weight: float | None = None,
    time_budget: float | None = None,
    device: torch.device | str = "cpu",
) -> PrototypeSet:
    """Make K prototypes in d dims and record how.

    Args:
        num_classes: K >= 2.
        dims: d >= 1.
        method: one of :data:`METHODS`:
            ``random`` (normalised Gaussian), ``paper_optimizer`` (the paper's recipe; was
            ``hpn``),
            ``optimized`` (smooth L_HP with Adam; neighbour lists for large K),
            ``simplex`` (K <= d + 1), ``orthoplex`` (K <= 2d), ``polygon`` (the regular
            K-gon, d >= 2; optimal at d = 2), ``e8`` (the roots of E8, K <= 240,
            d >= 8; optimal at (240, 8)), ``code`` (binary codes, for d
            with a power of two <= d), ``semantic`` (class-name prior; needs ``class_names``
            or ``embeddings``), ``auto`` (closed form where exact; else the better of the
            optimiser and a code, except that above 2,048 classes a code of length d, or any
            code above 10,000 classes, is taken without optimising; for d <= 16 the
            optimiser keeps the best of several starts, see :func:`auto_starts`).
        seed: makes the result deterministic.
        class_names: K names (stored with the set; embedded for ``semantic``).
        embeddings: (K, e) class embeddings for ``semantic`` instead of names.
        embedder: ``glove`` or ``minilm``, the offline model that embeds names.
        steps: optimisation steps / epochs for ``paper_optimizer``, ``optimized`` and
            ``semantic``.
        reset_momentum: ``paper_optimizer`` only: rebuild SGD each step like the reference code.
        semantic_weight: weight of the ranking loss for ``semantic``.
        time_budget: seconds ``auto`` and ``optimized`` may spend optimising; schedules
            then follow elapsed time, so the result is no longer deterministic. None: run the
            fixed number of steps (deterministic).
        device: where optimisation runs.

    Returns:
        A :class:`PrototypeSet`.
    """
    method = method_name(method)
    _validate(num_classes, dims, method)
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"got {len(class_names)} class names for num_classes={num_classes}")
    start = time.perf_counter()
    info: dict = {}
    kwargs: dict[str, Any] = {} if steps is None else {"steps": steps}
    if method == "auto":
        method, p, info = _auto(num_classes, dims, seed, device, time_budget)
    elif method == "random":
        p = _random(num_classes, dims, seed)
    elif method == "simplex":
        p = closed_form.simplex(num_classes, dims)
    elif method == "orthoplex":
        p = closed_form.orthoplex(num_classes, dims)
    elif method == "polygon":
        p = closed_form.polygon(num_classes, dims)
    elif method == "e8":
        p = closed_form.e8_roots(num_classes, dims)
    elif method == "code":
        p, info = codes.code_prototypes(num_classes, dims, seed=seed)
    elif method == "paper_optimizer":
        epochs = {} if steps is None else {"epochs": steps}
        p, info = optimize.paper_prototypes(
            num_classes, dims, seed=seed, reset_momentum=reset_momentum, device=device, **epochs
        )
        _warn_duplicates(p, method)
    elif method == "optimized":
        p, info = optimize.optimized_prototypes(
            num_classes, dims, seed=seed, device=device, **kwargs
        )
    else:  # semantic
        if semantic_weight is not None:
            kwargs["weight"] = semantic_weight
        p, info = _semantic(num_classes, dims, seed, class_names, embeddings, embedder, kwargs)
    return PrototypeSet(
        prototypes=p.float().contiguous(),
        method=method,
        seed=seed,
        info=info,
        class_names=list(class_names) if class_names is not None else None,
        seconds=round(time.perf_counter() - start, 3),
    )


def generate(
    num_classes: int, dims: int, method: str = "auto", seed: int = 0, **options: Any
) -> torch.Tensor:
    """K unit prototypes in d dims as a float32 (K, d) tensor, deterministic for a seed.

    See :func:`build` for the methods and options.

    Example:
        >>> P = generate(6, 3, method="orthoplex")
        >>> P.shape, float(P.norm(dim=1).min())
        (torch.Size([6, 3]), 1.0)
    """
    return build(num_classes, dims, method=method, seed=seed, **options).prototypes
