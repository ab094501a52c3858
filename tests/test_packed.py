"""Packed sequences into recurrent layers (issue 8: a class of real speech models; speechbrain's MetricGAN,
NeMo's mask estimators, ASR encoders): ``pack_padded_sequence`` → LSTM / GRU / RNN → ``pad_packed_sequence``.

Before: the capture fell back to tracing and every exporter failed on ``aten.lstm.data``. Now the packed form is
captured padded, with a dynamic length; checked here in eager and in ONNX Runtime at clips and lengths other than
the example's, against float64 eager next to eager float32's own error; the one thing the padded form cannot give
(fewer output frames than the input has) is a run-time error, and a nan in the file."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.export import Dim
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import specrewrite as sr
from conftest import onnx_op_types, onnx_roundtrip, rel_err
from specrewrite.errors import SpecRewriteError

HOP = 64


class PackedTagger(nn.Module):
    """log power spectrogram of padded clips → packed RNN over frames → padded output (and the final state)."""

    def __init__(self, kind="LSTM", batch_first=True, enforce_sorted=False, final=False, **kw):
        super().__init__()
        self.rnn = getattr(nn, kind)(129, 16, **kw)
        self.bf, self.sorted, self.final = batch_first, enforce_sorted, final
        self.register_buffer("win", torch.hann_window(256))

    def forward(self, wav, lengths):
        s = torch.stft(wav, 256, HOP, window=self.win, return_complex=True).abs().pow(2).add(1e-6).log()
        s = s.transpose(1, 2) if self.bf else s.permute(2, 0, 1)
        packed = pack_padded_sequence(s, lengths // HOP + 1, batch_first=self.bf, enforce_sorted=self.sorted)
        out, h = self.rnn(packed)
        y, _ = pad_packed_sequence(out, batch_first=self.bf)
        if self.final:
            return y, (h[0] if isinstance(h, tuple) else h)
        return y


CASES = [
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("GRU", dict(batch_first=False, final=True)),
    ("RNN", dict(nonlinearity="relu", bidirectional=True, final=True)),
    ("LSTM", dict(final=True, enforce_sorted=True)),
]


def _model(kind, kw):
    torch.manual_seed(0)
    return PackedTagger(kind, **kw).eval()


def _inputs(lengths, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    return torch.randn(len(lengths), int(lengths.max()), generator=g), lengths


def _check(got, model, m64, wav, lengths, what):
    with torch.no_grad():
        ref = m64(wav.double(), lengths)
        own = model(wav, lengths)
    ref, own = (ref if isinstance(ref, tuple) else (ref,)), (own if isinstance(own, tuple) else (own,))
    got = got if isinstance(got, (tuple, list)) else (got,)
    assert len(got) == len(ref)
    for g, r, o in zip(got, ref, own):
        err, eager = rel_err(g, r), rel_err(o, r)
        assert err <= 4 * eager + 1e-6, f"{what}: {err:.2e} (eager float32 {eager:.2e})"


@pytest.mark.parametrize("kind,kw", CASES, ids=[f"{k}-{'-'.join(f'{a}{b}' for a, b in kw.items())}"
                                                  for k, kw in CASES])
def test_packed_rnn_is_dynamic_in_eager_and_onnx(kind, kw):
    model = _model(kind, kw)
    m64 = copy.deepcopy(model).double()
    sort = kw.get("enforce_sorted", False)
    example = [8000, 7000, 5000] if sort else [5000, 8000, 7000]
    out = sr.rewrite(model, _inputs(example, 0), strict=True)
    assert not [a for a in out.specrewrite_report.axes if a["role"] == "time" and not a["dynamic"]]
    others = ([9999, 9000, 1500, 64], [3001]) if sort else ([1500, 9999, 64, 9000], [3001])
    for i, lengths in enumerate(others):
        wav, ln = _inputs(lengths, i + 1)
        with torch.no_grad():
            _check(out(wav, ln), model, m64, wav, ln, f"rewritten eager {lengths}")
    sess, onx, _ = onnx_roundtrip(out, _inputs(example, 0), optimize=False,
                                  dynamic_shapes=({0: Dim("batch"), 1: Dim("time", min=512, max=1 << 20)},
                                                  {0: Dim("batch")}))
    assert kind.upper() in onnx_op_types(onx)   # ONNX's own recurrent op, on the padded sequence
    for i, lengths in enumerate(others):
        wav, ln = _inputs(lengths, i + 1)
        got = sess.run(None, {sess.get_inputs()[0].name: wav.numpy(), sess.get_inputs()[1].name: ln.numpy()})
        _check(got, model, m64, wav, ln, f"onnxruntime {lengths}")


def test_longest_clip_shorter_than_input_is_an_error_not_a_wrong_shape():
    """Eager torch returns as many frames as the longest clip; the rewritten model returns as many as its input
    has: where those differ the rewritten model says so (and the ONNX file returns nan)."""
    model = _model("GRU", dict(bidirectional=True))
    out = sr.rewrite(model, _inputs([8000, 5000], 0))
    wav, _ = _inputs([8000, 8000], 3)
    short = torch.tensor([6000, 5000])
    with torch.no_grad():
        assert model(wav, short).shape[1] == 6000 // HOP + 1 < 8000 // HOP + 1
        with pytest.raises(SpecRewriteError, match="pad_packed_sequence") as info:
            out(wav, short)
        assert "longest" in str(info.value) and "test_packed.py" in str(info.value), str(info.value)
    sess, _, _ = onnx_roundtrip(out, _inputs([8000, 5000], 0), optimize=False,
                                dynamic_shapes=({0: Dim("batch"), 1: Dim("time", min=512, max=1 << 20)},
                                                {0: Dim("batch")}))
    got = sess.run(None, {sess.get_inputs()[0].name: wav.numpy(), sess.get_inputs()[1].name: short.numpy()})[0]
    assert np.isnan(got).all()


class CellState(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(129, 16, batch_first=True)
        self.register_buffer("win", torch.hann_window(256))

    def forward(self, wav, lengths):
        s = torch.stft(wav, 256, HOP, window=self.win, return_complex=True).abs().transpose(1, 2)
        _, (h, c) = self.rnn(pack_padded_sequence(s, lengths // HOP + 1, batch_first=True, enforce_sorted=False))
        return h, c


def test_lstm_cell_state_of_a_shorter_clip_is_not_silently_wrong():
    """The final cell state is not an output of the layer: exact for clips of the full length; for shorter
    clips the rewrite cannot match and verification says so (strict: an error)."""
    torch.manual_seed(0)
    model = CellState().eval()
    full = _inputs([6000, 6000], 0)
    out = sr.rewrite(model, full, strict=True)
    with torch.no_grad():
        _check(out(*full), model, copy.deepcopy(model).double(), *full, "full-length clips")
    with pytest.raises(SpecRewriteError):
        sr.rewrite(model, _inputs([6000, 3000], 0), strict=True)


def test_speechbrain_metricgan_with_relative_lengths_exports_dynamic(tmp_path):
    """speechbrain's MetricGAN generator: a BLSTM over magnitude frames, packed from *relative* lengths (one
    float in [0, 1] per clip, speechbrain's convention). The relative lengths are a per-clip input (batch axis,
    not a second clip), and the file is checked in ONNX Runtime at another batch and length."""
    from speechbrain.lobes.models.MetricGAN import EnhancementGenerator

    class Enhancer(nn.Module):
        def __init__(self):
            super().__init__()
            self.g = EnhancementGenerator(input_size=257, hidden_size=200, num_layers=2)
            self.register_buffer("win", torch.hamming_window(512))

        def forward(self, wav, rel):
            mag = torch.stft(wav, 512, 256, window=self.win, return_complex=True).abs().transpose(1, 2)
            return self.g(mag, rel) * mag

    torch.manual_seed(0)
    model = Enhancer().eval()
    wav, rel = torch.randn(2, 8000), torch.tensor([1.0, 0.6])
    res = sr.export(model, (wav, rel), tmp_path / "metricgan.onnx")
    assert res.ok, str(res)
    assert sorted(res.dynamic_axes) == ["rel axis 0 (batch)", "wav axis 0 (batch)", "wav axis 1 (time)"]
    ort_runs = [c for c in res.checks if c.runtime == "onnxruntime"]
    assert [c.shapes for c in ort_runs] == ["(2, 8000), (2,)", "(3, 10001), (3,)"]
    assert all(c.max_rel_err < 1e-5 for c in ort_runs), [str(c) for c in ort_runs]


class BatchFixedByCode(nn.Module):
    """Its code fixes the batch (a per-clip gain grid from ``linspace(.., wav.shape[0])``, folded to a constant);
    the lengths beside it have a batch axis of their own."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(129, 16, bidirectional=True)

    def forward(self, wav, lengths):
        s = torch.stft(wav, 256, HOP, window=torch.hann_window(256), return_complex=True).abs().permute(2, 0, 1)
        s = s * torch.linspace(0.5, 1.5, wav.shape[0])[None, :, None]
        y, _ = self.rnn(pack_padded_sequence(s, lengths // HOP + 1, enforce_sorted=False))
        return pad_packed_sequence(y)[0]


def test_a_batch_fixed_on_the_audio_is_not_moved_on_the_lengths():
    """The second verification shape kept the audio's fixed batch of 3 and gave the lengths 4: the model could not
    run there and the rewrite was checked at the example only."""
    torch.manual_seed(0)
    model = BatchFixedByCode().eval()
    out = sr.rewrite(model, _inputs([6000, 3000, 4500], 0), strict=True)
    rep = out.specrewrite_report
    assert rep.second_shape == "(3, 7501), (3,)" and rep.max_rel_err_second is not None, str(rep)
