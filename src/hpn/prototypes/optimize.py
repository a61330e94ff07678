"""Prototype placement by optimisation.

Two recipes for the same goal, spreading K unit vectors so that each one's nearest neighbour
is as far away as possible:

* :func:`paper_prototypes`, the paper's recipe, faithfully: minimise
  L_HP = (1/K) sum_i max_{j != i} cos(p_i, p_j) with SGD (lr 0.1, momentum 0.9) for 1000
  epochs, renormalising the rows after every step. The public reference code rebuilt its
  optimizer after every step, which silently threw the momentum away; ``reset_momentum=True``
  reproduces that behaviour.
* :func:`optimized_prototypes`, a better optimiser: the row maximum becomes a smooth maximum
  (log-sum-exp at a temperature that rises geometrically, so early steps push on all close
  neighbours and late steps on the nearest), Adam with a decaying step size, rows projected back
  onto the sphere after every step, and the best iterate (by worst-pair cosine) returned.
  For large K it never builds the K x K matrix: each row keeps a list of its nearest
  neighbours, rebuilt tile by tile every 20 steps, and the loss runs over those lists.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TypedDict

import numpy as np
import torch
from torch.nn.functional import normalize
from tqdm.auto import tqdm

from hpn.prototypes.quality import nearest_neighbours

#: Above this K the optimiser works on neighbour lists instead of the dense K x K matrix.
DENSE_MAX = 2048


class Schedule(TypedDict):
    """Step size and (start, end) temperature of one :func:`optimized_prototypes` run."""

    lr: float
    temperature: tuple[float, float]


#: The schedules :func:`multistart_prototypes` alternates between. In few dimensions the
#: smooth L_HP has many local optima and no single schedule finds the best known ones: a hot
#: start (t = 1) with a large step found the 240 roots of E8 from one start in four, where the
#: default schedule stayed near 54.8 degrees from every start. Ending at t = 1e5 instead of
#: 1e3 removes the smooth maximum's bias (10 points on S^2: 65.9 -> 66.15 degrees, the optimum).
MULTISTART_SCHEDULES: tuple[Schedule, ...] = (
    {"lr": 0.01, "temperature": (10.0, 1e5)},
    {"lr": 0.03, "temperature": (1.0, 1e5)},
)


def separation_loss(prototypes: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
    """The paper's L_HP or its smooth version.

    L_HP = (1/K) sum_i max_{j != i} cos(p_i, p_j). With a finite ``temperature`` t the row
    maximum is replaced by the smooth maximum (1/t) log sum_{j != i} exp(t cos_ij), which
    tends to L_HP as t grows and gives every close neighbour a share of the gradient.

    Args:
        prototypes: (K, d) tensor; rows need not be unit norm (they are normalised here).
        temperature: None for the hard maximum (the paper), else t > 0.

    Returns:
        Scalar tensor.

    Example:
        >>> P = torch.eye(3)
        >>> float(separation_loss(P))
        0.0
    """
    p = normalize(prototypes, dim=1)
    cos = p @ p.T
    cos = cos - 3.0 * torch.eye(len(p), dtype=p.dtype, device=p.device)  # drop the diagonal
    if temperature is None:
        return cos.max(dim=1).values.mean()
    return (torch.logsumexp(temperature * cos, dim=1) / temperature).mean()


@contextlib.contextmanager
def _flush_denormals() -> Iterator[None]:
    """Treat subnormal floats as zero while optimising.

    At high temperature exp(t (cos - max)) underflows through the subnormal range, where x86
    arithmetic is tens of times slower; measured: 100 x 25 took 10-76 s instead of 4 s.
    """
    previous = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if previous:  # set_flush_denormal returns whether the mode is supported
            torch.set_flush_denormal(False)


_SHOW_PROGRESS: contextvars.ContextVar[bool] = contextvars.ContextVar("progress", default=False)


@contextlib.contextmanager
def progress_bars(enabled: bool = True) -> Iterator[None]:
    """Show a progress bar (on a terminal only) over the steps of the optimisers run inside
    the block; ``hpn prototypes`` does, since an optimisation can take minutes. Off by
    default, so library calls print nothing."""
    token = _SHOW_PROGRESS.set(enabled)
    try:
        yield
    finally:
        _SHOW_PROGRESS.reset(token)


def _steps(n: int, what: str) -> Iterator[int]:
    """``range(n)``, with a progress bar inside :func:`progress_bars`."""
    if not _SHOW_PROGRESS.get():
        return iter(range(n))
    return iter(tqdm(range(n), desc=what, unit="step", leave=False, disable=None))


def _random_unit(
    num_classes: int, dims: int, seed: int, device: torch.device | str
) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return normalize(torch.randn(num_classes, dims, generator=gen), dim=1).to(device)


def _worst_pair(p: torch.Tensor) -> float:
    return float(nearest_neighbours(p, k=1)[0].max())


class _NeighbourGraph:
    """Each row's neighbour list as a sparse K x K pattern, with its transpose precomputed.

    The loss over the lists needs cos(p_i, p_j) only on the pattern (a sampled dense-dense
    product, no (K, m, d) gather) and its gradient is (W + W^T) P for the sparse weight
    matrix W: two sparse-dense products. Measured at K = 100,000, d = 100, m = 16: 0.45 s a
    step against 2 s for autograd through a gather.
    """

    def __init__(self, neighbours: torch.Tensor):
        num, m = neighbours.shape
        device = neighbours.device
        cols = neighbours.sort(dim=1).values.flatten()  # CSR wants sorted columns per row
        self.shape = (num, m)
        self.crow = torch.arange(0, num * m + 1, m, device=device)
        self.col = cols
        self.order = torch.argsort(cols, stable=True)
        self.t_crow = torch.zeros(num + 1, dtype=torch.long, device=device)
        self.t_crow[1:] = torch.cumsum(torch.bincount(cols, minlength=num), 0)
        self.t_col = torch.arange(num, device=device).repeat_interleave(m)[self.order]

    def _csr(self, crow, col, values):
        with warnings.catch_warnings():  # torch flags sparse CSR as beta; the pattern is valid
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(crow, col, values, size=(self.shape[0],) * 2)

    def cosines(self, p: torch.Tensor) -> torch.Tensor:
        pattern = self._csr(
            self.crow, self.col, torch.zeros(self.col.numel(), dtype=p.dtype, device=p.device)
        )
        out = torch.sparse.sampled_addmm(pattern, p, p.T.contiguous(), beta=0.0)
        return out.values().view(self.shape)

    def symmetric_product(self, weights: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        w = weights.flatten()
        return (
            self._csr(self.crow, self.col, w) @ p
            + self._csr(self.t_crow, self.t_col, w[self.order]) @ p
        )


def _smooth_max_grad(
    cos: torch.Tensor,
    p: torch.Tensor,
    temperature: float,
    symmetric_product: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[float, torch.Tensor]:
    """Worst cosine in ``cos`` and the tangent gradient of the smooth L_HP at unit rows ``p``.

    With W = row-softmax(t C) over each row's cosines C, the loss
    (1/K) sum_i (1/t) logsumexp_j(t C_ij) has gradient (W + W^T) P / K, which
    ``symmetric_product(W)`` computes; projecting it onto the tangent space of the sphere gives
    the gradient through the row normalisation. ``cos`` is overwritten.
    """
    worst = float(cos.max())
    weights = torch.softmax(cos.mul_(temperature), dim=1)
    grad = symmetric_product(weights).div_(len(p))
    grad -= (grad * p).sum(dim=1, keepdim=True) * p
    return worst, grad


def _dense_smooth_max_grad(p: torch.Tensor, temperature: float) -> tuple[float, torch.Tensor]:
    """:func:`_smooth_max_grad` over all pairs, by hand: two matrix products instead of
    autograd's graph, about twice as fast."""
    cos = p @ p.T
    cos.diagonal().fill_(-math.inf)
    return _smooth_max_grad(cos, p, temperature, lambda w: (w @ p).add_(w.T @ p))


