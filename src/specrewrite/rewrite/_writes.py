"""Writes into views (``y[..., j] = v``, ``y[t, idx] = v``, ``y.fill_``) as functional scatters.

A traced graph keeps such a write as ``copy_`` / ``fill_`` / ``index_put_`` on a chain of ``select`` / ``slice``
views. Exporters that read TorchScript lose the chain's dimensions: coremltools fuses the chain into one
slice-update that puts its n-th index on dimension n whatever dimension the view took, so ``y[..., j] = v`` on a
rank-5 ``y`` becomes a write into dimension 0 (an error when the shapes disagree, a silently wrong model when
they happen to agree). Here each write becomes ``select_scatter`` / ``slice_scatter`` / ``index_put`` of the
whole tensor, whose dimensions every exporter reads, and later uses of the tensor take the new value.

Only writes whose effect is plain to see are changed: into a fresh tensor (not a model input, a parameter or a
view of another tensor read elsewhere), through select / slice / real / imag views; any other write stays as it
was.
"""
from __future__ import annotations

import torch
import torch.fx as fx

aten = torch.ops.aten

_CHAIN = (aten.select.int, aten.slice.Tensor, aten.real.default, aten.imag.default)
_SPECIAL = (aten.copy_.default, aten.fill_.Scalar, aten.fill_.Tensor, aten.zero_.default, aten.index_put_.default)


def _functional(target):
    """The out-of-place overload of an in-place op that writes its first argument (aten.add_.Tensor ->
    aten.add.Tensor), else None."""
    if target in _SPECIAL:
        return target
    schema = getattr(target, "_schema", None)
    if schema is None or not schema.arguments or schema.arguments[0].alias_info is None \
            or not schema.arguments[0].alias_info.is_write or not schema.name.endswith("_"):
        return None
    packet = getattr(aten, schema.name.split("::")[-1][:-1], None)
    return getattr(packet, target._overloadname, None) if packet is not None else None


def _alias_kind(target):
    """'view' for an op whose result is a view of its input, 'write' for an in-place op, None otherwise."""
    schema = getattr(target, "_schema", None)
    infos = [r.alias_info for r in schema.returns if r.alias_info is not None] if schema is not None else []
    if not infos:
        return None
    return "write" if any(i.is_write for i in infos) else "view"


def _meta(node, root=None):
    """The node's value as a (fake) tensor: its meta, or the attribute itself for get_attr; else None."""
    v = node.meta.get("val") if isinstance(node, fx.Node) else None
    if v is None and root is not None and isinstance(node, fx.Node) and node.op == "get_attr":
        v = root
        for part in str(node.target).split("."):
            v = getattr(v, part, None)
    return v if isinstance(v, torch.Tensor) else None


def _sizes(graph, dst, val) -> list:
    """``dst``'s sizes as expand() takes them: ints where static, ``sym_size`` nodes where symbolic."""
    return [d if isinstance(d, int) else graph.call_function(aten.sym_size.int, (dst, i))
            for i, d in enumerate(val.shape)]


def _same_static_shape(a, b) -> bool:
    return all(isinstance(d, int) for d in (*a.shape, *b.shape)) and tuple(a.shape) == tuple(b.shape)


def _views_read_after(base, write, pos, also=()) -> list:
    """Views of ``base`` made before ``write`` whose values are read after it, with the views they are taken from,
    parents first: each reader after the write must see the written values, so it gets the same view taken
    again from the new tensor."""
    order, stack, seen = [], [base], {base}
    while stack:
        n = stack.pop(0)
        for u in n.users:
            if u is write or u in seen or pos[u] > pos[write]:
                continue
            if u.op == "call_function" and _alias_kind(u.target) == "view" and u.args and u.args[0] is n:
                seen.add(u)
                stack.append(u)
                order.append(u)
    needed = set()
    for view in order:
        if view in also or any(pos[r] > pos[write] for r in view.users):
            while view is not base and view not in needed:
                needed.add(view)
                view = view.args[0]
    return [v for v in order if v in needed]


class _Maker:
    """Creates the functional nodes of one write with the metadata the graph pass reads: the write's source line
    and each value's fake tensor (the op run on its inputs' fake tensors), so the pass can lower them."""

    def __init__(self, graph, write):
        self.graph, self.write = graph, write

    def call_function(self, target, args, kwargs=None):
        n = self.graph.call_function(target, tuple(args), dict(kwargs or {}))
        if "stack_trace" in self.write.meta:
            n.meta["stack_trace"] = self.write.meta["stack_trace"]
        known = []

        def val(a):
            v = a.meta.get("val") if isinstance(a, fx.Node) else a
            known.append(v is not None)
            return v

        args, kwargs = fx.node.map_aggregate((n.args, n.kwargs), val)
        if all(known):
            try:
                n.meta["val"] = target(*args, **kwargs)
            except Exception:  # noqa: BLE001 - metadata only: the node computes the same either way
                pass
        return n


