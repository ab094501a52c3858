"""Mel / linear filterbanks and DCT matrices with torchaudio's exact definitions, in float64."""
from __future__ import annotations

import math

import numpy as np

from ..errors import SpecRewriteError


def _hz_to_mel(f, scale):
    f = np.asarray(f, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-300) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m, scale):
    m = np.asarray(m, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def _triangles(all_freqs, f_pts):
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up))


def melscale_fbanks(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int,
                    norm: str | None = None, mel_scale: str = "htk") -> np.ndarray:
    """(n_freqs, n_mels) like torchaudio.functional.melscale_fbanks."""
    if norm not in (None, "slaney"):
        raise SpecRewriteError(f"unknown mel norm {norm!r}", fix="use None or 'slaney'")
    if mel_scale not in ("htk", "slaney"):
        raise SpecRewriteError(f"unknown mel_scale {mel_scale!r}", fix="use 'htk' or 'slaney'")
    all_freqs = np.linspace(0, sample_rate // 2, n_freqs)
    m_min, m_max = _hz_to_mel(f_min, mel_scale), _hz_to_mel(f_max, mel_scale)
    f_pts = _mel_to_hz(np.linspace(m_min, m_max, n_mels + 2), mel_scale)
    fb = _triangles(all_freqs, f_pts)
    if norm == "slaney":
        fb = fb * (2.0 / (f_pts[2:n_mels + 2] - f_pts[:n_mels]))[None, :]
    return fb


def linear_fbanks(n_freqs: int, f_min: float, f_max: float, n_filter: int, sample_rate: int) -> np.ndarray:
    """(n_freqs, n_filter) like torchaudio.functional.linear_fbanks."""
    all_freqs = np.linspace(0, sample_rate // 2, n_freqs)
    f_pts = np.linspace(f_min, f_max, n_filter + 2)
    return _triangles(all_freqs, f_pts)


def create_dct(n_out: int, n_in: int, norm: str | None) -> np.ndarray:
    """(n_in, n_out) DCT-II like torchaudio.functional.create_dct."""
    n = np.arange(n_in, dtype=np.float64)
    k = np.arange(n_out, dtype=np.float64)[:, None]
    dct = np.cos(math.pi / n_in * (n + 0.5) * k)
    if norm is None:
        dct = dct * 2.0
    elif norm == "ortho":
        dct[0] *= 1.0 / math.sqrt(2.0)
        dct = dct * math.sqrt(2.0 / n_in)
    else:
        raise SpecRewriteError(f"unknown dct norm {norm!r}", fix="use None or 'ortho'")
    return dct.T
