"""torch.fft along a dynamic axis: DynamicFFT (Bluestein with the length read at run time) against float64 torch,
its limit, its export to ONNX with a dynamic length, and rewrite() of whole-clip FFT models keeping time dynamic."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import specrewrite as sr
from conftest import TOL, onnx_op_types, onnx_roundtrip, record_error, rel_err
from specrewrite._torch.fft_dynamic import DynamicFFT, capacity, conv_length

LENGTHS = [1, 2, 3, 7, 64, 101, 256, 257, 1000]


def _reference(kind, n, power, inverse, seed):
    """(float32 input, float64 reference, eager float32 result) for one transform of length n."""
    g = torch.Generator().manual_seed(seed)
    norm = {0.0: "backward", 0.5: "ortho", 1.0: "forward"}[power]
    if kind == "c2r" or inverse:   # an inverse transform's "backward" scales by 1/n: power 1 is its default
        norm = {1.0: "backward", 0.5: "ortho", 0.0: "forward"}[power]
    if kind == "c2r":
        z = torch.randn(3, n // 2 + 1, 2, generator=g, dtype=torch.float64)
        f = lambda t: torch.fft.irfft(torch.view_as_complex(t.contiguous()), n=n, norm=norm)   # noqa: E731
        return z.float(), f(z), f(z.float())
    if kind == "r2c":
        x = torch.randn(3, n, generator=g, dtype=torch.float64)
        f = lambda t: torch.view_as_real(torch.fft.rfft(t, norm=norm))   # noqa: E731
        return x.float(), f(x), f(x.float())
    z = torch.randn(3, n, 2, generator=g, dtype=torch.float64)
    op = torch.fft.ifft if inverse else torch.fft.fft
    f = lambda t: torch.view_as_real(op(torch.view_as_complex(t.contiguous()), norm=norm))   # noqa: E731
    return z.float(), f(z), f(z.float())


@pytest.mark.parametrize("mode", ["store", "on_the_fly", "input"])
@pytest.mark.parametrize("kind,power,inverse", [("r2c", 0.0, False), ("r2c", 0.5, False), ("c2c", 0.0, False),
                                                ("c2c", 1.0, True), ("c2r", 1.0, False), ("c2r", 0.5, False)])
def test_every_length_matches_float64(kind, power, inverse, mode):
    mod = DynamicFFT(kind, 1000, power=power, inverse=inverse, mode=mode)
    assert mod.m == 2048 and mod.n_max == 1000
    feeds = list(mod.basis_inputs().values()) if mode == "input" else []
    for i, n in enumerate(LENGTHS):
        x, ref, eager = _reference(kind, n, power, inverse, seed=i)
        got = mod(x, *feeds, n=n) if kind == "c2r" else mod(x, *feeds)
        assert got.shape == ref.shape, (n, got.shape, ref.shape)
        ours, theirs = rel_err(got, ref), rel_err(eager, ref)
        record_error("dynamic fft: ours", ours)
        assert ours <= max(4 * theirs, TOL["fp32_rel"] / 10), (kind, n, ours, theirs)


def test_real_spectrum_has_exact_zero_imaginary_dc_and_nyquist():
    mod = DynamicFFT("r2c", 600)
    for n in (512, 513):
        y = mod(torch.randn(2, n))
        assert (y[:, 0, 1] == 0).all()
        if n % 2 == 0:
            assert (y[:, n // 2, 1] == 0).all()


def test_irfft_takes_more_or_fewer_bins_than_it_needs():
    """irfft's n= trims or zero-pads the bins to n // 2 + 1: the module matches them at run time."""
    mod = DynamicFFT("c2r", 800, power=1.0)
    z = torch.randn(2, 300, 2, dtype=torch.float64)
    for n in (400, 599, 700):
        ref = torch.fft.irfft(torch.view_as_complex(z), n=n)
        assert rel_err(mod(z.float(), n=n), ref) <= TOL["fp32_rel"] / 10, n


def test_plan_size_and_limit():
    assert conv_length(1) == 2 and conv_length(1000) == 2048 and conv_length(1025) == 4096
    assert capacity(2048) == 1024
    mod = DynamicFFT("r2c", 1000)
    assert mod.n_max == 1000 and "bluestein(M=2048" in mod.plan
    with pytest.raises(sr.SpecRewriteError, match="holds lengths up to 1000") as e:
        mod(torch.randn(1, 1001))
    assert "Dim(max=" in e.value.fix
    with pytest.raises(sr.SpecRewriteError, match="longer than"):
        DynamicFFT("r2c", 2 ** 23)


