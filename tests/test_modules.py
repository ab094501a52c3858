"""specrewrite.modules vs torchaudio.transforms (references run in float64), built both from arguments and via
``from_torchaudio``, in every mode."""
from __future__ import annotations

import pytest
import torch
import torchaudio
import torchaudio.transforms as T

import specrewrite as sr
from conftest import assert_close, make_signal, ola_amplification
from specrewrite import Mode, Strategy

ALL_MODES = (Mode.STORE, Mode.INPUT, Mode.ON_THE_FLY)
BUILDS = ("args", "from_torchaudio")


def call(m, x, *extra, **kw):
    """Run a specrewrite module, feeding the bases in INPUT mode."""
    if _mode_of(m) is Mode.INPUT:
        b = list(m.basis_inputs().values())
        if isinstance(m, sr.InverseSpectrogram):
            return m(x, *extra, *b, **kw)
        return m(x, *b)
    return m(x, *extra, **kw)


def _mode_of(m):
    for sub in m.modules():
        if hasattr(sub, "mode") and isinstance(sub.mode, Mode):
            return sub.mode
    raise AssertionError("no spectral submodule")


def build(cls, ta_cls, kwargs, how, mode, strategy=Strategy.AUTO):
    ref = ta_cls(**kwargs)
    if how == "from_torchaudio":
        ours = cls.from_torchaudio(ref, mode=mode, strategy=strategy)
    else:
        ours = cls(**kwargs, mode=mode, strategy=strategy)
    return ours, ref.to(torch.float64)


def _ref_real(y):
    return torch.view_as_real(y) if y.is_complex() else y


# ----------------------------------------------------------------------------------------- Spectrogram
SPECTROGRAM_CASES = [
    dict(n_fft=400),
    dict(n_fft=512, hop_length=128, power=None),
    dict(n_fft=256, win_length=200, hop_length=64, power=1.0, normalized=True),
    dict(n_fft=255, hop_length=50, power=0.5, normalized="window"),
    dict(n_fft=300, hop_length=75, power=2.0, normalized="frame_length", center=False),
    dict(n_fft=128, hop_length=32, pad=20, pad_mode="constant", power=None, normalized="frame_length"),
    dict(n_fft=64, hop_length=16, onesided=False, power=2.0, pad_mode="replicate"),
    dict(n_fft=1024, hop_length=256, power=None, onesided=False, pad_mode="circular"),
    dict(n_fft=400, window_fn=torch.hamming_window, wkwargs={"periodic": False}, power=1.0, pad=3),
    dict(n_fft=97, win_length=90, hop_length=13, power=0.5, center=False, normalized=True),
]


@pytest.mark.parametrize("how", BUILDS)
@pytest.mark.parametrize("kwargs", SPECTROGRAM_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()
                                                                             if a != "window_fn"))
def test_spectrogram(kwargs, how):
    x = make_signal((2, 3000), 1)
    for mode in ALL_MODES:
        for strategy in (Strategy.AUTO, Strategy.FACTORED):
            ours, ref_m = build(sr.Spectrogram, T.Spectrogram, kwargs, how, mode, strategy)
            ref = _ref_real(ref_m(x))
            assert_close(call(ours, x.float()), ref, "fp32_rel", f"modules: Spectrogram {mode.value}")


@pytest.mark.parametrize("shape", [(3000,), (1, 3000), (2, 3, 1500)])
def test_spectrogram_batch_shapes(shape):
    x = make_signal(shape, 2)
    ref = T.Spectrogram(400, hop_length=100, power=None).double()(x)
    for mode in ALL_MODES:
        ours = sr.Spectrogram(400, hop_length=100, power=None, mode=mode)
        assert_close(call(ours, x.float()), torch.view_as_real(ref), "fp32_rel", "modules: Spectrogram batch")


# ----------------------------------------------------------------------------------------- MelSpectrogram
MEL_CASES = [
    dict(sample_rate=16000, n_fft=400, hop_length=160, n_mels=80),
    dict(sample_rate=22050, n_fft=1024, hop_length=256, n_mels=80, f_max=8000.0, norm="slaney",
         mel_scale="slaney"),
    dict(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=64, f_min=20.0, f_max=7600.0,
         mel_scale="slaney"),
    dict(sample_rate=44100, n_fft=2048, hop_length=512, n_mels=128, norm="slaney", power=1.0),
    dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=40, center=False, normalized=True, f_min=100.0,
         pad=10),
]


