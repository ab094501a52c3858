"""Opaque custom ops for torch.stft / torch.istft, patched in during capture.

Capture (torch.export or make_fx) would otherwise decompose torch.stft into padding + as_strided + _fft_r2c
(make_fx) or keep a centre-less aten.stft after Python-side padding (export). Routing both functions through
``specrewrite::stft`` / ``specrewrite::istft`` keeps every argument (centre padding included) on one node, with
the window as a tensor input, and records the caller's source line for the report.
"""
from __future__ import annotations

import contextlib
import threading
from typing import List, Optional

import torch

from .._torch_private import eager_kernels

from .._where import from_stack as user_frame
from ..errors import SpecRewriteError

_lock = threading.Lock()
_defined = False
_orig_stft = torch.stft
_orig_istft = torch.istft
class CallSites:
    """Source lines of the spectral calls seen during one capture, in call order, per op kind."""

    def __init__(self):
        self.sites = {"stft": [], "istft": []}


_active: List[CallSites] = []


def define_ops() -> None:
    global _defined
    with _lock:
        if _defined:
            return

        @torch.library.custom_op("specrewrite::stft", mutates_args=())
        def sr_stft(x: torch.Tensor, n_fft: int, hop_length: int, win_length: int, window: Optional[torch.Tensor],
                    center: bool, pad_mode: str, normalized: bool, onesided: bool) -> torch.Tensor:
            # a fresh tensor (no view, storage offset 0) like the fake kernel's: the draft capture compares them
            with eager_kernels():
                return _orig_stft(x, n_fft, hop_length, win_length, window, center, pad_mode, normalized, onesided,
                                  return_complex=True).clone(memory_format=torch.contiguous_format)

        @sr_stft.register_fake
        def _(x, n_fft, hop_length, win_length, window, center, pad_mode, normalized, onesided):
            length = x.shape[-1] + (2 * (n_fft // 2) if center else 0)
            frames = 1 + (length - n_fft) // hop_length
            bins = n_fft // 2 + 1 if onesided else n_fft
            return x.new_empty((*x.shape[:-1], bins, frames), dtype=_double(x, window, torch.complex128,
                                                                            torch.complex64))

        @torch.library.custom_op("specrewrite::istft", mutates_args=())
        def sr_istft(z: torch.Tensor, n_fft: int, hop_length: int, win_length: int, window: Optional[torch.Tensor],
                     center: bool, normalized: bool, onesided: bool, length: Optional[int]) -> torch.Tensor:
            with eager_kernels():   # (a trace would run torch's Python reference: wrong for an odd n_fft)
                return _orig_istft(z, n_fft, hop_length, win_length, window, center, normalized, onesided, length,
                                   return_complex=False).clone(memory_format=torch.contiguous_format)

        @sr_istft.register_fake
        def _(z, n_fft, hop_length, win_length, window, center, normalized, onesided, length):
            frames = z.shape[-1]
            if length is None:
                length = n_fft + hop_length * (frames - 1) - (2 * (n_fft // 2) if center else 0)
            return z.new_empty((*z.shape[:-2], length), dtype=_double(z, window, torch.float64, torch.float32))

        _defined = True


def _double(x, window, double, single):
    """The result's dtype as torch promotes it: double precision when the input or the window is (float32
    audio with a float64 window gives complex128)."""
    wide = (torch.float64, torch.complex128)
    return double if x.dtype in wide or (window is not None and window.dtype in wide) else single


def _const_int(name, v, op):
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, torch.Tensor) or isinstance(v, torch.SymInt) or not isinstance(v, int):
        raise SpecRewriteError(f"{name} is not a constant int ({type(v).__name__}); the DFT size and hop must be "
                               "known when the model is rewritten", op=op, where=user_frame(),
                               fix=f"compute {name} from constants (not from the input's shape or values)")
    return v


def _sizes(n_fft, hop_length, win_length, window, op):
    """Constant n_fft / hop / win_length with torch's defaults, and a window that fits (else an error at the
    user's line)."""
    n_fft = _const_int("n_fft", n_fft, op)
    hop_length = _const_int("hop_length", hop_length, op)
    win_length = _const_int("win_length", win_length, op)
    hop = n_fft // 4 if hop_length is None else hop_length
    wl = n_fft if win_length is None else win_length
    if window is not None and (window.dim() != 1 or window.shape[0] != wl):
        raise SpecRewriteError(f"window of shape {tuple(window.shape)} does not fit win_length={wl}", op=op,
                               where=user_frame(), fix="use a 1-D window of length win_length")
    return n_fft, hop, wl


def _patched_stft(input, n_fft, hop_length=None, win_length=None, window=None, center=True, pad_mode="reflect",
                  normalized=False, onesided=None, return_complex=None, align_to_window=None):
    n_fft, hop, wl = _sizes(n_fft, hop_length, win_length, window, "torch.stft")
    if align_to_window:
        raise SpecRewriteError("align_to_window=True is not supported", op="torch.stft", where=user_frame(),
                               fix="use the default align_to_window")
    if return_complex is None and not input.is_complex():
        return _orig_stft(input, n_fft, hop, wl, window, center, pad_mode, normalized, onesided,
                          return_complex)  # torch raises its own error for real input
    if pad_mode is None and center:
        return _orig_stft(input, n_fft, hop, wl, window, center, pad_mode, normalized, onesided,
                          return_complex)  # torch raises its own error for a missing pad mode
    pad_mode = "reflect" if pad_mode is None else pad_mode   # unused without centre padding
    if not isinstance(pad_mode, str):
        raise SpecRewriteError(f"pad_mode must be a string, got {pad_mode!r}", op="torch.stft", where=user_frame(),
                               fix="use 'reflect', 'constant', 'replicate' or 'circular'")
    if input.is_complex() and onesided:
        return _orig_stft(input, n_fft, hop, wl, window, center, pad_mode, normalized, onesided,
                          return_complex)  # torch raises its own error (onesided needs a real input)
    # a complex signal is linear in its parts: stft(re) + i stft(im), two-sided as torch requires
    signals = (input.real, input.imag) if input.is_complex() else (input,)
    one = False if input.is_complex() else (True if onesided is None else bool(onesided))
    if _active:
        _active[-1].sites["stft"] += [user_frame()] * len(signals)
    parts = [torch.ops.specrewrite.stft(p, n_fft, hop, wl, window, bool(center), pad_mode, bool(normalized), one)
             for p in signals]
    out = parts[0] + 1j * parts[1] if len(parts) == 2 else parts[0]
    return out if return_complex or return_complex is None else torch.view_as_real(out)


def _patched_istft(input, n_fft, hop_length=None, win_length=None, window=None, center=True, normalized=False,
                   onesided=None, length=None, return_complex=False):
    n_fft, hop, wl = _sizes(n_fft, hop_length, win_length, window, "torch.istft")
    if not isinstance(center, bool) or not isinstance(normalized, bool) or \
            not (onesided is None or isinstance(onesided, bool)):
        return _orig_istft(input, n_fft, hop_length, win_length, window, center, normalized, onesided, length,
                           return_complex)   # torch's own error for arguments it does not accept
    if not input.is_complex():
        raise SpecRewriteError("torch.istft needs a complex input", op="torch.istft", where=user_frame())
    if onesided is None:
        onesided = input.shape[-2] != n_fft
    if return_complex and (onesided or input.shape[-2] != n_fft):
        return _orig_istft(input, n_fft, hop_length, win_length, window, center, normalized, onesided, length,
                           return_complex)   # torch's own error: a complex output needs all n_fft bins
    if return_complex:
        # a complex signal from a two-sided spectrum: Z = H1 + i H2 with H1, H2 Hermitian (H(-k) = conj H(k)),
        # each the spectrum of a real signal, so istft(Z) = istft(H1) + i istft(H2), both real inverses
        mirrored = torch.roll(torch.flip(input, [-2]), 1, -2).conj()          # Z((-k) mod n_fft), conjugated
        spectra = ((input + mirrored) * 0.5, (input - mirrored) * -0.5j)
    else:
        spectra = (input,)
    if _active:
        _active[-1].sites["istft"] += [user_frame()] * len(spectra)
    parts = [torch.ops.specrewrite.istft(z, n_fft, hop, wl, window, bool(center), bool(normalized), bool(onesided),
                                         length) for z in spectra]
    return parts[0] + 1j * parts[1] if return_complex else parts[0]


@contextlib.contextmanager
def patched(sites: CallSites):
    """Route torch.stft / torch.istft (and Tensor.stft / istft, which call them) through the custom ops."""
    define_ops()
    saved = (torch.stft, torch.istft)
    _active.append(sites)
    torch.stft, torch.istft = _patched_stft, _patched_istft
    try:
        yield
    finally:
        torch.stft, torch.istft = saved
        _active.pop()
