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

Only guards ``Eq`` / ``Ne`` of ``Mod(expr, k)`` against a constant, in one size, take this path.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import List, Optional

import torch
import torch.fx as fx

from .._torch.bases import tracing as _tracing
from ..errors import SpecRewriteError


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


def poison(y, x, axis: int, flag: str):
    """In an exporter's trace: y / flag, the flag 1 inside the class and 0 outside (inf / nan there)."""
    if not isinstance(y, torch.Tensor) or not y.is_floating_point() or not torch.compiler.is_exporting():
        return y
    f = eval(_compiled(flag), {"__builtins__": {}}, {"n": x.shape[axis]})   # noqa: S307 - our own expression
    return y / (torch.ones((), dtype=y.dtype, device=y.device) * f)


def install(gm: fx.GraphModule, classes: List[SizeClass]) -> None:
    """Add each class's eager check after its input and its export-time flag on every floating output."""
    if not classes:
        return
    g = gm.graph
    # torch.export's own guard check (a ``_guards_fn`` call after the placeholders) holds the residue guard too:
    # exporting the rewritten model again turns it into a constraint on the user's Dim, which torch.onnx.export
    # "fixes" by re-parametrising the axis (t = 2 * _t - 1), so the flag below would be folded to 1 and a size
    # outside the class silently wrong. The checks below replace it for these axes.
    for node in list(g.nodes):
        if node.op == "call_module" and node.target == "_guards_fn" and not node.users:
            g.erase_node(node)
    phs = [n for n in g.nodes if n.op == "placeholder"]
    checked = {}
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

    def flagged(v):
        if not isinstance(v, fx.Node):
            return v
        with g.inserting_before(out):
            for c in classes:
                if c.index < len(phs):
                    v = g.call_function(poison, (v, phs[c.index], c.axis, c.flag))
        return v
    out.args = fx.node.map_aggregate(out.args, lambda a: flagged(a) if isinstance(a, fx.Node) else a)
    g.lint()
    gm.recompile()
