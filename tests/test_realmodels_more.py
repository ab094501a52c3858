"""More real third-party audio models and modules through specrewrite.rewrite(), of kinds test_realmodels.py does
not cover: neural-codec / vocoder discriminators and heads (encodec, vocos, bigvgan), hybrid source separation
(demucs HTDemucs), FFT convolution and band splitting (julius, torchaudio fftconvolve), wavelet scattering
(kymatio), intelligibility and separation metrics (torch-stoi, fast-bss-eval), phase vocoding (torch-pitch-shift),
dereverberation and beamforming (nara-wpe, torchaudio MVDR, speechbrain GCC-PHAT + delay-and-sum), cepstral and
analytic-signal DSP (diffsptk), a transformer front end (hear21passt), stereo and mel losses (auraloss),
differentiable EQ (dasp-pytorch), and pitch salience (nnAudio CFP). Random
weights, small inputs; packages installed by scripts/install_realmodels.sh.

Each model is judged as ../shared/corpus-public/check_case.py judges it:
  * ``test_rewrite_and_onnx``: rewrite with the example inputs; the rewritten model runs no spectral / complex op
    eagerly and matches eager within 1e-4 of the output peak (or, for an ill-conditioned model, within 4x eager
    float32's own error against float64 eager); the original model is untouched; torch.onnx.export(dynamo=True)
    has no STFT / DFT op and matches in onnxruntime within 1e-4 of the peak.
  * ``test_dynamic_shapes``: every axis the report calls dynamic is exported dynamic to ONNX and checked in ONNX
    Runtime against eager at three lengths and two batch sizes (shapes the model's own eager code rejects are
    not judged); every axis it calls fixed must say why. ``DYNAMIC_RECORD`` keeps the verdicts.
Select with ``-m realmodel``.
"""
from __future__ import annotations

import copy
import itertools
import json
import os
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

import specrewrite as sr
from conftest import onnx_roundtrip, rel_err
from test_realmodels import MODEL_TOL, assert_untouched, snapshot
from test_rewrite import flat, run_real_only

pytestmark = [pytest.mark.realmodel, pytest.mark.slow]   # run by `make test-slow` (CI runs both tiers)


def _seeded(n: int, *shape, scale: float = 0.1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(n)) * scale


def _scipy_window_aliases():
    """vocos 0.1.0 and nnAudio 0.3.4 call scipy.signal.cosine / blackmanharris, which newer scipy only has under
    scipy.signal.windows: alias them (window values only; nothing of the models changes)."""
    import scipy.signal

    for w in ("cosine", "blackmanharris", "hann", "blackman"):
        if not hasattr(scipy.signal, w):
            setattr(scipy.signal, w, getattr(scipy.signal.windows, w))


# ------------------------------------------------------------------------------------------ builders
def build_encodec_msstftd():
    """encodec MultiScaleSTFTDiscriminator: torchaudio Spectrogram(power=None, normalized) per scale, complex ->
    cat(real, imag) on the channel axis, 2-D convs."""
    from encodec.msstftd import MultiScaleSTFTDiscriminator

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.d = MultiScaleSTFTDiscriminator(filters=8, n_ffts=[256, 512, 128], hop_lengths=[64, 128, 32],
                                                 win_lengths=[256, 512, 128])

        def forward(self, x):
            logits, fmaps = self.d(x)
            return logits

    torch.manual_seed(0)
    return Logits().eval(), (_seeded(1, 1, 1, 8000),)


