"""The one training loop: an epoch of minibatch steps, the best-epoch watch, assignment hooks.

Both ``hpn train`` (:func:`hpn.training.run.train`) and the scikit-learn estimators
(:mod:`hpn.sklearn`) train through :func:`train_epoch`; they differ only in what they pass:

* ``hpn train``: batches of a dataset (this rank's share under DDP), a device, bf16 autocast,
  the gradient scaling of :mod:`hpn.training.distributed`, a progress callback.
* scikit-learn: batches of in-memory rows with their sample weights and the L2 ``penalty``.

Around the epochs, :class:`Watch` keeps the best validation epoch and decides when patience
has run out (``optim.patience``; ``early_stopping`` / ``n_iter_no_change`` / ``tol``), and
:func:`initial_assignment` / :func:`reassign` are the dynamic-assignment hooks before the first
epoch and after an epoch (:mod:`hpn.assignment`, which holds the state and the updates), with class means summed
over ranks.

Shapes: N examples in a batch, K classes, d output dimensions.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import torch
from torch import nn

from hpn import assignment
from hpn.training import distributed as dist_

Targets = TypeVar("Targets")
Reduction = Literal["mean", "sum", "none"]

#: ``batch_loss(x, targets, reduction)``: the loss of a batch, (N,) with ``"none"``, else a
#: scalar (the mean or the sum over the N examples).
BatchLoss = Callable[[torch.Tensor, Targets, Reduction], torch.Tensor]


class NonFiniteLoss(FloatingPointError):
    """A training step's loss was NaN or infinite (``value``, at ``epoch`` and ``step``)."""

    def __init__(self, value: float, epoch: int, step: int):
        super().__init__(f"loss became {value} at epoch {epoch}, step {step}")
        self.value, self.epoch, self.step = value, epoch, step


@dataclass
class Batch(Generic[Targets]):
    """One minibatch.

    Attributes:
        x: (N, ...) inputs.
        targets: what ``batch_loss`` takes: a dict of (N,) tensors (``label``, ``value``) in
            ``hpn train``, an (N,) tensor in the scikit-learn estimators.
        weight: None, or (N,) sample weights: the loss becomes the mean (or sum) of
            weight * per-example loss.
    """

    x: torch.Tensor
    targets: Targets
    weight: torch.Tensor | None = None


@dataclass
class EpochLoss:
    """The training loss of an epoch, summed over ranks.

    Attributes:
        total: the sum over examples of the per-example loss (as the steps saw it).
        examples: how many examples the epoch took.
    """

    total: float
    examples: float

    @property
    def mean(self) -> float:
        """Mean loss per example (0 for an empty epoch)."""
        return self.total / max(self.examples, 1)


