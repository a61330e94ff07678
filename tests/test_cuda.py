"""CUDA correctness: the same numbers on the GPU as on the CPU. Skipped without a GPU
(CI has none); run on a lent GPU machine with ``python -m pytest tests/test_cuda.py``."""

import pytest
import torch

from hpn import functional as F
from hpn import prototypes as protos
from hpn.data.registry import load_data
from hpn.heads import PrototypeClassifier
from hpn.models import build_backbone
from hpn.training import RunConfig, from_dict, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _both(*tensors):
    return tensors, tuple(t.cuda() for t in tensors)


def test_losses_and_gradients_match_the_cpu():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 16, generator=g, dtype=torch.float64)
    p = torch.nn.functional.normalize(torch.randn(50, 16, generator=g, dtype=torch.float64), dim=1)
    y = torch.randint(0, 50, (64,), generator=g)
    for loss in (
        lambda z, p, y: F.prototype_loss(z, p, y, "sum"),
        lambda z, p, y: F.prototype_softmax_loss(z, p, y, 20.0, 0.1, "sum"),
    ):
        (zc, pc, yc), (zg, pg, yg) = _both(z, p, y)
        zc = zc.detach().clone().requires_grad_(True)
        zg = zg.detach().clone().requires_grad_(True)
        a, b = loss(zc, pc, yc), loss(zg, pg, yg)
        a.backward()
        b.backward()
        torch.testing.assert_close(b.cpu(), a)
        torch.testing.assert_close(zg.grad.cpu(), zc.grad)


def test_chunked_nearest_prototype_matches_the_cpu():
    g = torch.Generator().manual_seed(1)
    p = torch.nn.functional.normalize(torch.randn(100_000, 32, generator=g), dim=1)
    z = torch.randn(3000, 32, generator=g)
    cpu_idx, cpu_cos = F.nearest_prototype(z.double(), p.double(), 30_000)
    gpu_idx, gpu_cos = F.nearest_prototype(z.double().cuda(), p.double().cuda(), 30_000)
    assert torch.equal(gpu_idx.cpu(), cpu_idx)
    torch.testing.assert_close(gpu_cos.cpu(), cpu_cos)


def test_prototype_generation_runs_on_the_gpu_to_the_same_quality():
    from hpn.prototypes.optimize import optimized_prototypes

    cpu, _ = optimized_prototypes(500, 20, seed=0, steps=300)
    gpu, _ = optimized_prototypes(500, 20, seed=0, steps=300, device="cuda")
    assert gpu.device.type == "cpu"  # returned on the CPU either way
    a, b = protos.report(cpu).worst_cosine, protos.report(gpu).worst_cosine
    assert abs(a - b) < 0.01, (a, b)


def test_head_predicts_the_same_classes_on_both_devices():
    head = PrototypeClassifier(protos.generate(1000, 64), in_features=32)
    x = torch.randn(512, 32)
    cpu = head.predict(x, chunk_size=300)
    gpu = head.cuda().predict(x.cuda(), chunk_size=300)
    assert torch.equal(gpu.cpu(), cpu)


def _cfg(tmp_path, name, **extra):
    data = {
        "out_dir": str(tmp_path / name),
        "device": "cuda",
        "data": {
            "name": "clusters",
            "options": {"num_classes": 20, "samples_per_class": 60, "dims": 50, "std": 0.5},
        },
        "model": {"backbone": "mlp", "options": {"hidden": [64], "dropout": 0.2}},
        "head": {
            "kind": "prototype",
            "dims": 8,
            "prototypes": "data",
            "loss": {"kind": "cosine_softmax"},
        },
        "optim": {"optimizer": "adam", "lr": 0.003, "epochs": 4, "batch_size": 32},
        **extra,
    }
    return from_dict(RunConfig, data)


def _train(cfg, resume=False, log=lambda *_: None):
    splits = load_data(cfg.data.name, **cfg.data.options)
    torch.manual_seed(0)
    backbone = build_backbone(cfg.model.backbone, splits.input_shape, **cfg.model.options)
    return train(cfg, splits, backbone, resume=resume, log=log)


class _Stop(Exception):
    pass


def _stop(line):
    if "epoch 2/4" in line:
        raise _Stop


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_on_the_gpu_learns_and_resumes_bit_identically(tmp_path, precision):
    full = _train(_cfg(tmp_path, "full", precision=precision))
    assert full["test_accuracy"] > 0.8
    with pytest.raises(_Stop):
        _train(_cfg(tmp_path, "cut", precision=precision), log=_stop)
    _train(_cfg(tmp_path, "cut", precision=precision), resume=True)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    for key in a:  # dropout masks come from the CUDA generator, saved with the checkpoint
        assert torch.equal(a[key], b[key]), key


def test_gpu_and_cpu_training_reach_the_same_accuracy(tmp_path):
    gpu = _train(_cfg(tmp_path, "gpu"))
    cpu = _train(_cfg(tmp_path, "cpu", device="cpu"))
    assert abs(gpu["test_accuracy"] - cpu["test_accuracy"]) < 0.05
