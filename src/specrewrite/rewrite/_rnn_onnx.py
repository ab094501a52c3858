"""Recurrent layers that keep their sequence length dynamic in an ONNX export.

``torch.export`` runs ``aten.lstm`` / ``aten.gru`` as one cell per time step, which fixes the sequence length: a
model with an LSTM over spectrogram frames exported with a dynamic time axis silently gets a file for the
example's length only (torch.onnx relaxes the axis without a word). In a rewritten graph each recurrent node
calls :func:`lstm` / :func:`gru` below instead. In eager PyTorch, under ``torch.jit.trace`` (the Core ML route)
and under any other exporter they are exactly the aten op; inside ``torch.onnx.export`` they emit ONNX's own
``LSTM`` / ``GRU`` operators (one per layer, through the public ``torch.onnx.ops.symbolic_multi_out``), whose
sequence length is a run-time dimension.

Layout conversion (done on the weights, folded by the exporter): torch packs gates as i, f, g, o (LSTM) and
r, z, n (GRU); ONNX as i, o, f, c and z, r, h; GRU uses ``linear_before_reset=1``, torch's formula.
"""
from __future__ import annotations

import sys
from typing import List, Sequence

import torch

_LSTM_GATES = (0, 3, 1, 2)   # ONNX i, o, f, c from torch's i, f, g, o
_GRU_GATES = (1, 0, 2)       # ONNX z, r, h from torch's r, z, n


def _onnx_export() -> bool:
    onnx = sys.modules.get("torch.onnx")   # not imported: not exporting to ONNX (and no import cost here)
    return (onnx is not None and onnx.is_in_onnx_export() and not torch.jit.is_tracing()
            and not torch.jit.is_scripting())


def lstm(x: torch.Tensor, hx: Sequence[torch.Tensor], params: Sequence[torch.Tensor], has_biases: bool,
         num_layers: int, dropout: float, train: bool, bidirectional: bool, batch_first: bool,
         zero_state: bool = False):
    """``aten.lstm.input``, or ONNX ``LSTM`` nodes inside torch.onnx.export. ``zero_state``: the graph starts
    from zeros (``nn.LSTM`` without ``hx``), which a projected LSTM needs for ONNX (``_projection``)."""
    if _onnx_export() and _plain(params, has_biases, num_layers, bidirectional, 4, train, dropout):
        return _emit("LSTM", x, list(hx), list(params), has_biases, num_layers, bidirectional, batch_first)
    if _onnx_export() and zero_state and _projection(params, has_biases, num_layers, bidirectional, train, dropout):
        return _emit("LSTM", x, list(hx), list(params), has_biases, num_layers, bidirectional, batch_first,
                     projected=True)
    return torch.ops.aten.lstm.input(x, list(hx), list(params), has_biases, num_layers, dropout, train,
                                     bidirectional, batch_first)


def gru(x: torch.Tensor, hx: torch.Tensor, params: Sequence[torch.Tensor], has_biases: bool, num_layers: int,
        dropout: float, train: bool, bidirectional: bool, batch_first: bool):
    """``aten.gru.input``, or ONNX ``GRU`` nodes inside torch.onnx.export."""
    if _onnx_export() and _plain(params, has_biases, num_layers, bidirectional, 3, train, dropout):
        return _emit("GRU", x, [hx], list(params), has_biases, num_layers, bidirectional, batch_first)
    return torch.ops.aten.gru.input(x, hx, list(params), has_biases, num_layers, dropout, train, bidirectional,
                                    batch_first)


def _simple_rnn(op, activation: str):
    def rnn(x: torch.Tensor, hx: torch.Tensor, params: Sequence[torch.Tensor], has_biases: bool, num_layers: int,
            dropout: float, train: bool, bidirectional: bool, batch_first: bool):
        if _onnx_export() and _plain(params, has_biases, num_layers, bidirectional, 1, train, dropout):
            return _emit("RNN", x, [hx], list(params), has_biases, num_layers, bidirectional, batch_first,
                         activation)
        return op(x, hx, list(params), has_biases, num_layers, dropout, train, bidirectional, batch_first)

    rnn.__doc__ = f"``{op}`` (``nn.RNN``), or ONNX ``RNN`` nodes ({activation}) inside torch.onnx.export."
    return rnn


rnn_tanh = _simple_rnn(torch.ops.aten.rnn_tanh.input, "Tanh")
rnn_relu = _simple_rnn(torch.ops.aten.rnn_relu.input, "Relu")   # nn.RNN(nonlinearity='relu'): DeepSpeech


def _plain(params, has_biases, num_layers, bidirectional, gates, train, dropout) -> bool:
    """The layer has no projection (LSTM proj_size), and no active dropout between layers: ONNX's op is it."""
    if not _whole_layers(params, 4 if has_biases else 2, num_layers, bidirectional, train, dropout):
        return False
    w_ih, w_hh = params[0], params[1]
    hidden = w_hh.shape[-1]
    return w_ih.dim() == 2 and w_ih.shape[0] == gates * hidden and w_hh.shape[0] == gates * hidden


