"""Lowerings of torch's complex ops to real MIL ops on (re, im) pairs (a trailing dimension of 2).

Each rule handles the complex case and hands any node without a complex value back to coremltools' own
lowering. View-like ops are in ``_views.py``.
"""
from __future__ import annotations

import math

import numpy as np

from ._ct_private import Var, bind, mb, node_attr, raw_inputs
from ._mil_ns import is_static, slice_axis
from ._pairs import (add, as_float, context_is_script, fallback, is_native_complex, is_pair, join, kind,
                     lift_real, node_has_pair, operand, re_im, rule, to_pair, unsupported)
from ._pairs import arg as _arg
from ._pairs import pair_input as _z
from ._pairs import value as _val

_COMPLEX_DTYPES = {8, 9, 10}


# -------------------------------------------------------------------------------------- complex <-> real

@rule("view_as_complex")
def view_as_complex(context, node):
    x = bind(context, raw_inputs(node)[0])
    add(context, node, mb.identity(x=x, name=node.name), True)


@rule("view_as_real")
def view_as_real(context, node):
    z = bind(context, raw_inputs(node)[0])
    if not (is_pair(context, z) or is_native_complex(z)):
        raise unsupported(node, "view_as_real of a real tensor")
    add(context, node, mb.identity(x=to_pair(context, z), name=node.name), False)


@rule("complex")
def complex_(context, node):
    re, im = (lift_real(bind(context, r)) for r in raw_inputs(node)[:2])
    add(context, node, join(re, im, name=node.name), True)


@rule("polar")
def polar(context, node):
    mag, ang = (lift_real(bind(context, r)) for r in raw_inputs(node)[:2])
    re = mb.mul(x=mag, y=mb.cos(x=ang))
    im = mb.mul(x=mag, y=mb.sin(x=ang))
    add(context, node, join(re, im, name=node.name), True)


def _part(context, node, idx):
    z = bind(context, raw_inputs(node)[0])
    if not (is_pair(context, z) or is_native_complex(z)):
        if idx == 0:
            return add(context, node, mb.identity(x=z, name=node.name), False)
        raise unsupported(node, "imag of a real tensor")
    add(context, node, slice_axis(to_pair(context, z), -1, idx, idx + 1, squeeze=True), False)


@rule("real")
def real(context, node):
    _part(context, node, 0)


@rule("imag")
def imag(context, node):
    _part(context, node, 1)


def hypot(re, im):
    """|z| without forming re^2 + im^2 (which overflows fp16 from |z| ~ 256): m * sqrt(1 + (s/m)^2)."""
    a, b = mb.abs(x=re), mb.abs(x=im)
    big, small = mb.maximum(x=a, y=b), mb.minimum(x=a, y=b)
    safe = mb.select(cond=mb.greater(x=big, y=np.float32(0.0)), a=big, b=np.float32(1.0))
    q = mb.real_div(x=small, y=safe)
    return mb.mul(x=big, y=mb.sqrt(x=mb.add(x=mb.mul(x=q, y=q), y=np.float32(1.0))))


def atan2(y, x):
    """atan2 from atan on [0, 1] with quadrant fix-ups (MIL has no atan2)."""
    ax, ay = mb.abs(x=x), mb.abs(x=y)
    big, small = mb.maximum(x=ax, y=ay), mb.minimum(x=ax, y=ay)
    safe = mb.select(cond=mb.greater(x=big, y=np.float32(0.0)), a=big, b=np.float32(1.0))
    a = mb.atan(x=mb.real_div(x=small, y=safe))
    a = mb.select(cond=mb.greater(x=ay, y=ax), a=mb.sub(x=np.float32(math.pi / 2), y=a), b=a)
    a = mb.select(cond=mb.less(x=x, y=np.float32(0.0)), a=mb.sub(x=np.float32(math.pi), y=a), b=a)
    return mb.select(cond=mb.less(x=y, y=np.float32(0.0)), a=mb.mul(x=a, y=np.float32(-1.0)), b=a)


@rule("atan2", "arctan2")
def atan2_(context, node):
    """coremltools' atan2 gives 0 instead of pi for y == 0, x < 0 (torch.angle of a negative real bin)."""
    if node_has_pair(context, node):
        raise unsupported(node, "atan2 of complex values")
    y, x = (as_float(bind(context, r)) for r in raw_inputs(node)[:2])
    add(context, node, mb.identity(x=atan2(y, x), name=node.name), False)