def _new_value(gm, write, dst, val):
    """The value the innermost view holds after the write, as a functional op (None: leave the write)."""
    graph, t = _Maker(gm.graph, write), write.target
    if t is aten.index_put_.default:
        return graph.call_function(aten.index_put.default, (dst, *write.args[1:]), dict(write.kwargs))
    if t is aten.copy_.default:
        src = write.args[1]
        sv = _meta(src, gm)
        if sv is None:
            return None
        if sv.dtype != val.dtype:
            src = graph.call_function(aten._to_copy.default, (src,), {"dtype": val.dtype})
        if not _same_static_shape(sv, val):
            src = graph.call_function(aten.expand.default, (src, _sizes(graph, dst, val)))
        return src
    if t not in _SPECIAL:
        f = _functional(t)
        tensors = [a for a in write.args[1:] if isinstance(a, fx.Node)]
        if any(_meta(a, gm) is None for a in tensors):
            return None
        out = graph.call_function(f, (dst, *write.args[1:]), dict(write.kwargs))
        if any(_meta(a, gm).dtype != val.dtype for a in tensors):
            out = graph.call_function(aten._to_copy.default, (out,), {"dtype": val.dtype})
        return out
    fill = 0 if t is aten.zero_.default else write.args[1]
    if isinstance(fill, fx.Node):
        fill = graph.call_function(aten._to_copy.default, (fill,), {"dtype": val.dtype})
        return graph.call_function(aten.expand.default, (fill, _sizes(graph, dst, val)))
    return graph.call_function(aten.full_like.default, (dst, fill))


def functional_writes(gm: fx.GraphModule) -> int:
    """Turn the plain writes of ``gm`` into scatters (in place on the graph); returns how many."""
    graph = gm.graph
    done = 0
    for write in list(graph.nodes):
        if write.op != "call_function" or _functional(write.target) is None:
            continue
        if write.target is aten.detach_.default:   # values unchanged: the op goes, its readers read its input
            write.replace_all_uses_with(write.args[0])
            graph.erase_node(write)
            done += 1
            continue
        chain, base = [], write.args[0]
        while isinstance(base, fx.Node) and base.op == "call_function" and base.target in _CHAIN:
            chain.append(base)
            base = base.args[0]
        if not isinstance(base, fx.Node) or base.op != "call_function":
            continue   # a write into an input or a parameter stays as it is
        pos = {n: i for i, n in enumerate(graph.nodes)}
        if _alias_kind(base.target):
            # a write into a view of another tensor: only when nothing reads that tensor (or any view of it)
            # after the write except through the op's own result
            root = base
            while root.op == "call_function" and _alias_kind(root.target) and root.args \
                    and isinstance(root.args[0], fx.Node):
                root = root.args[0]
            if chain or _views_read_after(root, write, pos) or any(pos[u] > pos[write] for u in root.users):
                continue
        inner = chain[0] if chain else base
        val = _meta(inner)
        if val is None or any(_meta(c) is None for c in chain) or _meta(base) is None:
            continue
        stale = _views_read_after(base, write, pos, chain[:1] if write.users else [])
        make = _Maker(graph, write)
        with graph.inserting_before(write):
            new = _new_value(gm, write, inner, val)
            if new is None:
                continue
            for view in chain:   # innermost first: write the new part back into its parent
                parent = view.args[0]
                if view.target is aten.select.int:
                    new = make.call_function(aten.select_scatter.default, (parent, new, *view.args[1:]))
                elif view.target is aten.real.default:   # z.real += 1: z becomes complex(new, z.imag)
                    new = make.call_function(aten.complex.default,
                                             (new, make.call_function(aten.imag.default, (parent,))))
                elif view.target is aten.imag.default:
                    new = make.call_function(aten.complex.default,
                                             (make.call_function(aten.real.default, (parent,)), new))
                else:
                    new = make.call_function(aten.slice_scatter.default, (parent, new, *view.args[1:]))
            new.meta["val"] = base.meta["val"]
            again = {base: new}
            for view in stale:   # parents first, so each parent's new view exists
                again[view] = graph.call_function(view.target, (again[view.args[0]], *view.args[1:]),
                                                  dict(view.kwargs))
                again[view].meta = dict(view.meta)
        if write.users:   # the op returns what it wrote into: its readers read the new value
            write.replace_all_uses_with(again[chain[0]] if chain else new)
        for old, fresh in again.items():
            for u in list(old.users):
                if pos.get(u, -1) > pos[write]:
                    u.replace_input_with(old, fresh)
        graph.erase_node(write)
        done += 1
    if done:
        graph.lint()
        gm.recompile()
    return done
