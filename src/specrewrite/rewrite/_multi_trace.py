"""Dynamic lengths for a model that only a trace captures.

A model torch.export cannot capture (numpy in forward, say) is traced with real inputs (``capture.via_trace``),
and the trace writes every size it meets as a number: ``view(x, [2, 1000])``, ``istft(..., length=16000)``. One
trace cannot say which numbers are sizes. Three can: the model is traced again at two other lengths (and batch
sizes), the graphs must match op for op, and each number that changes between them is looked up among the sizes
of the tensors before it (the same size, a size plus or times a constant, a size over a constant, a product of
adjacent sizes), the same expression at all three. Each becomes ``aten.sym_size`` arithmetic in the graph, which
is then run against eager at a fourth shape and captured by torch.export with the axes dynamic, like any model.
Where the graphs differ (another path at another length), a constant tensor depends on the length (a window
computed in numpy) or a number matches no size, the shapes stay fixed and the report says why and where.
"""
from __future__ import annotations

import operator
from typing import Any, Callable, List, Optional, Tuple

import torch
import torch.fx as fx

from .._torch_private import positional_signature
from ._nodes import attr_of as _attr, where_of
from .verify import _clones, _first_line

#: sizes of the extra traces: time + 25 % (odd) and + 50 % + 3, batch + 1 and + 2; the check at + 75 % + 5, + 3
_TIME_STEPS = (lambda n: n + (n // 4 | 1), lambda n: n + n // 2 + 3, lambda n: n + 3 * n // 4 + 5)
_BATCH_STEPS = (lambda n: n + 1, lambda n: n + 2, lambda n: n + 3)


def wanted_axes(plan) -> list:
    """The batch and time axes still asked to stay dynamic."""
    return [ax for ax in plan.axes if ax.requested and ax.role in ("time", "batch")
            and (plan.names.index(ax.input), ax.axis) not in plan.fixed_reasons]


def moved_inputs(plan, axes, step: int) -> tuple:
    """The example inputs with each of ``axes`` moved by the ``step``-th size step."""
    args = plan.args
    for ax in axes:
        size = (_TIME_STEPS if ax.role == "time" else _BATCH_STEPS)[step](ax.size)
        if ax.max is not None:
            size = min(size, ax.max)
        args = plan.inputs_at(ax, size, base=args)
    return args


def generalise(work, plan, gm: fx.GraphModule, attr_map, trace: Callable,
               judge: Callable) -> Tuple[Optional[fx.GraphModule], Any]:
    """(a module computing ``gm`` at any size of the moved axes, [(axis left fixed, why)]) or (None, why not).
    The batch and time axes are moved together; where that fails, the time axes alone, then the batch alone
    (a model whose code pins one of them)."""
    wanted = wanted_axes(plan)
    tries = [wanted] + [[ax for ax in wanted if ax.role == role] for role in ("time", "batch")
                        if len({ax.role for ax in wanted}) > 1]
    first_why = ""
    for axes in tries:
        if not axes:
            continue
        gen, why = _generalise(work, plan, gm, attr_map, trace, judge, axes)
        if gen is not None:
            why_kept = f"traced at other sizes with this axis moved too, {first_why}"
            return gen, [(ax, why_kept) for ax in wanted if ax not in axes]
        first_why = first_why or why
    return None, first_why


def _generalise(work, plan, gm, attr_map, trace, judge, axes) -> Tuple[Optional[fx.GraphModule], str]:
    try:
        others = [trace(work, _clones(moved_inputs(plan, axes, k)))[0] for k in (0, 1)]
    except Exception as e:  # noqa: BLE001 - the model's own code refuses other sizes
        return None, f"the model cannot be traced at another size ({_first_line(e)})"
    gms = [gm] + others
    found = differences(gms)
    if isinstance(found, tuple):
        return None, found[0] + _at(found[1])
    graph = _copy(gm)
    nodes = list(graph.nodes)
    lists = [list(g.graph.nodes) for g in gms]
    index = {n: j for j, n in enumerate(lists[0])}
    shapes = [[_shape(n) for n in ns] for ns in lists]
    for i, path, values in found:
        expr = _expression(lists, index, shapes, i, values)
        if expr is None:
            return None, ("a number that changes with the size matches no size of the tensors before it ("
                          f"{values[0]}, {values[1]}, {values[2]} at the three sizes traced)" + _at(nodes[i]))
        with graph.inserting_before(nodes[i]):
            value = _emit(graph, nodes, expr)
        nodes[i].args, nodes[i].kwargs = _replaced((nodes[i].args, nodes[i].kwargs), path, value)
    gen = _as_module(gm, graph, attr_map, plan.names)
    check = moved_inputs(plan, axes, 2)
    try:
        with torch.no_grad():
            ok = judge(work, check, gen(*_clones(check)), work(*_clones(check)))[0]
    except Exception as e:  # noqa: BLE001 - a size left as a number somewhere the three traces agreed
        return None, f"the graph made from three sizes fails at a fourth ({_first_line(e)})"
    if not ok:
        return None, "the graph made from three sizes differs from eager at a fourth"
    return gen, ""


# ------------------------------------------------------------------------------ comparing the traces
def differences(gms) -> Any:
    """[(node index, argument path, values at each trace)] for every number that differs between the traces
    (graphs traced at other sizes or values), or (why they cannot be compared, the first node that differs)."""
    lists = [list(g.graph.nodes) for g in gms]
    if len({len(n) for n in lists}) != 1:
        return "at another size the model's code runs other ops", _first_other(lists)
    index = [{n: i for i, n in enumerate(ns)} for ns in lists]
    out = []
    for i, group in enumerate(zip(*lists)):
        first = group[0]
        if any(n.op != first.op or n.target != first.target for n in group):
            return "at another size the model's code takes another path", first
        if first.op == "get_attr":
            vals = [_attr(g, n.target) for g, n in zip(gms, group)]
            if not all(_equal(vals[0], v) for v in vals[1:]):
                return "a constant tensor changes with the size (computed outside torch)", first
            continue
        leaves = [_leaves((n.args, n.kwargs), idx) for n, idx in zip(group, index)]
        if len({len(lv) for lv in leaves}) != 1:
            return "at another size an op takes other arguments", first
        for (path, a), *rest in zip(*leaves):
            vals = [a] + [r[1] for r in rest]
            if all(_same_leaf(a, v) for v in vals[1:]):
                continue
            if all(type(v) is int for v in vals):
                out.append((i, path, vals))
            else:
                return "a value that changes with the size is not a whole number (a float of the size)", first
    return out


def _leaves(x, index, path=()) -> list:
    if isinstance(x, (list, tuple)):
        return [leaf for k, v in enumerate(x) for leaf in _leaves(v, index, path + (k,))]
    if isinstance(x, dict):
        return [leaf for k in sorted(x) for leaf in _leaves(x[k], index, path + (k,))]
    return [(path, ("node", index[x]) if isinstance(x, fx.Node) else x)]


def _same_leaf(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return _equal(a, b)
    try:
        return type(a) is type(b) and bool(a == b or (a != a and b != b))
    except Exception:  # noqa: BLE001 - no equality (a device, a layout): same by type
        return type(a) is type(b)


def _equal(a, b) -> bool:
    return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and \
        a.dtype == b.dtype and bool(torch.equal(a, b) or (a.is_floating_point() and torch.allclose(
            a, b, rtol=0, atol=0, equal_nan=True)))


# ------------------------------------------------------------------------------ the size behind a number
def _shape(node) -> Optional[tuple]:
    v = node.meta.get("val")
    return tuple(int(s) for s in v.shape) if isinstance(v, torch.Tensor) else None


def _expression(lists, index, all_shapes, i: int, values) -> Optional[tuple]:
    """The first of: a size equal to the number at every trace, the same plus, times or over a constant, a
    product of adjacent sizes of one tensor; searched from the node's own inputs, then the model's inputs, then
    backwards from the node."""
    node = lists[0][i]
    order, seen = [], set()
    for j in [index[a] for a in node.all_input_nodes] + \
            [k for k, n in enumerate(lists[0][:i]) if n.op == "placeholder"] + list(range(i - 1, -1, -1)):
        if j not in seen:
            seen.add(j)
            order.append(j)
    shapes = {j: [s[j] for s in all_shapes] for j in order}
    shapes = {j: s for j, s in shapes.items() if all(x is not None for x in s) and len({len(x) for x in s}) == 1}
    v = values
    for kind in ("same", "plus", "times", "over", "product"):
        for j in order:
            sh = shapes.get(j)
            if sh is None:
                continue
            for d in range(len(sh[0])):
                s = [x[d] for x in sh]
                if len(set(s)) == 1:   # a size that does not move says nothing
                    continue
                if kind == "same" and s == v:
                    return (j, d, None, 0)
                if kind == "plus" and len({a - b for a, b in zip(v, s)}) == 1:
                    return (j, d, operator.add, v[0] - s[0])
                if kind == "times" and s[0] and v[0] % s[0] == 0 and all(a == b * (v[0] // s[0]) for a, b in zip(v, s)):
                    return (j, d, operator.mul, v[0] // s[0])
                if kind == "over" and v[0] > 0 and s[0] % v[0] == 0 and all(a == b // (s[0] // v[0])
                                                                            for a, b in zip(v, s)):
                    return (j, d, operator.floordiv, s[0] // v[0])
                if kind == "product":
                    for e in range(d + 1, len(sh[0])):
                        if all(_prod(x[d:e + 1]) == a for x, a in zip(sh, v)):
                            return (j, (d, e), None, 0)
    return None


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


def _emit(graph: fx.Graph, nodes, expr) -> fx.Node:
    j, d, op, c = expr
    size = torch.ops.aten.sym_size.int
    if isinstance(d, tuple):
        value = graph.call_function(size, (nodes[j], d[0]))
        for k in range(d[0] + 1, d[1] + 1):
            value = graph.call_function(operator.mul, (value, graph.call_function(size, (nodes[j], k))))
        return value
    value = graph.call_function(size, (nodes[j], d))
    return value if op is None else graph.call_function(op, (value, c))


def _replaced(x, path, value):
    if not path:
        return value
    k, rest = path[0], path[1:]
    if isinstance(x, dict):
        return {**x, k: _replaced(x[k], rest, value)}
    items = list(x)
    items[k] = _replaced(items[k], rest, value)
    return type(x)(items) if isinstance(x, tuple) else items


# ------------------------------------------------------------------------------ the module
def _copy(gm: fx.GraphModule) -> fx.Graph:
    """The trace's graph, copied node by node (not its pytree signature: torch warns on copying those specs)."""
    graph = fx.Graph()
    graph.output(graph.graph_copy(gm.graph, {}))
    return graph


def _as_module(gm: fx.GraphModule, graph: fx.Graph, attr_map, names: List[str]) -> fx.GraphModule:
    """A module over ``graph`` with the trace's parameters and buffers back as attributes (the trace took them as
    leading inputs; ``gm`` holds them under their qualified names), its inputs named as the model's."""
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    first = next(n for n in graph.nodes if n.op != "placeholder")
    for n in placeholders:
        if n.name in (attr_map or {}):
            with graph.inserting_before(first):
                attr = graph.get_attr(attr_map[n.name])
            attr.meta = dict(n.meta)
            n.replace_all_uses_with(attr)
            graph.erase_node(n)
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    for n, name in zip(inputs, names):
        n.target = name
    positional_signature(graph, [n.target for n in inputs], gm.graph)
    return fx.GraphModule(gm, graph)


def _first_other(lists) -> Optional[fx.Node]:
    for group in zip(*lists):
        if any(n.op != group[0].op or n.target != group[0].target for n in group):
            return group[0]
    return None


def source_line(node) -> str:
    """The node's source line; a constant has none, its first user that has one speaks for it."""
    for n in [node, *node.users] if node is not None else []:
        w = where_of(n)
        if w:
            return w
    return ""


def _at(node) -> str:
    w = source_line(node)
    return f" at {w}" if w else ""