@rule("abs")
def abs_(context, node):
    z = bind(context, raw_inputs(node)[0])
    if not (is_pair(context, z) or is_native_complex(z)):
        return fallback(context, node)
    re, im = (slice_axis(p, -1, 0, 1, squeeze=True) for p in re_im(to_pair(context, z)))
    add(context, node, mb.identity(x=hypot(re, im), name=node.name), False)


@rule("angle")
def angle(context, node):
    z = bind(context, raw_inputs(node)[0])
    if not (is_pair(context, z) or is_native_complex(z)):
        x = as_float(z)  # torch.angle of a real tensor: pi where negative, else 0 (NaN stays NaN)
        zero_or_nan = mb.select(cond=mb.equal(x=x, y=x), a=np.float32(0.0), b=x)
        out = mb.select(cond=mb.less(x=x, y=np.float32(0.0)), a=np.float32(math.pi), b=zero_or_nan)
        return add(context, node, mb.identity(x=out, name=node.name), False)
    re, im = (slice_axis(p, -1, 0, 1, squeeze=True) for p in re_im(to_pair(context, z)))
    add(context, node, mb.identity(x=atan2(im, re), name=node.name), False)


@rule("conj", "conj_physical", "resolve_conj", "resolve_neg", "_conj", "_conj_physical")
def conj(context, node):
    z = bind(context, raw_inputs(node)[0])
    if not (is_pair(context, z) or is_native_complex(z)):
        return add(context, node, mb.identity(x=z, name=node.name), False)
    if kind(node) in ("resolve_conj", "resolve_neg"):
        return add(context, node, mb.identity(x=to_pair(context, z), name=node.name), True)
    add(context, node, mb.mul(x=to_pair(context, z), y=np.array([1.0, -1.0], np.float32), name=node.name), True)


# -------------------------------------------------------------------------------------------- arithmetic

def cmul(kind_a, a, kind_b, b):
    if kind_a != "pair":
        kind_a, a, kind_b, b = kind_b, b, kind_a, a
    if kind_a == "complex":  # complex scalar * real
        if kind_b == "complex":
            c = a * b
            return mb.const(val=np.array([c.real, c.imag], np.float32))
        r = lift_real(b)
        return join(mb.mul(x=r, y=np.float32(a.real)), mb.mul(x=r, y=np.float32(a.imag)))
    if kind_b == "real":
        return mb.mul(x=a, y=lift_real(b))
    ar, ai = re_im(a)
    if kind_b == "complex":
        br, bi = np.float32(b.real), np.float32(b.imag)
        re = mb.sub(x=mb.mul(x=ar, y=br), y=mb.mul(x=ai, y=bi)) if br != 0 else mb.mul(x=ai, y=-bi)
        im = mb.add(x=mb.mul(x=ai, y=br), y=mb.mul(x=ar, y=bi)) if br != 0 else mb.mul(x=ar, y=bi)
        return join(re, im)
    br, bi = re_im(b)
    re = mb.sub(x=mb.mul(x=ar, y=br), y=mb.mul(x=ai, y=bi))
    im = mb.add(x=mb.mul(x=ar, y=bi), y=mb.mul(x=ai, y=br))
    return join(re, im)


def _as_pair_operand(kind, v):
    if kind == "pair":
        return v
    if kind == "complex":
        return mb.const(val=np.array([v.real, v.imag], np.float32))
    return None


def cadd(kind_a, a, kind_b, b, sign=1.0):
    """a + sign * b with at least one complex operand."""
    pa, pb = _as_pair_operand(kind_a, a), _as_pair_operand(kind_b, b)
    if pa is not None and pb is not None:
        return mb.add(x=pa, y=mb.mul(x=pb, y=np.float32(sign))) if sign != 1.0 else mb.add(x=pa, y=pb)
    if pa is not None:  # pair + real
        re, im = re_im(pa)
        return join(mb.add(x=re, y=mb.mul(x=lift_real(b), y=np.float32(sign))), _bcast_like(im, b))
    re, im = re_im(pb)  # real + sign * pair
    return join(mb.add(x=lift_real(a), y=mb.mul(x=re, y=np.float32(sign))),
                _bcast_like(mb.mul(x=im, y=np.float32(sign)), a))


