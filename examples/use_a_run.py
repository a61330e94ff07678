"""Using a finished run: load it, predict new images, see its errors class by class, export it.

Trains a small run on the MNIST-5k digits first (the packaged `demo` config with an MLP), then
does in Python what `hpn predict`, `hpn evaluate --confusion` and `hpn export` do.

    python examples/use_a_run.py           # 5 epochs (about half a minute)
    python examples/use_a_run.py --quick   # 1 epoch (seconds)
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import hpn
from hpn.training.class_report import confusion_report
from hpn.training.export import export_run
from hpn.training.predict import predict_run
from hpn.training.run import load_config, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of a few seconds")
    args = parser.parse_args()
    os.chdir(tempfile.mkdtemp())  # everything below is written in a fresh folder
    folder = Path("runs/digits")
    cfg = load_config("demo", [f"out_dir={folder}", "model.backbone=mlp",
                               f"optim.epochs={1 if args.quick else 5}"])  # fmt: skip
    results = run(cfg, log=lambda line: None)
    print(f"trained {folder.name}: test accuracy {results['test_accuracy']:.4f}")

    # 1. The run as a model: backbone + head of the best epoch, class names, prototypes.
    model = hpn.load_run(folder)
    print(model)
    print(f"prototypes {tuple(model.prototypes.shape)}, classes {model.class_names}")
    x = torch.stack([model.splits.test[i][0] for i in range(3)])  # (3, 1, 28, 28) in [0, 1]
    top = model.predict(x, k=3)
    for row in range(len(x)):
        best = zip(top.indices[row].tolist(), top.scores[row].tolist(), strict=True)
        print("top 3: " + ", ".join(f"{c} (cos {s:.3f})" for c, s in best))

    # 2. Image files, prepared as the source prepared its digits: gray, 28 x 28, in [0, 1].
    images = Path("images")
    images.mkdir()
    for i in range(3):
        pixels = (model.splits.test[i][0][0].numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(images / f"digit{i}.png")
    table = predict_run(folder, images, "images.csv", k=1, progress=False)
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    same = [int(r["class_1"]) for r in rows] == top.indices[:, 0].tolist()
    print(f"the PNG files get the classes of the tensors: {same}")

    # 3. Errors class by class on the test split (tables and a figure in evaluations/).
    report = confusion_report(folder)
    worst = report["worst_classes"][:3]
    accuracy = report["per_class_accuracy"]
    print("worst classes: " + ", ".join(f"{c} ({accuracy[c]:.2f})" for c in worst))

    # 4. Exported: the same scores from a file that needs no hpn.
    scripted = torch.jit.load(str(export_run(folder, "torchscript", "m.pt")))
    with torch.no_grad():
        gap = (scripted(x) - model.scores(x)).abs().max().item()
    print(f"TorchScript: largest score difference {gap:.1e}")
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnxscript"):
        import onnxruntime

        session = onnxruntime.InferenceSession(str(export_run(folder, "onnx", "m.onnx")))
        (scores,) = session.run(["scores"], {"input": x.numpy()})
        print(
            f"ONNX: largest score difference {np.abs(scores - model.scores(x).numpy()).max():.1e}"
        )


if __name__ == "__main__":
    main()
