"""Tensors of rank 6 and more folded to rank 5 (Core ML holds rank 5 at most), before lowering.

Separators build such tensors themselves: HDemucs views its mask as (batch, sources, channels, 2, freq, frames)
before ``view_as_complex``; open-unmix keeps its Wiener estimates as (batch, frames, freq, channels, 2,
sources). A complex tensor of rank 5 counts as rank 6 too, since the rewrite carries it as (..., 2) real pairs.
Such a model converts to ONNX but not to Core ML, whose converter stops at the first rank-6 tensor.

Each wide value (rank over 5, counting a complex one's pair axis) is held instead by a reshape of it that merges
adjacent axes and drops axes of static size 1. A reshape keeps the row-major order, so the folded value is the
same data: a view / reshape of it is the same op with the folded sizes, and a pointwise op is the same op. Other
ops constrain which axes may merge: an axis a ``select`` / ``slice`` / pad / ``cat`` works on stays an axis of its
own; a ``permute`` merges only axes that stay adjacent and in order; an operand broadcast along an axis keeps that
axis apart. Constraints travel between values through each op's axis map (one union-find over the boundaries
between adjacent axes), so every value's grouping fits every op that reads or writes it.

When any wide value touches an op without a rule here, or cannot fold to rank 5, the graph is left as it was
(the Core ML converter then names the rank; ONNX and the other targets are unaffected).
"""
from __future__ import annotations

import operator
from typing import Dict, List, Optional, Tuple

import torch
import torch.fx as fx

from ..kernels.fold_plan import FoldPlan, group_pad, group_perm, group_size, is_unit, permute_map

aten = torch.ops.aten

MAX_RANK = 5

_RESHAPES = {aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.unsqueeze.default,
             aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.flatten.using_ints,
             aten.unflatten.int}
_FACTORIES = {aten.zeros.default, aten.ones.default, aten.full.default, aten.empty.memory_format}
_NEW = {aten.new_zeros.default, aten.new_ones.default, aten.new_full.default, aten.new_empty.default}
_SAME = {aten.clone.default, aten.contiguous.default, aten.alias.default, aten.detach.default,
         aten._to_copy.default, aten.lift_fresh_copy.default, aten.copy_.default, aten.copy.default,
         aten.zeros_like.default, aten.ones_like.default, aten.full_like.default, aten.empty_like.default,
         aten.polar.default, aten.complex.default, aten.real.default, aten.imag.default}


_REDUCTIONS = {aten.sum.dim_IntList, aten.mean.dim, aten.amax.default, aten.amin.default}


class _Abort(Exception):
    """The graph is left unchanged."""


def _val(n):
    v = n.meta.get("val") if isinstance(n, fx.Node) else None
    return v if isinstance(v, torch.Tensor) else None


def _erank(v) -> int:
    return v.dim() + int(v.is_complex())


def _kind(n) -> Optional[str]:
    t = n.target
    if n.op != "call_function" or not isinstance(t, torch._ops.OpOverload):
        return None
    if t in _RESHAPES:
        return "reshape"
    if t in _FACTORIES or t in _NEW:
        return "factory"
    if t in (aten.permute.default, aten.transpose.int):
        return "permute"
    if t is aten.expand.default:
        return "expand"
    if t is aten.einsum.default:
        return "einsum"
    if t in _REDUCTIONS:
        return "reduce"
    if t in (aten.select.int, aten.slice.Tensor, aten.pad.default, aten.constant_pad_nd.default,
             aten.cat.default, aten.select_scatter.default, aten.slice_scatter.default,
             aten.view_as_complex.default, aten.view_as_real.default):
        return t.__name__.split(".")[0]
    if t in _SAME or torch.Tag.pointwise in t.tags:
        return "same"
    return None


