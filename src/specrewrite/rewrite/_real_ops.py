"""Run-time forms of real (non-complex) ops that exporters translate wrongly or not at all.

The graph pass spells these out wherever they appear, spectral path or not:

- ``as_strided`` (framing a signal by strides: julius' unfold, torchaudio's kaldi ``fbank``): coremltools has no
  translation, and with a dynamic length its strides are ``sym_stride`` values that torch.onnx cannot export. It
  becomes one gather from the tensor's memory order, with the strides computed from the sizes.
- ``arange`` with a fractional start, end or step (phase vocoders' ``arange(0, frames, rate)``): eager computes
  start + i * step in float64 and rounds once, while torch.onnx exports a float32 ``Range`` (90 * 1.3 gives
  116.99999 instead of 117, and a ``.long()`` of it picks another frame). It becomes an integer arange scaled in
  float64, then cast.
"""
from __future__ import annotations

import torch

from .._torch.bases import size_tensor, tracing


def strided_gather(x: torch.Tensor, order, size, stride, offset=0) -> torch.Tensor:
    """``x.as_strided(size, stride, offset)`` for a tensor dense in ``order`` from storage offset 0: one gather
    of its memory (``x.permute(order)`` flattened) at offset + sum_d i_d * stride_d."""
    flat = x.permute(list(order)).reshape(-1)
    dev = x.device
    idx = size_tensor(offset or 0, dev)
    for d, (n, s) in enumerate(zip(size, stride)):
        shape = [1] * len(size)
        shape[d] = -1
        idx = idx + (torch.arange(n, device=dev) * size_tensor(s, dev)).reshape(shape)
    idx = idx.expand(list(size))
    return flat.index_select(0, idx.reshape(-1)).reshape(list(size))


def arange_f64(*args, dtype=None, layout=None, device=None, pin_memory=None):
    """torch.arange with a floating dtype and fractional bounds. In eager it is torch's own; in an exporter's
    trace start + i * step in float64, rounded once (within an ulp of torch's float32 kernel, where a float32
    Range drifts by many): i is an integer arange, as torch.onnx exports a floating arange as a float32 Range
    whatever its dtype."""
    if not tracing():   # eager: torch's own kernel, to the last bit (its vectorised float32 steps included)
        return torch.arange(*args, dtype=dtype, device=device)
    start, step = (0, 1) if len(args) == 1 else (args[0], args[2] if len(args) > 2 else 1)
    count = torch.arange(*args, dtype=torch.float32, device=device).shape[0]
    i = torch.arange(count, device=device).to(torch.float64)
    f64 = [torch.tensor(v, dtype=torch.float64, device=device) if isinstance(v, (int, float)) else v
           for v in (step, start)]   # tensors: an exporter would make a Python float a float32 constant
    return (i * f64[0] + f64[1]).to(dtype or torch.get_default_dtype())


def fractional_arange(args, kwargs) -> bool:
    """An arange whose result is floating with a non-integer start, end or step."""
    dtype = kwargs.get("dtype") or (torch.get_default_dtype() if any(isinstance(a, float) for a in args)
                                    else torch.int64)
    return dtype.is_floating_point and dtype != torch.float64 and \
        any(isinstance(a, float) and not float(a).is_integer() for a in args)