def build_vocos_imdct_head():
    """vocos IMDCTSymExpHead(padding='same'): symexp, pre-twiddle (complex buffer), torch.fft.ifft of a complex
    tensor, post-twiddle, real part, window, fold overlap-add."""
    _scipy_window_aliases()
    from vocos.heads import IMDCTSymExpHead
    from vocos.models import VocosBackbone

    class Decode(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = VocosBackbone(input_channels=32, dim=64, intermediate_dim=128, num_layers=1)
            self.head = IMDCTSymExpHead(dim=64, mdct_frame_len=256, padding="same", sample_rate=24000)

        def forward(self, feats):
            return self.head(self.backbone(feats))

    torch.manual_seed(0)
    return Decode().eval(), (_seeded(2, 1, 32, 40, scale=1.0),)


def build_vocos_istft_same():
    """vocos ISTFTHead(padding='same'): vocos.spectral_ops.ISTFT's own inverse (torch.fft.irfft of a complex
    spectrum, window, F.fold overlap-add, envelope division), complex built from ``x + 1j * y``."""
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone

    class Decode(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = VocosBackbone(input_channels=32, dim=64, intermediate_dim=128, num_layers=1)
            self.head = ISTFTHead(dim=64, n_fft=256, hop_length=64, padding="same")

        def forward(self, feats):
            return self.head(self.backbone(feats))

    torch.manual_seed(0)
    return Decode().eval(), (_seeded(3, 1, 32, 40, scale=1.0),)


def build_bigvgan_mrd():
    """bigvgan MultiResolutionDiscriminator: reflect pad, torch.stft without window, center=False,
    view_as_real, torch.norm over (re, im); two inputs (real / generated)."""
    from bigvgan.discriminators import MultiResolutionDiscriminator
    from bigvgan.env import AttrDict

    cfg = AttrDict({"use_spectral_norm": False, "discriminator_channel_mult": 1,
                    "resolutions": [[256, 64, 256], [512, 128, 512], [128, 32, 128]]})

    class Scores(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.d = MultiResolutionDiscriminator(cfg)

        def forward(self, y, y_hat):
            y_d_rs, y_d_gs, _, _ = self.d(y, y_hat)
            return y_d_rs, y_d_gs

    torch.manual_seed(0)
    return Scores().eval(), (_seeded(4, 1, 1, 8000), _seeded(5, 1, 1, 8000))


def build_bigvgan_mbd():
    """bigvgan MultiBandDiscriminator (DAC's): DC removal, peak normalisation (max), torchaudio
    Spectrogram(power=None), view_as_real, permute, frequency band slices."""
    from bigvgan.discriminators import MultiBandDiscriminator
    from bigvgan.env import AttrDict

    class Scores(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.d = MultiBandDiscriminator(AttrDict({"mbd_fft_sizes": [512, 256]}))

        def forward(self, y, y_hat):
            y_d_rs, y_d_gs, _, _ = self.d(y, y_hat)
            return y_d_rs, y_d_gs

    torch.manual_seed(0)
    return Scores().eval(), (_seeded(6, 1, 1, 8000), _seeded(7, 1, 1, 8000))


def build_demucs_htdemucs():
    """demucs HTDemucs (hybrid transformer): demucs.spec.spectro (torch.stft normalized, reflect pad),
    view_as_real (complex-as-channels), freq + time U-Nets, cross-domain transformer, view_as_complex,
    demucs.spec.ispectro (torch.istft)."""
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(0)
    model = HTDemucs(sources=["drums", "vocals"], audio_channels=2, channels=8, nfft=512, depth=2,
                     t_layers=1, t_heads=2, bottom_channels=0, dconv_comp=4, samplerate=8000, segment=1,
                     t_cape_augment=False, use_train_segment=False).eval()   # any length, not one segment
    return model, (_seeded(8, 1, 2, 8000),)


def build_julius_fftconv():
    """julius.FFTConv1d: frames the input, torch.fft.rfft of frames and of the kernel, conjugate product in
    view_as_real layout, view_as_complex, torch.fft.irfft."""
    import julius

    torch.manual_seed(0)
    return julius.FFTConv1d(1, 4, kernel_size=256, stride=2).eval(), (_seeded(9, 1, 1, 8000),)


def build_julius_splitbands():
    """julius.SplitBands(fft=True): sinc low-pass filters applied with julius.fft_conv1d (rfft / irfft),
    then band differences."""
    import julius

    return julius.SplitBands(sample_rate=16000, n_bands=4, fft=True).eval(), (_seeded(10, 1, 8000),)


def build_kymatio_scattering1d():
    """kymatio Scattering1D (torch frontend): torch.fft.fft of the whole (padded) clip, complex filter products,
    subsampling in Fourier (reshape + mean), torch.fft.ifft, complex modulus, real rfft / irfft for the
    low-pass. A whole-clip FFT (1024 + padding)."""
    import scipy.special

    if not hasattr(scipy.special, "sph_harm"):   # kymatio 0.3 imports it for its 3-D transform (removed in scipy 1.17)
        scipy.special.sph_harm = lambda m, n, theta, phi: scipy.special.sph_harm_y(n, m, phi, theta)
    from kymatio.torch import Scattering1D

    return Scattering1D(J=3, shape=1024, Q=2).eval(), (_seeded(11, 1, 1024),)


def build_torch_stoi():
    """torch-stoi NegSTOILoss (extended=False, VAD on): silent-frame removal (unfold, energy, sort), STFT as
    unfold + torch.fft.rfft, |.|**2, one-third-octave matmul, segment normalisation and correlation."""
    from torch_stoi import NegSTOILoss

    clean = _seeded(12, 1, 10000, scale=0.2)
    return NegSTOILoss(sample_rate=10000).eval(), (clean + _seeded(13, 1, 10000, scale=0.05), clean)


def build_torch_pitch_shift():
    """torch-pitch-shift pitch_shift: torch.stft, torchaudio TimeStretch (phase_vocoder: angle, phase
    accumulation with cumsum, torch.polar, complex index_select), torch.istft, torchaudio Resample."""
    from torch_pitch_shift import pitch_shift

    class Shift(torch.nn.Module):
        def forward(self, x):
            return pitch_shift(x, Fraction(5, 4), 16000, n_fft=512, hop_length=128)

    return Shift().eval(), (_seeded(14, 1, 1, 8000),)


def build_fast_bss_eval():
    """fast-bss-eval sdr_loss (torch backend): cross-correlations via torch.fft.rfft / irfft of the whole clip,
    Toeplitz system built by gather, torch.linalg.solve, SDR in dB."""
    import fast_bss_eval

    class SDRLoss(torch.nn.Module):
        def forward(self, est, ref):
            return fast_bss_eval.sdr_loss(est, ref, filter_length=64)

    ref = _seeded(15, 1, 2, 8000)
    return SDRLoss().eval(), (ref + _seeded(16, 1, 2, 8000, scale=0.03), ref)


def build_nara_wpe():
    """nara-wpe torch backend: torch.stft per channel, WPE (complex power, complex matmul with conj transpose,
    torch.linalg.solve of complex systems, complex subtraction), torch.istft."""
    from nara_wpe.torch_wpe import wpe_v6

    class Dereverb(torch.nn.Module):
        def forward(self, x):                                          # (channels, time)
            win = torch.hann_window(256)
            Y = torch.stft(x, 256, 64, window=win, return_complex=True)  # (D, F, T)
            Z = wpe_v6(Y.permute(1, 0, 2), taps=4, delay=2, iterations=2)  # (F, D, T)
            return torch.istft(Z.permute(1, 0, 2), 256, 64, window=win, length=x.shape[-1])

    return Dereverb().eval(), (_seeded(17, 2, 4000),)


def build_diffsptk_mcep():
    """diffsptk STFT (blackman, power spectrum via torch.fft.rfft) -> MelCepstralAnalysis (frequency-warped
    cepstrum: log, torch.fft.irfft / hfft, Newton iterations with linalg.solve) -> MelGeneralizedCepstrumToSpectrum
    (rfft of the cepstrum)."""
    import diffsptk

    class MCep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stft = diffsptk.STFT(frame_length=400, frame_period=80, fft_length=512)
            self.mcep = diffsptk.MelCepstralAnalysis(fft_length=512, cep_order=24, alpha=0.42, n_iter=2)
            self.c2sp = diffsptk.MelGeneralizedCepstrumToSpectrum(cep_order=24, fft_length=512, alpha=0.42,
                                                                   out_format="db")

        def forward(self, x):
            return self.c2sp(self.mcep(self.stft(x)))

    return MCep().eval(), (_seeded(18, 1, 8000) + 0.01,)


def build_diffsptk_hilbert():
    """diffsptk HilbertTransform: framing, torch.fft.fft of a real input, one-sided mask, torch.fft.ifft ->
    analytic (complex) output."""
    import diffsptk

    class Envelope(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.frame = diffsptk.Frame(frame_length=512, frame_period=128)
            self.hilbert = diffsptk.HilbertTransform(fft_length=512)

        def forward(self, x):
            z = self.hilbert(self.frame(x))
            return z.abs(), torch.angle(z)

    return Envelope().eval(), (_seeded(19, 1, 8000),)


def build_hear21passt_mel():
    """hear21passt AugmentMelSTFT (PaSST front end): pre-emphasis conv, torch.stft(return_complex=False) with a
    symmetric hann window of win_length 800 < n_fft 1024, (.**2).sum(-1), kaldi mel banks built in forward,
    log."""
    from hear21passt.models.preprocess import AugmentMelSTFT

    return AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024).eval(), \
        (_seeded(20, 1, 16000),)


def build_torchaudio_souden_mvdr():
    """torchaudio beamforming: Spectrogram(power=None) of a 4-channel mix, complex masks, PSD (complex einsum
    with conj), SoudenMVDR (complex linalg.solve, trace, einsum), InverseSpectrogram."""
    import torchaudio.transforms as T

    class Beamformer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stft = T.Spectrogram(n_fft=256, hop_length=64, power=None)
            self.istft = T.InverseSpectrogram(n_fft=256, hop_length=64)
            self.psd = T.PSD()
            self.mvdr = T.SoudenMVDR()
            self.mask = torch.nn.Conv1d(129, 129, 1)

        def forward(self, x):                                         # (batch, channels, time)
            spec = self.stft(x)                                       # (B, C, F, T) complex
            m = torch.sigmoid(self.mask(spec[:, 0].abs()))            # (B, F, T)
            psd_s = self.psd(spec, m)
            psd_n = self.psd(spec, 1 - m)
            return self.istft(self.mvdr(spec, psd_s, psd_n, reference_channel=0), length=x.shape[-1])

    torch.manual_seed(0)
    return Beamformer().eval(), (_seeded(21, 1, 4, 8000),)


def build_torchaudio_fftconvolve_reverb():
    """torchaudio.functional.fftconvolve: a learned 0.25 s impulse response applied to the whole clip with
    torch.fft.rfft / irfft (n = len(x) + len(h) - 1)."""
    import torchaudio.functional as AF

    class Reverb(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ir = torch.nn.Parameter(torch.randn(1, 4000) * torch.exp(-torch.arange(4000) / 800.0))

        def forward(self, x):
            return AF.fftconvolve(x, self.ir)

    torch.manual_seed(0)
    return Reverb().eval(), (_seeded(22, 1, 16000),)


def build_speechbrain_delaysum():
    """speechbrain multi-mic: STFT (torch.stft, view_as_real layout), Covariance, GccPhat (PHAT weighting,
    torch.fft.irfft, argmax, interpolation), DelaySum (steering with cos / sin), ISTFT (torch.istft)."""
    from speechbrain.processing.features import ISTFT, STFT
    from speechbrain.processing.multi_mic import Covariance, DelaySum, GccPhat

    class Beamform(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stft, self.cov, self.gcc = STFT(sample_rate=16000), Covariance(), GccPhat()
            self.delaysum, self.istft = DelaySum(), ISTFT(sample_rate=16000)

        def forward(self, x):                                      # (batch, channels, time)
            Xs = self.stft(x.transpose(1, 2))                      # speechbrain wants (batch, time, channels)
            tdoas = self.gcc(self.cov(Xs))
            return self.istft(self.delaysum(Xs, tdoas))

    src = _seeded(24, 1, 1, 16000)
    x = torch.cat([src, torch.roll(src, 3, -1), torch.roll(src, 6, -1)], 1) + _seeded(25, 1, 3, 16000, scale=0.01)
    return Beamform().eval(), (x,)


def build_auraloss_sum_and_difference():
    """auraloss SumAndDifferenceSTFTLoss: mid / side of stereo signals, two MultiResolutionSTFTLosses
    (12 torch.stft calls), log magnitudes, spectral convergence (torch.norm 'fro')."""
    from auraloss.freq import SumAndDifferenceSTFTLoss

    return SumAndDifferenceSTFTLoss(fft_sizes=[512, 256], hop_sizes=[128, 64], win_lengths=[512, 256]).eval(), \
        (_seeded(26, 1, 2, 8000), _seeded(27, 1, 2, 8000))


def build_auraloss_melstft():
    """auraloss MelSTFTLoss: STFTLoss with a librosa mel filterbank (matmul on the magnitude), perceptual
    A-weighting off, log-magnitude and spectral-convergence terms."""
    from auraloss.freq import MelSTFTLoss

    return MelSTFTLoss(sample_rate=16000, fft_size=512, hop_size=128, win_length=512, n_mels=64).eval(), \
        (_seeded(28, 1, 1, 8000), _seeded(29, 1, 1, 8000))


def build_dasp_parametric_eq():
    """dasp-pytorch parametric_eq: biquad coefficients from (learned) parameters, frequency-sampling filter:
    torch.fft.rfft of b and a, complex division and product over 6 sections, torch.fft.rfft / irfft of the
    whole clip."""
    import dasp_pytorch.functional as D

    class EQ(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.tensor([[3.0, 100.0, 0.7, -4.0, 500.0, 1.0, 2.0, 1500.0, 1.0,
                                                       -3.0, 4000.0, 0.8, 1.0, 200.0, 0.7, -2.0, 6000.0, 0.7]]))

        def forward(self, x):
            p = self.p
            return D.parametric_eq(x, 16000, *[p[:, i] for i in range(18)])

    # 4,000 samples: its whole-clip FFTs become run-time-length (Bluestein) plans for up to 4x the example, whose
    # cost grows with that bound (8,000 samples took 400 s of the suite)
    return EQ().eval(), (_seeded(30, 1, 1, 4000),)


def build_nnaudio_cfp():
    """nnAudio Combined Frequency and Periodicity (pitch salience): torch.stft(return_complex=False,
    onesided=False, pad_mode='constant') with n_fft 2000 > window 1025, magnitude from the (re, im) pairs,
    torch.fft.fft of a real input (generalised cepstrum, twice), in-place slice zeroing, log-frequency matmuls."""
    _scipy_window_aliases()
    from nnAudio.features.cfp import CFP

    torch.manual_seed(0)
    model = CFP(fr=4, fs=8000, hop_length=160, window_size=1025, fc=80, tc=1 / 1000, NumPerOct=24).eval()
    return model, (_seeded(31, 1, 8000),)


BUILDERS = {
    "encodec_msstft_discriminator": build_encodec_msstftd,
    "vocos_imdct_symexp_head": build_vocos_imdct_head,
    "vocos_istft_head_same": build_vocos_istft_same,
    "bigvgan_mrd": build_bigvgan_mrd,
    "bigvgan_mbd": build_bigvgan_mbd,
    "demucs_htdemucs": build_demucs_htdemucs,
    "julius_fftconv1d": build_julius_fftconv,
    "julius_splitbands_fft": build_julius_splitbands,
    "kymatio_scattering1d": build_kymatio_scattering1d,
    "torch_stoi_negstoi": build_torch_stoi,
    "torch_pitch_shift": build_torch_pitch_shift,
    "fast_bss_eval_sdr_loss": build_fast_bss_eval,
    "nara_wpe_torch": build_nara_wpe,
    "diffsptk_mcep": build_diffsptk_mcep,
    "diffsptk_hilbert": build_diffsptk_hilbert,
    "hear21passt_melstft": build_hear21passt_mel,
    "torchaudio_souden_mvdr": build_torchaudio_souden_mvdr,
    "torchaudio_fftconvolve_reverb": build_torchaudio_fftconvolve_reverb,
    "speechbrain_gccphat_delaysum": build_speechbrain_delaysum,
    "auraloss_sum_and_difference": build_auraloss_sum_and_difference,
    "auraloss_melstft": build_auraloss_melstft,
    "dasp_parametric_eq": build_dasp_parametric_eq,
    "nnaudio_cfp": build_nnaudio_cfp,
}

# (name, "static" | "dynamic") -> reason, for a known, filed limitation (strict xfail: a fix makes the test fail
# until the entry is removed).
_PHASE = ("ill-conditioned phase (angle() of near-zero bins accumulated): ONNX Runtime's float32 differs from eager "
          "float32 by more than 1e-4 of the peak; no float64 form of the model to judge against")
_MCEP = ("exports since its solves are unrolled (2026-12-02), but ONNX Runtime's float32 is 1.7e-4 of the peak from "
         "eager where the same graph run by torch (unrolled solve included) is 4.6e-7: the exporter's optimiser "
         "(onnxscript, on by default) is the cause; the same export without it is 4.3e-7 (2026-12-03: it folds "
         "all 1,895 Casts, 101 of 102 comparisons and most shape ops of the unrolled solve)")
XFAIL: dict = {
    ("diffsptk_mcep", "static"): _MCEP,
    ("torch_pitch_shift", "static"): _PHASE,
    ("diffsptk_hilbert", "static"): _PHASE,
    ("torch_pitch_shift", "dynamic"): _PHASE,
    # (its batch is dynamic since a batch of 1 is judged against float64: ORT at batch 2 meets the static case's
    # limitation, 2.8e-3 of the peak where eager float32 is 3.4e-4 from float64)
    # ("diffsptk_hilbert", "dynamic") passes since the accuracy work of 2026-12-04 (fifteenth session)
}


# ------------------------------------------------------------------------------------------ helpers
def _pairs(t):
    t = torch.as_tensor(np.asarray(t)) if not isinstance(t, torch.Tensor) else t
    return torch.view_as_real(t.resolve_conj()) if t.is_complex() else t


def model_err(got, ref) -> float:
    """max over outputs of max|got - ref| / max|ref| (complex references compare as (re, im) pairs)."""
    g, r = flat(got) if not isinstance(got, list) else got, flat(ref) if not isinstance(ref, list) else ref
    assert len(g) == len(r), f"{len(g)} outputs vs {len(r)}"
    return max([rel_err(_pairs(a).detach(), _pairs(b).detach()) for a, b in zip(g, r)] + [0.0])


def eager_close(model, args, got, y0) -> tuple:
    """The judge's rewrite criterion: within 1e-4 of the peak, or (ill-conditioned models) within 4x eager
    float32's own error against float64 eager. Returns (ok, err, err64, eager32_vs_64)."""
    err = model_err(got, y0)
    if err <= MODEL_TOL:
        return True, err, None, None
    try:
        m64 = copy.deepcopy(model).double()
        a64 = tuple(a.double() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)
        with torch.no_grad():
            y64 = flat(m64(*a64))
    except Exception:  # noqa: BLE001 - the model has no float64 form: the plain criterion stands
        return False, err, None, None
    err64, eager64 = model_err(got, y64), model_err(y0, y64)
    return err64 <= 4 * eager64 + 1e-6, err, err64, eager64


_CACHE: dict = {}


def rewritten(name):
    """(model, args, y0, snapshot, rewritten model) for one builder, built and rewritten once per session."""
    if name not in _CACHE:
        model, args = BUILDERS[name]()
        with torch.no_grad():
            y0 = flat(model(*args))
        snap = snapshot(model)
        try:
            out = sr.rewrite(model, args)
        except Exception as e:  # noqa: BLE001 - remembered so the dynamic test reports the same failure
            _CACHE[name] = e
            raise
        _CACHE[name] = (model, args, y0, snap, out)
    hit = _CACHE[name]
    if isinstance(hit, Exception):
        raise hit
    return hit


# the models whose tests run from test_realmodels_more_b.py: this file alone took 17 of the suite's 25 min on one
# xdist worker (--dist loadfile) while the other idled; split, each half fits beside the rest of the suite
SECOND = ("dasp_parametric_eq", "fast_bss_eval_sdr_loss", "nara_wpe_torch", "bigvgan_mrd", "bigvgan_mbd",
          "torchaudio_souden_mvdr", "torchaudio_fftconvolve_reverb", "encodec_msstft_discriminator",
          "vocos_imdct_symexp_head", "nnaudio_cfp")


# static exports without the exporter's optimiser (onnxscript's pattern matcher): on dasp's run-time-length
# Bluestein FFTs it took 153 s of the suite's 27 minutes; every other model's static export runs it, and
# specrewrite.export's own tests check its retry without it. (HTDemucs' file loads in ONNX Runtime without it
# since its whole-number float aranges are integer aranges cast, 2026-12-03: before, torch.onnx wrote a Range
# with float and int64 inputs that ONNX Runtime refused; it runs here without the optimiser to keep it so.)
NO_OPTIMISER = ("dasp_parametric_eq", "demucs_htdemucs")


def _params(xfail_key, names=None):
    names = [n for n in BUILDERS if n not in SECOND] if names is None else names
    return [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=XFAIL[(n, xfail_key)]))
            if (n, xfail_key) in XFAIL else n for n in names]


# ------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("name", _params("static"))
def test_rewrite_and_onnx(name, tmp_path):
    check_rewrite_and_onnx(name, tmp_path)


def check_rewrite_and_onnx(name, tmp_path):
    model, args, y0, snap, out = rewritten(name)
    rep = out.specrewrite_report
    assert rep.entries or rep.complex_ops, f"no spectral op found: {rep}"
    assert_untouched(model, snap, args, y0)

    got = run_real_only(out, *args)
    ok, err, err64, eager64 = eager_close(model, args, got, y0)
    assert ok, f"rewritten (eager): rel err {err:.2e} of the peak > {MODEL_TOL:.0e} (vs float64: {err64}, " \
               f"eager float32 vs float64: {eager64})"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess, _, _ = onnx_roundtrip(out, args, path=str(tmp_path / f"{name}.onnx"),
                                    optimize=name not in NO_OPTIMISER)
    feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)}
    ort_err = model_err([torch.from_numpy(np.asarray(v)) for v in sess.run(None, feeds)], y0)
    assert ort_err <= MODEL_TOL, f"ORT: rel err {ort_err:.2e} of the peak > {MODEL_TOL:.0e}"
    assert_untouched(model, snap, args, y0)


DYNAMIC_RECORD: dict = {}   # name -> per axis: dynamic (and where checked) or fixed and why (for the notes)


def _at(args, axes, batch, length, seed):
    """The example inputs with every dynamic batch axis set to ``batch`` and every dynamic time axis set to
    ``length`` (the example's values where they fit, fresh ones beyond)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, a in enumerate(args):
        mine = {ax["axis"]: ax for ax in axes if ax["index"] == i and ax["dynamic"]}
        if not torch.is_tensor(a) or not mine:
            out.append(a)
            continue
        shape = list(a.shape)
        for d, ax in mine.items():
            shape[d] = batch if ax["role"] == "batch" else length if ax["role"] == "time" else shape[d]
        fresh = torch.randn(shape, generator=g, dtype=torch.float64).to(a.dtype) * float(a.abs().max() or 1) * 0.5
        region = tuple(slice(0, min(s_, n)) for s_, n in zip(shape, a.shape))
        fresh[region] = a[region]
        out.append(fresh)
    return tuple(out)


@pytest.mark.parametrize("name", _params("dynamic"))
def test_dynamic_shapes(name, tmp_path):
    """Every axis the report calls dynamic is exported dynamic to ONNX and checked in ONNX Runtime against eager
    at three lengths (shorter, equal, longer; odd) and two batch sizes; every axis it calls fixed says why."""
    model, args, y0, snap, out = rewritten(name)
    check_dynamic(name, model, args, out, tmp_path)


def _dump(name, record):
    """With SPECREWRITE_DYNAMIC_RECORD=path, one JSON line per model's verdicts (for the closing notes)."""
    if os.environ.get("SPECREWRITE_DYNAMIC_RECORD"):
        with open(os.environ["SPECREWRITE_DYNAMIC_RECORD"], "a") as f:
            f.write(json.dumps({"model": name, **record}, default=str) + "\n")


def check_dynamic(name, model, args, out, tmp_path):
    rep = out.specrewrite_report
    record = {}
    for ax in rep.axes:
        key = f"{ax['input']}.{ax['role']}"
        if not ax["dynamic"]:
            assert ax["why"], f"{key} is fixed with no reason: {rep}"
            # the line named is the model's, never the caller's rewrite() call (torch_stoi's batch named it)
            assert " in rewritten: " not in ax["why"], ax["why"]
            record[key] = "fixed: " + ax["why"][:160]
        else:
            record[key] = "dynamic" + (f" ({ax['range']})" if ax["range"] else "")
    DYNAMIC_RECORD[name] = record
    dyn = [ax for ax in rep.axes if ax["dynamic"]]
    if not dyn:
        _dump(name, record)
        return
    auto = torch.export.Dim.AUTO
    spec = tuple({ax["axis"]: auto for ax in dyn if ax["index"] == i} or None if torch.is_tensor(a) else None
                 for i, a in enumerate(args))
    time_ax = [ax for ax in dyn if ax["role"] == "time"]
    batch_ax = [ax for ax in dyn if ax["role"] == "batch"]
    # exported at batch >= 2: torch.export fixes every axis of size 1 in its example, as for the capture
    export_args = _at(args, dyn, max(batch_ax[0]["size"], 2), time_ax[0]["size"] if time_ax else None, seed=7) \
        if batch_ax else args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # (the exporter's optimiser off: the static export in test_rewrite_and_onnx runs it; on the dynamic
        # graphs of whole-clip FFTs its pattern matcher took minutes per model)
        sess, _, _ = onnx_roundtrip(out, export_args, dynamic_shapes=spec,
                                    path=str(tmp_path / f"{name}_dyn.onnx"), optimize=False)
    L = time_ax[0]["size"] if time_ax else None
    lo = max([ax["min"] or 2 for ax in time_ax] + [2])
    hi = min([ax["max"] or (1 << 30) for ax in time_ax] + [1 << 30])
    lengths = sorted({min(max(lo, (3 * L // 4) | 1), hi), L, min((L + L // 4 + 1) | 1, hi)}) if L else [None]
    classes = [ax["sizes"] for ax in time_ax if ax.get("sizes")]
    bad = None
    if classes and L:   # a residue class of lengths (the model branches on T % k): lengths inside it, one outside
        from specrewrite.rewrite._guards import holds

        # (a class can be as sparse as ceil(T / 256) odd: searched over a few periods)
        lengths = sorted({next(n for n in range(m, m + 4096) if all(holds(t, n) for t in classes))
                          for m in lengths})
        # (a class may also be an interval reaching far past the example: open-unmix's one window of frames)
        far = range(L + 4096, 1 << 22, max(L // 8, 1))
        bad = next((n for n in itertools.chain(range(L + 1, L + 4096), far)
                    if not all(holds(t, n) for t in classes)), None)
    B = batch_ax[0]["size"] if batch_ax else None
    batches = [B, B + 1] if B else [None]
    checked = []
    for b in batches:
        for n in lengths:
            xi = _at(args, dyn, b, n, seed=len(checked))
            try:
                with torch.no_grad():
                    ref = flat(model(*[a.clone() if torch.is_tensor(a) else a for a in xi]))
            except Exception:  # noqa: BLE001 - the model's own code rejects this shape: not judged
                continue
            feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), xi)}
            got = [torch.from_numpy(np.asarray(v)) for v in sess.run(None, feeds)]
            ok, err, err64, eager64 = eager_close(model, xi, got, ref)
            assert ok, (f"ORT at batch {b}, length {n} (exported at {B}, {L}): rel err {err:.2e} of the peak "
                        f"(vs float64: {err64}, eager float32 vs float64: {eager64})")
            checked.append((b, n, f"{err:.1e}"))
    if bad is not None:   # outside the class the exported file is loudly wrong (inf / nan), never silently
        xi = _at(args, dyn, B, bad, seed=99)
        outs = sess.run(None, {i.name: a.numpy() for i, a in zip(sess.get_inputs(), xi)})
        assert not all(np.isfinite(np.asarray(v)).all() for v in outs), f"length {bad} outside the class ran finite"
        record["outside the class"] = f"length {bad}: inf / nan"
    record["ORT (batch, length, error)"] = checked
    _dump(name, record)
    assert checked, f"eager rejects every tested shape: {lengths} x {batches}"
