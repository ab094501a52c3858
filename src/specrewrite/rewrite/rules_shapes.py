"""Lowering rules for shape, indexing and constructor ops on complex values (see ``rules``)."""
from __future__ import annotations

import operator

import torch

from . import _complex as C
from ._nodes import real_dtype as _real_dtype
from ._pair_views import PAIR_VIEWS, needs_unit_axis, pair_arg, pair_args, transposed_dims
from .rules_core import RULES, Cx, CxList, _n, aten, bound, is_c, nd, rule

_ = _n


# --------------------------------------------------------------------------------------------- shapes


_LISTS = {"unbind", "split", "split_with_sizes", "chunk", "tensor_split"}   # ops that return a list of tensors
_AS_RESHAPE = {"view", "_unsafe_view"}   # the pair of a viewable complex tensor may be laid out otherwise


def _pair_view(ctx, node, args, kwargs):
    """A view / copy / shape op on a complex value: the op itself on the real pair, each dim or shape argument
    moved past the pair axis as ``_pair_views`` describes it (the description the Core ML plugin uses too)."""
    name = node.target.overloadpacket.__name__.removesuffix("_copy")
    first = args[0]
    if isinstance(first, (list, tuple)):   # cat / stack: a real element becomes a pair too
        rank = ctx.out_rank(node) - (1 if name == "stack" else 0)
        args = [_promote(ctx, first)] + list(args[1:])
    else:
        rank = first.rank
        args = [first.node] + list(args[1:])
    unit = needs_unit_axis(name, rank)
    if unit:
        args[0], rank = ctx.call(aten.reshape.default, args[0], [1, 2]), 1
    args, kwargs = pair_args(name, args, kwargs, rank)
    target = aten.reshape.default if name in _AS_RESHAPE else node.target
    out = ctx.call(target, *args, **kwargs)
    if unit:
        out = ctx.call(aten.reshape.default, out, [int(s) for s in node.meta["val"].shape] + [2])
    if name in _LISTS:
        return CxList(out, rank - 1 if name == "unbind" else rank)
    return Cx(out, ctx.out_rank(node))


for _name in PAIR_VIEWS:
    if _name.removesuffix("_copy") in ("squeeze", "pad", "constant_pad_nd", "clone", "contiguous", "detach", "alias",
                                       "dropout", "lift_fresh", "lift_fresh_copy"):
        continue   # rules of their own (squeeze reads sizes; pads take a value; the rest keep the value)
    if hasattr(aten, _name):
        rule(getattr(aten, _name))(_pair_view)


@rule(aten.t)
def _t(ctx, node, args, kwargs):
    z = args[0]
    return Cx(ctx.call(torch.permute, z.node, pair_arg("perm", transposed_dims("t", z.rank), z.rank)), z.rank)


@rule(aten.squeeze)
def _squeeze(ctx, node, args, kwargs):
    z = args[0]
    r = ctx.out_rank(node)
    if len(args) == 1:
        dims = [i for i in range(z.rank)]
    else:
        dims = pair_arg("dims", args[1] if isinstance(args[1], (list, tuple)) else [args[1]], z.rank)
    if r == z.rank:
        return Cx(z.node, r)
    in_shape = ctx.in_shape(node)
    dims = [d for d in dims if in_shape[d] == 1]
    return Cx(ctx.call(torch.squeeze, z.node, dims), r)


def _promote(ctx, xs):
    return [x.node if is_c(x) else ctx.call(C.from_real, x) for x in xs]


@rule(aten.constant_pad_nd)
def _constant_pad(ctx, node, args, kwargs):
    z, pad = args[0], args[1]
    value = bound(node, args, kwargs)["value"]
    return Cx(ctx.call(C.cpad, z.node, list(pad), "constant", value), z.rank)


