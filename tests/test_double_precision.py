"""float64 / complex128 models: rewritten, exported to ONNX and run in onnxruntime's CPU provider.

That provider has no double Conv, ConvTranspose or Atan kernel, so the float64 route of the emitters frames with
Gather + MatMul, overlap-adds with Pad + Add and corrects a float32 atan2 estimate in float64. Every comparison is
against torch in float64 eager at TOL['fp64_rel'], at the export length and at a longer one (dynamic time axis).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.export import Dim

import specrewrite as sr
from conftest import TOL, make_signal, onnx_op_types, onnx_roundtrip, rel_err, record_error
from specrewrite.rewrite._complex import atan2

# Python float scalars are multiplied in by the graphs below only where they are exact in float32: the dynamo
# exporter (torch 2.13) stores a Python scalar times a float64 tensor as the float32-rounded value (x * 0.1 comes
# back 1.5e-9 off in onnxruntime), which has nothing to do with the rewrite.
NO_DOUBLE_KERNEL = ("Conv", "ConvTranspose", "Atan")


def hann(n, x):
    return torch.hann_window(n, dtype=x.dtype, device=x.device)


# ----------------------------------------------------------------------------------------- models
class StftAngleIstft(torch.nn.Module):
    """stft -> complex arithmetic including angle() and exp() -> istft back to the input length.

    pad_mode='constant': with reflect padding the first frame is symmetric, its spectrum is real in exact
    arithmetic and angle() of a negative bin flips between +pi and -pi on rounding noise (in torch itself too)."""

    def forward(self, x):
        z = torch.stft(x, 512, 128, window=hann(512, x), pad_mode="constant", return_complex=True)
        z = z * torch.exp(1j * z.angle() * 0.125) + 0.25 * z.abs()
        return torch.istft(z, 512, 128, window=hann(512, x), length=x.shape[-1])


class RfftFilter(torch.nn.Module):
    """rfft over 256-sample blocks of the signal, a filter with an angle() term, irfft back."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.register_buffer("h", torch.randn(129, 2, generator=g, dtype=torch.float64))

    def forward(self, x):
        z = torch.fft.rfft(x.unflatten(-1, (-1, 256)), dim=-1)
        z = z * torch.view_as_complex(self.h) * torch.exp(1j * z.angle() * 0.5)
        return torch.fft.irfft(z, n=256, dim=-1).flatten(-2)


class PowerSpectrogram(torch.nn.Module):
    """torchaudio.functional.spectrogram as torchaudio computes it (window-normalized power spectrogram)."""

    def __init__(self, n_fft=400, hop=160):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft, dtype=torch.float64))

    def forward(self, x):
        z = torch.stft(x, self.n_fft, self.hop, window=self.window, center=True, pad_mode="reflect",
                       return_complex=True)
        z = z / self.window.pow(2.0).sum().sqrt()
        return z.abs().pow(2.0)


