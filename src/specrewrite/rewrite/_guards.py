"""An axis the captured graph holds for a residue class of sizes only, kept dynamic with a check.

Models pad to a multiple of a stride in Python: ``if le % stride != 0: x = F.pad(x, (0, stride - le % stride))``
(HDemucs' and HTDemucs' time encoders; codecs padding to a hop). torch.export captures the branch the example
takes and guards on it (``Ne(Mod(T, 4), 0)``): the graph is right for every size in that residue class and wrong
for the others, where eager takes the other branch. Fixing the axis to the example's size would lose every other
length; instead the axis stays dynamic and the rewritten model checks the size:

- in eager, a size outside the class raises a ``SpecRewriteError`` naming the model's line;
- inside an exporter's trace (``torch.export``, ``torch.onnx.export``), where a Python check would become a guard
  again, every floating output is divided by a 0 / 1 flag computed from the size with integer arithmetic: exactly
  the output inside the class, inf / nan outside it, so an exported file is loudly wrong, never silently.

Guards ``Eq`` / ``Ne`` of ``Mod(expr, k)`` against a constant take this path directly. Any other guard in one
size (an inequality between floors, ``T + 2 <= 4*(T//4) + 4``; a bound hidden in a ``Min``, open-unmix's
``Min(200, F) >= Min(300, F)`` when its frame loop runs once) is evaluated at every size up to ``DOMAIN``: where
the sizes it holds for are an interval, a residue class, or a residue class within an interval, it takes the
same path (``size_class``).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import List, Optional

import numpy as np
import torch
import torch.fx as fx

from .._torch.bases import tracing as _tracing
from ..errors import SpecRewriteError
from ._data_guards import flag_outputs


@dataclasses.dataclass
class SizeClass:
    """Sizes n of one input axis where ``test`` (a Python expression in n) holds."""
    index: int          # input position
    axis: int
    test: str           # e.g. "(n % 4) != 0"
    flag: str           # the same as 0 / 1 integer arithmetic: "(((n - 0) % 4) + 3) // 4"
    text: str           # for messages: "T % 4 != 0"
    where: str          # the model's line that branches, or ""
    input: str = ""
    lower_only: int = 0  # the class is every size >= this (nothing else): a bound, when the model fails below too


def _py(e) -> str:
    """A sympy integer expression in one symbol as Python source in ``n``."""
    import sympy

    name = type(e).__name__
    if isinstance(e, sympy.Symbol):
        return "n"
    if isinstance(e, sympy.Integer):
        return str(int(e))
    if isinstance(e, sympy.Add):
        return "(" + " + ".join(_py(a) for a in e.args) + ")"
    if isinstance(e, sympy.Mul):
        return "(" + " * ".join(_py(a) for a in e.args) + ")"
    if name in ("Mod", "PythonMod"):
        return f"({_py(e.args[0])} % {_py(e.args[1])})"
    if name == "FloorDiv":
        return f"({_py(e.args[0])} // {_py(e.args[1])})"
    if name in ("CeilToInt", "FloorToInt") and type(e.args[0]).__name__ == "IntTrueDiv" \
            and isinstance(e.args[0].args[1], sympy.Integer) and int(e.args[0].args[1]) > 0:
        # math.ceil / floor of size / k (HDemucs' int(math.ceil(T / hl))), in integer arithmetic: exact where
        # a float division would round
        a, k = _py(e.args[0].args[0]), int(e.args[0].args[1])
        return f"(({a} + {k - 1}) // {k})" if name == "CeilToInt" else f"({a} // {k})"
    raise ValueError(f"no Python form for {e}")


def residue_class(expr, index: int, axis: int, where: str, input_name: str) -> Optional[SizeClass]:
    """The SizeClass of a guard ``Eq/Ne(Mod(x, k), r)`` in one symbol (k, r constants), else None."""
    import sympy

    if not isinstance(expr, (sympy.Eq, sympy.Ne)) or len(expr.free_symbols) != 1:
        return None
    lhs, rhs = expr.lhs, expr.rhs
    if isinstance(lhs, sympy.Integer):
        lhs, rhs = rhs, lhs
    if type(lhs).__name__ not in ("Mod", "PythonMod") or not isinstance(rhs, sympy.Integer) \
            or not isinstance(lhs.args[1], sympy.Integer) or int(lhs.args[1]) < 2:
        return None
    try:
        x = _py(lhs.args[0])
    except ValueError:
        return None
    k, r = int(lhs.args[1]), int(rhs)
    ne = isinstance(expr, sympy.Ne)
    # 1 where x % k != r, else 0; every operand of % and // stays non-negative (sizes are), so a runtime whose
    # remainder truncates toward zero computes the same
    differs = f"(((({x} % {k}) + {k - r}) % {k}) + {k - 1}) // {k}"
    flag = differs if ne else f"1 - {differs}"
    text = f"{x.replace('n', 'size')} % {k} {'!=' if ne else '=='} {r}"
    return SizeClass(index, axis, f"({x} % {k}) {'!=' if ne else '=='} {r}", flag, text, where, input_name)


DOMAIN = 1 << 22          # sizes up to this are judged one by one (4 M samples: 95 s at 44.1 kHz)
_MAX_PERIOD = 1 << 14
_MAX_TERMS = 16


def _np(e, n):
    """A sympy expression in one symbol (integers, relations, and / or) evaluated at every n of an int64 array."""
    import sympy

    name = type(e).__name__
    if isinstance(e, sympy.Symbol):
        return n
    if isinstance(e, (sympy.Integer, sympy.logic.boolalg.BooleanAtom)):
        return np.int64(int(e)) if isinstance(e, sympy.Integer) else np.bool_(bool(e))
    args = [_np(a, n) for a in e.args]
    if isinstance(e, sympy.Add):
        return functools.reduce(np.add, args)
    if isinstance(e, sympy.Mul):
        return functools.reduce(np.multiply, args)
    if isinstance(e, sympy.Pow) and isinstance(e.args[1], sympy.Integer) and 1 <= int(e.args[1]) <= 2:
        return args[0] ** int(e.args[1])
    if name in ("Mod", "PythonMod"):
        return np.mod(args[0], args[1])
    if name == "FloorDiv":
        return np.floor_divide(args[0], args[1])
    if name in ("CeilToInt", "FloorToInt") and type(e.args[0]).__name__ == "IntTrueDiv":
        a, k = _np(e.args[0].args[0], n), _np(e.args[0].args[1], n)
        return -np.floor_divide(-a, k) if name == "CeilToInt" else np.floor_divide(a, k)
    if name in ("Min", "Max"):   # sympy's and torch's own (torch.utils._sympy.functions)
        return functools.reduce(np.minimum if name == "Min" else np.maximum, args)
    table = {sympy.And: np.logical_and, sympy.Or: np.logical_or}
    for kind, f in table.items():
        if isinstance(e, kind):
            return functools.reduce(f, args)
    if isinstance(e, sympy.Not):
        return np.logical_not(args[0])
    rel = {sympy.Eq: np.equal, sympy.Ne: np.not_equal, sympy.StrictLessThan: np.less, sympy.LessThan: np.less_equal,
           sympy.StrictGreaterThan: np.greater, sympy.GreaterThan: np.greater_equal}
    for kind, f in rel.items():
        if isinstance(e, kind):
            return f(args[0], args[1])
    raise ValueError(f"no array form for {e}")


def _divisors(e) -> List[int]:
    """The constant moduli and divisors in ``e`` (the period of a guard divides their lcm)."""
    import sympy

    out = []
    for sub in sympy.preorder_traversal(e):
        name = type(sub).__name__
        if name in ("Mod", "PythonMod", "FloorDiv", "IntTrueDiv") and isinstance(sub.args[1], sympy.Integer):
            out.append(abs(int(sub.args[1])))
    return [d for d in out if d > 1]


@functools.lru_cache(maxsize=8)   # first_failure and size_class judge the same guards (4 MB each, read-only)
def _holds_everywhere(expr):
    """The guard's truth at every size 0 .. DOMAIN - 1 (a bool array), or None when it has no array form."""
    import sympy

    if len(getattr(expr, "free_symbols", ())) != 1 or not isinstance(expr, sympy.logic.boolalg.Boolean):
        return None
    out = np.empty(DOMAIN, dtype=bool)
    step = 1 << 18
    try:
        with np.errstate(all="ignore"):
            for a in range(0, DOMAIN, step):
                n = np.arange(a, a + step, dtype=np.int64)
                out[a:a + step] = np.broadcast_to(_np(expr, n), n.shape)
    except (ValueError, TypeError, ZeroDivisionError, OverflowError):
        return None
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=1024)
def first_failure(expr, lo: int, example: int) -> Optional[int]:
    """The size in ``lo`` .. DOMAIN - 1 nearest to ``example`` where a guard in one size fails, or None (it holds
    at all of them, or has no array form)."""
    ok = _holds_everywhere(expr)
    if ok is None:
        return None
    bad = np.flatnonzero(~ok[max(int(lo), 1):]) + max(int(lo), 1)
    if not bad.size:
        return None
    return int(bad[np.argmin(np.abs(bad - example))])


