"""The one parser of prototype specs: what ``head.prototypes`` in a run config or
``HPNClassifier(prototypes=...)`` names, made into (K, d) unit prototypes.

A spec is one of:

* a method of :data:`~hpn.prototypes.methods.METHODS` (``auto``, ``simplex``, ``paper_optimizer``,
  ``semantic``, ...), placed by :func:`~hpn.prototypes.methods.build`;
* ``onehot``: the K standard basis vectors, so d = K (``dims`` is not used);
* ``data``: laid out like the training classes' mean inputs
  (:mod:`hpn.prototypes.data_prior`); needs the training batches;
* ``embedding:glove`` or ``embedding:minilm``: class-name embeddings used directly, reduced
  to d by PCA (:func:`hpn.prototypes.semantic.embedding_prototypes`); needs the class names;
* a path ending in ``.npy``: a prototype file (:func:`hpn.prototypes.io.load`);
* an array or tensor (K, d): given prototypes, row i for class i.

Whether the prototypes already belong to their classes (``class_informed``) is decided here
and nowhere else: dynamic assignment skips its first match for them, which would scramble
them.

>>> r = resolve("onehot", 3, None)
>>> r.prototypes.tolist(), r.method, r.class_informed
([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], 'onehot', False)
>>> resolve([[3.0, 4.0], [0.0, -2.0]], 2, None).prototypes.tolist()
[[0.6000000238418579, 0.800000011920929], [0.0, -1.0]]
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from hpn.prototypes import data_prior
from hpn.prototypes.io import load
from hpn.prototypes.methods import METHOD_ALIASES, METHODS, build
from hpn.prototypes.quality import report

#: Methods of :data:`~hpn.prototypes.methods.METHODS` whose rows already belong to their
#: classes (placed from the class names). Besides these, ``data``, class-name embeddings,
#: files and given arrays are class-informed.
CLASS_INFORMED = ("semantic",)

Embedder = Literal["glove", "minilm"]

#: The models ``embedding:NAME`` may name (:func:`hpn.prototypes.semantic.embed_class_names`).
EMBEDDERS: tuple[Embedder, ...] = ("glove", "minilm")

#: What a spec may be, for error messages.
SPECS = "an array of shape (K, d), a .npy file, 'onehot', 'embedding:glove', 'embedding:minilm'"

Spec = str | os.PathLike | np.ndarray | torch.Tensor | Sequence[Sequence[float]]


@dataclass(frozen=True)
class ResolvedPrototypes:
    """Prototypes made from a spec, and what the run record says about them.

    Attributes:
        prototypes: (K, d) float32 tensor of unit rows; row i belongs to class i.
        method: what made them: the generator method (``auto`` resolved to its choice),
            ``onehot``, ``data``, ``embedding:glove`` / ``embedding:minilm``, the method a
            file's sidecar names (``file`` without one), or ``given`` for an array.
        class_informed: the rows already belong to their classes (the data prior, class
            names, a file or given rows), so a first assignment match would scramble them.
        info: method-specific details for the run record (JSON-serialisable).
        projection: ``data`` only: ``(centre, directions)``, the (F,) centre and (F, r)
            orthonormal float64 directions of the PCA that laid the rows out, r <= d: a
            training input x (flattened, or its features) sits at ``(x - centre) @
            directions`` before the spread. None for the other specs.
    """

    prototypes: torch.Tensor
    method: str
    class_informed: bool
    info: dict[str, Any] = field(default_factory=dict)
    projection: tuple[torch.Tensor, torch.Tensor] | None = None

    def record(self) -> dict[str, Any]:
        """``{"method": ..., **info, **quality report}``, as a run's ``head.json`` keeps it."""
        return {"method": self.method, **self.info, **report(self.prototypes).to_dict()}


def resolve(
    spec: Spec,
    num_classes: int,
    dims: int | None,
    *,
    default_dims: int | None = None,
    train: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    names: Sequence[str] | None = None,
    seed: int = 0,
    spread_steps: int = data_prior.SPREAD_STEPS,
) -> ResolvedPrototypes:
    """Make the prototypes a spec names (see the module docstring for the specs).

    Args:
        spec: a method name, ``onehot``, ``data``, ``embedding:glove``,
            ``embedding:minilm``, a ``.npy`` path, or a (K, d) array or tensor.
        num_classes: K >= 2.
        dims: d. None: the width a file or array has, else ``default_dims``. A file or
            array of another width is an error; ``onehot`` is d = K whatever ``dims`` says.
        default_dims: d for a spec that does not fix its width when ``dims`` is None.
        train: for ``data``: the training split as ``(x, labels)`` batches, x (N, ...)
            (flattened), labels (N,) int64 in [0, K); read once, only for ``data``.
        names: K class names: embedded by ``semantic`` and ``embedding:*``, kept with a
            generated set.
        seed: seeds the generator methods and the data prior's random rows.
        spread_steps: ``data``: separation steps after the PCA start (0: the start as it is).

    Returns:
        A :class:`ResolvedPrototypes`.

    Raises:
        ValueError: one line naming the bad spec, shape or missing input.
        FileNotFoundError: a ``.npy`` spec that does not exist.
    """
    _check_sizes(num_classes, dims)
    if _is_array(spec):
        return _given(spec, num_classes, dims)
    if not isinstance(spec, str | os.PathLike):
        raise _unknown(spec)
    text = os.fspath(spec)
    if not isinstance(text, str):
        raise _unknown(spec)
    if text.endswith(".npy"):
        return _from_file(text, num_classes, dims)
    if text == "onehot":
        return ResolvedPrototypes(torch.eye(num_classes), "onehot", class_informed=False)
    if (
        text != "data"
        and not text.startswith("embedding:")
        and text not in METHODS
        and text not in METHOD_ALIASES
    ):
        raise _unknown(spec)
    d = dims if dims is not None else default_dims
    if d is None:
        raise ValueError(f"prototypes {text!r} need dims")
    if text == "data":
        return _data_prior(train, num_classes, d, seed, spread_steps)
    if text.startswith("embedding:"):
        return _embedding(text, num_classes, d, names)
    with _named(text, num_classes, d):
        built = build(num_classes, d, method=text, seed=seed, class_names=names)
    informed = built.method in CLASS_INFORMED
    return ResolvedPrototypes(built.prototypes, built.method, informed, {"seed": built.seed})


