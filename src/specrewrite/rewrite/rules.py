"""One small lowering rule per ATen op that touches a complex value.

A complex value in the new graph is a ``Cx``: a node holding a real tensor with a trailing dimension of 2
(re, im) plus the rank of the complex tensor it stands for. Each rule gets the mapped args (``Cx`` for complex
inputs, nodes for real tensors, Python values otherwise) and returns a ``Cx`` (complex result) or a node.
"""
from __future__ import annotations

import operator
from typing import Callable, Dict

import torch

from . import _complex as C

aten = torch.ops.aten
RULES: Dict[object, Callable] = {}


class Cx:
    __slots__ = ("node", "rank")

    def __init__(self, node, rank: int):
        self.node, self.rank = node, rank

    def __repr__(self):
        return f"Cx({self.node}, rank={self.rank})"


def is_c(x) -> bool:
    return isinstance(x, Cx)


def rule(*ops):
    def deco(fn):
        for op in ops:
            RULES[op] = fn
        return fn
    return deco


def nd(d: int, r: int) -> int:
    """A (possibly negative) dim of a rank-r complex tensor as a non-negative dim of its real pair."""
    return d + r if d < 0 else d


def _n(x):
    return x.node if is_c(x) else x


# ----------------------------------------------------------------------------------------- identity-like


@rule(aten.clone)
def _clone(ctx, node, args, kwargs):
    x = args[0]
    if is_c(x):  # a real copy: later in-place ops on the clone must not reach its source
        return Cx(ctx.call(torch.clone, x.node), x.rank)
    return ctx.copy(node, args, kwargs)


@rule(aten.contiguous, aten.alias, aten.detach, aten.lift_fresh_copy, aten.resolve_conj,
      aten.resolve_neg, aten.lift_fresh, aten.view_as_real_copy if hasattr(aten, "view_as_real_copy") else aten.alias)
def _identity(ctx, node, args, kwargs):
    x = args[0]
    if is_c(x):
        return Cx(x.node, x.rank)
    return ctx.copy(node, args, kwargs)


@rule(aten.view_as_real)
def _view_as_real(ctx, node, args, kwargs):
    return args[0].node


@rule(aten.view_as_complex)
def _view_as_complex(ctx, node, args, kwargs):
    return Cx(args[0], ctx.out_rank(node))


@rule(aten.real)
def _real(ctx, node, args, kwargs):
    return ctx.call(C.re, args[0].node) if is_c(args[0]) else args[0]


@rule(aten.imag)
def _imag(ctx, node, args, kwargs):
    return ctx.call(C.im, args[0].node)


@rule(aten._conj, aten.conj, aten.conj_physical)
def _conj(ctx, node, args, kwargs):
    x = args[0]
    if not is_c(x):
        return x
    return Cx(ctx.call(C.cconj, x.node), x.rank)


@rule(aten._to_copy, aten.to)
def _to_copy(ctx, node, args, kwargs):
    x = args[0]
    out_dtype = ctx.out_dtype(node)
    real_dtype = ctx.real_dtype(out_dtype)
    kw = {k: v for k, v in kwargs.items() if k in ("device",)}
    if is_c(x):
        y = ctx.call(torch.Tensor.to, x.node, real_dtype, **kw)
        return Cx(y, x.rank) if out_dtype.is_complex else ctx.call(C.re, y)
    y = ctx.call(torch.Tensor.to, x, real_dtype, **kw)
    return Cx(ctx.call(C.from_real, y), ctx.out_rank(node))


# ------------------------------------------------------------------------------------------- arithmetic


