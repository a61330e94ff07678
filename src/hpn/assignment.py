"""Dynamic label-to-prototype assignment (DL2PA, Saadabadi et al., CVPR 2024): all of it.

The prototypes stay fixed; which class owns which prototype is re-optimised during training.
:class:`ClassMeans` keeps a running mean direction of the outputs of every class; on a
schedule, :func:`match` solves the bipartite matching between class means and prototypes
(maximum total cosine) and the head re-labels: class c takes prototype ``perm[c]``.

* Up to :data:`HUNGARIAN_MAX` classes the matching is exact: the Hungarian algorithm
  (``scipy.optimize.linear_sum_assignment``, O(K^3)).
* Above, an O(K * candidates * log) greedy approximation: every class lists its ``candidates``
  most similar prototypes (computed in chunks, never a K x K matrix), all (class, prototype)
  pairs are taken in order of decreasing cosine when both are still free, and classes left
  over take the free prototypes by a final Hungarian solve on that (small) remainder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from hpn.functional import as_labels, unit

#: Sums a tensor over the processes of a group (identity for one process).
Reduce = Callable[[torch.Tensor], torch.Tensor]


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


#: Largest K solved exactly by the Hungarian algorithm (K^2 floats, O(K^3) time).
HUNGARIAN_MAX = 4096


class ClassMeans(nn.Module):
    """Running mean direction of each class's unit outputs (an exponential moving average).

    Each :meth:`update` first averages the unit outputs of every class present in the batch
    (a per-class scatter-add, so a label that repeats in the batch contributes all its rows,
    and no update is lost), then moves that class's mean: ``m <- momentum m + (1 -
    momentum) batch_mean``. A class seen for the first time takes its batch mean directly.
    The means are buffers: saved with ``state_dict``, moved by ``.to``.

    Args:
        num_classes: K.
        dims: d.
        momentum: in [0, 1); 0 keeps only the latest batch.

    Example:
        >>> tracker = ClassMeans(2, 2, momentum=0.5)
        >>> tracker.update(torch.tensor([[2.0, 0.0], [0.0, 3.0]]), torch.tensor([0, 0]))
        >>> tracker.means.tolist(), tracker.seen.tolist()
        ([[0.5, 0.5], [0.0, 0.0]], [True, False])
    """

    means: torch.Tensor  # (K, d) buffer
    seen: torch.Tensor  # (K,) bool buffer

    def __init__(self, num_classes: int, dims: int, momentum: float = 0.9):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.register_buffer("means", torch.zeros(num_classes, dims))
        self.register_buffer("seen", torch.zeros(num_classes, dtype=torch.bool))

    @torch.no_grad()
    def update(self, z: torch.Tensor, labels: torch.Tensor) -> None:
        """Fold a batch of outputs into the class means (outputs are normalised first).

        Args:
            z: (N, d) outputs (any norm).
            labels: (N,) int64 class ids in [0, K).
        """
        k = len(self.means)
        u = unit(z.detach().to(self.means.dtype))
        sums = torch.zeros_like(self.means).index_add_(0, labels, u)
        counts = torch.bincount(labels, minlength=k).to(self.means.dtype)
        present = counts > 0
        batch_mean = sums[present] / counts[present, None]
        first = ~self.seen[present]
        old = self.means[present]
        new = torch.where(
            first[:, None], batch_mean, self.momentum * old + (1 - self.momentum) * batch_mean
        )
        self.means[present] = new
        self.seen |= present


@dataclass
class Matching:
    """Result of :func:`match`: class c takes prototype ``perm[c]``.

    Attributes:
        perm: (K,) int64, a permutation of 0..K-1.
        total_cosine: sum over classes of cos(mean_c, prototype ``perm[c]``).
        method: ``"hungarian"`` or ``"greedy+hungarian"``.
    """

    perm: torch.Tensor  # (K,) long, a permutation of 0..K-1
    total_cosine: float
    method: str  # "hungarian" or "greedy+hungarian"


def _hungarian(similarity: np.ndarray) -> np.ndarray:
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    perm = np.empty(similarity.shape[0], dtype=np.int64)
    perm[rows] = cols
    return perm


def _top_candidates(
    means: torch.Tensor, prototypes: torch.Tensor, candidates: int, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, c) best cosines and prototype indices per class, prototypes in chunks."""
    best_val = torch.full((len(means), candidates), -torch.inf)
    best_idx = torch.zeros(len(means), candidates, dtype=torch.long)
    for start in range(0, len(prototypes), chunk):
        block = means @ prototypes[start : start + chunk].T
        val = torch.cat([best_val, block], dim=1)
        idx = torch.cat([best_idx, torch.arange(start, start + block.shape[1]).expand_as(block)], 1)
        best_val, pos = val.topk(min(candidates, val.shape[1]), dim=1)
        best_idx = idx.gather(1, pos)
    return best_val, best_idx


