"""fp16 range safety for specrewrite's spectral modules (see the bounds in ``specrewrite.coreml``'s docstring).

For every Spectrogram / MelSpectrogram / MFCC / LFCC in a (rewritten) model, the DFT bases are multiplied by a
power of two ``s`` chosen from exact bounds for |x| <= 1, and ``s`` is compensated at the first point where
the true values fit in fp16 again: the mel / linear filterbank, the log of MFCC / LFCC, or a final rescale.
Multiplying by a power of two is exact in binary floating point, so the scaling itself adds no error.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..kernels import NP
from ..modes import Mode
from ..modules import LFCC, MFCC, MelSpectrogram, Spectrogram, amplitude_to_db

FP16_MAX = 65504.0
LIMIT = 2.0 ** 14  # every scaled intermediate stays below this: 4x (2x in amplitude) headroom under 65504


def stft_bounds(st) -> tuple:
    """(A, E2, N): max |X_k| = ||w e||_1 and ||w e||_2^2 of a RealSTFT's (scaled) window, and n_fft."""
    name = next(iter(st._builders))
    first = np.asarray(st._builders[name][0](NP), dtype=np.float64)
    if st.plan is None:
        we = first[0]                                     # row 0: Re of bin 0 = window * scale
    else:
        p = st.plan
        we = first.reshape(p.n2, 2, -1, p.n1)[:, 0, 0, :]    # k1 = 0 rows: the window of each phase
    return float(np.abs(we).sum()), float((we ** 2).sum()), st.spec.n_fft


def _scale_stft(st, s: float) -> None:
    name = next(iter(st._builders))
    b, post = st._builders[name]
    st._builders[name] = (lambda ns, b=b: b(ns) * s, post)
    if st.mode is Mode.STORE:
        with torch.no_grad():
            getattr(st, name).mul_(s)


def _pow2_scale(bound: float) -> float:
    """The largest power of two s <= 1 with s^2 * bound <= LIMIT (bound: a squared quantity)."""
    if bound <= LIMIT:
        return 1.0
    return 2.0 ** -math.ceil(0.5 * math.log2(bound / LIMIT))


def _mel_bound(a, e2, n, fb, power):
    fb = fb.detach().double().numpy()
    by_peak = a ** power * float(fb.sum(axis=0).max())
    if power == 2.0:
        return min(by_peak, float(fb.max()) * n * e2)
    return by_peak


class _Rescaled(torch.nn.Module):
    """A module followed by an exact power-of-two rescale (kept in fp32 by convert's op selector)."""

    def __init__(self, inner, factor: float):
        super().__init__()
        self.inner, self.factor = inner, float(factor)

    def forward(self, *args):
        return self.inner(*args) * self.factor


class _LogCompensated(torch.nn.Module):
    """MFCC / LFCC whose filterbank output is still scaled by ``k`` = s^power: compensated in the log."""

    def __init__(self, inner, k: float):
        super().__init__()
        self.inner, self.k = inner, float(k)

    def forward(self, waveform):
        m = self.inner
        if isinstance(m, MFCC):
            feats = m.MelSpectrogram(waveform)
            log_flag = m.log_mels
        else:
            spec = m.Spectrogram(waveform)
            feats = torch.matmul(spec.transpose(-1, -2), m.filter_mat.to(spec.dtype)).transpose(-1, -2)
            log_flag = m.log_lf
        if log_flag:  # log(k mel + k eps) - log k = log(mel + eps)
            feats = torch.log(feats + 1e-6 * self.k) - math.log(self.k)
        else:  # 10 log10(clamp(k mel, k amin)) - 10 log10 k; top_db compares differences, unchanged
            feats = amplitude_to_db(feats, 10.0, 1e-10 * self.k, 0.0, m.top_db) - 10.0 * math.log10(self.k)
        return torch.matmul(feats.transpose(-1, -2), m.dct_mat.to(feats.dtype)).transpose(-1, -2)


