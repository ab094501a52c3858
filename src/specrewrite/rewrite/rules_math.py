"""Lowering rules for elementwise math, reductions, comparisons and linear algebra on complex values
(see ``rules`` for the conventions: ``Cx`` real pairs, one rule per ATen overload packet).

The run-time formulas live in ``_complex_math``; structural ops that act on the real and imaginary parts
independently (scatters, strided views, masked selections, ...) go through ``_on_parts``. Linear algebra is in
``rules_linalg``.
"""
from __future__ import annotations

import torch
import torch.fx as fx

from . import _complex as C
from . import _complex_math as M
from . import _formulas as F
from . import _real_ops as R
from ._nodes import bind  # noqa: F401 - re-exported for rules_linalg
from . import rules_shapes  # noqa: F401 - the view rules this module refines (roll)
from .rules_core import RULES, Cx, CxList, _n, aten, bound, is_c, nd, rule

_ = _n


def in_val(node, i: int = 0):
    """FakeTensor metadata of the node's i-th positional input."""
    a = node.args[i]
    return a.meta.get("val") if isinstance(a, fx.Node) else None


def pair_of(ctx, x, like):
    """A Cx, real tensor node or Python number as a pair node broadcastable against pair node ``like``.

    Python complex numbers enter the graph as two floats (generated code cannot spell complex nan / inf)."""
    if is_c(x):
        return x.node
    if isinstance(x, (complex, float, int)):
        v = complex(x)
        return ctx.call(M.scalar_pair, like, float(v.real), float(v.imag))
    return ctx.call(M.real_to_pair, x, like)


# ----------------------------------------------------------------------------------------- elementwise


def _unary(helper):
    def fn(ctx, node, args, kwargs):
        if not is_c(args[0]):   # conj of a real tensor is the tensor; any other op, the op itself
            return args[0] if helper is C.cconj else ctx.call(node.target, *args, **kwargs)
        return Cx(ctx.call(helper, args[0].node), args[0].rank)
    return fn


def _pred(helper):
    def fn(ctx, node, args, kwargs):
        return ctx.call(helper, args[0].node)
    return fn


# every elementwise op of the shared formula table (the Core ML plugin builds its rules from the same table)
for _name, _helper in F.PAIR_TO_PAIR.items():
    RULES[getattr(aten, _name)] = _unary(_helper)
for _name, _helper in F.PAIR_TO_REAL.items():
    RULES[getattr(aten, _name)] = _pred(_helper)
for _alias, _name in F.ALIASES.items():
    if hasattr(aten, _alias):
        RULES[getattr(aten, _alias)] = RULES[getattr(aten, _name)]


@rule(aten.pow)
def _pow(ctx, node, args, kwargs):
    """z ** p for every mix of complex / real tensors and Python numbers (the shared plan of ``_formulas``)."""
    base, p = args[0], args[1]
    plan = F.pow_plan(base, p, is_c(base), is_c(p))
    if plan is not None:
        fn, fargs = plan
        return Cx(ctx.call(fn, *[a.node if is_c(a) else a for a in fargs]), ctx.out_rank(node))
    # no complex tensor: a Python complex scalar on one side; the pair takes the output's real dtype
    r = ctx.out_rank(node)
    like = ctx.call(M.real_to_pair, base if isinstance(base, fx.Node) else p, _float_like(ctx, node))
    return Cx(ctx.call(M.cpow, pair_of(ctx, base, like), pair_of(ctx, p, like)), r)


def _float_like(ctx, node):
    """A (2,) zero tensor of the output's real dtype (the dtype donor of constant pairs)."""
    return ctx.call(torch.zeros, [2], dtype=ctx.real_dtype(ctx.out_dtype(node)))


# ----------------------------------------------------------------------------------- real results: abs, predicates


def _compare(helper):
    def fn(ctx, node, args, kwargs):
        a, b = args[0], args[1]
        like = a.node if is_c(a) else b.node
        return ctx.call(helper, pair_of(ctx, a, like), pair_of(ctx, b, like))
    return fn


RULES[aten.eq] = _compare(M.ceq)
RULES[aten.ne] = _compare(M.cne)


def _truthy(ctx, node, args, kwargs):
    """Ops that only ask whether a value is nonzero (any, all, logical_*, nonzero, ...): each complex argument
    becomes its mask re != 0 | im != 0 and the op runs on that."""
    mapped = [ctx.call(M.cnonzero_mask, a.node) if is_c(a) else a for a in args]
    return ctx.call(node.target, *mapped, **kwargs)


