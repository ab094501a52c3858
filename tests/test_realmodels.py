"""Real third-party audio models through specrewrite.rewrite(): whisper, openunmix, vocos, torchaudio HDemucs,
speechbrain, auraloss, torchlibrosa (control). Random weights, small inputs.

For each: rewrite with example inputs; the rewritten model matches eager; torch.onnx.export(dynamo=True) has no
STFT/DFT op and matches in onnxruntime; the original model (weights, buffers, submodule types, outputs) is
untouched. Select with ``-m realmodel``.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

import specrewrite as sr
from conftest import TOL, onnx_roundtrip, rel_err
from test_rewrite import flat, run_real_only

pytestmark = pytest.mark.realmodel

# The bar for whole models: 1e-4 of the output peak against the float32 eager model (a chain of float32
# layers on both sides, each step within TOL['fp32_rel'] of float64).
MODEL_TOL = 10 * TOL["fp32_rel"]


# ------------------------------------------------------------------------------------------ builders
def build_whisper():
    import whisper
    from whisper.model import AudioEncoder

    class WhisperFrontEndEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = AudioEncoder(n_mels=80, n_ctx=50, n_state=384, n_head=6, n_layer=4)

        def forward(self, audio):
            mel = whisper.log_mel_spectrogram(audio, n_mels=80)   # stft(400, 160), |.|**2, mel, log10
            return self.encoder(mel)

    torch.manual_seed(0)
    return WhisperFrontEndEncoder().eval(), (torch.randn(1, 16000) * 0.1,)


def build_openunmix():
    from openunmix.model import OpenUnmix, Separator

    torch.manual_seed(0)
    # umxhq's STFT (4096 / 1024) and Wiener EM (niter=1); smaller LSTMs and two targets to keep it fast
    targets = {t: OpenUnmix(nb_bins=4096 // 2 + 1, nb_channels=2, hidden_size=64, max_bin=1487)
               for t in ("vocals", "drums")}
    model = Separator(target_models=targets, niter=1, residual=False, n_fft=4096, n_hop=1024, nb_channels=2,
                      sample_rate=44100.0, filterbank="torch").eval()
    return model, (torch.randn(1, 2, 22050) * 0.1,)   # 0.5 s stereo


def build_vocos():
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone

    class VocosDecode(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = VocosBackbone(input_channels=100, dim=128, intermediate_dim=384, num_layers=2)
            self.head = ISTFTHead(dim=128, n_fft=1024, hop_length=256, padding="center")

        def forward(self, features):
            return self.head(self.backbone(features))   # mag * (cos + 1j * sin) -> torch.istft

    torch.manual_seed(0)
    return VocosDecode().eval(), (torch.randn(1, 100, 40),)


def build_hdemucs():
    from torchaudio.models import hdemucs_low

    torch.manual_seed(0)
    model = hdemucs_low(sources=["drums", "bass", "other", "vocals"]).eval()
    return model, (torch.randn(1, 2, 22050) * 0.1,)


def build_speechbrain():
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    class EcapaEmbedder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.compute_features = Fbank(n_mels=80)    # stft(400, 160, hamming, pad_mode='constant')
            self.embedding_model = ECAPA_TDNN(80, channels=[128, 128, 128, 128, 384], kernel_sizes=[5, 3, 3, 3, 1],
                                              dilations=[1, 2, 3, 4, 1], attention_channels=32, lin_neurons=64)

        def forward(self, wavs):
            return self.embedding_model(self.compute_features(wavs))

    torch.manual_seed(0)
    return EcapaEmbedder().eval(), (torch.randn(1, 16000) * 0.1,)


def build_auraloss():
    from auraloss.freq import MultiResolutionSTFTLoss

    torch.manual_seed(0)
    model = MultiResolutionSTFTLoss().eval()   # 3 resolutions, win_length < n_fft, 6 stfts, two inputs
    return model, (torch.randn(1, 1, 16000) * 0.1, torch.randn(1, 1, 16000) * 0.1)


def build_torchlibrosa():
    from torchlibrosa.stft import LogmelFilterBank, Spectrogram

    class PannsFrontEnd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.spectrogram_extractor = Spectrogram(n_fft=1024, hop_length=320, win_length=1024, window="hann",
                                                     center=True, pad_mode="reflect", freeze_parameters=True)
            self.logmel_extractor = LogmelFilterBank(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000,
                                                     ref=1.0, amin=1e-10, top_db=None, freeze_parameters=True)

        def forward(self, x):
            return self.logmel_extractor(self.spectrogram_extractor(x))

    torch.manual_seed(0)
    return PannsFrontEnd().eval(), (torch.randn(1, 32000) * 0.1,)


BUILDERS = {
    "whisper_logmel_encoder": (build_whisper, ["torch.stft"]),
    "openunmix_separator": (build_openunmix, ["torch.stft", "torch.istft"]),
    "vocos_istft_head": (build_vocos, ["torch.istft"]),
    "torchaudio_hdemucs_low": (build_hdemucs, ["torch.stft", "torch.istft"]),
    "speechbrain_fbank_ecapa": (build_speechbrain, ["torch.stft"]),
    "auraloss_mrstft": (build_auraloss, ["torch.stft"] * 6),
}


def _whisper_report(rep):
    """The report points at whisper's own source line (whisper/audio.py) for the stft."""
    (e,) = [e for e in rep.entries if e.op == "torch.stft"]
    assert e.where and "whisper" in e.where and os.sep + "audio.py" in e.where and "stft" in e.where, e.where
    assert e.params["n_fft"] == 400 and e.params["hop_length"] == 160


