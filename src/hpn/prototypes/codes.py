"""Prototype sets from binary error-correcting codes.

A binary codeword c in {0,1}^n maps to the unit vector x = (-1)^c / sqrt(n); two codewords at
Hamming distance D have cosine 1 - 2D/n, so a code of minimum distance D_min gives prototypes
whose worst-pair cosine is at most 1 - 2 D_min / n. Two families, all of length n = 2^m:

* ``bch``: extended primitive narrow-sense BCH codes [2^m, k, >= delta + 1], delta being the
  Bose distance (BCH bound) of the cyclic code of length 2^m - 1. The family runs from the
  even-weight code [n, n - 1, 2] through the first-order Reed-Muller (biorthogonal) code
  [n, m + 1, n / 2] down to the repetition code [n, 1, n].
* ``kerdock``: Gray image of the quaternary Kerdock code, n = 2^(m+1) with m odd: n^2
  codewords at distance >= (n - sqrt(n)) / 2, plus the 2n vectors +-e_i, which have cosine
  +-1/sqrt(n) with every codeword: n^2 + 2n points with worst cosine 1/sqrt(n) (this meets the
  Levenshtein bound, e.g. 4,224 points in 64 dims at cosine 1/8).

The guaranteed cosine comes from the designed (BCH) or proven (Kerdock) distance; the true
minimum distance of a BCH code can be larger.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache, lru_cache

import numpy as np
import torch

# Primitive binary polynomials, bit i = coefficient of x^i (checked in _gf_exp).
_PRIMITIVE_POLYS = {
    2: 0b111,  # x^2 + x + 1
    3: 0b1011,  # x^3 + x + 1
    4: 0b10011,  # x^4 + x + 1
    5: 0b100101,  # x^5 + x^2 + 1
    6: 0b1000011,  # x^6 + x + 1
    7: 0b10001001,  # x^7 + x^3 + 1
    8: 0b100011101,  # x^8 + x^4 + x^3 + x^2 + 1
    9: 0b1000010001,  # x^9 + x^4 + 1
    10: 0b10000001001,  # x^10 + x^3 + 1
    11: 0b100000000101,  # x^11 + x^2 + 1
    12: 0b1000001010011,  # x^12 + x^6 + x^4 + x + 1
}
MAX_LENGTH = 2 ** max(_PRIMITIVE_POLYS)  # 4096


@dataclass(frozen=True)
class CodeSpec:
    """One member of a code family, as a prototype set.

    Attributes:
        family: "bch" or "kerdock".
        length: n, the code length (a power of two); the prototypes live in R^n.
        size: number of points offered: 2^k for BCH, n^2 + 2n for Kerdock + cross-polytope.
        max_cosine: guaranteed worst-pair cosine, 1 - 2 * min_distance / n.
        min_distance: guaranteed minimum Hamming distance between codewords.
        k: BCH dimension over GF(2) (size = 2^k); None for Kerdock.
        designed_distance: Bose distance of the unextended BCH code (min_distance - 1);
            None for Kerdock.
    """

    family: str
    length: int
    size: int
    max_cosine: float
    min_distance: int
    k: int | None = None
    designed_distance: int | None = None

    @property
    def name(self) -> str:
        """A readable label: ``eBCH[n,k,d]`` or ``Kerdock(n)+cross-polytope``.

        Example:
            >>> [spec.name for spec in code_families(16)][1:3]
            ['eBCH[16,5,8]', 'Kerdock(16)+cross-polytope']
        """
        if self.family == "bch":
            return f"eBCH[{self.length},{self.k},{self.min_distance}]"
        return f"Kerdock({self.length})+cross-polytope"


# ----------------------------------------------------------------------------- GF(2^m), BCH


@cache
def _gf_exp(m: int) -> np.ndarray:
    """exp[i] = alpha^i in GF(2^m) (as an m-bit int) for i = 0 .. 2^m - 2."""
    poly, order = _PRIMITIVE_POLYS[m], 2**m - 1
    exp = np.zeros(order, dtype=np.int64)
    x = 1
    for i in range(order):
        if i > 0 and x == 1:
            raise AssertionError(f"polynomial {poly:#b} is not primitive")
        exp[i] = x
        x <<= 1
        if x >> m:
            x ^= poly
    if x != 1:
        raise AssertionError(f"polynomial {poly:#b} is not primitive")
    return exp


def _coset(s: int, m: int) -> list[int]:
    """Cyclotomic coset {s * 2^i mod 2^m - 1}: the exponents of the conjugates of alpha^s."""
    order, out, x = 2**m - 1, [], s
    while x not in out:
        out.append(x)
        x = 2 * x % order
    return out


@cache
def _bch_members(m: int) -> tuple[tuple[int, int], ...]:
    """All distinct narrow-sense BCH codes of length 2^m - 1 as (k, Bose distance), k decreasing.

    The zero set grows coset by coset; the Bose distance delta is the first positive exponent
    not yet a zero (so alpha^1 .. alpha^(delta-1) are zeros and the BCH bound gives d >= delta).
    """
    order = 2**m - 1
    zeros: set[int] = set()
    members = []
    while True:
        delta = next((s for s in range(1, order) if s not in zeros), order)
        members.append((order - len(zeros), delta))
        if delta == order:
            return tuple(members)
        zeros.update(_coset(delta, m))


def _minimal_polynomial(s: int, m: int) -> int:
    """Minimal polynomial of alpha^s over GF(2), prod_{j in coset(s)} (x + alpha^j), as bits."""
    exp = _gf_exp(m)
    log = np.zeros(2**m, dtype=np.int64)
    log[exp] = np.arange(len(exp))
    order = len(exp)

    def mul(a: int, b: int) -> int:
        return 0 if a == 0 or b == 0 else int(exp[(log[a] + log[b]) % order])

    coeffs = [1]  # GF(2^m) coefficients, index = power of x
    for j in _coset(s, m):
        root = int(exp[j])
        shifted = [0, *coeffs]  # x * p(x)
        coeffs = [
            shifted[i] ^ (mul(root, coeffs[i]) if i < len(coeffs) else 0)
            for i in range(len(shifted))
        ]
    if any(c not in (0, 1) for c in coeffs):
        raise AssertionError("minimal polynomial is not binary")
    return sum(c << i for i, c in enumerate(coeffs))


def _clmul(a: int, b: int) -> int:
    """Product of two GF(2)[x] polynomials stored as bit-ints."""
    out = 0
    while b:
        if b & 1:
            out ^= a
        a, b = a << 1, b >> 1
    return out


@lru_cache(maxsize=16)
def _bch_generator(m: int, delta: int) -> np.ndarray:
    """Generator matrix (k, 2^m) uint8 of the extended BCH code with Bose distance ``delta``.

    Rows are x^i g(x), i < k, with g = lcm of the minimal polynomials of alpha^1..alpha^(delta-1),
    followed by an overall parity column.
    """
    order = 2**m - 1
    g, done = 1, set()
    for s in range(1, delta):
        if s not in done:
            done.update(_coset(s, m))
            g = _clmul(g, _minimal_polynomial(s, m))
    deg = g.bit_length() - 1
    k = order - deg
    gbits = np.array([(g >> i) & 1 for i in range(deg + 1)], dtype=np.uint8)
    gen = np.zeros((k, order + 1), dtype=np.uint8)
    for i in range(k):
        gen[i, i : i + deg + 1] = gbits
    gen[:, order] = gen[:, :order].sum(axis=1) % 2
    gen.setflags(write=False)
    return gen


def _encode(messages: np.ndarray, gen: np.ndarray) -> np.ndarray:
    """GF(2) product of packed messages with a generator matrix.

    Args:
        messages: (K, ceil(k/8)) uint8, message bits packed little-endian (bit i of the
            message = bit i % 8 of byte i // 8).
        gen: (k, n) uint8 generator matrix.

    Returns:
        (K, n) uint8 codeword bits.
    """
    n = gen.shape[1]
    rows = np.packbits(gen, axis=1, bitorder="little")  # (k, nbytes), k = message bits
    out = np.zeros((len(messages), rows.shape[1]), dtype=np.uint8)
    table = np.zeros((256, rows.shape[1]), dtype=np.uint8)
    for c in range(messages.shape[1]):
        # table[v] = XOR of the (up to 8) rows whose bits are set in the byte value v
        table[:] = 0
        for b, row in enumerate(rows[8 * c : 8 * c + 8]):
            table[1 << b : 2 << b] = table[: 1 << b] ^ row
        out ^= table[messages[:, c]]
    return np.unpackbits(out, axis=1, count=n, bitorder="little")


# ---------------------------------------------------------------------------- Z4, Kerdock


def _hensel_lift(m: int) -> np.ndarray:
    """Monic basic primitive polynomial h over Z4 lifting the primitive binary f of degree m.

    Graeffe's method: with f = e + o split into even and odd powers, h(x^2) = +-(e^2 - o^2)
    mod 4, the sign making h monic. Returns coefficients h_0..h_m.
    """
    f = np.array([(_PRIMITIVE_POLYS[m] >> i) & 1 for i in range(m + 1)], dtype=np.int64)
    even, odd = f.copy(), f.copy()
    even[1::2] = 0
    odd[0::2] = 0
    square = np.convolve(even, even) - np.convolve(odd, odd)  # only even powers survive
    square *= int(np.sign(square[-1]))
    return square[0::2] % 4


@cache
def _kerdock_traces(m: int) -> np.ndarray:
    """s_j = T(xi^j) = trace(C^j) mod 4 for j < 2^m - 1, C the companion matrix of h."""
    h = _hensel_lift(m)
    comp = np.zeros((m, m), dtype=np.int64)
    comp[np.arange(1, m), np.arange(m - 1)] = 1
    comp[:, m - 1] = -h[:m] % 4
    order = 2**m - 1
    traces = np.zeros(order, dtype=np.int64)
    power = np.eye(m, dtype=np.int64)
    for j in range(order):
        traces[j] = np.trace(power) % 4
        power = power @ comp % 4
    if not np.array_equal(power, np.eye(m, dtype=np.int64)):
        raise AssertionError("Hensel lift is not basic primitive")
    return traces


def _kerdock_bits(m: int, index: np.ndarray) -> np.ndarray:
    """Gray-mapped Kerdock codewords, (len(index), 2^(m+1)) uint8.

    index = eps + 4 * sum_k l_k 4^k, 0 <= index < 4^(m+1). Codeword symbols over Z4: at position
    xi^j (j < 2^m - 1) T(lambda xi^j) + eps = sum_k l_k s_{j+k} + eps, and eps at position 0.
    """
    traces = _kerdock_traces(m)
    order = len(traces)
    shifts = traces[(np.arange(m)[:, None] + np.arange(order)[None, :]) % order]  # (m, order)
    index = np.asarray(index, dtype=np.int64)
    eps = (index % 4).astype(np.float32)
    lam = (index[:, None] // 4 ** np.arange(1, m + 1)) % 4  # (K, m)
    symbols = np.empty((len(index), order + 1), dtype=np.uint8)
    # float32 products are exact here (integers below 10 m + 4)
    symbols[:, :order] = lam.astype(np.float32) @ shifts.astype(np.float32) + eps[:, None]
    symbols[:, order] = eps
    symbols &= 3
    # Gray map 0->00, 1->01, 2->11, 3->10: Lee distance over Z4 becomes Hamming distance.
    bits = np.empty((len(index), 2 * (order + 1)), dtype=np.uint8)
    bits[:, 0::2] = symbols >> 1
    bits[:, 1::2] = (symbols >> 1) ^ (symbols & 1)
    return bits


# ------------------------------------------------------------------------------- public API


@cache
def _families(length: int) -> tuple[CodeSpec, ...]:
    m = length.bit_length() - 1
    specs = [
        CodeSpec("bch", length, 2**k, 1 - 2 * (delta + 1) / length, delta + 1, k, delta)
        for k, delta in _bch_members(m)
    ]
    if m >= 4 and m % 2 == 0:  # Kerdock: n = 2^(m'+1) with m' = m - 1 odd >= 3
        root = 2 ** (m // 2)
        specs.append(
            CodeSpec("kerdock", length, length**2 + 2 * length, 1 / root, (length - root) // 2)
        )
    return tuple(sorted(specs, key=lambda s: (s.max_cosine, -s.size)))


def code_families(length: int) -> list[CodeSpec]:
    """All code family members of one length.

    Args:
        length: n, a power of two >= 4. Lengths above 4096 (no primitive polynomial in the
            table) give an empty list.

    Returns:
        Members sorted by guaranteed max_cosine (then larger size first).

    Raises:
        ValueError: if ``length`` is not a power of two >= 4.
    """
    if length < 4 or length & (length - 1):
        raise ValueError(f"code length must be a power of two >= 4, got {length}")
    if length > MAX_LENGTH:
        return []
    return list(_families(length))


def best_code(num_classes: int, dims: int) -> CodeSpec | None:
    """The member with the smallest guaranteed max_cosine offering at least K points.

    Searches every code length n = 4, 8, ... <= min(dims, 4096). Ties go to the longer code,
    then the larger one.

    Args:
        num_classes: K >= 2.
        dims: d; codes of length n <= d are zero-padded to d.

    Returns:
        The chosen CodeSpec, or None if no code fits (d < 4 or K too large).

    Raises:
        ValueError: if ``num_classes`` < 2.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    candidates = []
    length = 4
    while length <= min(dims, MAX_LENGTH):
        candidates += [s for s in _families(length) if s.size >= num_classes]
        length *= 2
    if not candidates:
        return None
    return min(candidates, key=lambda s: (s.max_cosine, -s.length, -s.size))


def _sample_messages(rng: np.random.Generator, k: int, count: int) -> np.ndarray:
    """``count`` distinct k-bit messages, uniform without replacement, in random order.

    Returns:
        (count, ceil(k/8)) uint8, each message packed little-endian.
    """
    nbytes = (k + 7) // 8
    if k <= 62:
        ints = rng.choice(1 << k, size=count, replace=False).astype("<i8")
        return ints.view(np.uint8).reshape(count, 8)[:, :nbytes]
    # 2^k is too big for integer sampling: draw bit strings and redraw the (rare) repeats.
    out = rng.integers(0, 256, size=(count, nbytes), dtype=np.uint8)
    out[:, -1] &= np.uint8((1 << (k - 8 * (nbytes - 1))) - 1)
    seen: set[bytes] = set()
    for i in range(count):
        while out[i].tobytes() in seen:
            out[i] = rng.integers(0, 256, size=nbytes, dtype=np.uint8)
            out[i, -1] &= np.uint8((1 << (k - 8 * (nbytes - 1))) - 1)
        seen.add(out[i].tobytes())
    return out


def _write_signs(dest: np.ndarray, bits: np.ndarray) -> None:
    """dest[...] = (-1)^bits / sqrt(n) for a float32 (rows, n) view ``dest``."""
    np.multiply(1 - 2 * bits.view(np.int8), np.float32(1 / np.sqrt(bits.shape[1])), out=dest)


_CHUNK_BYTES = 1 << 21  # bits per chunk; small temporaries are reused by malloc, not faulted in


def code_prototypes(
    num_classes: int, dims: int, seed: int = 0, spec: CodeSpec | None = None
) -> tuple[torch.Tensor, dict]:
    """K prototypes taken from a code: distinct points of ``spec`` (default ``best_code``).

    The seed picks which K of the code's points are used (uniform without replacement, never
    materialising the whole code), then a random permutation and sign flip of the n code
    coordinates (an isometry, so all cosines are kept). Rows are zero-padded from n to d.

    Args:
        num_classes: K >= 2.
        dims: d >= 4.
        seed: seed of the numpy Generator; same seed, same prototypes.
        spec: the code to use; must have length <= d and size >= K.

    Returns:
        (K, d) float32 tensor of unit rows, every pairwise cosine <= spec.max_cosine, and a
        JSON-serialisable dict with name, family, length, size, max_cosine, min_distance, k,
        designed_distance, dims, seed.

    Raises:
        ValueError: if K < 2, d < 4, or no code (or not ``spec``) fits K points in d dims.

    Example:
        >>> P, info = code_prototypes(4224, 64)
        >>> info["family"], info["max_cosine"], tuple(P.shape)
        ('kerdock', 0.125, (4224, 64))
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if dims < 4:
        raise ValueError(f"dims must be >= 4 for code prototypes, got {dims}")
    if spec is None:
        spec = best_code(num_classes, dims)
        if spec is None:
            raise ValueError(
                f"num_classes={num_classes} is more than any code in {dims} dims offers"
            )
    elif spec.length > dims or spec.size < num_classes:
        raise ValueError(
            f"{spec.name} (length {spec.length}, {spec.size} points) cannot give "
            f"num_classes={num_classes} in dims={dims}"
        )
    if spec.family not in ("bch", "kerdock"):
        raise ValueError(f"unknown code family {spec.family!r}")
    n, count, m = spec.length, num_classes, spec.length.bit_length() - 1
    rng = np.random.default_rng(seed)
    if spec.family == "bch":
        assert spec.k is not None  # every BCH spec has its dimension
        picked = _sample_messages(rng, spec.k, count)
    else:
        picked = rng.choice(spec.size, size=count, replace=False)
    perm = rng.permutation(n)
    flip = rng.integers(0, 2, size=n, dtype=np.uint8)

    out = np.zeros((count, dims), dtype=np.float32)
    gen = _bch_generator(m, spec.designed_distance)[:, perm] if spec.family == "bch" else None
    chunk = max(256, _CHUNK_BYTES // n)
    for start in range(0, count, chunk):
        part = picked[start : start + chunk]
        if gen is not None:
            bits = _encode(part, gen)
        else:  # Kerdock codewords; rows of basis points are overwritten below
            bits = np.zeros((len(part), n), dtype=np.uint8)
            word = part < n * n
            bits[word] = _kerdock_bits(m - 1, part[word])[:, perm]
        _write_signs(out[start : start + len(part), :n], bits ^ flip)
    if gen is None:
        # point n^2 + 2i + b is (-1)^b e_i; column j of the result is old column perm[j]
        rows = np.flatnonzero(picked >= n * n)
        basis = picked[rows] - n * n
        column = np.argsort(perm)[basis // 2]
        out[rows, :n] = 0.0
        out[rows, column] = (1 - 2 * (basis % 2)) * (1 - 2 * flip[column].astype(np.int64))
    info = {"name": spec.name, **asdict(spec), "dims": dims, "seed": seed}
    return torch.from_numpy(out), info