for _name in ("any", "all", "logical_not", "logical_and", "logical_or", "logical_xor", "nonzero", "argwhere",
              "nonzero_static", "count_nonzero"):
    RULES[getattr(aten, _name)] = _truthy


# ----------------------------------------------------------------------------------------- reductions


def _dims_of(dims, r):
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return list(range(r))
    if isinstance(dims, int):
        dims = [dims]
    return [nd(d, r) for d in dims]


def _cast(ctx, z_node, kwargs):
    dt = kwargs.get("dtype")
    return ctx.call(torch.Tensor.to, z_node, ctx.real_dtype(dt)) if dt is not None else z_node


@rule(aten.sum, aten.mean)
def _sum_mean(ctx, node, args, kwargs):
    """sum / mean over complex dims (never the pair dim: a rank-0 complex value reduces to itself)."""
    b = bind(node, args, kwargs)
    z = b["self"]
    x = _cast(ctx, z.node, b)
    r_out = ctx.out_rank(node)
    if z.rank == 0:
        return Cx(ctx.call(torch.clone, x), 0)
    mean = node.target.overloadpacket is aten.mean
    return Cx(ctx.call(C.reduce_dims, x, _dims_of(b.get("dim"), z.rank), bool(b.get("keepdim") or False), mean),
              r_out)


def _static_size(node, dim):
    v = in_val(node)
    size = v.shape[dim] if v.dim() else 1
    return size if isinstance(size, int) else None


@rule(aten.prod)
def _prod(ctx, node, args, kwargs):
    b = bind(node, args, kwargs)
    z = b["self"]
    x = _cast(ctx, z.node, b)
    if z.rank == 0:
        return Cx(ctx.call(torch.clone, x), 0)
    dim = b.get("dim")
    keep = bool(b.get("keepdim") or False)
    if dim is None:   # all dims: one flat complex dim
        x = ctx.call(torch.reshape, x, [-1, 2])
        d, n = 0, in_val(node).numel()
    else:
        d = nd(dim, z.rank)
        n = _static_size(node, d)
    n = n if isinstance(n, int) else None
    out = ctx.call(M.cprod_dim, x, d, n, keep) if n is not None else ctx.call(M.cprod_polar, x, d, keep)
    return Cx(out, ctx.out_rank(node))


@rule(aten.cumsum)
def _cumsum(ctx, node, args, kwargs):
    b = bind(node, args, kwargs)
    z = b["self"]
    x = _cast(ctx, z.node, b)
    if z.rank == 0:
        return Cx(ctx.call(torch.clone, x), 0)
    return Cx(ctx.call(torch.cumsum, x, nd(b["dim"], z.rank)), z.rank)


@rule(aten.cumprod)
def _cumprod(ctx, node, args, kwargs):
    b = bind(node, args, kwargs)
    z = b["self"]
    x = _cast(ctx, z.node, b)
    if z.rank == 0:
        return Cx(ctx.call(torch.clone, x), 0)
    d = nd(b["dim"], z.rank)
    n = _static_size(node, d)
    if n is None:   # a dynamic length: no static scan, the polar form
        return Cx(ctx.call(M.ccumprod_polar, x, d), z.rank)
    return Cx(ctx.call(M.ccumprod, x, d, n), z.rank)


def _correction(b):
    if "unbiased" in b and b.get("unbiased") is not None:
        return 1 if b["unbiased"] else 0
    c = b.get("correction")
    return 1 if c is None else c


@rule(aten.var, aten.std, aten.var_mean, aten.std_mean)
def _var(ctx, node, args, kwargs):
    """var of complex values = var(re) + var(im) (real); std its sqrt; *_mean also return the complex mean."""
    b = bind(node, args, kwargs)
    z = b["self"]
    op = node.target.overloadpacket
    dims = _dims_of(b.get("dim"), z.rank) if z.rank else []
    keep = bool(b.get("keepdim") or False)
    if z.rank == 0:
        dims = None
    v = ctx.call(M.cvar, z.node, dims, _correction(b), keep)
    if op in (aten.std, aten.std_mean):
        v = ctx.call(torch.sqrt, v)
    if op in (aten.var, aten.std):
        return v
    mean = ctx.call(torch.mean, z.node, dims, keep) if z.rank else ctx.call(torch.clone, z.node)
    return (v, Cx(mean, node.meta["val"][1].dim()))


# ----------------------------------------------------------------------------------- on real and imaginary parts


