"""Factored plans for complex DFTs of any length: mixed-radix Cooley-Tukey stages and Bluestein's chirp-z.

A dense DFT of length n holds 4n^2 real weights (3.8 GiB at n = 16000). A plan instead writes
n = r_1 * r_2 * ... * r_s and runs s stages; stage i is a small dense DFT of length r_i (a batched matmul
with a (2 r_i, 2 r_i) real matrix) followed by a twiddle multiply, so weights grow like
sum(4 r_i^2) + ~2n and work like n * sum(r_i). Lengths with a prime factor above ``MAX_RADIX`` go through
Bluestein's algorithm: a linear convolution with a chirp, done by two FFTs of a smooth length M >= 2n - 1.

Everything here is float64 numpy (or the ``ns`` array namespace of ``dft.py``, so ``on_the_fly`` mode can
rebuild the same constants in-graph). Phase indices are integers reduced mod N before the angle is formed.

Stage conventions (decimation in time, sign s = -1 forward / +1 inverse, W_N = exp(s 2 pi i / N)):
* Input index j = j_1 Q_1 + q (j_1 < r_1 the slowest digit, Q_1 = n / r_1), output k = k_1 + r_1 k_2 + ...
* Stage i works on data laid out (batch, P, [c, j_i], Q) with P = r_1...r_{i-1}, Q = N_i / r_i,
  N_i = r_i...r_s: ``stage_matrix`` (rows (c_out, k_i), cols (c_in, j_i)) left-multiplies, then
  ``twiddle`` multiplies by W_{N_i}^(k_i q) (shape (2, r_i, Q): cos, signed sin). The last stage (Q = 1)
  right-multiplies (batch P, [c, j_s]) rows, so its matrix is stored transposed.
* A stage of more than ACCURATE_RADIX points (a prime) is symmetric: ``symmetric_stage_matrix`` works on pair
  sums and differences of j and r - j, and its rows are combined into bins k and r - k after it.
* After the last stage the digit axes (k_1, ..., k_s) are reversed to give k.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from ..errors import SpecRewriteError

# ------------------------------------------------------------------------------------------ limits
# A stage is a matmul whose every output sums float32 products in one accumulator; its rounding error grows like
# the square root of the number of products, while torch's own FFT (radix-4 butterflies) grows like sqrt(log n).
# Stages of at most ACCURATE_RADIX points are plain dense DFTs (2r products per output: radix 8 gave 1.1-1.2x
# torch.fft's float32 rms error against float64, radix 16 1.3x, 64 2.3x). A prime factor cannot be split, so a
# larger prime stage is *symmetric* (``symmetric``): inputs j and r - j are added and subtracted before the
# matmul, and the matmul forms the cosine and sine halves of bins k and r - k as separate rows that one add /
# subtract combines after it, so each output sums about r / 2 products, as pocketfft's generic pass does. Dense
# 43: 1.84x plain, 1.07x symmetric; 645 = 3 x 5 x 43: 1.05x (Bluestein over M = 1296: 1.67x); 61: 0.64x;
# 127: 0.77x; 211: 0.95x; 431: 1.03x (2026-12-04). Up to MAX_RADIX a prime is one symmetric stage; above it,
# Bluestein (0.9x) keeps the constants small.
ACCURATE_RADIX = 8
MAX_RADIX = 127               # largest prime stage inside a factored plan; a larger prime factor: Bluestein
MAX_N = 2 ** 22               # longest transform a module will plan (4,194,304 points)
MAX_WEIGHT_BYTES = 64 * 2 ** 20   # constants of one transform (in the module's dtype)
MAX_INTERMEDIATE = 2 ** 24    # floats per batch row of the largest intermediate (64 MiB in float32)

# ------------------------------------------------------------------------------------------ cost model
# In multiply-adds per complex point, fitted to CPU timings of batched float32 transforms: a stage of radix r
# costs 4r (a (2r x 2r) real matmul per point) plus a floor for small matmuls, the twiddle multiply and re/im
# restack cost about as much as a radix-40 matmul (memory passes), and every stage has a fixed cost per call.
_MATMUL_FLOOR = 64.0
_TWIDDLE_COST = 150.0
_STAGE_COST = 20000.0
_BLUESTEIN_COST = 400.0       # per point of M: the pad and the chirp / filter multiplies
_SYMMETRIC_COST = 250.0       # per point of a symmetric stage: the pair sums before and the combine after
_SMOOTH_PRIMES = (2, 3, 5, 7)
_BLUESTEIN_CANDIDATES = 16


@dataclasses.dataclass(frozen=True)
class FFTPlan:
    """A complex DFT of length ``n``.

    ``radices``: the Cooley-Tukey stages (one stage = a dense DFT) of the transform itself, or, when ``m`` is
    set, of Bluestein's length-``m`` convolution FFT.
    """

    n: int
    radices: tuple
    m: int = 0

    @property
    def bluestein(self) -> bool:
        return self.m > 0

    @property
    def length(self) -> int:
        """Length of the Cooley-Tukey transform the stages compute (n, or M for Bluestein)."""
        return self.m or self.n

    def describe(self) -> str:
        st = "x".join(str(r) for r in self.radices)
        if self.bluestein:
            return f"bluestein(M={self.m}: {st})"
        if len(self.radices) == 1:
            return f"symmetric {st}" if symmetric(self.radices[0]) else "dense"
        return f"stages {st}"


# ------------------------------------------------------------------------------------------ planning
def prime_factors(n: int) -> list:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def _is_prime(d: int) -> bool:
    return d > 1 and prime_factors(d) == [d]


@functools.lru_cache(maxsize=None)
def _best_split(m: int, n: int):
    """Cheapest (cost per point, radices) for the remaining length m of a length-n transform; None if some
    factor of m is too large for a stage."""
    if m == 1:
        return 0.0, ()
    best = None
    cands = [d for d in range(2, min(m, MAX_RADIX) + 1) if m % d == 0 and (d <= ACCURATE_RADIX or _is_prime(d))]
    for d in cands:
        sub = _best_split(m // d, n)
        if sub is None:
            continue
        cost = 4.0 * d + _MATMUL_FLOOR + (_TWIDDLE_COST if d < m else 0.0) + _STAGE_COST / n + sub[0]
        cost += _SYMMETRIC_COST if symmetric(d) else 0.0
        if best is None or cost < best[0]:
            best = (cost, (d,) + sub[1])
    return best


def symmetric(r: int) -> bool:
    """Whether a stage of r points is computed in the symmetric form (see ``symmetric_stage_matrix``)."""
    return r > ACCURATE_RADIX


def ct_radices(n: int):
    """(cost per point, radices smallest first) of the cheapest Cooley-Tukey plan of n, or None.

    Smallest first: the first stage's matrix multiplies every row from the left (a broadcast matmul), the last
    one is a plain (rows, 2r) x (2r, 2r) product; putting the big stage last was 10-60% faster on CPU (645 as
    3 x 5 x 43: 1.8 against 3.3 ms; 2048 as 4 x 8 x 8 x 8: 5.1 against 5.6 ms)."""
    r = _best_split(n, n)
    if r is None:
        return None
    return r[0], tuple(sorted(r[1]))


def _smooth_at_least(lo: int, count: int) -> list:
    """The ``count`` smallest numbers >= lo whose prime factors are all in _SMOOTH_PRIMES."""
    hi = 2 * lo + 16
    vals = [1]
    for p in _SMOOTH_PRIMES:
        grown = []
        for v in vals:
            while v <= hi:
                grown.append(v)
                v *= p
        vals = grown
    return sorted(v for v in vals if v >= lo)[:count]


@functools.lru_cache(maxsize=None)
def bluestein_length(n: int):
    """(total cost, M, radices) of the cheapest smooth convolution length M >= 2n - 1."""
    best = None
    for m in _smooth_at_least(2 * n - 1, _BLUESTEIN_CANDIDATES):
        ct = ct_radices(m)
        if ct is None:
            continue
        cost = m * (2.0 * ct[0] + _BLUESTEIN_COST)
        if best is None or cost < best[0]:
            best = (cost, m, ct[1])
    return best


def check_length(n: int, op: str = "fft") -> None:
    if not isinstance(n, int) or n < 1:
        raise SpecRewriteError(f"FFT length must be a positive integer, got {n!r}", op=op)
    if n > MAX_N:
        raise SpecRewriteError(
            f"an FFT of {n} points is longer than the {MAX_N} points (2**22) a rewritten FFT supports: its "
            "constants and per-row intermediates would not fit the documented limits "
            f"({MAX_WEIGHT_BYTES >> 20} MiB of weights, {MAX_INTERMEDIATE} floats per row)", op=op,
            fix="transform shorter blocks (frame the signal, e.g. with torch.stft, or split the FFT "
                "into chunks), or keep this FFT outside the rewritten model")


@functools.lru_cache(maxsize=None)
def plan_fft(n: int) -> FFTPlan:
    """The plan for a complex DFT of length n: the cheaper of mixed-radix Cooley-Tukey (stages of at most
    ACCURATE_RADIX points or a symmetric prime stage up to MAX_RADIX) and Bluestein; Bluestein alone where a
    prime factor exceeds MAX_RADIX.

    Raises SpecRewriteError past MAX_N; callers check the weights with ``check_weights``."""
    check_length(n)
    ct = ct_radices(n)
    if n <= 2:
        return FFTPlan(n, ct[1] if ct else (n,))
    blue = bluestein_length(n)
    if ct is not None and (blue is None or n * ct[0] <= blue[0]):
        return FFTPlan(n, ct[1])
    if blue is None:  # pragma: no cover - a smooth M always exists
        raise SpecRewriteError(f"no FFT plan for n={n}", op="fft")
    return FFTPlan(n, blue[2], blue[1])


def ct_weight_count(radices, real_in: bool = False, real_out: bool = False) -> int:
    """Number of real constants of a Cooley-Tukey pass (stage matrices and twiddles)."""
    total, rest = 0, math.prod(radices)
    for i, r in enumerate(radices):
        last = i == len(radices) - 1
        rows = r if (real_out and last) else 2 * r
        cols = r if (real_in and i == 0) else 2 * r
        total += rows * cols + (0 if last else 2 * rest)
        rest //= r
    return total


def plan_weight_count(plan: FFTPlan, real_in: bool = False, real_out: bool = False) -> int:
    if plan.bluestein:
        return ct_weight_count(plan.radices) + 2 * plan.n + 2 * plan.m
    return ct_weight_count(plan.radices, real_in, real_out)


def check_weights(n: int, n_weights: int, itemsize: int, intermediate: int, op: str = "fft") -> None:
    """Refuse a plan whose constants or per-row intermediate exceed the documented limits."""
    nbytes = n_weights * itemsize
    if nbytes > MAX_WEIGHT_BYTES or intermediate > MAX_INTERMEDIATE:
        raise SpecRewriteError(
            f"an FFT of {n} points needs {nbytes / 2**20:.1f} MiB of constants and {intermediate} floats of "
            f"intermediate per row; the limits are {MAX_WEIGHT_BYTES >> 20} MiB and {MAX_INTERMEDIATE} "
            "(lengths with a large prime factor use Bluestein's algorithm, about 5x the constants of a "
            "smooth length)", op=op,
            fix="use a length with small prime factors (pad to a 2/3/5/7-smooth length) or a shorter "
                "transform, or keep this FFT outside the rewritten model")


# ------------------------------------------------------------------------------------------ constants
def stage_matrix(ns, r: int, sign: int, scale: float = 1.0, real_in: bool = False, real_out: bool = False):
    """Left-multiplied real matrix of a length-r DFT with exp(sign 2 pi i j k / r), rows (c_out, k), cols
    (c_in, j): (2r, 2r); (2r, r) for a real input, (r, 2r) when only the real part is wanted."""
    m = (ns.arange(r).reshape(-1, 1) * ns.arange(r).reshape(1, -1)) % r
    c, s = ns.cos_sin(m, r)
    c = c * scale
    s = s * (sign * scale)
    if real_in:
        return c if real_out else ns.cat([c, s], 0)
    top = ns.cat([c, -s], 1)
    return top if real_out else ns.cat([top, ns.cat([s, c], 1)], 0)


def twiddle(ns, r: int, q: int, sign: int):
    """(2, r, q): cos and signed sin of 2 pi k q' / (r q) for k < r, q' < q."""
    m = (ns.arange(r).reshape(-1, 1) * ns.arange(q).reshape(1, -1)) % (r * q)
    c, s = ns.cos_sin(m, r * q)
    return ns.stack([c, s * sign], 0)


def _pair_indices(ns, r: int):
    """(k or j of each of the r rows / slots of a symmetric stage, mask of the first ``pair_counts(r)[0]``):
    [0, 1..h, (r/2)] then [1..h], h = (r - 1) // 2; (r/2) only for even r."""
    h, e = (r - 1) // 2, 1 - r % 2
    idx = ns.cat([ns.arange(h + 1), ns.arange(e) + r // 2, ns.arange(h) + 1], 0)
    return idx, ns.arange(r) < h + 1 + e


def pair_counts(r: int):
    """(a, b): a symmetric stage's rows / slots per (re, im) channel are a 'cosine' ones then b 'sine' ones."""
    h = (r - 1) // 2
    return h + 1 + (1 - r % 2), h


def symmetric_stage_matrix(ns, r: int, sign: int, scale: float = 1.0, real_in: bool = False,
                           real_out: bool = False):
    """Left-multiplied real matrix of a length-r DFT in the symmetric form: (2r, 2r), (2r, r) for a real input,
    (r, 2r) when only the real part is wanted.

    Columns (c_in, slot), the slots of one channel x being [x_0, u_1..u_h, (x_{r/2}), v_1..v_h] with
    u_j = x_j + x_{r-j}, v_j = x_j - x_{r-j}. Rows (c_out, t): for bins k in [0, 1..h, (r/2)] the cosine part
    A_k = sum_j cos(2 pi j k / r) (x_0, u_j, x_{r/2}) of the same channel, then for k in [1..h] the sine part
    B_k = sum_j S_jk v_j of the other channel (S = sign sin). Then Re X[k] = Re A_k - Re B_k,
    Re X[r-k] = Re A_k + Re B_k, Im X[k] = Im A_k + Im B_k, Im X[r-k] = Im A_k - Im B_k (``pair_out``)."""
    idx, first = _pair_indices(ns, r)
    m = (idx.reshape(-1, 1) * idx.reshape(1, -1)) % r
    c, s = ns.cos_sin(m, r)
    keep_c = first.reshape(-1, 1) * first.reshape(1, -1)
    keep_s = (first.reshape(-1, 1) < 1) * (first.reshape(1, -1) < 1)
    c = c * keep_c * scale
    s = s * keep_s * (sign * scale)
    if real_in:
        return c if real_out else ns.cat([c, s], 0)
    top = ns.cat([c, s], 1)
    return top if real_out else ns.cat([top, ns.cat([s, c], 1)], 0)


def ct_constants(ns, radices, sign: int, scale: float = 1.0, real_in: bool = False, real_out: bool = False,
                 prefix: str = "") -> dict:
    """{prefix m0: stage matrix, prefix t0: twiddle, ...}; ``scale`` is folded into the last stage."""
    out, rest = {}, math.prod(radices)
    for i, r in enumerate(radices):
        last = i == len(radices) - 1
        build = symmetric_stage_matrix if symmetric(r) else stage_matrix
        m = build(ns, r, sign, scale if last else 1.0, real_in and i == 0, real_out and last)
        out[f"{prefix}m{i}"] = m.T if last else m
        if not last:
            out[f"{prefix}t{i}"] = twiddle(ns, r, rest // r, sign)
        rest //= r
    return out


def ct_shapes(radices, real_in: bool = False, real_out: bool = False, prefix: str = "") -> dict:
    out, rest = {}, math.prod(radices)
    for i, r in enumerate(radices):
        last = i == len(radices) - 1
        shape = (r if (real_out and last) else 2 * r, r if (real_in and i == 0) else 2 * r)
        out[f"{prefix}m{i}"] = shape[::-1] if last else shape
        if not last:
            out[f"{prefix}t{i}"] = (2, r, rest // r)
        rest //= r
    return out


def chirp(ns, n: int, sign: int):
    """(n, 2): w[j] = exp(sign pi i j^2 / n), phase index j^2 reduced mod 2n."""
    return chirp_at(ns, ns.arange(n), n, sign)


def chirp_at(ns, j, n: int, sign: int):
    """(len(j), 2): w[j] = exp(sign pi i j^2 / n) at the integer indices j (n may be a run-time size)."""
    c, s = ns.cos_sin((j * j) % (2 * n), 2 * n)
    return ns.stack([c, s * sign], 1)


def chirp_filter_input(ns, n: int, m: int, sign: int):
    """(m, 2): conj(w[|p|]) at circular positions p = -(n-1) .. n-1 of a length-m buffer, zero elsewhere."""
    p = ns.arange(m)
    d = p + (m - 2 * p) * (2 * p > m)   # circular distance to 0
    keep = d < n
    c, s = ns.cos_sin((d * d) % (2 * n), 2 * n)
    return ns.stack([c * keep, s * (-sign) * keep], 1)


def chirp_filter(ns, n: int, m: int, sign: int, scale: float = 1.0, fft=None):
    """(m, 2): conj(FFT_m(filter input)) * scale / m, the spectrum Bluestein multiplies by.

    ``fft`` computes a forward length-m DFT of an (m, 2) array in ``ns``; None means numpy (float64)."""
    b = chirp_filter_input(ns, n, m, sign)
    if fft is None:
        spec = np.fft.fft(np.asarray(b[:, 0]) + 1j * np.asarray(b[:, 1]))
        return np.stack([spec.real, -spec.imag], 1) * (scale / m)
    spec = fft(b)
    return ns.stack([spec[:, 0], -spec[:, 1]], 1) * (scale / m)


def _pack_map(ns, n: int, count: int, ar, ai, br, bi, mask_dc_nyquist: bool):
    """(count, 4, 2) per-bin real map from (Re P, Im P, Re R, Im R) to (Re, Im) of A*P + B*conj(R)."""
    rows = [ns.stack([ar, ai], 1), ns.stack([-ai, ar], 1), ns.stack([br, bi], 1), ns.stack([bi, -br], 1)]
    g = ns.stack(rows, 1)
    if mask_dc_nyquist:   # irfft ignores the imaginary parts of bins 0 and n/2 (inputs Im P[0], Im R[0])
        k = ns.arange(count).reshape(-1, 1, 1)
        row = ns.arange(4).reshape(1, -1, 1)
        g = g * (((k > 0) * 1 + (row % 2 == 0) * 1) > 0)
    return g


def rfft_post(ns, n: int, scale: float):
    """(n/2 + 1, 4, 2) map for an even-n rfft from the half-length FFT Z of z[m] = x[2m] + i x[2m+1]:
    X[k] = A_k Z[k] + B_k conj(Z[h - k]) with A = (1 - i W^k) / 2, B = (1 + i W^k) / 2, W = exp(-2 pi i / n);
    inputs per bin are (Re, Im) of Z[k mod h] and of Z[(h - k) mod h]."""
    h = n // 2
    c, s = ns.cos_sin(ns.arange(h + 1), n)
    half = 0.5 * scale
    return _pack_map(ns, n, h + 1, (1.0 - s) * half, c * (-half), (1.0 + s) * half, c * half, False)


def irfft_pre(ns, n: int, scale: float):
    """(n/2, 4, 2) map for an even-n irfft: Z[k] = (1 + i V^k) X[k] + (1 - i V^k) conj(X[h - k]),
    V = exp(2 pi i / n), inputs per bin (Re, Im) of X[k] and X[h - k]; then x[2m] + i x[2m+1] = IDFT_h(Z)[m]
    (unnormalised; ``scale`` is folded in here). Imaginary parts of DC and Nyquist are dropped like torch."""
    h = n // 2
    c, s = ns.cos_sin(ns.arange(h), n)
    return _pack_map(ns, n, h, (1.0 - s) * scale, c * scale, (1.0 + s) * scale, c * (-scale), True)
