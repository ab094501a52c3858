"""Every torch.fft function (every n= / s= / dim= / norm= form, non-last axes, float64 / complex128) through
rewrite(): matches torch in float64, leaves no FFT op in the graph, and exports to ONNX with no DFT op."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import specrewrite as sr
from conftest import TOL, assert_close, onnx_roundtrip
from fft_table_cases import NAMED, FftModule, make_input

SPECTRAL_TARGETS = ("fft", "stft", "istft")


def _spectral_calls(gm):
    return [str(n.target) for n in gm.graph.nodes
            if n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload)
            and any(s in n.target._opname for s in SPECTRAL_TARGETS)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,fn,kind,shape", NAMED, ids=[c[0] for c in NAMED])
def test_fft_function_rewrites(name, fn, kind, shape, dtype):
    m = FftModule(fn, kind)
    x = make_input(kind, shape, dtype)
    ref = m(x.double())
    fast = sr.rewrite(m, (x,))
    if isinstance(fast, torch.fx.GraphModule):
        assert not _spectral_calls(fast)
    got = fast(x)
    assert got.dtype == dtype
    if dtype == torch.float32:
        eager_err = float((m(x).double() - ref).abs().max() / ref.abs().max())
        err = assert_close(got, ref, "fp32_rel", f"torch.fft table: {name}")
        assert err <= max(TOL["fp32_rel"], 4 * eager_err)
    else:
        assert_close(got, ref, "fp64_rel", f"torch.fft table f64: {name}")


ONNX_CASES = [c for c in NAMED if "-" in c[0] and int(c[0].rsplit("-", 1)[1]) < 24 or "shift" in c[0]
              or "freq" in c[0]]


@pytest.mark.parametrize("name,fn,kind,shape", ONNX_CASES, ids=[c[0] for c in ONNX_CASES])
def test_fft_function_onnx_has_no_dft(name, fn, kind, shape):
    m = FftModule(fn, kind)
    x = make_input(kind, shape)
    fast = sr.rewrite(m, (x,))
    sess, _, _ = onnx_roundtrip(fast, (x,))
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert_close(torch.from_numpy(np.asarray(got)), m(x.double()), "fp32_rel", f"torch.fft table onnx: {name}")
