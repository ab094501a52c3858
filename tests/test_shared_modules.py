"""Spectral calls that transform alike share one submodule, so its bases are stored, fed or built once: a loss's
STFTs of its input and target (auraloss' multi-resolution loss: 3.37 MB of bases in its ONNX file before, 1.69 MB
after), a separator's STFT of the mixture and of each source. Calls that differ (another n_fft, window or dtype)
keep their own. Numbers against float64 eager, in every mode and in ONNX Runtime."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import specrewrite as sr
from conftest import TOL, onnx_roundtrip, rel_err


class TwoInputLoss(torch.nn.Module):
    """|STFT(x)| against |STFT(y)| at two resolutions, plus an rfft of each and a round trip through istft."""

    def forward(self, x, y):
        out = 0.0
        for n, hop in ((512, 128), (256, 64)):
            w = torch.hann_window(n, dtype=x.dtype)
            a = torch.stft(x, n, hop, window=w, return_complex=True)
            b = torch.stft(y, n, hop, window=w, return_complex=True)
            out = out + (a.abs() - b.abs()).abs().mean((-1, -2))
        fx_, fy = torch.fft.rfft(x[..., :300]), torch.fft.rfft(y[..., :300])
        back = torch.istft(torch.stft(y, 256, 64, window=torch.hann_window(256, dtype=x.dtype),
                                      return_complex=True) * 0.5, 256, 64,
                           window=torch.hann_window(256, dtype=x.dtype), length=y.shape[-1])
        return out + (fx_ - fy).abs().mean(-1), back


def _holders(out, kind):
    return {id(m) for n, m in out.named_modules(remove_duplicate=False) if n.startswith(f"_sr_{kind}_")}


@pytest.mark.parametrize("mode", ["store", "input", "on_the_fly"])
def test_alike_calls_share_one_module_with_the_same_numbers(mode, tmp_path):
    model = TwoInputLoss().eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 4000, generator=g), torch.randn(2, 4000, generator=g)
    out = sr.rewrite(model, (x, y), mode=mode)
    rep = out.specrewrite_report
    calls = [n for n in out.graph.nodes if n.op == "call_module" and n.target.startswith("_sr_stft_")]
    assert len(calls) == 5, str(rep)                             # five STFT calls ...
    assert len(_holders(out, "stft")) == 2, str(rep)             # ... two distinct ones (512 / 256)
    assert len(_holders(out, "fft")) == 1 and len(_holders(out, "istft")) == 1, str(rep)
    assert "(_sr_stft_0)" in str(rep) or "(_sr_stft_1)" in str(rep), str(rep)   # one name per group
    feeds = {}
    if mode == "input":
        holders = {m for n, m in out.named_modules() if n.startswith("_sr_")}
        bases = [t for h in holders for t in h.basis_inputs().values()]
        placeholders = [n for n in out.graph.nodes if n.op == "placeholder"]
        assert len(placeholders) == 2 + len(bases), [p.name for p in placeholders]   # each basis fed once
        feeds = out.basis_inputs()
    for length in (4000, 5001):
        xi = torch.randn(2, length, dtype=torch.float64, generator=g)
        yi = torch.randn(2, length, dtype=torch.float64, generator=g)
        with torch.no_grad():
            ref = model(xi, yi)
            eager = max(rel_err(a, r) for a, r in zip(model(xi.float(), yi.float()), ref))
            got = out(xi.float(), yi.float(), *feeds.values())
        for a, r in zip(got, ref):
            assert rel_err(a, r) <= max(4 * eager, TOL["fp32_rel"] / 10), (mode, length)
    if mode != "store":
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dims = ({1: torch.export.Dim.AUTO}, {1: torch.export.Dim.AUTO})
        sess, onnx_model, _ = onnx_roundtrip(out, (x, y), dynamic_shapes=dims, path=str(tmp_path / "m.onnx"))
    big = [t for t in onnx_model.graph.initializer if int(np.prod(t.dims)) >= 4096]
    names = sorted(t.name for t in big)
    assert len({n.split(".")[0] for n in names}) <= 4, names     # bases of 2 STFTs, 1 rfft, 1 istft
    with torch.no_grad():
        ref = model(x.double(), y.double())
    got = sess.run(None, {i.name: a.numpy() for i, a in zip(sess.get_inputs(), (x, y))})
    for a, r in zip(got, ref):
        assert rel_err(torch.from_numpy(a), r) <= TOL["fp32_rel"]
