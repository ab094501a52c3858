"""Dynamic batch and time axes (issue 10): the default request, dynamic_shapes=, the per-axis report, the
second-shape verification, and ONNX Runtime at several lengths and batch sizes against eager float64."""
from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from torch.export import Dim

import specrewrite as sr
from conftest import rel_err
from specrewrite import SpecRewriteError

ort = pytest.importorskip("onnxruntime")


# ------------------------------------------------------------------------------------------ models
class Mag(torch.nn.Module):
    def forward(self, wav):
        s = torch.stft(wav, 512, 128, window=torch.hann_window(512, dtype=wav.dtype), return_complex=True)
        return s.abs()


class Roundtrip(torch.nn.Module):
    """stft -> mask -> istft, with or without length=, in any pad mode."""

    def __init__(self, pad_mode="reflect", with_length=True):
        super().__init__()
        self.pad_mode, self.with_length = pad_mode, with_length

    def forward(self, wav):
        w = torch.hann_window(512, dtype=wav.dtype)
        z = torch.stft(wav, 512, 128, window=w, return_complex=True, pad_mode=self.pad_mode)
        z = z * torch.sigmoid(z.abs())
        return torch.istft(z, 512, 128, window=w, length=wav.shape[-1] if self.with_length else None)


class BatchOfOne(torch.nn.Module):
    """Code that only works for a batch of 1 (the batch axis reshaped away)."""

    def forward(self, wav):
        s = torch.stft(wav.reshape(wav.shape[-1]), 256, 64, window=torch.hann_window(256, dtype=wav.dtype),
                       return_complex=True)
        return s.abs().unsqueeze(0)


class PinsLength(torch.nn.Module):
    """Eager runs at any length, but the capture pins it: float() of a size must return a Python float, which
    fixes the length to the example's (ONNX would not check it: a dynamic export would be silently wrong)."""

    def forward(self, wav):
        k = int(float(wav.shape[-1]) * 1.25)   # <pins-length>
        y = torch.nn.functional.interpolate(wav[:, None], size=k, mode="linear")[:, 0]
        return torch.stft(y, 256, 64, window=torch.hann_window(256, dtype=wav.dtype), return_complex=True).abs()


class RfftN(torch.nn.Module):
    def forward(self, x):
        return torch.fft.rfft(x, n=1160).abs()


def _f64(model, *args):
    with torch.no_grad():
        return model(*[a.double() for a in args])


def _ort_session(model, args, dyn, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), dynamo=True, dynamic_shapes=dyn, external_data=False,
                          verbose=False)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------------------ default request
def test_batch_of_one_example_gives_dynamic_batch_and_time():
    model = Mag().eval()
    out = sr.rewrite(model, (torch.randn(1, 16000),))
    rep = out.specrewrite_report
    # (the reflect pad of stft(n_fft=256) needs 128 samples: a bound the model's own code has, no size check)
    assert [a["text"] for a in rep.axes] == ["input 'wav' axis 0 (batch, 1 in the example): dynamic",
                                             "input 'wav' axis 1 (time, 16000 in the example): dynamic for "
                                             "size >= 128 (the model's own code fails below)"], rep.axes
    assert not rep.axis("wav", "time")["sizes"], rep.axes
    assert not rep.shapes_specialised and "axis 0 (batch, 1 in the example): dynamic" in str(rep)
    assert rep.max_rel_err_second is not None and rep.max_rel_err_second < 1e-5, str(rep)
    for shape in ((4, 16000), (3, 12345), (1, 20011)):
        x = torch.randn(*shape)
        got = out(x)
        ref = _f64(model, x)
        eager = model(x)
        assert got.shape == ref.shape
        assert rel_err(got, ref) <= max(4 * rel_err(eager, ref), 1e-6), shape


@pytest.mark.parametrize("pad_mode,batch,length", [("reflect", 1, 16384), ("constant", 3, 16000),
                                                   ("replicate", 3, 16000), ("reflect", 2, 15999)])
