"""Writes into parts of a tensor (``out[..., 0] = re``, a 2 x 2 inverse written element by element, ``y[:, 2:5] =``)
leave the rewritten graph as concatenations of slices, not ``select_scatter`` / ``slice_scatter``, which torch.onnx
writes as ``ScatterElements`` with run-time index tensors (open-unmix's Wiener filter: 485 of them, 2.3 s of its
2.8 s in ONNX Runtime). Checked against float64 eager, in eager and in ONNX Runtime at a second length."""
from __future__ import annotations

import warnings

import torch

import specrewrite as sr
from conftest import TOL, onnx_op_types, onnx_roundtrip, rel_err

aten = torch.ops.aten
SCATTERS = (aten.select_scatter.default, aten.slice_scatter.default)


def _mul(a, b, out):                      # open-unmix's complex product on (..., 2) pairs, written in place
    out[..., 0] = a[..., 0] * b[..., 0] - a[..., 1] * b[..., 1]
    out[..., 1] = a[..., 0] * b[..., 1] + a[..., 1] * b[..., 0]
    return out


class Writes(torch.nn.Module):
    def forward(self, x):                                                  # (batch, time)
        w = torch.hann_window(256, dtype=x.dtype)
        r = torch.view_as_real(torch.stft(x, 256, 64, window=w, return_complex=True))   # (B, 129, F, 2)
        out = torch.zeros_like(r)
        out[..., 0] = r[..., 0] * 2 - r[..., 1]
        out[..., 1] = out[..., 1] + r[..., 0] * out[..., 0]               # reads what was just written
        m = r.mean(2)                                                      # (B, 129, 2)
        inv = torch.zeros(x.shape[0], 129, 2, 2, 2, dtype=x.dtype)
        inv[..., 0, 0, :] = _mul(m, m, inv[..., 0, 0, :])                  # nested writes, as a 2 x 2 inverse
        inv[..., 1, 1, :] = -m
        inv[..., 0, 1, :] = m * 0.5
        y = out.clone()
        y[:, 2:5] = 0.5 * y[:, 2:5]                                        # a slice
        y[:, -3:] = y[:, :3]                                               # negative bounds
        y[:, -1] = 1.0                                                     # a scalar into a negative index
        y[:, ::2] = y[:, ::2] * 1.5                                        # step 2: kept as it is
        y[:, :, 0] = 0.0                                                   # along the dynamic frame axis: kept
        z = torch.view_as_complex(y.contiguous())
        wave = torch.istft(z, 256, 64, window=w, length=x.shape[-1])
        return wave + inv.sum((1, 2, 3, 4)).unsqueeze(-1)


def _axis_static(n) -> bool:
    val = n.meta.get("val")
    dim = (n.args[2] if len(n.args) > 2 else 0) % val.dim()
    step = n.args[5] if n.target is aten.slice_scatter.default and len(n.args) > 5 else 1
    return isinstance(val.shape[dim], int) and step == 1


def test_writes_become_concatenations_with_the_same_numbers(tmp_path):
    model = Writes().eval()
    x = torch.randn(2, 4000, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = torch.export.export(model, (x,), strict=False).run_decompositions({})
    before = [n for n in plain.graph.nodes if n.op == "call_function" and n.target in SCATTERS]
    assert sum(_axis_static(n) for n in before) >= 10, [str(n.target) for n in before]   # the model has them
    out = sr.rewrite(model, (x,))
    rep = out.specrewrite_report
    assert rep.axis("x", "time")["dynamic"], str(rep)
    left = [n for n in out.graph.nodes if n.op == "call_function" and n.target in SCATTERS]
    assert left and not any(_axis_static(n) for n in left), [(str(n.target), n.args[2:]) for n in left]
    dims = ({1: torch.export.Dim.AUTO},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess, onnx_model, _ = onnx_roundtrip(out, (x,), dynamic_shapes=dims, path=str(tmp_path / "m.onnx"))
    scatters = [n for n in onnx_model.graph.node if n.op_type.startswith("Scatter")]
    assert len(scatters) <= len(left), sorted(onnx_op_types(onnx_model))
    for length in (4000, 5123):
        xi = torch.randn(2, length, dtype=torch.float64, generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            ref = model(xi)
            eager = rel_err(model(xi.float()), ref)
            got = out(xi.float())
        onnx_out = sess.run(None, {sess.get_inputs()[0].name: xi.float().numpy()})[0]
        assert rel_err(got, ref) <= max(4 * eager, TOL["fp32_rel"] / 10), length
        assert rel_err(torch.from_numpy(onnx_out), ref) <= max(4 * eager, TOL["fp32_rel"] / 10), length
