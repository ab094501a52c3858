"""Functional, real-valued stft / istft / fft with torch.stft / torch.istft / torch.fft semantics.

Complex values are real tensors with a trailing dimension of 2 (``torch.view_as_real`` layout). Modules are
cached per spec, so repeated calls reuse the bases.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch

from .modes import Mode, Strategy
from .specs import IstftSpec, StftSpec, fft_scale
from ._torch.fft import RealFFT
from ._torch.istft import RealISTFT
from ._torch.stft import RealSTFT


@functools.lru_cache(maxsize=64)
def _stft_module(spec, mode, strategy):
    return RealSTFT(spec, mode, strategy)


@functools.lru_cache(maxsize=64)
def _istft_module(spec, mode, strategy):
    return RealISTFT(spec, mode, strategy)


@functools.lru_cache(maxsize=64)
def _fft_module(kind, n, scale, inverse, onesided):
    return RealFFT(kind, n, scale=scale, inverse=inverse, onesided=onesided)


def stft(input: torch.Tensor, n_fft: int, hop_length: Optional[int] = None, win_length: Optional[int] = None,
         window: Optional[torch.Tensor] = None, center: bool = True, pad_mode: str = "reflect",
         normalized: bool = False, onesided: Optional[bool] = None, *, mode: Mode | str = Mode.STORE,
         strategy: Strategy | str = Strategy.AUTO) -> torch.Tensor:
    """``torch.view_as_real(torch.stft(..., return_complex=True))`` with no complex op. (..., L) -> (..., F, T, 2)."""
    spec = StftSpec.make(n_fft, hop_length, win_length, window, center, pad_mode, normalized, onesided,
                         op="specrewrite.stft")
    m = _stft_module(spec, Mode.parse(mode), Strategy.parse(strategy)).to(input.device)
    return m(input.to(torch.float32) if input.dtype not in (torch.float32, torch.float64) else input)


def istft(input: torch.Tensor, n_fft: int, hop_length: Optional[int] = None, win_length: Optional[int] = None,
          window: Optional[torch.Tensor] = None, center: bool = True, normalized: bool = False,
          onesided: Optional[bool] = None, length: Optional[int] = None, *, mode: Mode | str = Mode.STORE,
          strategy: Strategy | str = Strategy.AUTO) -> torch.Tensor:
    """``torch.istft`` of a real-pair (..., F, T, 2) spectrum (or a complex one, or a (re, im) tuple)."""
    if isinstance(input, (tuple, list)):
        input = torch.stack(list(input), dim=-1)
    elif input.is_complex():
        input = torch.view_as_real(input)
    spec = IstftSpec.make(n_fft, hop_length, win_length, window, center, normalized, onesided,
                          op="specrewrite.istft")
    return _istft_module(spec, Mode.parse(mode), Strategy.parse(strategy)).to(input.device)(input, length=length)


def rfft(x: torch.Tensor, norm: Optional[str] = None) -> torch.Tensor:
    """torch.fft.rfft along the last dim -> (..., n//2+1, 2)."""
    n = x.shape[-1]
    return _fft_module("r2c", n, fft_scale(norm, n, True), False, True)(x)


def irfft(z: torch.Tensor, n: Optional[int] = None, norm: Optional[str] = None) -> torch.Tensor:
    """torch.fft.irfft of a real-pair (..., F, 2) spectrum along the bins."""
    n = 2 * (z.shape[-2] - 1) if n is None else n
    nb = n // 2 + 1
    if z.shape[-2] < nb:
        z = torch.nn.functional.pad(z, (0, 0, 0, nb - z.shape[-2]))
    return _fft_module("c2r", n, fft_scale(norm, n, False), True, True)(z)


def fft(z: torch.Tensor, norm: Optional[str] = None, inverse: bool = False) -> torch.Tensor:
    """torch.fft.fft (or ifft) of a real-pair (..., n, 2) tensor."""
    n = z.shape[-2]
    return _fft_module("c2c", n, fft_scale(norm, n, not inverse), inverse, True)(z)


def ifft(z: torch.Tensor, norm: Optional[str] = None) -> torch.Tensor:
    return fft(z, norm, inverse=True)
