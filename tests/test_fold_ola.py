"""``F.fold`` as overlap-add (aten ``col2im`` of one-dimensional blocks): hand-written inverse STFTs (Vocos'
``padding="same"`` head, WavTokenizer, torch-mdct) fold their frames back into a signal with it. ONNX's Col2Im runs
on ONNX Runtime's CPU provider only and coremltools converts only blocks that do not overlap; the rewrite spells it
as Pad + Add, the Core ML plugin likewise. Checked against float64 eager in ONNX Runtime and the MIL evaluator."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import specrewrite as sr
from conftest import TOL, onnx_roundtrip, rel_err
from specrewrite.rewrite._real_ops import col2im
from test_coreml_common import check, forbidden_ops, plugin_convert, src


@pytest.mark.parametrize("k,s,pad,along_h,batched", [
    (64, 16, 0, False, True), (64, 16, 24, False, True), (200, 3, 0, False, True), (125, 50, 7, False, False),
    (48, 12, 0, True, True), (10, 10, 0, False, True), (16, 20, 0, False, True)])
def test_one_dimensional_fold_matches_torch_in_float64(k, s, pad, along_h, batched):
    """The spelled-out fold equals F.fold: blocks along W or H, with padding, a hop not dividing the block, blocks
    that do not overlap or leave gaps, unbatched input."""
    g = torch.Generator().manual_seed(k + s)
    t, c = 9, 3
    length = (t - 1) * s + k - 2 * pad
    x = torch.randn(2, c * k, t, dtype=torch.float64, generator=g)
    x = x if batched else x[0]
    size, kern, step, pads = ((length, 1), (k, 1), (s, 1), (pad, 0)) if along_h else \
        ((1, length), (1, k), (1, s), (0, pad))
    ref = F.fold(x, size, kern, stride=step, padding=pads)
    got = col2im(x, size, kern, (1, 1), pads, step)
    assert got.shape == ref.shape
    assert rel_err(got, ref) <= 1e-15


def test_other_folds_stay_col2im():
    x = torch.randn(1, 2 * 9, 16, dtype=torch.float64)
    ref = F.fold(x, (6, 6), (3, 3), stride=(1, 1))   # two-dimensional blocks
    assert rel_err(col2im(x, (6, 6), (3, 3), (1, 1), (0, 0), (1, 1)), ref) == 0


class SameHead(torch.nn.Module):
    """Vocos' ISTFT with padding="same": irfft of the frames, windowed, folded, divided by the folded window^2."""

    def __init__(self, n_fft=64, hop=16):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, x):
        w = self.window.to(x.dtype)
        spec = torch.stft(x, self.n_fft, self.hop, window=w, center=False, return_complex=True)
        pad, t = (self.n_fft - self.hop) // 2, spec.shape[-1]
        frames = torch.fft.irfft(spec, self.n_fft, dim=1) * w[None, :, None]
        size = (t - 1) * self.hop + self.n_fft
        fold = dict(output_size=(1, size), kernel_size=(1, self.n_fft), stride=(1, self.hop))
        y = F.fold(frames, **fold)[:, 0, 0, pad:-pad]
        env = F.fold(w.square().expand(1, t, -1).transpose(1, 2), **fold).squeeze()[pad:-pad]
        return y / env


def _f64(model, x):
    with torch.no_grad():
        return model.double()(x.double()).float()


def test_fold_overlap_add_exports_without_col2im_at_any_length():
    x = torch.randn(2, 1600, generator=torch.Generator().manual_seed(0))
    model = SameHead().eval()
    out = sr.rewrite(model, (x,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess, onnx_model, _ = onnx_roundtrip(out, (x,), dynamic_shapes=({1: torch.export.Dim("t", min=256)},))
    assert "Col2Im" not in {n.op_type for n in onnx_model.graph.node}
    for n in (1600, 2013):
        xi = torch.randn(2, n, generator=torch.Generator().manual_seed(n))
        ref = _f64(SameHead().eval(), xi)
        got = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: xi.numpy()})[0])
        assert rel_err(got, ref) <= TOL["fp32_rel"], n


@pytest.mark.parametrize("route", ["rewritten", "plugin"])
def test_fold_overlap_add_converts_to_core_ml(route):
    x = torch.randn(2, 1600, generator=torch.Generator().manual_seed(1))
    model = SameHead().eval()
    if route == "rewritten":
        traced = torch.jit.trace(sr.rewrite(model, (x,)), (x,), check_trace=False)
        import coremltools as ct

        ml = ct.convert(traced, inputs=[ct.TensorType(shape=x.shape)], convert_to="mlprogram",
                        minimum_deployment_target=ct.target.iOS16, compute_precision=ct.precision.FLOAT32,
                        skip_model_load=True)
    else:
        with src.register():
            ml = plugin_convert(model, (x,), "iOS16", "trace")
    assert forbidden_ops(ml) == []
    check(ml, SameHead().eval(), (x,), TOL["fp32_rel"])
