"""Shared helpers, models and the one tolerance table of the Core ML tests (no tests here)."""
from __future__ import annotations

import copy
import logging
import math
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")
import coremltools as ct  # noqa: E402

logging.getLogger("coremltools").setLevel(logging.ERROR)

from conftest import TOL  # noqa: E402,F401 - re-exported to the Core ML test modules
from specrewrite.coreml.evaluate import evaluate, op_types  # noqa: E402

import specrewrite.coreml as src  # noqa: E402

# Errors are max |got - ref| / max |ref| per output, ref = torch float64 eager of the original model.
# fp32: programs computed in fp32. fp16: fp16 programs, evaluated with every value rounded to fp16
# (11 significant bits: 4.9e-4 per rounding; DFTs sum n_fft products, so ~10-40 roundings of the peak add up).

TARGETS = {"iOS15": (ct.target.iOS15, "mlprogram"), "iOS16": (ct.target.iOS16, "mlprogram"),
           "iOS17": (ct.target.iOS17, "mlprogram"), "iOS18": (ct.target.iOS18, "mlprogram"),
           "neuralnetwork": (ct.target.iOS14, "neuralnetwork")}
FORBIDDEN = ("complex", "stft", "fft")


def forbidden_ops(model) -> list:
    return sorted(t for t in op_types(model) if any(f in t for f in FORBIDDEN))


def rel_err(got, ref, angle=False) -> float:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    d = got - ref
    if angle:  # phases: compare on the circle (the branch cut at +-pi is ill-conditioned)
        d = (d + math.pi) % (2 * math.pi) - math.pi
    return float(np.abs(d).max() / max(np.abs(ref).max(), 1e-12))


def reference(model, args):
    with torch.no_grad():
        out = copy.deepcopy(model).double()(*[a.double() for a in args])
    return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]


def run(mlmodel, args, names=None, fp16=False):
    """Evaluate the MIL program on ``args`` (and any sr_basis_* inputs); outputs in program order."""
    func = mlmodel._mil_program.functions["main"]
    user = [n for n in func.inputs if not n.startswith("sr_basis_")]
    feeds = {n: a.numpy() for n, a in zip(names or user, args)}
    feeds.update(src.basis_inputs(mlmodel))
    return list(evaluate(mlmodel, feeds, fp16=fp16).values())


def check(mlmodel, model, args, tol, fp16=False, angles=()):
    """Evaluate and compare every output with float64 eager; returns the errors."""
    outs, refs = run(mlmodel, args, fp16=fp16), reference(model, args)
    assert len(outs) == len(refs)
    errs = [rel_err(o, r, angle=i in angles) for i, (o, r) in enumerate(zip(outs, refs))]
    assert max(errs) <= tol, errs
    return errs


def plugin_convert(model, args, target="iOS16", route="trace", precision="fp32", shapes=None):
    """Plain ct.convert of the un-rewritten model (the registration must be active)."""
    tgt, conv = TARGETS[target]
    kw = dict(convert_to=conv, minimum_deployment_target=tgt, skip_model_load=True)
    if conv == "mlprogram":
        kw["compute_precision"] = ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
    if route == "trace":
        traced = torch.jit.trace(model.eval(), args, check_trace=False)
        shapes = shapes or [a.shape for a in args]
        kw["inputs"] = [ct.TensorType(name=f"x{i}", shape=s, dtype=np.float32) for i, s in enumerate(shapes)]
        return ct.convert(traced, **kw)
    ep = torch.export.export(model.eval(), args).run_decompositions({})
    return ct.convert(ep, **kw)


# ------------------------------------------------------------------------------------------------- models

class KitchenSink(torch.nn.Module):
    """torch.stft with the window made in forward, complex math, a masked istft, torch.fft and torchaudio."""

    def __init__(self):
        super().__init__()
        import torchaudio

        self.mel = torchaudio.transforms.MelSpectrogram(n_fft=512, hop_length=128, n_mels=40)

    def forward(self, x, mask):
        w = torch.hann_window(256)
        z = torch.stft(x, 256, 64, window=w, return_complex=True)            # centre padding in torch
        power = z.abs() ** 2
        zz = torch.nn.functional.pad(z, (1, 1))[..., 1:-1] * mask            # complex pad / slice / * real
        zz = zz.to(torch.complex64) * (0.5 + 0.25j) + 1j * zz.real            # complex scalars, 1j
        y = torch.istft(zz, 256, 64, window=w, length=x.shape[-1])
        c = torch.polar(mask[..., :8] + 0.5, mask[..., 8:16] * 3.0)           # (1, 129, 8)
        c = torch.view_as_complex(torch.view_as_real(c).contiguous()) / (c + 2.0)
        spec = torch.fft.rfft(x[..., :512], norm="ortho")
        back = torch.fft.irfft(torch.fft.ifft(torch.fft.fft(spec)), n=512, norm="ortho")
        return power, y, torch.view_as_real(c), c.angle(), c.abs(), back, self.mel(x)