@pytest.mark.parametrize("with_length", [True, False])
def test_roundtrip_onnx_three_lengths_two_batches(pad_mode, batch, length, with_length, tmp_path):
    """stft -> istft exported with dynamic batch and time runs in ONNX Runtime at shorter, equal and longer
    (odd) lengths and two batch sizes; istft's output length is right at every length."""
    model = Roundtrip(pad_mode, with_length).eval()
    x = torch.randn(batch, length)
    out = sr.rewrite(model, (x,))
    assert all(a["dynamic"] for a in out.specrewrite_report.axes), out.specrewrite_report.axes
    sess = _ort_session(out, (x,), ({0: Dim("batch"), 1: Dim("time")},), tmp_path / "rt.onnx")
    for b in (1, batch + 1):
        for n in (length // 2 + 1, length, length + length // 3 + 1):
            xi = torch.randn(b, n)
            (got,) = sess.run(None, {sess.get_inputs()[0].name: xi.numpy()})
            ref = _f64(model, xi)
            assert got.shape == tuple(ref.shape), (b, n, got.shape, ref.shape)
            err = rel_err(torch.from_numpy(got), ref)
            assert err <= max(4 * rel_err(model(xi), ref), 2e-6), (b, n, err)


@pytest.mark.parametrize("strategy", ["auto", "dense"])
def test_stft_istft_exports_under_a_dim_range(strategy):
    """A rewritten stft -> istft under torch.export with a batch Dim and a time range: no guard on the frame
    count. Before, a 4-D view of the spectrum (B, 2, F, T) gave `min(F, 257 F) == F` (both strategies) and the
    factored inverse's matmuls a divisibility class of F, which torch.export cannot prove over a range."""
    model = Roundtrip("reflect", True).eval()
    out = sr.rewrite(model, (torch.randn(2, 16384),), strategy=strategy)
    ep = torch.export.export(out, (torch.randn(2, 16384),),
                             dynamic_shapes=({0: Dim("batch"), 1: Dim("time", min=1024, max=1 << 20)},))
    for shape in ((1, 1024), (3, 20011)):
        x = torch.randn(*shape)
        with torch.no_grad():
            ref, own = _f64(model, x), model(x)
        assert rel_err(ep.module()(x), ref) <= max(4 * rel_err(own, ref), 2e-6), shape


@pytest.mark.parametrize("strategy", ["factored", "dense"])
def test_spectrogram_exports_under_a_dim_range(strategy):
    """No divisibility guard (such as 32 % (32*T) != 0) in either strategy under torch.export with a range."""
    sp = sr.Spectrogram(n_fft=512, hop_length=128, strategy=strategy)
    ep = torch.export.export(sp, (torch.randn(2, 16000),),
                             dynamic_shapes=({0: Dim("batch"), 1: Dim("time", min=1024, max=1 << 20)},))
    for shape in ((1, 1024), (3, 20011)):
        x = torch.randn(*shape)
        ref = torch.stft(x.double(), 512, 128, window=torch.hann_window(512, dtype=torch.float64),
                         return_complex=True).abs() ** 2
        assert rel_err(ep.module()(x), ref) < 1e-5


# ------------------------------------------------------------------------------------------ axes that cannot stay
def test_batch_of_one_model_keeps_batch_fixed_with_the_reason():
    model = BatchOfOne().eval()
    x = torch.randn(1, 8000)
    out = sr.rewrite(model, (x,))
    rep = out.specrewrite_report
    assert not rep.axis("wav", "batch")["dynamic"] and rep.axis("wav", "batch")["why"], str(rep)
    assert rep.axis("wav", "time")["dynamic"], str(rep)
    y = torch.randn(1, 9001)
    assert rel_err(out(y), _f64(model, y)) < 1e-5


class LoopsOverBatch(torch.nn.Module):
    """A loop over the batch in Python (open-unmix's Wiener filter: ``for sample in range(nb_samples)``)."""

    def forward(self, wav):
        s = torch.stft(wav, 256, 64, window=torch.hann_window(256, dtype=wav.dtype), return_complex=True).abs()
        return torch.stack([s[b] / (1.0 + b) for b in range(wav.shape[0])])   # <loops-over-batch>


def test_batch_fixed_by_a_loop_names_the_line_and_time_stays_dynamic():
    """Captured at batch 2 for an example of 1, the loop fixes the batch: the capture stops at that line
    (``_torch_private.stop_when_fixed``) instead of tracing the rest, and the report names it; the graph is
    captured again at batch 1 with time dynamic."""
    model = LoopsOverBatch().eval()
    out = sr.rewrite(model, (torch.randn(1, 8000),))
    rep = out.specrewrite_report
    b = rep.axis("wav", "batch")
    assert not b["dynamic"] and "test_dynamic_shapes.py" in b["why"] and "<loops-over-batch>" in b["why"], b
    assert rep.axis("wav", "time")["dynamic"], str(rep)
    for n in (4000, 9001):
        y = torch.randn(1, n)
        assert rel_err(out(y), _f64(model, y)) < 1e-5


class FftAlongBatch(torch.nn.Module):
    """An FFT over the batch axis padded to 6 points: the capture bounds the batch to 2 <= B <= 5 (a fuzz case:
    ``torch.fft.fft(z, n=430, dim=-3)``)."""

    def forward(self, x):
        z = torch.stft(x, 64, 16, window=torch.hann_window(64), return_complex=True)
        return torch.fft.fft(z, n=6, dim=0).abs()   # <fft-along-batch>


def test_bounded_batch_holds_the_example_of_one_and_names_the_bound():
    """Captured at 2 for an example of 1, the batch's range starts at 1 (the example itself was refused with
    'holds sizes 2 <= size <= 429 only'), and a size past the bound is an error naming the model's line."""
    model = FftAlongBatch().eval()
    out = sr.rewrite(model, (torch.randn(1, 1000),))
    b = out.specrewrite_report.axis("x", "batch")
    assert b["dynamic"] and b["range"].startswith("1 <= batch <= 5"), b
    for n in (1, 3, 5):
        y = torch.randn(n, 1200)
        assert rel_err(out(y), _f64(model, y)) < 1e-5
    with pytest.raises(SpecRewriteError) as info:
        out(torch.randn(7, 1200))
    assert "1 <= size <= 5" in str(info.value) and "<fft-along-batch>" in str(info.value), str(info.value)


def test_pinned_length_is_reported_fixed_not_dynamic():
    """The model's Python bakes the example's frame count in: the time axis must come out fixed (an honest
    static graph), never 'dynamic' with a graph that is wrong at other lengths."""
    model = PinsLength().eval()
    x = torch.randn(1, 4000)
    out = sr.rewrite(model, (x,))
    t = out.specrewrite_report.axis("wav", "time")
    assert not t["dynamic"] and "fixes it to the example's size" in t["why"], t
    assert "Eq(wav.shape[1], 4000)" in t["why"], t          # the guard, in the input's own terms
    assert "test_dynamic_shapes.py" in t["why"], t          # the line that pinned it
    ref = _f64(model, x)
    assert rel_err(out(x), ref) <= max(4 * rel_err(model(x), ref), 1e-6)


def test_explicit_request_that_cannot_hold_is_an_error_under_strict():
    model = PinsLength().eval()
    x = torch.randn(1, 4000)
    with pytest.raises(SpecRewriteError) as e:
        sr.rewrite(model, (x,), dynamic_shapes={"wav": {1: Dim("time")}})
    assert "input 'wav' axis 1" in str(e.value)
    out = sr.rewrite(model, (x,), dynamic_shapes={"wav": {1: Dim("time")}}, strict=False)
    assert not out.specrewrite_report.axis("wav", "time")["dynamic"], str(out.specrewrite_report)


def test_explicit_dynamic_shapes_and_static():
    model = Mag().eval()
    x = torch.randn(2, 8000)
    out = sr.rewrite(model, (x,), dynamic_shapes={"wav": {1: Dim("time")}})
    rep = out.specrewrite_report
    assert rep.axis("wav", "batch")["why"] == "not requested" and rep.axis("wav", "time")["dynamic"], str(rep)
    static = sr.rewrite(model, (x,), dynamic_shapes=False)
    assert static.specrewrite_report.shapes_specialised
    with pytest.raises(SpecRewriteError, match="not inputs of forward"):
        sr.rewrite(model, (x,), dynamic_shapes={"audio": {1: Dim("time")}})
    with pytest.raises(SpecRewriteError, match="entries for 1 example"):
        sr.rewrite(model, (x,), dynamic_shapes=({1: Dim("time")}, None))


class IntOfSizes(torch.nn.Module):
    """Sizes computed in Python and passed through int(), as real models do: a float scale (resampling),
    HDemucs' ``le = int(math.ceil(T / hl))`` with its frame assert, torchfcpe's ``int(T // hop)``."""

    def forward(self, wav):
        k = int(wav.shape[-1] * 0.75)
        y = wav[:, :k]
        hl = 64
        le = int(math.ceil(y.shape[-1] / hl))
        pad = hl // 2 * 3
        y = torch.nn.functional.pad(y[:, None], (pad, pad + le * hl - y.shape[-1]), mode="reflect")[:, 0]
        z = torch.stft(y, 256, hl, window=torch.hann_window(256, dtype=wav.dtype), return_complex=True)[..., :-1, :]
        assert z.shape[-1] == le + 4, (z.shape, le)
        n = int(wav.shape[-1] // 80)
        return z[..., 2:2 + le].abs()[..., :n]


def test_int_of_sizes_keeps_time_dynamic(tmp_path):
    model = IntOfSizes().eval()
    out = sr.rewrite(model, (torch.randn(1, 4000),))
    rep = out.specrewrite_report
    assert rep.axis("wav", "time")["dynamic"] and rep.axis("wav", "batch")["dynamic"], str(rep)
    sess = _ort_session(out, (torch.randn(2, 4000),), ({0: Dim("batch"), 1: Dim("time", min=200, max=1 << 20)},),
                        tmp_path / "m.onnx")
    for batch, length in ((1, 4000), (2, 3001), (3, 6403)):
        x = torch.randn(batch, length)
        ref = _f64(model, x)
        own = rel_err(model(x), ref)
        assert rel_err(out(x), ref) <= max(4 * own, 1e-6)
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        assert rel_err(got, ref) <= max(4 * own, 1e-6), (batch, length)


# ------------------------------------------------------------------------------------------ fft along time
def test_rfft_with_n_pads_or_trims_on_one_graph():
    model = RfftN()
    out = sr.rewrite(model, (torch.randn(1147),))
    for n in (1000, 1147, 1159):
        x = torch.randn(n)
        assert rel_err(out(x), _f64(model, x)) < 1e-5
    axis = out.specrewrite_report.axis("x", "time")
    assert not axis["dynamic"] or axis["range"] == "2 <= time <= 1159", axis


def test_fft_along_a_dynamic_axis_stays_dynamic():
    """An FFT whose length follows the clip (FFT convolution): one graph for every length up to the plan's limit
    (tests/test_fft_dynamic.py covers the transform itself)."""
    class Conv(torch.nn.Module):
        def forward(self, x):
            n = x.shape[-1]
            return torch.fft.irfft(torch.fft.rfft(x, n=2 * n) * torch.fft.rfft(x.flip(-1), n=2 * n), n=2 * n)

    model = Conv()
    x = torch.randn(1, 300)
    out = sr.rewrite(model, (x,))
    rep = out.specrewrite_report
    assert rep.axis("x", "batch")["dynamic"] and rep.axis("x", "time")["dynamic"], str(rep)
    assert any("runs along a dynamic axis" in n for n in rep.notes), str(rep)
    for shape in [(3, 300), (2, 217), (1, 555)]:
        y = torch.randn(*shape)
        ref = _f64(model, y)
        assert rel_err(out(y), ref) <= max(4 * rel_err(model(y), ref), 1e-6), shape


# ------------------------------------------------------------------------------------------ verification
def test_verification_judges_against_float64_next_to_eager():
    importlib = __import__("importlib")
    verify = importlib.import_module("specrewrite.rewrite.verify")
    model = Mag().eval()
    x = torch.randn(1, 4000)
    ref = model(x)
    ok, err, _ = verify.judge(model, (x,), ref * (1 + 1e-7), ref)
    assert ok and err < 1e-6
    ok, err, detail = verify.judge(model, (x,), ref * 1.01, ref)
    assert not ok and err > 5e-3 and "float64" in detail


class TwoInputLoss(torch.nn.Module):
    """Two inputs whose lengths the code ties together (a spectral loss): they move together."""

    def forward(self, x, y):
        w = torch.hann_window(256, dtype=x.dtype)
        sx = torch.stft(x.flatten(0, 1), 256, 64, window=w, return_complex=True).abs()
        sy = torch.stft(y.flatten(0, 1), 256, 64, window=w, return_complex=True).abs()
        return (sx - sy).abs().mean()


def test_inputs_tied_by_the_code_stay_dynamic_together():
    model = TwoInputLoss()
    x, y = torch.randn(1, 1, 4000), torch.randn(1, 1, 4000)
    out = sr.rewrite(model, (x, y))
    rep = out.specrewrite_report
    assert all(a["dynamic"] for a in rep.axes), str(rep)
    x2, y2 = torch.randn(3, 1, 5001), torch.randn(3, 1, 5001)
    ref = _f64(model, x2, y2)
    assert rel_err(out(x2, y2), ref) <= max(4 * rel_err(model(x2, y2), ref), 1e-6)


def test_strict_verification_failure_is_an_error(monkeypatch):
    """A result that fails verification (here: the STFT module made 1 % wrong on purpose) is a SpecRewriteError
    under strict=True and a note under strict=False."""
    from specrewrite._torch.stft import RealSTFT

    planar = RealSTFT.planar
    monkeypatch.setattr(RealSTFT, "planar", lambda self, *a, **k: planar(self, *a, **k) * 1.01)
    model = Mag().eval()
    x = torch.randn(1, 4000)
    with pytest.raises(SpecRewriteError, match="differs from eager on the example inputs"):
        sr.rewrite(model, (x,))
    out = sr.rewrite(model, (x,), strict=False)
    rep = out.specrewrite_report
    assert rep.max_rel_err > 5e-3 and any("differs from eager" in n for n in rep.notes), str(rep)


def test_strict_verification_names_the_worst_output(monkeypatch):
    from specrewrite._torch.stft import RealSTFT

    class TwoOut(torch.nn.Module):
        def forward(self, wav):
            s = torch.stft(wav, 256, 64, window=torch.hann_window(256, dtype=wav.dtype), return_complex=True)
            return wav * 2, s.abs()

    planar = RealSTFT.planar
    monkeypatch.setattr(RealSTFT, "planar", lambda self, *a, **k: planar(self, *a, **k) * 1.01)
    with pytest.raises(SpecRewriteError, match=r"in output 1 of 2 \(shape \(1, 129, 63\)\)"):
        sr.rewrite(TwoOut().eval(), (torch.randn(1, 4000),))


def test_strict_verification_names_the_first_diverging_op():
    """The error points at the op where the rewritten graph first parts from eager (intermediate values compared
    in graph order), with the user's line: here the magnitude, made 1 % wrong on purpose after a correct STFT."""
    import importlib

    rules = importlib.import_module("specrewrite.rewrite.rules")
    aten_abs = torch.ops.aten.abs
    right = rules.RULES[aten_abs]
    rules.RULES.replace(aten_abs, lambda ctx, node, args, kwargs: ctx.call(torch.mul, right(ctx, node, args, kwargs),
                                                                           1.01))
    try:
        _first_diverging_op_case()
    finally:
        rules.RULES.replace(aten_abs, right)


class MagLog(torch.nn.Module):
    def forward(self, wav):
        s = torch.stft(wav, 256, 64, window=torch.hann_window(256, dtype=wav.dtype), return_complex=True)
        m = s.abs()  # the line the error must name
        return torch.log1p(m)


def _first_diverging_op_case():
    with pytest.raises(SpecRewriteError) as info:
        sr.rewrite(MagLog().eval(), (torch.randn(1, 4000),))
    msg = str(info.value)
    assert "the first op whose value differs: abs" in msg, msg
    assert "test_dynamic_shapes.py" in msg and "m = s.abs()" in msg, msg


def _wrong_beyond_63_frames(t):
    """a lowering that is right at the example (63 frames) only, as a size baked into it would be"""
    return t * (1.0 if t.shape[-1] == 63 else 1.01)


def test_strict_second_shape_failure_names_the_first_diverging_op():
    """A result right at the example but wrong at the second length: the error names the op and the user's line
    there too (the intermediate values compared at the second shape), not only "a size was baked in"."""
    import importlib

    rules = importlib.import_module("specrewrite.rewrite.rules")
    aten_abs = torch.ops.aten.abs
    right = rules.RULES[aten_abs]
    rules.RULES.replace(aten_abs, lambda ctx, node, args, kwargs: ctx.call(_wrong_beyond_63_frames,
                                                                           right(ctx, node, args, kwargs)))
    try:
        with pytest.raises(SpecRewriteError) as info:
            sr.rewrite(MagLog().eval(), (torch.randn(1, 4000),))
    finally:
        rules.RULES.replace(aten_abs, right)
    msg = str(info.value)
    assert "matches eager at the example's shape but differs" in msg, msg
    assert "the first op whose value differs: abs" in msg, msg
    assert "test_dynamic_shapes.py" in msg and "m = s.abs()" in msg, msg


# ------------------------------------------------------------------------------------------ recurrent layers
class RecurrentMask(torch.nn.Module):
    """stft -> magnitude -> LSTM / GRU (any layout) -> mask -> istft, the shape of many enhancers."""

    def __init__(self, kind="lstm", batch_first=True, bidirectional=True, proj_size=0, packed=False):
        super().__init__()
        bins, hidden = 129, 24
        kw = dict(num_layers=2, batch_first=batch_first, bidirectional=bidirectional)
        if kind == "lstm":
            self.rnn = torch.nn.LSTM(bins, hidden, proj_size=proj_size, **kw)
            out = proj_size or hidden
        else:
            self.rnn = torch.nn.GRU(bins, hidden, **kw)
            out = hidden
        self.head = torch.nn.Linear(out * (2 if bidirectional else 1), bins)
        self.batch_first, self.packed = batch_first, packed

    def forward(self, wav):
        w = torch.hann_window(256, dtype=wav.dtype)
        z = torch.stft(wav, 256, 64, window=w, return_complex=True)
        feats = z.abs().transpose(1, 2)                               # (batch, frames, bins)
        seq = feats if self.batch_first else feats.transpose(0, 1)
        if self.packed:
            lengths = torch.full((wav.shape[0],), seq.shape[1], dtype=torch.int64)
            seq = torch.nn.utils.rnn.pack_padded_sequence(seq, lengths, batch_first=True)
            h, _ = self.rnn(seq)
            h, _ = torch.nn.utils.rnn.pad_packed_sequence(h, batch_first=True)
        else:
            h, _ = self.rnn(seq)
        h = h if self.batch_first else h.transpose(0, 1)
        mask = torch.sigmoid(self.head(h)).transpose(1, 2)
        return torch.istft(z * mask, 256, 64, window=w, length=wav.shape[-1])


@pytest.mark.parametrize("kind,batch_first,bidirectional,proj_size", [
    ("lstm", True, True, 0), ("lstm", False, False, 8), ("gru", True, True, 0), ("gru", False, False, 0)])
def test_recurrent_layers_stay_whole_and_dynamic(kind, batch_first, bidirectional, proj_size):
    """nn.LSTM / nn.GRU reach the rewritten graph as one aten.lstm / aten.gru node each (not one cell per frame),
    and the model stays right at other batch sizes and lengths."""
    torch.manual_seed(0)
    model = RecurrentMask(kind, batch_first, bidirectional, proj_size).eval()
    x = torch.randn(1, 4000)
    out = sr.rewrite(model, (x,))
    assert all(a["dynamic"] for a in out.specrewrite_report.axes), out.specrewrite_report.axes
    from specrewrite.rewrite import _rnn_onnx

    targets = [str(n.target) for n in out.graph.nodes if n.op == "call_function"]
    helper = getattr(_rnn_onnx, kind)     # the aten op, or ONNX's own LSTM / GRU inside torch.onnx.export
    assert [n.target for n in out.graph.nodes].count(helper) == 1, sorted(set(targets))
    assert not any("specrewrite." in t or "cell" in t for t in targets), sorted(set(targets))
    m64 = copy.deepcopy(model).double()
    for shape in ((1, 4000), (3, 5001)):
        xi = torch.randn(*shape)
        ref = _f64(m64, xi)
        assert rel_err(out(xi), ref) <= max(4 * rel_err(model(xi), ref), 1e-6), shape


def test_packed_sequences_of_full_clips_stay_dynamic():
    """Packed sequences are captured in a padded form (tests/test_packed.py for clips of other lengths)."""
    torch.manual_seed(0)
    model = RecurrentMask("lstm", packed=True).eval()
    out = sr.rewrite(model, (torch.randn(2, 4000),))
    assert all(a["dynamic"] for a in out.specrewrite_report.axes if a["role"] in ("batch", "time"))
    for shape in ((2, 4000), (3, 5001)):
        x = torch.randn(*shape)
        ref = _f64(copy.deepcopy(model).double(), x)
        assert rel_err(out(x), ref) <= max(4 * rel_err(model(x), ref), 1e-6), shape


class ChannelsLast(torch.nn.Module):
    """speechbrain's multi-microphone layout: (batch, time, mics)."""

    def forward(self, x):
        z = torch.stft(x.transpose(1, 2).reshape(-1, x.shape[1]), 256, 128,
                       window=torch.hann_window(256, dtype=x.dtype), return_complex=True)
        return z.abs().reshape(x.shape[0], x.shape[2], 129, -1)


def test_channels_last_input_keeps_its_time_axis_dynamic(tmp_path):
    model = ChannelsLast().eval()
    out = sr.rewrite(model, (torch.randn(1, 4000, 4),))
    rep = out.specrewrite_report
    time_ax = rep.axis("x", "time")
    assert time_ax["axis"] == 1 and time_ax["dynamic"], str(rep)   # not the 4 microphones
    assert rep.axis("x", "batch")["dynamic"], str(rep)
    sess = _ort_session(out, (torch.randn(2, 4000, 4),), ({0: Dim("batch"), 1: Dim("time", min=300, max=1 << 20)},),
                        tmp_path / "m.onnx")
    for batch, length in ((1, 4000), (2, 6001), (3, 2001)):
        x = torch.randn(batch, length, 4)
        ref = _f64(model, x)
        own = rel_err(model(x), ref)
        assert rel_err(out(x), ref) <= max(4 * own, 1e-6), (batch, length)
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        assert rel_err(got, ref) <= max(4 * own, 1e-6), (batch, length)


class LongerInverse(torch.nn.Module):
    """istft past the signal's end (torchaudio's TimeStretch -> InverseSpectrogram): the tail is divided by a
    window envelope near zero, so float32 eager itself is far from float64 there."""

    def forward(self, x):
        w = torch.hann_window(512, dtype=x.dtype)
        s = torch.stft(x, 512, 128, window=w, return_complex=True)
        return torch.istft(s, 512, 128, window=w, length=x.shape[-1] + 256)


def test_batch_of_one_is_judged_against_float64_when_ill_conditioned():
    model = LongerInverse().eval()
    out = sr.rewrite(model, (torch.randn(1, 4000, generator=torch.Generator().manual_seed(3)),))
    rep = out.specrewrite_report
    assert rep.axis("x", "batch")["dynamic"], str(rep)   # not "another path at batch 1"
    for batch, length in ((1, 4000), (3, 5001)):
        x = torch.randn(batch, length, generator=torch.Generator().manual_seed(length))
        ref = _f64(model, x)
        own = rel_err(model(x), ref)
        assert rel_err(out(x), ref) <= max(4 * own, 1e-6), (batch, length, own)