@pytest.mark.parametrize("how", BUILDS)
@pytest.mark.parametrize("kwargs", MEL_CASES, ids=lambda k: f"{k['sample_rate']}-{k['n_fft']}")
def test_mel_spectrogram(kwargs, how):
    x = make_signal((2, 4100), 3)
    for mode in ALL_MODES:
        ours, ref_m = build(sr.MelSpectrogram, T.MelSpectrogram, kwargs, how, mode)
        assert_close(call(ours, x.float()), ref_m(x), "fp32_rel", f"modules: MelSpectrogram {mode.value}")


# ----------------------------------------------------------------------------------------- MFCC / LFCC
MFCC_CASES = [
    dict(sample_rate=16000, n_mfcc=13, log_mels=False, melkwargs=dict(n_fft=400, hop_length=160, n_mels=40)),
    dict(sample_rate=16000, n_mfcc=40, log_mels=True, melkwargs=dict(n_fft=512, hop_length=128, n_mels=64,
                                                                     mel_scale="slaney", norm="slaney")),
    dict(sample_rate=22050, n_mfcc=20, norm=None, log_mels=False,
         melkwargs=dict(n_fft=1024, hop_length=256, n_mels=80, f_min=30.0)),
]


@pytest.mark.parametrize("how", BUILDS)
@pytest.mark.parametrize("kwargs", MFCC_CASES, ids=lambda k: f"{k['n_mfcc']}-log{k['log_mels']}")
def test_mfcc(kwargs, how):
    x = make_signal((2, 4000), 4)
    for mode in ALL_MODES:
        ours, ref_m = build(sr.MFCC, T.MFCC, kwargs, how, mode)
        assert_close(call(ours, x.float()), ref_m(x), "fp32_rel", f"modules: MFCC {mode.value}")


LFCC_CASES = [
    dict(sample_rate=16000, n_filter=128, n_lfcc=40, log_lf=False),
    dict(sample_rate=16000, n_filter=64, n_lfcc=20, f_min=50.0, f_max=6000.0, log_lf=True,
         speckwargs=dict(n_fft=512, hop_length=128)),
    dict(sample_rate=8000, n_filter=40, n_lfcc=13, norm=None, speckwargs=dict(n_fft=256, hop_length=80,
                                                                              power=1.0)),
]


@pytest.mark.parametrize("how", BUILDS)
@pytest.mark.parametrize("kwargs", LFCC_CASES, ids=lambda k: f"{k['n_filter']}-{k['n_lfcc']}")
def test_lfcc(kwargs, how):
    x = make_signal((2, 4000), 5)
    for mode in ALL_MODES:
        ours, ref_m = build(sr.LFCC, T.LFCC, kwargs, how, mode)
        assert_close(call(ours, x.float()), ref_m(x), "fp32_rel", f"modules: LFCC {mode.value}")


# ----------------------------------------------------------------------------------------- InverseSpectrogram
INVERSE_CASES = [
    dict(n_fft=400),
    dict(n_fft=512, hop_length=128, normalized=True),
    dict(n_fft=256, win_length=200, hop_length=50, normalized="frame_length"),
    dict(n_fft=300, hop_length=100, center=False, window_fn=torch.hamming_window),
    dict(n_fft=1024, hop_length=256, normalized="window", onesided=False),
    dict(n_fft=128, hop_length=32, pad=16),
]


def istft_amplification(ours, n_frames, length):
    """See conftest.ola_amplification: lengths whose tail is ill-conditioned in float32 are not compared."""
    spec = ours.istft.spec
    start = spec.n_fft // 2 if spec.center else 0
    return ola_amplification(spec.padded_window(), spec.hop_length, n_frames, start,
                             start + length + 2 * ours.pad)


@pytest.mark.parametrize("how", BUILDS)
@pytest.mark.parametrize("kwargs", INVERSE_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()
                                                                         if a != "window_fn"))