def _neighbour_smooth_max_grad(
    p: torch.Tensor, graph: _NeighbourGraph, temperature: float
) -> tuple[float, torch.Tensor]:
    """:func:`_smooth_max_grad` with each row's maximum over its neighbour list."""
    return _smooth_max_grad(
        graph.cosines(p), p, temperature, lambda w: graph.symmetric_product(w, p)
    )


@_flush_denormals()
def paper_prototypes(
    num_classes: int,
    dims: int,
    seed: int = 0,
    epochs: int = 1000,
    lr: float = 0.1,
    momentum: float = 0.9,
    reset_momentum: bool = False,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, dict]:
    """The paper's prototype optimisation (Mettes et al. 2019, Eq. 3), faithfully.

    Gaussian initialisation normalised to unit rows, then ``epochs`` full-batch steps of SGD
    with momentum on the hard L_HP, renormalising after each step. The final iterate is
    returned, as in the paper.

    Args:
        num_classes: K >= 2.
        dims: d >= 1.
        seed: seeds the initialisation.
        epochs: optimisation steps (the paper: 1000).
        lr: SGD learning rate (the paper: 0.1).
        momentum: SGD momentum (the paper: 0.9).
        reset_momentum: rebuild the optimizer after every step, as the public reference code
            did; this discards the momentum buffer, so the run is plain SGD.
        device: where to run.

    Returns:
        ``(P, info)``: (K, d) float32 unit rows and a dict with the recipe's settings.
    """
    p = _random_unit(num_classes, dims, seed, device).requires_grad_(True)
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum)
    for _ in _steps(epochs, f"paper optimiser, K = {num_classes:,}"):
        loss = separation_loss(p)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            p.copy_(normalize(p, dim=1))
        if reset_momentum:
            opt = torch.optim.SGD([p], lr=lr, momentum=momentum)
    info = {"epochs": epochs, "lr": lr, "momentum": momentum, "reset_momentum": reset_momentum}
    return p.detach().float().cpu(), info


