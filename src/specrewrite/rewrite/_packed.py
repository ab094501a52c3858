"""Packed sequences (``pack_padded_sequence`` → RNN → ``pad_packed_sequence``) captured with a dynamic length.

Real speech models (speechbrain's MetricGAN discriminator, NeMo's mask estimators, many ASR encoders) hand a
spectrogram of padded clips to an LSTM as a packed sequence. Torch's packed form is data-dependent (its rows are
the sum of the lengths) and ``aten.lstm.data`` has no exporter, so such a model could not be exported at all.

During a capture the packed form is replaced by a padded one with the same meaning:

* ``_VF._pack_padded_sequence`` keeps the (sorted) padded input, time first, and computes the true
  ``batch_sizes`` from the lengths (``batch_sizes[t]`` = clips longer than ``t``), so everything torch's own
  Python does with a ``PackedSequence`` (sorting, ``batch_sizes.size(0)`` as the longest length) stays valid;
* an ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` given such a sequence runs layer by layer and direction by direction on
  the padded input: forward directions as they are (a clip's outputs do not depend on what follows its end),
  backward directions on each clip reversed within its own length (a gather, reversed back after), the final
  hidden state read at each clip's last step. An LSTM's final *cell* state is not an output of the layer, so
  it is exact for clips of the full length and nan for shorter ones (loudly wrong, never silently);
* ``_VF._pad_packed_sequence`` masks the padding with ``padding_value``.

The result holds only ordinary RNN calls and gathers with a dynamic time axis. Eager torch returns as many
frames as the longest clip: the rewritten model returns as many as its input has, so where the output's length
is the longest clip's, that clip must fill the input (checked at run time, as any value read from an input is).
"""
from __future__ import annotations

import contextlib
import weakref
from typing import List

import torch
import torch.nn as nn

from ._rnn import vf_routed

_OURS: "dict[int, weakref.ref]" = {}   # id -> batch_sizes made by the padded packing (tensors compare by value)
_KINDS = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}


def _mark(t: torch.Tensor) -> None:
    for key in [k for k, ref in _OURS.items() if ref() is None]:
        del _OURS[key]
    _OURS[id(t)] = weakref.ref(t)


def _is_ours(t) -> bool:
    ref = _OURS.get(id(t))
    return ref is not None and ref() is t


def _ours(packed) -> bool:
    return isinstance(packed, nn.utils.rnn.PackedSequence) and _is_ours(packed.batch_sizes)


def _lengths(batch_sizes: torch.Tensor, batch) -> torch.Tensor:
    """Each (sorted) clip's length from the batch sizes."""
    return (batch_sizes[:, None] > torch.arange(batch, device=batch_sizes.device)[None, :]).sum(0)


def _pack(x, lengths, batch_first):
    """``_VF._pack_padded_sequence``: the padded input, time first, and the true batch sizes."""
    seq = x.transpose(0, 1) if batch_first else x
    steps = seq.shape[0]
    lengths = lengths.to(torch.int64)
    batch_sizes = (lengths[None, :] > torch.arange(steps, device=lengths.device)[:, None]).sum(1)
    _mark(batch_sizes)
    return seq, batch_sizes


def _pad(original):
    def pad(data, batch_sizes, batch_first, padding_value, total_length):
        if not _is_ours(batch_sizes):
            return original(data, batch_sizes, batch_first, padding_value, total_length)
        steps, batch = data.shape[0], data.shape[1]
        lengths = _lengths(batch_sizes, batch)
        if total_length == steps:
            # eager torch gives max(lengths) frames unless told total_length: they agree when the longest clip
            # fills the input (checked at run time like any value read from an input)
            torch._check(lengths.max().item() == steps)
        valid = torch.arange(steps, device=data.device)[:, None] < lengths.to(data.device)[None, :]
        out = torch.where(valid.reshape(steps, batch, *([1] * (data.dim() - 2))), data,
                          torch.scalar_tensor(padding_value, dtype=data.dtype, device=data.device))
        if total_length != steps:
            fill = out.new_full((total_length - steps, *out.shape[1:]), padding_value)
            out = torch.cat([out, fill], 0)
        return (out.transpose(0, 1) if batch_first else out), lengths
    return pad


