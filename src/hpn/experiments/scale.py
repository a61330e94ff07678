"""``hpn bench scale``: training-step time and peak memory of the HPN heads and their peers
vs softmax, by K."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO, TypeVar, cast

import torch

from hpn.baselines import SoftmaxClassifier
from hpn.experiments.table import print_columns, print_header, print_row
from hpn.functional import nearest_prototype, unit
from hpn.heads import PrototypeClassifier
from hpn.learned import LearnedCentresClassifier
from hpn.losses import LOSSES, PrototypeLoss, loss_entry
from hpn.registry import HEADS

_T = TypeVar("_T")


def _peak_rss_mib() -> float:
    """This process's peak resident memory in MiB.

    On Linux it is read from ``VmHWM`` in ``/proc/self/status``, which covers this program
    only: ``ru_maxrss`` also keeps the peak of the process image before ``exec``, so a worker
    spawned from a large parent (a test session of several hundred MiB) would report the
    parent's size and every difference would read 0.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource  # Unix only: the fallback where /proc is missing

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def hpn_losses() -> list[str]:
    """The losses ``hpn bench scale --losses`` can time on a prototype head."""
    return [name for name, entry in LOSSES.items() if "prototype" in entry.heads]


def peer_heads() -> list[str]:
    """The heads with learned class centres ``hpn bench scale --peers`` can time."""
    return [
        name
        for name, entry in HEADS.items()
        if entry.classifier is not None and issubclass(entry.classifier, LearnedCentresClassifier)
    ]