def _binary_add(ctx, node, args, kwargs, sign):
    a, b = args[0], args[1]
    alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1) * sign
    r = ctx.out_rank(node)
    if isinstance(b, complex) or (not is_c(b) and not isinstance(b, torch.fx.Node) and is_c(a)):
        if isinstance(b, complex):
            return Cx(ctx.call(C.cadd_cscalar, a.node, complex(b) * alpha, True), r)
        return Cx(ctx.call(C.cadd_cscalar, a.node, complex(b) * alpha, True), r)
    if isinstance(a, complex):
        a_node = ctx.call(C.from_scalar_like, b.node if is_c(b) else b, a)
        return Cx(ctx.call(C.cadd, a_node, _n(b), True, is_c(b), alpha), r)
    if not is_c(a) and not isinstance(a, torch.fx.Node):  # python real scalar + complex tensor
        return Cx(ctx.call(C.cadd_cscalar, ctx.call(operator.mul, b.node, alpha), complex(a), True), r)
    return Cx(ctx.call(C.cadd, _n(a), _n(b), is_c(a), is_c(b), alpha), r)


@rule(aten.add)
def _add(ctx, node, args, kwargs):
    return _binary_add(ctx, node, args, kwargs, 1)


@rule(aten.sub)
def _sub(ctx, node, args, kwargs):
    return _binary_add(ctx, node, args, kwargs, -1)


@rule(aten.rsub)
def _rsub(ctx, node, args, kwargs):
    return _binary_add(ctx, node, [args[1], args[0]] + list(args[2:]), kwargs, -1)


@rule(aten.mul)
def _mul(ctx, node, args, kwargs):
    a, b = args
    r = ctx.out_rank(node)
    if is_c(b) and not is_c(a):
        a, b = b, a
    if is_c(a) and is_c(b):
        return Cx(ctx.call(C.cmul, a.node, b.node), r)
    if is_c(a):
        if isinstance(b, complex):
            return Cx(ctx.call(C.cmul_scalar, a.node, b), r)
        return Cx(ctx.call(C.cmul_real, a.node, b), r)
    # real tensor times a Python complex scalar
    if isinstance(b, complex):
        return Cx(ctx.call(C.real_mul_cscalar, a, b), r)
    if isinstance(a, complex):
        return Cx(ctx.call(C.real_mul_cscalar, b, a), r)
    raise ctx.unsupported(node)


@rule(aten.div)
def _div(ctx, node, args, kwargs):
    a, b = args[0], args[1]
    if kwargs.get("rounding_mode") is not None:
        raise ctx.unsupported(node, "rounding division of complex values")
    r = ctx.out_rank(node)
    if is_c(a) and is_c(b):
        return Cx(ctx.call(C.cdiv, a.node, b.node), r)
    if is_c(a):
        if isinstance(b, complex):
            return Cx(ctx.call(C.cmul_scalar, a.node, 1.0 / b), r)
        return Cx(ctx.call(C.cdiv_real, a.node, b), r)
    if is_c(b):
        if isinstance(a, complex):
            return Cx(ctx.call(C.cmul_scalar, ctx.call(C.creciprocal, b.node), a), r)
        return Cx(ctx.call(C.real_div_c, a, b.node), r)
    if isinstance(b, complex):
        return Cx(ctx.call(C.real_mul_cscalar, a, 1.0 / b), r)
    raise ctx.unsupported(node)


@rule(aten.neg)
def _neg(ctx, node, args, kwargs):
    return Cx(ctx.call(operator.neg, args[0].node), args[0].rank)


@rule(aten.abs)
def _abs(ctx, node, args, kwargs):
    return ctx.call(C.cabs, args[0].node)


@rule(aten.angle)
def _angle(ctx, node, args, kwargs):
    return ctx.call(C.cangle, args[0].node)


@rule(aten.sgn)
def _sgn(ctx, node, args, kwargs):
    return Cx(ctx.call(C.csgn, args[0].node), args[0].rank)


@rule(aten.pow)
def _pow(ctx, node, args, kwargs):
    z, p = args
    if not is_c(z) or is_c(p) or isinstance(p, (torch.fx.Node, complex)):
        raise ctx.unsupported(node, "complex pow needs a complex base and a real scalar exponent")
    return Cx(ctx.call(C.cpow_scalar, z.node, p), z.rank)


@rule(aten.exp)
def _exp(ctx, node, args, kwargs):
    return Cx(ctx.call(C.cexp, args[0].node), args[0].rank)


