"""Every torch.fft function with its argument forms (n / s / dim / norm, axis other than the last, complex128):
one table shared by the rewrite tests and the ONNX no-DFT check."""
from __future__ import annotations

import torch

NORMS = (None, "forward", "ortho")


def _cases():
    F = torch.fft
    out = []
    for norm in NORMS:
        out += [
            ("fft", lambda x, norm=norm: F.fft(x, norm=norm), "c", (3, 24)),
            ("fft_n_dim0", lambda x, norm=norm: F.fft(x, n=5, dim=0, norm=norm), "c", (3, 24)),
            ("ifft", lambda x, norm=norm: F.ifft(x, n=30, norm=norm), "c", (3, 24)),
            ("rfft", lambda x, norm=norm: F.rfft(x, n=20, norm=norm), "r", (2, 3, 24)),
            ("rfft_dim1", lambda x, norm=norm: F.rfft(x, dim=1, norm=norm), "r", (2, 9, 4)),
            ("irfft", lambda x, norm=norm: F.irfft(x, norm=norm), "c", (2, 13)),
            ("irfft_n_odd", lambda x, norm=norm: F.irfft(x, n=25, norm=norm), "c", (2, 13)),
            ("irfft_real_in", lambda x, norm=norm: F.irfft(x, n=16, dim=0, norm=norm), "r", (9, 3)),
            ("hfft", lambda x, norm=norm: F.hfft(x, norm=norm), "c", (2, 13)),
            ("hfft_n", lambda x, norm=norm: F.hfft(x, n=21, dim=0, norm=norm), "c", (11, 2)),
            ("ihfft", lambda x, norm=norm: F.ihfft(x, norm=norm), "r", (2, 24)),
            ("ihfft_n", lambda x, norm=norm: F.ihfft(x, n=17, norm=norm), "r", (2, 24)),
            ("fft2", lambda x, norm=norm: F.fft2(x, norm=norm), "c", (2, 6, 8)),
            ("ifft2_s", lambda x, norm=norm: F.ifft2(x, s=(4, 10), norm=norm), "c", (2, 6, 8)),
            ("rfft2", lambda x, norm=norm: F.rfft2(x, norm=norm), "r", (2, 6, 8)),
            ("irfft2", lambda x, norm=norm: F.irfft2(x, s=(6, 9), norm=norm), "c", (2, 6, 5)),
            ("hfft2", lambda x, norm=norm: F.hfft2(x, s=(6, 8), norm=norm), "c", (6, 5)),
            ("ihfft2", lambda x, norm=norm: F.ihfft2(x, norm=norm), "r", (6, 8)),
            ("fftn", lambda x, norm=norm: F.fftn(x, norm=norm), "c", (3, 4, 5)),
            ("ifftn_dim", lambda x, norm=norm: F.ifftn(x, dim=(0, 2), norm=norm), "c", (3, 4, 5)),
            ("rfftn", lambda x, norm=norm: F.rfftn(x, s=(4, 6), dim=(0, 1), norm=norm), "r", (3, 4, 5)),
            ("irfftn", lambda x, norm=norm: F.irfftn(x, norm=norm), "c", (3, 4, 5)),
            ("hfftn", lambda x, norm=norm: F.hfftn(x, s=(4, 8), norm=norm), "c", (4, 5)),
            ("ihfftn", lambda x, norm=norm: F.ihfftn(x, dim=(0, 1), norm=norm), "r", (4, 6)),
        ]
    out += [
        ("fftshift", lambda x: F.fftshift(x), "c", (4, 7)),
        ("ifftshift_dim", lambda x: F.ifftshift(x, dim=-1), "c", (4, 7)),
        ("fftshift_real", lambda x: F.fftshift(F.rfft(x), dim=(0,)), "r", (5, 8)),
        ("fftfreq", lambda x: x * F.fftfreq(x.shape[-1], d=0.5), "r", (2, 10)),
        ("rfftfreq", lambda x: F.rfft(x).abs() * F.rfftfreq(x.shape[-1], d=1 / 16000), "r", (2, 10)),
    ]
    return out


CASES = _cases()
NAMED = [(f"{name}-{i}", fn, kind, shape) for i, (name, fn, kind, shape) in enumerate(CASES)]


class FftModule(torch.nn.Module):
    """Real inputs only: a complex case takes (..., 2) pairs and makes them complex inside forward."""

    def __init__(self, fn, kind):
        super().__init__()
        self.fn, self.kind = fn, kind

    def forward(self, x):
        z = torch.view_as_complex(x) if self.kind == "c" else x
        y = self.fn(z)
        return torch.view_as_real(y.resolve_conj()) if y.is_complex() else y


def make_input(kind, shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    full = tuple(shape) + ((2,) if kind == "c" else ())
    return torch.randn(full, generator=g, dtype=torch.float64).to(dtype)