def uses_class_names(spec: object) -> bool:
    """Whether a spec embeds the class names (``semantic``, ``embedding:*``).

    >>> uses_class_names("semantic"), uses_class_names("embedding:glove"), uses_class_names("auto")
    (True, True, False)
    """
    return isinstance(spec, str) and (spec == "semantic" or spec.startswith("embedding:"))


def _check_sizes(num_classes: int, dims: int | None) -> None:
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if dims is not None and (not _is_int(dims) or dims < 1):
        raise ValueError(f"dims must be None or an integer >= 1, got {dims!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_array(spec: object) -> bool:
    return isinstance(spec, np.ndarray | torch.Tensor | list | tuple)


def _unknown(spec: object) -> ValueError:
    return ValueError(f"prototypes must be {SPECS}, 'data' or one of {list(METHODS)}, got {spec!r}")


@contextlib.contextmanager
def _named(spec: str, num_classes: int, dims: int) -> Iterator[None]:
    """Put the spec, K and d in front of a maker's ValueError."""
    try:
        yield
    except ValueError as err:
        raise ValueError(
            f"prototypes {spec!r} ({num_classes} classes, {dims} dims): {err}"
        ) from err


def _given(spec: Spec, num_classes: int, dims: int | None) -> ResolvedPrototypes:
    """Given rows (K, d), normalised in float64."""
    try:
        if isinstance(spec, torch.Tensor):
            p = spec.detach().cpu().double().numpy()
        else:
            p = np.asarray(spec, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("prototypes must be an array of shape (K, d) of numbers") from None
    _check_shape(p.shape, num_classes, dims, f"the given prototypes have shape {p.shape}")
    return ResolvedPrototypes(_unit_rows(p, "prototypes"), "given", class_informed=True)


def _from_file(path: str, num_classes: int, dims: int | None) -> ResolvedPrototypes:
    p, meta = load(path)
    rows, cols = p.shape
    _check_shape(
        p.shape, num_classes, dims, f"prototype file {path} holds {rows} x {cols} prototypes"
    )
    unit = _unit_rows(p.double().numpy(), f"prototype file {path}")
    return ResolvedPrototypes(unit, meta.get("method") or "file", True, {"file": path})


def _check_shape(shape: tuple, num_classes: int, dims: int | None, what: str) -> None:
    """Refuse rows other than K, or columns other than ``dims`` when it is given."""
    if len(shape) != 2 or shape[0] != num_classes or (dims is not None and shape[1] != dims):
        need = f"{num_classes} x {'d' if dims is None else dims}"
        raise ValueError(f"{what}; the model needs {need}")


def _unit_rows(p: np.ndarray, what: str) -> torch.Tensor:
    """(K, d) float64 rows divided by their norms, as a float32 tensor."""
    norms = np.linalg.norm(p, axis=1, keepdims=True)
    if not np.all(np.isfinite(p)) or np.any(norms == 0):
        raise ValueError(f"{what} must be finite non-zero rows")
    return torch.from_numpy((p / norms).astype(np.float32))


def _data_prior(
    train: Iterable[tuple[torch.Tensor, torch.Tensor]] | None,
    num_classes: int,
    dims: int,
    seed: int,
    spread_steps: int,
) -> ResolvedPrototypes:
    """The PCA of the training class means, spread by ``spread_steps`` separation steps."""
    if train is None:
        raise ValueError("prototypes 'data' need the training split")
    with _named("data", num_classes, dims):
        means, counts = data_prior.class_means(train, num_classes)
        p, basis = data_prior.data_prior_layout(
            means, dims, seed=seed, steps=spread_steps, seen=counts > 0
        )
    info = {"spread_steps": spread_steps, "spread_lr": data_prior.SPREAD_LR}
    return ResolvedPrototypes(p, "data", class_informed=True, info=info, projection=basis)


def _embedding(
    spec: str, num_classes: int, dims: int, names: Sequence[str] | None
) -> ResolvedPrototypes:
    """Class-name embeddings as prototypes, reduced to ``dims`` by PCA."""
    model = spec.partition(":")[2]
    if model not in EMBEDDERS:
        raise ValueError(f"prototypes {spec!r}: use embedding:glove or embedding:minilm")
    if not names:
        raise ValueError(f"prototypes {spec!r} need class names; none were given")
    if len(names) != num_classes:
        raise ValueError(f"prototypes {spec!r}: {len(names)} class names for {num_classes} classes")
    # imported here, as in build: hpn.prototypes.semantic imports scipy.stats, which would
    # make every `import hpn` slower for a spec that few runs use
    from hpn.prototypes import semantic

    with _named(spec, num_classes, dims):
        p = semantic.embedding_prototypes(list(names), dims, model)
    return ResolvedPrototypes(p, spec, class_informed=True)
