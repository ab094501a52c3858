"""Where a rewritten graph first parts from eager: run the captured graph and the lowered one side by side on the
same inputs and compare every intermediate value the pass kept a counterpart of, in graph order. Used only to
explain a verification failure (it costs two extra runs and holds every intermediate value)."""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.fx as fx
import torch.utils._pytree as pytree

from ._nodes import attr_of, where_of

TOL = 1e-5   # of each intermediate value's own peak (float32's level, as the verification's own threshold)


class _Recorder(fx.Interpreter):
    def __init__(self, gm):
        super().__init__(gm)
        self.values: Dict[fx.Node, Any] = {}

    def run_node(self, n):
        v = super().run_node(n)
        self.values[n] = v.clone() if isinstance(v, torch.Tensor) else v   # in-place ops later must not change it
        return v


def _as_real(v) -> Optional[torch.Tensor]:
    if not isinstance(v, torch.Tensor) or not (v.is_floating_point() or v.is_complex()):
        return None
    return torch.view_as_real(v.resolve_conj()).detach().double() if v.is_complex() else v.detach().double()


def _counterpart(entry):
    node = getattr(entry, "node", entry)
    return node if isinstance(node, fx.Node) else None


def first_divergence(gm: fx.GraphModule, lowering, out: fx.GraphModule, args, feeds) -> str:
    """' (the first op whose value differs: <op> at <line>, <err> of its peak)' or '' when none is found."""
    try:
        flat = [a.clone() if isinstance(a, torch.Tensor) else a for a in pytree.tree_leaves(tuple(args))]
        it = iter(flat)
        orig_in = []
        for n in gm.graph.nodes:
            if n.op != "placeholder":
                continue
            qual = lowering.attr_placeholders.get(n.name)
            orig_in.append(attr_of(gm, qual) if qual else next(it))
        with torch.no_grad():
            a = _Recorder(gm)
            a.run(*orig_in)
            b = _Recorder(out)
            b.run(*[x.clone() if isinstance(x, torch.Tensor) else x for x in flat], *feeds.values())
    except Exception:  # noqa: BLE001 - the explanation is best effort; the failure itself is reported anyway
        return ""
    for n in gm.graph.nodes:
        if n.op != "call_function" or n not in lowering.env:
            continue
        mine = _counterpart(lowering.env[n])
        if mine is None or mine not in b.values:
            continue
        x, y = _as_real(a.values.get(n)), _as_real(b.values[mine])
        if x is None or y is None or x.shape != y.shape or not x.numel():
            continue
        finite = torch.isfinite(x) & torch.isfinite(y)
        if not bool(finite.all()) and not bool((x.isnan() == y.isnan()).all()):
            return _say(n, float("nan"))
        peak = float(x[finite].abs().max()) if bool(finite.any()) else 0.0
        if peak == 0.0:
            continue
        err = float((x - y)[finite].abs().max()) / peak
        if err > TOL:
            return _say(n, err)
    return ""


def _say(node: fx.Node, err: float) -> str:
    name = getattr(node.target, "__name__", str(node.target))
    where = where_of(node)
    return f" (the first op whose value differs: {name}" + (f" at {where}" if where else "") + \
        (f", {err:.2e} of its peak)" if err == err else ", NaN where eager is finite)")
