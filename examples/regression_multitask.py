"""Regression and multi-task heads on rotated digits: the angle, and the angle with the class.

Every MNIST-5k digit is rotated by a seeded angle in [0, 90) degrees. The regression head
puts the smallest and largest training angle at the poles -p_u and p_u of the output sphere
and reads the angle from cos(z, p_u). The multi-task head does both on one sphere: axis 0
carries the angle, the other axes the ten class prototypes, and one loss of the same form
covers both tasks, L = t L_class + (1 - t) L_angle.

    python examples/regression_multitask.py           # 10 epochs per model (a few minutes)
    python examples/regression_multitask.py --quick   # 1,200 digits, 3 epochs (seconds)
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from hpn import prototypes as protos
from hpn.data.registry import load_rotated_mnist5k
from hpn.functional import regression_bounds
from hpn.heads import MultiTaskHead, PrototypeRegressor
from hpn.models import build_backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of a few seconds")
    parser.add_argument("--task-weight", type=float, default=0.5, help="t in [0, 1]")
    args = parser.parse_args()
    limit, epochs = (1200, 3) if args.quick else (None, 10)

    # One CPU thread, as the docs page's output was made: sums over several threads round in
    # another order, and ten epochs move the MAE by tenths of a degree.
    torch.set_num_threads(1)
    splits = load_rotated_mnist5k(seed=0, max_angle=90)
    x, labels, angles = tensors(splits.train, limit)
    x_test, labels_test, angles_test = tensors(splits.test)
    # The poles' values v_l, v_u: the smallest and largest *training* target.
    low, high = regression_bounds(angles)
    print(f"{len(x)} training digits, angles in [{low:.1f}, {high:.1f}] degrees")

    # 1. Regression alone: output on S^1 (d = 2), the angle read off the cosine to p_u.
    torch.manual_seed(0)
    backbone = build_backbone("convnet", splits.input_shape)
    head = PrototypeRegressor(dims=2, lower=low, upper=high, in_features=backbone.out_features)
    fit(backbone, head, x, {"value": angles}, epochs)
    with torch.no_grad():
        predicted = head.predict(backbone(x_test))  # v_l + (cos + 1) / 2 (v_u - v_l)
    mae = float((predicted - angles_test).abs().mean())
    print(f"regression head (d = 2):        angle MAE {mae:.2f} degrees  "
          f"(predicting the mean: {float((angles_test - angles.mean()).abs().mean()):.2f})")  # fmt: skip

    # 2. Multi-task: d = 11, axis 0 for the angle, a 10-d simplex for the ten classes.
    torch.manual_seed(0)
    backbone = build_backbone("convnet", splits.input_shape)
    class_prototypes = protos.generate(10, 10, method="auto")  # the regular simplex
    head = MultiTaskHead(
        class_prototypes, low, high, in_features=backbone.out_features,
        task_weight=args.task_weight,
    )  # fmt: skip
    fit(backbone, head, x, {"label": labels, "value": angles}, epochs)
    with torch.no_grad():
        classes, predicted = head.predict(backbone(x_test))
    acc = float((classes == labels_test).float().mean())
    mae = float((predicted - angles_test).abs().mean())
    print(f"multi-task head (d = 11, t = {args.task_weight}): accuracy {acc:.4f}, "
          f"angle MAE {mae:.2f} degrees")  # fmt: skip


def tensors(dataset, limit: int | None = None):
    n = len(dataset) if limit is None else min(limit, len(dataset))
    x, target = dataset.get_batch(range(n))
    return x, target["label"], target["value"].double()


def fit(backbone: nn.Module, head: nn.Module, x: torch.Tensor, targets: dict, epochs: int):
    """Adam, batches of 64. ``head.loss`` takes the backbone's features and the target dict, as
    the data sources yield it: ``"value"`` (the angles) for the regressor, ``"label"`` and
    ``"value"`` for the multi-task head."""
    params = [*backbone.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(1, epochs + 1):
        backbone.train()
        head.train()
        total = 0.0
        for batch in torch.randperm(len(x), generator=generator).split(64):
            target = {name: t[batch] for name, t in targets.items()}
            loss = head.loss(backbone(x[batch]), target, reduction="mean")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        print(f"  epoch {epoch}  loss {total / len(x):.4f}")
    backbone.eval()
    head.eval()


if __name__ == "__main__":
    main()
