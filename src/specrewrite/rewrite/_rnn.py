"""Recurrent layers kept whole during capture: torch.export decomposes ``aten.lstm`` / ``aten.gru`` into one cell per
time step, each with symbolic shapes, which made capturing a model with LSTMs cost 5-10x a static export
(HDemucs: 34 s of a 40 s capture with a dynamic batch; open-unmix: most of a failed capture). During capture
``torch._VF.lstm`` / ``gru`` (what ``nn.LSTM`` / ``nn.GRU`` call) go through opaque custom ops whose fake kernels
only compute shapes; afterwards every such node becomes the ``aten.lstm.input`` / ``aten.gru.input`` call it
stands for, the same node a pre-dispatch trace records, so exporters see the op they know.
Packed sequences (``pack_padded_sequence``) keep torch's own path.
"""
from __future__ import annotations

import contextlib
import threading
from typing import List

import torch
import torch.fx as fx

_lock = threading.Lock()
_defined = False
_ORIG = {"lstm": None, "gru": None}


def _define() -> None:
    global _defined
    with _lock:
        if _defined:
            return
        _ORIG["lstm"] = torch._C._VariableFunctions.lstm
        _ORIG["gru"] = torch._C._VariableFunctions.gru

        @torch.library.custom_op("specrewrite::lstm", mutates_args=())
        def sr_lstm(x: torch.Tensor, hx: List[torch.Tensor], params: List[torch.Tensor], has_biases: bool,
                    num_layers: int, dropout: float, train: bool, bidirectional: bool,
                    batch_first: bool) -> List[torch.Tensor]:
            out = _ORIG["lstm"](x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
            return [t.clone() for t in out]

        @sr_lstm.register_fake
        def _(x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
            d = 2 if bidirectional else 1
            return [x.new_empty((*x.shape[:-1], d * hx[0].shape[-1])), hx[0].new_empty(hx[0].shape),
                    hx[1].new_empty(hx[1].shape)]

        @torch.library.custom_op("specrewrite::gru", mutates_args=())
        def sr_gru(x: torch.Tensor, hx: torch.Tensor, params: List[torch.Tensor], has_biases: bool,
                   num_layers: int, dropout: float, train: bool, bidirectional: bool,
                   batch_first: bool) -> List[torch.Tensor]:
            out = _ORIG["gru"](x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
            return [t.clone() for t in out]

        @sr_gru.register_fake
        def _(x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
            d = 2 if bidirectional else 1
            return [x.new_empty((*x.shape[:-1], d * hx.shape[-1])), hx.new_empty(hx.shape)]

        _defined = True


def _lstm(*args, **kwargs):
    # unpacked form: (input, (h0, c0), weights, ...); packed: (data, batch_sizes, (h0, c0), weights, ...)
    if kwargs or len(args) != 9 or not isinstance(args[1], (list, tuple)):
        return _ORIG["lstm"](*args, **kwargs)
    x, hx, params, *rest = args
    return tuple(torch.ops.specrewrite.lstm(x, list(hx), list(params), *rest))


def _gru(*args, **kwargs):
    # unpacked form: (input, h0, weights, ...); packed: (data, batch_sizes, h0, weights, ...)
    if kwargs or len(args) != 9 or not isinstance(args[2], (list, tuple)):
        return _ORIG["gru"](*args, **kwargs)
    x, hx, params, *rest = args
    return tuple(torch.ops.specrewrite.gru(x, hx, list(params), *rest))


@contextlib.contextmanager
def opaque_rnns():
    """Route torch._VF.lstm / gru through the opaque ops for the duration of a capture."""
    _define()
    vf = torch._VF
    saved = {name: vf.__dict__.get(name) for name in ("lstm", "gru")}
    vf.lstm, vf.gru = _lstm, _gru
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                vf.__dict__.pop(name, None)
            else:
                setattr(vf, name, old)


def restore_rnns(gm: fx.GraphModule) -> int:
    """Every opaque recurrent node of ``gm`` (and of its submodules' graphs) becomes its aten op; returns the
    count. Both ops return a sequence indexed by getitem nodes, so the users stay as they are."""
    if not _defined:
        return 0
    swap = {torch.ops.specrewrite.lstm.default: torch.ops.aten.lstm.input,
            torch.ops.specrewrite.gru.default: torch.ops.aten.gru.input}
    count = 0
    for mod in gm.modules():
        graph = getattr(mod, "graph", None)
        if not isinstance(graph, fx.Graph):
            continue
        for node in graph.nodes:
            if node.op == "call_function" and node.target in swap:
                node.target = swap[node.target]
                if isinstance(node.meta.get("val"), list):
                    node.meta["val"] = tuple(node.meta["val"])
                count += 1
        if count:
            mod.recompile()
    return count