def kitchen_args(length=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, length, generator=g) * 1.6 - 0.8
    frames = 1 + length // 64
    return x, torch.rand(1, 129, frames, generator=g)


class StftArgs(torch.nn.Module):
    """Every torch.stft argument, windows made in forward."""

    def forward(self, x):
        a = torch.stft(x, 64, 16, window=torch.hamming_window(64), return_complex=True).abs()
        b = torch.stft(x, 64, 16, win_length=48, window=torch.blackman_window(48, periodic=False), normalized=True,
                       pad_mode="constant", return_complex=True).abs()
        c = torch.stft(x, 64, 16, window=torch.kaiser_window(64, True, 8.0), center=False, return_complex=True)
        d = torch.stft(x, 64, 16, window=torch.bartlett_window(64), pad_mode="replicate", onesided=False,
                       return_complex=True)
        e = torch.stft(x, 64, 24, return_complex=False)                      # rectangular, real output
        f = torch.stft(torch.complex(x, 0.5 * x.flip(-1)), 32, 8, window=torch.hann_window(32), return_complex=True)
        return a + b, torch.view_as_real(c), torch.view_as_real(d), e, torch.view_as_real(f)


class IstftArgs(torch.nn.Module):
    """torch.istft arguments: win_length < n_fft, center=False, normalized, two-sided, length."""

    def forward(self, x):
        w = torch.hann_window(40)
        a = torch.istft(torch.stft(x, 64, 16, win_length=40, window=w, return_complex=True), 64, 16,
                        win_length=40, window=w)
        h = torch.hamming_window(64)
        z = torch.stft(x, 64, 16, window=h, center=False, normalized=True, return_complex=True)
        b = torch.istft(z, 64, 16, window=h, center=False, normalized=True, length=250)
        z = torch.stft(x, 64, 20, window=torch.hann_window(64), onesided=False, return_complex=True)
        c = torch.istft(z, 64, 20, window=torch.hann_window(64), onesided=False, length=310)
        return a, b, c


class FftArgs(torch.nn.Module):
    """torch.fft with n (trim / pad), dim, norm, complex input, 2-D and n-D transforms."""

    def forward(self, x):
        a = torch.fft.rfft(x, n=40, dim=0, norm="forward")
        b = torch.fft.fft(x.to(torch.complex64), n=20, dim=-1)
        c = torch.fft.ifft(b, n=24, dim=1, norm="ortho")
        d = torch.fft.irfft(a, n=30, dim=0)
        e = torch.fft.fft2(x)
        f = torch.fft.irfftn(torch.fft.rfftn(x), s=x.shape)
        return torch.view_as_real(a), torch.view_as_real(c), d, torch.view_as_real(e), f


class ComplexViews(torch.nn.Module):
    """View-like ops, reductions and arithmetic on complex tensors."""

    def forward(self, x):
        z = torch.view_as_complex(x)                                                  # (3, 4, 5)
        a = torch.cat([z, z * 2], dim=-1)
        b = torch.stack([z, z.conj()], dim=-1)
        c = z.unsqueeze(-1).squeeze(-1).transpose(-1, -2).permute(2, 0, 1).reshape(4, -1)
        d = z[:, 1:3, ::2].flip(-1).sum(dim=-1) + z.mean(dim=(0, 2), keepdim=True).squeeze(-1).squeeze(0)[1:3]
        e0, e1 = torch.chunk(z, 2, dim=0)[0], torch.unbind(z, dim=-1)[1]
        f = torch.select(z, -2, 1).flatten()
        g = torch.movedim(z, -1, 0)
        h = torch.exp(z * 0.1) - z / (1 + z.abs())
        return tuple(torch.view_as_real(t) for t in (a, b, c, d, e0, e1, f, g, h, z.sum())) + (
            z.real * 2 + z.imag, z.abs().sum(-1))