@rule(aten.log)
def _log(ctx, node, args, kwargs):
    return Cx(ctx.call(C.clog, args[0].node), args[0].rank)


@rule(aten.sqrt)
def _sqrt(ctx, node, args, kwargs):
    return Cx(ctx.call(C.csqrt, args[0].node), args[0].rank)


@rule(aten.reciprocal)
def _reciprocal(ctx, node, args, kwargs):
    return Cx(ctx.call(C.creciprocal, args[0].node), args[0].rank)


@rule(aten.complex)
def _complex(ctx, node, args, kwargs):
    re_, im_ = args
    re_, im_ = ctx.call(torch.broadcast_tensors, re_, im_), None
    return Cx(ctx.call(torch.stack, [ctx.call(operator.getitem, re_, 0), ctx.call(operator.getitem, re_, 1)], -1),
              ctx.out_rank(node))


@rule(aten.polar)
def _polar(ctx, node, args, kwargs):
    return Cx(ctx.call(C.polar, args[0], args[1]), ctx.out_rank(node))


@rule(aten.where)
def _where(ctx, node, args, kwargs):
    cond, a, b = args
    r = ctx.out_rank(node)
    ref = a if is_c(a) else b
    a2 = a.node if is_c(a) else ctx.call(C.from_real, ctx.as_tensor_like(a, ref))
    b2 = b.node if is_c(b) else ctx.call(C.from_real, ctx.as_tensor_like(b, ref))
    return Cx(ctx.call(torch.where, ctx.call(torch.unsqueeze, cond, -1), a2, b2), r)


@rule(aten.fill)
def _fill(ctx, node, args, kwargs):
    z, value = args
    base = ctx.call(torch.zeros_like, z.node)
    if isinstance(value, torch.fx.Node) or is_c(value):
        v = value.node if is_c(value) else ctx.call(C.from_real, value)
        return Cx(ctx.call(torch.Tensor.__add__, base, v), z.rank)
    return Cx(ctx.call(C.cadd_cscalar, base, complex(value), True), z.rank)


@rule(aten.flatten)
def _flatten(ctx, node, args, kwargs):
    z = args[0]
    start = args[1] if len(args) > 1 else 0
    end = args[2] if len(args) > 2 else -1
    return Cx(ctx.call(torch.flatten, z.node, nd(start, z.rank), nd(end, z.rank)), ctx.out_rank(node))


@rule(aten.narrow)
def _narrow(ctx, node, args, kwargs):
    z, dim, start, length = args
    return Cx(ctx.call(torch.narrow, z.node, nd(dim, z.rank), start, length), z.rank)


@rule(aten.mT)
def _mT(ctx, node, args, kwargs):
    z = args[0]
    return Cx(ctx.call(torch.transpose, z.node, z.rank - 2, z.rank - 1), z.rank)


@rule(aten.expand_as)
def _expand_as(ctx, node, args, kwargs):
    x, other = args
    if is_c(x):
        ref = other.node if is_c(other) else ctx.call(C.from_real, other)
        return Cx(ctx.call(torch.Tensor.expand_as, x.node, ref), ctx.out_rank(node))
    return ctx.call(torch.Tensor.expand_as, x, ctx.call(C.re, other.node))


@rule(aten._assert_tensor_metadata)
def _assert_meta(ctx, node, args, kwargs):
    return None


@rule(aten.mm, aten.bmm, aten.matmul)
def _matmul(ctx, node, args, kwargs):
    a, b = args
    return Cx(ctx.call(C.cmatmul, _n(a), _n(b), is_c(a), is_c(b)), ctx.out_rank(node))


# ------------------------------------------------------------------------------------------ reductions


def _dims(dims, r):
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return list(range(r))
    if isinstance(dims, int):
        dims = [dims]
    return [nd(d, r) for d in dims]


@rule(aten.sum, aten.mean)
def _reduce(ctx, node, args, kwargs):
    z = args[0]
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    fn = torch.sum if node.target.overloadpacket is aten.sum else torch.mean
    return Cx(ctx.call(fn, z.node, _dims(dims, z.rank), keep), ctx.out_rank(node))