def _bcast_like(part, real):
    """``part`` broadcast to the shape of (part + lifted real) (the imaginary part of pair + real)."""
    if not isinstance(real, Var) or real.rank == 0:
        return part
    lr = lift_real(real)
    if lr.rank <= part.rank and all(is_static(p) and is_static(q) and (q == 1 or p == q)
                                    for p, q in zip(part.shape[part.rank - lr.rank:], lr.shape)):
        return part
    return mb.add(x=part, y=mb.mul(x=lr, y=np.float32(0.0)))


def cdiv(kind_a, a, kind_b, b):
    if kind_b == "real":
        return mb.real_div(x=a, y=lift_real(b))
    pb = _as_pair_operand(kind_b, b)
    br, bi = re_im(pb)
    den = mb.add(x=mb.mul(x=br, y=br), y=mb.mul(x=bi, y=bi))
    conj_b = join(br, mb.mul(x=bi, y=np.float32(-1.0)))
    num = cmul(kind_a, a, "pair", conj_b)
    return mb.real_div(x=num, y=den)


def _binary(context, node):
    ins = raw_inputs(node)
    (ka, a), (kb, b) = operand(context, ins[0]), operand(context, ins[1])
    return ka, a, kb, b, ka != "real" or kb != "real"


@rule("mul", "multiply")
def mul(context, node):
    ka, a, kb, b, cplx = _binary(context, node)
    if not cplx:
        return fallback(context, node)
    add(context, node, mb.identity(x=cmul(ka, a, kb, b), name=node.name), True)


@rule("add", "sub", "subtract", "rsub")
def add_sub(context, node):
    ka, a, kb, b, cplx = _binary(context, node)
    if not cplx:
        return fallback(context, node)
    alpha = _arg(context, node, 2, "alpha", 1)
    if isinstance(alpha, Var):
        raise unsupported(node, "a non-constant alpha with complex operands")
    if kind(node) == "rsub":
        ka, a, kb, b = kb, b, ka, a
    sign = float(alpha) * (-1.0 if kind(node) in ("sub", "subtract", "rsub") else 1.0)
    add(context, node, mb.identity(x=cadd(ka, a, kb, b, sign), name=node.name), True)


@rule("div", "true_divide", "divide")
def div(context, node):
    ka, a, kb, b, cplx = _binary(context, node)
    if not cplx:
        return fallback(context, node)
    if _arg(context, node, 2, "rounding_mode") is not None:
        raise unsupported(node, "rounding division of complex values")
    if ka == "real" and kb != "real":
        a, ka = to_pair(context, a if isinstance(a, Var) else complex(a)), "pair"
    if ka == "complex":
        a, ka = _as_pair_operand(ka, a), "pair"
    add(context, node, mb.identity(x=cdiv(ka, a, kb, b), name=node.name), True)


@rule("exp")
def exp(context, node):
    if not node_has_pair(context, node):
        return fallback(context, node)
    re, im = re_im(_z(context, node))
    e = mb.exp(x=re)
    add(context, node, join(mb.mul(x=e, y=mb.cos(x=im)), mb.mul(x=e, y=mb.sin(x=im)), name=node.name), True)


@rule("sum", "mean")
def reduce(context, node):
    if not node_has_pair(context, node):
        return fallback(context, node)
    if kind(node) not in ("sum", "mean"):  # coremltools shares this lowering with logsumexp / all / any
        raise unsupported(node, f"{kind(node)} of complex values")
    z = _z(context, node)
    r = z.rank - 1
    all_reduce = context_is_script(context) and len(raw_inputs(node)) <= 2  # sum(self, dtype)
    dim = None if all_reduce else _arg(context, node, 1, "dim")
    if isinstance(dim, (int, np.integer)) and not isinstance(dim, bool):
        dim = [dim]
    if dim is None or isinstance(dim, Var) or (hasattr(dim, "__len__") and len(dim) == 0):
        dim = list(range(r))
    dim = [int(d) % r for d in np.asarray(dim).reshape(-1)]
    keep = bool(_arg(context, node, 2, "keepdim", False) or False)
    op = mb.reduce_sum if kind(node) == "sum" else mb.reduce_mean
    add(context, node, op(x=z, axes=dim, keep_dims=keep, name=node.name), True)