class _Spectrum(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fft = DynamicFFT("r2c", 5000)

    def forward(self, x):
        return self.fft(x)


def test_exports_to_onnx_with_a_dynamic_length(tmp_path):
    x = torch.randn(2, 3001)
    dim = torch.export.Dim("t", min=2, max=1 << 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess, model, _ = onnx_roundtrip(_Spectrum(), (x,), dynamic_shapes=({1: dim},),
                                        path=str(tmp_path / "dyn_fft.onnx"))
    ops = onnx_op_types(model)
    assert not ops & {"DFT", "STFT"}, ops
    for n in (2, 511, 3001, 4096, 5000):
        xi = torch.randn(2, n, dtype=torch.float64)
        got = sess.run(None, {sess.get_inputs()[0].name: xi.float().numpy()})[0]
        assert rel_err(torch.from_numpy(got), torch.view_as_real(torch.fft.rfft(xi))) <= 2e-6, n
    beyond = sess.run(None, {sess.get_inputs()[0].name: np.ones((2, 5001), np.float32)})[0]
    assert not np.isfinite(beyond).all()   # past the plan: loudly wrong, never silently


class FFTConv(torch.nn.Module):
    """FFT convolution of the whole clip with a learned impulse response (a reverb / FIR filter)."""

    def __init__(self):
        super().__init__()
        self.h = torch.nn.Parameter(torch.randn(129, generator=torch.Generator().manual_seed(0)) * 0.1)

    def forward(self, x):
        n = x.shape[-1] + self.h.shape[-1] - 1
        y = torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(self.h, n=n), n=n)
        return y[..., : x.shape[-1]]


class Envelope(torch.nn.Module):
    """A Hilbert envelope through the complex FFT (two-sided, norm='ortho')."""

    def forward(self, x):
        z = torch.fft.fft(x, norm="ortho")
        n = x.shape[-1]
        k = torch.arange(n)
        h = (k == 0).to(x.dtype) + 2.0 * ((k > 0) & (2 * k < n)).to(x.dtype) + (2 * k == n).to(x.dtype)
        return torch.fft.ifft(z * h, norm="ortho").abs()


def _f64(model, x):
    import copy

    with torch.no_grad():
        return copy.deepcopy(model).double()(x.double())


@pytest.mark.parametrize("model", [FFTConv(), Envelope()], ids=["fftconv", "envelope"])
def test_rewrite_keeps_time_dynamic_through_onnx(model, tmp_path):
    x = torch.randn(2, 3001)
    out = sr.rewrite(model.eval(), (x,))
    rep = out.specrewrite_report
    assert rep.axis("x", "time")["dynamic"] and rep.axis("x", "batch")["dynamic"], str(rep)
    assert all("dynamic <=" in str(e.params["n"]) for e in rep.entries), str(rep)
    dims = ({0: torch.export.Dim("b"), 1: torch.export.Dim("t", min=2, max=1 << 22)},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess, onnx_model, _ = onnx_roundtrip(out, (x,), dynamic_shapes=dims, path=str(tmp_path / "m.onnx"))
    assert not onnx_op_types(onnx_model) & {"DFT", "STFT"}
    for b, n in [(2, 3001), (1, 1999), (3, 3750), (2, 12004)]:
        xi = torch.randn(b, n, dtype=torch.float64)
        ref = _f64(model, xi)
        got = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: xi.float().numpy()})[0])
        eager = rel_err(model(xi.float()), ref)
        assert rel_err(got, ref) <= max(4 * eager, 2e-6), (b, n, rel_err(got, ref), eager)


def test_a_dim_max_sets_the_limit():
    x = torch.randn(1, 3001)
    out = sr.rewrite(FFTConv().eval(), (x,), dynamic_shapes={"x": {1: torch.export.Dim("t", max=6000)}})
    rep = out.specrewrite_report
    assert all(e.params["n"] == "dynamic <= 6128" for e in rep.entries), str(rep)   # 6000 + 129 - 1
    xi = torch.randn(1, 6000, dtype=torch.float64)
    assert rel_err(out(xi.float()), _f64(FFTConv(), xi)) <= 2e-6
