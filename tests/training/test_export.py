"""hpn export: the TorchScript and ONNX files give the live model's scores on new batch sizes."""

import numpy as np
import pytest
import torch

from hpn.cli import main
from hpn.data.base import in_batches, iterate_batches
from hpn.training.export import export_run
from hpn.training.inference import load_run

# the tests load the TorchScript files as a user would; torch says TorchScript is deprecated
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


def _inputs(model, n=7):
    x, _ = next(iterate_batches(model.splits.test, in_batches(range(n), n)))
    return x


@pytest.mark.parametrize("head", ["prototype", "softmax"])
def test_torchscript_gives_the_live_scores(clusters_runs, tmp_path, head):
    _check_torchscript(clusters_runs[head], tmp_path)


def test_torchscript_of_a_learned_cosine_classifier(learned_centres_runs, tmp_path):
    _check_torchscript(learned_centres_runs["cosine"], tmp_path)


def _check_torchscript(folder, tmp_path):
    out = tmp_path / "model.pt"
    assert main(["export", str(folder), "--format", "torchscript", "--out", str(out)]) == 0
    model = load_run(folder)
    x = _inputs(model)  # traced on a batch of 2, run on 7
    scripted = torch.jit.load(str(out))
    with torch.no_grad():
        exported = scripted(x)
    torch.testing.assert_close(exported, model.scores(x))
    assert torch.equal(exported.argmax(1), model.predict(x, k=1).indices[:, 0])


def test_torchscript_of_an_image_run(image_run, tmp_path):
    model = load_run(image_run)
    scripted = torch.jit.load(str(export_run(image_run, "torchscript", tmp_path / "m.pt")))
    x = _inputs(model, 5)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model.scores(x))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch's exporter on its own internals
@pytest.mark.parametrize("head", ["prototype", "softmax"])
def test_onnx_gives_the_live_scores(clusters_runs, tmp_path, head):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    folder = clusters_runs[head]
    out = export_run(folder, "onnx", tmp_path / "model.onnx")
    model = load_run(folder)
    x = _inputs(model, 9)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    (scores,) = session.run(["scores"], {"input": x.numpy()})
    np.testing.assert_allclose(scores, model.scores(x).numpy(), rtol=1e-4, atol=1e-5)
    assert np.array_equal(scores.argmax(1), model.scores(x).argmax(1).numpy())


def test_bad_requests_are_one_line(clusters_runs, tmp_path, capsys, monkeypatch):
    with pytest.raises(
        ValueError, match=r"export format must be one of \['torchscript', 'onnx'\], got 'tflite'"
    ):
        export_run(clusters_runs["prototype"], "tflite", tmp_path / "m")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxscript" else real(name, *a),
    )
    argv = [
        "export",
        str(clusters_runs["prototype"]),
        "--format",
        "onnx",
        "--out",
        str(tmp_path / "m.onnx"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "ONNX export needs onnxscript: pip install onnx onnxscript" in err and "[export]" in err
