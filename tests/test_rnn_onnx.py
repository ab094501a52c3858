"""Recurrent layers over frames keep the time axis dynamic in ONNX (issue 10).

torch.export runs aten.lstm / aten.gru one cell per step, so a model with an LSTM over spectrogram frames
exported with a dynamic time axis silently got a file for the example's length only. In a rewritten model the
recurrent node emits ONNX's own LSTM / GRU / RNN inside torch.onnx.export (and stays the aten op everywhere else).
Each case runs in ONNX Runtime at three lengths (shorter, equal, longer; odd too) and two batch sizes against eager
float64, next to eager float32's own error."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.export import Dim

import specrewrite as sr
from conftest import onnx_op_types, onnx_roundtrip, rel_err
from specrewrite.rewrite import _rnn_onnx

ort = pytest.importorskip("onnxruntime")


class Enhancer(torch.nn.Module):
    """stft -> magnitude -> RNN over frames -> mask -> istft (the shape of many enhancement models)."""

    def __init__(self, kind: str, **kw):
        super().__init__()
        self.rnn = getattr(torch.nn, kind)(129, 32, **kw)
        d = 2 if kw.get("bidirectional") else 1
        self.out = torch.nn.Linear((kw.get("proj_size") or 32) * d, 129)
        self.batch_first = kw.get("batch_first", False)

    def forward(self, wav):
        w = torch.hann_window(256, dtype=wav.dtype)
        z = torch.stft(wav, 256, 64, window=w, return_complex=True)
        feats = z.abs().transpose(1, 2)                       # (batch, frames, bins)
        if not self.batch_first:
            feats = feats.transpose(0, 1)                     # (frames, batch, bins)
        y, _ = self.rnn(feats)
        if not self.batch_first:
            y = y.transpose(0, 1)
        mask = torch.sigmoid(self.out(y)).transpose(1, 2)
        return torch.istft(z * mask, 256, 64, window=w, length=wav.shape[-1])


CASES = [
    ("LSTM", dict(batch_first=True)),
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(batch_first=True, bias=False, num_layers=3)),
    ("LSTM", dict(batch_first=True, proj_size=8)),                               # LSTMP (ASR encoders)
    ("LSTM", dict(num_layers=2, bidirectional=True, proj_size=12)),
    ("GRU", dict(batch_first=True, bidirectional=True)),
    ("GRU", dict(num_layers=2)),
    ("RNN", dict(nonlinearity="relu", batch_first=True, bidirectional=True)),   # DeepSpeech's recurrent layers
    ("RNN", dict(num_layers=2)),                                                 # tanh
]


def _model(kind, kw):
    torch.manual_seed(0)
    return Enhancer(kind, **kw).eval()


@pytest.mark.parametrize("kind,kw", CASES, ids=[f"{k}-{'-'.join(f'{a}{b}' for a, b in kw.items())}"
                                                  for k, kw in CASES])
def test_rewritten_rnn_model_stays_dynamic_in_onnx(kind, kw):
    model = _model(kind, kw)
    x = torch.randn(1, 6000)
    out = sr.rewrite(model, (x,))
    time_axis = [a for a in out.specrewrite_report.axes if a["role"] == "time"][0]
    assert time_axis["dynamic"], time_axis["text"]
    # exported from a batch of 2: torch.export fixes an axis whose example size is 1
    sess, onx, _ = onnx_roundtrip(out, (torch.randn(2, 6000),), dynamic_shapes=({0: Dim("batch"), 1: Dim("time", min=2,
                                                                                       max=1 << 22)},))
    assert kind in onnx_op_types(onx)                         # ONNX's own recurrent op, not an unrolled loop
    m64 = copy.deepcopy(model).double()
    for batch, length in ((1, 6000), (2, 4001), (2, 9999)):
        xx = torch.randn(batch, length)
        with torch.no_grad():
            ref64 = m64(xx.double())
            eager32 = model(xx)
        got = sess.run(None, {sess.get_inputs()[0].name: xx.numpy()})[0]
        err, own = rel_err(got, ref64), rel_err(eager32, ref64)
        assert err <= 4 * own + 1e-6, f"{kind} {kw} batch {batch} length {length}: {err:.2e} (eager {own:.2e})"


class Direct(torch.nn.Module):
    """The helper called as a rewritten graph calls it, with given initial states (not zeros)."""

    def __init__(self, kind, **kw):
        super().__init__()
        self.kind, self.rnn = kind, getattr(torch.nn, kind)(8, 16, **kw)

    def forward(self, x):
        r = self.rnn
        d = 2 if r.bidirectional else 1
        batch = x.shape[0] if r.batch_first else x.shape[1]
        h0 = torch.linspace(-0.5, 0.5, 16, dtype=x.dtype).expand(r.num_layers * d, batch, 16)
        args = (r._flat_weights, r.bias, r.num_layers, 0.0, False, r.bidirectional, r.batch_first)
        if self.kind == "LSTM":
            return _rnn_onnx.lstm(x, [h0, 2 * h0], *args)
        return _rnn_onnx.gru(x, h0, *args)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("kw", [dict(batch_first=True), dict(num_layers=2, bidirectional=True)],
                         ids=["batch_first", "2layers-bidirectional"])
def test_helper_matches_torch_module_and_exports_every_output(kind, kw):
    torch.manual_seed(1)
    m = Direct(kind, **kw).eval()
    bf = kw.get("batch_first", False)
    x = torch.randn(3, 21, 8) if bf else torch.randn(21, 3, 8)
    with torch.no_grad():                                     # eager: exactly the aten op (nn.LSTM / nn.GRU)
        got = m(x)
        h0 = torch.linspace(-0.5, 0.5, 16).expand(m.rnn.num_layers * (2 if m.rnn.bidirectional else 1), 3, 16)
        want = m.rnn(x, (h0.contiguous(), 2 * h0.contiguous()) if kind == "LSTM" else h0.contiguous())
    flat_want = [want[0], *(want[1] if kind == "LSTM" else (want[1],))]
    for g, w in zip(got, flat_want):
        assert torch.equal(g, w)
    seq = 1 if bf else 0
    dyn = {0: Dim("a"), 1: Dim("b")}
    sess, _, _ = onnx_roundtrip(m, (x,), dynamic_shapes=(dyn,))
    for steps in (1, 21, 40):
        shape = [5, 5, 8]
        shape[seq] = steps
        xx = torch.randn(*shape)
        with torch.no_grad():
            ref = m.double()(xx.double())
            m.float()
        outs = sess.run(None, {sess.get_inputs()[0].name: xx.numpy()})
        assert len(outs) == len(ref)
        for o, r in zip(outs, ref):
            assert rel_err(o, r) <= 1e-6


def test_projection_is_told_apart_from_a_plain_layer():
    torch.manual_seed(2)
    lstm = torch.nn.LSTM(8, 16, proj_size=4, batch_first=True).eval()
    assert not _rnn_onnx._plain(lstm._flat_weights, True, 1, False, 4, False, 0.0)
    assert _rnn_onnx._projection(lstm._flat_weights, True, 1, False, False, 0.0)
    plain = torch.nn.LSTM(8, 16, batch_first=True)
    assert _rnn_onnx._plain(plain._flat_weights, True, 1, False, 4, False, 0.0)
    assert not _rnn_onnx._projection(plain._flat_weights, True, 1, False, False, 0.0)


class FromZeros(torch.nn.Module):
    """A projected LSTM called as a rewritten graph calls it when nn.LSTM got no state (zeros)."""

    def __init__(self, **kw):
        super().__init__()
        self.rnn = torch.nn.LSTM(8, 16, proj_size=6, **kw)

    def forward(self, x):
        r = self.rnn
        d = 2 if r.bidirectional else 1
        batch = x.shape[0] if r.batch_first else x.shape[1]
        h0 = x.new_zeros(r.num_layers * d, batch, 6)
        c0 = x.new_zeros(r.num_layers * d, batch, 16)
        return _rnn_onnx.lstm(x, [h0, c0], r._flat_weights, r.bias, r.num_layers, 0.0, False, r.bidirectional,
                              r.batch_first, zero_state=True)


@pytest.mark.parametrize("kw", [dict(batch_first=True), dict(num_layers=2, bidirectional=True),
                                dict(batch_first=True, bias=False)], ids=["batch_first", "2layers-bi", "no-bias"])
def test_projected_lstm_from_zeros_is_onnx_lstm_with_every_output(kw):
    """ONNX's LSTM with R = W_hh W_hr on the unprojected state, outputs and final h projected back: the output
    sequence, h_n and c_n match float64 eager at 1 / 21 / 40 steps and batch 5 from one file."""
    torch.manual_seed(3)
    m = FromZeros(**kw).eval()
    bf = kw.get("batch_first", False)
    x = torch.randn(3, 21, 8) if bf else torch.randn(21, 3, 8)
    with torch.no_grad():
        got, want = m(x), m.rnn(x)
    for g, w in zip(got, [want[0], *want[1]]):
        assert torch.equal(g, w)                              # eager: the aten op itself
    sess, onx, _ = onnx_roundtrip(m, (x,), dynamic_shapes=({0: Dim("a"), 1: Dim("b")},))
    assert "LSTM" in onnx_op_types(onx)
    seq = 1 if bf else 0
    m64 = copy.deepcopy(m).double()
    for steps in (1, 21, 40):
        shape = [5, 5, 8]
        shape[seq] = steps
        xx = torch.randn(*shape)
        with torch.no_grad():
            ref, own = m64(xx.double()), m(xx)
        outs = sess.run(None, {sess.get_inputs()[0].name: xx.numpy()})
        assert len(outs) == 3
        for o, r, e in zip(outs, ref, own):
            assert rel_err(o, r) <= 4 * rel_err(e, r) + 1e-6, steps


def test_outside_onnx_export_it_is_the_aten_op():
    """jit.trace (the Core ML route) records aten::lstm, not ONNX nodes."""
    m = Direct("LSTM", batch_first=True).eval()
    x = torch.randn(2, 7, 8)
    traced = torch.jit.trace(m, (x,), check_trace=False)
    kinds = {n.kind() for n in traced.inlined_graph.nodes()}
    assert "aten::lstm" in kinds and not any(k.startswith("onnx::") for k in kinds)
    np.testing.assert_array_equal(traced(x)[0].detach().numpy(), m(x)[0].detach().numpy())