# --------------------------------------------------------------------------------------------- shapes


@rule(aten.view, aten._unsafe_view, aten.reshape)
def _view(ctx, node, args, kwargs):
    z, shape = args
    return Cx(ctx.call(torch.reshape, z.node, list(shape) + [2]), ctx.out_rank(node))


@rule(aten.permute)
def _permute(ctx, node, args, kwargs):
    z, dims = args
    return Cx(ctx.call(torch.permute, z.node, [nd(d, z.rank) for d in dims] + [z.rank]), z.rank)


@rule(aten.transpose)
def _transpose(ctx, node, args, kwargs):
    z, d0, d1 = args
    return Cx(ctx.call(torch.transpose, z.node, nd(d0, z.rank), nd(d1, z.rank)), z.rank)


@rule(aten.t)
def _t(ctx, node, args, kwargs):
    z = args[0]
    return Cx(ctx.call(torch.transpose, z.node, 0, 1), z.rank) if z.rank == 2 else Cx(z.node, z.rank)


@rule(aten.slice)
def _slice(ctx, node, args, kwargs):
    z = args[0]
    dim = args[1] if len(args) > 1 else 0
    start = args[2] if len(args) > 2 else None
    end = args[3] if len(args) > 3 else None
    step = args[4] if len(args) > 4 else 1
    return Cx(ctx.call(aten.slice.Tensor, z.node, nd(dim, z.rank), start, end, step), z.rank)


@rule(aten.select)
def _select(ctx, node, args, kwargs):
    z, dim, index = args
    return Cx(ctx.call(torch.select, z.node, nd(dim, z.rank), index), z.rank - 1)


@rule(aten.unsqueeze)
def _unsqueeze(ctx, node, args, kwargs):
    z, dim = args
    return Cx(ctx.call(torch.unsqueeze, z.node, dim + z.rank + 1 if dim < 0 else dim), z.rank + 1)


@rule(aten.squeeze)
def _squeeze(ctx, node, args, kwargs):
    z = args[0]
    r = ctx.out_rank(node)
    if len(args) == 1:
        dims = [i for i in range(z.rank)]
    else:
        dims = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
    dims = [nd(d, z.rank) for d in dims]
    if r == z.rank:
        return Cx(z.node, r)
    in_shape = ctx.in_shape(node)
    dims = [d for d in dims if in_shape[d] == 1]
    return Cx(ctx.call(torch.squeeze, z.node, dims), r)


@rule(aten.expand)
def _expand(ctx, node, args, kwargs):
    z, sizes = args[0], args[1]
    return Cx(ctx.call(aten.expand.default, z.node, list(sizes) + [2]), ctx.out_rank(node))


@rule(aten.repeat)
def _repeat(ctx, node, args, kwargs):
    z, reps = args
    return Cx(ctx.call(aten.repeat.default, z.node, list(reps) + [1]), ctx.out_rank(node))


@rule(aten.flip)
def _flip(ctx, node, args, kwargs):
    z, dims = args
    return Cx(ctx.call(torch.flip, z.node, [nd(d, z.rank) for d in dims]), z.rank)


@rule(aten.roll)
def _roll(ctx, node, args, kwargs):
    z, shifts = args[0], args[1]
    dims = args[2] if len(args) > 2 else kwargs.get("dims", [])
    if not dims:
        raise ctx.unsupported(node, "roll without dims on a complex tensor")
    return Cx(ctx.call(torch.roll, z.node, shifts, [nd(d, z.rank) for d in dims]), z.rank)


def _promote(ctx, xs):
    return [x.node if is_c(x) else ctx.call(C.from_real, x) for x in xs]


@rule(aten.cat)
def _cat(ctx, node, args, kwargs):
    xs = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    r = ctx.out_rank(node)
    return Cx(ctx.call(torch.cat, _promote(ctx, xs), nd(dim, r)), r)