def _indicator(residues, period) -> str:
    """0 / 1 integer arithmetic (with ``m`` = min) that is 1 where n % period is in ``residues``."""
    terms = [f"(1 - m(((n % {period}) - {r}) * ((n % {period}) - {r}), 1))" for r in residues]
    return "(" + " + ".join(terms) + ")"


def size_class(expr, index: int, axis: int, where: str, input_name: str, example: int) -> Optional[SizeClass]:
    """The SizeClass of any guard in one size whose sizes form a residue class (mod the lcm of its divisors),
    an interval, or both, judged at every size below DOMAIN; None otherwise, or when it holds everywhere."""
    import sympy

    direct = residue_class(expr, index, axis, where, input_name)
    if direct is None and isinstance(expr, sympy.Eq) and _from_bound_up(expr, example):
        # an equality that is a lower bound in disguise: Eq(Max(1, T // 16 - 2), T // 16 - 2) after a crop
        # (F.pad with a negative amount) holds for every size from 48 up
        return _size_class_cached(expr, example, index, axis, where, input_name)
    if direct is not None or isinstance(expr, sympy.Eq):
        # an equality that is not a remainder pins a size the graph computes from this one (asteroid's DCUNet
        # in the draft capture: Eq(513*Max(1, T//256 - 3), 30267), 59 frames): the graph holds that constant, an
        # exporter pins the axis again (torch.onnx wrote a file returning 16,000 samples for 16,001), so the
        # axis is fixed, not kept for the few sizes that share the constant
        return direct
    return _size_class_cached(expr, example, index, axis, where, input_name)


