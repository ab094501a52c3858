"""Values of the inputs baked into a traced graph.

A model that torch.export cannot capture is traced with the example inputs (``capture.via_trace``). What its
Python reads out of an input (``x.numpy()``, ``.item()``, ``.tolist()``) then enters the graph as a constant or
a literal, and the graph is right for the example's values only: right at the example, where verification
runs, and wrong for every other clip of the same shape. The model is traced a second time with other values
of the same shapes (each floating input's values permuted and shrunk, so signs and ranges stay the model's);
a node whose constant, literal or op differs between the two graphs depends on the values, and is named by its
source line.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.fx as fx

from ._nodes import where_of


def other_values(args: tuple) -> Optional[tuple]:
    """``args`` with each floating tensor's values permuted (a fixed seed); None when no input would change."""
    g = torch.Generator().manual_seed(4321)
    out, changed = [], False
    for a in args:
        if isinstance(a, torch.Tensor) and (a.is_floating_point() or a.is_complex()) and a.numel() > 1:
            flat = a.detach().reshape(-1)
            # permuted, and each value shrunk by a factor in (0.5, 1]: signs and ranges stay the model's, and
            # what a permutation keeps (the maximum, the sum) changes too
            shrink = 1 - 0.5 * torch.rand(flat.shape, generator=g, dtype=torch.float64)
            b = (flat[torch.randperm(flat.numel(), generator=g)] * shrink.to(flat.dtype)).reshape(a.shape)
            changed = changed or not torch.equal(b, a)
            out.append(b)
        else:
            out.append(a)
    return tuple(out) if changed else None


def values_read(trace: Callable, model, args: tuple, gm: fx.GraphModule) -> Optional[str]:
    """Where ``gm`` (traced at ``args``) holds something of the inputs' values: 'file:line in func: code' of the
    first node that differs from a trace at other values, '' when that line is unknown; None when the two
    graphs are the same (or the second trace cannot be made: the model's own code then refuses other values,
    which verification sees)."""
    other = other_values(args)
    if other is None:
        return None
    try:
        gm2 = trace(model, other)[0]
    except Exception:  # noqa: BLE001 - see the docstring
        return None
    return _first_difference(gm, gm2)


def _first_difference(gm: fx.GraphModule, gm2: fx.GraphModule) -> Optional[str]:
    a, b = list(gm.graph.nodes), list(gm2.graph.nodes)
    index_a = {n: i for i, n in enumerate(a)}
    index_b = {n: i for i, n in enumerate(b)}
    for i, (x, y) in enumerate(zip(a, b)):
        same = x.op == y.op and x.target == y.target if x.op != "get_attr" else \
            y.op == "get_attr" and _same(_attr(gm, x.target), _attr(gm2, y.target))
        same = same and _same_args((x.args, x.kwargs), (y.args, y.kwargs), index_a, index_b)
        if not same:
            return _where(x)
    if len(a) != len(b):
        return _where(a[min(len(a), len(b)) - 1]) if a else ""
    return None


def _where(node: fx.Node) -> str:
    """The node's source line; a constant has none, its first user that has one speaks for it."""
    for n in [node, *node.users]:
        w = where_of(n)
        if w:
            return w
    return ""


def _attr(root, qualname):
    v = root
    for part in qualname.split("."):
        v = getattr(v, part, None)
    return v


def _same(x, y) -> bool:
    if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
        return isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.shape == y.shape and \
            x.dtype == y.dtype and bool(torch.equal(x, y) or (x.is_floating_point() and
                                                              torch.equal(x.isnan(), y.isnan()) and
                                                              torch.equal(x[~x.isnan()], y[~y.isnan()])))
    return type(x) is type(y) and (x == y or (x != x and y != y))   # nan literals are the same value


def _same_args(x, y, index_a, index_b) -> bool:
    if isinstance(x, fx.Node) or isinstance(y, fx.Node):
        return isinstance(x, fx.Node) and isinstance(y, fx.Node) and index_a[x] == index_b[y]
    if isinstance(x, (list, tuple)):
        return isinstance(y, (list, tuple)) and len(x) == len(y) and \
            all(_same_args(u, v, index_a, index_b) for u, v in zip(x, y))
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and \
            all(_same_args(x[k], y[k], index_a, index_b) for k in x)
    try:
        return _same(x, y)
    except Exception:  # noqa: BLE001 - an argument with no equality (a device, a memory format): same by type
        return type(x) is type(y)
