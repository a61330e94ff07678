"""How well a prototype set is separated, measured blockwise (never a K x K matrix).

:func:`report` gives the worst pair (largest cosine between two prototypes), the mean
nearest-neighbour cosine, the best value geometry allows for (K, d) and the gap between them.
Cosines are computed tile by tile into one reused buffer, so a million prototypes can be
reported on a laptop.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch

from hpn.prototypes.bounds import best_possible_cosine

#: Rows and columns of one tile of cosines (1024 x 16384 floats = 64 MiB). The tile buffer is
#: reused: allocating a fresh K-wide block every time costs more than the matmul on small VMs.
ROW_TILE = 1024
COL_TILE = 16384


@torch.no_grad()
def nearest_neighbours(
    prototypes: torch.Tensor, k: int = 1, row_tile: int = ROW_TILE, col_tile: int = COL_TILE
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest cosines of every row to the *other* rows, tile by tile.

    Memory is O(K k + row_tile * col_tile) whatever K is.

    Args:
        prototypes: (K, d) tensor of unit rows (cosine = dot product; not renormalised here).
        k: neighbours per row, 1 <= k <= K - 1.
        row_tile: rows per tile.
        col_tile: columns per tile.

    Returns:
        ``(values, indices)``, each (K, k), sorted by decreasing cosine.

    Example:
        >>> vals, idx = nearest_neighbours(torch.eye(3)[[0, 1, 0]] * 1.0, k=1)
        >>> vals.flatten().tolist(), idx.flatten().tolist()
        ([1.0, 0.0, 1.0], [2, 0, 0])
    """
    num = len(prototypes)
    if not 1 <= k <= num - 1:
        raise ValueError(f"k must be in [1, {num - 1}] for {num} prototypes, got {k}")
    p = prototypes
    row_tile, col_tile = min(row_tile, num), min(col_tile, num)
    buf = torch.empty(row_tile, col_tile, dtype=p.dtype, device=p.device)
    values = torch.empty(num, k, dtype=p.dtype, device=p.device)
    indices = torch.empty(num, k, dtype=torch.long, device=p.device)
    for r0 in range(0, num, row_tile):
        r1 = min(r0 + row_tile, num)
        best_v = best_i = None
        for c0 in range(0, num, col_tile):
            c1 = min(c0 + col_tile, num)
            tile = buf[: r1 - r0, : c1 - c0]
            torch.matmul(p[r0:r1], p[c0:c1].T, out=tile)
            lo, hi = max(r0, c0), min(r1, c1)
            if lo < hi:  # this tile holds part of the diagonal
                diag = torch.arange(lo, hi, device=p.device)
                tile[diag - r0, diag - c0] = -math.inf
            kk = min(k, c1 - c0)
            v, i = tile.max(dim=1, keepdim=True) if kk == 1 else tile.topk(kk, dim=1)
            i = i + c0
            if best_v is None:
                best_v, best_i = v, i
            elif k == 1:
                better = v > best_v
                best_v, best_i = torch.where(better, v, best_v), torch.where(better, i, best_i)
            else:
                best_v, pos = torch.cat([best_v, v], 1).topk(k, dim=1)
                best_i = torch.cat([best_i, i], 1).gather(1, pos)
        values[r0:r1], indices[r0:r1] = best_v, best_i
    return values, indices


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

    def to_dict(self) -> dict:
        out = asdict(self)
        out["worst_pair"] = list(self.worst_pair)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def __str__(self) -> str:
        kind = "exact optimum" if self.bound_exact else "Levenshtein bound"
        return "\n".join(
            [
                f"prototypes       K={self.num_classes}  d={self.dims}",
                f"worst pair       cos {self.worst_cosine:+.6f}  "
                f"({self.min_angle_degrees:.3f} deg, rows {self.worst_pair[0]} and "
                f"{self.worst_pair[1]})",
                f"mean nearest     cos {self.mean_nn_cosine:+.6f}",
                f"best possible    cos {self.bound:+.6f}  ({kind})",
                f"gap              {self.gap:+.6f}",
                f"max |norm - 1|   {self.max_norm_error:.2e}",
            ]
        )


@torch.no_grad()
def report(prototypes: torch.Tensor, row_tile: int = ROW_TILE, col_tile: int = COL_TILE) -> Report:
    """Measure a prototype set against the geometric limit.

    Args:
        prototypes: (K, d) tensor (or array) of prototypes; cosines are taken after
            normalising the rows, and the norm error is reported separately.
        row_tile: rows per tile of cosines.
        col_tile: columns per tile of cosines.

    Returns:
        A :class:`Report`.

    Example:
        >>> r = report(torch.cat([torch.eye(3), -torch.eye(3)]))  # cross-polytope, optimal
        >>> r.worst_cosine, r.bound, r.bound_exact, r.gap
        (0.0, 0.0, True, 0.0)
    """
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
    unit = p / norms[:, None]
    nn_cos, nn_idx = nearest_neighbours(unit, k=1, row_tile=row_tile, col_tile=col_tile)
    nn_cos, nn_idx = nn_cos[:, 0], nn_idx[:, 0]
    i = int(nn_cos.argmax())
    worst = float(nn_cos[i].clamp(-1.0, 1.0))
    bound, exact = best_possible_cosine(len(p), p.shape[1])
    return Report(
        num_classes=len(p),
        dims=p.shape[1],
        worst_cosine=worst,
        worst_pair=(min(i, int(nn_idx[i])), max(i, int(nn_idx[i]))),
        min_angle_degrees=math.degrees(math.acos(worst)),
        mean_nn_cosine=float(nn_cos.double().mean()),
        bound=bound,
        bound_exact=exact,
        gap=worst - bound,
        max_norm_error=float((norms.double() - 1).abs().max()),
    )