def _scale_case(
    kind: str, k: int, d: int, features: int, batch: int, steps: int, device: str, optimizer: str
) -> tuple[float, float]:
    """One head's training steps in a fresh process: (seconds per step, peak MiB added).

    ``kind``: ``softmax`` (a K-way linear layer), ``hpn-LOSS`` with LOSS in
    :func:`hpn_losses` (a d-dim projection against K fixed prototypes) or ``peer-HEAD`` with
    HEAD in :func:`peer_heads` (a d-dim projection against K learned centres).
    """
    torch.manual_seed(0)
    cuda = device.startswith("cuda")
    base_rss = _peak_rss_mib()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        base_gpu = torch.cuda.memory_allocated(device)
    head: PrototypeClassifier | SoftmaxClassifier | LearnedCentresClassifier
    if kind.startswith("hpn-"):
        # random unit rows stand in for the prototypes: the cost does not depend on where
        # they are, only on K and d (building 1M good ones is hpn bench prototypes' job)
        loss = kind.removeprefix("hpn-")
        head = PrototypeClassifier(torch.randn(k, d), in_features=features, loss=loss)
        head = head.to(device)
    elif kind.startswith("peer-"):
        cls = cast(type[LearnedCentresClassifier], HEADS[kind.removeprefix("peer-")].classifier)
        head = cls(features, k, d).to(device)
    else:
        head = SoftmaxClassifier(features, k).to(device)
    opt: torch.optim.Optimizer
    if optimizer == "adam":
        opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    else:
        opt = torch.optim.SGD(head.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, features, device=device)
    y = torch.randint(0, k, (batch,), device=device)

    def step() -> None:
        loss = head.loss(x, y, "mean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up: allocations, momentum buffers
        step()
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    if cuda:
        peak = (torch.cuda.max_memory_allocated(device) - base_gpu) / 2**20
    else:
        peak = _peak_rss_mib() - base_rss
    return seconds, peak


def _in_fresh_process(fn: Callable[..., _T], *args: Any) -> _T:
    """Run ``fn(*args)`` in a spawned process, so its peak memory is its own."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def _predict_case(k: int, d: int, queries: int, chunk: int, device: str) -> float:
    """Nearest-prototype queries per second against K prototypes (chunked matmul)."""
    torch.manual_seed(0)
    protos = unit(torch.randn(k, d, device=device))
    z = torch.randn(queries, d, device=device)
    nearest_prototype(z[:8], protos, chunk)  # warm-up
    start = time.perf_counter()
    nearest_prototype(z, protos, chunk)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return queries / (time.perf_counter() - start)


def scale_benchmark(
    classes: Iterable[int] = (1_000, 10_000, 100_000, 1_000_000),
    dims: int = 128,
    features: int = 300,
    batch: int = 256,
    steps: int = 10,
    queries: int = 4096,
    chunk: int = 16_384,
    device: str = "cpu",
    losses: Iterable[str] = (PrototypeLoss.kind,),
    optimizer: str = "sgd",
    peers: Iterable[str] = ("cosine", "sampled"),
    out: TextIO | None = None,
) -> list[dict]:
    """Training-step time and peak memory of the HPN head and its peers vs softmax, by K.

    Every head reads the same (batch, features) penultimate activations. HPN maps them to d
    dims and takes its loss (``losses``, names of :func:`hpn_losses`: the squared cosine
    against the target prototype only, the cosine softmax over all K prototypes, or the
    neighbour softmax over the target's nearest and 256 random prototypes); the ``peers``
    (:func:`peer_heads`) map them to d dims too, against K learned centres (the cosine
    classifier over all K, the sampled softmax over the batch's classes and 288 others);
    softmax maps them to K logits. Each (head, K) runs in its own process: time per step (forward, backward, optimizer update: ``sgd`` with momentum or
    ``adam``, after 2 warm-up steps) and the peak memory that process added (resident set on
    CPU, allocated memory on CUDA). Then nearest-prototype prediction throughput at the
    largest K.
    """
    classes, peers = list(classes), list(peers)
    try:
        losses = [loss_entry(name, "hpn bench scale loss").name for name in losses]
    except ValueError:
        losses = list(losses)
    bad = [name for name in losses if name not in hpn_losses()]
    bad += [name for name in peers if name not in peer_heads()]
    if bad or not losses + peers:
        raise ValueError(
            f"losses must be among {hpn_losses()} and peers among {peer_heads()}, got "
            f"{losses} and {peers}"
        )
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be sgd or adam, got {optimizer!r}")
    print_header(
        f"hpn bench scale: d = {dims}, {features} penultimate units, batch {batch}, "
        f"{steps} timed steps, {optimizer}, {device}",
        out,
    )
    print_columns(
        [
            "K", "HPN loss / peer", "HPN step", "softmax step", "step ratio HPN/softmax",
            "HPN peak MiB", "softmax peak MiB", "memory ratio",
        ],
        out,
    )  # fmt: skip
    rows = []
    for k in classes:
        soft_s, soft_mem = _in_fresh_process(
            _scale_case, "softmax", k, dims, features, batch, steps, device, optimizer
        )
        for loss in [*losses, *peers]:
            case = f"hpn-{loss}" if loss in losses else f"peer-{loss}"
            hpn_s, hpn_mem = _in_fresh_process(
                _scale_case, case, k, dims, features, batch, steps, device, optimizer
            )
            rows.append(
                {
                    "K": k,
                    "loss": loss,
                    "hpn_s": hpn_s,
                    "softmax_s": soft_s,
                    "hpn_mib": hpn_mem,
                    "softmax_mib": soft_mem,
                }
            )
            print_row(
                [
                    f"{k:,}", loss, f"{hpn_s * 1e3:.2f} ms", f"{soft_s * 1e3:.1f} ms",
                    f"{hpn_s / soft_s:.4f}", f"{hpn_mem:.0f}", f"{soft_mem:.0f}",
                    f"{hpn_mem / max(soft_mem, 1e-9):.3f}",
                ],
                out,
            )  # fmt: skip
    k = max(classes)
    rate = _in_fresh_process(_predict_case, k, dims, queries, chunk, device)
    print(
        f"\nNearest-prototype prediction, K = {k:,}, d = {dims}: {rate:,.0f} queries/s "
        f"({queries} queries, chunks of {chunk:,} prototypes, exact).",
        file=out,
    )
    rows.append({"K": k, "predict_queries_per_s": rate})
    return rows
