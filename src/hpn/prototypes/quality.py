"""How well a prototype set is separated, measured blockwise (never a K x K matrix).

:func:`report` gives the worst pair (largest cosine between two prototypes), the mean
nearest-neighbour cosine, the best value geometry allows for (K, d) and the gap between them.
Cosines are computed tile by tile into one reused buffer, so a million prototypes can be
reported on a laptop. The exact pass costs O(K^2 d) (minutes at K = 10^6, d = 64); above
:data:`EXACT_MAX` classes the report estimates the two nearest-neighbour figures from the
exact nearest neighbours of :data:`SAMPLE_ROWS` sampled rows, O(SAMPLE_ROWS K d), and says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from hpn.prototypes.bounds import best_possible_cosine

#: Rows and columns of one tile of cosines (1024 x 16384 floats = 64 MiB). The tile buffer is
#: reused: allocating a fresh K-wide block every time costs more than the matmul on small VMs.
ROW_TILE = 1024
COL_TILE = 16384
#: Largest K that :func:`report` measures exactly by default; above it, it estimates.
EXACT_MAX = 200_000
#: Rows whose exact nearest neighbour (among all K) an estimate searches.
SAMPLE_ROWS = 4096

#: ``progress(rows_done, rows_total)``, called after each tile of rows.
Progress = Callable[[int, int], None]


def sample_rows(num: int, size: int = SAMPLE_ROWS, seed: int = 0) -> torch.Tensor:
    """The rows an estimate searches: ``min(size, num)`` distinct indices of [0, num), drawn
    uniformly (fixed by ``seed``) and sorted, as an int64 tensor.

    Example:
        >>> len(sample_rows(10, size=4)), sample_rows(3, size=10).tolist()
        (4, [0, 1, 2])
    """
    if size < 1:
        raise ValueError(f"the sample needs at least 1 row, got {size}")
    perm = torch.randperm(num, generator=torch.Generator().manual_seed(seed))
    return perm[:size].sort().values


@torch.no_grad()
def nearest_neighbours(
    prototypes: torch.Tensor,
    k: int = 1,
    row_tile: int = ROW_TILE,
    col_tile: int = COL_TILE,
    rows: torch.Tensor | None = None,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest cosines of every row (or of the given ``rows``) to the *other* rows.

    Computed tile by tile; memory is O(M k + row_tile * col_tile) whatever K is.

    Args:
        prototypes: (K, d) tensor of unit rows (cosine = dot product; not renormalised here).
        k: neighbours per row, 1 <= k <= K - 1.
        row_tile: rows per tile.
        col_tile: columns per tile.
        rows: optional (M,) indices of the rows to search for (each against all K rows);
            default all K, M = K.
        progress: optional ``progress(rows_done, M)``, called after each tile of rows.

    Returns:
        ``(values, indices)``, each (M, k), sorted by decreasing cosine.

    Example:
        >>> vals, idx = nearest_neighbours(torch.eye(3)[[0, 1, 0]] * 1.0, k=1)
        >>> vals.flatten().tolist(), idx.flatten().tolist()
        ([1.0, 0.0, 1.0], [2, 0, 0])
    """
    num, p = len(prototypes), prototypes
    if not 1 <= k <= num - 1:
        raise ValueError(f"k must be in [1, {num - 1}] for {num} prototypes, got {k}")
    rows = torch.arange(num, device=p.device) if rows is None else rows.to(p.device)
    m = len(rows)
    row_tile, col_tile = max(1, min(row_tile, m)), min(col_tile, num)
    buf = torch.empty(row_tile, col_tile, dtype=p.dtype, device=p.device)
    values = torch.empty(m, k, dtype=p.dtype, device=p.device)
    indices = torch.empty(m, k, dtype=torch.long, device=p.device)
    for r0 in range(0, m, row_tile):
        r1 = min(r0 + row_tile, m)
        values[r0:r1], indices[r0:r1] = _nearest_of(p, rows[r0:r1], k, buf, col_tile)
        if progress is not None:
            progress(r1, m)
    return values, indices


