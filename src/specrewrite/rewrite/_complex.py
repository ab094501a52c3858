"""Run-time helpers that the rewritten graph calls: complex arithmetic on real pairs (..., 2).

Each is a small torch function; torch.export / jit.trace / the ONNX exporter trace straight through them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def re(z):
    return z[..., 0]


def im(z):
    return z[..., 1]


def pack(r, i):
    return torch.stack([r, i], dim=-1)


def tensor_like(x) -> bool:
    """A tensor operand (a torch tensor, or a value of another backend that runs these formulas through
    ``__torch_function__``, see ``coreml/_as_torch``), as opposed to a Python number."""
    return not isinstance(x, (bool, int, float, complex))


def from_real(x):
    if x.dim() == 0:   # [x, 0] by a pad: coremltools folds a stack of two 0-d constants into one constant and
        return F.pad(x.reshape(1), (0, 1))   # then fails converting the stack (GriffinLim's tprev = tensor(0.))
    return pack(x, torch.zeros_like(x))


def as_pairs(x):
    """A complex model input as real pairs: the rewritten model takes either the complex tensor (eager) or
    ``torch.view_as_real`` of it (what an exporter and a deployment runtime are given)."""
    return torch.view_as_real(x.resolve_conj()) if x.is_complex() else x


def from_scalar_like(x, value: complex):
    """A complex scalar broadcastable against real-pair x."""
    return torch.tensor([value.real, value.imag], dtype=x.dtype, device=x.device)


def cabs2(z):
    return re(z) * re(z) + im(z) * im(z)


def atan2(y, x):
    """atan2 from atan and the two half-angle forms (coremltools lowers torch.atan2 wrongly for x < 0, y == 0).

    x >= 0: 2 atan(y / (r + x)); x < 0: 2 atan((r - x) / y) -- neither form cancels, and y == +-0 with x < 0
    gives +-pi like torch.

    float64 (ONNX Runtime's CPU provider has no double Atan): a float32 estimate t0 from the formula above on
    the inputs scaled by max(|x|, |y|) (nothing overflows in float32; what underflows only worsens the estimate),
    then one correction in float64, t = t0 + r with r = (y cos t0 - x sin t0) / (x cos t0 + y sin t0) =
    tan(t - t0) on the scaled inputs: |r| ~ 1e-7, so the neglected atan(r) - r = -r^3 / 3 is below double
    rounding. y == +-0 with x >= 0 (the origin too) keeps the estimate's exact signed zero; x < 0, y == +-0
    gives +-pi (to double rounding, like torch). Infinite inputs give nan (as in float32)."""
    if getattr(y, "dtype", None) == torch.float64:
        m = torch.maximum(torch.abs(x), torch.abs(y))
        m = torch.where(m > 0, m, torch.ones_like(m))
        xs, ys = x / m, y / m
        t0 = atan2(ys.to(torch.float32), xs.to(torch.float32)).to(torch.float64)
        c, s = torch.cos(t0), torch.sin(t0)
        den = xs * c + ys * s                       # = |(xs, ys)| cos(t - t0) >= ~1, 0 only at the origin
        res = (ys * c - xs * s) / torch.where(den > 0, den, torch.ones_like(den))
        t = torch.where(res == 0, t0, t0 + res)     # keeps t0's signed zeros (y == +-0, x >= 0; the origin)
        return _negative_zero_x(y, x, t)
    r = torch.sqrt(x * x + y * y)
    den = r + x
    pos = 2.0 * torch.atan(y / torch.where(den > 0, den, torch.ones_like(den)))
    neg = 2.0 * torch.atan((r - x) / y)
    return _negative_zero_x(y, x, torch.where(x >= 0, pos, neg))


def _negative_zero_x(y, x, t):
    """atan2 t with atan2(+-0, -0) = +-pi: -0 is on the negative side (angle() of a complex zero that eager's
    own arithmetic signed, -0 + 0i from -0.02 + 0.3i times a False mask, is pi in eager; it was 0). Spelt with
    comparisons (1 / -0 is -inf), as ``_complex_math._copysign``."""
    origin = torch.logical_and(torch.logical_and(x == 0, y == 0), sign_bit(x))
    pi = torch.where(sign_bit(y), torch.full_like(y, -math.pi), torch.full_like(y, math.pi))
    return torch.where(origin, pi, t)


def sign_bit(v):
    """v's sign bit, -0 included (1 / -0 is -inf), spelt with comparisons: torch.onnx cannot translate
    ``prims.signbit`` and coremltools has no converter for it; logical_or / logical_and, not | / &, because a
    traced graph writes those as aten::__or__, which coremltools cannot convert either."""
    return torch.logical_or(v < 0, torch.logical_and(v == 0, (1.0 / v) < 0))


def movedim(x, src: int, dst: int):
    """Tensor.movedim as a static permute (coremltools has no movedim)."""
    n = x.dim()
    src, dst = src % n, dst % n
    order = [d for d in range(n) if d != src]
    order.insert(dst, src)
    return x.permute(order)


def cangle(z):
    return atan2(im(z), re(z))


def cconj(z):
    return pack(re(z), -im(z))


def cmul(a, b):
    ar, ai, br, bi = re(a), im(a), re(b), im(b)
    return pack(ar * br - ai * bi, ar * bi + ai * br)


# Signed zeros. Eager promotes a real operand r of complex arithmetic to r + 0i and runs the complex formula, so a
# zero part of the result takes its sign from the whole formula: (3 - 0i) * 2 is 6 + 0i, (-2 - 0i) / 2 is -1 + 0i
# and (-2 - 0i) - 2 is -4 + 0i in eager, where multiplying the pair by 2 keeps -0 (angle() then -pi against
# eager's pi). The formulas below are eager's, term for term, wherever a zero's sign can differ (with the
# division as a division, not a product by 1/d: the same signs, one rounding fewer). Unary minus follows eager's
# vectorised loop (``cneg``).
def cneg(z):
    """-z as eager's vectorised loop computes it, 0 - z: a zero part becomes +0 (its scalar tail, the last
    numel % 16 or so elements, flips the sign instead; no formula matches both)."""
    return 0.0 - z


def _swap_times(a, first, second):
    """(a_im * first, a_re * second) on the pair axis, without splitting a into parts and stacking them back (a
    stack of two 0-d values is what coremltools folds into a constant and then fails to convert)."""
    if tensor_like(first):
        return a.flip(-1) * torch.stack([first, second], -1)
    return a.flip(-1) * torch.tensor([first, second], dtype=a.dtype, device=a.device)


def cmul_real(a, b):
    """complex a times real b (tensor or Python number) as (a_re b - a_im 0) + (a_re 0 + a_im b) i: the pair
    times b, plus (a_im (-0), a_re 0) for the signs of zeros."""
    return a * (b.unsqueeze(-1) if tensor_like(b) else b) + _swap_times(a, -0.0, 0.0)


def cmul_scalar(a, value: complex):
    return pack(re(a) * value.real - im(a) * value.imag, re(a) * value.imag + im(a) * value.real)


def real_mul_cscalar(x, value: complex):
    """real x times a Python complex, as (x + 0i) (v_re + v_im i)."""
    return pack(x * value.real - 0.0 * value.imag, x * value.imag + 0.0 * value.real)


def cdiv_real(a, b):
    """complex a over real b (tensor or Python number) as eager divides by b + 0i (c10's division: the ratio
    r = 0 / b, then (a_re + a_im r, a_im - a_re r) / b)."""
    if not tensor_like(b) and b == 0:   # c10: each part over |0| (inf or nan), as eager's scalar path
        return a / 0.0
    if tensor_like(b):   # over a zero: each part over it (inf or nan), as eager, not the nan of 0 / 0 everywhere
        # (on the pair axis: a where of 0-d values, a complex over a 0-d tensor, is what coremltools' where
        # converter fails on, "Concat got 0 values")
        b = b.unsqueeze(-1)
        r = 0.0 / b
        r = torch.where(b == 0, torch.zeros_like(r), r)
        return (a + a.flip(-1) * torch.cat([r, -r], -1)) / b
    r = 0.0 / b
    return (a + _swap_times(a, r, -r)) / b


def cadd(a, b, a_c: bool, b_c: bool, alpha=1):
    """a + alpha*b where either side may be complex (real pair), real tensor or Python number."""
    if not a_c:
        a = from_real(a if tensor_like(a) else torch.as_tensor(a, dtype=b.dtype, device=b.device))
    if not b_c:
        if isinstance(b, complex):
            b = from_scalar_like(a, b)
        elif tensor_like(b):
            b = from_real(b)
        else:
            b = from_scalar_like(a, complex(b))
    if alpha != 1:   # eager: (alpha + 0i) b, so a - (2 + 0i) has the imaginary part a_im + (-0 + 0 * 2) = a_im + 0
        b = b * alpha + _swap_times(b, -0.0, 0.0)
    return a + b


def cadd_cscalar(a, value: complex, a_c: bool, sign: float = 1.0):
    """a (complex or real) + sign*value (Python complex)."""
    if not a_c:
        a = from_real(a)
    return a + from_scalar_like(a, value) * sign


def cpow_scalar(z, p):
    if p == 2 or p == 2.0:
        return cmul(z, z)
    if p == 1 or p == 1.0:
        return z
    mag = torch.pow(cabs2(z), p / 2.0)
    ang = cangle(z) * p
    return pack(mag * torch.cos(ang), mag * torch.sin(ang))


def polar(mag, ang):
    return pack(mag * torch.cos(ang), mag * torch.sin(ang))


def cpad(z, pad, mode="constant", value=0.0):
    """F.pad on a complex tensor carried as (..., 2)."""
    if mode == "constant":
        z, pad = _crop(z, pad)
        value = complex(value)
        if value != 0:   # the pad value v means v + 0j: the imaginary plane pads with v.imag, not v
            r = F.pad(re(z), list(pad), value=value.real)
            i = F.pad(im(z), list(pad), value=value.imag)
            return pack(r, i)
        return F.pad(z, [0, 0] + list(pad))
    k = len(pad) // 2
    x = movedim(z, -1, 0)                                   # (2, ..., *padded)
    lead, keep = x.shape[: x.dim() - k], x.shape[x.dim() - k:]
    x = F.pad(x.reshape((-1, 1) + tuple(keep)), list(pad), mode=mode)   # (batch, 1, *padded): what F.pad wants
    x = x.reshape(tuple(lead) + tuple(x.shape[2:]))
    return movedim(x, 0, -1)


def _crop(z, pad):
    """Negative constant-pad amounts (a crop: asteroid's ``pad_x_to_y`` on a complex mask) as slices: ONNX's Pad
    with negative pads is refused by onnx.reference, and other runtimes may too."""
    pad = list(pad)
    for j in range(len(pad) // 2):
        dim = z.dim() - 2 - j   # the (re, im) axis is last
        lo, hi = pad[2 * j], pad[2 * j + 1]
        # slices with a negative end, not narrow(size + hi): no size arithmetic, which a trace records as
        # aten::Int (coremltools cannot convert it)
        if isinstance(lo, int) and lo < 0:
            z, pad[2 * j] = z[(slice(None),) * dim + (slice(-lo, None),)], 0
        if isinstance(hi, int) and hi < 0:
            z, pad[2 * j + 1] = z[(slice(None),) * dim + (slice(0, hi),)], 0
    return z, pad


def reduce_dims(x, dims, keepdim: bool, mean: bool):
    """sum / mean of real pairs over ``dims``, one dim at a time: ONNX Runtime's ReduceSum over several axes that
    leave the pair axis last accumulates in one long float32 run (a complex sum of 3 x 101 x 238 values: 2.3e-3
    off, against 3.6e-5 reduced axis by axis and 6e-5 for torch's own float32 sum)."""
    fn = torch.mean if mean else torch.sum
    for d in sorted(dims, reverse=True):
        x = fn(x, d, keepdim)
    return x


def cmatmul(a, b, a_c: bool, b_c: bool):
    if a_c and b_c:
        return pack(torch.matmul(re(a), re(b)) - torch.matmul(im(a), im(b)),
                    torch.matmul(re(a), im(b)) + torch.matmul(im(a), re(b)))
    if a_c:
        return pack(torch.matmul(re(a), b), torch.matmul(im(a), b))
    return pack(torch.matmul(a, re(b)), torch.matmul(a, im(b)))


def cwhere(cond, a, b):
    """torch.where on two pairs (broadcast): the condition over both parts."""
    return torch.where(cond.unsqueeze(-1), a, b)


def cfull(size, value, dtype, device=None):
    value = complex(value)
    return pack(torch.full(list(size), value.real, dtype=dtype, device=device),
                torch.full(list(size), value.imag, dtype=dtype, device=device))


def cexpand_index(index, z):
    """Expand an index tensor over the pair dimension (gather / scatter on complex values)."""
    return index.unsqueeze(-1).expand(*([-1] * index.dim()), 2)   # no sizes: a trace would record them as
    # aten::Int, which coremltools cannot read back for a constant index


def to_real_dtype(z, dtype):
    return z.to(dtype)


def move_fft_dim(z, dim: int):
    """Bring complex dim ``dim`` (of a real-pair tensor) next to the pair dim, i.e. to position -2."""
    return movedim(z, dim, -2)


def unmove_fft_dim(z, dim: int):
    return movedim(z, -2, dim)


def resize_dim(x, dim: int, n: int, is_complex: bool):
    """Zero-pad or trim dim ``dim`` to n (torch.fft's n=); for a real pair the pair dim stays last."""
    have = sym_size(x, dim)   # an int under plain torch.jit.trace (Core ML), not a traced size
    rank = x.dim()
    if isinstance(have, torch.SymInt):
        # a dynamic length: pad by max(n - have, 0), then trim, so one graph serves both branches (no guard
        # on which side of n the example fell)
        pad = [0, 0] * (rank - 1 - dim) + [0, torch.sym_max(n - have, 0)]
        return F.pad(x, pad).narrow(dim, 0, n)
    if have >= n:
        return x.narrow(dim, 0, n)
    pad = [0, 0] * (rank - 1 - dim)
    pad += [0, n - have]
    return F.pad(x, pad)


def sym_size(x, dim: int):
    """x.shape[dim] for the rewritten graph: dynamic under torch.export and ONNX export, a constant under plain
    torch.jit.trace (whose traced shape arithmetic turns into int ops that coremltools fails to convert)."""
    if torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
        return int(x.shape[dim])
    return x.shape[dim]


def l1_loss(a, b, reduction: int = 1):
    """aten.l1_loss spelt in elementary ops (coremltools has no converter for l1_loss)."""
    d = torch.abs(a - b)
    dims = list(range(d.dim()))   # explicit axes: coremltools' reduce_transposes pass needs them
    if reduction == 1:
        return torch.mean(d, dim=dims) if dims else d
    if reduction == 2:
        return torch.sum(d, dim=dims) if dims else d
    return d


def check_shape(x, shape: tuple, index: int):
    """Guard of a traced (shape-specialised) result: other input shapes would give a silently wrong graph."""
    if isinstance(x, torch.Tensor) and tuple(x.shape) != tuple(shape):
        from ..errors import SpecRewriteError

        raise SpecRewriteError(f"input {index} has shape {tuple(x.shape)}, but this model was rewritten by tracing "
                               f"with shape {tuple(shape)} and is specialised to it", op="rewritten model",
                               fix="rewrite again with example inputs of this shape, or remove the data-dependent "
                               "Python that prevented torch.export")
    return x


def fftfreq(n, d=1.0, *, dtype=None, layout=None, device=None, pin_memory=None):
    """torch.fft.fftfreq from arange (exporters do not all know the op)."""
    k = torch.arange(n, device=device)
    k = torch.remainder(k + n // 2, n) - n // 2
    return k.to(dtype or torch.get_default_dtype()) / (d * n)


def rfftfreq(n, d=1.0, *, dtype=None, layout=None, device=None, pin_memory=None):
    k = torch.arange(n // 2 + 1, device=device)
    return k.to(dtype or torch.get_default_dtype()) / (d * n)


def dense_stride(z, order, dim: int):
    """The stride (in complex elements) of ``dim`` of a dense complex tensor laid out in ``order``."""
    s = 1
    for d in reversed(order):
        if d == dim:
            return s
        s = s * sym_size(z, d)
    return s
