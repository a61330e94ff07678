"""The optimiser and the learning-rate schedule of ``hpn train`` (the ``optim`` section).

The schedule steps once per epoch: ``none`` keeps the rate, ``cosine`` anneals it to 0 over the
epochs, ``step`` divides it by 10 at 50 % and 75 % of them. A resume may add epochs:
:func:`fit_schedule` stretches a loaded schedule to the new length from where it stands.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, MultiStepLR

from hpn.training.config import OptimConfig


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD with momentum, or Adam, with the config's rate and weight decay.

    Example:
        >>> w = torch.nn.Parameter(torch.zeros(2))
        >>> type(make_optimizer([w], OptimConfig(optimizer="adam"))).__name__
        'Adam'
    """
    params = list(params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, kind: str, epochs: int) -> LRScheduler:
    """The per-epoch schedule ``kind`` (``none``, ``cosine`` or ``step``) over ``epochs``.

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = make_scheduler(opt, "step", 4)
        >>> rates = []
        >>> for _ in range(4):
        ...     rates.append(opt.param_groups[0]["lr"])
        ...     opt.step()
        ...     sched.step()
        >>> [round(r, 4) for r in rates]
        [1.0, 1.0, 0.1, 0.01]
    """
    if kind == "cosine":
        return CosineAnnealingLR(opt, T_max=max(epochs, 1))
    if kind == "step":
        return MultiStepLR(opt, step_milestones(epochs), 0.1)
    return LambdaLR(opt, lambda _: 1.0)


def step_milestones(epochs: int) -> list[int]:
    """Epochs where the ``step`` schedule divides the learning rate by 10: 50 % and 75 %.

    Example:
        >>> step_milestones(10)
        [5, 7]
    """
    return [int(epochs * 0.5), int(epochs * 0.75)]


def fit_schedule(sched: LRScheduler, kind: str, epochs: int) -> None:
    """Stretch a loaded schedule to ``epochs`` (a resume may add epochs); a no-op when the
    length is unchanged, so an interrupted run resumes exactly."""
    if isinstance(sched, CosineAnnealingLR) and kind == "cosine":
        sched.T_max = max(epochs, 1)
    elif isinstance(sched, MultiStepLR) and kind == "step":
        sched.milestones = collections.Counter(step_milestones(epochs))
