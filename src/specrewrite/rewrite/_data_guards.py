"""Values the model's Python read from its input tensors, fixed to the example's by the capture: checked in every
form of the rewritten model, never silently wrong.

``lengths.tolist()`` (espnet's ``make_pad_mask``), ``int(n_frames)``, ``if x.max() > 1`` on an input tensor: the
capture (``_torch_private.reading_values``, as ``torch.export.draft_export``) takes the example's value and leaves ``aten._assert_scalar`` checks on it
(``Eq(u0, 126)``). torch runs them; an exporter drops them (an ONNX file then masks every clip with the example's
lengths). Here each such check becomes:

* in eager, a ``SpecRewriteError`` naming the value, the model's source line and the fix, instead of torch's bare
  "Runtime assertion failed for expression u0 >= 126";
* in an exporter's trace, the same condition computed with tensor ops from the input tensor itself (before the
  ``item()``), and every floating output ``where(condition, y, nan)``: a file fed other values is loudly wrong.
"""
from __future__ import annotations

import operator
from typing import Dict, List

import torch
import torch.fx as fx

from ..errors import SpecRewriteError
from ._complex import sym_size
from ._fold import ancestors
from ._nodes import where_of

_ITEM = {torch.ops.aten.item.default, torch.ops.aten._local_scalar_dense.default}
_ASSERT = {torch.ops.aten._assert_scalar.default}
# sym ops on values read from tensors, and the same op on tensors (a 0-dim tensor stands for the value)
_BINARY = {operator.ge, operator.le, operator.gt, operator.lt, operator.eq, operator.ne, operator.add,
           operator.sub, operator.mul, operator.floordiv, operator.mod, operator.truediv, operator.and_,
           operator.or_, operator.pow}
_UNARY = {operator.neg: torch.neg, torch.sym_not: torch.logical_not}
_SIZE = {torch.ops.aten.sym_size.int, sym_size}   # (the second: a size once the pass has lowered the graph)


def check_value(cond, text: str, where: str, packed: bool = False):
    """Eager: raise when a value read from an input differs from the example's. Under an exporter: torch's own
    check (the exporter takes it as a fact of the trace; the flag on the outputs is what the file keeps).
    ``packed``: the check is the padded form's of a packed sequence (``_packed``), said in its own terms."""
    if torch.compiler.is_exporting() or torch.jit.is_tracing():
        torch._check(cond)
        return None
    if bool(cond):
        return None
    if packed:
        raise SpecRewriteError(
            "pad_packed_sequence returns as many frames as the longest clip, and the rewritten graph returns as "
            f"many as its input has: the longest of these lengths is shorter than the input (check {text})"
            + (f", at {where}" if where else ""), op="rewritten model",
            fix="give lengths whose largest fills the input (trim the batch to its longest clip), or rewrite "
                "with pack_padded_sequence / pad_packed_sequence left out of forward")
    raise SpecRewriteError(
        "the model's Python reads a value from a tensor (float(t), t.item(), int(t), t.tolist() of a value "
        f"computed from an input) and the capture fixed what it does with it to the example's value (check "
        f"{text}); these inputs give another value" + (f", at {where}" if where else ""),
        op="rewritten model",
        fix="keep the value a tensor (torch.log(t) instead of math.log(float(t)), torch.where instead of if, a "
            "mask from torch.arange(T) < lengths[:, None] instead of lengths.tolist()), or give inputs with "
            "the example's values there")


def flag_outputs(y, flag):
    """In an exporter's trace: ``y`` where ``flag`` holds, nan elsewhere; the identity otherwise."""
    if not isinstance(y, torch.Tensor) or not y.is_floating_point() or not torch.compiler.is_exporting():
        return y
    return torch.where(flag, y, torch.scalar_tensor(float("nan"), dtype=y.dtype, device=y.device))


def _tensor_form(node, memo: Dict[fx.Node, object], g: fx.Graph, anchor: fx.Node):
    """The node's value as a tensor op on the tensor it was read from, inserted before ``anchor`` (None where
    that is not known)."""
    if not isinstance(node, fx.Node):
        return node
    if node in memo:
        return memo[node]
    got = None
    if node.op == "call_function" and node.target in _ITEM:
        got = node.args[0]
    elif node.op == "call_function" and (node.target in _BINARY or node.target in _UNARY):
        args = [_tensor_form(a, memo, g, anchor) for a in node.args]
        if all(a is not None for a in args):
            if any(_is_read(a, memo) for a in args):
                with g.inserting_before(anchor):
                    got = g.call_function(_UNARY.get(node.target, node.target), tuple(args))
            else:
                got = node   # sizes and constants only (``frames // 64 + 1``): the value itself
    elif node.op == "call_function" and node.target in _SIZE:
        got = node
    memo[node] = got
    return got


def _is_read(form, memo: Dict[fx.Node, object]) -> bool:
    """Whether a tensor form computes from a value read from a tensor (not from sizes and constants only)."""
    return isinstance(form, fx.Node) and memo.get(form, None) is not form


def _reads(g: fx.Graph, node) -> List[fx.Node]:
    """The ``item`` nodes behind ``node``, in graph order."""
    behind = ancestors(node) if isinstance(node, fx.Node) else set()
    return [n for n in g.nodes if n in behind and n.op == "call_function" and n.target in _ITEM]


def install(gm: fx.GraphModule) -> List[str]:
    """Turn every check on a value read from a tensor into ``check_value`` and flag the outputs with the
    conditions' tensor forms. Returns the checks' texts (for the report)."""
    g = gm.graph
    asserts = [n for n in g.nodes if n.op == "call_function" and n.target in _ASSERT and _reads(g, n.args[0])]
    if not asserts:
        return []
    memo: Dict[fx.Node, object] = {}
    flags: List[fx.Node] = []
    texts: List[str] = []
    for node in asserts:
        cond = node.args[0]
        msg = str(node.args[1]) if len(node.args) > 1 else ""
        text = msg.split("expression ", 1)[-1].split(" on node", 1)[0] if "expression" in msg else msg
        reads = _reads(g, cond)
        src = next(filter(None, map(where_of, reads)), None)   # the model's line that read it
        packed = any("_packed.py" in str(r.meta.get("stack_trace", "")) for r in reads)   # _packed's own check
        form = _tensor_form(cond, memo, g, node)
        if _is_read(form, memo):
            flags.append(form)
        with g.inserting_before(node):
            g.call_function(check_value, (cond, text, src or "", packed))
        g.erase_node(node)
        texts.append(text + (f" at {src}" if src else ""))
    out = next(n for n in g.nodes if n.op == "output")
    if flags:
        with g.inserting_before(out):
            flag = flags[0]
            for f in flags[1:]:
                flag = g.call_function(torch.logical_and, (flag, f))
        out.args = fx.node.map_aggregate(
            out.args, lambda a: _flagged(g, out, a, flag) if isinstance(a, fx.Node) else a)
    g.lint()
    gm.recompile()
    return texts


def _flagged(g: fx.Graph, out: fx.Node, v: fx.Node, flag: fx.Node) -> fx.Node:
    with g.inserting_before(out):
        return g.call_function(flag_outputs, (v, flag))