@rule(aten.pad)
def _pad(ctx, node, args, kwargs):
    z, pad = args[0], args[1]
    b = bound(node, args, kwargs)
    mode, value = b["mode"], b["value"]
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
    b = bound(node, args, kwargs)
    dim, start, end, step = b["dim"], b["start"], b["end"], b["step"]
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
    want, have = (_real_dtype(a) for a in node.args[:2])
    if want is not None and have is not None and want != have:   # copy casts to the destination's dtype
        src_n = ctx.call(aten._to_copy.default, src_n, dtype=want)
    return Cx(ctx.call(torch.Tensor.expand_as, src_n, dst_n), ctx.out_rank(node))



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


def ceye(n, m, dtype, device=None):
    """A complex identity as a real pair; ``n`` / ``m`` may be symbolic sizes (torch's own decomposition of eye,
    traced with the example's values, baked the size in: torchaudio's MVDR at another number of microphones)."""
    re = torch.eye(n, m, dtype=dtype, device=device)
    return C.pack(re, torch.zeros_like(re))


@rule(aten.eye)
def _eye(ctx, node, args, kwargs):
    n = args[0]
    m = bound(node, args, kwargs).get("m", n)
    return Cx(ctx.call(ceye, n, m, ctx.real_dtype(ctx.out_dtype(node)), kwargs.get("device")), 2)


def crand(size, dtype, normal: bool, device=None, generator=None):
    """torch.rand / randn with a complex dtype, as the real pair: the same numbers from the same generator
    (torch fills a complex tensor's (re, im) storage in order; randn scales by sqrt(1/2) for unit variance)."""
    if not normal:
        return torch.rand(list(size) + [2], dtype=dtype, device=device, generator=generator)
    return torch.randn(list(size) + [2], dtype=dtype, device=device, generator=generator) * (0.5 ** 0.5)


@rule(aten.rand, aten.randn)
def _rand(ctx, node, args, kwargs):
    size = list(args[0])
    normal = node.target.overloadpacket is aten.randn
    return Cx(ctx.call(crand, size, ctx.real_dtype(ctx.out_dtype(node)), normal, kwargs.get("device"),
                       kwargs.get("generator")), len(size))


def crand_like(pair, dtype, normal: bool):
    """rand_like / randn_like with a complex result: the same distribution (each part uniform on [0, 1), or
    normal with variance 1/2); the same numbers as eager only where eager's tensor is contiguous (torch draws
    a strided one in another order). A model drawing random numbers is judged as random by verification."""
    if not normal:
        return torch.rand_like(pair, dtype=dtype, memory_format=torch.contiguous_format)
    return torch.randn_like(pair, dtype=dtype, memory_format=torch.contiguous_format) * (0.5 ** 0.5)


@rule(aten.rand_like, aten.randn_like)
def _rand_like(ctx, node, args, kwargs):
    z = args[0]
    src = z.node if is_c(z) else ctx.call(C.from_real, z)
    normal = node.target.overloadpacket is aten.randn_like
    return Cx(ctx.call(crand_like, src, ctx.real_dtype(ctx.out_dtype(node)), normal), ctx.out_rank(node))



def memory_order(ctx, node, x):
    """Dims of the original complex tensor from the largest stride to the smallest, when its memory is dense
    and starts at its storage offset 0 (what as_strided / stride() of it mean); else a clear error."""
    from torch.fx.experimental.symbolic_shapes import guard_or_false

    v = x.meta.get("val") if isinstance(x, torch.fx.Node) else None
    if not isinstance(v, torch.Tensor):
        raise ctx.unsupported(node, "the strides of its input are unknown")
    order = sorted(range(v.dim()), key=lambda d: (int(v.stride(d)) if not isinstance(v.stride(d), torch.SymInt)
                                                   else v.stride(d).node.hint), reverse=True)
    dense = guard_or_false(v.permute(order).is_contiguous()) if v.dim() else True
    if not dense or not guard_or_false(v.storage_offset() == 0):
        raise ctx.unsupported(node, "its input is a view with gaps or an offset into a larger tensor; "
                              "call .contiguous() on it first")
    return order


@rule(aten.sym_stride)
def _sym_stride(ctx, node, args, kwargs):
    z, d = args
    order = memory_order(ctx, node, node.args[0])
    return ctx.call(C.dense_stride, z.node, order, nd(d, z.rank))
