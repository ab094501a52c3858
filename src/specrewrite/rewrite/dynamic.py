"""Which input axes stay dynamic: the default request, the capture's verdict per axis, and why an axis is fixed.

Default request: for every tensor input, axis 0 is the batch (inputs of rank >= 2, or integer / bool vectors)
and the last axis is the time axis; both are asked to stay dynamic (``Dim.AUTO``: torch.export keeps them
symbolic unless the model's code pins them). A batch of 1 in the example is captured at batch 2 (torch.export
specialises every size-1 axis), so one exported file serves every batch size.

After the capture each requested axis is judged three ways:
  * the graph made it a constant (the model's code used its value);
  * a guard of the capture holds at the example's size and at no other tested size (for example
    ``Eq(512*ceil(T/0.8)/5, 7987.2)``): the axis is symbolic in name only, so it is captured as fixed instead,
    giving an honest static graph rather than one that is silently wrong at other lengths in a runtime with no
    guards (ONNX);
  * the range torch.export proves for it (``7989 <= time``) is reported with the axis.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Dict, List, Optional, Tuple

import torch

from .._torch_private import is_input_size
from .._where import from_guard
from ._guards import first_failure
from ._second_shape import _resize_like, second_inputs  # noqa: F401 - second_inputs: export's import
from ..errors import SpecRewriteError


@dataclasses.dataclass
class Axis:
    """One axis of one tensor input, as the report shows it."""
    input: str
    axis: int
    role: str                   # 'batch' | 'time' | 'other'
    size: int                   # the example's size
    requested: bool             # asked to stay dynamic (by default or by the user)
    explicit: bool = False      # asked by the user (dynamic_shapes=...)
    dynamic: bool = False       # the final graph keeps it symbolic
    why: str = ""               # why it is fixed (empty when dynamic)
    range: str = ""             # sizes the graph accepts, when dynamic and limited
    index: int = 0              # position of the input among the example inputs
    min: Optional[int] = None   # the range's bounds (None: unbounded)
    max: Optional[int] = None
    sizes: str = ""             # a Python test in n of the sizes the graph holds (a residue class), or ""
    bound_where: str = ""       # the model's line behind the range's bounds (for the run-time error), or ""

    def describe(self) -> str:
        name = f"input '{self.input}' axis {self.axis} ({self.role}, {self.size} in the example)"
        if self.dynamic:
            return f"{name}: dynamic" + (f" for {self.range}" if self.range else "")
        return f"{name}: fixed" + (f": {self.why}" if self.why else "")


def input_names(model: torch.nn.Module, n: int) -> List[str]:
    """Names of the first ``n`` positional inputs of ``model.forward`` (``args[i]`` past a ``*args``)."""
    names: List[str] = []
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            break
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
    names = names[:n]
    return names + [f"args[{i}]" for i in range(len(names), n)]


def time_axis(t: torch.Tensor) -> int:
    """The time axis of an input: the last, except in a channels-last layout (batch, time, channels), where the
    last axis is a few channels (<= 16) and the one before it is long (>= 256 and >= 8x as long; speechbrain's
    multi-microphone code takes (batch, time, mics))."""
    if t.dim() >= 3 and t.shape[-1] <= 16 and t.shape[-2] >= max(256, 8 * t.shape[-1]):
        return t.dim() - 2
    return t.dim() - 1


def role_of(t: torch.Tensor, axis: int, others: tuple = ()) -> str:
    """'batch', 'time' or 'other'. A 1-D input is a clip (time) when it is floating point, except one per clip of
    another input (as many values as that input's batch, all in [0, 1]: speechbrain's relative lengths); an
    integer one holds a value per clip (batch)."""
    if t.dim() == 1:
        if not t.is_floating_point() and not t.is_complex():
            return "batch"
        per_clip = t.is_floating_point() and 0 < t.numel() <= 256 and bool(((t >= 0) & (t <= 1)).all()) and any(
            isinstance(o, torch.Tensor) and o is not t and o.dim() >= 2 and o.shape[0] == t.shape[0]
            for o in others)
        return "batch" if per_clip else "time"
    if axis == 0:
        return "batch"
    return "time" if axis == time_axis(t) else "other"


def _is_dim(v) -> bool:
    return v is not None and not isinstance(v, (int, bool))


class AxisPlan:
    """The dynamic_shapes given to torch.export, the example inputs to capture with, and the axes to report."""

    def __init__(self, model: torch.nn.Module, args: tuple, dynamic_shapes: Any):
        self.args = args
        self.names = input_names(model, len(args))
        self.user = dynamic_shapes not in (None, True, False)
        self.static = dynamic_shapes is False
        self.axes: List[Axis] = []
        self.spec = self._spec(dynamic_shapes)
        self._asked_spec = self.spec   # (the request before any axis was fixed: retry_tentative)
        self.capture_args, self.batch_expanded = self._expand_batch()
        self.fixed_reasons: Dict[Tuple[int, int], str] = {}
        self.size_classes: list = []   # _guards.SizeClass: axes kept dynamic for a residue class of sizes
        self.batch_one_guards: set = set()   # inputs with a guard accepted that fails at batch 1 only
        self.lower_bounds: Dict[Tuple[int, int], int] = {}   # (input, axis) -> a bound the model has too
        self.accepted: Dict[tuple, str] = {}   # (input, axis, guard text) -> range text: judged already
        self._tentative: set = set()   # reasons that a later, more general one replaces
        self.sources: dict = {}   # the last judged capture's size symbol -> sources (for readable guards)
        self.moved: Optional[tuple] = None   # the capture args before a capture at another size (_branches)

    # -------------------------------------------------------------------------------------- the request
    def _spec(self, dynamic_shapes) -> tuple:
        auto = torch.export.Dim.AUTO
        if self.user:
            per_input = _normalise(dynamic_shapes, self.names, self.args)
        spec = []
        for i, a in enumerate(self.args):
            if not isinstance(a, torch.Tensor) or a.dim() == 0:
                spec.append(None)
                continue
            want = {}
            for d in range(a.dim()):
                role = role_of(a, d, self.args)
                if self.user:
                    v = (per_input[i] or {}).get(d)
                    req, explicit = _is_dim(v), _is_dim(v) and v is not auto   # AUTO: keep it if the model allows
                    # captured with AUTO: a user's Dim without a range (Dim("time")) fails torch.export on the
                    # smallest sizes no STFT takes; whether the axis stayed dynamic is judged after the capture
                    # (and is an error under strict=True for an explicit request), its range reported
                    v = _auto_within(v) if req else v
                else:
                    v = auto
                    req, explicit = (not self.static and role in ("batch", "time")), False
                if req:
                    want[d] = v
                self.axes.append(Axis(self.names[i], d, role, int(a.shape[d]), req, explicit, index=i))
            spec.append(want or None)
        return tuple(spec)

    def _expand_batch(self):
        """Capture at batch 2 where a requested batch axis has size 1 (torch.export specialises size 1)."""
        grow = [ax for ax in self.axes if ax.requested and ax.axis == 0 and ax.role == "batch" and ax.size == 1]
        if not grow:
            return self.args, False
        names = {ax.input for ax in grow}
        out = []
        for name, a in zip(self.names, self.args):
            out.append(torch.cat([a, a.flip(-1) if a.is_floating_point() and a.dim() > 1 else a]) if name in names
                       else a)
        return tuple(out), True

    def without_batch_expansion(self, reason: str, tentative: bool = False) -> None:
        self.capture_args, self.batch_expanded, self.moved = self.args, False, None
        for ax in self.axes:
            if ax.requested and ax.axis == 0 and ax.role == "batch" and ax.size == 1:
                self.fix(ax, reason)
                if tentative:
                    self._tentative.add((self._index(ax.input), ax.axis))
        self.capture_args, self.batch_expanded, self.moved = self.args, False, None

    def _batch_of_one(self) -> List[Axis]:
        """The requested batch axes whose example size is 1 (captured at 2 while the batch is expanded)."""
        return [ax for ax in self.axes if ax.requested and ax.axis == 0 and ax.role == "batch" and ax.size == 1]

    def expanded_batch_axes(self) -> tuple:
        """(input name, axis) of the batch axes captured at 2 for an example's 1 (watched during a capture)."""
        return tuple((ax.input, ax.axis) for ax in self._batch_of_one()) if self.batch_expanded else ()

    def expanded_axis_fixed(self) -> bool:
        """A batch axis captured at 2 (for a batch of 1 in the example) came out fixed: the graph is at 2."""
        return any(not ax.dynamic for ax in self._batch_of_one())

    def accept(self, ax: Axis, guard, text: str) -> None:
        """A guard the model's own code has too: judged once, its text kept in the axis's range."""
        self.accepted[(self._index(ax.input), ax.axis, str(guard.expr))] = text

    def keep_for_class(self, ax: Axis, cls) -> None:
        """``ax`` stays dynamic for the sizes of a residue class, checked by the rewritten model."""
        ax.dynamic = True
        self.size_classes = [c for c in self.size_classes
                             if (c.index, c.axis, c.test) != (cls.index, cls.axis, cls.test)] + [cls]
        ax.sizes = " and ".join(f"({c.test})" for c in self.size_classes if (c.index, c.axis) == (cls.index, cls.axis))
        text = f"sizes where {cls.text}" + \
            (f" (the model's code at {cls.where} takes another path elsewhere" if cls.where else " (elsewhere") + \
            ": there the rewritten model raises in eager, and exported files return inf / nan)"
        self.accepted[(cls.index, cls.axis, cls.test)] = text
        ax.range = (ax.range + ", " if ax.range else "") + text

    def raise_lower(self, ax: Axis, lo: int) -> None:
        """A lower bound on ``ax`` that the model's own code has too: one text per axis, the highest bound."""
        i = self._index(ax.input)
        lo = max(self.lower_bounds.get((i, ax.axis), 0), lo)
        self.lower_bounds[(i, ax.axis)] = lo
        key, text = (i, ax.axis, "lower bound"), f"size >= {lo} (the model's own code fails below)"
        old = self.accepted.get(key)
        self.accepted[key] = text
        if old and old in ax.range:
            ax.range = ax.range.replace(old, text)
        elif text not in ax.range:
            ax.range = ", ".join(t for t in (ax.range, text) if t)

    def _notes(self, i: int, axis: int) -> str:
        return ", ".join(t for (j, a, _), t in self.accepted.items() if (j, a) == (i, axis) and t)

    def back_to_example(self) -> bool:
        """After a capture moved off the example's size (``_branches.off_multiple_capture``) restricted an axis: the capture args
        back at the example's size and what was judged on the moved capture forgotten. False when not moved."""
        if self.moved is None:
            return False
        self.capture_args, self.moved = self.moved, None
        self.size_classes, self.accepted, self.lower_bounds = [], {}, {}
        self.batch_one_guards = set()
        return True

    def fix(self, ax: Axis, reason: str) -> None:
        """Capture ``ax`` as fixed from now on, for ``reason``."""
        if self.moved is not None:   # captured off the example's size (_branches): a fixed axis is the example's
            self.capture_args, self.moved = self.moved, None
        if self.batch_expanded and ax.role == "batch" and ax.axis == 0 and ax.size == 1:
            self.without_batch_expansion(reason)
        self.fixed_reasons[(self._index(ax.input), ax.axis)] = reason
        i = self._index(ax.input)
        spec = list(self.spec)
        if spec[i]:
            d = dict(spec[i])
            d.pop(ax.axis, None)
            spec[i] = d or None
        self.spec = tuple(spec)

    def all_static(self, reason: str) -> None:
        for ax in self.axes:
            key = (self._index(ax.input), ax.axis)
            if ax.requested and (key not in self.fixed_reasons or key in self._tentative):
                self.fixed_reasons[key] = reason
        self.spec = tuple(None for _ in self.spec)
        self.capture_args, self.batch_expanded, self.moved = self.args, False, None

    def retry_tentative(self) -> None:
        """Ask again for the axes fixed tentatively (a failure blamed on the batch of 2 that had another cause,
        such as numpy in forward): the example's batch of 1 is captured at 2 again."""
        spec = list(self.spec)
        for i, axis in self._tentative:
            self.fixed_reasons.pop((i, axis), None)
            spec[i] = {**(spec[i] or {}), axis: self._asked_spec[i][axis]}
        self.spec, self._tentative = tuple(spec), set()
        self.capture_args, self.batch_expanded = self._expand_batch()

    def relax_explicit(self) -> None:
        """The user's Dims could not all hold (strict=False): ask for the same axes with Dim.AUTO."""
        auto = torch.export.Dim.AUTO
        self.spec = tuple({d: auto for d in s} if s else None for s in self.spec)

    def _index(self, name: str) -> int:
        return self.names.index(name)

    # -------------------------------------------------------------------------------------- the verdict
    def judge(self, gm: torch.fx.GraphModule) -> List[Axis]:
        """Fill in dynamic / why / range from the captured graph. Returns (axis, guard, size) for requested axes
        that a guard of the capture restricts: it holds at the example's size and fails at ``size`` (the caller
        checks whether the model's own code accepts that size)."""
        phs = _user_placeholders(gm, len(self.args))
        shape_env = _shape_env(phs)
        self.sources = dict(getattr(shape_env, "var_to_sources", {}) or {})
        pinned = []
        for ax in self.axes:
            i = self._index(ax.input)
            if (i, ax.axis) in self.fixed_reasons:
                ax.dynamic, ax.why = False, self.fixed_reasons[(i, ax.axis)]
                continue
            if not ax.requested:
                ax.dynamic, ax.why = False, ("not requested" if self.user or self.static else "")
                continue
            v = phs[i].meta.get("val") if i < len(phs) and phs[i] is not None else None
            size = v.shape[ax.axis] if isinstance(v, torch.Tensor) and v.dim() > ax.axis else None
            if isinstance(size, torch.SymInt) and not getattr(size.node.expr, "free_symbols", None):
                size = int(size)   # a symbol the capture replaced by a constant
            if not isinstance(size, torch.SymInt):
                ax.dynamic = False
                ax.why = _pin_reason(shape_env, self.names[i], ax.axis) or \
                    "the model's code uses its value (torch.export made it a constant)"
                continue
            expr = size.node.expr
            known = {str(c.test) for c in self.size_classes if (c.index, c.axis) == (i, ax.axis)}
            hit = _restricting_guard(shape_env, expr, int(self.capture_args[i].shape[ax.axis]), (ax.size,),
                                     skip=lambda e, i=i, ax=ax, known=known: (i, ax.axis, str(e)) in self.accepted
                                     or _class_of(e, i, ax, known, int(self.capture_args[i].shape[ax.axis])))
            ax.dynamic, ax.why = True, ""
            ax.range, ax.min, ax.max = _range_text(shape_env, expr, ax.role, ax.size)
            ax.bound_where = _bound_where(shape_env, expr) if ax.range else ""
            notes = self._notes(i, ax.axis)
            ax.range = ", ".join(t for t in (ax.range, notes) if t)
            if hit is not None:   # symbolic, but restricted by a guard: the caller decides
                pinned.append((ax, hit[0], hit[1]))
        return pinned

    def axes_behind(self, gm, symbols) -> List[Axis]:
        """The dynamic axes whose size symbols are among ``symbols`` (a size expression's free symbols)."""
        env = _shape_env(_user_placeholders(gm, len(self.args)))
        if env is None or not symbols:
            return []
        out = []
        for ax in self.axes:
            if ax.dynamic and set(_sources(env, ax.input, ax.axis)) & set(symbols):
                out.append(ax)
        return out

    def report(self) -> List[Dict[str, Any]]:
        """Per batch / time / requested axis: input, axis, role, size, dynamic, why, range and the text line."""
        return [dict(dataclasses.asdict(ax), text=ax.describe()) for ax in self.axes
                if ax.requested or ax.role != "other"]

    def inputs_at(self, ax: Axis, size: int, base: Optional[tuple] = None) -> tuple:
        """The example inputs (or ``base``) with ``ax`` (and the same axis of inputs of equal size there) set to
        ``size``."""
        g = torch.Generator().manual_seed(4321)
        base = self.args if base is None else base
        i = self._index(ax.input)
        ref = int(base[i].shape[ax.axis])
        out = []
        for k, a in enumerate(base):
            if isinstance(a, torch.Tensor) and a.dim() > ax.axis and ax.axis in (0, time_axis(a)) and \
                    int(a.shape[ax.axis]) == ref and (k == i or role_of(a, ax.axis, base) == ax.role):
                shape = list(a.shape)
                shape[ax.axis] = size
                out.append(_resize_like(a, shape, g, repeat=a.dim() == 1))
            else:
                out.append(a)
        return tuple(out)

    def ranges(self) -> List[Tuple[int, int, int, Optional[int], str, str]]:
        """(input index, axis, lo, hi, name, where) per dynamic axis with a bound: its range, checked by the
        rewritten model where torch.export's own guard check is erased (``where``: the model's line behind it)."""
        out = []
        for ax in self.axes:
            if not ax.dynamic:
                continue
            i = self._index(ax.input)
            lo = max(ax.min or 0, self.lower_bounds.get((i, ax.axis), 0))
            if lo > 2 or ax.max is not None:
                out.append((i, ax.axis, max(lo, 1), ax.max, ax.input, ax.bound_where))
        return out

    def remainder_guards(self, gm) -> bool:
        """Whether the capture ``gm`` guarded a remainder (its guard check would narrow an exporter's Dim)."""
        env = _shape_env(_user_placeholders(gm, len(self.args)))
        return any("Mod(" in str(g.expr) for g in getattr(env, "guards", None) or [])

    def second_inputs(self) -> Optional[tuple]:
        """Example inputs at another time length (+25 %, odd) and, where the batch is dynamic, another batch
        size, for verification; None when no axis is dynamic."""
        return second_inputs(self.args, [dataclasses.asdict(ax) for ax in self.axes])