# ----------------------------------------------------------------------------------------- helpers
def double_input_ops(model) -> set:
    """Op types of the nodes that take at least one double tensor (types from ONNX shape inference)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    dtypes = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    dtypes.update({t.name: t.data_type for t in g.initializer})
    double = onnx.TensorProto.DOUBLE
    return {n.op_type for n in g.node if any(dtypes.get(i) == double for i in n.input)}


def check_graph(model):
    ops = onnx_op_types(model)
    assert not ops & {"Conv", "ConvTranspose"}, f"float64 graph has {sorted(ops & {'Conv', 'ConvTranspose'})}"
    bad = double_input_ops(model) & set(NO_DOUBLE_KERNEL)
    assert not bad, f"ops without a double kernel in onnxruntime CPU run on doubles: {sorted(bad)}"


def export_and_compare(model, rewritten, example, longer, extra=(), dynamic=None, what=""):
    """Export ``rewritten`` (float64; dynamic batch and time unless ``dynamic`` is False), then compare torch and
    ORT to ``model`` in float64 eager at the export shape and at ``longer`` (if given). Returns the largest ORT
    error."""
    if dynamic is None:
        dynamic = {0: Dim("batch", min=1, max=64), example.dim() - 1: Dim("time", min=1024, max=1 << 20)}
    shapes = None if dynamic is False else (dynamic,) + tuple(None for _ in extra)
    sess, onnx_model, _ = onnx_roundtrip(rewritten, (example,) + tuple(extra), dynamic_shapes=shapes)
    check_graph(onnx_model)
    names = [i.name for i in sess.get_inputs()]
    worst = 0.0
    for x in (example,) if longer is None else (example, longer):
        with torch.no_grad():
            ref = model(x)
            got = rewritten(x, *extra)
        assert ref.dtype == got.dtype == torch.float64
        feed = dict(zip(names, [x.numpy()] + [e.numpy() for e in extra]))
        out = sess.run(None, feed)[0]
        assert out.dtype == np.float64
        e_torch, e_ort = rel_err(got, ref), rel_err(out, ref)
        record_error(f"fp64 torch {what}", e_torch)
        record_error(f"fp64 onnx {what}", e_ort)
        assert e_torch <= TOL["fp64_rel"], f"{what} {tuple(x.shape)}: torch rel err {e_torch:.3e}"
        assert e_ort <= TOL["fp64_rel"], f"{what} {tuple(x.shape)}: onnxruntime rel err {e_ort:.3e}"
        worst = max(worst, e_ort)
    return worst


# ----------------------------------------------------------------------------------------- atan2
def test_atan2_float64_grid_matches_torch():
    mags = [0.0, 5e-324, 1e-310, 1e-300, 1e-150, 1e-40, 1e-20, 1e-8, 0.5, 1.0, 3.0, 1e8, 1e20, 1e40, 1e150,
            1e300, 1.7e308]
    axis = torch.tensor(sorted({s * m for m in mags for s in (1.0, -1.0)}) + [-0.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    mag = torch.exp((torch.rand(40000, generator=g, dtype=torch.float64) * 2 - 1) * 700)
    rnd = torch.randn(40000, generator=g, dtype=torch.float64) * mag
    ang = (torch.rand(20000, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    y = torch.cat([axis.repeat_interleave(len(axis)), rnd[:20000], torch.sin(ang)])
    x = torch.cat([axis.repeat(len(axis)), rnd[20000:], torch.cos(ang)])
    assert bool(torch.isfinite(x).all() and torch.isfinite(y).all())
    got, ref = atan2(y, x), torch.atan2(y, x)
    assert got.dtype == torch.float64
    origin = (x == 0) & (y == 0)
    # the origin as torch: a signed zero for x == +0, +-pi for x == -0 (angle() of -0 + 0i is pi in eager)
    assert torch.equal(got[origin], ref[origin])
    assert torch.equal(torch.signbit(got[origin]), torch.signbit(ref[origin]))
    err = float((got[~origin] - ref[~origin]).abs().max())
    record_error("fp64 atan2 (rad)", err)
    assert err <= 1e-14, f"atan2 float64 max error {err:.3e} rad"
    # the axes exactly as torch: y == +-0 with x > 0 keeps the signed zero, x < 0 gives +-pi
    on_axis = (y == 0) & ~origin
    assert torch.equal(torch.signbit(got[on_axis]), torch.signbit(ref[on_axis]))
    pi = atan2(torch.tensor([0.0, -0.0, 0.0], dtype=torch.float64), torch.tensor([-1.0, -1.0, -1e-300], dtype=torch.float64))
    assert pi.tolist() == [math.pi, -math.pi, math.pi]


def test_atan2_float32_path_unchanged():
    """The float32 route is the half-angle atan formula (what coremltools needs), not torch.atan2."""
    y = torch.tensor([0.0, -0.0, 1.0, -1.0, 0.0, 3.0], dtype=torch.float32)
    x = torch.tensor([-1.0, -1.0, 0.0, 0.0, 2.0, -4.0], dtype=torch.float32)
    r = torch.sqrt(x * x + y * y)
    den = r + x
    pos = 2.0 * torch.atan(y / torch.where(den > 0, den, torch.ones_like(den)))
    neg = 2.0 * torch.atan((r - x) / y)
    assert torch.equal(atan2(y, x), torch.where(x >= 0, pos, neg))


# ----------------------------------------------------------------------------------------- onnx round trips
@pytest.mark.parametrize("mode,strategy", [("store", "auto"), ("input", "factored"), ("on_the_fly", "dense")])
def test_stft_angle_istft_float64_runs_in_onnxruntime(mode, strategy):
    model = StftAngleIstft().eval()
    x = make_signal((2, 4000), seed=1)
    f = sr.rewrite(model, (x,), mode=mode, strategy=strategy).eval()
    extra = tuple(f.basis_inputs().values()) if mode == "input" else ()
    longer = make_signal((3, 9001), seed=2)
    export_and_compare(model, f, x, longer, extra, what="stft/angle/istft")


def test_rfft_irfft_float64_runs_in_onnxruntime():
    model = RfftFilter().eval()
    # the FFT runs along the input-sized axis: a run-time-length plan keeps it dynamic, in float64 too
    x = make_signal((2, 12 * 256), seed=4)
    f = sr.rewrite(model, (x,)).eval()
    export_and_compare(model, f, x, make_signal((3, 17 * 256), seed=5), what="rfft/irfft")


def test_power_spectrogram_float64_runs_in_onnxruntime():
    model = PowerSpectrogram().eval()
    x = make_signal((2, 6000), seed=6)
    f = sr.rewrite(model, (x,)).eval()
    export_and_compare(model, f, x, make_signal((3, 16001), seed=7), what="spectrogram")