def make_safe(model: torch.nn.Module):
    """Scale the spectral modules of ``model`` in place. Returns (model, info list, rescale factors that
    convert() keeps in fp32)."""
    info, factors = [], []
    done = set()
    replace = {}
    for name, m in list(model.named_modules()):
        if id(m) in done:
            continue
        if isinstance(m, (MFCC, LFCC)):
            entry, new = _safe_cepstral(m)
        elif isinstance(m, MelSpectrogram):
            entry, new = _safe_mel(m)
        elif isinstance(m, Spectrogram):
            entry, new = _safe_spec(m)
        else:
            continue
        for sub in m.modules():
            done.add(id(sub))
        entry["module"] = name or type(m).__name__
        info.append(entry)
        if new is not m:
            replace[name] = new
            if isinstance(new, _Rescaled):
                factors.append(new.factor)
    for name, new in replace.items():
        if name == "":
            model = new
            continue
        parent_name, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, leaf, new)
    return model, info, factors


def _safe_spec(m: Spectrogram):
    a, e2, n = stft_bounds(m.stft)
    p = m.power
    internal = a * a
    s = _pow2_scale(internal)
    entry = {"kind": "Spectrogram", "scale": s, "peak_bound": a, "output_bound": a ** (p or 1.0)}
    if s == 1.0:
        entry["compensation"] = "none needed"
        return entry, m
    _scale_stft(m.stft, s)
    undo = (1.0 / s) ** (p if p is not None else 1.0)
    if p is None:
        m.out_scale = m.out_scale * undo
        entry["compensation"] = "final rescale (complex output)"
        return entry, m
    if a ** p <= LIMIT:
        m.out_scale = m.out_scale * undo
        entry["compensation"] = "final rescale"
        return entry, m
    entry["compensation"] = "final rescale in fp32 (the output exceeds the fp16 range)"
    return entry, _Rescaled(m, undo * m.out_scale)


def _safe_mel(m: MelSpectrogram):
    a, e2, n = stft_bounds(m.spectrogram.stft)
    p = m.power
    mel = _mel_bound(a, e2, n, m.fb, p)
    s = _pow2_scale(max(a * a, mel ** (2.0 / p)))
    entry = {"kind": "MelSpectrogram", "scale": s, "peak_bound": a, "output_bound": mel}
    if s == 1.0:
        entry["compensation"] = "none needed"
        return entry, m
    _scale_stft(m.spectrogram.stft, s)
    undo = (1.0 / s) ** p
    if mel <= LIMIT:
        with torch.no_grad():
            m.fb.mul_(undo)
        entry["compensation"] = "mel filterbank"
        return entry, m
    entry["compensation"] = "final rescale in fp32 (the output exceeds the fp16 range)"
    return entry, _Rescaled(m, undo)


def _safe_cepstral(m):
    is_mfcc = isinstance(m, MFCC)
    spec = m.MelSpectrogram.spectrogram if is_mfcc else m.Spectrogram
    fb = m.MelSpectrogram.fb if is_mfcc else m.filter_mat
    p = m.MelSpectrogram.power if is_mfcc else spec.power
    a, e2, n = stft_bounds(spec.stft)
    filt = _mel_bound(a, e2, n, fb, p)
    s = _pow2_scale(max(a * a, filt ** (2.0 / p)))
    entry = {"kind": type(m).__name__, "scale": s, "peak_bound": a, "output_bound": filt}
    if s == 1.0:
        entry["compensation"] = "none needed"
        return entry, m
    _scale_stft(spec.stft, s)
    undo = (1.0 / s) ** p
    if filt <= LIMIT:
        with torch.no_grad():
            fb.mul_(undo)
        entry["compensation"] = "filterbank"
        return entry, m
    entry["compensation"] = "log (eps / amin scaled, constant subtracted)"
    return entry, _LogCompensated(m, 1.0 / undo)