def _projection(params, has_biases, num_layers, bidirectional, train, dropout) -> bool:
    """An LSTM with ``proj_size`` (per layer and direction w_ih, w_hh (4H x P), biases, w_hr (P x H)), no active
    dropout. ONNX's LSTM has no projection, but its recurrence is one: the gates take W_hh (W_hr h), so an ONNX
    LSTM of hidden size H with R = W_hh W_hr runs the same cell on the unprojected h, and the outputs are W_hr h.
    Exact from a zero state (the unprojected state behind a non-zero projected one is not unique)."""
    per = (4 if has_biases else 2) + 1
    if not _whole_layers(params, per, num_layers, bidirectional, train, dropout):
        return False
    w_ih, w_hh, w_hr = params[0], params[1], params[per - 1]
    if w_ih.dim() != 2 or w_hr.dim() != 2:
        return False
    proj, hidden = w_hr.shape
    return w_ih.shape[0] == 4 * hidden and tuple(w_hh.shape) == (4 * hidden, proj)


def _whole_layers(params, per: int, num_layers: int, bidirectional: bool, train: bool, dropout: float) -> bool:
    """``per`` weights per layer and direction, and no active dropout between layers."""
    dirs = 2 if bidirectional else 1
    return len(params) == per * dirs * num_layers and not (train and dropout > 0 and num_layers > 1)


def _reorder(w: torch.Tensor, order) -> torch.Tensor:
    n = w.shape[0] // len(order)   # slices, not chunk: ONNX folds Slice on weights, not a multi-output Split
    return torch.cat([w[i * n:(i + 1) * n] for i in order], 0)


def _emit(kind: str, x, hx: List[torch.Tensor], params: List[torch.Tensor], has_biases: bool, num_layers: int,
          bidirectional: bool, batch_first: bool, activation: str = "", projected: bool = False):
    order = {"LSTM": _LSTM_GATES, "GRU": _GRU_GATES, "RNN": (0,)}[kind]
    dirs = 2 if bidirectional else 1
    per = (4 if has_biases else 2) + (1 if projected else 0)
    hidden = params[per - 1].shape[-1] if projected else params[1].shape[-1]
    seq = x.transpose(0, 1) if batch_first else x          # ONNX layout 0: (time, batch, features)
    finals: List[List[torch.Tensor]] = [[] for _ in hx]
    for layer in range(num_layers):
        w, r, b, proj = [], [], [], []
        for d in range(dirs):
            p = params[(layer * dirs + d) * per:(layer * dirs + d + 1) * per]
            w.append(_reorder(p[0], order))
            # projected: R = W_hh W_hr, formed in float64 (a constant the exporter folds)
            r.append(_reorder((p[1].double() @ p[-1].double()).to(p[1].dtype) if projected else p[1], order))
            if has_biases:
                b.append(torch.cat([_reorder(p[2], order), _reorder(p[3], order)]))
            if projected:
                proj.append(p[-1])
        inputs = [seq, torch.stack(w), torch.stack(r), torch.stack(b) if has_biases else None, None]
        steps, batch = seq.shape[0], seq.shape[1]
        if projected:   # the zero state, at the unprojected size
            inputs += [seq.new_zeros(dirs, batch, hidden), hx[1][layer * dirs:(layer + 1) * dirs]]
        else:
            inputs += [h[layer * dirs:(layer + 1) * dirs] for h in hx]
        attrs = {"hidden_size": int(hidden), "direction": "bidirectional" if bidirectional else "forward"}
        if kind == "GRU":
            attrs["linear_before_reset"] = 1
        if kind == "RNN":
            attrs["activations"] = [activation] * dirs
        state = [dirs, batch, hidden]
        outs = torch.onnx.ops.symbolic_multi_out(
            f"::{kind}", inputs, attrs, dtypes=[x.dtype] * (1 + len(hx)),
            shapes=[[steps, dirs, batch, hidden]] + [state] * len(hx), version=14)
        if projected:   # outputs and final h back to the projected size, per direction
            y = torch.cat([outs[0][:, d] @ proj[d].t() for d in range(dirs)], -1)
            states = [torch.stack([outs[1][d] @ proj[d].t() for d in range(dirs)]), outs[2]]
        else:
            y = outs[0].permute(0, 2, 1, 3).reshape(steps, batch, dirs * hidden)
            states = list(outs[1:])
        for i, h in enumerate(states):
            finals[i].append(h)
        seq = y
    out = seq.transpose(0, 1) if batch_first else seq
    return (out, *[torch.cat(f, 0) if len(f) > 1 else f[0] for f in finals])
