"""Drop-in, exportable equivalents of torchaudio's spectral transforms.

Each is built either from arguments (same names and defaults as torchaudio) or from a torchaudio instance
(``from_torchaudio``), keeping that instance's window and filterbank tensors. No complex tensor is created:
complex spectra are returned as real tensors with a trailing dimension of 2.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from .errors import SpecRewriteError
from .kernels import create_dct, linear_fbanks, melscale_fbanks
from .modes import Mode, Strategy
from .specs import IstftSpec, StftSpec
from ._torch.istft import RealISTFT
from ._torch.stft import RealSTFT


def _norms(normalized) -> tuple[bool, bool]:
    """torchaudio's (frame_length_norm, window_norm) for ``normalized``."""
    if isinstance(normalized, str):
        if normalized == "window":
            return False, True
        if normalized == "frame_length":
            return True, False
        raise SpecRewriteError(f"unknown normalized={normalized!r}", op="Spectrogram",
                               fix="use True, False, 'window' or 'frame_length'")
    return False, bool(normalized)


def _make_window(window, window_fn, win_length, wkwargs):
    if window is not None:
        return torch.as_tensor(window, dtype=torch.float64)
    if window_fn is None:
        return None
    return window_fn(win_length, **(wkwargs or {})).to(torch.float64)


def power_of(spec: torch.Tensor, power: Optional[float]) -> torch.Tensor:
    """|z|^power of a real-pair spectrum (..., 2); power None returns it unchanged."""
    if power is None:
        return spec
    p2 = spec[..., 0] * spec[..., 0] + spec[..., 1] * spec[..., 1]
    if power == 2.0:
        return p2
    if power == 1.0:
        return torch.sqrt(p2)
    return torch.pow(p2, power / 2.0)


def _from_power2(p2: torch.Tensor, power: float) -> torch.Tensor:
    """|z|^power from |z|^2."""
    if power == 2.0:
        return p2
    if power == 1.0:
        return torch.sqrt(p2)
    return torch.pow(p2, power / 2.0)


def amplitude_to_db(x: torch.Tensor, multiplier: float, amin: float, db_multiplier: float,
                    top_db: Optional[float]) -> torch.Tensor:
    """torchaudio.functional.amplitude_to_DB."""
    x_db = multiplier * torch.log10(torch.clamp(x, min=amin)) - multiplier * db_multiplier
    if top_db is not None:   # the floor per spectrogram (the last 3 dims, or 2 for a single one), as torchaudio
        dims = tuple(range(-min(x_db.dim(), 3), 0))   # (no reshape by traced sizes: Core ML converts it)
        x_db = torch.max(x_db, x_db.amax(dim=dims, keepdim=True) - top_db)
    return x_db


