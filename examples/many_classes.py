"""Many classes: 1,000 Gaussian clusters, a 100-d output, and prototypes from the data prior.

With K = 1,000 classes in d = 100 dims the prototypes cannot all be far apart, and fixing
them in arbitrary directions asks the network to send 1,000 clusters to 1,000 unrelated
points: it learns slowly (the collapse the blog post measured). The data prior keeps the
method (prototypes fixed before training, no output layer of size K) but places them where
the data already puts the classes: the PCA of the training class means. Trained with the
cosine softmax it is far better. Both runs use the same MLP, optimiser and epochs.

    python examples/many_classes.py           # 100 points per class, 15 epochs (minutes)
    python examples/many_classes.py --quick   # 30 points per class, 3 epochs (seconds)
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from hpn import prototypes as protos
from hpn.data.synthetic import gaussian_clusters
from hpn.heads import PrototypeClassifier
from hpn.models import MLP
from hpn.prototypes import data_prior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of a few seconds")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--dims", type=int, default=100)
    args = parser.parse_args()
    per_class, epochs = (30, 3) if args.quick else (100, 15)

    # 300-d clusters, centres uniform in [-1, 1]^300, std 1.25 at K = 1,000 (the blog's)
    splits = gaussian_clusters(args.classes, samples_per_class=per_class, seed=0)
    x_train, y_train = tensors(splits.train)
    x_test, y_test = tensors(splits.test)
    k, d = args.classes, args.dims
    print(f"{k} classes, {len(x_train)} training and {len(x_test)} test points, d = {d}")

    # Arbitrary prototypes, as far apart as the optimiser gets them (`auto` takes about
    # 15 s here; --quick runs fewer steps), with the paper's loss.
    steps = {"steps": 100} if args.quick else {}
    spread = protos.generate(k, d, method="optimized", seed=0, **steps)
    # The data prior: class means of the training inputs, reduced to d dims by PCA and
    # normalised. Only the training split is read. (steps > 0 would also spread them.)
    means, counts = data_prior.class_means([(x_train, y_train)], k)
    informed = data_prior.data_prior_prototypes(means, d, steps=0, seen=counts > 0)
    for name, p in (("optimized", spread), ("data prior", informed)):
        r = protos.report(p)
        print(f"{name:>10} prototypes: worst-pair cos {r.worst_cosine:+.3f}, "
              f"mean nearest {r.mean_nn_cosine:+.3f}, bound {r.bound:+.3f}")  # fmt: skip

    runs = (
        ("optimized, paper loss", PrototypeClassifier(spread, 300)),
        (
            "data prior, cosine softmax",
            PrototypeClassifier(
                informed, 300, loss="cosine_softmax", scale=data_prior.COSINE_SCALE
            ),
        ),
    )
    for name, head in runs:
        torch.manual_seed(0)
        model = nn.Sequential(MLP(300, hidden=(300, 300)), head)
        seconds = train(model, x_train, y_train, epochs)
        model.eval()
        with torch.no_grad():  # nearest prototype, chunked: never an N x K matrix
            predicted = head.predict(model[0](x_test))
        acc = float((predicted == y_test).float().mean())
        print(f"{name:<28} test accuracy {acc:.4f}  ({seconds:.1f} s, chance {1 / k:.4f})")


def tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    x, target = dataset.get_batch(range(len(dataset)))
    return x, target["label"]


def train(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, epochs: int) -> float:
    backbone, head = model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x), generator=generator).split(128):
            # the paper's loss touches only the target prototype of each example; the
            # softmax loss compares with all K (an N x K cosine matrix per batch)
            loss = head.loss(backbone(x[batch]), y[batch], reduction="mean")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