def _normalise(dynamic_shapes, names, args) -> list:
    if isinstance(dynamic_shapes, dict):
        unknown = [k for k in dynamic_shapes if k not in names]
        if unknown:
            raise SpecRewriteError(f"dynamic_shapes names {unknown}, which are not inputs of forward {names}",
                                   op="rewrite", fix="key dynamic_shapes by the forward's argument names, or pass "
                                   "a tuple with one entry per example input")
        per = [dynamic_shapes.get(n) for n in names]
    elif isinstance(dynamic_shapes, (list, tuple)):
        if len(dynamic_shapes) != len(args):
            raise SpecRewriteError(f"dynamic_shapes has {len(dynamic_shapes)} entries for {len(args)} example "
                                   "inputs", op="rewrite", fix="give one entry (a dict axis -> Dim, or None) per input")
        per = list(dynamic_shapes)
    else:
        raise SpecRewriteError(f"dynamic_shapes must be a dict or a tuple in torch.export's format, or False, got "
                               f"{type(dynamic_shapes).__name__}", op="rewrite",
                               fix="e.g. dynamic_shapes={'wav': {0: Dim('batch'), 1: Dim('time')}}")
    out = []
    for name, p, a in zip(names, per, args):
        if isinstance(p, (list, tuple)):
            p = {d: v for d, v in enumerate(p) if v is not None}
        if p is not None and not isinstance(p, dict):
            raise SpecRewriteError(f"dynamic_shapes entry for input '{name}' must be a dict axis -> Dim (or None), "
                                   f"got {type(p).__name__}", op="rewrite", fix="e.g. {1: Dim('time')}")
        rank = a.dim() if isinstance(a, torch.Tensor) else 0
        bad = [d for d in (p or {}) if not isinstance(d, int) or not -rank <= d < rank]
        if bad:
            raise SpecRewriteError(f"dynamic_shapes names axis {bad[0]!r} of input '{name}', which has {rank} axes",
                                   op="rewrite", fix=f"use axes 0..{rank - 1} (or negative ones) of '{name}'")
        out.append({d % rank: v for d, v in p.items()} if p else p)
    return out