def test_inverse_spectrogram(kwargs, how):
    fwd_kwargs = {k: v for k, v in kwargs.items() if k in ("n_fft", "win_length", "hop_length", "pad", "window_fn",
                                                           "normalized", "center", "onesided")}
    x = make_signal((2, 3000), 6)
    spec = T.Spectrogram(**fwd_kwargs, power=None).double()(x)          # complex128, Hermitian frames
    natural, compared = None, 0
    for mode in ALL_MODES:
        ours, ref_m = build(sr.InverseSpectrogram, T.InverseSpectrogram, kwargs, how, mode)
        # torchaudio keeps the padding when length is None (see test_inverse_spectrogram_pad_without_length)
        lengths = [3000, 2500, 3100] + ([None] if kwargs.get("pad", 0) == 0 else [])
        for length in lengths:
            if length is not None and istft_amplification(ours, spec.shape[-1], length) > 20:
                continue
            ref = ref_m(spec, length)
            if length is None:
                natural = ref.shape[-1]
            out = call(ours, torch.view_as_real(spec).float(), length)
            assert_close(out, ref, "fp32_rel", f"modules: InverseSpectrogram {mode.value} length={length}")
            compared += 1
            if length == 3000 and kwargs.get("center", True):
                assert_close(out, x, "fp32_rel", "modules: InverseSpectrogram roundtrip")
    if kwargs.get("pad", 0) == 0:
        assert natural is not None
    assert compared >= 2 * len(ALL_MODES)


def test_inverse_spectrogram_accepts_complex_input():
    x = make_signal((3000,), 7)
    spec = T.Spectrogram(400, power=None).double()(x)
    ref = T.InverseSpectrogram(400).double()(spec, 3000)
    out = sr.InverseSpectrogram(400)(spec.to(torch.complex64), 3000)
    assert_close(out, ref, "fp32_rel", "modules: InverseSpectrogram complex input")


def test_inverse_spectrogram_pad_without_length():
    """torchaudio.functional.inverse_spectrogram strips ``pad`` only when ``length`` is given."""
    x = make_signal((2, 3000), 8)
    spec = T.Spectrogram(128, hop_length=32, pad=16, power=None).double()(x)
    ref_m = T.InverseSpectrogram(128, hop_length=32, pad=16).double()
    ref = ref_m(spec)
    ours = sr.InverseSpectrogram.from_torchaudio(ref_m)
    assert_close(ours(torch.view_as_real(spec).float()), ref, "fp32_rel", "modules: InverseSpectrogram pad")


# ----------------------------------------------------------------------------------------- errors
def test_module_errors():
    with pytest.raises(sr.SpecRewriteError, match="normalized"):
        sr.Spectrogram(64, normalized="bogus")
    with pytest.raises(sr.SpecRewriteError, match="power"):
        sr.Spectrogram(64, power=0.0)
    with pytest.raises(sr.SpecRewriteError, match="mel"):
        sr.MelSpectrogram(n_fft=64, n_mels=8, mel_scale="bark")
    with pytest.raises(sr.SpecRewriteError, match="MFCC"):
        sr.MFCC(n_mfcc=50, melkwargs=dict(n_fft=128, n_mels=40))


@pytest.mark.parametrize("shape", [(23, 101), (2, 23, 101), (3, 2, 23, 101), (2, 2, 2, 23, 40)])
def test_amplitude_to_db_top_db_floor_matches_torchaudio(shape):
    """The top_db floor is taken per spectrogram (the last 3 dims), as torchaudio packs them."""
    from specrewrite.modules import amplitude_to_db

    g = torch.Generator().manual_seed(len(shape))
    x = torch.rand(*shape, generator=g, dtype=torch.float64) ** 8 * torch.rand(shape[0], *[1] * (len(shape) - 1),
                                                                                generator=g, dtype=torch.float64)
    ref = torchaudio.functional.amplitude_to_DB(x, 10.0, 1e-10, 0.0, top_db=40.0)
    assert torch.equal(amplitude_to_db(x, 10.0, 1e-10, 0.0, 40.0), ref)


def test_mfcc_with_top_db_converts_to_core_ml():
    from test_coreml_common import check, src

    m = torchaudio.transforms.MFCC(sample_rate=16000, n_mfcc=13).eval()
    x = torch.randn(1, 16000, generator=torch.Generator().manual_seed(5)) * 0.1
    ml = src.convert(m, (x,), target="iOS16")
    check(ml, m, (x,), 1e-4)