def _to_dtype(context, node):
    ins = raw_inputs(node)
    n = len(ins)
    if kind(node) == "type_as":
        other = bind(context, ins[1])
        return "complex" if (is_pair(context, other) or is_native_complex(other)) else "real"
    if kind(node) == "to" and context_is_script(context):
        raw = ins[1] if n in (4, 5, 7, 8) else (ins[2] if n == 6 else None)
        dtype = _val(context, raw) if raw is not None else None
    else:
        dtype = _arg(context, node, 1, "dtype")
    if dtype is None or isinstance(dtype, Var) or isinstance(dtype, str):
        return None
    if hasattr(dtype, "is_complex"):
        return "complex" if dtype.is_complex else "real"
    return "complex" if int(dtype) in _COMPLEX_DTYPES else "real"


@rule("to", "_to_copy", "type_as", "_to_dim_order_copy")
def to(context, node):
    target = _to_dtype(context, node)
    x = bind(context, raw_inputs(node)[0])
    cplx_in = is_pair(context, x) or is_native_complex(x)
    if not cplx_in and target != "complex":
        return fallback(context, node)
    if cplx_in and target == "real":  # torch discards the imaginary part
        return add(context, node, slice_axis(to_pair(context, x), -1, 0, 1, squeeze=True), False)
    add(context, node, mb.identity(x=to_pair(context, x), name=node.name), True)


@rule("constant")
def constant(context, node):
    val = node_attr(node).get("value")
    is_c = isinstance(val, complex) or (hasattr(val, "is_complex") and val.is_complex()) or \
        (isinstance(val, np.ndarray) and np.iscomplexobj(val))
    if not is_c:
        return fallback(context, node)
    arr = np.asarray(val.detach().cpu().numpy() if hasattr(val, "detach") else val)
    pair = np.stack([arr.real, arr.imag], axis=-1).astype(np.float32)
    add(context, node, mb.const(val=pair, name=node.name), True)


@rule("l1_loss")
def l1_loss(context, node):
    """aten.l1_loss (coremltools has no converter): |a - b| then the reduction (0 none, 1 mean, 2 sum), spelt the
    way the graph pass spells it (rewrite/_complex.l1_loss)."""
    a, b = (bind(context, raw_inputs(node)[i]) for i in (0, 1))
    reduction = _arg(context, node, 2, "reduction", 1)
    d = mb.abs(x=mb.sub(x=a, y=b))
    axes = list(range(d.rank))   # explicit: coremltools' reduce_transposes pass reads them
    if reduction in (1, 2) and axes:
        reduce = mb.reduce_mean if reduction == 1 else mb.reduce_sum
        out = reduce(x=d, axes=axes, keep_dims=False, name=node.name)
    else:
        out = mb.identity(x=d, name=node.name)
    add(context, node, out, False)


def _var_mean(context, node, std: bool):
    """aten.var_mean / std_mean (coremltools has no converter), every overload: the mean, then the mean square
    deviation times n / (n - correction), the way the graph pass spells it (rewrite/_real_ops.var_mean)."""
    ins = raw_inputs(node)
    x = bind(context, ins[0])
    if is_pair(context, x) or is_native_complex(x):
        raise unsupported(node, "variance of a complex tensor", fix="take it of .abs() or of the real pair")
    if len(ins) <= 2:   # .default(self, unbiased)
        dim, third, keepdim = None, _arg(context, node, 1, "unbiased", True), False
    else:               # .dim(self, dim, unbiased, keepdim) / .correction(self, dim, *, correction, keepdim)
        dim = _arg(context, node, 1, "dim", None)
        third = _arg(context, node, 2, "correction", None)
        keepdim = bool(_arg(context, node, 3, "keepdim", False))
    c = 1 if third is None else (int(third) if isinstance(third, (bool, np.bool_)) else third)
    dims = [int(d) for d in (np.atleast_1d(dim).tolist() if dim is not None else [])]
    axes = sorted({d % x.rank for d in dims}) if dims else list(range(x.rank))
    if not all(is_static(x.shape[a]) for a in axes):
        raise unsupported(node, "variance over an axis whose size is not known at conversion",
                          fix="give that axis a fixed size")
    n = math.prod(int(x.shape[a]) for a in axes)
    m = mb.reduce_mean(x=x, axes=axes, keep_dims=True)
    d = mb.sub(x=x, y=m)
    v = mb.mul(x=mb.reduce_mean(x=mb.mul(x=d, y=d), axes=axes, keep_dims=True),
               y=np.float32(n / (n - c) if n > c else np.inf))
    if std:
        v = mb.sqrt(x=v)
    if not keepdim:
        v, m = mb.squeeze(x=v, axes=axes), mb.squeeze(x=m, axes=axes)
    context.add(mb.identity(x=v, name=node.outputs[0]), node.outputs[0])
    context.add(mb.identity(x=m, name=node.outputs[1]), node.outputs[1])