def _openunmix_report(rep):
    """openunmix's Separator reads back index tensors it builds in forward (``int(t[-1])`` in its frame windows,
    ``index[0]`` in its Wiener filter): with their values known during the capture, torch.export captures it
    with the length dynamic (it used to be traced, length fixed), for the sizes one frame window holds."""
    assert rep.capture.startswith("torch.export") and not rep.shapes_specialised, str(rep)
    time_ax = rep.axis("audio", "time")
    assert time_ax["dynamic"] and "size <= " in time_ax["range"] and "filtering.py" in time_ax["range"], str(rep)
    stft = [e for e in rep.entries if e.op == "torch.stft"][0]
    assert stft.params["n_fft"] == 4096 and stft.params["hop_length"] == 1024


def _auraloss_report(rep):
    """win_length < n_fft: the three resolutions of the default MultiResolutionSTFTLoss."""
    got = sorted({(e.params["n_fft"], e.params["hop_length"], e.params["win_length"]) for e in rep.entries})
    assert got == [(512, 50, 240), (1024, 120, 600), (2048, 240, 1200)], got


def _hdemucs_report(rep):
    """torchaudio's models are model code: the report points into _hdemucs.py, not at generated code."""
    for e in rep.entries:
        assert e.where and os.sep + "_hdemucs.py" in e.where and ("stft(" in e.where), e.where


EXTRA_CHECKS = {"whisper_logmel_encoder": _whisper_report, "openunmix_separator": _openunmix_report,
                "auraloss_mrstft": _auraloss_report, "torchaudio_hdemucs_low": _hdemucs_report}


# ------------------------------------------------------------------------------------------ helpers
def snapshot(model):
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            {name: type(m) for name, m in model.named_modules()})


def assert_untouched(model, snap, args, y0):
    state, types = snap
    after = model.state_dict()
    assert set(after) == set(state), "state_dict keys changed"
    for k, v in state.items():
        assert torch.equal(after[k], v), f"{k} changed"
    assert {name: type(m) for name, m in model.named_modules()} == types, "submodules were swapped"
    with torch.no_grad():
        y = flat(model(*args))
    assert len(y) == len(y0) and all(torch.equal(a, b) for a, b in zip(y, y0)), "outputs changed"


