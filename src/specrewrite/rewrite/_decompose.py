"""torch's own decomposition of one ATen node, traced on the node's metadata into a small FX graph.

Used by the graph pass for ops that have no lowering rule of their own: the decomposition (an op's
CompositeImplicitAutograd kernel, else its entry in torch's decomposition table) is written in terms of simpler
ATen ops, which the rules know. Sizes stay symbolic: the node's FakeTensor metadata carries the capture's
symbols, so the traced pieces compute shapes from the inputs exactly as the original op did.
"""
from __future__ import annotations

import warnings
from typing import List, Optional, Tuple

import torch
import torch.fx as fx
import torch.utils._pytree as pytree

_CIA = "CompositeImplicitAutograd"


def _table():
    from torch._decomp import decomposition_table

    return decomposition_table


def _has_cia(op) -> bool:
    try:
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), _CIA))
    except Exception:  # noqa: BLE001 - a torch without this query: fall back to the table
        return False


def decompose(node: fx.Node) -> Optional[Tuple[fx.GraphModule, List]]:
    """(graph, leaves): ``graph``'s placeholders stand for ``leaves`` (the fx.Node inputs of ``node``, in
    order). None when torch has no decomposition for the op, or when tracing it makes no progress."""
    from torch.fx.experimental.proxy_tensor import make_fx

    op = node.target
    if not isinstance(op, torch._ops.OpOverload):
        return None
    flat, spec = pytree.tree_flatten((node.args, node.kwargs))
    leaves = [a for a in flat if isinstance(a, fx.Node)]
    vals = [a.meta.get("val") for a in leaves]
    if any(not isinstance(v, (torch.Tensor, torch.SymInt, torch.SymFloat, torch.SymBool, int, float, bool))
           for v in vals):
        return None
    vals = _one_fake_mode(vals)
    table = {}
    if not _has_cia(op):
        dec = _table().get(op)
        if dec is None:
            return None
        table = {op: dec}

    def fn(*vs):
        it = iter(vs)
        a, k = pytree.tree_unflatten([next(it) if isinstance(x, fx.Node) else x for x in flat], spec)
        return op(*a, **k)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = make_fx(fn, decomposition_table=table, tracing_mode="real", pre_dispatch=False,
                         record_stack_traces=False)(*vals)
    except Exception:  # noqa: BLE001 - no usable decomposition: the caller reports the op as unsupported
        return None
    if any(n.op == "call_function" and n.target is op for n in gm.graph.nodes):
        return None
    return gm, leaves


def _one_fake_mode(vals: list) -> list:
    """Tensor metadata from two fake modes (a constant folded by the pass next to a captured value) cannot be
    traced together: static-shaped ones are re-made in the mode of the first."""
    modes = [v.fake_mode for v in vals if isinstance(v, torch.Tensor) and hasattr(v, "fake_mode")]
    if len({id(m) for m in modes}) <= 1:
        return vals
    mode = modes[0]
    out = []
    for v in vals:
        if isinstance(v, torch.Tensor) and getattr(v, "fake_mode", mode) is not mode and \
                all(isinstance(d, int) for d in v.shape):
            with mode:
                v = torch.empty_strided(tuple(v.shape), tuple(v.stride()), dtype=v.dtype, device=v.device)
        out.append(v)
    return out
