"""The plugin's MIL programs folded to rank 5: the same plan as the graph pass (``kernels/fold_plan.py``).

An unchanged model traced and converted inside ``register()`` can hold tensors of rank 6 (HDemucs views its mask
as (batch, sources, channels, 2, freq, frames); the plugin carries a complex tensor of rank 5 as rank-6 pairs),
and Core ML stops at the first. After the frontend has built the program (static shapes), each wide value is
replaced by a reshape of it that merges adjacent axes and drops axes of size 1, op by op, with the constraints
of ``FoldPlan``. A program whose wide values meet an op without a rule here, or cannot fold, is left as it was
(Core ML then names the rank, as before).
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from ..kernels.fold_plan import FoldPlan, group_perm, group_size as _prod, permute_map
from ._ct_private import Var, mb, scope_of

MAX_RANK = 5
_UNARY = {"abs", "acos", "asin", "atan", "atanh", "ceil", "cos", "cosh", "erf", "exp", "exp2", "floor", "inverse",
          "log", "logical_not", "round", "rsqrt", "sign", "sin", "sinh", "sqrt", "square", "tan", "tanh", "relu",
          "sigmoid", "identity", "cast", "clip", "threshold", "elu", "leaky_relu", "softplus", "gelu", "silu"}
_BINARY = {"add", "sub", "mul", "real_div", "pow", "maximum", "minimum", "floor_div", "mod", "equal", "not_equal",
           "greater", "greater_equal", "less", "less_equal", "logical_and", "logical_or", "logical_xor", "select"}
_RESHAPE = {"reshape", "expand_dims", "squeeze"}


class _Abort(Exception):
    pass


def _static(v) -> bool:
    return isinstance(v, Var) and v.shape is not None and all(isinstance(d, (int, np.integer)) for d in v.shape)


def _shape(v) -> List[int]:
    return [int(d) for d in v.shape]


class _MilFolder:
    def __init__(self, block):
        self.block = block
        self.wide = [o for op in block.operations for o in op.outputs
                     if isinstance(o, Var) and o.rank is not None and o.rank > MAX_RANK]
        self.wide_set = set(self.wide)
        self.plan = FoldPlan(MAX_RANK)
        self.comp: Dict[Var, Var] = {}

    def ops(self):
        touched = []
        for op in self.block.operations:
            ins = [v for v in _in_vars(op)]
            if any(v in self.wide_set for v in ins) or any(o in self.wide_set for o in op.outputs):
                touched.append(op)
        for v in self.wide:
            if not _static(v):
                raise _Abort(f"{v.name}: a wide tensor of variable shape")
            if v in self.block.outputs:
                raise _Abort(f"{v.name}: a wide program output")
            if any(c.enclosing_block is not self.block for c in v.child_ops):
                raise _Abort(f"{v.name}: read inside a nested block")
        for op in touched:
            if self.kind(op) is None or len(op.outputs) != 1:
                raise _Abort(f"{op.op_type} on a tensor of rank over {MAX_RANK}")
        return touched

    @staticmethod
    def kind(op) -> Optional[str]:
        t = op.op_type
        if t in _RESHAPE:
            return "reshape"
        if t == "transpose":
            return "permute"
        if t in ("pad", "slice_by_index", "concat", "shape", "const"):
            return t
        if t in ("torch_tensor_assign", "slice_update"):   # x[slices] = updates (coremltools' fused in-place
            return "assign"                                # write; slice_update from iOS18)
        if t in _UNARY or t in _BINARY:
            return "same"
        return None

    def tensor_inputs(self, op) -> List[Var]:
        if op.op_type in _UNARY:
            return [op.x]
        if op.op_type == "select":
            return [op.cond, op.a, op.b]
        if op.op_type in _BINARY:
            return [op.x, op.y]
        return [op.x]

    def sliced_axes(self, op) -> List[int]:
        x = op.x
        shape = _shape(x)
        b, e, s = op.begin.val, op.end.val, (op.stride.val if op.stride is not None else None)
        bm = op.begin_mask.val if op.begin_mask is not None else [False] * len(shape)
        em = op.end_mask.val if op.end_mask is not None else [False] * len(shape)
        sq = op.squeeze_mask.val if op.squeeze_mask is not None else [False] * len(shape)
        if b is None or e is None:
            raise _Abort("a slice with variable bounds")
        out = []
        for d, n in enumerate(shape):
            lo = 0 if bm[d] else int(b[d]) % n if n else 0
            hi = n if em[d] else (int(e[d]) if int(e[d]) >= 0 else int(e[d]) + n)
            step = 1 if s is None else int(s[d])
            if n != 1 and (sq[d] or lo != 0 or min(hi, n) != n or step != 1):   # (an axis of size 1 is whole)
                out.append(d)
        return out

    def analyse(self, ops):
        for v in self.wide:
            self.plan.value(v, _shape(v))
        for op in ops:
            k, out = self.kind(op), op.outputs[0]
            if k == "pad":
                pad = [int(p) for p in op.pad.val]
                r = op.x.rank
                axes = [r - len(pad) // 2 + i for i in range(len(pad) // 2) if pad[2 * i] or pad[2 * i + 1]]
                self.plan.pin(op.x, axes)
                self.plan.pin(out, axes)
            elif k in ("slice_by_index", "assign"):
                self.plan.pin(op.x, self.sliced_axes(op))
                if k == "assign":
                    self.plan.pin(out, self.sliced_axes(op))
            elif k == "concat":
                if op.interleave is not None and op.interleave.val:
                    raise _Abort("an interleaved concat")
                for v in op.values:
                    self.plan.pin(v, [int(op.axis.val)])
                self.plan.pin(out, [int(op.axis.val)])
        for op in ops:
            k, out = self.kind(op), op.outputs[0]
            if k == "permute":
                self.plan.link(op.x, out, permute_map([int(p) for p in op.perm.val]))
            elif k == "slice_by_index":
                sq = op.squeeze_mask.val if op.squeeze_mask is not None else [False] * op.x.rank
                keep = [d for d in range(op.x.rank) if not sq[d]]
                self.plan.link(op.x, out, {d: i for i, d in enumerate(keep)})
            elif k == "concat":
                for v in op.values:
                    self.plan.link(v, out, {i: i for i in range(out.rank)})
            elif k == "assign":
                self.plan.link(op.x, out, {i: i for i in range(out.rank)})
                if _updates(op) in self.wide_set:
                    self.plan.link(_updates(op), op.x, dict(enumerate(self._kept(op))))
            elif k in ("same", "pad"):
                for x in (self.tensor_inputs(op) if k == "same" else [op.x]):
                    if not isinstance(x, Var) or not x.rank:
                        continue
                    off = out.rank - x.rank
                    if off < 0:
                        raise _Abort("an operand of higher rank than the result")
                    same = {i: i + off for i in range(x.rank) if _shape(x)[i] == _shape(out)[i + off]}
                    self.plan.cut_apart(out, same.values())
                    self.plan.link(x, out, same)
        bad = self.plan.too_wide()
        if bad is not None:
            raise _Abort(f"{bad.name} {tuple(bad.shape)} keeps more than {MAX_RANK} axes apart")

    # ------------------------------------------------------------------ emission
    def folded(self, v, groups, before):
        """v held with the given groups (None: an axis of size 1)."""
        if v in self.wide_set and groups == self.plan.groups(v):
            return self.comp[v]
        shape = _shape(v)
        sizes = [1 if g is None else _prod(shape, g) for g in groups]
        src = self.comp.get(v, v)
        if _shape(src) == sizes:
            return src
        return mb.reshape(x=src, shape=np.array(sizes, dtype=np.int32), before_op=before)

    def full(self, v, out, before):
        if _shape(v) == _shape(out):
            return v
        return mb.reshape(x=v, shape=np.array(_shape(out), dtype=np.int32), before_op=before)

    def like_out(self, x, out, og, before):
        if not isinstance(x, Var) or not x.rank:
            return x
        off = out.rank - x.rank
        gs = []
        for g in og:
            inside = [e - off for e in g if e - off >= 0]
            same = [e for e in inside if _shape(x)[e] == _shape(out)[e + off]]
            gs.append(inside if same else None)
        return self.folded(x, gs, before)

    def emit(self, ops):
        replaced = []
        for op in ops:
            with scope_of(op):
                self.emit_one(op, replaced)
        return replaced

    def emit_one(self, op, replaced):
        k, out = self.kind(op), op.outputs[0]
        wide = out in self.wide_set
        og = self.plan.groups(out) if wide else None
        sizes = [_prod(_shape(out), g) for g in og] if wide else _shape(out)
        if k == "reshape":
            new = mb.reshape(x=self.comp.get(op.x, op.x), shape=np.array(sizes, dtype=np.int32), before_op=op)
        elif k == "permute":
            new = mb.transpose(x=self.comp[op.x], perm=group_perm(self.plan.groups(op.x), og,
                                                                  [int(p) for p in op.perm.val]), before_op=op)
        elif k == "pad":
            r = op.x.rank
            pad = [int(p) for p in op.pad.val]
            per_axis = {r - len(pad) // 2 + i: (pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)}
            cpad = []
            for g in self.plan.groups(op.x):   # MIL pads the trailing axes, first to last
                cpad += list(per_axis.get(g[0], (0, 0))) if len(g) == 1 else [0, 0]
            while cpad[:2] == [0, 0] and len(cpad) > 2:
                cpad = cpad[2:]
            kw = dict(x=self.comp[op.x], pad=np.array(cpad, dtype=np.int32), mode=op.mode.val, before_op=op)
            if op.constant_val is not None:
                kw["constant_val"] = op.constant_val.val
            new = mb.pad(**kw)
        elif k == "slice_by_index":
            new = self.slice(op, out, wide, og)
        elif k == "assign":
            new = self.slice(op, out, wide, og, assign=True)
        elif k == "shape":   # static: the full shape as a constant
            new = mb.const(val=np.array(_shape(op.x), dtype=np.int32), before_op=op)
        elif k == "const":   # a wide constant (coremltools folds expand_dims of a constant): its value reshaped
            new = mb.const(val=np.asarray(out.val).reshape(sizes), before_op=op)
        elif k == "concat":
            axis = int(op.axis.val) % out.rank
            gi = next(i for i, g in enumerate(og) if axis in g)
            new = mb.concat(values=[self.folded(v, og, op) for v in op.values], axis=gi, before_op=op)
        else:
            kw = dict(op.inputs)
            for name in ("x", "y", "cond", "a", "b"):
                if isinstance(kw.get(name), Var) and kw[name].rank:
                    kw[name] = self.like_out(kw[name], out, og, op) if wide else self.comp.get(kw[name],
                                                                                                 kw[name])
            new = getattr(mb, op.op_type)(**kw, before_op=op)
            if not wide:
                new = self.full(new, out, op)
        if wide:
            self.comp[out] = new
        else:
            replaced.append((op, out, new))

    def _kept(self, op) -> List[int]:
        sq = op.squeeze_mask.val if op.squeeze_mask is not None else [False] * op.x.rank
        return [d for d in range(op.x.rank) if not sq[d]]

    def slice(self, op, out, wide, og, assign=False):
        x = op.x
        shape = _shape(x)
        ig = self.plan.groups(x)
        sq = list(op.squeeze_mask.val) if op.squeeze_mask is not None else [False] * len(shape)
        b, e = list(op.begin.val), list(op.end.val)
        s = list(op.stride.val) if op.stride is not None else [1] * len(shape)
        bm = list(op.begin_mask.val) if op.begin_mask is not None else [False] * len(shape)
        em = list(op.end_mask.val) if op.end_mask is not None else [False] * len(shape)
        nb, ne, ns, nbm, nem, nsq = [], [], [], [], [], []
        for g in ig:
            if len(g) == 1:
                d = g[0]
                nb.append(int(b[d])), ne.append(int(e[d])), ns.append(int(s[d]))
                nbm.append(bool(bm[d])), nem.append(bool(em[d])), nsq.append(bool(sq[d]))
            else:
                nb.append(0), ne.append(0), ns.append(1), nbm.append(True), nem.append(True), nsq.append(False)
        kw = dict(x=self.comp[x], begin=np.array(nb, dtype=np.int32), end=np.array(ne, dtype=np.int32),
                  stride=np.array(ns, dtype=np.int32), begin_mask=nbm, end_mask=nem, squeeze_mask=nsq, before_op=op)
        if assign:   # the updates held with x's groups, less the squeezed axes
            kept = self._kept(op)
            ug = [[kept.index(d) for d in g if d in kept] for g in ig]
            ug = [g for g in ug if g]
            if op.op_type == "slice_update":
                return mb.slice_update(update=self.folded(op.update, ug, op), **kw)
            return mb.torch_tensor_assign(updates=self.folded(op.updates, ug, op), **kw)
        res = mb.slice_by_index(**kw)
        if not wide:
            return self.full(res, out, op)
        want = [_prod(_shape(out), g) for g in og]
        return res if _shape(res) == want else mb.reshape(x=res, shape=np.array(want, dtype=np.int32),
                                                          before_op=op)


def _updates(op):
    return op.update if op.op_type == "slice_update" else op.updates


def _in_vars(op):
    for v in op.inputs.values():
        if isinstance(v, (list, tuple)):
            yield from (x for x in v if isinstance(x, Var))
        elif isinstance(v, Var):
            yield v


def fold_program(prog) -> int:
    """Fold the wide tensors of every function of ``prog`` in place; returns how many were folded (0 when a
    function is left as it was)."""
    done = 0
    for func in prog.functions.values():
        f = _MilFolder(func)
        if not f.wide:
            continue
        try:
            ops = f.ops()
            f.analyse(ops)
        except Exception:  # noqa: BLE001 - nothing changed yet: the function stays as it was (Core ML names the rank)
            continue
        before = set(func.operations)
        with func:
            try:
                replaced = f.emit(ops)
                region = set(ops)
                gone = {o for op in ops for o in op.outputs} - {old for _, old, _ in replaced}
                for op in func.operations:   # nothing outside the region may read a value that goes
                    if op not in region and op not in before and any(v in gone for v in _in_vars(op)):
                        raise _Abort(f"{op.name} reads a value of rank over {MAX_RANK}")
                if any(c not in region for v in gone for c in v.child_ops) or any(v in func.outputs for v in gone):
                    raise _Abort("a wide value is read outside the folded ops")
            except Exception:  # noqa: BLE001 - new ops unused: removed below, the function stays as it was
                func.remove_ops([op for op in reversed(func.operations) if op not in before])
                continue
            for op, old, new in replaced:
                func.replace_uses_of_var_after_op(anchor_op=op, old_var=old, new_var=new)
            func.remove_ops(list(reversed(ops)))
        done += len(f.wide)
    return done
