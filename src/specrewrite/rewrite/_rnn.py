"""Recurrent layers kept whole during capture (nn.LSTM, nn.GRU and nn.RNN, tanh or relu): torch.export decomposes
``aten.lstm`` / ``aten.gru`` into one cell per time step, each with symbolic shapes, which made capturing a model
with LSTMs cost 5-10x a static export (HDemucs: 34 s of a 40 s capture with a dynamic batch; open-unmix: most
of a failed capture). During capture
``torch._VF.lstm`` / ``gru`` (what ``nn.LSTM`` / ``nn.GRU`` call) go through opaque custom ops whose fake kernels
only compute shapes; afterwards every such node becomes a call of ``_rnn_onnx.lstm`` / ``gru``: the
``aten.lstm.input`` / ``aten.gru.input`` call it stands for (the node a pre-dispatch trace records, so exporters
see the op they know), except inside torch.onnx.export, where ONNX's own LSTM / GRU keep the length dynamic.
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
_ORIG = {"lstm": None, "gru": None, "rnn_tanh": None, "rnn_relu": None}
_ONE_STATE = ("gru", "rnn_tanh", "rnn_relu")


def _define_op(name: str) -> None:
    """``specrewrite::<name>`` with aten.lstm's argument list (GRU's / RNN's single state as a one-element list),
    its result as a list: output, then the final state(s)."""

    @torch.library.custom_op(f"specrewrite::{name}", mutates_args=())
    def op(x: torch.Tensor, hx: List[torch.Tensor], params: List[torch.Tensor], has_biases: bool, num_layers: int,
           dropout: float, train: bool, bidirectional: bool, batch_first: bool) -> List[torch.Tensor]:
        state = hx if name == "lstm" else hx[0]
        out = _ORIG[name](x, state, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
        return [t.clone() for t in out]

    @op.register_fake
    def _(x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
        d = 2 if bidirectional else 1
        return [x.new_empty((*x.shape[:-1], d * hx[0].shape[-1]))] + [h.new_empty(h.shape) for h in hx]


def _define() -> None:
    global _defined
    with _lock:
        if _defined:
            return
        for name in _ORIG:
            _ORIG[name] = getattr(torch._C._VariableFunctions, name)
            _define_op(name)
        _defined = True


def _routed(name: str, unpacked):
    """What torch._VF.<name> becomes during capture: the unpacked form (``unpacked(args)``) goes through the
    opaque op, anything else (packed sequences) to torch's own function."""

    def call(*args, **kwargs):
        if kwargs or len(args) != 9 or not unpacked(args):
            return _ORIG[name](*args, **kwargs)
        x, hx, params, *rest = args
        hx = list(hx) if name == "lstm" else [hx]
        return tuple(getattr(torch.ops.specrewrite, name)(x, hx, list(params), *rest))

    return call


# unpacked: (input, (h0, c0) or h0, weights, ...); packed: (data, batch_sizes, state, weights, ...)
_ROUTED = {name: _routed(name, (lambda args: isinstance(args[2], (list, tuple))) if name in _ONE_STATE
                         else (lambda args: isinstance(args[1], (list, tuple)))) for name in _ORIG}


@contextlib.contextmanager
def vf_routed(calls):
    """``torch._VF.<name>`` is ``calls[name]`` within (what torch's modules look up at call time), restored on
    exit (an attribute set on the module object in front of its lookup in torch._C)."""
    vf = torch._VF
    saved = {name: vf.__dict__.get(name) for name in calls}
    for name, call in calls.items():
        setattr(vf, name, call)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                vf.__dict__.pop(name, None)
            else:
                setattr(vf, name, old)


@contextlib.contextmanager
def opaque_rnns():
    """Route torch._VF.lstm / gru / rnn_tanh / rnn_relu through the opaque ops for the duration of a capture."""
    _define()
    with vf_routed(_ROUTED):
        yield


def restore_rnns(gm: fx.GraphModule) -> int:
    """Every opaque recurrent node of ``gm`` (and of its submodules' graphs) becomes its aten op (through
    ``_rnn_onnx``); returns the count. Both ops return a sequence indexed by getitem nodes, so the users stay as they are."""
    if not _defined:
        return 0
    from . import _rnn_onnx

    swap = {getattr(torch.ops.specrewrite, name).default: getattr(_rnn_onnx, name) for name in _ORIG}
    one_state = {getattr(torch.ops.specrewrite, name).default for name in _ONE_STATE}
    count = 0
    for mod in gm.modules():
        graph = getattr(mod, "graph", None)
        if not isinstance(graph, fx.Graph):
            continue
        for node in graph.nodes:
            if node.op == "call_function" and node.target in swap:
                if node.target in one_state:   # aten.gru / rnn_* take their one state as is
                    node.args = (node.args[0], node.args[1][0], *node.args[2:])
                elif all(_is_zeros(h) for h in node.args[1]):   # an LSTM from zeros (no hx): see _rnn_onnx
                    node.kwargs = {**node.kwargs, "zero_state": True}
                node.target = swap[node.target]
                if isinstance(node.meta.get("val"), list):
                    node.meta["val"] = tuple(node.meta["val"])
                count += 1
        if count:
            mod.recompile()
    return count


def _is_zeros(n) -> bool:
    """A graph node that is a tensor of zeros (what nn.LSTM makes when no state is given)."""
    aten = torch.ops.aten
    if not isinstance(n, fx.Node) or n.op != "call_function":
        return False
    if n.target in (aten.zeros.default, aten.new_zeros.default, aten.zeros_like.default):
        return True
    fill = {aten.full.default: 1, aten.new_full.default: 2}.get(n.target)
    return fill is not None and len(n.args) > fill and n.args[fill] == 0
