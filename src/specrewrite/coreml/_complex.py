"""Lowerings of torch's complex ops to real MIL ops on (re, im) pairs (a trailing dimension of 2).

Each rule handles the complex case and hands any node without a complex value back to coremltools' own
lowering. View-like ops are in ``_views.py``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ._ct_private import Var, bind, delegate, mb, node_attr, original_func, raw_inputs, types
from ._mil_ns import is_static, slice_axis
from ._pairs import (add, as_float, context_is_script, fallback, is_native_complex, is_pair, join, kind,
                     lift_real, node_has_pair, operand, re_im, rule, to_pair, unsupported)
from ._pairs import arg as _arg
from ._pairs import pair_input as _z
from ._pairs import value as _val
from ..rewrite import _complex as C
from ..rewrite import _complex_linalg as L
from ..rewrite import _formulas as F
from ..rewrite import _real_ops as R
from ._as_torch import on_mil

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


# ------------------------------------------------------------------------- the shared formulas (rewrite/_formulas)

def _run(context, node, formula, *args, pair: bool):
    """Bind the node's output to ``formula`` (a torch function of the graph pass) run on MIL values."""
    out = on_mil(formula, *args)
    add(context, node, mb.identity(x=out, name=node.name), pair)


def _real_unary(context, node, name, x):
    """The op on a real input: coremltools' own lowering, except where it differs from torch."""
    if name == "angle":   # pi where negative, else 0 (NaN stays NaN)
        x = as_float(x)
        zero_or_nan = mb.select(cond=mb.equal(x=x, y=x), a=np.float32(0.0), b=x)
        out = mb.select(cond=mb.less(x=x, y=np.float32(0.0)), a=np.float32(math.pi), b=zero_or_nan)
        return add(context, node, mb.identity(x=out, name=node.name), False)
    if name in ("conj", "_conj", "conj_physical", "_conj_physical"):
        return add(context, node, mb.identity(x=x, name=node.name), False)
    if name == "reciprocal":   # coremltools' MIL inverse adds epsilon 1e-4 to x
        return add(context, node, mb.real_div(x=np.float32(1.0), y=as_float(x), name=node.name), False)
    if isinstance(x, Var) and name in _FLOAT_RESULT and not types.is_float(x.dtype):
        # torch.log / sqrt / exp ... of an integer tensor is float; coremltools' lowering refuses the int input
        return delegate(context, node, original_func(node.kind), {0: as_float(x)})
    return fallback(context, node)


_FLOAT_RESULT = {"exp", "log", "log10", "log2", "log1p", "expm1", "exp2", "sqrt", "rsqrt", "sin", "cos", "tan",
                 "sinh", "cosh", "tanh", "asin", "acos", "atan", "asinh", "acosh", "atanh", "sigmoid"}


def _table_rule(name, formula, pair_out):
    def lower(context, node):
        z = bind(context, raw_inputs(node)[0])
        if not (is_pair(context, z) or is_native_complex(z)):
            return _real_unary(context, node, name, z)
        _run(context, node, formula, to_pair(context, z), pair=pair_out)
    lower.__name__ = f"complex_{name}"
    return lower


for _name, _f in list(F.PAIR_TO_PAIR.items()) + list(F.PAIR_TO_REAL.items()):
    _names = [_name] + [a for a, n in F.ALIASES.items() if n == _name]
    rule(*_names)(_table_rule(_name, _f, _name in F.PAIR_TO_PAIR))


@rule("resolve_conj", "resolve_neg")
def resolve(context, node):
    z = bind(context, raw_inputs(node)[0])
    add(context, node, mb.identity(x=to_pair(context, z) if is_pair(context, z) or is_native_complex(z) else z,
                                   name=node.name), is_pair(context, z) or is_native_complex(z))


@rule("atan2", "arctan2")
def atan2_(context, node):
    """The graph pass's atan2 (coremltools' gives 0 instead of pi for y == 0, x < 0)."""
    if node_has_pair(context, node):
        raise unsupported(node, "atan2 of complex values")
    y, x = (as_float(bind(context, r)) for r in raw_inputs(node)[:2])
    _run(context, node, C.atan2, y, x, pair=False)


@rule("polar")
def polar(context, node):
    mag, ang = (as_float(bind(context, r)) for r in raw_inputs(node)[:2])
    _run(context, node, C.polar, mag, ang, pair=True)


# -------------------------------------------------------------------------------------------- arithmetic

