"""Slice writes (``y[..., j] = v``, ``y[:, 1:3] = 0``) in TorchScript, put on the dimensions the views took.

coremltools fuses the select / slice chain of a write into one slice-update whose n-th (begin, end, stride)
it applies to dimension n, whatever dimension each view took: ``y[..., j] = v`` on a rank-4 ``y`` (one select
on dimension -1) becomes a write into dimension 0, an error when the shapes disagree and a silently wrong model
when they agree (a square ``y``). While registered, the fusion pass is wrapped to keep each view's dimension
on the fused node (``_ct_private``), and this lowering places every view on its own dimension, with whole-
dimension slices between, before coremltools' own lowering builds the update.
"""
from __future__ import annotations

from ..errors import SpecRewriteError
from . import _ct_private as P
from ._pairs import rule, where

_NONE = "_sr_none"


def _dimension(context, name):
    v = context[name]
    val = getattr(v, "val", v)
    try:
        return int(val)
    except (TypeError, ValueError):
        return None


@rule("_internal_op_tensor_inplace_copy", "_internal_op_tensor_inplace_fill")
def tensor_assign(context, node):
    own = P.original_func(node.kind)
    chain = P.node_attr(node).get("sr_view_dims")
    if not chain:
        return own(context, node)
    remaining = list(range(context[node.inputs[0]].rank))
    places = []
    for kind, dim_name in chain:
        d = _dimension(context, dim_name)
        if d is None or not -len(remaining) <= d < len(remaining):
            return own(context, node)   # not a constant dimension: coremltools' own reading
        d %= len(remaining)
        places.append(remaining.pop(d) if kind == "select" else remaining[d])
    if places == list(range(len(places))):
        return own(context, node)
    if len(set(places)) != len(places):
        raise SpecRewriteError("a write through two views of the same dimension (such as y[2:6][1:3] = v) has no "
                               "Core ML slice-update form", op=f"specrewrite.coreml ({node.kind})",
                               where=where(node),
                               fix="rewrite the model first (specrewrite.coreml.convert), which turns each write "
                                   "into a scatter")
    if _NONE not in context:
        context.add(None, torch_name=_NONE)
    triples = [[_NONE, _NONE, _NONE] for _ in range(max(places) + 1)]   # whole dimensions
    given = node.inputs[2:]
    for j, place in enumerate(places):
        triples[place] = list(given[3 * j: 3 * j + 3])
    return own(context, P.with_inputs(node, list(node.inputs[:2]) + [x for t in triples for x in t]))
