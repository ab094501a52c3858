"""RealISTFT / specrewrite.istft against torch.istft in float64, round trips, and NOLA errors."""
from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, note
from hypothesis import strategies as st

import specrewrite as sr
from conftest import assert_close, make_signal, ola_amplification
from specrewrite import IstftSpec, Mode, RealISTFT, RealSTFT, SpecRewriteError, StftSpec, Strategy

ALL_MODES = (Mode.STORE, Mode.INPUT, Mode.ON_THE_FLY)
ALL_STRATEGIES = (Strategy.DENSE, Strategy.FACTORED, Strategy.AUTO)
from conftest import SPECIAL_NFFT, make_window  # noqa: E402


def run_istft(m: RealISTFT, z: torch.Tensor, length=None) -> torch.Tensor:
    if m.mode is Mode.INPUT:
        return m(z, *m.basis_inputs().values(), length=length)
    return m(z, length=length)


def random_spectrum(lead, n_fft, n_frames, onesided, seed, hermitian=False):
    """Random complex spectrum as a complex128 tensor (..., F, T). Hermitian: a full spectrum of a real frame."""
    g = torch.Generator().manual_seed(seed)
    half = n_fft // 2 + 1
    shape = tuple(lead) + (half if onesided or hermitian else n_fft, n_frames)
    z = torch.complex(torch.randn(shape, generator=g, dtype=torch.float64),
                      torch.randn(shape, generator=g, dtype=torch.float64))
    if hermitian and not onesided:
        z[..., 0, :] = z[..., 0, :].real
        if n_fft % 2 == 0:
            z[..., n_fft // 2, :] = z[..., n_fft // 2, :].real
        tail = torch.flip(z[..., 1: n_fft - half + 1, :], dims=[-2]).conj()
        z = torch.cat([z, tail], dim=-2)
        assert z.shape[-2] == n_fft
    return z


@st.composite
def istft_cases(draw):
    n_fft = draw(st.one_of(st.sampled_from(SPECIAL_NFFT), st.integers(16, 1100)))
    center = draw(st.booleans())
    if center:
        win_length = draw(st.one_of(st.just(n_fft), st.integers(max(2, n_fft // 3), n_fft)))
        window = draw(st.sampled_from(["hann", "hamming", "random", "none"]))
    else:  # torch.istft rejects a zero envelope at the edges: the window must be non-zero at both ends
        win_length = n_fft
        window = draw(st.sampled_from(["hamming", "random", "none"]))
    # divisors of n_fft (short overlap-add, factored plans possible) and arbitrary hops; NOLA filtered below
    divs = [n_fft // d for d in (2, 3, 4, 8) if n_fft % d == 0 and n_fft // d <= (3 * win_length) // 4]
    hop = draw(st.one_of(st.sampled_from(divs or [max(1, win_length // 4)]),
                         st.integers(max(1, win_length // 8), max(1, (3 * win_length) // 4))))
    normalized = draw(st.booleans())
    onesided = draw(st.sampled_from([True, True, False]))
    n_frames = draw(st.integers(2, max(2, min(40, 4000 // hop))))
    lead = draw(st.sampled_from([(), (2,), (1, 2)]))
    length_kind = draw(st.sampled_from(["none", "shorter", "longer"]))
    seed = draw(st.integers(0, 2 ** 16))
    return dict(n_fft=n_fft, hop=hop, win_length=win_length, window=window, center=center,
                normalized=normalized, onesided=onesided, n_frames=n_frames, lead=lead, length_kind=length_kind,
                seed=seed)


def natural_length(c):
    n, hop, t = c["n_fft"], c["hop"], c["n_frames"]
    full = n + (t - 1) * hop
    return full - 2 * (n // 2) if c["center"] else full


def draw_length(c, data):
    nat = natural_length(c)
    if c["length_kind"] == "none":
        return None
    if c["length_kind"] == "shorter":
        # at least half the natural length: a handful of samples has no meaningful peak to be relative to
        return data.draw(st.integers(max(1, nat // 2), max(1, nat - 1)), label="length")
    return data.draw(st.integers(nat + 1, nat + c["hop"]), label="length")


def torch_istft(z, c, w, length):
    lead = z.shape[:-2]
    y = torch.istft(z.reshape((-1,) + z.shape[-2:]), c["n_fft"], c["hop"], c["win_length"], w, c["center"],
                    c["normalized"], c["onesided"], length)
    return y.reshape(lead + y.shape[-1:])


def _spec_or_reject(c, w):
    try:
        return IstftSpec.make(c["n_fft"], c["hop"], c["win_length"], w, c["center"], c["normalized"],
                              c["onesided"])
    except SpecRewriteError:
        assume(False)


def _well_conditioned(spec, c, length):
    start = c["n_fft"] // 2 if c["center"] else 0
    stop = start + (natural_length(c) if length is None else length)
    return ola_amplification(spec.padded_window(), c["hop"], c["n_frames"], start, stop) <= 20


@given(istft_cases(), st.data(), st.booleans())
def test_real_istft_matches_torch(c, data, hermitian):
    note(repr(c))
    w = make_window(c["window"], c["win_length"], c["seed"])
    spec = _spec_or_reject(c, w)
    length = draw_length(c, data)
    assume(_well_conditioned(spec, c, length))
    # full (onesided=False) spectra: torch.istft inverts only bins 0..n_fft//2, Hermitian or not
    z = random_spectrum(c["lead"], c["n_fft"], c["n_frames"], c["onesided"], c["seed"], hermitian=hermitian)
    try:
        ref = torch_istft(z, c, w, length)
    except RuntimeError:  # torch rejects it (zero envelope inside the requested range): nothing to compare
        assume(False)
    zr = torch.view_as_real(z).to(torch.float32)
    for strategy in ALL_STRATEGIES:
        for mode in ALL_MODES:
            m = RealISTFT(spec, mode, strategy)
            if strategy is Strategy.DENSE:
                assert m.plan is None
            out = run_istft(m, zr, length)
            assert out.dtype == torch.float32
            assert_close(out, ref, "fp32_rel", f"istft: {mode.value}/{strategy.value} plan={m.plan}")


@given(istft_cases(), st.data(), st.sampled_from(ALL_STRATEGIES), st.sampled_from(["pair", "complex", "tuple"]))
def test_functional_istft_matches_torch(c, data, strategy, form):
    note(repr(c))
    w = make_window(c["window"], c["win_length"], c["seed"])
    spec = _spec_or_reject(c, w)
    length = draw_length(c, data)
    assume(_well_conditioned(spec, c, length))
    z = random_spectrum(c["lead"], c["n_fft"], c["n_frames"], c["onesided"], c["seed"],
                        hermitian=c["seed"] % 2 == 0)
    try:
        ref = torch_istft(z, c, w, length)
    except RuntimeError:
        assume(False)
    z32 = z.to(torch.complex64)
    arg = {"pair": torch.view_as_real(z32), "complex": z32, "tuple": (z32.real, z32.imag)}[form]
    out = sr.istft(arg, c["n_fft"], c["hop"], c["win_length"], w, c["center"], c["normalized"], c["onesided"],
                   length, strategy=strategy)
    assert_close(out, ref, "fp32_rel", "istft: functional")


@pytest.mark.parametrize("n_fft,hop", [(512, 128), (1024, 256), (400, 100), (2048, 512), (256, 64), (4096, 1024),
                                       (1536, 384)])
@pytest.mark.parametrize("mode", ALL_MODES)
def test_factored_istft_is_used_and_exact(n_fft, hop, mode):
    w = torch.hann_window(n_fft, dtype=torch.float64)
    z = random_spectrum((2,), n_fft, 12, True, n_fft)
    ref = torch.istft(z, n_fft, hop, window=w)
    m = RealISTFT(IstftSpec.make(n_fft, hop, window=w), mode, Strategy.FACTORED)
    assert m.plan is not None and m.plan.n == n_fft
    assert_close(run_istft(m, torch.view_as_real(z).float()), ref, "fp32_rel", "istft: factored fixed")


@pytest.mark.parametrize("n_fft,hop", [(256, 64), (400, 160), (512, 128), (1000, 250), (1024, 256), (1536, 384),
                                       (2048, 512), (4096, 1024)])
def test_the_default_istft_is_as_accurate_as_torchs(n_fft, hop):
    """The default strategy's float32 rms error against float64 stays within 1.45x torch.istft's own (one dense
    conv_transpose summed 2 * (n_fft/2 + 1) products in one accumulator: 1.9-2.2x at these sizes)."""
    w = torch.hann_window(n_fft, dtype=torch.float64)
    z = random_spectrum((2,), n_fft, 200, True, n_fft + 1)
    ref = torch.istft(z, n_fft, hop, window=w)
    own = torch.istft(z.to(torch.complex64), n_fft, hop, window=w.float())
    m = RealISTFT(IstftSpec.make(n_fft, hop, window=w), Mode.STORE, Strategy.AUTO)
    got = run_istft(m, torch.view_as_real(z).float())
    rms = lambda y: float((y.double() - ref).pow(2).mean().sqrt())  # noqa: E731
    assert rms(got) <= 1.45 * rms(own), (rms(got) / rms(own), m)


def test_griffin_lim_ends_as_close_to_float64_as_eager_float32():
    """torchaudio GriffinLim, n_fft 512, hop 128, 32 iterations (momentum 0.99). The loop amplifies rounding so
    much that eager float32 itself lands anywhere from 0.2x to 15x its typical error when its input moves by one
    rounding: one clip says little (a single clip once showed 17x eager's error). Pooled over 12 clips x 5 input
    roundings, the median error against float64 eager stays within 1.5x eager float32's. Over 4 clips the median
    itself swung with the clips drawn: 0.86x to 2.0x for the full factored inverse (2026-12-05, three clip sets);
    over 120 samples it was 0.95x full, 1.24x in the half form with its 16 x 32 split (measured 2026-12-04: 1.05x
    with the dense inverse)."""
    import copy
    import statistics

    import torchaudio.transforms as T

    n_fft, hop, length = 512, 128, 8000
    model = T.GriffinLim(n_fft=n_fft, hop_length=hop, n_iter=32, rand_init=False, length=length).eval()
    m64 = copy.deepcopy(model).double()
    stft = T.Spectrogram(n_fft=n_fft, hop_length=hop, power=2)
    fast = None
    g = torch.Generator().manual_seed(100)
    own, got = [], []
    with torch.no_grad():
        for seed in range(12):
            spec = stft(torch.randn(2, length, generator=torch.Generator().manual_seed(seed)))
            if fast is None:
                fast = sr.rewrite(model, (spec,))
            for _ in range(5):
                sp = spec * (1 + 6e-8 * torch.randn(spec.shape, generator=g))
                ref = m64(sp.double())
                peak = ref.abs().max()
                own.append(float((model(sp) - ref).abs().max() / peak))
                got.append(float((fast(sp) - ref).abs().max() / peak))
    assert statistics.median(got) <= 1.5 * statistics.median(own), (got, own)


# ----------------------------------------------------------------------------------------- round trips
@st.composite
def roundtrip_cases(draw):
    n_fft = draw(st.one_of(st.sampled_from(SPECIAL_NFFT), st.integers(16, 1100)))
    center = draw(st.booleans())
    window = draw(st.sampled_from(["hann", "hamming", "random", "none"] if center else ["hamming", "random", "none"]))
    hop = draw(st.one_of(st.sampled_from([n_fft // 4, n_fft // 2]), st.integers(max(1, n_fft // 8), n_fft // 2)))
    pad_mode = draw(st.sampled_from(["reflect", "constant", "replicate", "circular"]))
    normalized = draw(st.booleans())
    onesided = draw(st.booleans())
    lead = draw(st.sampled_from([(), (3,), (2, 2)]))
    length = draw(st.integers(n_fft + 1, n_fft + 3000))
    seed = draw(st.integers(0, 2 ** 16))
    return dict(n_fft=n_fft, hop=hop, window=window, center=center, pad_mode=pad_mode, normalized=normalized,
                onesided=onesided, lead=lead, length=length, seed=seed)


@given(roundtrip_cases(), st.sampled_from(ALL_MODES), st.sampled_from(ALL_STRATEGIES))
def test_roundtrip_istft_of_stft_is_identity(c, mode, strategy):
    note(repr(c))
    n, hop = c["n_fft"], c["hop"]
    w = make_window(c["window"], n, c["seed"])
    x64 = make_signal(c["lead"] + (c["length"],), c["seed"])
    length = c["length"] if c["center"] else None
    try:  # torch must accept the pair too (e.g. an uncovered tail with center=False)
        zt = torch.stft(x64.reshape(-1, x64.shape[-1]), n, hop, window=w, center=c["center"], pad_mode=c["pad_mode"],
                        normalized=c["normalized"], onesided=c["onesided"], return_complex=True)
        torch.istft(zt, n, hop, window=w, center=c["center"], normalized=c["normalized"], onesided=c["onesided"],
                    length=length)
    except RuntimeError:
        assume(False)
    stft = RealSTFT(StftSpec.make(n, hop, None, w, c["center"], c["pad_mode"], c["normalized"], c["onesided"]),
                    mode, strategy)
    istft = RealISTFT(IstftSpec.make(n, hop, None, w, c["center"], c["normalized"], c["onesided"]), mode,
                      strategy)
    x32 = x64.to(torch.float32)
    z = stft(x32, *stft.basis_inputs().values()) if mode is Mode.INPUT else stft(x32)
    y = run_istft(istft, z, length)
    ref = x64 if length is not None else x64[..., : y.shape[-1]]
    if length is None:  # center=False: the frames cover a prefix of the signal
        assert y.shape[-1] == n + (zt.shape[-1] - 1) * hop
    assert_close(y, ref, "fp32_rel", "istft: roundtrip")


# ----------------------------------------------------------------------------------------- full spectra
@pytest.mark.parametrize("n_fft,hop,strategy", [(17, 5, Strategy.DENSE), (512, 128, Strategy.FACTORED)])
def test_istft_full_spectrum_non_hermitian_matches_torch(n_fft, hop, strategy):
    """torch.istft(onesided=False, return_complex=False) uses only bins 0..n_fft//2 (it slices the input and
    runs a c2r transform), so a non-Hermitian full spectrum must give the same signal as its onesided half."""
    w = torch.hann_window(n_fft, dtype=torch.float64)
    z = random_spectrum((), n_fft, 10, False, 7)
    ref = torch.istft(z, n_fft, hop, window=w, onesided=False)
    assert torch.allclose(ref, torch.istft(z[: n_fft // 2 + 1], n_fft, hop, window=w, onesided=True))
    m = RealISTFT(IstftSpec.make(n_fft, hop, window=w, onesided=False), Mode.STORE, strategy)
    assert_close(m(torch.view_as_real(z).float()), ref, "fp32_rel", "istft: full spectrum")


@pytest.mark.parametrize("n_fft,hop", [(200, 3), (125, 2), (200, 6)])
def test_istft_with_a_hop_that_does_not_divide_n_fft_is_right_on_every_call(n_fft, hop):
    """torch's CPU conv_transpose1d (oneDNN) returns garbage, or corrupts memory, on two or more threads for some
    strides that do not divide the kernel (torch-time-stretch's defaults: n_fft = sr // 64, hop = n_fft // 32) at
    batch >= 4. The dense synthesis must not go through it there: repeated calls at batch 8 all match float64."""
    w = torch.hann_window(n_fft, dtype=torch.float64)
    m = RealISTFT(IstftSpec.make(n_fft, hop, window=w), Mode.STORE, Strategy.DENSE)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)   # the tests run on one thread (conftest); the fault needs two
    try:
        for seed in range(4):
            z = random_spectrum((8,), n_fft, 1400, True, seed)
            z[:, 0].imag.zero_()
            z[:, -1].imag.zero_()
            ref = torch.istft(z, n_fft, hop, window=w)
            assert_close(m(torch.view_as_real(z).float()), ref, "fp32_rel", f"istft: n_fft {n_fft} hop {hop}")
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("n_fft,hop,win_length,window", [
    (16, 12, 8, "hann"),      # hop > win_length: gaps between windows
    (64, 64, 64, "hann"),     # periodic hann with hop == n_fft: zero at every frame start
    (64, 40, 32, "none"),     # rectangular but hop > win_length
    (400, 401, 400, "hamming"),
])
def test_nola_violation_raises(n_fft, hop, win_length, window):
    w = make_window(window, win_length, 0)
    with pytest.raises(SpecRewriteError, match="NOLA"):
        IstftSpec.make(n_fft, hop, win_length, w)
    with pytest.raises(SpecRewriteError, match="NOLA"):
        sr.istft(torch.zeros(n_fft // 2 + 1, 8, 2), n_fft, hop, win_length, w)
    # torch agrees that the inverse is not defined
    with pytest.raises(RuntimeError):
        torch.istft(torch.ones(n_fft // 2 + 1, 8, dtype=torch.complex128), n_fft, hop, win_length,
                    None if w is None else w)


def test_istft_invalid_sizes_raise():
    with pytest.raises(SpecRewriteError, match="win_length"):
        IstftSpec.make(64, 16, 65)
    with pytest.raises(SpecRewriteError, match="n_fft"):
        IstftSpec.make(64.0, 16)
    with pytest.raises(SpecRewriteError, match="basis"):
        RealISTFT(IstftSpec.make(64, 16, window=torch.hann_window(64)), Mode.INPUT)(torch.zeros(33, 5, 2))


@pytest.mark.parametrize("n_fft,hop,mode", [(4096, 1024, Mode.STORE), (4096, 1024, Mode.ON_THE_FLY),
                                            (1024, 256, Mode.INPUT)])
def test_split_inverse_in_float64_and_a_dynamic_onnx_file(n_fft, hop, mode):
    """From n_fft 1024 the default inverse splits stage A in two (``kernels.split.inverse_split_plan``, in the
    half form): eager float64 (batched matmuls) and one ONNX file with batch and frame count dynamic, at three
    shapes, against torch.istft in float64."""
    from conftest import onnx_roundtrip

    w = torch.hann_window(n_fft, dtype=torch.float64)
    m = RealISTFT(IstftSpec.make(n_fft, hop, window=w), mode, Strategy.AUTO)
    assert m.plan.p and m.plan.half and f"({m.plan.p}x" in repr(m)
    m64 = RealISTFT(IstftSpec.make(n_fft, hop, window=w), mode, Strategy.AUTO, dtype=torch.float64)
    z = random_spectrum((2,), n_fft, 9, True, 5)
    ref = torch.istft(z, n_fft, hop, window=w)
    got = run_istft(m64, torch.view_as_real(z)) if mode is not Mode.INPUT else \
        m64(torch.view_as_real(z), *[b.double() for b in m64.basis_inputs().values()])
    assert got.dtype == torch.float64 and float((got - ref).abs().max() / ref.abs().max()) < 1e-12
    bases = list(m.basis_inputs().values()) if mode is Mode.INPUT else []

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = m

        def forward(self, z, b0=None, b1=None):
            return self.m(z, b0, b1)

    sess, _, _ = onnx_roundtrip(Wrap(), (torch.view_as_real(z).float(), *bases),
                                dynamic_shapes=({0: torch.export.Dim("b"), 2: torch.export.Dim("t", min=2)},)
                                + (None,) * len(bases))
    names = [i.name for i in sess.get_inputs()]
    for lead, frames in (((2,), 9), ((3,), 17), ((1,), 4)):
        z = random_spectrum(lead, n_fft, frames, True, frames)
        feed = dict(zip(names, [torch.view_as_real(z).float().numpy()] + [b.numpy() for b in bases]))
        got = torch.from_numpy(sess.run(None, feed)[0])
        assert_close(got, torch.istft(z, n_fft, hop, window=w), "fp32_rel", f"split inverse in ORT, {frames} frames")


def test_split_inverse_converts_to_core_ml_from_the_rewritten_model():
    """The rewritten model's split inverse (n_fft 1024 and 4096) through coremltools' TorchScript route, the
    MIL evaluator's result against torch.istft in float64. (Its group sizes are given, not read from a traced
    shape: open-unmix, HDemucs and vocos failed the public judge's Core ML stage at ff53698 on a traced
    ``C // groups``; this small model converted either way, the judge's vocos case reproduces it.)"""
    import numpy as np

    pytest.importorskip("coremltools")
    from specrewrite import coreml as sc
    from specrewrite.coreml.evaluate import evaluate

    class M(torch.nn.Module):
        def forward(self, x):
            outs = []
            for n in (1024, 4096):
                w = torch.hann_window(n)
                outs.append(torch.istft(torch.stft(x, n, n // 4, window=w, return_complex=True) * 0.5, n, n // 4,
                                        window=w))
            return outs[0], outs[1]

    x = make_signal((1, 20000), 4).float()
    m = sr.rewrite(M(), (x,))
    mlmodel = sc.convert(m, (x,))
    got = list(evaluate(mlmodel, {mlmodel.get_spec().description.input[0].name: x.numpy()}).values())
    refs = M().double()(x.double())
    for ref in refs:
        best = min(float(np.abs(g - ref.numpy()).max()) for g in got if g.shape == tuple(ref.shape))
        assert best / float(ref.abs().max()) < 1e-5