@rule("var_mean")
def var_mean(context, node):
    _var_mean(context, node, std=False)


@rule("std_mean")
def std_mean(context, node):
    _var_mean(context, node, std=True)


@rule("cartesian_prod")
def cartesian_prod(context, node):
    """aten.cartesian_prod of 1-D tensors (coremltools has no converter; open-unmix's Wiener filter builds its
    channel-pair indices with it): column i holds the i-th input repeated over the grid of all of them."""
    xs = bind(context, raw_inputs(node)[0])
    xs = list(xs) if isinstance(xs, (list, tuple)) else [xs]
    sizes = [x.shape[0] for x in xs]
    if len(xs) == 1:
        return add(context, node, mb.identity(x=xs[0], name=node.name), False)
    if not all(isinstance(n, (int, np.integer)) for n in sizes):
        raise unsupported(node, "cartesian_prod of inputs whose lengths are not known at conversion",
                          fix="give the inputs fixed lengths")
    cols = []
    for i, x in enumerate(xs):
        shape, reps = [1] * len(xs), list(sizes)
        shape[i], reps[i] = sizes[i], 1
        cols.append(mb.reshape(x=mb.tile(x=mb.reshape(x=x, shape=shape), reps=reps), shape=[-1]))
    return add(context, node, mb.stack(values=cols, axis=1, name=node.name), False)


@rule("full", "zeros", "ones", "empty")
def full(context, node):
    """torch.full / zeros / ones / empty with a complex dtype (Griffin-Lim starts from full(..., 1, complex64)):
    the (re, im) pair filled with the value's parts. Real dtypes are coremltools' own."""
    is_full = kind(node) == "full"
    dtype = _arg(context, node, 2 if is_full else 1, "dtype")
    complex_dtype = dtype is not None and not isinstance(dtype, (Var, str)) and (
        getattr(dtype, "is_complex", False) or (not hasattr(dtype, "is_complex") and int(dtype) in _COMPLEX_DTYPES))
    if not complex_dtype:
        return fallback(context, node)
    value = _arg(context, node, 1, "fill_value", 0) if is_full else (1 if kind(node) == "ones" else 0)
    if isinstance(value, Var):
        raise unsupported(node, "a complex torch.full with a fill value computed at run time")
    value = np.asarray(value).reshape(-1)   # a complex constant arrives as its (re, im) pair
    value = complex(value[0], value[1]) if value.size == 2 else complex(value[0])
    size = _arg(context, node, 0, "size")
    parts = list(size) if isinstance(size, (list, tuple)) else None
    if parts is None and not isinstance(size, Var):
        parts = [int(s) for s in np.asarray(size).reshape(-1)]
    if parts is not None and all(not isinstance(p, Var) or p.val is not None for p in parts):
        shape = [int(p.val) if isinstance(p, Var) else int(p) for p in parts]
        pair = np.broadcast_to(np.array([value.real, value.imag], np.float32), shape + [2]).copy()
        return add(context, node, mb.const(val=pair, name=node.name), True)
    shape = mb.concat(values=[mb.reshape(x=mb.cast(x=p, dtype="int32"), shape=[1]) if isinstance(p, Var)
                              else np.array([p], np.int32) for p in parts], axis=0) \
        if parts is not None else mb.cast(x=size, dtype="int32")
    re, im = mb.fill(shape=shape, value=value.real), mb.fill(shape=shape, value=value.imag)
    add(context, node, mb.stack(values=[re, im], axis=-1, name=node.name), True)
