"""One frozen, hashable spec per spectral op. Every front end (torch modules, the FX pass, the coremltools
plugin) builds one of these; the kernels are cached on them."""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Tuple

import numpy as np

from .errors import SpecRewriteError

PAD_MODES = ("reflect", "constant", "replicate", "circular")


def _window_tuple(window, n: int, op: str, where: str | None) -> Optional[Tuple[float, ...]]:
    if window is None:
        return None
    if (hasattr(window, "is_complex") and window.is_complex()) or np.iscomplexobj(window):
        # checked before any conversion: a cast to float64 would drop the imaginary part silently
        raise SpecRewriteError("complex windows are not supported", op=op, where=where,
                               fix="use a real-valued window")
    w = np.asarray(window.detach().cpu().double().numpy() if hasattr(window, "detach") else window, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] != n:
        raise SpecRewriteError(f"window has shape {tuple(w.shape)}, expected ({n},) (= win_length)", op=op,
                               where=where, fix="pass a 1-D window of length win_length")
    return tuple(float(v) for v in w)


@dataclasses.dataclass(frozen=True)
class StftSpec:
    """torch.stft semantics. ``window`` holds win_length values (or None: rectangular)."""

    n_fft: int
    hop_length: int
    win_length: int
    window: Optional[Tuple[float, ...]] = None
    center: bool = True
    pad_mode: str = "reflect"
    normalized: bool = False
    onesided: bool = True

    @classmethod
    def make(cls, n_fft, hop_length=None, win_length=None, window=None, center=True, pad_mode="reflect",
             normalized=False, onesided=None, *, op="torch.stft", where=None) -> "StftSpec":
        n_fft, hop_length, win_length = _check_sizes(n_fft, hop_length, win_length, op, where)
        if pad_mode not in PAD_MODES:
            raise SpecRewriteError(f"unknown pad_mode {pad_mode!r}", op=op, where=where,
                                   fix="use one of " + ", ".join(PAD_MODES))
        return cls(n_fft, hop_length, win_length, _window_tuple(window, win_length, op, where), bool(center),
                   pad_mode, bool(normalized), True if onesided is None else bool(onesided))

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1 if self.onesided else self.n_fft

    def n_frames(self, length: int) -> int:
        if self.center:
            length = length + 2 * (self.n_fft // 2)
        return 1 + (length - self.n_fft) // self.hop_length

    def padded_window(self) -> np.ndarray:
        return padded_window(self.window, self.win_length, self.n_fft)

    def describe(self) -> dict:
        d = dataclasses.asdict(self)
        d["window"] = _window_name(self.window)
        return d


@dataclasses.dataclass(frozen=True)
class IstftSpec:
    """torch.istft semantics (real output). ``length`` is given per call."""

    n_fft: int
    hop_length: int
    win_length: int
    window: Optional[Tuple[float, ...]] = None
    center: bool = True
    normalized: bool = False
    onesided: bool = True

    @classmethod
    def make(cls, n_fft, hop_length=None, win_length=None, window=None, center=True, normalized=False,
             onesided=None, *, op="torch.istft", where=None) -> "IstftSpec":
        n_fft, hop_length, win_length = _check_sizes(n_fft, hop_length, win_length, op, where)
        spec = cls(n_fft, hop_length, win_length, _window_tuple(window, win_length, op, where), bool(center),
                   bool(normalized), True if onesided is None else bool(onesided))
        env = spec.envelope_min()
        if env < 1e-11:
            raise SpecRewriteError(
                "window and hop_length violate the NOLA condition (the squared-window overlap-add has zeros), "
                "so the inverse is not defined", op=op, where=where,
                fix="use a window/hop pair whose overlap-add is non-zero (e.g. hann with hop <= n_fft/2)")
        return spec

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1 if self.onesided else self.n_fft

    def padded_window(self) -> np.ndarray:
        return padded_window(self.window, self.win_length, self.n_fft)

    def envelope_min(self) -> float:
        """Smallest steady-state value of the squared-window overlap-add (interior of a long signal)."""
        w2 = self.padded_window() ** 2
        acc = np.zeros(self.hop_length)
        for i in range(self.n_fft):
            acc[i % self.hop_length] += w2[i]
        if self.center:
            return float(acc.min())
        return float(acc.min()) if acc.min() > 0 else 0.0

    def describe(self) -> dict:
        d = dataclasses.asdict(self)
        d["window"] = _window_name(self.window)
        return d


def _check_sizes(n_fft, hop_length, win_length, op, where):
    for name, v in (("n_fft", n_fft), ("hop_length", hop_length), ("win_length", win_length)):
        if v is not None and not isinstance(v, (int, np.integer)):
            raise SpecRewriteError(f"{name} must be a constant Python int, got {type(v).__name__} {v!r}", op=op,
                                   where=where, fix=f"pass {name} as a constant int, not a tensor or a "
                                   "value computed from the input")
    n_fft = int(n_fft)
    if n_fft < 1:
        raise SpecRewriteError(f"n_fft must be >= 1, got {n_fft}", op=op, where=where)
    hop_length = n_fft // 4 if hop_length is None else int(hop_length)
    win_length = n_fft if win_length is None else int(win_length)
    if hop_length < 1:
        raise SpecRewriteError(f"hop_length must be >= 1, got {hop_length}", op=op, where=where)
    if not 0 < win_length <= n_fft:
        raise SpecRewriteError(f"win_length must be in [1, n_fft={n_fft}], got {win_length}", op=op, where=where,
                               fix="use win_length <= n_fft")
    return n_fft, hop_length, max(1, win_length)


def padded_window(window, win_length: int, n_fft: int) -> np.ndarray:
    """The length-n_fft analysis window torch.stft uses: rectangular if None, centred with zeros if shorter."""
    w = np.ones(win_length) if window is None else np.asarray(window, dtype=np.float64)
    out = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    out[left:left + win_length] = w
    return out


_KNOWN = {}


def _window_name(window) -> str:
    if window is None:
        return "rectangular"
    import torch

    n = len(window)
    w = np.asarray(window)
    for name, fn in (("hann", torch.hann_window), ("hamming", torch.hamming_window),
                     ("blackman", torch.blackman_window)):
        for periodic in (True, False):
            key = (name, n, periodic)
            if key not in _KNOWN:
                _KNOWN[key] = fn(n, periodic=periodic, dtype=torch.float64).numpy()
            if np.allclose(w, _KNOWN[key], atol=1e-6):
                return f"{name}({n}{'' if periodic else ', periodic=False'})"
    if np.allclose(w, 1.0):
        return f"ones({n})"
    return f"custom({n})"


def fft_scale_power(norm: int | str | None, forward: bool) -> float:
    """p such that torch.fft's norm mode scales by n ** -p; ATen encodes the modes as 0 (none), 1 (1/sqrt n),
    2 (1/n)."""
    if isinstance(norm, int):
        return {0: 0.0, 1: 0.5, 2: 1.0}[norm]
    if norm is None or norm == "backward":
        return 0.0 if forward else 1.0
    if norm == "ortho":
        return 0.5
    if norm == "forward":
        return 1.0 if forward else 0.0
    raise SpecRewriteError(f"unknown fft norm {norm!r}", fix="use 'backward', 'ortho' or 'forward'")


def fft_scale(norm: int | str | None, n: int, forward: bool) -> float:
    """Scale of torch.fft's norm modes for length n."""
    p = fft_scale_power(norm, forward)
    return 1.0 if p == 0 else (1.0 / n if p == 1 else 1.0 / math.sqrt(n))