def _from_bound_up(expr, example: int) -> bool:
    """Whether a guard holds at every size from some size at or below the example up to DOMAIN (and fails
    somewhere below it)."""
    ok = _holds_everywhere(expr)
    if ok is None or not 0 < example < DOMAIN or ok[1:].all():
        return False
    bad = np.flatnonzero(~ok[1:]) + 1
    return bool(bad[-1] < example)


@functools.lru_cache(maxsize=256)
def _size_class_cached(expr, example, index, axis, where, input_name):
    ok = _holds_everywhere(expr)
    if ok is None or ok[1:].all() or not 0 < example < DOMAIN or not ok[example]:
        return None
    period = int(functools.reduce(np.lcm, _divisors(expr), 1))
    start = example - example % period
    if period > _MAX_PERIOD or start + period > DOMAIN:
        return None
    pattern = ok[start:start + period]   # pattern[r]: the guard at the sizes n = r (mod period) near the example
    # pattern repeated from size 0 (start is a multiple of the period): the sizes where the guard leaves it
    off = np.flatnonzero(ok != np.tile(pattern, -(-DOMAIN // period))[:DOMAIN])
    off = off[off >= 1]
    below, above = off[off < example], off[off > example]
    lo = int(below[-1]) + 1 if below.size else 1   # the sizes around the example where the period holds; a
    hi = int(above[0]) - 1 if above.size else DOMAIN - 1   # size outside them is refused, right or not
    if int(ok[lo:hi + 1].sum()) < 2:   # one size only (kymatio's Eq(T + 1024, 2048)): a fixed axis, not a class
        return None
    upper = hi if hi < DOMAIN - 1 else None
    tests, flags, texts = [], [], []
    if lo > 1:
        tests.append(f"n >= {lo}")
        flags.append(f"m(n // {lo}, 1)")
        texts.append(f"size >= {lo}")
    if upper is not None:
        tests.append(f"n <= {upper}")
        flags.append(f"(1 - m(n // {upper + 1}, 1))")
        texts.append(f"size <= {upper}")
    if not pattern.all():
        keep = [int(r) for r in np.flatnonzero(pattern)]
        drop = [int(r) for r in np.flatnonzero(~pattern)]
        if min(len(keep), len(drop)) > _MAX_TERMS:
            return None
        tests.append(f"(n % {period}) in {tuple(keep)}")
        flags.append(_indicator(keep, period) if len(keep) <= len(drop) else f"(1 - {_indicator(drop, period)})")
        texts.append(f"size % {period} in {{{', '.join(map(str, keep))}}}")
    flag = " * ".join(flags)
    return SizeClass(index, axis, " and ".join(f"({t})" for t in tests), flag, " and ".join(texts), where,
                     input_name, lo if len(tests) == 1 and lo > 1 else 0)


@functools.lru_cache(maxsize=None)
def _compiled(src: str):
    return compile(src, "<specrewrite size check>", "eval")


def holds(test: str, n: int) -> bool:
    return bool(eval(_compiled(test), {"__builtins__": {}}, {"n": int(n)}))   # noqa: S307 - our own expression


def check_size(x, axis: int, test: str, text: str, where: str, name: str):
    """Eager: raise when the size is outside the class the graph holds."""
    if isinstance(x, torch.Tensor) and not _tracing() and not holds(test, x.shape[axis]):
        raise SpecRewriteError(
            f"input '{name}' axis {axis} has size {int(x.shape[axis])}: this rewritten graph holds sizes where "
            f"{text} only" + (f"; the model's code at {where} takes another path at this size" if where else ""),
            op="rewritten model",
            fix="give a size where " + text + ", or rewrite again with an example of this size (dynamic_shapes=False "
                "for one size)")
    return x


def check_range(x, axis: int, lo: int, hi, name: str, where: str = ""):
    """The sizes the graph holds on a dynamic axis (its range), once torch.export's own guard check is erased:
    in eager a clear error outside it; in an exporter's trace a ``torch._check`` the exporter takes as the
    axis's range."""
    if not isinstance(x, torch.Tensor):
        return x
    n = x.shape[axis]
    if torch.compiler.is_exporting():
        torch._check(n >= lo)
        if hi is not None:
            torch._check(n <= hi)
    elif not _tracing() and (int(n) < lo or (hi is not None and int(n) > hi)):
        want = f"{lo} <= size" + (f" <= {hi}" if hi is not None else "")
        raise SpecRewriteError(f"input '{name}' axis {axis} has size {int(n)}: this rewritten graph holds sizes "
                               f"{want} only" + (" (the bound comes from the model's line below)" if where else ""),
                               op="rewritten model", where=where or None,
                               fix=f"give a size {want}, or rewrite again with an example of this size")
    return x


def poison(y, x, axis: int, flag: str):
    """In an exporter's trace: y / flag, the flag 1 inside the class and 0 outside (inf / nan there)."""
    if not isinstance(y, torch.Tensor) or not y.is_floating_point() or not torch.compiler.is_exporting():
        return y
    f = eval(_compiled(flag), {"__builtins__": {}}, {"n": x.shape[axis], "m": torch.sym_min})   # noqa: S307 - our own expression
    return y / (torch.scalar_tensor(1.0, dtype=y.dtype, device=y.device) * f)


def in_ranges(xs, ranges):
    """In an exporter's trace: one boolean tensor, true where every axis' size is within its range (``ranges``:
    (axis, lo, hi) per input of ``xs``); None otherwise. An exporter takes an axis's range as a fact (torch.export's
    guard, ``torch._check``) and writes no check of its own, so a file fed a shorter clip than the graph holds ran
    silently wrong (a pad the model's code applies below the bound: 3 frames where eager has 5). The size is taken
    as a tensor (``scalar_tensor``), which no exporter folds from the range."""
    if not torch.compiler.is_exporting():
        return None
    ok = None
    for x, (axis, lo, hi) in zip(xs, ranges):
        n = torch.scalar_tensor(x.shape[axis], dtype=torch.int64, device=x.device)
        inside = n >= lo if hi is None else (n >= lo) & (n <= hi)
        ok = inside if ok is None else ok & inside
    return ok


def install(gm: fx.GraphModule, classes: List[SizeClass], ranges=(), erase: bool = False) -> None:
    """Add each class's eager check after its input and its export-time flag on every floating output, and per
    dynamic axis with a range (``ranges``: (input index, axis, lo, hi, name, where)) an export-time flag
    (``in_ranges``, applied with ``_data_guards.flag_outputs``). ``erase``: torch.export's own guard check holds a guard with a remainder (a class, or a
    pad up to a multiple made right for both branches, ``_pad_multiple``): it is replaced by the checks here and,
    per dynamic axis, a range check."""
    erase = erase or any("%" in c.test for c in classes)
    if not classes and not erase and not ranges:
        return
    g = gm.graph
    # torch.export's own guard check (a ``_guards_fn`` call after the placeholders) holds the residue guard too:
    # exporting the rewritten model again turns it into a constraint on the user's Dim, which torch.onnx.export
    # "fixes" by re-parametrising the axis (t = 2 * _t - 1, t = 64 * _t - 60), so the flag below would be folded
    # to 1 and a size outside the class silently wrong, and a pad of (4 - T % 4) % 4 folded to 0 (HDemucs was
    # 9 % off at odd lengths). The checks below replace it for these axes: the class checks, and the range of
    # every dynamic axis (torch.onnx takes a ``torch._check`` bound as the axis's range; without any bound,
    # julius' FFTConv1d failed to export: "Pending unbacked symbols").
    # An interval alone (a bound hidden in a Min) is kept there.
    for node in list(g.nodes):
        if node.op == "call_module" and node.target == "_guards_fn" and not node.users and erase:
            g.erase_node(node)
    phs = [n for n in g.nodes if n.op == "placeholder"]
    checked = {}
    for index, axis, lo, hi, name, where in ranges if erase else ():
        if index >= len(phs):
            continue
        ph = checked.get(index, phs[index])
        with g.inserting_after(ph):
            node = g.call_function(check_range, (ph, axis, lo, hi, name, where))
        ph.replace_all_uses_with(node, delete_user_cb=lambda u, node=node: u is not node)
        node.meta = dict(phs[index].meta)
        checked[index] = node
    for c in classes:
        if c.index >= len(phs):
            continue
        ph = checked.get(c.index, phs[c.index])
        with g.inserting_after(ph):
            node = g.call_function(check_size, (ph, c.axis, c.test, c.text, c.where, c.input))
        ph.replace_all_uses_with(node, delete_user_cb=lambda u, node=node: u is not node)
        node.meta = dict(phs[c.index].meta)
        checked[c.index] = node
    out = next(n for n in g.nodes if n.op == "output")
    bounded = [(phs[i], (axis, lo, hi)) for i, axis, lo, hi, *_ in ranges if i < len(phs)]
    in_range = None
    if bounded:
        with g.inserting_before(out):
            in_range = g.call_function(in_ranges, ([x for x, _ in bounded], [r for _, r in bounded]))

    def flagged(v):
        if not isinstance(v, fx.Node):
            return v
        with g.inserting_before(out):
            for c in classes:
                if c.index < len(phs):
                    v = g.call_function(poison, (v, phs[c.index], c.axis, c.flag))
            if in_range is not None:
                v = g.call_function(flag_outputs, (v, in_range))
        return v
    out.args = fx.node.map_aggregate(out.args, lambda a: flagged(a) if isinstance(a, fx.Node) else a)
    g.lint()
    gm.recompile()


class _GuardsAtBatchTwo(torch.nn.Module):
    """torch.export's guard check with a batch of 1 seen as a batch of 2 (a broadcast view: sizes only).

    Captured at batch 2 for an example of 1, some guards hold for every batch but 1 because sympy cannot prove
    them at 1 (``Mod(F, B*F) != 0`` with a symbolic frame count F). The graph itself was run at batch 1 against
    eager before it was kept; its guard check must not refuse that batch, and still checks every other size."""

    def __init__(self, inner: torch.nn.Module, indices):
        super().__init__()
        self.inner = inner
        self.indices = tuple(sorted(indices))
        self._is_impure = True   # a call with no users: fx's dead-code elimination keeps it

    def forward(self, *args):
        if torch.jit.is_tracing():   # sizes are traced tensors there, and a TorchScript trace keeps no guard
            return None
        seen = [a.expand(2, *a.shape[1:]) if i in self.indices and isinstance(a, torch.Tensor) and a.dim()
                and isinstance(a.shape[0], int) and a.shape[0] == 1 else a for i, a in enumerate(args)]
        return self.inner(*seen)


def guards_at_batch_two(gm: fx.GraphModule, indices) -> None:
    """Wrap ``gm``'s guard check (if any) in ``_GuardsAtBatchTwo`` for the inputs at ``indices``."""
    fn = getattr(gm, "_guards_fn", None)
    if fn is not None and not isinstance(fn, _GuardsAtBatchTwo):
        gm._guards_fn = _GuardsAtBatchTwo(fn, indices)