def _operand(context, raw):
    """(value, is_complex_tensor): a pair Var, a real Var, or a Python number (complex or real)."""
    kind_, v = operand(context, raw)
    if kind_ == "pair" and v.val is not None and v.rank == 1:   # a complex constant (a 0-d tensor in TorchScript)
        return complex(float(v.val[0]), float(v.val[1])), False
    if kind_ == "pair":
        return v, True
    if kind_ == "complex":
        return complex(v), False
    if isinstance(v, Var) and v.val is not None and np.ndim(v.val) == 0:
        return float(v.val), False
    return (as_float(v) if isinstance(v, Var) else float(v)), False


def _binary(context, node, plan_of, **kw):
    ins = raw_inputs(node)
    (a, a_c), (b, b_c) = _operand(context, ins[0]), _operand(context, ins[1])
    if not (a_c or b_c or isinstance(a, complex) or isinstance(b, complex)):
        return fallback(context, node)
    if kind(node) == "rsub":
        a, a_c, b, b_c = b, b_c, a, a_c
    plan = plan_of(a, b, a_c, b_c, **kw)
    if plan is None:   # two Python numbers
        raise unsupported(node, f"{kind(node)} of a Python complex number and no complex tensor")
    fn, args = plan
    _run(context, node, fn, *args, pair=True)


@rule("mul", "multiply")
def mul(context, node):
    _binary(context, node, F.mul_plan)


@rule("add", "sub", "subtract", "rsub")
def add_sub(context, node):
    if not node_has_pair(context, node):
        return fallback(context, node)
    alpha = _arg(context, node, 2, "alpha", 1)
    if isinstance(alpha, Var):
        raise unsupported(node, "a non-constant alpha with complex operands")
    sign = -1.0 if kind(node) in ("sub", "subtract", "rsub") else 1.0
    _binary(context, node, F.add_plan, alpha=float(alpha) * sign)


@rule("matmul", "mm", "bmm")
def matmul(context, node):
    """Complex matrix products: the graph pass's ``cmatmul`` (four or two real products)."""
    if not node_has_pair(context, node):
        return fallback(context, node)
    ins = raw_inputs(node)
    (a, a_c), (b, b_c) = _operand(context, ins[0]), _operand(context, ins[1])
    if not (isinstance(a, Var) and isinstance(b, Var)):
        raise unsupported(node, "a matrix product with a Python number")
    _run(context, node, C.cmatmul, a, b, a_c, b_c, pair=True)


@rule("einsum")
def einsum(context, node):
    """A complex einsum: the graph pass's ``ceinsum`` (one real einsum per choice of parts), spelt without an
    ellipsis (coremltools' einsum fails on one)."""
    if not node_has_pair(context, node):
        return fallback(context, node)
    ins = raw_inputs(node)
    equation = bind(context, ins[0])
    equation = equation.val if isinstance(equation, Var) else equation
    vals = [bind(context, r) for r in ins[1]] if isinstance(ins[1], (list, tuple)) else bind(context, ins[1])
    ops = [(to_pair(context, v), True) if is_pair(context, v) or is_native_complex(v) else (v, False) for v in vals]
    if not all(isinstance(v, Var) for v, _ in ops) or sum(c for _, c in ops) > L.EINSUM_MAX_COMPLEX:
        raise unsupported(node, "an einsum of more than three complex operands or of Python numbers")
    equation = R.explicit_einsum(str(equation), [v.rank - int(c) for v, c in ops])
    _run(context, node, L.ceinsum, equation, [v for v, _ in ops], [c for _, c in ops], pair=True)


@rule("where")
def where_(context, node):
    """torch.where with a complex side: both sides as pairs, the graph pass's ``cwhere``."""
    if not node_has_pair(context, node):
        return fallback(context, node)
    ins = raw_inputs(node)
    cond = bind(context, ins[0])
    sides = [bind(context, r) for r in ins[1:3]]
    pairs = [to_pair(context, v if isinstance(v, Var) else complex(v)) for v in sides]
    _run(context, node, C.cwhere, cond, *pairs, pair=True)


@rule("pow")
def pow_(context, node):
    _binary(context, node, F.pow_plan)


@rule("div", "true_divide", "divide")
def div(context, node):
    if node_has_pair(context, node) and _arg(context, node, 2, "rounding_mode") is not None:
        raise unsupported(node, "rounding division of complex values")
    _binary(context, node, F.div_plan)


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
    return _dtype_kind(dtype)


