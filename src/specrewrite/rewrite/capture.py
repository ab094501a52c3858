"""Capture: any model -> an ATen-level FX graph, with torch.stft / istft kept as single opaque nodes.

Order of attempts: torch.export (non-strict, dynamic axes where the model allows) and, where it cannot capture
(data-dependent Python such as int(tensor) or asserts on values), tracing with the real example inputs
(make_fx, pre-dispatch): control flow is evaluated and shapes are specialised.
"""
from __future__ import annotations

import warnings
from typing import Dict, Tuple

import torch
import torch.fx as fx

from ._ops import CallSites, patched


def _dynamic_shapes(args):
    auto = torch.export.Dim.AUTO

    def one(a):
        if isinstance(a, torch.Tensor):
            return {i: auto for i in range(a.dim())} if a.dim() > 0 else None
        if isinstance(a, (list, tuple)):
            return type(a)(one(v) for v in a)
        if isinstance(a, dict):
            return {k: one(v) for k, v in a.items()}
        return None

    return tuple(one(a) for a in args)


def via_export(model, args, dynamic: bool = True) -> Tuple[fx.GraphModule, CallSites]:
    sites = CallSites()
    with patched(sites), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(model, tuple(args), dynamic_shapes=_dynamic_shapes(args) if dynamic else None,
                                strict=False)
        # no run_decompositions(): it re-traces the whole model (47 s of 53 s on HDemucs); the rules handle
        # the pre-dispatch ops (torch.fft.* as fft_*, in-place ops on complex values) directly.
        gm = ep.module()
    return gm, sites


def via_trace(model, args) -> Tuple[fx.GraphModule, CallSites, Dict[str, str]]:
    """make_fx with real tensors; parameters and buffers enter as placeholders and are mapped back to
    attributes of the returned module (same qualified names as in the model)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    named = dict(model.named_parameters(remove_duplicate=False))
    named.update(dict(model.named_buffers(remove_duplicate=False)))
    names = list(named)

    def fn(flat, *a):
        return torch.func.functional_call(model, dict(zip(names, flat)), a, strict=False, tie_weights=False)

    sites = CallSites()
    with patched(sites), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # pre_dispatch keeps the ops converters know (lstm, batch_norm, linear, ...) instead of their kernels
        gm = make_fx(fn, tracing_mode="real", pre_dispatch=True, record_stack_traces=True,
                     _error_on_data_dependent_ops=False)([named[n] for n in names], *args)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    attr_map = {}
    for node, qual in zip(placeholders[: len(names)], names):
        _set_attr(gm, qual, named[qual])
        attr_map[node.name] = qual
    return gm, sites, attr_map


def _set_attr(root: torch.nn.Module, qualname: str, value: torch.Tensor) -> None:
    *path, leaf = qualname.split(".")
    mod = root
    for p in path:
        if not hasattr(mod, p) or not isinstance(getattr(mod, p), torch.nn.Module):
            mod.add_module(p, torch.nn.Module())
        mod = getattr(mod, p)
    if isinstance(value, torch.nn.Parameter):
        mod.register_parameter(leaf, value)
    else:
        mod.register_buffer(leaf, value)