def _time_gather(y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``y[index[t, b], b]`` for a (time, batch, ...) tensor."""
    idx = index.reshape(*index.shape, *([1] * (y.dim() - 2))).expand(index.shape[0], *y.shape[1:])
    return torch.gather(y, 0, idx)


def _run(kind: str, x, h0, c0, params, has_bias: bool):
    """One layer, one direction, the unpacked torch call (routed to the opaque op during a capture)."""
    if kind == "lstm":
        y, h, c = torch._VF.lstm(x, (h0, c0), params, has_bias, 1, 0.0, False, False, False)
        return y, c
    y, _ = getattr(torch._VF, kind)(x, h0, params, has_bias, 1, 0.0, False, False, False)
    return y, None


def packed_forward(module: nn.RNNBase, packed, hx):
    """What ``module(packed, hx)`` returns, computed on the padded form."""
    data, batch_sizes, sorted_indices, unsorted_indices = packed
    kind = _KINDS[module.mode]
    steps, batch = data.shape[0], data.shape[1]
    dirs = 2 if module.bidirectional else 1
    out_size = module.proj_size if getattr(module, "proj_size", 0) > 0 else module.hidden_size
    if hx is None:
        zeros = data.new_zeros((module.num_layers * dirs, batch, out_size))
        hx = (zeros, data.new_zeros((module.num_layers * dirs, batch, module.hidden_size))) if kind == "lstm" \
            else zeros
    else:
        hx = module.permute_hidden(hx, sorted_indices)
    h_in = hx[0] if kind == "lstm" else hx
    c_in = hx[1] if kind == "lstm" else None
    lengths = _lengths(batch_sizes, batch).to(data.device)
    t = torch.arange(steps, device=data.device)[:, None]
    reverse = torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)   # its own inverse
    last = (lengths - 1).clamp(min=0)[None, :]
    full = (lengths == steps).reshape(1, batch, 1)
    params = module._flat_weights
    per = len(params) // (module.num_layers * dirs)
    finals_h: List[torch.Tensor] = []
    finals_c: List[torch.Tensor] = []
    x = data
    for layer in range(module.num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            seq = x if d == 0 else _time_gather(x, reverse)
            y, c = _run(kind, seq, h_in[k:k + 1], c_in[k:k + 1] if c_in is not None else None,
                        params[k * per:(k + 1) * per], module.bias)
            finals_h.append(_time_gather(y, last))
            if c is not None:
                finals_c.append(torch.where(full, c, torch.scalar_tensor(float("nan"), dtype=c.dtype,
                                                                        device=c.device)))
            outs.append(y if d == 0 else _time_gather(y, reverse))
        x = torch.cat(outs, -1) if dirs > 1 else outs[0]
    hidden = torch.cat(finals_h, 0)
    if kind == "lstm":
        hidden = (hidden, torch.cat(finals_c, 0))
    out = nn.utils.rnn.PackedSequence(x, batch_sizes, sorted_indices, unsorted_indices)
    return out, module.permute_hidden(hidden, unsorted_indices)


def _forward(original):
    def forward(self, input, hx=None):
        if _ours(input) and not (self.training and self.dropout > 0 and self.num_layers > 1):
            return packed_forward(self, input, hx)
        return original(self, input, hx)
    return forward


@contextlib.contextmanager
def padded_packing():
    """Packed sequences in their padded form for the duration of a capture (restored on exit)."""
    vf = torch._VF
    classes = (nn.RNN, nn.LSTM, nn.GRU)
    saved_cls = {cls: cls.__dict__["forward"] for cls in classes}
    for cls in classes:
        cls.forward = _forward(saved_cls[cls])
    try:
        with vf_routed({"_pack_padded_sequence": _pack, "_pad_packed_sequence": _pad(vf._pad_packed_sequence)}):
            yield
    finally:
        for cls, fwd in saved_cls.items():
            cls.forward = fwd
