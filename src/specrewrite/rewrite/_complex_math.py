"""Run-time helpers for the math rules (``rules_math``): complex elementary functions, comparisons and
reductions on real pairs (..., 2), written so that float32 stays as accurate as eager's complex64 kernels.

Conventions follow C99 / torch for the principal branches: the branch cuts lie on the real or imaginary axis and
the sign of a zero imaginary (real) part picks the side of the cut, as in eager. The formulas are Kahan's
("Branch cuts for complex elementary functions", 1987) where the textbook ones cancel.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ._complex import atan2, cmul, cmul_real, im, pack, re, sign_bit, tensor_like

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)


def hypot(x, y):
    """sqrt(x^2 + y^2) with no square formed (no overflow or underflow, in float16 too), written as
    big + small * q / (1 + sqrt(1 + q^2)) with q = small / big: the correction is at most 0.42 big, so its
    rounding shrinks and the result is nearly correctly rounded (float32 relative error: rms 2.7e-8, bias 2e-10;
    big * sqrt(1 + q^2) gave rms 4.6e-8 and a bias of -3.7e-9, which made a cumprod of 2000 phases from sgn()
    drift 1e-5 in magnitude; torch's own abs: rms 2.5e-8)."""
    ax, ay = torch.abs(x), torch.abs(y)
    big, small = torch.maximum(ax, ay), torch.minimum(ax, ay)
    safe = torch.where(big > 0, big, torch.ones_like(big))
    q = small / safe
    out = big + small * q / (1.0 + torch.sqrt(1.0 + q * q))
    # inf beats nan (C99 hypot(inf, nan) = inf)
    inf = float("inf")   # comparisons, not isinf: coremltools converts those
    return torch.where(torch.logical_or(ax == inf, ay == inf), torch.full_like(big, inf), out)


def cabs(z):
    return hypot(re(z), im(z))


def _copysign(mag, sign):
    """|mag| with the sign bit of ``sign`` (signed zeros included: 1 / -0.0 is -inf). Spelt with comparisons:
    torch.onnx decomposes ``torch.copysign`` to ``prims.signbit``, which it cannot translate (a random program
    taking a complex sqrt failed to export), and coremltools has no converter for it."""
    neg = sign_bit(sign)
    m = torch.abs(mag)
    return torch.where(neg, -m, m)


# ------------------------------------------------------------------------------------------ sqrt, log, exp
def csqrt(z):
    """Principal square root (Kahan): no cancellation, sqrt(x - 0i) = conj(sqrt(x + 0i)) on the cut."""
    x, y = re(z), im(z)
    t = torch.sqrt((torch.abs(x) + hypot(x, y)) * 0.5)
    two_t = torch.where(t > 0, 2.0 * t, torch.ones_like(t))
    other = torch.abs(y) / two_t
    r = torch.where(x >= 0, t, other)
    i = torch.where(x >= 0, torch.where(t > 0, y / two_t, y), _copysign(t, y))
    return pack(r, i)


def log_abs(z):
    """log |z|; for 0.5 < |z| < 2 as log1p((big - 1)(big + 1) + small^2) / 2, which keeps its accuracy where
    log |z| is near 0 (the rounding of |z| itself would dominate)."""
    x, y = re(z), im(z)
    ax, ay = torch.abs(x), torch.abs(y)
    big, small = torch.maximum(ax, ay), torch.minimum(ax, ay)
    h = hypot(x, y)
    near_one = (h > 0.5) & (h < 2.0)
    return torch.where(near_one, 0.5 * torch.log1p((big - 1.0) * (big + 1.0) + small * small), torch.log(h))


def clog(z):
    return pack(log_abs(z), atan2(im(z), re(z)))


def clog10(z):
    return clog(z) * (1.0 / _LN10)


def clog2(z):
    return clog(z) * (1.0 / _LN2)


def clog1p(z):
    """log(1 + z); near 0 the modulus goes through log1p of |1 + z|^2 - 1 = 2x + x^2 + y^2."""
    x, y = re(z), im(z)
    small = (torch.abs(x) < 0.5) & (torch.abs(y) < 0.5)
    x1 = 1.0 + x
    m_small = 0.5 * torch.log1p(x * (2.0 + x) + y * y)
    m_big = torch.log(hypot(x1, y))
    return pack(torch.where(small, m_small, m_big), atan2(y, x1))


def cexp(z):
    m = torch.exp(re(z))
    y = im(z)
    return pack(m * torch.cos(y), m * torch.sin(y))


def cexpm1(z):
    """exp(z) - 1: real part expm1(x) cos(y) - 2 sin^2(y / 2) (no cancellation near 0)."""
    x, y = re(z), im(z)
    s = torch.sin(0.5 * y)
    return pack(torch.expm1(x) * torch.cos(y) - 2.0 * s * s, torch.exp(x) * torch.sin(y))


def cexp2(z):
    return cexp(z * _LN2)


def creciprocal(z):
    """1 / z scaled by the larger part (Smith), so |z| up to float max neither overflows nor underflows."""
    x, y = re(z), im(z)
    use_x = torch.abs(x) >= torch.abs(y)
    safe_x = torch.where(use_x & (x != 0), x, torch.ones_like(x))
    safe_y = torch.where(~use_x, y, torch.ones_like(y))
    r1 = y / safe_x                      # |x| >= |y|: 1/z = (1 - i r) / (x + y r)
    d1 = x + y * r1
    r2 = x / safe_y                      # |y| > |x|: 1/z = (r - i) / (x r + y)
    d2 = x * r2 + y
    # zeros signed as c10's division (numpy's) gives them: (0 - r) is +0 for r = +-0, so 1 / (-2 +- 0i) is
    # -0.5 - 0i both ways in eager (angle() of it -pi); 0 - (0 - r) is r with a zero made +0
    a = torch.where(use_x, 1.0 / d1, (0.0 - (0.0 - r2)) / d2)
    b = torch.where(use_x, (0.0 - r1) / d1, -1.0 / d2)
    zero = (x == 0) & (y == 0)           # 1 / 0 = inf + nan i in eager (c10::complex division)
    return pack(torch.where(zero, torch.full_like(a, float("inf")), a),
                torch.where(zero, torch.full_like(b, float("nan")), b))


def crsqrt(z):
    return creciprocal(csqrt(z))


def cpow(z, w):
    """z ** w = exp(w log z) for complex pairs z and w (broadcast); 0 ** w = 0 for Re(w) > 0 like eager (other
    zero bases give eager's nan)."""
    lz = clog(z)
    a, b, c, d = re(lz), im(lz), re(w), im(w)
    out = cexp(pack(a * c - b * d, a * d + b * c))
    zero = (re(z) == 0) & (im(z) == 0) & (c > 0)
    return torch.where(zero.unsqueeze(-1), torch.zeros_like(out), out)


# ------------------------------------------------------------------------------------------ trigonometric
def csinh(z):
    x, y = re(z), im(z)
    return pack(torch.sinh(x) * torch.cos(y), torch.cosh(x) * torch.sin(y))


def ccosh(z):
    x, y = re(z), im(z)
    return pack(torch.cosh(x) * torch.cos(y), torch.sinh(x) * torch.sin(y))


def csin(z):
    x, y = re(z), im(z)
    return pack(torch.sin(x) * torch.cosh(y), torch.cos(x) * torch.sinh(y))


def ccos(z):
    x, y = re(z), im(z)
    return pack(torch.cos(x) * torch.cosh(y), -(torch.sin(x) * torch.sinh(y)))


def ctanh(z):
    """tanh (Kahan): with t = tan(y), s = sinh(x), b = 1 + t^2: (b sqrt(1 + s^2) s + i t) / (1 + b s^2);
    |x| > 20 (where float32 tanh is +-1) gives +-1 + 0i with the signs of x and sin(2y)."""
    x, y = re(z), im(z)
    big = torch.abs(x) > 20.0
    xs = torch.where(big, torch.zeros_like(x), x)
    t = torch.tan(y)
    b = 1.0 + t * t
    s = torch.sinh(xs)
    rho = torch.sqrt(1.0 + s * s)
    den = 1.0 + b * s * s
    r = b * rho * s / den
    i = t / den
    r = torch.where(big, _copysign(torch.ones_like(x), x), r)
    i = torch.where(big, _copysign(torch.zeros_like(y), torch.sin(2.0 * y)), i)
    return pack(r, i)


def _times_i(z):          # i z
    return pack(-im(z), re(z))


def _times_minus_i(z):    # -i z
    return pack(im(z), -re(z))


def ctan(z):
    return _times_minus_i(ctanh(_times_i(z)))


def csigmoid(z):
    """1 / (1 + exp(-z)) = (1 + tanh(z / 2)) / 2 (no overflow of exp for large |Re z|)."""
    x = re(z)
    neg = (x < 0).unsqueeze(-1)
    e = cexp(torch.where(neg, z, -z))           # |e| <= 1: exp(z) for Re z < 0, exp(-z) otherwise
    one = torch.zeros_like(e) + torch.tensor([1.0, 0.0], dtype=z.dtype, device=z.device)
    num = torch.where(neg, e, one)
    return cdiv(num, one + e)


def _div_parts(x, y, c, d):
    """(x + y i) / (c + d i) as c10 (numpy) divides: the ratio of the smaller to the larger part of the divisor
    (Smith: |c + d i|^2 never formed, so no overflow), zeros signed as eager's formula signs them, divided rather
    than multiplied by the reciprocal (one rounding fewer); over 0 each part over |0| (inf or nan)."""
    use_c = torch.abs(c) >= torch.abs(d)
    zero = (c == 0) & (d == 0)
    safe_c = torch.where(use_c & ~zero, c, torch.ones_like(c))
    safe_d = torch.where(use_c, torch.ones_like(d), d)
    r1 = d / safe_c                      # |c| >= |d|
    den1 = c + d * r1
    r2 = c / safe_d                      # |d| > |c|
    den2 = d + c * r2
    real = torch.where(use_c, (x + y * r1) / den1, (x * r2 + y) / den2)
    imag = torch.where(use_c, (y - x * r1) / den1, (y * r2 - x) / den2)
    return torch.where(zero, x / torch.abs(c), real), torch.where(zero, y / torch.abs(d), imag)


def cdiv(a, b):
    """a / b (both complex) as eager divides (``_div_parts``)."""
    return pack(*_div_parts(re(a), im(a), re(b), im(b)))


def real_div_c(a, b):
    """real a (tensor or Python number) divided by complex b: (a + 0i) / b as eager divides."""
    return pack(*_div_parts(a, 0.0, re(b), im(b)))


def csgn(z):
    """z / |z|, 0 at 0."""
    a = cabs(z)
    safe = torch.where(a == 0, torch.ones_like(a), a)
    return torch.where((a == 0).unsqueeze(-1), torch.zeros_like(z), z / safe.unsqueeze(-1))


# ------------------------------------------------------------------------------------------ inverse functions
def _mul_conj_a(a, b):
    """conj(a) * b."""
    return pack(re(a) * re(b) + im(a) * im(b), re(a) * im(b) - im(a) * re(b))


def casin(z):
    """asin (Kahan): s1 = sqrt(1 - z), s2 = sqrt(1 + z); Re = atan2(x, Re(s1 s2)), Im = asinh(Im(conj(s1) s2))."""
    x, y = re(z), im(z)
    one_minus = pack(1.0 - x, -y)
    one_plus = pack(1.0 + x, y)
    s1, s2 = csqrt(one_minus), csqrt(one_plus)
    den = re(s1) * re(s2) - im(s1) * im(s2)
    return pack(atan2(x, den), torch.asinh(im(_mul_conj_a(s1, s2))))


def cacos(z):
    """acos (Kahan): Re = 2 atan2(Re sqrt(1 - z), Re sqrt(1 + z)), Im = asinh(Im(conj(sqrt(1 + z)) sqrt(1 - z)))."""
    x, y = re(z), im(z)
    s1 = csqrt(pack(1.0 - x, -y))
    s2 = csqrt(pack(1.0 + x, y))
    # + 0.0: eager's imaginary part is +0 on both sides of the real segment (-1, 1)
    return pack(2.0 * atan2(re(s1), re(s2)), torch.asinh(im(_mul_conj_a(s2, s1))) + 0.0)


def casinh(z):
    """asinh(z) = -i asin(i z)."""
    return _times_minus_i(casin(_times_i(z)))


def cacosh(z):
    """acosh (Kahan): Re = asinh(Re(conj(sqrt(z - 1)) sqrt(z + 1))), Im = 2 atan2(Im sqrt(z - 1), Re sqrt(z + 1))."""
    x, y = re(z), im(z)
    s1 = csqrt(pack(x - 1.0, y))
    s2 = csqrt(pack(x + 1.0, y))
    return pack(torch.asinh(re(_mul_conj_a(s1, s2))), 2.0 * atan2(im(s1), re(s2)))


def catanh(z):
    """atanh (Kahan): Re = log1p(4x / ((1 - x)^2 + y^2)) / 4, Im = atan2(2y, (1 - x)(1 + x) - y^2) / 2."""
    x, y = re(z), im(z)
    one_m, one_p, y2 = 1.0 - x, 1.0 + x, y * y
    den = one_m * one_m + y2
    # near |x| = 1 the quotient rounds to -1 (log1p -> -inf): take the difference of the two logs there
    r = torch.where(torch.abs(x) < 0.5, 0.25 * torch.log1p(4.0 * x / den),
                    0.25 * (torch.log(one_p * one_p + y2) - torch.log(den)))
    i = 0.5 * atan2(2.0 * y, one_m * (1.0 + x) - y * y)
    return pack(r, i)


def catan(z):
    """atan(z) = -i atanh(i z)."""
    return _times_minus_i(catanh(_times_i(z)))


# ------------------------------------------------------------------------------------------ predicates
def ceq(a, b):
    """a == b for two pairs (broadcast): both parts equal."""
    return (re(a) == re(b)) & (im(a) == im(b))


def cne(a, b):
    return torch.logical_or(re(a) != re(b), im(a) != im(b))   # (coremltools has no '|')


def real_to_pair(x, like):
    """A real tensor or Python number as a pair with zero imaginary part (dtype of ``like``)."""
    if tensor_like(x):
        x = x.to(like.dtype)
        return torch.stack([x, torch.zeros_like(x)], -1)
    v = complex(x)
    return torch.tensor([v.real, v.imag], dtype=like.dtype, device=like.device)


def scalar_pair(like, r: float, i: float):
    """The constant (r, i) as a pair of ``like``'s dtype."""
    return torch.tensor([r, i], dtype=like.dtype, device=like.device)


def cisnan(z):
    return torch.logical_or(torch.isnan(re(z)), torch.isnan(im(z)))


def cisinf(z):
    return torch.logical_or(torch.isinf(re(z)), torch.isinf(im(z)))


def cisfinite(z):
    return torch.isfinite(re(z)) & torch.isfinite(im(z))


def csize(z):
    """Tensor.size() of the complex tensor a pair stands for."""
    return list(z.shape[:-1])


def cnumel(z):
    """Tensor.numel() of the complex tensor a pair stands for."""
    return z.numel() // 2


def cnonzero_mask(z):
    return torch.logical_or(re(z) != 0, im(z) != 0)


# ------------------------------------------------------------------------------------------ reductions
def cprod_dim(z, dim: int, n: int, keepdim: bool):
    """Product over complex dim ``dim`` (of a pair tensor, size n known) as a pairwise tree: ceil(log2 n) rounds of
    complex multiplications, padding odd lengths with 1."""
    x = z
    while n > 1:
        if n % 2:
            one = torch.zeros_like(x.narrow(dim, 0, 1))
            one = one + torch.tensor([1.0, 0.0], dtype=z.dtype, device=z.device)
            x = torch.cat([x, one], dim)
            n += 1
        half = n // 2
        x = cmul(x.narrow(dim, 0, half), x.narrow(dim, half, half))
        n = half
    if n == 0:   # empty product
        shape = list(z.shape)
        shape[dim] = 1
        x = torch.zeros(shape, dtype=z.dtype, device=z.device) + torch.tensor([1.0, 0.0], dtype=z.dtype,
                                                                                device=z.device)
    return x if keepdim else x.squeeze(dim)


# The unit part of a polar product exp(i sum arg z). A float32 atan2 is off by up to an ulp of pi (1.8e-7) per
# factor, where a complex product rotates by about an ulp of 1: over 2000 factors the summed angles drifted 4e-6
# (eager's running products: 6e-7). So each angle is split on a grid of 2**_ANGLE_BITS directions: the grid
# index q (summed exactly as an int32, reduced mod the grid) and the small angle of z rotated back
# by the grid direction (a product with a float64-computed table entry: an ulp of 1). The result is the table
# entry of the summed index times exp(i * summed small angles).
_ANGLE_BITS = 8


@functools.lru_cache(maxsize=None)
def _unit_grid_f64() -> np.ndarray:
    t = 2.0 * math.pi * np.arange(2 ** _ANGLE_BITS) / 2 ** _ANGLE_BITS
    return np.stack([np.cos(t), np.sin(t)], 1)


def _unit_grid(like):
    """(units, 2) table of exp(2 pi i j / units), computed once in float64, in ``like``'s dtype and device."""
    return torch.tensor(_unit_grid_f64(), dtype=like.dtype, device=like.device)


def _grid_entry(table, qi):
    """table[qi mod units] for an integer tensor qi."""
    return table[torch.remainder(qi, table.shape[0]).to(torch.int64)]


def _unit_of_angle_sum(z, dim: int, cumulative: bool, keepdim: bool = True):
    """exp(i sum arg z) (or of the running sum) along ``dim``, as (..., 2) pairs."""
    table = _unit_grid(z)
    units = table.shape[0]
    q = torch.round(atan2(im(z), re(z)) * (units / (2.0 * math.pi)))
    # int32 (|q| <= units / 2): sums exact to 2**31 / 128 factors (a float32 sum only to 2**24 / 128); a NaN
    # angle reads entry 0, its NaN arrives through the small angle
    qi = torch.where(torch.isnan(q), torch.zeros_like(q), q).to(torch.int32)
    w = _grid_entry(table, qi)
    rot = pack(re(z) * re(w) + im(z) * im(w), im(z) * re(w) - re(z) * im(w))   # z * conj(w): near the +x axis
    small = atan2(im(rot), re(rot))
    if cumulative:
        big, small = torch.cumsum(qi, dim, dtype=torch.int32), torch.cumsum(small, dim)
    else:
        big = torch.sum(qi, dim, keepdim=keepdim, dtype=torch.int32)
        small = torch.sum(small, dim, keepdim=keepdim)
    return cmul(_grid_entry(table, big), pack(torch.cos(small), torch.sin(small)))


def cprod_polar(z, dim: int, keepdim: bool):
    """Product over a dim whose size is not known statically: prod |z| * exp(i sum arg z)."""
    # a float32 running product of magnitudes next to 1 rounds with a bias (the spacing of floats doubles at 1):
    # 2000 unit factors drifted 1.6e-5; a sum of their logs does not
    mag = torch.exp(torch.sum(clog_abs(z), dim, keepdim=keepdim))
    return _unit_of_angle_sum(z, dim, False, keepdim) * mag.unsqueeze(-1)


def ccumprod(z, dim: int, n: int):
    """Inclusive scan of complex products along complex dim ``dim`` (Hillis-Steele: ceil(log2 n) rounds)."""
    x = z
    k = 1
    while k < n:
        head = torch.zeros_like(x.narrow(dim, 0, k)) + torch.tensor([1.0, 0.0], dtype=z.dtype, device=z.device)
        shifted = torch.cat([head, x.narrow(dim, 0, n - k)], dim)
        x = cmul(x, shifted)
        k *= 2
    return x


def clog_abs(z):
    """log |z| without rounding |z| first. Next to 1, rounding is biased (the spacing of floats doubles at 1) and
    so is a runtime's log (ONNX Runtime's float32 Log: +2.8e-9 on [0.7, 1]): summed over the 2000 unit factors
    of a cumprod, log(hypot(x, y)) drifted 1.7e-5 where the true sum moved 3e-7. For max(|x|, |y|) in
    [0.5, 2], log1p of |z|^2 - 1 = (big - 1)(big + 1) + small^2 (big - 1 is exact there), a small number whose
    log1p is nearly exact; elsewhere log big + log1p((small / big)^2) / 2."""
    ax, ay = torch.abs(re(z)), torch.abs(im(z))
    big, small = torch.maximum(ax, ay), torch.minimum(ax, ay)
    near = (big >= 0.5) & (big <= 2.0)
    one = torch.ones_like(big)
    # equal parts (both 0 or both inf included): s = 1, so log 0 = -inf and log inf = inf come out as in eager
    s = torch.where(small == big, one, small / torch.where(big > 0, big, one))
    far = torch.log(big) + 0.5 * _log1p(s * s)
    return torch.where(near, 0.5 * _log1p((big - 1.0) * (big + 1.0) + small * small), far)


def _log1p(t):
    """log(1 + t) for t > -1, accurate for small |t| without a log1p op (torch.onnx writes Log(1 + t)): with
    u = 1 + t rounded, log(u) * t / (u - 1) corrects for that rounding (Kahan); t itself where u rounds to 1."""
    u = 1.0 + t
    d = u - 1.0
    return torch.where(d == 0, t, torch.log(u) * (t / torch.where(d == 0, torch.ones_like(d), d)))


def ccumprod_polar(z, dim: int):
    """cumprod along a dim of dynamic length: exp(cumsum log |z|) * exp(i cumsum arg z) (torch.onnx has no
    cumprod; a zero magnitude gives log = -inf and stays 0 from there on, as the product does)."""
    mag = torch.exp(torch.cumsum(clog_abs(z), dim))
    return _unit_of_angle_sum(z, dim, True) * mag.unsqueeze(-1)


def cvar(z, dims, correction, keepdim: bool):
    """Variance of complex values: sum |z - mean|^2 / (N - correction) = var(re) + var(im)."""
    return (torch.var(re(z), dims, correction=correction, keepdim=keepdim)
            + torch.var(im(z), dims, correction=correction, keepdim=keepdim))

