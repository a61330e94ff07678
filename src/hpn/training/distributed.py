"""Multi-process training on PyTorch's own engine (``torch.distributed``, DDP).

``hpn train`` runs unchanged under ``torchrun``: when the launcher sets ``WORLD_SIZE`` > 1,
:func:`init_from_env` joins the process group (gloo on CPU, nccl on CUDA) and the trainer
wraps the network in ``DistributedDataParallel``. Each global batch of the single-process run
(the same seeded permutation, the same batch size) is split across the ranks, and the loss is
scaled so that DDP's gradient average equals the gradient of the global batch: a run on W
processes takes the same steps as one process on the same global batch (BatchNorm statistics
and dropout aside, which are per process as in any DDP run). Metrics are summed across
ranks; only rank 0 writes files.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from hpn.data.base import training_batches


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank and the number of processes (1: not distributed).

    Attributes:
        rank: this process's index, 0 .. world - 1.
        world: the number of processes.
    """

    rank: int = 0
    world: int = 1

    @property
    def distributed(self) -> bool:
        """More than one process (``world > 1``).

        Example:
            >>> Context().distributed, Context(rank=1, world=4).distributed
            (False, True)
        """
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0, the process that writes files and logs.

        Example:
            >>> Context().main, Context(rank=1, world=2).main
            (True, False)
        """
        return self.rank == 0


def context() -> Context:
    """The current process group's rank and size, or a single process.

    Example:
        >>> context()  # no process group here
        Context(rank=0, world=1)
    """
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size())
    return Context()


def init_from_env(device: str) -> tuple[Context, str]:
    """Join the process group a launcher (``torchrun``) describes in the environment.

    Returns the context and the device this rank should use: ``cuda`` becomes
    ``cuda:LOCAL_RANK`` under a multi-process launch. Without ``WORLD_SIZE`` > 1 nothing is
    initialised and the device is returned unchanged.

    Raises:
        ValueError: a CUDA device was asked for but CUDA is not available.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return Context(), device
    cuda = device.startswith("cuda")
    if cuda:
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return context(), device


def shutdown() -> None:
    """Leave the process group (a no-op when not distributed).

    A DistributedDataParallel wrapper that is no longer referenced but sits in a reference
    cycle still holds the group; it is collected first, so the group is torn down here and
    not while the interpreter exits (gloo's worker threads then abort the process:
    "terminate called without an active exception"). All ranks then meet at a barrier, so no
    rank tears gloo down while another still talks to it.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def shard_batches(
    permutation: torch.Tensor, batch_size: int, ctx: Context
) -> tuple[list[list[int]], list[int]]:
    """This rank's part of each global batch, and each global batch's size.

    Global batch b is ``permutation[b * batch_size:(b + 1) * batch_size]``, exactly as a
    single process would draw it; it is cut into ``world`` nearly equal contiguous parts
    (``torch.tensor_split``) and this rank takes part ``rank``. A part may be empty when the
    last batch has fewer examples than there are ranks. Batches are cut by
    :func:`hpn.data.base.training_batches` (a last batch of one joins the one before).

    Args:
        permutation: (N,) int64 order of the N training examples for this epoch.
        batch_size: examples per global batch.
        ctx: this process's rank and the world size.

    Returns:
        ``(parts, sizes)``: for each global batch, this rank's example indices and the
        global batch's size.

    Example:
        >>> shard_batches(torch.arange(7), 4, Context(rank=1, world=2))
        ([[2, 3], [6]], [4, 3])
    """
    parts, sizes = [], []
    for batch in training_batches(permutation, batch_size):
        parts.append(torch.tensor_split(batch, ctx.world)[ctx.rank].tolist())
        sizes.append(len(batch))
    return parts, sizes


def all_reduce_sum(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Element-wise sum over ranks (float64 or int64 on CPU); identity for one process.

    Args:
        values: a CPU tensor of any shape, the same shape on every rank.
        ctx: this process's rank and the world size.

    Returns:
        A CPU tensor of the same shape, the sum of every rank's ``values``.

    Example:
        >>> all_reduce_sum(torch.tensor([1.0, 2.0], dtype=torch.float64), Context()).tolist()
        [1.0, 2.0]
    """
    if not ctx.distributed:
        return values
    backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    out = values.to(backend_device).clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.cpu()


def broadcast_buffers(module: torch.nn.Module, ctx: Context) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics...) to every rank."""
    if not ctx.distributed:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def barrier(ctx: Context) -> None:
    """Wait until every rank gets here (a no-op for one process).

    Example:
        >>> barrier(Context())  # one process: returns at once
    """
    if ctx.distributed:
        dist.barrier()