def _parts(ctx, x):
    """(re, im) nodes of a data argument: a Cx, a real tensor (imaginary part zero) or a Python number."""
    if is_c(x):
        return ctx.call(C.re, x.node), ctx.call(C.im, x.node)
    if isinstance(x, fx.Node):
        return x, ctx.call(torch.zeros_like, x)
    if isinstance(x, complex):
        return float(x.real), float(x.imag)
    if isinstance(x, (list, tuple)):
        ps = [_parts(ctx, v) for v in x]
        return [p[0] for p in ps], [p[1] for p in ps]
    return x, 0.0 if isinstance(x, float) else 0


def _on_parts(data, contiguous=False, check=None):
    """A rule for an op that is linear and acts on re and im independently (a scatter, a strided view, a masked
    selection): the op runs once on the real parts and once on the imaginary parts of its ``data`` arguments
    (positions), every other argument shared; ``contiguous`` makes the parts dense first (ops that address the
    storage, such as as_strided)."""
    def fn(ctx, node, args, kwargs):
        if check is not None:
            why = check(node, args, kwargs)
            if why:
                raise ctx.unsupported(node, why)
        re_args, im_args = list(args), list(args)
        for i in data:
            if i < len(args):
                p_re, p_im = _parts(ctx, args[i])
                if contiguous and i == 0:   # a fresh dense storage (contiguous() keeps a view's offset)
                    p_re = ctx.call(torch.clone, p_re, memory_format=torch.contiguous_format)
                    p_im = ctx.call(torch.clone, p_im, memory_format=torch.contiguous_format)
                re_args[i], im_args[i] = p_re, p_im
        kw = {k: v for k, v in kwargs.items() if k not in ("dtype",)}
        target = _REAL_FORM.get(node.target, node.target)
        out_re = ctx.call(target, *re_args, **kw)
        out_im = ctx.call(target, *im_args, **kw)
        return Cx(ctx.call(C.pack, out_re, out_im), ctx.out_rank(node))
    return fn


_REAL_FORM = {aten.diagonal.default: R.diagonal, aten.diagonal_copy.default: R.diagonal}   # (coremltools)


def _no_multiply(node, args, kwargs):
    reduce = bound(node, args, kwargs).get("reduce")
    if reduce is not None and reduce not in ("add", "sum"):
        return f"scatter with reduce={reduce!r} of complex values"
    return None


def _real_alpha(node, args, kwargs):
    alpha = bound(node, args, kwargs).get("alpha", 1)
    return "a complex alpha" if isinstance(alpha, complex) and alpha.imag != 0 else None


for _name, _data, _contig, _check in (
        ("as_strided", (0,), True, None), ("as_strided_copy", (0,), True, None),
        ("as_strided_scatter", (0, 1), True, None), ("diagonal_scatter", (0, 1), False, None),
        ("masked_scatter", (0, 2), False, None), ("masked_select", (0,), False, None),
        ("put", (0, 2), False, None), ("index_put", (0, 2), False, None), ("take", (0,), False, None),
        ("scatter", (0, 3), False, _no_multiply), ("index_add", (0, 3), False, _real_alpha),
        ("index_copy", (0, 3), False, None), ("index_fill", (0, 3), False, None),
        ("diagonal", (0,), False, None), ("diagonal_copy", (0,), False, None), ("diag_embed", (0,), False, None),
        ("diag", (0,), False, None), ("tril", (0,), False, None), ("triu", (0,), False, None),
        ("block_diag", (0,), False, None), ("_unsafe_masked_index", (0, 3), False, None),
        ("_unsafe_masked_index_put_accumulate", (0, 3), False, None), ("_unsafe_index_put", (0, 2), False, None),
        ("_unsafe_index", (0,), False, None), ("rot90", (0,), False, None), ("linalg_diagonal", (0,), False, None),
        ("trace", (0,), False, None), ("take_along_dim", (0,), False, None)):
    if hasattr(aten, _name):
        RULES[getattr(aten, _name)] = _on_parts(_data, _contig, _check)


_rules_roll = RULES[aten.roll]


@rule(aten.roll, replaces=True)
def _roll(ctx, node, args, kwargs):
    if bound(node, args, kwargs)["dims"]:
        return _rules_roll(ctx, node, args, kwargs)
    return _on_parts((0,))(ctx, node, args, kwargs)   # flattened roll: per part, shapes kept


@rule(aten.sym_numel, aten.numel)
def _numel(ctx, node, args, kwargs):
    return ctx.call(M.cnumel, args[0].node)


@rule(aten.size)
def _size(ctx, node, args, kwargs):
    z, dim = args[0], bound(node, args, kwargs).get("dim")
    if dim is not None:
        return ctx.call(C.sym_size, z.node, nd(dim, z.rank))
    return ctx.call(M.csize, z.node)