def _user_placeholders(gm, n) -> list:
    phs = [p for p in gm.graph.nodes if p.op == "placeholder"]
    return phs[:n]


def _shape_env(phs):
    for p in phs:
        v = p.meta.get("val")
        mode = getattr(v, "fake_mode", None)
        if mode is not None and getattr(mode, "shape_env", None) is not None:
            return mode.shape_env
    return None


def _sources(shape_env, name: str, axis: int):
    """Symbols of the shape env whose source is input ``name``'s size at ``axis``."""
    return [sym for sym, srcs in getattr(shape_env, "var_to_sources", {}).items()
            if any(is_input_size(s.name, name, axis) for s in srcs)]


def _pin_reason(shape_env, name, axis) -> str:
    """The guard that made input ``name``'s ``axis`` a constant, as 'guard at file:line'."""
    if shape_env is None:
        return ""
    import sympy

    syms = set(_sources(shape_env, name, axis))
    guards = [g for g in getattr(shape_env, "guards", []) if syms & set(getattr(g.expr, "free_symbols", ()))]
    readable = {s: sympy.Symbol(f"{name}.shape[{axis}]") for s in syms}
    for g in sorted(guards, key=lambda g: not isinstance(g.expr, sympy.Eq)):   # the pinning equality first
        where = from_guard(g)
        return (f"the model's code fixes it to the example's size" + (f" at {where}" if where else "")
                + f" (the capture's guard {g.expr.xreplace(readable)})")
    return ""