@_flush_denormals()
def optimized_prototypes(
    num_classes: int,
    dims: int,
    seed: int = 0,
    steps: int = 2000,
    lr: float = 0.01,
    temperature: tuple[float, float] = (10.0, 1000.0),
    init: torch.Tensor | None = None,
    neighbours: int | None = None,
    rebuild_every: int = 20,
    time_budget: float | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, dict]:
    """Spread K prototypes by minimising a smooth L_HP with Adam on the sphere.

    Args:
        num_classes: K >= 2.
        dims: d >= 1.
        seed: seeds the Gaussian initialisation (ignored when ``init`` is given).
        steps: Adam steps; the temperature rises geometrically over them and the step size
            decays geometrically to 1% of ``lr``.
        lr: initial Adam step size.
        temperature: (start, end) of the smooth-maximum temperature.
        init: optional (K, d) starting point (e.g. a code), normalised here.
        neighbours: length m of each row's neighbour list. None: dense (all K - 1 others)
            when K <= ``DENSE_MAX``, else 32.
        rebuild_every: steps between blockwise rebuilds of the neighbour lists. Rows move
            fast early on, and stale lists let new close pairs form unseen: at K = 10,000,
            d = 128 (2000 steps) every 20 steps reached 0.174, every 200 steps 0.326.
        time_budget: stop after this many seconds; the temperature and step-size schedules
            then run on elapsed time, so a budget-bound run still anneals to the end.
        device: where to run.

    Returns:
        ``(P, info)``: (K, d) float32 unit rows, and a dict with the steps run, the mode
        (``dense`` or ``neighbours``), the worst-pair cosine reached and the time taken.
    """
    start = time.perf_counter()
    if init is not None:
        if tuple(init.shape) != (num_classes, dims):
            raise ValueError(
                f"init has shape {tuple(init.shape)}, expected ({num_classes}, {dims})"
            )
        p0 = normalize(init.detach().float(), dim=1).to(device)
    else:
        p0 = _random_unit(num_classes, dims, seed, device)
    dense = neighbours is None and num_classes <= DENSE_MAX
    m = min(neighbours or 32, num_classes - 1)
    p = p0.clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=lr)
    t0, t1 = temperature
    best, best_p = math.inf, p0.clone()
    steps_run = 0
    graph: _NeighbourGraph | None = None
    for step in _steps(steps, f"optimiser, K = {num_classes:,}, d = {dims}"):
        frac = step / max(steps - 1, 1)
        if time_budget is not None:  # anneal over the budget when it, not ``steps``, ends the run
            frac = max(frac, (time.perf_counter() - start) / time_budget)
            if frac > 1.0:
                break
        temp = t0 * (t1 / t0) ** frac
        for group in opt.param_groups:
            group["lr"] = lr * 0.01**frac
        with torch.no_grad():
            if not dense and step % rebuild_every == 0:
                nn_cos, nbr = nearest_neighbours(p.detach(), k=m)
                graph = _NeighbourGraph(nbr)
                worst = float(nn_cos[:, 0].max())  # exact: the rebuild saw every pair
                if worst < best:
                    best, best_p = worst, p.detach().clone()
            if dense:
                worst, grad = _dense_smooth_max_grad(p, temp)
                if worst < best:
                    best, best_p = worst, p.detach().clone()
            else:
                assert graph is not None  # built at step 0
                _, grad = _neighbour_smooth_max_grad(p, graph, temp)
            p.grad = grad
        opt.step()
        with torch.no_grad():
            p.copy_(normalize(p, dim=1))
        steps_run = step + 1
    with torch.no_grad():
        q = normalize(p, dim=1)
        worst = _worst_pair(q)
        if worst < best:
            best, best_p = worst, q.clone()
    info = {
        "steps": steps_run,
        "mode": "dense" if dense else "neighbours",
        "neighbours": None if dense else m,
        "lr": lr,
        "temperature": list(temperature),
        "worst_cosine": best,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return best_p.float().cpu(), info


def multistart_prototypes(
    num_classes: int,
    dims: int,
    seed: int = 0,
    starts: int = 8,
    steps: int = 2000,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, dict]:
    """The best of several runs of :func:`optimized_prototypes` from different starts.

    Starts alternate between the schedules in :data:`MULTISTART_SCHEDULES`; their seeds are
    drawn from ``seed``, so the result is deterministic for a seed. Meant for few dimensions,
    where a single run often ends in a local optimum (10 points in R^4: one seed in six ends at
    cos 0.26 instead of the best known 1/6).

    Args:
        num_classes: K >= 2, at most :data:`DENSE_MAX` (dense runs).
        dims: d >= 1.
        seed: seeds the starts.
        starts: number of runs; the one with the smallest worst-pair cosine is returned.
        steps: Adam steps per run.
        device: where to run.

    Returns:
        ``(P, info)``: the best (K, d) float32 unit rows, and a dict with the worst-pair cosine
        of every start, the index of the best, and the time taken.
    """
    if starts < 1:
        raise ValueError(f"starts must be >= 1, got {starts}")
    start_time = time.perf_counter()
    seeds = np.random.SeedSequence(seed).generate_state(starts)
    runs = [
        optimized_prototypes(
            num_classes,
            dims,
            seed=int(start_seed),
            steps=steps,
            device=device,
            **MULTISTART_SCHEDULES[index % len(MULTISTART_SCHEDULES)],
        )
        for index, start_seed in enumerate(seeds)
    ]
    worst = [run_info["worst_cosine"] for _, run_info in runs]
    best = min(range(starts), key=worst.__getitem__)  # the first of equals, as a loop would
    best_p, best_info = runs[best]
    info = {
        **best_info,
        "best_start": best,
        "starts": starts,
        "start_worst_cosines": [round(w, 6) for w in worst],
        "seconds": round(time.perf_counter() - start_time, 3),
    }
    return best_p, info