class _Folder:
    def __init__(self, gm: fx.GraphModule):
        self.gm, self.graph = gm, gm.graph
        self.wide = [n for n in self.graph.nodes if _val(n) is not None and _erank(_val(n)) > MAX_RANK]
        self.plan = FoldPlan(MAX_RANK)
        for n in self.wide:
            self.plan.value(n, list(_val(n).shape), int(_val(n).is_complex()))
        self.comp: Dict[fx.Node, fx.Node] = {}
        self.sym_nodes: Dict = {}
        self.replaced: List[Tuple[fx.Node, fx.Node]] = []
        self.expr_cache: Dict = {}
        self.late_syms: Dict = {}
        self.pos: Dict = {}

    # ---------------------------------------------------------------- analysis
    def ops(self) -> List[fx.Node]:
        wide = set(self.wide)
        touched = set()
        for n in self.wide:
            touched.add(n)
            touched.update(n.users)
        ops = [n for n in self.graph.nodes if n in touched]
        for n in ops:
            if n.op == "output" or _kind(n) is None:
                raise _Abort(f"{n.target} on a tensor of rank over {MAX_RANK}")
            if n.kwargs.get("out") is not None:
                raise _Abort("out= on a wide tensor")
        self.wide_set = wide
        return ops

    def pin(self, n, axes):
        self.plan.pin(n, axes)

    def axes_of(self, n) -> List[int]:
        """Axes an op works on (pinned: an axis of its own, kept even when of size 1)."""
        k, a = _kind(n), n.args
        if k in ("select", "slice", "select_scatter", "slice_scatter"):
            i = 1 if k in ("select", "slice") else 2
            return [a[i] if len(a) > i else n.kwargs.get("dim", 0)]
        if k in ("pad", "constant_pad_nd"):
            pad = list(a[1])
            r = _val(a[0]).dim()
            return [r - 1 - i for i in range(len(pad) // 2) if not (pad[2 * i] == 0 and pad[2 * i + 1] == 0)]
        if k == "cat":
            return [a[1] if len(a) > 1 else n.kwargs.get("dim", 0)]
        return []

    def analyse(self, ops):
        for n in ops:
            k = _kind(n)
            axes = self.axes_of(n)
            if k == "select":
                self.pin(n.args[0], [] if is_unit(_val(n.args[0]).shape[axes[0]]) else axes)
            elif k in ("slice", "pad", "constant_pad_nd"):
                self.pin(n.args[0], axes)
                self.pin(n, axes)
            elif k == "cat":
                for t in n.args[0]:
                    self.pin(t, axes)
                self.pin(n, axes)
            elif k in ("select_scatter", "slice_scatter"):
                self.pin(n.args[0], axes)
                self.pin(n, axes)
            elif k == "reduce":
                self.pin(n.args[0], self._reduced(n))
            elif k == "einsum" and n in self.wide_set:
                # two adjacent result axes merge only where every operand holds both, next to each other and in
                # that order (the operands are then reshaped alike): cut the others
                letters, ops_letters = _einsum_letters(n)
                for i in range(len(letters) - 1):
                    a_, b_ = letters[i], letters[i + 1]
                    if not all((a_ in o) == (b_ in o) and (a_ not in o or o.index(b_) == o.index(a_) + 1)
                               for o in ops_letters):
                        self.plan.cut_apart(n, range(i + 1))
            elif k == "view_as_real":
                self.pin(n, [-1])
        for n in ops:
            self.link_op(n)

    def link_op(self, n):
        k, a = _kind(n), n.args
        if n not in self.wide_set and not any(x in self.wide_set for x in n.all_input_nodes):
            return
        out = _val(n)
        if k == "permute":
            self.plan.link(a[0], n, permute_map(self._perm(n)))
        elif k in ("select", "select_scatter"):
            d = self.axes_of(n)[0] % (_val(a[0]).dim())
            src = a[0] if k == "select" else a[1]
            full = n if k == "select" else a[0]
            m = {i: (i if i < d else i - 1) for i in range(_val(full).dim()) if i != d}
            if k == "select":
                self.plan.link(a[0], n, m)
            else:
                self.plan.link(a[0], n, {i: i for i in range(out.dim())})
                self.plan.link(src, n, {v: i for i, v in m.items()})
        elif k == "view_as_complex":
            self.plan.link(a[0], n, {i: i for i in range(out.dim())})
        elif k == "view_as_real":
            self.plan.link(a[0], n, {i: i for i in range(_val(a[0]).dim())})
        elif k == "cat":
            for t in a[0]:
                self.plan.link(t, n, {i: i for i in range(out.dim())})
        elif k == "reduce":
            red = self._reduced(n)
            keepdim = self._keepdim(n)
            kept = [d for d in range(_val(a[0]).dim()) if keepdim or d not in red]
            self.plan.link(a[0], n, {d: i for i, d in enumerate(kept)} if not keepdim else {d: d for d in kept})
        elif k == "einsum":
            if any(x in self.wide_set for x in a[1]):
                raise _Abort("an einsum of a tensor of rank over 5")
        elif k in ("same", "expand", "slice", "pad", "constant_pad_nd", "slice_scatter"):
            ins = [x for x in n.all_input_nodes if _val(x) is not None]
            if n not in self.wide_set and sum(1 for x in ins if _val(x).dim()) > 1:
                raise _Abort(f"{n.target} of several tensors with a result of rank {MAX_RANK} or less")
            for x in ins:
                xv = _val(x)
                if xv.dim() == 0:
                    continue
                off = out.dim() - xv.dim()
                if off < 0:
                    raise _Abort("an operand of higher rank than the result")
                same = {i: i + off for i in range(xv.dim()) if _same_size(xv.shape[i], out.shape[i + off])}
                self.plan.cut_apart(n, same.values())   # broadcast axes stay apart from the others
                self.plan.link(x, n, same)

    @staticmethod
    def _reduced(n) -> List[int]:
        r = _val(n.args[0]).dim()
        dims = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
        if dims is None or (isinstance(dims, (list, tuple)) and not dims):
            raise _Abort("a reduction over every axis of a tensor of rank over 5")
        return sorted(int(d) % r for d in (dims if isinstance(dims, (list, tuple)) else [dims]))

    @staticmethod
    def _keepdim(n) -> bool:
        return bool(n.args[2] if len(n.args) > 2 else n.kwargs.get("keepdim", False))

    @staticmethod
    def _perm(n):
        r = _val(n.args[0]).dim()
        if n.target is aten.transpose.int:
            p = list(range(r))
            i, j = n.args[1] % r, n.args[2] % r
            p[i], p[j] = p[j], p[i]
            return p
        return [int(d) % r for d in n.args[1]]

    def groups(self, n) -> List[List[int]]:
        return self.plan.groups(n)

    # ---------------------------------------------------------------- emission
    def size_arg(self, size, anchor):
        if isinstance(size, int):
            return size
        return self.expr_node(size.node.expr, anchor)

    def expr_node(self, e, anchor):
        import sympy

        if isinstance(e, (int, sympy.Integer)):
            return int(e)
        if e in self.sym_nodes:
            return self.sym_nodes[e]
        if e in self.expr_cache:
            return self.expr_cache[e]
        if isinstance(e, sympy.Symbol):
            late = self.late_syms.get(e)
            if late is None or anchor not in self.pos or self.pos[late] >= self.pos[anchor]:
                raise _Abort(f"no graph value for the size {e} before {anchor.name}")
            return late
        known = self.late_syms.get(e)
        if known is not None and anchor in self.pos and known in self.pos and self.pos[known] < self.pos[anchor]:
            return known
        name = type(e).__name__
        if name in ("CeilToInt", "FloorToInt") and type(e.args[0]).__name__ == "IntTrueDiv" \
                and isinstance(e.args[0].args[1], sympy.Integer) and int(e.args[0].args[1]) > 0:
            # math.ceil / floor of a size over a constant (HDemucs' int(math.ceil(T / hl))), in integer
            # arithmetic (sizes are non-negative)
            a, k = e.args[0].args[0], int(e.args[0].args[1])
            node = self._floordiv(self.expr_node(a + (k - 1 if name == "CeilToInt" else 0), anchor), k, anchor)
            self.expr_cache[e] = node
            return node
        f = {sympy.Mul: operator.mul, sympy.Add: operator.add}.get(type(e))
        if f is None:   # Min / Max: sympy's and torch's own classes (open-unmix's frame windows)
            f = {"FloorDiv": operator.floordiv, "Mod": operator.mod, "PythonMod": operator.mod,
                 "Min": torch.sym_min, "Max": torch.sym_max}.get(type(e).__name__)
        if f is None:
            raise _Abort(f"a size {e} with no rule")
        args = [self.expr_node(t, anchor) for t in e.args]
        acc = args[0]
        for b in args[1:]:
            if isinstance(acc, int) and isinstance(b, int):
                acc = f(acc, b)
                continue
            with self.graph.inserting_before(anchor):
                node = self.graph.call_function(f, (acc, b))
            va, vb = (x.meta["val"] if isinstance(x, fx.Node) else x for x in (acc, b))
            node.meta["val"] = f(va, vb)
            acc = node
        self.expr_cache[e] = acc
        return acc

    def _floordiv(self, a, k: int, anchor):
        if isinstance(a, int):
            return a // k
        with self.graph.inserting_before(anchor):
            node = self.graph.call_function(operator.floordiv, (a, k))
        node.meta["val"] = a.meta["val"] // k
        return node

    def find_symbols(self):
        self.pos = {n: i for i, n in enumerate(self.graph.nodes)}
        for n in self.graph.nodes:
            v = n.meta.get("val")
            if n.op != "placeholder" and isinstance(v, torch.SymInt) and type(v.node.expr).__name__ == "Symbol":
                self.late_syms.setdefault(v.node.expr, n)
            elif n.op == "call_function" and isinstance(v, torch.SymInt) and v.node.expr.free_symbols:
                self.late_syms.setdefault(v.node.expr, n)   # a size the graph computes already (the model's own
                # math.ceil(T / hl)): used as it is, so an exporter sees one expression, not two it cannot equate
        for n in self.graph.nodes:
            v = _val(n)
            if n.op != "placeholder" or v is None:
                continue
            for d, s in enumerate(v.shape):
                if isinstance(s, torch.SymInt) and type(s.node.expr).__name__ == "Symbol" \
                        and s.node.expr not in self.sym_nodes:
                    with self.graph.inserting_after(n):
                        node = self.graph.call_function(aten.sym_size.int, (n, d))
                    node.meta["val"] = s
                    self.sym_nodes[s.node.expr] = node

    def fake(self, sizes, dtype):
        """Metadata of a contiguous tensor (the fake mode of the capture: symbolic sizes stay symbolic)."""
        if not hasattr(self, "_mode"):   # the capture's fake mode, looked up once
            self._mode = next((v.fake_mode for v in (_val(n) for n in self.graph.nodes)
                               if v is not None and hasattr(v, "fake_mode")), None)
        mode = self._mode
        if mode is None:
            return torch.empty([int(s) for s in sizes], dtype=dtype, device="meta")
        with mode:
            return torch.empty(list(sizes), dtype=dtype)

    def call(self, target, args, kwargs, like, val):
        with self.graph.inserting_before(like):
            node = self.graph.call_function(target, tuple(args), dict(kwargs))
        node.meta["val"] = val
        if "stack_trace" in like.meta:
            node.meta["stack_trace"] = like.meta["stack_trace"]
        return node

    def reshape(self, src, sizes_sym, dtype, like):
        """src reshaped to sizes (ints / SymInts); a view where the graph writes in place (a copy would lose
        the writes: a view fails loudly instead)."""
        op = aten.view.default if self.view_only else aten.reshape.default
        return self.call(op, (src, [self.size_arg(s, like) for s in sizes_sym]), {}, like, self.fake(sizes_sym, dtype))

    def folded(self, x, groups, like):
        """x held with the given axis groups (lists of x's axes; None: an axis of size 1 for broadcasting)."""
        if x in self.wide_set and groups == self.groups(x):
            return self.comp[x]
        v = _val(x)
        if x not in self.wide_set and groups == [[d] for d in range(v.dim())]:
            return x
        return self.reshape(self.comp.get(x, x), [1 if g is None else _prod(v, g) for g in groups], v.dtype, like)

    def full(self, node_c, n):
        """The op's result back at its full (rank <= 5) shape."""
        v, have = _val(n), _val(node_c)
        if have.dim() == v.dim() and all(_same_size(p, q) for p, q in zip(have.shape, v.shape)):
            return node_c   # the same node: writes into the result reach the folded value
        return self.reshape(node_c, list(v.shape), v.dtype, n)

    def emit(self, ops):
        self.find_symbols()
        for n in ops:
            k, a = _kind(n), n.args
            wide_out = n in self.wide_set
            v = _val(n)
            og = self.groups(n) if wide_out else None
            oval = self.fake([_prod(v, g) for g in og], v.dtype) if wide_out else None
            if k == "reshape":
                src = self.comp.get(a[0], a[0])
                new = self.reshape(src, [_prod(v, g) for g in og], v.dtype, n) if wide_out \
                    else self.reshape(src, list(v.shape), v.dtype, n)
            elif k == "factory":
                if not wide_out:   # new_zeros(wide, size) and the like: only the dtype / device are read
                    new = self.call(n.target, (self.comp.get(a[0], a[0]),) + tuple(a[1:]), n.kwargs, n, v)
                    self.replaced.append((n, new))
                    continue
                sizes = [self.size_arg(_prod(v, g), n) for g in og]
                args = ((self.comp.get(a[0], a[0]), sizes) + tuple(a[2:]) if n.target in _NEW
                        else (sizes,) + tuple(a[1:]))
                new = self.call(n.target, args, n.kwargs, n, oval)
            elif k == "permute":
                new = self.call(aten.permute.default,
                                (self.comp[a[0]], group_perm(self.groups(a[0]), og, self._perm(n))), {}, n, oval)
            elif k in ("select", "slice"):
                x = a[0]
                d = self.axes_of(n)[0] % _val(x).dim()
                ig = self.groups(x)
                gi = next((i for i, g in enumerate(ig) if d in g), None)
                rest = [[e - 1 if k == "select" and e > d else e for e in g] for g in ig if k == "slice" or d not in g]
                if gi is None:   # a select of an axis of size 1: the folded value already lacks it
                    if k == "slice":
                        raise _Abort("a slice of an axis of size 1")
                    res = self.comp[x]
                else:
                    res = self.call(n.target, (self.comp[x], gi) + tuple(a[2:]), n.kwargs, n,
                                    self.fake([_prod(v, g) for g in rest], v.dtype))
                if wide_out:
                    new = res if rest == og else self.reshape(res, [_prod(v, g) for g in og], v.dtype, n)
                else:
                    new = self.full(res, n)
            elif k in ("pad", "constant_pad_nd"):
                x = a[0]
                r = _val(x).dim()
                pad = list(a[1])
                per_axis = {r - 1 - i: (pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)}
                cpad = group_pad(self.groups(x), per_axis)
                new = self.call(n.target, (self.comp[x], cpad) + tuple(a[2:]), n.kwargs, n, oval)
            elif k == "cat":
                d = self.axes_of(n)[0] % v.dim()
                gi = next(i for i, g in enumerate(og) if d in g)
                new = self.call(n.target, ([self.folded(t, og, n) for t in a[0]], gi), {}, n, oval)
            elif k in ("select_scatter", "slice_scatter"):
                d = self.axes_of(n)[0] % v.dim()
                gi = next(i for i, g in enumerate(og) if d in g)
                sg = [[e - 1 if k == "select_scatter" and e > d else e for e in g]
                      for g in og if k == "slice_scatter" or d not in g]
                new = self.call(n.target, (self.folded(a[0], og, n), self.folded(a[1], sg, n), gi) + tuple(a[3:]),
                                n.kwargs, n, oval)
            elif k == "expand":   # a broadcast of one operand: its groups are the result's (size 1 where it grows)
                if not wide_out:
                    raise _Abort("an expand to rank 5 or less of a wider tensor")
                new = self.call(n.target, (self.like_out(a[0], n, og), [self.size_arg(_prod(v, g), n) for g in og]),
                                {}, n, oval)
            elif k == "einsum":
                new = self.einsum(n, og, oval)
            elif k == "reduce":
                x = a[0]
                ig = self.groups(x)
                red = self._reduced(n)
                gdims = [i for i, g in enumerate(ig) if any(d in g for d in red)]
                rest = [g for i, g in enumerate(ig) if i not in gdims]
                keepdim = self._keepdim(n)
                if keepdim:
                    raise _Abort("a reduction keeping its dims on a tensor of rank over 5")
                outg = [[e - sum(1 for d in red if d < e) for e in g] for g in rest]
                res = self.call(n.target, (self.comp[x], gdims) + tuple(a[2:]), n.kwargs, n,
                                self.fake([_prod(v, g) for g in outg], v.dtype))
                if wide_out:
                    new = res if outg == og else self.reshape(res, [_prod(v, g) for g in og], v.dtype, n)
                else:
                    new = self.full(res, n)
            elif k == "view_as_complex":
                src = self.comp[a[0]]
                sv = _val(src)
                new = self.call(n.target, (src,), {}, n, self.fake(list(sv.shape[:-1]), v.dtype))
                new = new if wide_out else self.full(new, n)
            elif k == "view_as_real":
                src = self.folded(a[0], og[:-1], n) if wide_out else self.comp[a[0]]
                sv = _val(src)
                new = self.call(n.target, (src,), {}, n, self.fake(list(sv.shape) + [2], v.dtype))
                new = new if wide_out else self.full(new, n)
            else:   # pointwise, a copy, a cast
                if wide_out:
                    args, kwargs = fx.node.map_arg((n.args, n.kwargs), lambda x: self.like_out(x, n, og))
                    new = self.call(n.target, args, kwargs, n, oval)
                else:   # one folded operand (abs / real of a complex value, say): the result has its groups
                    args, kwargs = fx.node.map_arg((n.args, n.kwargs), lambda x: self.comp.get(x, x))
                    src = next(x for x in n.all_input_nodes if x in self.wide_set)
                    res = self.call(n.target, args, kwargs, n,
                                    self.fake([_prod(v, g) for g in self.groups(src)], v.dtype))
                    new = self.full(res, n)
            if wide_out:
                self.comp[n] = new
            else:
                self.replaced.append((n, new))

    def einsum(self, n, og, oval):
        """The einsum with each group of its result's axes one letter: each operand reshaped to merge the same
        letters (adjacent and in order there, by the cuts made in ``analyse``) and to drop result axes of size 1
        that no group keeps."""
        letters, ops_letters = _einsum_letters(n)
        grouped = {letters[e]: gi for gi, g in enumerate(og) for e in g}
        free = iter(c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in "".join(letters)
                    and all(c not in o for o in ops_letters))
        new_letter = {gi: next(free) for gi in range(len(og))}
        operands, terms = [], []
        for x, o in zip(n.args[1], ops_letters):
            xv = _val(x)
            term, sizes, i = "", [], 0
            while i < len(o):
                c = o[i]
                if c in grouped:
                    gi = grouped[c]
                    want = [letters[e] for e in og[gi]]
                    if o[i:i + len(want)] != "".join(want):
                        raise _Abort("an einsum whose operands order a group's axes otherwise")
                    term += new_letter[gi]
                    sizes.append(group_size(xv.shape, list(range(i, i + len(want)))))
                    i += len(want)
                elif c in letters:   # a result axis of size 1 that the folded result drops
                    i += 1
                else:   # a summed axis
                    term += c
                    sizes.append(xv.shape[i])
                    i += 1
            terms.append(term)
            operands.append(self.call(aten.reshape.default, (x, [self.size_arg(z, n) for z in sizes]), {}, n,
                                      self.fake(sizes, xv.dtype)))   # an operand of rank 5 or less: a copy is fine
        eq = ",".join(terms) + "->" + "".join(new_letter[gi] for gi in range(len(og)))
        return self.call(n.target, (eq, operands), {}, n, oval)

    def like_out(self, x, n, og):
        """An operand of a pointwise op, held with the result's groups (size 1 where it broadcasts)."""
        xv = _val(x)
        if xv is None or xv.dim() == 0:
            return x
        out = _val(n)
        off = out.dim() - xv.dim()
        gs = []
        for g in og:
            inside = [e - off for e in g if e - off >= 0]
            same = [e for e in inside if _same_size(xv.shape[e], out.shape[e + off])]
            gs.append(inside if same else None)
        return self.folded(x, gs, n)


def _einsum_letters(n):
    """(result letters, each operand's letters) of an einsum node, its ``...`` spelt out with new capitals."""
    eq, xs = n.args[0].replace(" ", ""), n.args[1]
    lhs, out = eq.split("->") if "->" in eq else (eq, None)
    terms = lhs.split(",")
    if out is None or len(terms) != len(xs):
        raise _Abort("an einsum without an explicit result")
    dots = max((_val(x).dim() - len(t.replace("...", "")) for t, x in zip(terms, xs) if "..." in t), default=0)
    ell = "".join(c for c in "ZYXWVUTSRQPONMLKJIHGFEDCBA" if c not in eq)[:dots][::-1]

    def spell(t, rank=None):
        if "..." not in t:
            return t
        k = (rank - len(t.replace("...", ""))) if rank is not None else dots
        return t.replace("...", ell[len(ell) - k:] if k else "")

    return spell(out), [spell(t, _val(x).dim()) for t, x in zip(terms, xs)]


def _prod(v, axes):
    return group_size(v.shape, axes)


def _same_size(a, b) -> bool:
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, int) or isinstance(b, int):
        return False
    return a.node.expr == b.node.expr


def fold_wide(gm: fx.GraphModule) -> Tuple[int, Optional[str]]:
    """Fold every value of rank over 5 (a complex one counted with its pair axis) in ``gm``, in place. Returns
    (how many values were folded, why nothing was folded or None)."""
    f = _Folder(gm)
    if not f.wide:
        return 0, None
    try:
        ops = f.ops()
        f.analyse(ops)
        n = f.plan.too_wide()
        if n is not None:
            raise _Abort(f"{n.name} {tuple(_val(n).shape)} keeps more than {MAX_RANK} axes apart")
    except Exception as e:  # noqa: BLE001 - nothing changed yet: the graph stays as it was
        return 0, str(e) if isinstance(e, _Abort) else f"{type(e).__name__}: {e}"
    mutates = any(n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload)
                  and n.target._schema.is_mutable for n in gm.graph.nodes)
    before = list(gm.graph.nodes)
    f.view_only = mutates
    try:
        f.emit(ops)
        done = {n for n, _ in f.replaced} | f.wide_set
        left = [n for n in ops if n not in done and n.users]
        if left:
            raise _Abort(f"{left[0].target} has no folded form")
        keep, gone = set(before), set(ops) - {n for n, _ in f.replaced}
        stale = [m for m in gm.graph.nodes if m not in keep and any(x in gone for x in m.all_input_nodes)]
        if stale:   # a new node reading a value that goes: the graph would not hold together
            raise _Abort(f"{stale[0].name} reads a value of rank over {MAX_RANK}")
        # every op's result after the commit: either folded (all its readers are ops here) or replaced
        outside = [n for n in f.wide_set if any(u not in set(ops) for u in n.users)]
        if outside:
            raise _Abort(f"{outside[0].name} is read outside the folded ops")
    except Exception as e:  # noqa: BLE001 - nothing replaced yet: drop the new nodes, keep the graph
        _undo(gm, before)
        return 0, f"{type(e).__name__}: {e}" if not isinstance(e, _Abort) else str(e)
    for n, new in f.replaced:
        n.replace_all_uses_with(new)
    for n in reversed(ops):
        gm.graph.erase_node(n)
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()
    return len(f.wide), None


def _undo(gm, before):
    keep = set(before)
    for n in reversed(list(gm.graph.nodes)):
        if n not in keep and not n.users:
            gm.graph.erase_node(n)