def _nearest_of(
    p: torch.Tensor, own: torch.Tensor, k: int, buf: torch.Tensor, col_tile: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest other rows of p to the rows ``own`` (one tile of rows), over column
    tiles of ``buf``; each query's own column is masked."""
    queries, num, at = p[own], len(p), torch.arange(len(own), device=p.device)
    best: tuple[torch.Tensor, torch.Tensor] | None = None  # (values, indices) so far
    for c0 in range(0, num, col_tile):
        c1 = min(c0 + col_tile, num)
        tile = buf[: len(own), : c1 - c0]
        torch.matmul(queries, p[c0:c1].T, out=tile)
        inside = (own >= c0) & (own < c1)  # queries whose own column is in this tile
        tile[at[inside], own[inside] - c0] = -math.inf
        kk = min(k, c1 - c0)
        v, i = tile.max(dim=1, keepdim=True) if kk == 1 else tile.topk(kk, dim=1)
        i = i + c0
        if best is None:
            best = v, i
        elif k == 1:
            better = v > best[0]
            best = torch.where(better, v, best[0]), torch.where(better, i, best[1])
        else:
            best_v, pos = torch.cat([best[0], v], 1).topk(k, dim=1)
            best = best_v, torch.cat([best[1], i], 1).gather(1, pos)
    if best is None:
        raise ValueError("no rows to compare with")
    return best


@dataclass(frozen=True)
class Report:
    """Separation of a prototype set.

    Attributes:
        num_classes: K.
        dims: d.
        worst_cosine: largest cosine between two distinct prototypes (smaller is better).
        worst_pair: the indices (i, j) of that pair.
        min_angle_degrees: the angle of the worst pair.
        mean_nn_cosine: mean over prototypes of the cosine to the nearest other prototype.
        bound: best possible worst-pair cosine for (K, d).
        bound_exact: True if ``bound`` is the known optimum, False if it is the Levenshtein
            bound (the true optimum may lie above it).
        gap: ``worst_cosine - bound`` (0 means provably optimal).
        max_norm_error: largest | ||p_i|| - 1 |.
        estimated: True if the nearest-neighbour figures come from a sample of rows (each
            searched exactly against all K). Then ``worst_cosine`` is the worst over the
            sampled rows' neighbours, a lower bound on the true worst (so ``gap`` is a lower
            bound and ``min_angle_degrees`` an upper bound), and ``mean_nn_cosine`` is the
            sample mean, an unbiased estimate. ``bound`` and ``max_norm_error`` stay exact.
        sampled_rows: the sample's size when ``estimated``, else None.
    """

    num_classes: int
    dims: int
    worst_cosine: float
    worst_pair: tuple[int, int]
    min_angle_degrees: float
    mean_nn_cosine: float
    bound: float
    bound_exact: bool
    gap: float
    max_norm_error: float
    estimated: bool = False
    sampled_rows: int | None = None

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (``worst_pair`` as a list); see :meth:`from_dict`.

        Example:
            >>> r = report(torch.cat([torch.eye(2), -torch.eye(2)]))
            >>> d = r.to_dict()
            >>> d["num_classes"], d["worst_pair"], Report.from_dict(d) == r
            (4, [0, 1], True)
        """
        out = asdict(self)
        out["worst_pair"] = list(self.worst_pair)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        """Inverse of :meth:`to_dict` (a dict saved before ``estimated`` existed is exact)."""
        return cls(**{**data, "worst_pair": tuple(data["worst_pair"])})

    def to_json(self) -> str:
        """:meth:`to_dict` as a one-line JSON string.

        Example:
            >>> r = report(torch.cat([torch.eye(2), -torch.eye(2)]))
            >>> Report.from_dict(json.loads(r.to_json())) == r
            True
        """
        return json.dumps(self.to_dict())

    def __str__(self) -> str:
        kind = "exact optimum" if self.bound_exact else "Levenshtein bound"
        notes = ("", "", "")
        if self.estimated:
            sample = f"estimate from {self.sampled_rows} sampled rows"
            notes = (
                f"; {sample}: the true worst is at least this",
                f"  ({sample})",
                "  (lower bound)",
            )
        return "\n".join(
            [
                f"prototypes       K={self.num_classes}  d={self.dims}",
                f"worst pair       cos {self.worst_cosine:+.6f}  "
                f"({self.min_angle_degrees:.3f} deg, rows {self.worst_pair[0]} and "
                f"{self.worst_pair[1]}{notes[0]})",
                f"mean nearest     cos {self.mean_nn_cosine:+.6f}{notes[1]}",
                f"best possible    cos {self.bound:+.6f}  ({kind})",
                f"gap              {self.gap:+.6f}{notes[2]}",
                f"max |norm - 1|   {self.max_norm_error:.2e}",
            ]
        )


@torch.no_grad()
def report(
    prototypes: torch.Tensor,
    row_tile: int = ROW_TILE,
    col_tile: int = COL_TILE,
    exact: bool | None = None,
    sample_size: int = SAMPLE_ROWS,
    seed: int = 0,
    progress: Progress | None = None,
) -> Report:
    """Measure a prototype set against the geometric limit.

    Exact mode searches every row's nearest neighbour, O(K^2 d). Estimate mode searches
    those of ``sample_size`` rows drawn uniformly (:func:`sample_rows`), each exactly against
    all K rows, O(sample_size K d): at K = 10^6, d = 64 seconds instead of minutes. The
    report then says so (``estimated``, ``sampled_rows``); its worst cosine is a lower bound
    on the true worst, its mean nearest cosine an unbiased estimate (see :class:`Report`).

    Args:
        prototypes: (K, d) tensor (or array) of prototypes; cosines are taken after
            normalising the rows, and the norm error is reported separately.
        row_tile: rows per tile of cosines.
        col_tile: columns per tile of cosines.
        exact: True: exact; False: estimate; None: exact up to K = :data:`EXACT_MAX`.
            An estimate with ``sample_size >= K`` searches every row and is exact.
        sample_size: rows an estimate searches (default :data:`SAMPLE_ROWS`).
        seed: seed of the sample.
        progress: optional ``progress(rows_done, rows_total)`` after each tile of rows
            (rows_total is K when exact, the sample size when estimating).

    Returns:
        A :class:`Report`.

    Example:
        >>> r = report(torch.cat([torch.eye(3), -torch.eye(3)]))  # cross-polytope, optimal
        >>> r.worst_cosine, r.bound, r.bound_exact, r.gap
        (0.0, 0.0, True, 0.0)
    """
    p, norms = _rows_and_norms(prototypes)
    rows = _rows_to_search(len(p), exact, sample_size, seed)
    nn_cos, nn_idx = nearest_neighbours(p / norms[:, None], 1, row_tile, col_tile, rows, progress)
    nn_cos, nn_idx = nn_cos[:, 0], nn_idx[:, 0]
    at = int(nn_cos.argmax())
    i, j = (at if rows is None else int(rows[at])), int(nn_idx[at])
    worst = float(nn_cos[at].clamp(-1.0, 1.0))
    bound, bound_exact = best_possible_cosine(len(p), p.shape[1])
    return Report(
        num_classes=len(p),
        dims=p.shape[1],
        worst_cosine=worst,
        worst_pair=(min(i, j), max(i, j)),
        min_angle_degrees=math.degrees(math.acos(worst)),
        mean_nn_cosine=float(nn_cos.double().mean()),
        bound=bound,
        bound_exact=bound_exact,
        gap=worst - bound,
        max_norm_error=float((norms.double() - 1).abs().max()),
        estimated=rows is not None,
        sampled_rows=None if rows is None else len(rows),
    )


def _rows_and_norms(prototypes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, d) float rows and their (K,) norms; refuses other shapes, NaN, inf, zero rows."""
    p = torch.as_tensor(prototypes)
    if p.ndim != 2 or len(p) < 2:
        raise ValueError(
            f"prototypes must be a (K, d) matrix with K >= 2, got shape {tuple(p.shape)}"
        )
    if not torch.isfinite(p).all():
        raise ValueError("prototypes contain NaN or inf")
    p = p.float() if p.dtype not in (torch.float32, torch.float64) else p
    norms = p.norm(dim=1)
    if (norms == 0).any():
        raise ValueError(f"prototype row {int((norms == 0).nonzero()[0])} is all zeros")
    return p, norms


def _rows_to_search(num: int, exact: bool | None, size: int, seed: int) -> torch.Tensor | None:
    """The sampled rows of an estimate, or None to search all ``num`` rows (exact)."""
    estimate = num > EXACT_MAX if exact is None else not exact
    rows = sample_rows(num, size, seed) if estimate else None
    return None if rows is None or len(rows) == num else rows  # a sample of every row is exact
