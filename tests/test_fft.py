"""rfft / irfft / fft / ifft (functional and RealFFT in every mode) against torch.fft in float64."""
from __future__ import annotations

import pytest
import torch

import specrewrite as sr
from conftest import assert_close
from specrewrite import Mode, RealFFT
from specrewrite.specs import fft_scale

NORMS = (None, "backward", "ortho", "forward")
SIZES = (1, 2, 3, 8, 15, 16, 97, 128, 255, 400)
LEADS = ((), (3,), (2, 4))


def _real(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64)


def _complex(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=g, dtype=torch.float64),
                         torch.randn(shape, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("n", SIZES)
def test_rfft(n, norm):
    for i, lead in enumerate(LEADS):
        x = _real(lead + (n,), n + i)
        ref = torch.fft.rfft(x, norm=norm)
        out = sr.rfft(x.float(), norm=norm)
        assert out.shape == lead + (n // 2 + 1, 2)
        assert_close(out, ref, "fp32_rel", f"fft: rfft n={n} norm={norm}")


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("n", SIZES)
def test_irfft_default_length(n, norm):
    # torch.fft.irfft infers n = 2*(F-1); random complex bins (DC / Nyquist imaginary parts are ignored)
    f = n // 2 + 1
    if f < 2:
        f = 2
    for i, lead in enumerate(LEADS):
        z = _complex(lead + (f,), 10 * n + i)
        ref = torch.fft.irfft(z, norm=norm)
        out = sr.irfft(torch.view_as_real(z).float(), norm=norm)
        assert_close(out, ref, "fp32_rel", f"fft: irfft F={f} norm={norm}")


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("n_bins,n", [(9, 16), (9, 17), (9, 7), (9, 30), (5, 3), (50, 97), (65, 100), (2, 1)])
def test_irfft_explicit_length(n_bins, n, norm):
    """n odd, n shorter than the bins (trimmed) and longer (zero-padded), as torch does."""
    z = _complex((2, n_bins), n_bins * 1000 + n)
    ref = torch.fft.irfft(z, n=n, norm=norm)
    out = sr.irfft(torch.view_as_real(z).float(), n=n, norm=norm)
    assert out.shape == (2, n)
    assert_close(out, ref, "fp32_rel", f"fft: irfft n={n} norm={norm}")


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("inverse", [False, True])
def test_fft_ifft(n, norm, inverse):
    for i, lead in enumerate(LEADS):
        z = _complex(lead + (n,), 7 * n + i)
        ref = (torch.fft.ifft if inverse else torch.fft.fft)(z, norm=norm)
        zr = torch.view_as_real(z).float()
        out = sr.ifft(zr, norm=norm) if inverse else sr.fft(zr, norm=norm)
        assert out.shape == lead + (n, 2)
        assert_close(out, ref, "fp32_rel", f"fft: {'ifft' if inverse else 'fft'} n={n} norm={norm}")


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("n", [8, 15, 400])
def test_irfft_of_rfft_and_ifft_of_fft_are_identity(n, norm):
    x = _real((3, n), n)
    assert_close(sr.irfft(sr.rfft(x.float(), norm=norm), n=n, norm=norm), x, "fp32_rel", "fft: roundtrip")
    z = _complex((3, n), n + 1)
    assert_close(sr.ifft(sr.fft(torch.view_as_real(z).float(), norm=norm), norm=norm), torch.view_as_real(z),
                 "fp32_rel", "fft: roundtrip")


@pytest.mark.parametrize("mode", [Mode.STORE, Mode.INPUT, Mode.ON_THE_FLY])
@pytest.mark.parametrize("kind,n", [("r2c", 16), ("r2c", 97), ("c2c", 15), ("c2c", 64), ("c2r", 16), ("c2r", 33)])
@pytest.mark.parametrize("norm", ["backward", "ortho", "forward"])
def test_real_fft_module_modes(mode, kind, n, norm):
    inverse = kind == "c2r"
    m = RealFFT(kind, n, scale=fft_scale(norm, n, not inverse), inverse=inverse, mode=mode)
    if kind == "r2c":
        x = _real((2, n), n)
        ref, inp = torch.fft.rfft(x, norm=norm), x.float()
    elif kind == "c2c":
        z = _complex((2, n), n)
        ref, inp = torch.fft.fft(z, norm=norm), torch.view_as_real(z).float()
    else:
        z = _complex((2, n // 2 + 1), n)
        ref, inp = torch.fft.irfft(z, n=n, norm=norm), torch.view_as_real(z).float()
    out = m(inp, *m.basis_inputs().values()) if mode is Mode.INPUT else m(inp)
    assert_close(out, ref, "fp32_rel", f"fft: RealFFT {kind} {mode.value}")


def test_real_fft_inverse_c2c_module():
    n = 24
    z = _complex((3, n), 5)
    m = RealFFT("c2c", n, scale=fft_scale("backward", n, False), inverse=True, mode=Mode.ON_THE_FLY)
    assert_close(m(torch.view_as_real(z).float()), torch.fft.ifft(z), "fp32_rel", "fft: RealFFT ifft")


def test_rfft_full_spectrum_module():
    n = 20
    x = _real((2, n), 9)
    m = RealFFT("r2c", n, onesided=False)
    assert_close(m(x.float()), torch.fft.fft(x), "fp32_rel", "fft: RealFFT r2c full")


def test_unknown_norm_raises():
    with pytest.raises(sr.SpecRewriteError, match="norm"):
        sr.rfft(torch.zeros(8), norm="unitary")