@rule(aten.stack)
def _stack(ctx, node, args, kwargs):
    xs = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    r = ctx.out_rank(node)
    return Cx(ctx.call(torch.stack, _promote(ctx, xs), nd(dim, r)), r)


@rule(aten.constant_pad_nd)
def _constant_pad(ctx, node, args, kwargs):
    z, pad = args[0], args[1]
    value = args[2] if len(args) > 2 else 0.0
    return Cx(ctx.call(C.cpad, z.node, list(pad), "constant", value), z.rank)


@rule(aten.pad)
def _pad(ctx, node, args, kwargs):
    z, pad = args[0], args[1]
    mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
    value = args[3] if len(args) > 3 else kwargs.get("value", None)
    return Cx(ctx.call(C.cpad, z.node, list(pad), mode, 0.0 if value is None else value), z.rank)


def _pad_mode_rule(mode):
    def fn(ctx, node, args, kwargs):
        z, pad = args[0], args[1]
        return Cx(ctx.call(C.cpad, z.node, list(pad), mode), z.rank)
    return fn


for _name, _mode in (("reflection_pad1d", "reflect"), ("reflection_pad2d", "reflect"), ("reflection_pad3d", "reflect"),
                     ("replication_pad1d", "replicate"), ("replication_pad2d", "replicate"),
                     ("replication_pad3d", "replicate"), ("_pad_circular", "circular")):
    if hasattr(aten, _name):
        RULES[getattr(aten, _name)] = _pad_mode_rule(_mode)


@rule(aten.index_select)
def _index_select(ctx, node, args, kwargs):
    z, dim, index = args
    return Cx(ctx.call(torch.index_select, z.node, nd(dim, z.rank), index), z.rank)


@rule(aten.index)
def _index(ctx, node, args, kwargs):
    z, indices = args
    if len(indices) > z.rank:
        raise ctx.unsupported(node, "too many indices")
    return Cx(ctx.call(aten.index.Tensor, z.node, list(indices)), ctx.out_rank(node))


@rule(aten.gather)
def _gather(ctx, node, args, kwargs):
    z, dim, index = args[:3]
    return Cx(ctx.call(torch.gather, z.node, nd(dim, z.rank), ctx.call(C.cexpand_index, index, z.node)), z.rank)


@rule(aten.scatter_add)
def _scatter_add(ctx, node, args, kwargs):
    z, dim, index, src = args
    z_n = z.node if is_c(z) else ctx.call(C.from_real, z)
    src_n = src.node if is_c(src) else ctx.call(C.from_real, src)
    idx = ctx.call(C.cexpand_index, index, src_n)
    return Cx(ctx.call(torch.scatter_add, z_n, nd(dim, ctx.out_rank(node)), idx, src_n), ctx.out_rank(node))


@rule(aten.slice_scatter)
def _slice_scatter(ctx, node, args, kwargs):
    z, src = args[0], args[1]
    dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
    start = args[3] if len(args) > 3 else kwargs.get("start")
    end = args[4] if len(args) > 4 else kwargs.get("end")
    step = args[5] if len(args) > 5 else kwargs.get("step", 1)
    z_n, src_n = _promote(ctx, [z, src])
    r = ctx.out_rank(node)
    return Cx(ctx.call(aten.slice_scatter.default, z_n, src_n, nd(dim, r), start, end, step), r)


@rule(aten.select_scatter)
def _select_scatter(ctx, node, args, kwargs):
    z, src, dim, index = args
    z_n, src_n = _promote(ctx, [z, src])
    r = ctx.out_rank(node)
    return Cx(ctx.call(aten.select_scatter.default, z_n, src_n, nd(dim, r), index), r)


@rule(aten.copy)
def _copy(ctx, node, args, kwargs):
    dst, src = args[0], args[1]
    src_n = src.node if is_c(src) else ctx.call(C.from_real, src)
    dst_n = dst.node if is_c(dst) else ctx.call(C.from_real, dst)
    return Cx(ctx.call(torch.Tensor.expand_as, src_n, dst_n), ctx.out_rank(node))


