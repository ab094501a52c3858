"""Writes into a slice of a tensor held as a concatenation of slices.

A model that writes parts of a tensor (``v[..., 0] = re``, ``out[:, 2:5] = y``, open-unmix's Wiener filter with
its (..., 2) real pairs and 2 x 2 inverses written element by element) becomes, in the captured graph,
``select_scatter`` / ``slice_scatter``. torch.onnx writes each as ``ScatterElements`` with an index tensor as
large as the written part, computed at run time: in ONNX Runtime that is a read of every index and a scattered
write, about 9 ms for one (200, 2049, 2, 2) write. Open-unmix has 485 of them, 2.3 s of its 2.8 s.

The same value is the concatenation along that axis of the part before the write, the written value and the part
after it: two slices and a ``cat``, contiguous copies every runtime does at memory speed, and the same numbers (no
arithmetic). Done where the axis has a static size and the bounds are static integers with step 1; other writes
are left as they are.
"""
from __future__ import annotations

import torch
import torch.fx as fx

aten = torch.ops.aten

__all__ = ["scatters_as_cats"]


def scatters_as_cats(graph: fx.Graph) -> int:
    """Replace each static ``select_scatter`` / ``slice_scatter`` of ``graph`` in place; returns how many."""
    done = 0
    for n in list(graph.nodes):
        if n.op != "call_function":
            continue
        if n.target in (aten.select.int, aten.slice.Tensor):
            _read_of_cat(graph, n)   # a read of an earlier write: the part written, not a copy of it all
            continue
        if n.target not in (aten.select_scatter.default, aten.slice_scatter.default):
            continue
        span = _span(n)
        if span is None:
            continue
        x, src, dim, start, stop, size = span
        with graph.inserting_before(n):
            parts = _slices(graph, n, x, dim, 0, start, size)
            if n.target is aten.select_scatter.default:
                src = _call(graph, n, aten.unsqueeze.default, (src, dim))
            parts += _parts(src, dim) + _slices(graph, n, x, dim, stop, size, size)
            new = parts[0] if len(parts) == 1 else _call(graph, n, aten.cat.default, (parts, dim))
        n.replace_all_uses_with(new)
        graph.erase_node(n)
        done += 1
    return done


def _span(n: fx.Node):
    """(x, src, dim, start, stop, size) of a write covering [start, stop) of a static axis, or None."""
    val = n.meta.get("val")
    if not isinstance(val, torch.Tensor) or val.dim() == 0:
        return None
    x, src = n.args[0], n.args[1]
    if not isinstance(x, fx.Node) or not isinstance(src, fx.Node) or _dtype(src) != val.dtype:
        return None
    rest = list(n.args[2:])
    dim = rest[0] if rest else n.kwargs.get("dim", 0)
    if not isinstance(dim, int):
        return None
    dim %= val.dim()
    size = val.shape[dim]
    if not isinstance(size, int):
        return None
    if n.target is aten.select_scatter.default:
        index = _index(rest[1] if len(rest) > 1 else n.kwargs.get("index"), size)
        return None if index is None else (x, src, dim, index, index + 1, size)
    names = ("start", "end", "step")
    span = _bounds(*(rest[i + 1] if len(rest) > i + 1 else n.kwargs.get(k, d)
                     for i, (k, d) in enumerate(zip(names, (None, None, 1)))), size=size)
    return None if span is None else (x, src, dim) + span + (size,)   # (an empty write: left as it is)


def _index(i, size: int):
    """A select's index in [0, size), or None where it is not a static one inside the axis."""
    return i % size if isinstance(i, int) and -size <= i < size else None


def _bounds(start, end, step, size: int):
    """(start, stop) of a step-1 slice with static bounds, clamped to [0, size] as Python clamps them, or None
    (another step, a bound computed at run time, or an empty range)."""
    if step != 1 or not all(v is None or isinstance(v, int) for v in (start, end)):
        return None
    start = 0 if start is None else min(max(start + size if start < 0 else start, 0), size)
    stop = size if end is None else min(max(end + size if end < 0 else end, 0), size)
    return (start, stop) if start < stop else None


def _read_of_cat(graph: fx.Graph, n: fx.Node) -> None:
    x, rank = n.args[0], _rank(n.args[0]) if isinstance(n.args[0], fx.Node) else None
    if not rank or not isinstance(n.args[1] if len(n.args) > 1 else 0, int):
        return
    dim = (n.args[1] if len(n.args) > 1 else 0) % rank
    parts = _parts(x, dim)
    if len(parts) == 1:
        return
    size = sum(_size(p, dim) for p in parts)
    if n.target is aten.select.int:
        index = _index(n.args[2], size) if len(n.args) > 2 else None
        if index is None:
            return
        with graph.inserting_before(n):
            new = _pick(graph, n, x, dim, index)
    else:
        span = _bounds(*(list(n.args[2:]) + [None, None, 1][len(n.args) - 2:])[:3], size=size)
        if span is None:
            return
        with graph.inserting_before(n):
            parts = _slices(graph, n, x, dim, *span, size)
            new = parts[0] if len(parts) == 1 else _call(graph, n, aten.cat.default, (parts, dim))
    n.replace_all_uses_with(new)
    graph.erase_node(n)