def assert_model_close(got, ref, what):
    g, r = flat(got), flat(ref)
    assert len(g) == len(r), f"{what}: {len(g)} outputs vs {len(r)}"
    for a, b in zip(g, r):
        a = torch.as_tensor(np.asarray(a)) if not isinstance(a, torch.Tensor) else a
        e = rel_err(a, b)
        assert e <= MODEL_TOL, f"{what}: rel err {e:.2e} of the output peak > {MODEL_TOL:.0e}"


# ------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("name", list(BUILDERS))
def test_real_model(name, tmp_path):
    build, expected_ops = BUILDERS[name]
    model, args = build()
    with torch.no_grad():
        y0 = flat(model(*args))
    snap = snapshot(model)

    out = sr.rewrite(model, args)
    rep = out.specrewrite_report
    found = sorted(e.op for e in rep.entries if e.op.startswith("torch."))
    assert found == sorted(expected_ops), str(rep)
    assert all(e.replaced_by and not e.skipped for e in rep.entries), str(rep)
    assert rep.max_rel_err is not None and rep.max_rel_err <= MODEL_TOL, str(rep)
    EXTRA_CHECKS.get(name, lambda rep: None)(rep)
    assert_untouched(model, snap, args, y0)
    if name == "torchaudio_hdemucs_low":   # its LSTMs reach the graph whole, not as one cell per frame
        from specrewrite.rewrite import _rnn_onnx   # (aten.lstm.input, or ONNX's LSTM inside torch.onnx.export)

        targets = [n.target for n in out.graph.nodes if n.op == "call_function"]
        assert _rnn_onnx.lstm in targets and not any("lstm_cell" in str(t) for t in targets)

    # eager: the rewritten model runs no spectral op and no complex tensor, and matches
    got = run_real_only(out, *args)
    assert_model_close(got, y0, f"{name} rewritten (eager)")

    # ONNX (dynamo): no STFT / DFT op (checked by onnx_roundtrip), matches in onnxruntime
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess, onnx_model, _ = onnx_roundtrip(out, args, path=str(tmp_path / f"{name}.onnx"))
    feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)}
    assert_model_close([torch.from_numpy(np.asarray(v)) for v in sess.run(None, feeds)], y0, f"{name} ORT")
    assert_untouched(model, snap, args, y0)

    # dynamic axes: each axis the report calls dynamic exported dynamic and checked in ONNX Runtime at three
    # lengths and two batch sizes; each fixed axis says why (the same check as test_realmodels_more's)
    from test_realmodels_more import check_dynamic

    check_dynamic(name, model, args, out, tmp_path)


def test_torchlibrosa_is_left_unchanged(tmp_path):
    """Control: torchlibrosa already computes its DFT with conv1d; rewrite must find nothing and hand back an
    equivalent model of the same class."""
    model, args = build_torchlibrosa()
    with torch.no_grad():
        y0 = flat(model(*args))
    snap = snapshot(model)
    out = sr.rewrite(model, args)
    rep = out.specrewrite_report
    assert type(out) is type(model) and out is not model
    assert not rep.entries and not rep.complex_ops, str(rep)
    assert "no spectral op" in str(rep)
    with torch.no_grad():
        got = flat(out(*args))
    assert all(torch.equal(a, b) for a, b in zip(got, y0))
    assert_untouched(model, snap, args, y0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess, _, _ = onnx_roundtrip(out, args, path=str(tmp_path / "tl.onnx"))
    feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)}
    assert_model_close([torch.from_numpy(np.asarray(v)) for v in sess.run(None, feeds)], y0, "torchlibrosa ORT")
    # without example inputs too
    out2 = sr.rewrite(model)
    assert type(out2) is type(model) and "no spectral op" in str(out2.specrewrite_report)
