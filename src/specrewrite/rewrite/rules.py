"""One small lowering rule per ATen op that touches a complex value.

A complex value in the new graph is a ``Cx``: a node holding a real tensor with a trailing dimension of 2
(re, im) plus the rank of the complex tensor it stands for. Each rule gets the mapped args (``Cx`` for complex
inputs, nodes for real tensors, Python values otherwise) and returns a ``Cx`` (complex result) or a node.
"""
from __future__ import annotations

import operator

import torch

from . import _complex as C
from . import _formulas as F
from ._pair_views import pair_arg, transposed_dims
from .rules_core import RULES, Cx, CxList, _n, aten, bound, is_c, nd, rule  # noqa: F401 - this module's API


# ----------------------------------------------------------------------------------------- identity-like


@rule(aten.clone)
def _clone(ctx, node, args, kwargs):
    x = args[0]
    if is_c(x):  # a real copy: later in-place ops on the clone must not reach its source
        return Cx(ctx.call(torch.clone, x.node), x.rank)
    return ctx.copy(node, args, kwargs)


@rule(aten.contiguous, aten.alias, aten.detach, aten.lift_fresh_copy, aten.resolve_conj,
      aten.resolve_neg, aten.lift_fresh)
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


@rule(aten._to_copy, aten.to)
def _to_copy(ctx, node, args, kwargs):
    x = args[0]
    out_dtype = ctx.out_dtype(node)
    real_dtype = ctx.real_dtype(out_dtype)
    if is_c(x):   # (no device keyword: Tensor.to(dtype, device=...) is refused by torch)
        y = ctx.call(torch.Tensor.to, x.node, real_dtype)
        return Cx(y, x.rank) if out_dtype.is_complex else ctx.call(C.re, y)
    y = ctx.call(torch.Tensor.to, x, real_dtype)
    return Cx(ctx.call(C.from_real, y), ctx.out_rank(node))


# ------------------------------------------------------------------------------------------- arithmetic


def _planned(ctx, node, plan):
    """The node as the shared formula that ``_formulas`` chose for its operands."""
    if plan is None:
        raise ctx.unsupported(node)
    fn, fargs = plan
    return Cx(ctx.call(fn, *[_n(a) for a in fargs]), ctx.out_rank(node))


def _binary_add(ctx, node, args, kwargs, sign):
    """a + sign*alpha*b where each side is a complex value (Cx), a real tensor node or a Python number."""
    a, b = args[0], args[1]
    alpha = bound(node, args, kwargs).get("alpha", 1) * sign
    return _planned(ctx, node, F.add_plan(a, b, is_c(a), is_c(b), alpha))


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
    return _planned(ctx, node, F.mul_plan(a, b, is_c(a), is_c(b)))


@rule(aten.div)
def _div(ctx, node, args, kwargs):
    a, b = args[0], args[1]
    if kwargs.get("rounding_mode") is not None:
        raise ctx.unsupported(node, "rounding division of complex values")
    return _planned(ctx, node, F.div_plan(a, b, is_c(a), is_c(b)))


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
    if not is_c(ref):   # two scalars (one complex) or a real tensor and a complex scalar
        ref = Cx(ctx.call(C.from_real, ctx.call(torch.zeros_like, cond, dtype=ctx.real_dtype(ctx.out_dtype(node)))), r)
    a2 = a.node if is_c(a) else ctx.as_pair_like(a, ref)
    b2 = b.node if is_c(b) else ctx.as_pair_like(b, ref)
    return Cx(ctx.call(C.cwhere, cond, a2, b2), r)


@rule(aten.fill)
def _fill(ctx, node, args, kwargs):
    z, value = args
    base = ctx.call(torch.zeros_like, z.node)
    if isinstance(value, torch.fx.Node) or is_c(value):
        v = value.node if is_c(value) else ctx.call(C.from_real, value)
        return Cx(ctx.call(torch.Tensor.__add__, base, v), z.rank)
    return Cx(ctx.call(C.cadd_cscalar, base, complex(value), True), z.rank)


@rule(aten.mT)
def _mT(ctx, node, args, kwargs):
    z = args[0]
    return Cx(ctx.call(torch.permute, z.node, pair_arg("perm", transposed_dims("mT", z.rank), z.rank)), z.rank)


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


from . import rules_shapes  # noqa: E402,F401 - registers the shape rules
from . import rules_math  # noqa: E402,F401 - registers the math / reduction rules
from . import rules_linalg  # noqa: E402,F401 - registers the linear algebra rules

# functionalized graphs (make_fx + functionalize) use the *_copy form of every view op: the same rule, once
# every rule file has registered
for _base in ("view", "permute", "transpose", "t", "slice", "select", "unsqueeze", "squeeze", "expand", "alias",
              "unfold", "view_as_real", "view_as_complex", "split", "split_with_sizes", "unbind", "_conj", "real",
              "imag", "detach", "clone", "narrow", "expand_as"):
    _copy_op = getattr(aten, _base + "_copy", None)
    if _copy_op is not None and getattr(aten, _base) in RULES:
        RULES[_copy_op] = RULES[getattr(aten, _base)]
