"""Several processes with torchrun: a prototype head under DistributedDataParallel (gloo, CPU).

The same program runs as one process or as W processes; it takes the same steps either way,
so it prints the same weights checksum (up to float rounding):

    python examples/torchrun_ddp.py --quick
    torchrun --standalone --nproc_per_node=2 examples/torchrun_ddp.py --quick

How: every rank draws the same seeded permutation, cuts each global batch into W parts and
trains on its own part. Each rank's loss is its part's *sum* times W / (global batch size):
DDP averages the gradients over the W ranks, which then gives exactly the gradient of the
global batch's mean loss. The prototypes are a buffer, identical on every rank, so the loss
needs no communication of its own.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hpn import prototypes as protos
from hpn.data.mnist import load_mnist5k
from hpn.heads import PrototypeClassifier
from hpn.models import MLP


class Network(nn.Module):
    """Backbone and head whose ``forward`` returns the loss when given labels.

    DDP synchronises gradients only for computations that go through the wrapped module's
    ``forward``; calling ``ddp.module.head.loss(...)`` directly would skip it. So the loss is
    computed inside ``forward``.
    """

    def __init__(self, head: PrototypeClassifier):
        super().__init__()
        # no batch norm or dropout: their state is per process, and the point here is that
        # W processes take exactly the steps of one
        self.backbone = MLP(784, hidden=(256,), batch_norm=False, dropout=0.0)
        self.head = head

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        features = self.backbone(x)
        if labels is None:
            return self.head(features)  # (N, K) cosines
        return self.head.loss(features, labels, reduction="sum")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of a few seconds")
    parser.add_argument("--batch-size", type=int, default=64, help="the global batch size")
    args = parser.parse_args()
    epochs = 2 if args.quick else 10

    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun
    if world > 1:
        dist.init_process_group(backend="gloo")  # "nccl" with one GPU per process
    rank = dist.get_rank() if world > 1 else 0

    splits = load_mnist5k(seed=0)  # every rank loads the data (no file is written)
    x, target = splits.train.get_batch(range(len(splits.train)))
    y = target["label"]
    torch.manual_seed(0)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    prototypes = protos.generate(10, 10, method="auto")
    model = Network(PrototypeClassifier(prototypes, in_features=256))
    trained = DistributedDataParallel(model) if world > 1 else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    generator = torch.Generator().manual_seed(0)  # the same permutation on every rank
    for epoch in range(1, epochs + 1):
        model.train()
        total = torch.zeros(2, dtype=torch.float64)  # loss sum, examples
        for batch in torch.randperm(len(x), generator=generator).split(args.batch_size):
            part = batch.tensor_split(world)[rank]
            loss = trained(x[part], y[part]) * (world / len(batch))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += torch.tensor([loss.item() * len(batch) / world, len(part)])
        total = all_reduce(total, world)
        if rank == 0:
            print(f"epoch {epoch}  loss {total[0] / total[1]:.4f}  ({world} process(es))")

    # Evaluation, sharded: each rank scores a slice of the test set, the counts are summed.
    x_test, target_test = splits.test.get_batch(range(len(splits.test)))
    mine = torch.arange(len(x_test)).tensor_split(world)[rank]
    model.eval()
    with torch.no_grad():
        predicted = model(x_test[mine]).argmax(dim=1)
    counts = torch.tensor(
        [float((predicted == target_test["label"][mine]).sum()), len(mine)], dtype=torch.float64
    )
    counts = all_reduce(counts, world)
    checksum = sum(float(p.detach().double().abs().sum()) for p in model.parameters())
    if rank == 0:
        print(f"test accuracy {counts[0] / counts[1]:.4f}  weights checksum {checksum:.6f}  "
              f"world {world}")  # fmt: skip
    if world > 1:
        dist.barrier()  # leave together: a rank tearing gloo down early can abort the other
        dist.destroy_process_group()


def all_reduce(values: torch.Tensor, world: int) -> torch.Tensor:
    """Sum over the ranks (the identity for one process)."""
    if world > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


if __name__ == "__main__":
    main()
