"""Small helpers on FX nodes shared by the graph pass and its parts."""
from __future__ import annotations

import keyword
from typing import Any, Dict, List, Optional

import torch
import torch.fx as fx

from .._where import from_stack_text


def where_of(node: fx.Node) -> Optional[str]:
    """The innermost user-code frame of a node's stack trace ('file:line in func: code')."""
    return from_stack_text(node.meta.get("stack_trace"))


def val(node):
    return node.meta.get("val") if isinstance(node, fx.Node) else None


def is_complex_node(node) -> bool:
    v = val(node)
    if isinstance(v, torch.Tensor):
        return v.is_complex()
    if isinstance(v, (list, tuple)):
        return any(isinstance(t, torch.Tensor) and t.is_complex() for t in v)
    return False


def bind(node: fx.Node, args, kwargs) -> Dict[str, Any]:
    """The call's arguments by their schema names, the op's defaults filled in (``bind(...)["dim"]``, not
    ``args[2] if len(args) > 2 else kwargs.get("dim", 0)``)."""
    schema = node.target._schema
    out = {a.name: a.default_value if a.has_default_value() else None for a in schema.arguments}
    for a, v in zip(schema.arguments, args):
        out[a.name] = v
    out.update(kwargs)
    return out


def concrete(v):
    """``v`` as a Python number where it is one (a number, or a SymInt / SymFloat / SymBool the capture replaced
    by a constant)."""
    kinds = {torch.SymInt: int, torch.SymFloat: float, torch.SymBool: bool}
    cast = kinds.get(type(v))
    if cast is not None and not getattr(v.node.expr, "free_symbols", None):
        try:
            return cast(v.node.expr)
        except (TypeError, ValueError):
            return v
    return v


class NotConstant(Exception):
    pass


class NeedsStaticShapes(Exception):
    """A DFT runs along an axis the capture left dynamic: capture again with the input axes behind ``size``
    (a SymInt) fixed."""

    def __init__(self, msg: str, size=None):
        super().__init__(msg)
        if hasattr(size, "meta"):   # an fx.Node computing the size: its SymInt value
            size = size.meta.get("val")
        self.symbols = set(getattr(getattr(getattr(size, "node", None), "expr", None), "free_symbols", ()) or ())


def attr_of(root, qualname):
    v = root
    for part in qualname.split("."):
        v = getattr(v, part)
    return v


def drop_aliases(graph: fx.Graph) -> None:
    """``aten.alias`` (what torch.export makes of ``x[...]``) and ``lift_fresh`` are the tensor itself, views
    of the same storage: using the tensor instead changes nothing, even for a later in-place write. coremltools
    has no converter for ``aten::alias`` and a trace of the rewritten model records it."""
    for n in list(graph.nodes):
        if n.op == "call_function" and n.target in (torch.ops.aten.alias.default,
                                                  torch.ops.aten.lift_fresh.default) and \
                isinstance(n.args[0], fx.Node):
            n.replace_all_uses_with(n.args[0])
            graph.erase_node(n)
    for n in list(graph.nodes):
        if n.op == "call_function" and n.target is torch.ops.aten.copy_.default and not n.users and \
                _same_values(n.args[1], n.args[0]):
            graph.erase_node(n)


_KEEPS_VALUES = {torch.ops.aten.alias.default, torch.ops.aten.detach.default, torch.ops.aten.clone.default,
                 torch.ops.aten.contiguous.default, torch.ops.aten.lift_fresh.default}


def _same_values(src, dst) -> bool:
    """Whether ``src`` is ``dst`` through ops that keep every value and the dtype (``self.fb =
    self.fb.to(x.device)`` in forward, auraloss' filterbank: torch.export writes the buffer back with
    ``copy_(fb, to(fb))``, a no-op that coremltools' in-place pass refuses, "No matching select or slice")."""
    while isinstance(src, fx.Node) and src is not dst and src.op == "call_function":
        same_dtype = isinstance(val(src), torch.Tensor) and isinstance(val(dst), torch.Tensor) and \
            val(src).dtype == val(dst).dtype
        if src.target in _KEEPS_VALUES or (same_dtype and src.target in (
                torch.ops.aten.to.dtype, torch.ops.aten.to.device, torch.ops.aten.to.dtype_layout,
                torch.ops.aten._to_copy.default)):
            src = src.args[0]
        else:
            return False
    return src is dst


def real_dtype(arg):
    """The real dtype carrying ``arg``'s values as pairs (complex64 -> float32), None when unknown."""
    v = arg.meta.get("val") if hasattr(arg, "meta") else None
    if not isinstance(v, torch.Tensor):
        return None
    return v.dtype.to_real() if v.dtype.is_complex else v.dtype


aten = torch.ops.aten


def uncopy(target):
    """aten.X_copy -> aten.X: functionalize spells views as copies (view_copy, detach_copy, ...), which some
    converters (coremltools) do not know; in a functional graph the view computes the same value."""
    if target is aten.view_copy.default:
        return aten.reshape.default  # a copy never needs contiguity; view would
    if isinstance(target, torch._ops.OpOverload) and target.namespace == "aten" and target._opname.endswith("_copy"):
        base = getattr(aten, target._opname[:-5], None)
        if base is not None and target._overloadname in base.overloads():
            return getattr(base, target._overloadname)
    return target


def forward_names(graph: fx.Graph, input_names: List[str], basis_feeds) -> List[str]:
    """forward's parameter names: the model's own, then (input mode) the bases' names; ``arg<i>`` where the
    model's inputs do not map one-to-one to graph inputs (nested inputs, say)."""
    phs = [n for n in graph.nodes if n.op == "placeholder"]
    user = [n for n in phs if n.name not in basis_feeds]
    names = list(input_names) + [n.name for n in phs if n.name in basis_feeds]
    ok = len(input_names) == len(user) and len(set(names)) == len(names) and all(
        s.isidentifier() and not keyword.iskeyword(s) and s != "self" for s in names)
    return names if ok else [f"arg{i}" for i in range(len(phs))]