def _greedy(means: torch.Tensor, prototypes: torch.Tensor, candidates: int) -> np.ndarray:
    k = len(means)
    vals, idxs = _top_candidates(means, prototypes, min(candidates, len(prototypes)))
    order = torch.argsort(vals.flatten(), descending=True)
    cls_of = (order // vals.shape[1]).numpy()
    proto_of = idxs.flatten()[order].numpy()
    perm = np.full(k, -1, dtype=np.int64)
    taken = np.zeros(len(prototypes), dtype=bool)
    for c, p in zip(cls_of, proto_of, strict=True):
        if perm[c] < 0 and not taken[p]:
            perm[c], taken[p] = p, True
    left = np.flatnonzero(perm < 0)
    if len(left):  # the few classes whose candidates were all taken: exact on the remainder
        free = np.flatnonzero(~taken)
        sim = (means[torch.from_numpy(left)] @ prototypes[torch.from_numpy(free)].T).numpy()
        perm[left] = free[_hungarian(sim)]
    return perm


def resolve_method(num_classes: int, method: str = "auto") -> str:
    """The matching :func:`match` runs: ``auto`` is exact up to :data:`HUNGARIAN_MAX` classes.

    Example:
        >>> resolve_method(10), resolve_method(10_000), resolve_method(10, "greedy")
        ('hungarian', 'greedy', 'greedy')
    """
    if method == "auto":
        return "hungarian" if num_classes <= HUNGARIAN_MAX else "greedy"
    return method


def match(
    means: torch.Tensor,
    prototypes: torch.Tensor,
    method: str = "auto",
    candidates: int = 32,
) -> Matching:
    """The assignment of K classes to K prototypes with the largest total cosine.

    Args:
        means: (K, d) class mean directions (any norm; rows are normalised here).
        prototypes: (K, d) fixed prototypes.
        method: ``hungarian`` (exact), ``greedy`` (approximate, for very many classes) or
            ``auto`` (exact up to :data:`HUNGARIAN_MAX` classes).
        candidates: prototypes listed per class by the greedy method.

    Returns:
        A :class:`Matching`: class c takes prototype ``perm[c]``, with the (K,) permutation
        ``perm``, the total cosine and the method that ran.

    Example:
        >>> result = match(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.eye(2))
        >>> result.perm.tolist(), result.total_cosine, result.method
        ([1, 0], 2.0, 'hungarian')
    """
    if means.shape != prototypes.shape:
        raise ValueError(
            f"class means {tuple(means.shape)} and prototypes {tuple(prototypes.shape)} must "
            "have the same shape (one prototype per class)"
        )
    method = resolve_method(len(means), method)
    m, p = unit(means.detach().double().cpu()), unit(prototypes.detach().double().cpu())
    if method == "hungarian":
        perm, label = _hungarian((m @ p.T).numpy()), "hungarian"
    elif method == "greedy":
        perm, label = _greedy(m, p, candidates), "greedy+hungarian"
    else:
        raise ValueError(f"method must be auto, hungarian or greedy, got {method!r}")
    perm_t = torch.from_numpy(perm)
    total = float((m * p[perm_t]).sum())
    return Matching(perm_t, total, label)


class DynamicAssignment(nn.Module):
    """The state of dynamic assignment inside a prototype head.

    ``base`` holds the prototypes as generated; the head's own ``prototypes`` buffer is
    ``base[perm]``, so row c is always the prototype class c currently owns and the loss and
    prediction need no change. Everything is a buffer and survives ``state_dict`` round trips.
    """

    base: torch.Tensor  # (K, d) buffer, the prototypes as generated
    perm: torch.Tensor  # (K,) long buffer, class c owns base[perm[c]]

    def __init__(self, prototypes: torch.Tensor, momentum: float = 0.9, method: str = "auto"):
        super().__init__()
        k, d = prototypes.shape
        self.method = method
        self.tracker = ClassMeans(k, d, momentum)
        self.register_buffer("base", prototypes.detach().clone())
        self.register_buffer("perm", torch.arange(k))

    def observe(self, z: torch.Tensor, labels: Any) -> None:
        """Fold a training batch's (N, d) outputs into the running class means."""
        labels = as_labels(labels, len(z), len(self.base), z.device)
        self.tracker.update(z, labels)

    @torch.no_grad()
    def follow(self, table: torch.Tensor | None, old_perm: torch.Tensor) -> None:
        """Relabel a (K, m) neighbour table in place after classes moved between prototypes
        (``old_perm`` -> :attr:`perm`), without a new neighbour search."""
        if table is None:
            return
        k = len(self.perm)
        arange = torch.arange(k, device=old_perm.device)
        was = torch.empty_like(old_perm).scatter_(0, old_perm, arange)  # prototype -> old class
        moved = was[self.perm]  # new class c owns what old class moved[c] owned
        back = torch.empty_like(moved).scatter_(0, moved, arange)  # old class -> new class
        table.copy_(back[table[moved]])

    @torch.no_grad()
    def initial_reassign(
        self,
        head_prototypes: torch.Tensor,
        means: torch.Tensor,
        seen: torch.Tensor,
        table: torch.Tensor | None = None,
    ) -> int:
        """Match classes to prototypes once from given class means (e.g. of an untrained
        network's outputs), then restart the running means; returns how many changed.

        Args:
            head_prototypes: (K, d) the head's prototype buffer, overwritten in place.
            means: (K, d) class mean directions.
            seen: (K,) bool, the classes ``means`` knows; the others keep their prototype.
            table: the head's (K, m) neighbour table, relabelled in place, or None.
        """
        self.tracker.seen.copy_(seen.to(self.tracker.seen.device))
        changed = self.reassign(head_prototypes, means.to(self.tracker.means), table)
        self.tracker.means.zero_()
        self.tracker.seen.zero_()
        return changed

    @torch.no_grad()
    def reassign(
        self,
        head_prototypes: torch.Tensor,
        means: torch.Tensor | None = None,
        table: torch.Tensor | None = None,
    ) -> int:
        """Match classes to prototypes, write ``base[perm]`` into ``head_prototypes``.

        Classes not seen yet enter the matching with their current prototype as their mean,
        so they keep it unless a seen class needs it.

        Args:
            head_prototypes: (K, d) the head's prototype buffer, overwritten in place.
            means: optional (K, d) class means; default the tracker's running means.
            table: the head's (K, m) neighbour table, relabelled in place, or None.

        Returns:
            How many classes changed prototype.

        Example:
            >>> dyn = DynamicAssignment(torch.eye(3))
            >>> dyn.tracker.update(torch.eye(3)[[1, 0, 2]], torch.arange(3))
            >>> head = torch.eye(3)
            >>> dyn.reassign(head), dyn.perm.tolist(), head.argmax(dim=1).tolist()
            (2, [1, 0, 2], [1, 0, 2])
        """
        means = self.tracker.means if means is None else means
        seen = self.tracker.seen[:, None]
        means = torch.where(seen, means.to(self.base.dtype), self.base[self.perm])
        result = match(means, self.base, self.method)
        new = result.perm.to(self.perm.device)
        changed = int((new != self.perm).sum())
        old = self.perm.clone()
        self.perm.copy_(new)
        head_prototypes.copy_(self.base[new].to(head_prototypes.dtype))
        self.follow(table, old)
        return changed


def dynamic_classifier(head: nn.Module) -> nn.Module | None:
    """The classifier inside ``head`` that owns a :class:`DynamicAssignment` (the head
    itself, or a multi-task head's ``classifier``), or None."""
    for module in (head, getattr(head, "classifier", None)):
        if isinstance(getattr(module, "assignment", None), DynamicAssignment):
            return module
    return None


@torch.no_grad()
def initial_assignment(
    classifier: nn.Module,
    outputs: Iterable[tuple[torch.Tensor, torch.Tensor]],
    reduce: Reduce = _identity,
) -> int:
    """Match classes to prototypes once from the untrained network's class means.

    Args:
        classifier: a head with dynamic assignment enabled (``initial_reassign``).
        outputs: ``(z, labels)`` pairs: (N, d) outputs (normalised here) and (N,) labels,
            this process's share of the training split; the caller puts the model in eval
            mode.
        reduce: sums a tensor over processes (the sums and counts of every rank).

    Returns:
        How many classes changed prototype. The running means start afresh afterwards.
    """
    k, d = cast(torch.Tensor, classifier.prototypes).shape
    sums = torch.zeros(k, d, dtype=torch.float64)
    counts = torch.zeros(k, 1, dtype=torch.float64)
    for z, labels in outputs:
        labels = labels.cpu()
        sums.index_add_(0, labels, unit(z.float()).double().cpu())
        counts.index_add_(0, labels, torch.ones(len(labels), 1, dtype=torch.float64))
    sums, counts = reduce(sums), reduce(counts)
    return int(cast(Any, classifier).initial_reassign(sums / counts.clamp_min(1), counts[:, 0] > 0))


@torch.no_grad()
def reassign(head: nn.Module, reduce: Reduce = _identity) -> int | None:
    """One dynamic-assignment update with the running class means averaged over processes.

    Returns:
        How many classes changed prototype; None when the head has no dynamic assignment.
    """
    cls = dynamic_classifier(head)
    if cls is None:
        return None
    tracker = cast(DynamicAssignment, cls.assignment).tracker
    seen = tracker.seen.double()[:, None]
    total = reduce(tracker.means.double().cpu() * seen.cpu())
    count = reduce(seen.cpu())
    tracker.seen.copy_((count[:, 0] > 0).to(tracker.seen.device))
    means = (total / count.clamp_min(1)).to(tracker.means)
    return int(cast(Any, cls).reassign(means))