class Spectrogram(torch.nn.Module):
    """torchaudio.transforms.Spectrogram without complex tensors. power=None returns (..., F, T, 2)."""

    def __init__(self, n_fft: int = 400, win_length: Optional[int] = None, hop_length: Optional[int] = None,
                 pad: int = 0, window_fn: Optional[Callable[..., torch.Tensor]] = torch.hann_window,
                 power: Optional[float] = 2.0, normalized: Union[bool, str] = False, wkwargs: Optional[dict] = None,
                 center: bool = True, pad_mode: str = "reflect", onesided: bool = True, *,
                 window: Optional[torch.Tensor] = None, mode: Mode | str = Mode.STORE,
                 strategy: Strategy | str = Strategy.AUTO, scale: float = 1.0):
        super().__init__()
        win_length = win_length if win_length is not None else n_fft
        hop_length = hop_length if hop_length is not None else win_length // 2
        w = _make_window(window, window_fn, win_length, wkwargs)
        frame_norm, window_norm = _norms(normalized)
        if power is not None and power <= 0:
            raise SpecRewriteError(f"power must be > 0 or None, got {power}", op="Spectrogram")
        extra = scale
        if window_norm:
            extra /= float(torch.sqrt((w if w is not None else torch.ones(win_length)).pow(2).sum()))
        self.n_fft, self.win_length, self.hop_length, self.pad, self.power = n_fft, win_length, hop_length, pad, power
        self.normalized, self.center, self.pad_mode, self.onesided = normalized, center, pad_mode, onesided
        spec = StftSpec.make(n_fft, hop_length, win_length, w, center, pad_mode, frame_norm, onesided,
                             op="Spectrogram")
        self.stft = RealSTFT(spec, mode, strategy, extra_scale=extra)
        # the fp16 range scale is undone on the output (power of the scale), see specrewrite.coreml
        self.out_scale = 1.0 if scale == 1.0 else (1.0 / scale) ** (power if power is not None else 1.0)

    @classmethod
    def from_torchaudio(cls, m, **kw) -> "Spectrogram":
        return cls(m.n_fft, m.win_length, m.hop_length, m.pad, None, m.power, m.normalized, None, m.center,
                   m.pad_mode, m.onesided, window=m.window, **kw)

    def basis_inputs(self):
        return self.stft.basis_inputs()

    def forward(self, waveform: torch.Tensor, basis0: Optional[torch.Tensor] = None, basis1: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.pad > 0:
            waveform = torch.nn.functional.pad(waveform, (self.pad, self.pad), "constant")
        if self.power is None:
            out = self.stft(waveform, basis0, basis1)
        else:  # the power straight from the re/im planes: no transpose in the graph
            out = _from_power2(self.stft.power(waveform, basis0, basis1), self.power)
        return out if self.out_scale == 1.0 else out * self.out_scale


class MelSpectrogram(torch.nn.Module):
    """torchaudio.transforms.MelSpectrogram: Spectrogram(power) then the mel filterbank."""

    def __init__(self, sample_rate: int = 16000, n_fft: int = 400, win_length: Optional[int] = None,
                 hop_length: Optional[int] = None, f_min: float = 0.0, f_max: Optional[float] = None, pad: int = 0,
                 n_mels: int = 128, window_fn=torch.hann_window, power: float = 2.0, normalized: bool = False,
                 wkwargs: Optional[dict] = None, center: bool = True, pad_mode: str = "reflect",
                 onesided: Optional[bool] = None, norm: Optional[str] = None, mel_scale: str = "htk", *,
                 window: Optional[torch.Tensor] = None, fb: Optional[torch.Tensor] = None,
                 mode: Mode | str = Mode.STORE, strategy: Strategy | str = Strategy.AUTO, scale: float = 1.0):
        super().__init__()
        self.sample_rate, self.n_mels, self.f_min = sample_rate, n_mels, f_min
        self.f_max = f_max if f_max is not None else float(sample_rate // 2)
        self.spectrogram = Spectrogram(n_fft, win_length, hop_length, pad, window_fn, power, normalized, wkwargs,
                                       center, pad_mode, True, window=window, mode=mode, strategy=strategy,
                                       scale=scale)
        self.power = power
        self.spectrogram.out_scale = 1.0  # the range scale is undone once, through the filterbank below
        self.n_fft, self.hop_length, self.win_length = n_fft, self.spectrogram.hop_length, self.spectrogram.win_length
        if fb is None:
            fb = torch.as_tensor(melscale_fbanks(n_fft // 2 + 1, f_min, self.f_max, n_mels, sample_rate, norm,
                                                 mel_scale), dtype=torch.float32)
        # the fp16 range scale of the bases is undone through the filterbank (exact: one multiply per entry)
        self.register_buffer("fb", fb.to(torch.float32) * (1.0 / scale) ** power)

    @classmethod
    def from_torchaudio(cls, m, **kw) -> "MelSpectrogram":
        s = m.spectrogram
        return cls(m.sample_rate, m.n_fft, m.win_length, m.hop_length, m.f_min, m.f_max, m.pad, m.n_mels, None,
                   m.power, s.normalized, None, s.center, s.pad_mode, s.onesided, window=s.window,
                   fb=m.mel_scale.fb, **kw)

    def basis_inputs(self):
        return self.spectrogram.basis_inputs()

    def forward(self, waveform: torch.Tensor, basis0: Optional[torch.Tensor] = None, basis1: Optional[torch.Tensor] = None) -> torch.Tensor:
        spec = self.spectrogram(waveform, basis0, basis1)                     # (..., F, T) power
        return torch.matmul(spec.transpose(-1, -2), self.fb.to(spec.dtype)).transpose(-1, -2)


class _Cepstral(torch.nn.Module):
    def _finish(self, feats, log_flag):
        if log_flag:
            feats = torch.log(feats + 1e-6)
        else:
            feats = amplitude_to_db(feats, 10.0, 1e-10, 0.0, self.top_db)
        return torch.matmul(feats.transpose(-1, -2), self.dct_mat.to(feats.dtype)).transpose(-1, -2)


class MFCC(_Cepstral):
    """torchaudio.transforms.MFCC."""

    def __init__(self, sample_rate: int = 16000, n_mfcc: int = 40, dct_type: int = 2, norm: str = "ortho",
                 log_mels: bool = False, melkwargs: Optional[dict] = None, *, mode: Mode | str = Mode.STORE,
                 strategy: Strategy | str = Strategy.AUTO, _mel: Optional[MelSpectrogram] = None,
                 _dct: Optional[torch.Tensor] = None):
        super().__init__()
        if dct_type != 2:
            raise SpecRewriteError(f"DCT type {dct_type} not supported", op="MFCC", fix="use dct_type=2")
        self.MelSpectrogram = _mel or MelSpectrogram(sample_rate=sample_rate, **(melkwargs or {}), mode=mode,
                                                     strategy=strategy)
        self.n_mfcc, self.log_mels, self.top_db = n_mfcc, log_mels, 80.0
        if n_mfcc > self.MelSpectrogram.n_mels:
            raise SpecRewriteError("cannot select more MFCC coefficients than mel bins", op="MFCC")
        dct = _dct if _dct is not None else torch.as_tensor(create_dct(n_mfcc, self.MelSpectrogram.n_mels, norm))
        self.register_buffer("dct_mat", dct.to(torch.float32))

    @classmethod
    def from_torchaudio(cls, m, **kw) -> "MFCC":
        mel = MelSpectrogram.from_torchaudio(m.MelSpectrogram, **kw)
        out = cls(m.sample_rate, m.n_mfcc, m.dct_type, m.norm, m.log_mels, _mel=mel, _dct=m.dct_mat, **kw)
        out.top_db = m.top_db
        return out

    def basis_inputs(self):
        return self.MelSpectrogram.basis_inputs()

    def forward(self, waveform: torch.Tensor, basis0: Optional[torch.Tensor] = None, basis1: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self._finish(self.MelSpectrogram(waveform, basis0, basis1), self.log_mels)


class LFCC(_Cepstral):
    """torchaudio.transforms.LFCC."""

    def __init__(self, sample_rate: int = 16000, n_filter: int = 128, f_min: float = 0.0,
                 f_max: Optional[float] = None, n_lfcc: int = 40, dct_type: int = 2, norm: str = "ortho",
                 log_lf: bool = False, speckwargs: Optional[dict] = None, *, mode: Mode | str = Mode.STORE,
                 strategy: Strategy | str = Strategy.AUTO, _spec: Optional[Spectrogram] = None,
                 _fb: Optional[torch.Tensor] = None, _dct: Optional[torch.Tensor] = None):
        super().__init__()
        if dct_type != 2:
            raise SpecRewriteError(f"DCT type {dct_type} not supported", op="LFCC", fix="use dct_type=2")
        f_max = f_max if f_max is not None else float(sample_rate // 2)
        self.Spectrogram = _spec or Spectrogram(**(speckwargs or {}), mode=mode, strategy=strategy)
        self.n_lfcc, self.log_lf, self.top_db = n_lfcc, log_lf, 80.0
        n_fft = self.Spectrogram.n_fft
        fb = _fb if _fb is not None else torch.as_tensor(linear_fbanks(n_fft // 2 + 1, f_min, f_max, n_filter,
                                                                        sample_rate))
        self.register_buffer("filter_mat", fb.to(torch.float32))
        dct = _dct if _dct is not None else torch.as_tensor(create_dct(n_lfcc, n_filter, norm))
        self.register_buffer("dct_mat", dct.to(torch.float32))

    @classmethod
    def from_torchaudio(cls, m, **kw) -> "LFCC":
        spec = Spectrogram.from_torchaudio(m.Spectrogram, **kw)
        out = cls(m.sample_rate, m.n_filter, m.f_min, m.f_max, m.n_lfcc, m.dct_type, m.norm, m.log_lf, _spec=spec,
                  _fb=m.filter_mat, _dct=m.dct_mat, **kw)
        out.top_db = m.top_db
        return out

    def basis_inputs(self):
        return self.Spectrogram.basis_inputs()

    def forward(self, waveform: torch.Tensor, basis0: Optional[torch.Tensor] = None, basis1: Optional[torch.Tensor] = None) -> torch.Tensor:
        spec = self.Spectrogram(waveform, basis0, basis1)
        feats = torch.matmul(spec.transpose(-1, -2), self.filter_mat.to(spec.dtype)).transpose(-1, -2)
        return self._finish(feats, self.log_lf)


class InverseSpectrogram(torch.nn.Module):
    """torchaudio.transforms.InverseSpectrogram. Input: a complex spectrogram or its real pair (..., F, T, 2)."""

    def __init__(self, n_fft: int = 400, win_length: Optional[int] = None, hop_length: Optional[int] = None,
                 pad: int = 0, window_fn: Optional[Callable[..., torch.Tensor]] = torch.hann_window,
                 normalized: Union[bool, str] = False, wkwargs: Optional[dict] = None, center: bool = True,
                 pad_mode: str = "reflect", onesided: bool = True, *, window: Optional[torch.Tensor] = None,
                 mode: Mode | str = Mode.STORE, strategy: Strategy | str = Strategy.AUTO):
        super().__init__()
        win_length = win_length if win_length is not None else n_fft
        hop_length = hop_length if hop_length is not None else win_length // 2
        w = _make_window(window, window_fn, win_length, wkwargs)
        frame_norm, window_norm = _norms(normalized)
        self.n_fft, self.win_length, self.hop_length, self.pad = n_fft, win_length, hop_length, pad
        self.in_scale = 1.0
        if window_norm:
            self.in_scale = float(torch.sqrt((w if w is not None else torch.ones(win_length)).pow(2).sum()))
        spec = IstftSpec.make(n_fft, hop_length, win_length, w, center, frame_norm, onesided,
                              op="InverseSpectrogram")
        self.istft = RealISTFT(spec, mode, strategy)

    @classmethod
    def from_torchaudio(cls, m, **kw) -> "InverseSpectrogram":
        return cls(m.n_fft, m.win_length, m.hop_length, m.pad, None, m.normalized, None, m.center, m.pad_mode,
                   m.onesided, window=m.window, **kw)

    def basis_inputs(self):
        return self.istft.basis_inputs()

    def forward(self, spectrogram: torch.Tensor, length: Optional[int] = None, basis0: Optional[torch.Tensor] = None, basis1: Optional[torch.Tensor] = None):
        if spectrogram.is_complex():
            spectrogram = torch.view_as_real(spectrogram)
        if self.in_scale != 1.0:
            spectrogram = spectrogram * self.in_scale
        if length is not None:
            length = length + 2 * self.pad
        wave = self.istft(spectrogram, basis0, basis1, length=length)
        if length is not None and self.pad > 0:  # torchaudio trims the padding only when a length is given
            wave = wave[..., self.pad:-self.pad]
        return wave
