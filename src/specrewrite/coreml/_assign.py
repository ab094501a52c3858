"""Slice writes (``y[..., j] = v``, ``y[:, 1:3] = 0``) in TorchScript, put on the dimensions the views took.

coremltools fuses the select / slice chain of a write into one slice-update whose n-th (begin, end, stride)
it applies to dimension n, whatever dimension each view took: ``y[..., j] = v`` on a rank-4 ``y`` (one select
on dimension -1) becomes a write into dimension 0, an error when the shapes disagree and a silently wrong model
when they agree (a square ``y``). While registered, the fusion pass is wrapped to keep each view's dimension
on the fused node (``_ct_private``), and this lowering places every view on its own dimension, with whole-
dimension slices between, before coremltools' own lowering builds the update.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..errors import SpecRewriteError
from . import _ct_private as P
from ._pairs import is_native_complex, is_pair, mark_outputs, rule, to_pair, where

_NONE = "_sr_none"
_FRESH = itertools.count()


_UNKNOWN = object()   # an input that is not a constant


def _value(context, name):
    """A constant input as a Python int (None for None), else _UNKNOWN."""
    if name is None:
        return None
    v = context[name]
    if v is None:
        return None
    try:
        return int(getattr(v, "val", v))
    except (TypeError, ValueError):
        return _UNKNOWN


def _compose(context, size, first, second):
    """Two views on one dimension as one (kind, triple), or None. Handles a whole-dimension slice followed by any
    view (``out[..., 0, 0, :]`` then ``[..., 0]``) and a constant slice followed by a constant select."""
    kind1, t1 = first
    kind2, t2 = second
    if kind1 != "slice":
        return None
    start, end, step = (_value(context, n) for n in t1)
    if any(v is _UNKNOWN for v in (start, end, step)):
        return None
    start, step = start or 0, 1 if step is None else step
    if start == 0 and step == 1 and (end is None or end >= size):
        return second
    index = _value(context, t2[0]) if kind2 == "select" else _UNKNOWN
    if index is _UNKNOWN or index is None or index < 0 or start < 0 or step < 1:
        return None
    name = f"_sr_index{next(_FRESH)}"
    context.add(P.mb.const(val=start + index * step), torch_name=name)
    return ("select", [name, None, None])


@rule("_internal_op_tensor_inplace_copy", "_internal_op_tensor_inplace_fill")
def tensor_assign(context, node):
    dst = context[node.inputs[0]]
    if not (is_pair(context, dst) or is_native_complex(dst)):
        return _assign(context, node, P.original_func(node.kind))
    # a write into a complex tensor: the (re, im) pair is one more, whole, dimension after the views' ones, and
    # the value written is a pair too (a real tensor or number gets imaginary part 0)
    value = context[node.inputs[1]]
    complex_var = isinstance(value, P.Var) and (is_pair(context, value) or is_native_complex(value))
    scalar = not isinstance(value, P.Var) or value.val is not None and np.size(value.val) == 1
    if scalar and not complex_var:
        value = _number(value)   # a real number (a fill value, a 0-d constant)
    value = to_pair(context, value)
    name = f"_sr_pair_value{next(_FRESH)}"
    context.add(value, torch_name=name)
    pair_dst = to_pair(context, dst)
    dst_name = f"_sr_pair_dst{next(_FRESH)}"
    context.add(pair_dst, torch_name=dst_name)
    node = P.with_inputs(node, [dst_name, name] + list(node.inputs[2:]))
    _assign(context, node, P.original_func(node.kind))
    mark_outputs(context, node)


def _number(v):
    """A constant real write value as a Python number."""
    val = v.val if isinstance(v, P.Var) else v
    if isinstance(val, (complex, float, int)):
        return val
    return float(np.asarray(val).reshape(-1)[0])


def _assign(context, node, own):
    chain = P.node_attr(node).get("sr_view_dims")
    if not chain:
        return own(context, node)
    shape = context[node.inputs[0]].shape
    remaining = list(range(len(shape)))
    given = node.inputs[2:]
    views = {}   # dimension -> (kind, triple)
    order = []
    for j, (kind, dim_name) in enumerate(chain):
        d = _value(context, dim_name)
        if d is None or d is _UNKNOWN or not -len(remaining) <= d < len(remaining):
            return own(context, node)   # not a constant dimension: coremltools' own reading
        d %= len(remaining)
        place = remaining.pop(d) if kind == "select" else remaining[d]
        view = (kind, list(given[3 * j: 3 * j + 3]))
        if place in views:
            view = _compose(context, shape[place], views[place], view)
            if view is None:
                raise SpecRewriteError("a write through two views of the same dimension (such as y[2:6][1:3] = v) "
                                       "has no Core ML slice-update form", op=f"specrewrite.coreml ({node.kind})",
                                       where=where(node),
                                       fix="rewrite the model first (specrewrite.coreml.convert), which turns each "
                                           "write into a scatter")
        else:
            order.append(place)
        views[place] = view
    if order == list(range(len(order))) and len(order) == len(chain):
        return own(context, node)
    if _NONE not in context:
        context.add(None, torch_name=_NONE)
    triples = [[_NONE, _NONE, _NONE] for _ in range(max(views) + 1)]   # whole dimensions
    for place, (_, triple) in views.items():
        triples[place] = triple
    return own(context, P.with_inputs(node, list(node.inputs[:2]) + [x for t in triples for x in t]))