def _pick(graph: fx.Graph, like: fx.Node, x: fx.Node, dim: int, i: int) -> fx.Node:
    """``x.select(dim, i)``, read from the part of ``x`` that holds it (through cats, slices and unsqueezes)."""
    at, parts = 0, _parts(x, dim)
    if len(parts) == 1:
        return _call(graph, like, aten.select.int, (x, dim, i))
    for p in parts:
        size = _size(p, dim)
        if at <= i < at + size:
            j = i - at
            if p.op == "call_function":   # (a part, never ``x`` itself: it is a cat of two or more)
                if p.target is aten.unsqueeze.default and isinstance(p.args[1], int) and p.args[1] % _rank(p) == dim:
                    return p.args[0]
                if p.target is aten.slice.Tensor and _rank(p.args[0]) and len(p.args) >= 3 and \
                        p.args[1] % _rank(p) == dim and isinstance(p.args[2], int) and p.args[2] >= 0 and \
                        (len(p.args) < 5 or p.args[4] == 1):
                    return _pick(graph, like, p.args[0], dim, p.args[2] + j)
            return _call(graph, like, aten.select.int, (p, dim, j))
        at += size
    raise AssertionError("index outside the concatenation")


def _parts(x: fx.Node, dim: int) -> list:
    """The parts of ``x`` along ``dim`` when it is a cat along that axis of parts of static sizes, else [x]."""
    if x.op == "call_function" and x.target is aten.cat.default:
        parts = x.args[0]
        d = x.args[1] if len(x.args) > 1 else x.kwargs.get("dim", 0)
        rank = _rank(x)
        if rank and isinstance(d, int) and d % rank == dim and all(_size(p, dim) is not None for p in parts):
            return list(parts)
    return [x]


def _slices(graph: fx.Graph, like: fx.Node, x: fx.Node, dim: int, a: int, b: int, size: int) -> list:
    """[a, b) of ``x`` along ``dim`` as a list of nodes to concatenate: where ``x`` is itself a concatenation (an
    earlier write) and the range falls on its parts' boundaries, those parts, so a run of writes that covers an
    axis part by part becomes one ``cat`` of what was written."""
    if b <= a:
        return []
    out, at, parts = [], 0, _parts(x, dim)
    for p in parts:
        size = _size(p, dim) if len(parts) > 1 else size   # (``x`` itself: the size its write had)
        lo, hi = max(a, at), min(b, at + size)
        if (lo, hi) == (at, at + size):
            out.append(p)
        elif lo < hi:
            out.append(_call(graph, like, aten.slice.Tensor, (p, dim, lo - at, hi - at)))
        at += size
    return out


def _meta(n):
    """(shape, dtype) of a node: from the capture's value, or as this pass computed it for a node it made (running
    each new op on fake tensors instead cost 5 ms a node, 6 s on open-unmix)."""
    if not isinstance(n, fx.Node):
        return None
    if "sr_shape" in n.meta:
        return n.meta["sr_shape"]
    v = n.meta.get("val")
    return (tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else None


def _rank(n: fx.Node):
    m = _meta(n)
    return None if m is None else len(m[0])


def _size(n: fx.Node, dim: int):
    m = _meta(n)
    if m is None or len(m[0]) <= dim or not isinstance(m[0][dim], int):
        return None
    return m[0][dim]


def _dtype(n: fx.Node):
    m = _meta(n)
    return None if m is None else m[1]


def _call(graph: fx.Graph, like: fx.Node, op, args) -> fx.Node:
    new = graph.call_function(op, args)
    for key in ("stack_trace", "nn_module_stack", "source_fn_stack"):
        if key in like.meta:
            new.meta[key] = like.meta[key]
    first = _meta(args[0][0] if op is aten.cat.default else args[0])
    if first is not None:
        shape, dim = list(first[0]), args[1]
        if op is aten.slice.Tensor:
            shape[dim] = args[3] - args[2]
        elif op is aten.unsqueeze.default:
            shape.insert(dim % (len(shape) + 1), 1)
        elif op is aten.select.int:
            del shape[dim]
        elif op is aten.cat.default:
            sizes = [_size(p, dim) for p in args[0]]
            shape[dim] = sum(sizes) if None not in sizes else None
        new.meta["sr_shape"] = (tuple(shape), first[1])
    return new
