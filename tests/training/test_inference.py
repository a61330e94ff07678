"""hpn.load_run: a finished run's best network, ready for inference, scores as at training."""

import json
import subprocess
import sys

import pytest
import torch

import hpn
from hpn.data.base import in_batches, iterate_batches
from hpn.training.inference import TrainedModel, load_run


def _test_split(model: TrainedModel) -> tuple[torch.Tensor, torch.Tensor]:
    data = model.splits.test
    x, targets = next(iterate_batches(data, in_batches(range(len(data)), len(data))))
    return x, targets["label"]


def test_prototype_run_predicts_as_it_was_scored(clusters_runs):
    folder = clusters_runs["prototype"]
    model = hpn.load_run(folder)
    assert isinstance(model, TrainedModel) and not model.network.training
    assert model.score_kind == "cosine" and model.num_classes == 4 and model.input_shape == (6,)
    # the prototypes are best.pt's buffer: unit rows, the exact values the head trained with
    best = torch.load(folder / "best.pt", weights_only=True)["model"]
    assert torch.equal(model.prototypes, best["head.prototypes"])
    torch.testing.assert_close(model.prototypes.norm(dim=1), torch.ones(4))
    x, labels = _test_split(model)
    top = model.predict(x, k=3)
    assert top.indices.shape == top.scores.shape == (len(x), 3)
    # top-1 accuracy is the test accuracy the training run recorded
    results = json.loads((folder / "results.json").read_text())
    assert (top.indices[:, 0] == labels).double().mean().item() == results["test_accuracy"]
    # cosines computed another way: the backbone's features, projected, against each prototype
    with torch.no_grad():
        z = model.network.head.proj(model.network.backbone(x))
    cos = torch.nn.functional.cosine_similarity(z[:, None, :], model.prototypes[None], dim=2)
    torch.testing.assert_close(top.scores, cos.gather(1, top.indices))
    assert (top.scores[:, :-1] >= top.scores[:, 1:]).all()


def test_softmax_run_gives_probabilities(clusters_runs):
    folder = clusters_runs["softmax"]
    model = load_run(folder)
    assert model.score_kind == "probability" and model.prototypes is None
    x, labels = _test_split(model)
    scores = model.scores(x)
    torch.testing.assert_close(scores.sum(1), torch.ones(len(x)))
    results = json.loads((folder / "results.json").read_text())
    assert (scores.argmax(1) == labels).double().mean().item() == results["test_accuracy"]
    assert model.predict(x, k=10).indices.shape == (len(x), 4)  # k beyond K is cut to K


@pytest.mark.parametrize("kind", ["cosine", "sampled"])
def test_learned_centres_run_gives_its_cosines(learned_centres_runs, kind):
    folder = learned_centres_runs[kind]
    model = load_run(folder)
    # its scores are cosines to the learned centres; it has no fixed prototypes
    assert model.score_kind == "cosine" and model.prototypes is None and model.num_classes == 4
    x, labels = _test_split(model)
    top = model.predict(x, k=2)
    results = json.loads((folder / "results.json").read_text())
    assert (top.indices[:, 0] == labels).double().mean().item() == results["test_accuracy"]
    # cosines computed another way: the projected features against best.pt's centres
    centres = torch.load(folder / "best.pt", weights_only=True)["model"]["head.centres"]
    with torch.no_grad():
        z = model.network.head.proj(model.network.backbone(x))
    cos = torch.nn.functional.cosine_similarity(z[:, None, :], centres[None], dim=2)
    torch.testing.assert_close(top.scores, cos.gather(1, top.indices))


def test_image_run_knows_its_classes_and_files(image_run):
    model = load_run(image_run)
    assert model.class_names == ["blue", "green", "red"]
    assert model.images is not None and model.images.size == (8, 8)
    assert "ImageInputs" not in repr(model) and "K=3" in repr(model)


def test_bad_inputs_are_one_line(clusters_runs, tmp_path):
    model = load_run(clusters_runs["prototype"])
    with pytest.raises(
        ValueError, match=r"inputs must be \(N, 6\) for this run, got shape \(2, 5\)"
    ):
        model.predict(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        model.predict(torch.zeros(2, 6), k=0)
    with pytest.raises(ValueError, match="classification run: it predicts no values"):
        model.values(torch.zeros(2, 6))
    with pytest.raises(ValueError, match="only data.\\* keys"):
        load_run(clusters_runs["prototype"], ["optim.lr=1"])
    with pytest.raises(FileNotFoundError, match="not a finished run folder"):
        load_run(tmp_path)


def test_import_hpn_loads_the_training_code_on_first_use_only():
    code = (
        "import sys, hpn; assert 'hpn.training.inference' not in sys.modules; "
        "assert hpn.load_run.__module__ == 'hpn.training.inference'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_runs_that_predict_values(value_runs):
    multitask = load_run(value_runs["multitask"])
    assert multitask.score_kind == "cosine" and multitask.prototypes.shape == (10, 3)
    x, labels = _test_split(multitask)
    results = json.loads((value_runs["multitask"] / "results.json").read_text())
    top = multitask.predict(x, k=2)
    assert (top.indices[:, 0] == labels).double().mean().item() == results["test_accuracy"]
    assert multitask.values(x).shape == (len(x),)
    regression = load_run(value_runs["regression"])
    assert regression.score_kind is None and regression.num_classes is None
    data = regression.splits.test
    x, targets = next(iterate_batches(data, in_batches(range(len(data)), len(data))))
    mae = (regression.values(x) - targets["value"].double()).abs().mean().item()
    results = json.loads((value_runs["regression"] / "results.json").read_text())
    assert mae == pytest.approx(results["test_mae"], rel=1e-9)
    with pytest.raises(ValueError, match="regression run: it has no class scores"):
        regression.predict(x)