@rule(aten.split, aten.split_with_sizes, aten.unbind, aten.chunk, aten.tensor_split)
def _split(ctx, node, args, kwargs):
    z = args[0]
    op = node.target.overloadpacket
    if op is aten.unbind:
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        out = ctx.call(torch.unbind, z.node, nd(dim, z.rank))
        return CxList(out, z.rank - 1)
    dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
    fn = {aten.split: torch.split, aten.split_with_sizes: torch.split, aten.chunk: torch.chunk,
          aten.tensor_split: torch.tensor_split}[op]
    return CxList(ctx.call(fn, z.node, args[1], nd(dim, z.rank)), z.rank)


class CxList:
    """A list/tuple of complex values (output of split/unbind/chunk)."""

    __slots__ = ("node", "rank")

    def __init__(self, node, rank):
        self.node, self.rank = node, rank


@rule(operator.getitem)
def _getitem(ctx, node, args, kwargs):
    seq, i = args
    if isinstance(seq, CxList):
        return Cx(ctx.call(operator.getitem, seq.node, i), seq.rank)
    return ctx.copy(node, args, kwargs)


@rule(aten.sym_size)
def _sym_size(ctx, node, args, kwargs):
    z, d = args
    return ctx.call(C.sym_size, z.node, nd(d, z.rank))


@rule(aten.unfold)
def _unfold(ctx, node, args, kwargs):
    z, dim, size, step = args
    y = ctx.call(torch.Tensor.unfold, z.node, nd(dim, z.rank), size, step)   # (..., 2, size)
    return Cx(ctx.call(C.movedim, y, -2, -1), z.rank + 1)


# --------------------------------------------------------------------------------------- constructors


@rule(aten.zeros_like, aten.empty_like)
def _zeros_like(ctx, node, args, kwargs):
    z = args[0]
    dt = ctx.real_dtype(ctx.out_dtype(node))
    src = z.node if is_c(z) else ctx.call(C.from_real, z)
    return Cx(ctx.call(torch.zeros_like, src, dtype=dt), ctx.out_rank(node))


@rule(aten.ones_like)
def _ones_like(ctx, node, args, kwargs):
    return _full_like(ctx, node, [args[0], 1.0], kwargs)


@rule(aten.full_like)
def _full_like(ctx, node, args, kwargs):
    z, value = args[0], complex(args[1])
    dt = ctx.real_dtype(ctx.out_dtype(node))
    src = z.node if is_c(z) else ctx.call(C.from_real, z)
    base = ctx.call(torch.zeros_like, src, dtype=dt)
    return Cx(ctx.call(C.cadd_cscalar, base, value, True), ctx.out_rank(node))


@rule(aten.full, aten.zeros, aten.ones, aten.empty, aten.new_zeros, aten.new_full, aten.new_ones,
      aten.new_empty, aten.scalar_tensor, aten.empty_strided)
def _full(ctx, node, args, kwargs):
    op = node.target.overloadpacket
    if op in (aten.new_zeros, aten.new_full, aten.new_ones, aten.new_empty):
        args = args[1:]
    size = [] if op is aten.scalar_tensor else list(args[0])
    if op in (aten.full, aten.new_full):
        value = args[1]
    elif op is aten.scalar_tensor:
        value = args[0]
    elif op in (aten.ones, aten.new_ones):
        value = 1.0
    else:
        value = 0.0
    dt = ctx.real_dtype(ctx.out_dtype(node))
    return Cx(ctx.call(C.cfull, size, value, dt, kwargs.get("device")), len(size))


# functionalized graphs (make_fx + functionalize) use the *_copy form of every view op
for _base in ("view", "permute", "transpose", "t", "slice", "select", "unsqueeze", "squeeze", "expand", "alias",
              "unfold", "view_as_real", "view_as_complex", "split", "split_with_sizes", "unbind", "_conj", "real",
              "imag", "detach", "clone", "narrow", "expand_as"):
    _copy = getattr(aten, _base + "_copy", None)
    if _copy is not None and getattr(aten, _base) in RULES:
        RULES[_copy] = RULES[getattr(aten, _base)]
