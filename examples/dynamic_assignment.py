"""Dynamic label-to-prototype assignment: let the data decide which class owns which prototype.

With 10 digit classes in d = 3 dims the prototypes are fixed (the best spread for (10, 3)),
but which class gets which one is arbitrary. Dynamic assignment (DL2PA) keeps a running mean
direction of every class's outputs and, after every epoch, re-matches classes to prototypes
by the Hungarian algorithm (the largest total cosine), so classes the network finds alike get
neighbouring prototypes. Static and dynamic runs share the network, data and seed.

    python examples/dynamic_assignment.py           # 15 epochs each
    python examples/dynamic_assignment.py --quick   # 1,800 digits, 4 epochs each (seconds)
"""

from __future__ import annotations

import argparse

import torch

from hpn import prototypes as protos
from hpn.data.mnist import load_mnist5k
from hpn.functional import unit
from hpn.heads import PrototypeClassifier
from hpn.models import MLP
from hpn.prototypes.data_prior import class_means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of a few seconds")
    parser.add_argument("--dims", type=int, default=3)
    args = parser.parse_args()
    limit, epochs = (1800, 4) if args.quick else (None, 15)

    splits = load_mnist5k(seed=0)
    x, y = tensors(splits.train, limit)
    x_test, y_test = tensors(splits.test)
    prototypes = protos.generate(10, args.dims, method="auto", seed=0)
    print(f"10 classes in d = {args.dims}: worst-pair cos "
          f"{protos.report(prototypes).worst_cosine:+.3f}")  # fmt: skip

    for mode in ("static", "dynamic"):
        torch.manual_seed(0)
        backbone = MLP(784, hidden=(256, 128))
        head = PrototypeClassifier(prototypes, in_features=backbone.out_features)
        if mode == "dynamic":
            head.enable_dynamic_assignment(momentum=0.9)  # Hungarian up to 4,096 classes
            # A first match from the untrained network's outputs: classes whose random
            # features already lie close together start on neighbouring prototypes.
            backbone.eval()
            with torch.no_grad():
                means, counts = class_means([(unit(head.proj(backbone(x))), y)], 10)
            print(
                f"dynamic: initial match moved {head.initial_reassign(means, counts > 0)} classes"
            )
        params = [*backbone.parameters(), *head.parameters()]
        optimizer = torch.optim.Adam(params, lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        for epoch in range(1, epochs + 1):
            backbone.train()
            head.train()
            for batch in torch.randperm(len(x), generator=generator).split(64):
                # in training mode, head.loss also folds z into the running class means
                loss = head.loss(backbone(x[batch]), y[batch], reduction="mean")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if mode == "dynamic":
                changed = head.reassign()  # re-match; head.prototypes[c] is class c's now
                print(f"  epoch {epoch}: {changed} classes changed prototype")
        backbone.eval()
        with torch.no_grad():
            acc = float((head.predict(backbone(x_test)) == y_test).float().mean())
        print(f"{mode:>7} assignment: test accuracy {acc:.4f}")
        if mode == "dynamic":
            print(f"  class -> prototype: {head.assignment.perm.tolist()}")


def tensors(dataset, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(dataset) if limit is None else min(limit, len(dataset))
    x, target = dataset.get_batch(range(n))
    return x, target["label"]


if __name__ == "__main__":
    main()
