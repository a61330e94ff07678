"""The order in which a run visits its training examples, epoch by epoch.

By default an epoch is one pass over the training split in a shuffled order. With
``optim.steps_per_epoch`` an epoch is a fixed number of batches instead, read from an endless
stream of shuffled passes: the run validates, checkpoints and steps its schedule every that
many steps, which gives learning curves inside the first pass over a large split and budgets
counted in steps. Both orders depend only on the seed and the epoch's index, so every rank of
a distributed run and every resumed run draws the same one.
"""

from __future__ import annotations

import torch

#: Multiplies the seed in each pass's generator seed, so nearby seeds do not share passes.
SEED_STRIDE = 1_000_003


def pass_order(n: int, seed: int, index: int) -> torch.Tensor:
    """(n,) the shuffled order of pass ``index`` (0-based) over ``n`` examples."""
    generator = torch.Generator().manual_seed(seed * SEED_STRIDE + index)
    return torch.randperm(n, generator=generator)


def epoch_order(
    n: int, seed: int, epoch: int, steps_per_epoch: int | None, batch_size: int
) -> torch.Tensor:
    """The example indices of 0-based ``epoch``, in the order they are trained on.

    Args:
        n: training examples.
        seed: the run's seed.
        epoch: the epoch's 0-based index.
        steps_per_epoch: None, one pass (:func:`pass_order` of pass ``epoch``); else the
            ``steps_per_epoch * batch_size`` examples that follow the earlier epochs' in the
            stream of passes 0, 1, 2, ...
        batch_size: examples per step.

    Returns:
        (n,) or (steps_per_epoch * batch_size,) int64 indices.

    Example:
        >>> stream = torch.cat([pass_order(5, 0, 0), pass_order(5, 0, 1)])
        >>> bool((epoch_order(5, 0, 1, 2, 2) == stream[4:8]).all())
        True
    """
    if steps_per_epoch is None:
        return pass_order(n, seed, epoch)
    size = steps_per_epoch * batch_size
    start, stop = epoch * size, (epoch + 1) * size
    pieces = []
    for index in range(start // n, (stop - 1) // n + 1):
        order = pass_order(n, seed, index)
        lo, hi = max(start - index * n, 0), min(stop - index * n, n)
        pieces.append(order[lo:hi])
    return torch.cat(pieces)