def _class_of(e, i, ax, known, example) -> bool:
    """Whether guard ``e`` is the size class already accepted for this axis."""
    from ._guards import size_class

    c = size_class(e, i, ax.axis, "", ax.input, example)
    return c is not None and c.test in known


def _restricting_guard(shape_env, expr, example: int, also=(), skip=None):
    """(guard, size): a guard of the capture on ``expr``'s symbol, other than a plain range bound, that holds
    at the example's size and fails at ``size``, a nearby size inside the axis's range (ONNX and other runtimes
    do not check such guards, so the graph would be silently wrong there); None when there is none."""
    import sympy

    if shape_env is None or len(getattr(expr, "free_symbols", ())) != 1:
        return None
    (sym,) = expr.free_symbols
    rng = getattr(shape_env, "var_to_range", {}).get(sym)
    trial = list(also) + [example + d for d in (1, 2, 3, 7, example // 4 + 1, example)] + [2 * example + 1] \
        + [example - d for d in (1, 2, 3, 7)] + [(3 * example) // 4 | 1]   # below it too
    try:
        trial = [t for t in trial if t in also or rng is None or (t >= int(rng.lower) and (str(rng.upper) in ("oo", "int_oo")
                                                                             or t <= int(rng.upper)))]
    except (TypeError, ValueError):
        pass
    hints = getattr(shape_env, "backed_var_to_val", None) or getattr(shape_env, "var_to_val", {})
    for g in getattr(shape_env, "guards", []):
        e = g.expr
        free = getattr(e, "free_symbols", set())
        if sym not in free or _is_range_bound(e, sym) or (skip is not None and skip(e)):
            continue
        others = {o: hints[o] for o in free if o != sym and o in hints}
        if len(others) != len(free) - 1:
            continue   # a symbol with no example value (unbacked): not judged
        # symbols with the example's size move with it (two inputs of equal length, tied by the model's code)
        tied = [o for o, v in others.items() if int(v) == int(example)]
        fixed = {o: v for o, v in others.items() if o not in tied}
        try:
            if not _true(e.xreplace({**others, sym: sympy.Integer(example)})):
                continue
            for t in trial:
                at = {o: sympy.Integer(t) for o in tied + [sym]}
                if not _true(e.xreplace({**fixed, **at})):
                    return g, t
        except Exception:  # noqa: BLE001 - a guard sympy cannot evaluate is not judged
            continue
        if len(free) == 1:   # right at the sizes tried: judged at every size (a bound hidden in a Min, a period)
            far = first_failure(e, _lower(rng), example)
            if far is not None:
                return g, far
    return None


def _lower(rng) -> int:
    try:
        return int(rng.lower) if rng is not None else 1
    except (TypeError, ValueError, OverflowError):
        return 1


def _is_range_bound(e, sym) -> bool:
    """``a*s + b`` compared with ``<, <=, >, >=``: a range torch.export reports as the axis's bounds."""
    import sympy

    if not isinstance(e, (sympy.StrictLessThan, sympy.LessThan, sympy.StrictGreaterThan, sympy.GreaterThan)):
        return False
    diff = e.lhs - e.rhs
    try:
        return sympy.Poly(diff, sym).degree() <= 1
    except Exception:  # noqa: BLE001 - not a polynomial in s (floor, ceil, Mod): not a plain bound
        return False


def _true(v) -> bool:
    try:
        return bool(v)
    except TypeError:
        return True


def _range_text(shape_env, expr, role, example: int):
    """(text, min, max) of the sizes torch.export proved the axis takes ('' / None when unbounded). A lower bound
    of 2 is torch.export's for any dynamic axis (sizes 0 and 1 are specialised): an ``example`` of size 1 was
    captured at 2 and its graph checked at 1 (``_same_at_example``), so 1 is in (an FFT padding the batch to 430
    bounded it to 2..429, and the rewritten model refused its own example)."""
    try:
        rng = shape_env.var_to_range.get(expr) if expr in getattr(shape_env, "var_to_range", {}) else None
        rng = rng if rng is not None else shape_env.bound_sympy(expr)
        lo, hi = int(rng.lower), rng.upper
    except Exception:  # noqa: BLE001 - only for the report
        return "", None, None
    try:
        hi = None if str(hi) in ("oo", "int_oo") else int(hi)
    except (TypeError, ValueError, OverflowError):
        hi = None
    if example == 1 and lo == 2:
        lo = 1
    if lo <= 2 and hi is None:
        return "", None, None
    return f"{lo} <= {role}" + ("" if hi is None else f" <= {hi}"), lo, hi


def _bound_where(shape_env, expr) -> str:
    """The model's line of the first guard of the capture that bounds ``expr``'s one symbol from below past 2 or
    from above ('' when none has a location)."""
    import sympy

    syms = getattr(expr, "free_symbols", set())
    if len(syms) != 1:
        return ""
    for g in getattr(shape_env, "guards", None) or []:
        e = g.expr
        if isinstance(e, (sympy.Le, sympy.Lt, sympy.Ge, sympy.Gt, sympy.Eq)) and e.free_symbols == syms:
            where = from_guard(g)
            if where:
                return where
    return ""


def readable(expr, sources) -> Any:
    """A guard expression with each input-size symbol written as ``name.shape[axis]`` (not ``s27``);
    ``sources``: the capture's shape env's symbol -> sources map."""
    import sympy

    names = {}
    for sym in getattr(expr, "free_symbols", ()):
        for src in (sources or {}).get(sym, ()):
            name = src.name
            if ".size()[" in name:
                base, axis = name.rsplit(".size()[", 1)
                base = base[3:-2] if base.startswith("L['") and base.endswith("']") else base
                names[sym] = sympy.Symbol(f"{base}.shape[{axis.rstrip(']')}]")
                break
    return expr.xreplace(names) if names else expr



def describe_guard(guard, size, sources=None) -> str:
    where = from_guard(guard)
    return (f"the capture's guard {readable(guard.expr, sources)} fails at size {size}, where the model runs"
            + (f" (guard from {where})" if where else ""))


def accept(ax: Axis, guard, size, sources=None) -> str:
    """A restricting guard the model's own code also has (eager fails at ``size`` too): the axis stays
    dynamic, with the restriction in the report (returned, and added to ``ax.range``)."""
    ax.dynamic = True
    where = from_guard(guard)
    text = f"sizes where {readable(guard.expr, sources)} holds" + (f" ({where})" if where else "")
    ax.range = (ax.range + ", " if ax.range else "") + text
    return text


def _auto_within(dim):
    """Dim.AUTO for a requested axis, keeping the user's upper bound where torch's AUTO takes one (a dynamic-length
    FFT plans for it)."""
    auto = torch.export.Dim.AUTO
    hi = getattr(dim, "max", None)
    try:
        hi = int(hi) if hi is not None else None
    except (TypeError, ValueError, OverflowError, AttributeError):   # int_oo / oo: unbounded
        hi = None
    if hi is None or hi >= 1 << 62 or not getattr(auto, "_factory", False):
        return auto
    return auto(max=hi)