_BFLOAT16 = 15   # TorchScript's number for torch.bfloat16


def _dtype_kind(dtype):
    """'complex' / 'real' / 'bfloat16' for a constant dtype (a torch.dtype or TorchScript's number), None when not
    constant."""
    if dtype is None or isinstance(dtype, (Var, str)):
        return None
    if dtype is torch.bfloat16 or (not hasattr(dtype, "is_complex") and int(dtype) == _BFLOAT16):
        return "bfloat16"
    if hasattr(dtype, "is_complex"):
        return "complex" if dtype.is_complex else "real"
    return "complex" if int(dtype) in _COMPLEX_DTYPES else "real"


def _complex_value(value) -> complex:
    """A constant fill value as a Python complex (a complex constant arrives as its (re, im) pair)."""
    arr = np.asarray(value).reshape(-1)
    return complex(float(arr[0]), float(arr[1])) if arr.size == 2 else complex(arr[0])


@rule("to", "_to_copy", "type_as", "_to_dim_order_copy")
def to(context, node):
    target = _to_dtype(context, node)
    x = bind(context, raw_inputs(node)[0])
    cplx_in = is_pair(context, x) or is_native_complex(x)
    if not cplx_in and target != "complex":
        return fallback(context, node)
    if cplx_in and target == "bfloat16":
        raise unsupported(node, "a cast of a complex value to bfloat16 (Core ML has no bfloat16)")
    if cplx_in and target == "real":  # torch discards the imaginary part, then casts (to half, say)
        real = slice_axis(to_pair(context, x), -1, 0, 1, squeeze=True)
        return delegate(context, node, original_func(node.kind), {0: real})
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
    """aten.l1_loss (coremltools has no converter): the graph pass's spelling (rewrite/_complex.l1_loss)."""
    a, b = (as_float(bind(context, raw_inputs(node)[i])) for i in (0, 1))
    _run(context, node, C.l1_loss, a, b, int(_arg(context, node, 2, "reduction", 1)), pair=False)


def _var_mean(context, node, std: bool):
    """aten.var_mean / std_mean (coremltools has no converter), every overload: the graph pass's spelling
    (rewrite/_real_ops.var_mean: the mean, then the mean square deviation times n / (n - correction))."""
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
    dims = [int(d) % x.rank for d in np.atleast_1d(dim).tolist()] if dim is not None else None
    if not all(is_static(x.shape[a]) for a in (dims or range(x.rank))):
        raise unsupported(node, "variance over an axis whose size is not known at conversion",
                          fix="give that axis a fixed size")
    v, m = on_mil(R.std_mean if std else R.var_mean, as_float(x), dims, correction=c, keepdim=keepdim)
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
    if _dtype_kind(dtype) != "complex":
        return fallback(context, node)
    value = _arg(context, node, 1, "fill_value", 0) if is_full else (1 if kind(node) == "ones" else 0)
    if isinstance(value, Var):
        raise unsupported(node, "a complex torch.full with a fill value computed at run time")
    value = _complex_value(value)
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


@rule("zeros_like", "ones_like", "full_like", "empty_like")
def full_like(context, node):
    """A tensor shaped like a complex one: a pair filled with the value's parts (zeros for empty_like), or a real
    tensor of the complex shape when a real dtype is asked for."""
    z = bind(context, raw_inputs(node)[0])
    if not (is_pair(context, z) or is_native_complex(z)):
        return fallback(context, node)
    k = kind(node)
    value = _arg(context, node, 1, "fill_value", 0) if k == "full_like" else (1 if k == "ones_like" else 0)
    if isinstance(value, Var):
        if value.val is None:
            raise unsupported(node, "a fill value computed at run time")
        value = value.val
    value = _complex_value(value)
    pair = to_pair(context, z)
    if _dtype_kind(_arg(context, node, 2 if k == "full_like" else 1, "dtype")) in ("real", "bfloat16"):
        re = slice_axis(pair, -1, 0, 1, squeeze=True)
        return add(context, node, mb.fill(shape=mb.shape(x=re), value=np.float32(value.real), name=node.name), False)
    zeros = mb.fill(shape=mb.shape(x=pair), value=np.float32(0.0))
    out = mb.add(x=zeros, y=np.array([value.real, value.imag], np.float32), name=node.name)
    add(context, node, out, True)