def _to(
    value: torch.Tensor | dict[str, torch.Tensor], device: str
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Move a tensor, or a dict of tensors, to ``device``."""
    if isinstance(value, dict):
        return {name: v.to(device) for name, v in value.items()}
    return value.to(device)


def _weighted(batch_loss: BatchLoss, batch: Batch, reduction: Reduction) -> torch.Tensor:
    """The batch loss with ``reduction``, each example's loss times its weight if any."""
    if batch.weight is None:
        return batch_loss(batch.x, batch.targets, reduction)
    per_example = batch_loss(batch.x, batch.targets, "none") * batch.weight
    return per_example.mean() if reduction == "mean" else per_example.sum()


def train_epoch(
    batches: Iterable[Batch],
    batch_loss: BatchLoss,
    optimizer: torch.optim.Optimizer,
    *,
    reduction: Literal["mean", "sum"] = "mean",
    device: str = "cpu",
    bf16: bool = False,
    penalty: Callable[[int], torch.Tensor] | None = None,
    ctx: dist_.Context | None = None,
    global_sizes: Sequence[int] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    epoch: int = 0,
) -> EpochLoss:
    """One pass over ``batches``: forward, loss, backward and an optimiser step per batch.

    The caller puts the model in training mode and draws the batch order.

    Args:
        batches: the epoch's minibatches (this rank's part of each global batch under DDP).
        batch_loss: ``(x, targets, reduction) -> loss``; under DDP it must run the wrapped
            module's forward (``DistributedDataParallel``'s hooks average the gradients).
        optimizer: stepped once per batch.
        reduction: ``"mean"``, the loss of a batch is the mean over its examples, or
            ``"sum"``.
        device: where inputs and targets go.
        bf16: run the forward passes under bfloat16 autocast (losses stay in float32).
        penalty: ``penalty(N) -> scalar`` added to each batch's loss (scikit-learn's L2 term
            ``alpha``); single process only.
        ctx: the process group (default: a single process).
        global_sizes: under DDP, the size of each global batch: this rank's summed loss is
            scaled by ``world / size`` so that DDP's gradient average is the gradient of the
            global batch's mean loss (``reduction="mean"``).
        on_step: ``on_step(steps_done, N, running mean loss of this rank)`` after each step.
        epoch: the epoch's 0-based index, for the error message.

    Returns:
        The epoch's summed loss and examples over all ranks.

    Raises:
        NonFiniteLoss: a batch's loss was NaN or infinite (before its step is taken).
    """
    ctx = ctx or dist_.Context()
    if ctx.distributed and (global_sizes is None or penalty is not None):
        raise ValueError("under DDP train_epoch needs global_sizes and takes no penalty")
    sizes: Sequence[int] = global_sizes or ()
    # bf16 autocast: matmuls and convolutions in bfloat16, the losses in float32
    # (hpn.functional upcasts); no gradient scaling is needed for bfloat16
    autocast = (
        torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
        if bf16
        else contextlib.nullcontext()
    )
    total, n = 0.0, 0  # summed loss and examples of this rank
    for step, batch in enumerate(batches):
        batch = Batch(
            batch.x.to(device),
            _to(batch.targets, device),
            None if batch.weight is None else batch.weight.to(device),
        )
        with autocast:
            if ctx.distributed:
                summed = _weighted(batch_loss, batch, "sum")
                per = sizes[step] if reduction == "mean" else 1
                loss, batch_sum = summed * (ctx.world / per), float(summed.detach())
            else:
                loss = _weighted(batch_loss, batch, reduction)
                if penalty is not None:
                    loss = loss + penalty(len(batch.x))
                per = len(batch.x) if reduction == "mean" else 1
                batch_sum = float(loss.detach()) * per
        if not math.isfinite(batch_sum):
            raise NonFiniteLoss(batch_sum, epoch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, n = total + batch_sum, n + len(batch.x)
        if on_step is not None:
            on_step(step + 1, len(batch.x), total / max(n, 1))
    totals = dist_.all_reduce_sum(torch.tensor([total, n], dtype=torch.float64), ctx)
    return EpochLoss(*totals.tolist())


@dataclass
class Watch:
    """The best epoch of a validation score, and when patience has run out.

    An epoch *improves* when its score beats the best so far (strictly); the best epoch's
    model is the one to keep. It *progresses* when it beats the best by more than ``tol``
    (with ``inclusive``: by at least ``tol``, scikit-learn's MLP convention). Patience runs
    out after ``patience`` epochs in a row without progress. With ``tol = 0`` and
    ``inclusive = False`` (``hpn train``), that is ``patience`` epochs since the best one.
    A best score at the metric's ``limit`` (accuracy 1.0, an error of 0) cannot be beaten, so
    patience runs out at once: the epochs it would wait could not change the best one.

    With ``ties``, an epoch that equals the best score also improves when its ``tie`` value
    (a validation loss: lower is better) is below the best epoch's. Progress, and so
    patience, still count the score alone; and the limit no longer stops at once, since a tie
    can still improve.

    Args:
        higher: a higher score is better (accuracy); else lower (a loss, an error).
        patience: epochs without progress before stopping; None: never stop.
        tol: the progress that counts.
        inclusive: progress by exactly ``tol`` counts.
        limit: the best score the metric can take; None: unbounded.

    Example:
        >>> watch = Watch(higher=True, patience=2)
        >>> [watch.update(s, epoch) for epoch, s in enumerate([0.5, 0.7, 0.7, 0.6], start=1)]
        [True, True, False, False]
        >>> watch.best, watch.best_epoch, watch.exhausted
        (0.7, 2, True)
        >>> perfect = Watch(higher=True, patience=3, limit=1.0)
        >>> perfect.update(1.0, 1), perfect.exhausted
        (True, True)
        >>> ties = Watch(higher=True, patience=2, limit=1.0, ties=True)
        >>> [ties.update(1.0, e, tie=loss) for e, loss in enumerate([0.3, 0.2, 0.25], start=1)]
        [True, True, False]
        >>> ties.best_epoch, ties.exhausted
        (2, True)
    """

    higher: bool
    patience: int | None = None
    tol: float = 0.0
    inclusive: bool = False
    best: float = field(default=math.nan)
    limit: float | None = None
    best_epoch: int = 0  # 1-based; 0 before the first improvement
    stale: int = 0  # epochs in a row without progress
    ties: bool = False
    best_tie: float = math.inf  # the best epoch's tie value (with ties)

    def __post_init__(self) -> None:
        if math.isnan(self.best):
            self.best = -math.inf if self.higher else math.inf

    def update(self, score: float, epoch: int, tie: float | None = None) -> bool:
        """Record the 1-based ``epoch``'s score (and, with ``ties``, its tie value); returns
        whether it is the new best."""
        sign = 1.0 if self.higher else -1.0
        target = self.best + sign * self.tol
        beyond = score > target if self.higher else score < target
        progress = beyond or (self.inclusive and score == target)
        self.stale = 0 if progress else self.stale + 1
        improved = score > self.best if self.higher else score < self.best
        tie_value = math.inf if tie is None else tie
        if self.ties and score == self.best and tie_value < self.best_tie:
            improved = True
        if improved:
            self.best, self.best_epoch, self.best_tie = score, epoch, tie_value
        return improved

    @property
    def exhausted(self) -> bool:
        """Patience has run out: stop training."""
        if self.patience is None:
            return False
        return self.stale >= self.patience or (not self.ties and self.best == self.limit)


def initial_assignment(
    classifier: nn.Module,
    outputs: Iterable[tuple[torch.Tensor, torch.Tensor]],
    ctx: dist_.Context | None = None,
) -> int:
    """:func:`hpn.assignment.initial_assignment` with the sums added over ``ctx``'s ranks."""
    ctx = ctx or dist_.Context()
    return assignment.initial_assignment(
        classifier, outputs, lambda t: dist_.all_reduce_sum(t, ctx)
    )


def reassign(head: nn.Module, ctx: dist_.Context | None = None) -> int | None:
    """:func:`hpn.assignment.reassign` with the class means averaged over ``ctx``'s ranks."""
    ctx = ctx or dist_.Context()
    return assignment.reassign(head, lambda t: dist_.all_reduce_sum(t, ctx))
