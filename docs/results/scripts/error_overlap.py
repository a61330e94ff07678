"""Where a prototype run's errors fall, against other finished runs on the same test data.

The analysis behind "Where the HPN default's distant-style errors fall" on the printed
characters page. For the first run (a prototype head) it prints how close, as a cosine of
prototypes, each error's predicted class is to the true one; which errors the runs share; and
each run's accuracy over the quartiles of how crowded the true class's prototype is (the
cosine to its nearest other prototype).

    python docs/results/scripts/error_overlap.py HPN_RUN OTHER_RUN [...] \\
        --set data.options.test_group=styles

``--split val`` compares the runs on the validation split instead: the errors of one run only
and of the other only are the discordant pairs of McNemar's test between them.
"""

from __future__ import annotations

import argparse

import torch

import hpn
from hpn.training.class_report import split_predictions

NEAREST = 32  # the neighbour softmax's neighbours per class


def top1(
    folder: str, overrides: list[str], split: str
) -> tuple[torch.Tensor, torch.Tensor, hpn.TrainedModel]:
    """(N,) labels and (N,) top-1 classes of a run's ``split``, and the loaded run."""
    model = hpn.load_run(folder, overrides)
    return (*split_predictions(model, split, batch_size=512), model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders; the first has a prototype head")
    parser.add_argument("--set", action="append", default=[], help="data.key=value (repeat)")
    parser.add_argument("--split", choices=("val", "test"), default="test")
    args = parser.parse_args()
    torch.set_num_threads(1)
    labels, first, model = top1(args.runs[0], args.set, args.split)
    if model.prototypes is None:
        raise SystemExit(f"error_overlap: {args.runs[0]} has no fixed prototypes")
    guesses = {args.runs[0]: first}
    for folder in args.runs[1:]:
        other_labels, guesses[folder], _ = top1(folder, args.set, args.split)
        if not torch.equal(other_labels, labels):
            raise SystemExit(f"error_overlap: {folder} was scored on other examples")
    cos = model.prototypes @ model.prototypes.T  # (K, K)
    cos.fill_diagonal_(-2.0)
    crowding = cos.max(1).values  # (K,) cosine of each prototype to its nearest other one
    print(
        f"{len(labels):,} {args.split} examples; nearest-prototype cosine: median {crowding.median():.3f}"
    )
    for folder, guess in guesses.items():
        wrong = guess != labels
        pair = cos[labels[wrong], guess[wrong]]
        nearer = (cos[labels[wrong]] > pair[:, None]).sum(1)
        print(f"{folder}: accuracy {1 - wrong.double().mean():.4f}, {int(wrong.sum()):,} errors; "
              f"cos(true, predicted prototype) median {pair.median():.3f}; predicted among the "
              f"true class's {NEAREST} nearest prototypes: {(nearer < NEAREST).double().mean():.3f}")  # fmt: skip
    base_wrong = first != labels
    for folder, guess in list(guesses.items())[1:]:
        wrong = guess != labels
        print(f"errors of the first run only {int((base_wrong & ~wrong).sum()):,}, of {folder} "
              f"only {int((wrong & ~base_wrong).sum()):,}, of both {int((wrong & base_wrong).sum()):,}")  # fmt: skip
    edges = torch.quantile(crowding, torch.tensor([0.25, 0.5, 0.75]))
    quartile = torch.bucketize(crowding[labels], edges)
    for q in range(4):
        chosen = quartile == q
        scores = ", ".join(
            f"{(g[chosen] == labels[chosen]).double().mean():.4f}" for g in guesses.values()
        )
        print(f"crowding quartile {q + 1} ({int(chosen.sum()):,} examples): accuracy {scores}")


if __name__ == "__main__":
    main()
