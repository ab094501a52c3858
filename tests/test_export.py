"""specrewrite.export and the command line: one call from a model to a verified file.

Every number asserted is measured here against eager PyTorch in float64 (rel_err), independently of the checks
the export itself reports."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch

import specrewrite as sr
from specrewrite.errors import SpecRewriteError
from specrewrite.export import export

from conftest import TOL, rel_err

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


class MelNet(torch.nn.Module):
    """stft power -> mel (a constant matrix) -> log -> conv -> linear: a keyword-spotting front end."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("window", torch.hann_window(400))
        self.register_buffer("fb", torch.rand(201, 40, generator=g))
        self.conv = torch.nn.Conv1d(40, 16, 3, padding=1)
        self.head = torch.nn.Linear(16, 5)

    def forward(self, wav):
        spec = torch.stft(wav, 400, 160, window=self.window, return_complex=True).abs() ** 2
        mel = torch.log(torch.matmul(spec.transpose(-1, -2), self.fb) + 1e-6).transpose(-1, -2)
        return self.head(torch.relu(self.conv(mel)).mean(-1))


class Denoise(torch.nn.Module):
    """stft -> magnitude mask -> istft at the input's length (an enhancement model's skeleton)."""

    def forward(self, wav):
        w = torch.hann_window(512, dtype=wav.dtype)
        z = torch.stft(wav, 512, 128, window=w, return_complex=True)
        z = z * torch.sigmoid(z.abs() - 1.0)
        return torch.istft(z, 512, 128, window=w, length=wav.shape[-1])


def _f64(model, *args):
    with torch.no_grad():
        import copy

        return copy.deepcopy(model).double()(*[a.double() for a in args])


def _ort(path, feed):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return [torch.from_numpy(o) for o in sess.run(None, {k: v.numpy() for k, v in feed.items()})]


@pytest.mark.parametrize("model_cls", [MelNet, Denoise])
def test_onnx_file_is_verified_and_runs_at_any_length_and_batch(model_cls, tmp_path):
    model = model_cls().eval()
    wav = torch.randn(2, 8000) * 0.1
    path = str(tmp_path / "m.onnx")
    result = export(model, (wav,), path)
    assert result.ok and result.target == "onnx" and result.input_names == ["wav"]
    assert result.spectral_ops_left == [] and not set(result.op_types) & {"STFT", "DFT"}
    assert set(result.dynamic_axes) == {"wav axis 0 (batch)", "wav axis 1 (time)"}, result.dynamic_axes
    assert {c.runtime for c in result.checks} >= {"onnxruntime"} and len(result.checks) >= 2
    assert os.listdir(tmp_path) == ["m.onnx"]   # one self-contained file: no external data beside it
    assert result.size_bytes == os.path.getsize(path)
    for shape in [(2, 8000), (1, 5001), (4, 12345)]:
        x = torch.randn(*shape) * 0.1
        got = _ort(path, {"wav": x})[0]
        ref = _f64(model, x)
        eager = model(x)
        assert rel_err(got, ref) <= max(4 * rel_err(eager, ref), TOL["fp32_rel"]), shape


def test_onnx_input_mode_names_every_input(tmp_path):
    model = MelNet().eval()
    wav = torch.randn(2, 8000) * 0.1
    path = str(tmp_path / "m.onnx")
    result = export(model, (wav,), path, mode="input")
    assert result.ok and result.input_names == ["wav"]
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert names[0] == "wav" and len(names) > 1
    feeds = sr.rewrite(model, (wav,), mode="input").basis_inputs()
    assert names[1:] == list(feeds)
    got = torch.from_numpy(sess.run(None, {"wav": wav.numpy(), **{k: v.numpy() for k, v in feeds.items()}})[0])
    assert rel_err(got, _f64(model, wav)) <= TOL["fp32_rel"] * 10


class Gain(torch.nn.Module):
    def forward(self, wav, gain):
        z = torch.stft(wav, 256, 64, window=torch.hann_window(256), return_complex=True)
        return z.abs() * gain


@pytest.mark.parametrize("mode", ["store", "input"])
def test_rewritten_forward_keeps_the_models_argument_names(mode):
    """The rewritten forward takes the model's own argument names (input mode: then the bases under their feed
    names), so keyword calls work; it used to be forward(arg0, arg1, ...) in input mode."""
    import inspect

    model = Gain().eval()
    wav, gain = torch.randn(2, 4000), torch.tensor(0.5)
    fast = sr.rewrite(model, (wav, gain), mode=mode)
    feeds = fast.basis_inputs() if mode == "input" else {}
    assert list(inspect.signature(fast.forward).parameters) == ["wav", "gain", *feeds]
    x = torch.randn(3, 5001)
    got = fast(gain=torch.tensor(2.0), wav=x, **feeds)
    ref = _f64(model, x, torch.tensor(2.0))
    assert rel_err(got, ref) <= max(4 * rel_err(model(x, torch.tensor(2.0)), ref), TOL["fp32_rel"])


def test_a_bare_torchaudio_transform_in_store_mode_takes_only_the_audio(tmp_path):
    """A MelSpectrogram swapped for ours (no capture) in 'store' mode: its bases are in the file, not inputs
    (the file used to ask for two DFT stages as inputs, while the result said input_names == ['waveform'])."""
    torchaudio = pytest.importorskip("torchaudio")
    model = torchaudio.transforms.MelSpectrogram(16000, n_fft=400, n_mels=40)
    wav = torch.randn(2, 8000) * 0.1
    path = str(tmp_path / "mel.onnx")
    result = export(model, (wav,), path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert result.ok and [i.name for i in sess.get_inputs()] == result.input_names == ["waveform"]
    other = torch.randn(3, 12345) * 0.1
    got = torch.from_numpy(sess.run(None, {"waveform": other.numpy()})[0])
    with torch.no_grad():
        want = torchaudio.transforms.MelSpectrogram(16000, n_fft=400, n_mels=40).double()(other.double())
    assert rel_err(got, want) <= TOL["fp32_rel"] * 10


def test_report_of_many_identical_ops_is_compact():
    class Chain(torch.nn.Module):
        def forward(self, x):
            w = torch.hann_window(256)
            for _ in range(8):
                x = torch.istft(torch.stft(x, 256, 64, window=w, return_complex=True), 256, 64, window=w,
                                length=x.shape[-1])
            return x

    rep = str(sr.rewrite(Chain().eval(), (torch.randn(1, 4000),)).specrewrite_report)
    heads = [ln for ln in rep.splitlines() if ln.startswith("  [")]
    assert len(heads) == 2 and all(h.startswith("  [") and " 8 x torch." in h for h in heads), rep
    assert len(rep.splitlines()) < 20 and max(map(len, rep.splitlines())) <= 110, rep


def _empty_shape_expands(path):
    """Expand nodes whose target shape is an empty constant (a 0-d fill): OpenVINO 2026.4 refuses them
    ('Broadcast shape rank must be 1, but has 0'), ONNX Runtime takes them."""
    m = onnx.load(path)
    empty = {n.output[0] for n in m.graph.node if n.op_type == "Constant"
             and any(a.name == "value" and list(a.t.dims) == [0] for a in n.attribute)}
    empty |= {t.name for t in m.graph.initializer if list(t.dims) == [0]}
    casts = {n.output[0]: n.input[0] for n in m.graph.node if n.op_type == "Cast"}
    return [n.name for n in m.graph.node if n.op_type == "Expand" and casts.get(n.input[1], n.input[1]) in empty]


def test_run_time_checks_export_without_the_optimiser_for_every_runtime(tmp_path):
    """The rewritten model's run-time checks (a size outside the captured range gives nan) filled with a 0-d
    ``torch.full``: torch.onnx writes that as an Expand to an empty shape, which its optimiser folds, but
    ``specrewrite.export`` writes a file again without the optimiser when a check fails, and OpenVINO then refused
    to load it, so the export raised instead of reporting. 0-d values are ``scalar_tensor`` constants now."""
    model, wav = MelNet().eval(), torch.randn(2, 8000) * 0.1
    fast = sr.rewrite(model, (wav,))
    path = str(tmp_path / "plain.onnx")
    dims = {"wav": {0: torch.export.Dim("batch"), 1: torch.export.Dim("time", min=400)}}
    torch.onnx.export(fast, (wav,), path, dynamo=True, optimize=False, dynamic_shapes=dims, verbose=False)
    assert _empty_shape_expands(path) == []
    x = torch.randn(3, 9001) * 0.1
    got = _ort(path, {"wav": x})[0]
    assert rel_err(got, _f64(model, x)) <= max(4 * rel_err(model(x), _f64(model, x)), TOL["fp32_rel"])
    try:
        import openvino as ov
    except ImportError:
        return   # the graph check above is what OpenVINO needs; with it installed, run the file too
    out = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})({0: x.numpy()})[0]
    assert rel_err(torch.from_numpy(out), _f64(model, x)) <= TOL["fp32_rel"] * 10


def test_a_runtime_that_disagrees_fails_the_export(monkeypatch, tmp_path):
    from specrewrite.export import _onnx

    real = _onnx.runtimes

    def wrong(path, names, n_nodes):
        return [(name, (lambda run: lambda feed: [np.asarray(o) * 1.01 for o in run(feed)])(run))
                for name, run in real(path, names, n_nodes)]

    monkeypatch.setattr(_onnx, "runtimes", wrong)
    model, wav = MelNet().eval(), torch.randn(2, 8000) * 0.1
    with pytest.raises(SpecRewriteError, match="does not match eager"):
        export(model, (wav,), str(tmp_path / "a.onnx"))
    result = export(model, (wav,), str(tmp_path / "b.onnx"), strict=False)
    assert not result.ok and all(not c.ok for c in result.checks) and "FAILED" in str(result)


def test_a_file_wrong_only_after_the_exporters_optimiser_is_written_without_it(monkeypatch, tmp_path):
    """onnxscript's optimiser (torch.onnx's default) folded diffsptk's ill-conditioned solves to 1.7e-4 of the
    peak (4.3e-7 without it): a file that fails verification is written again without the optimiser. Here the
    runtime is made to disagree with the optimised file only."""
    from specrewrite.export import _onnx

    real_write, real_runtimes, written = _onnx.write, _onnx.runtimes, []

    def write(*a, **k):
        written.append(a[6] if len(a) > 6 else k.get("optimize", True))
        return real_write(*a, **k)

    def runtimes(path, names, n_nodes):
        off = 1.01 if written[-1] else 1.0
        return [(name, (lambda run: lambda feed: [np.asarray(o) * off for o in run(feed)])(run))
                for name, run in real_runtimes(path, names, n_nodes)]

    monkeypatch.setattr(_onnx, "write", write)
    monkeypatch.setattr(_onnx, "runtimes", runtimes)
    model, wav = MelNet().eval(), torch.randn(2, 8000, generator=torch.Generator().manual_seed(5)) * 0.1
    result = export(model, (wav,), str(tmp_path / "m.onnx"))
    assert written == [True, False] and result.ok, str(result)
    assert any("without the ONNX exporter's optimiser" in n for n in result.notes), result.notes
    got = _ort(result.path, {result.input_names[0]: wav})[0]
    ref = _f64(model, wav)
    assert rel_err(got, ref) <= max(4 * rel_err(model(wav), ref), TOL["fp32_rel"]), rel_err(got, ref)


def test_unknown_suffix_is_a_clear_error(tmp_path):
    with pytest.raises(SpecRewriteError, match="suffix"):
        export(MelNet().eval(), (torch.randn(1, 4000),), str(tmp_path / "m.bin"))


@pytest.mark.parametrize("path, module, words", [("m.tflite", "litert_torch", "specrewrite[litert]"),
                                                 ("m.pte", "executorch", "specrewrite[executorch]")])
def test_missing_exporter_names_its_extra(path, module, words, tmp_path, monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)   # import fails as if not installed
    with pytest.raises(SpecRewriteError, match=re.escape(words)):
        export(MelNet().eval(), (torch.randn(1, 4000),), str(tmp_path / path))


def test_unknown_target_and_precision(tmp_path):
    with pytest.raises(SpecRewriteError, match="unknown export target"):
        export(MelNet().eval(), (torch.randn(1, 4000),), str(tmp_path / "m.onnx"), target="tensorrt")
    with pytest.raises(SpecRewriteError, match="precision"):
        export(MelNet().eval(), (torch.randn(1, 4000),), str(tmp_path / "m.onnx"), precision="int8")


# ------------------------------------------------------------------------------------------------ Core ML
@pytest.mark.parametrize("precision, tol", [("fp32", 1e-5), ("fp16", 1e-2)])
def test_coreml_package_verified_with_the_mil_evaluator(precision, tol, tmp_path):
    pytest.importorskip("coremltools")
    from specrewrite.coreml.evaluate import evaluate

    model = MelNet().eval()
    wav = torch.randn(2, 8000) * 0.1
    path = str(tmp_path / "m.mlpackage")
    result = export(model, (wav,), path, precision=precision)
    assert result.ok and result.target == "coreml" and os.path.isdir(path)
    assert result.dynamic_axes == ["wav axis 1 (time)"] and len(result.checks) == 2
    import coremltools as ct

    ml = ct.models.MLModel(path, skip_model_load=True)
    x = torch.randn(2, 6001) * 0.1   # another length, from the saved file
    got = torch.from_numpy(np.asarray(list(evaluate(ml, {"wav": x.numpy()}, fp16=precision == "fp16").values())[0]))
    assert rel_err(got, _f64(model, x)) <= tol


def test_coreml_length_that_cannot_vary_is_fixed_and_said(tmp_path):
    pytest.importorskip("coremltools")
    result = export(Denoise().eval(), (torch.randn(2, 8000),), str(tmp_path / "d.mlpackage"))
    assert result.ok and result.dynamic_axes == []
    assert any("fixed to the example's length" in n for n in result.notes), result.notes


class NestedOutputs(torch.nn.Module):
    """(scores, [feature maps]) as GAN discriminators return them (bigvgan's MRD: 6 tensors in 2 outputs)."""

    def forward(self, wav):
        mag = torch.stft(wav, 256, 64, window=torch.hann_window(256), return_complex=True).abs()
        return mag.mean(-1), [mag[:, :40], mag[:, 40:].sqrt()]


def test_coreml_nested_outputs_are_each_an_output(tmp_path):
    pytest.importorskip("coremltools")
    model = NestedOutputs()
    result = export(model, (torch.randn(2, 4000),), str(tmp_path / "n.mlpackage"), dynamic_shapes=False)
    assert result.ok and len(result.checks) == 1 and result.max_rel_err <= TOL["fp32_rel"], str(result)


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_export_and_inspect(tmp_path, capsys):
    from specrewrite.cli import main

    out = str(tmp_path / "kws.onnx")
    assert main(["export", "specrewrite.demo:TinyKWS", out, "--shape", "2,16000"]) == 0
    captured = capsys.readouterr()
    assert "rewrite" in captured.err and "onnx: write" in captured.err   # progress, with elapsed time
    row = [ln for ln in captured.out.splitlines() if ln.startswith("onnx ")][0]
    assert out in row and "verified" in row and "wav axis 1 (time)" in row and os.path.isfile(out)
    assert main(["inspect", "specrewrite.demo:TinyKWS", "--shape", "1,16000"]) == 0
    assert "MelSpectrogram" in capsys.readouterr().out


def test_cli_several_targets_from_a_factory_with_inputs_as_json(tmp_path, capsys):
    import json

    from specrewrite.cli import main

    model_file = tmp_path / "factory.py"
    model_file.write_text("import torch\n\nclass Mag(torch.nn.Module):\n    def forward(self, wav):\n"
                          "        return torch.stft(wav, 256, 64, window=torch.hann_window(256), "
                          "return_complex=True).abs()\n\n"
                          "def build():\n    return Mag().eval(), (torch.randn(2, 4000),)\n")
    out_dir = tmp_path / "files"
    code = main(["export", f"{model_file}:build", "--to", "onnx,coreml", "--out", str(out_dir), "--json"])
    results = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["target"] for r in results] == ["onnx", "coreml"]
    assert all(r["ok"] and r["max_rel_err"] < 1e-5 for r in results)
    assert sorted(os.listdir(out_dir)) == ["build.mlpackage", "build.onnx"]


@pytest.mark.parametrize("roles, batch_dynamic, time_dynamic", [("time", False, True), ("batch,time", True, True),
                                                                ("none", False, False)])
def test_cli_dynamic_names_the_axes_kept(roles, batch_dynamic, time_dynamic, tmp_path, capsys):
    from specrewrite.cli import main

    out = str(tmp_path / "kws.onnx")
    assert main(["export", "specrewrite.demo:TinyKWS", out, "--shape", "2,16000", "--dynamic", roles]) == 0
    capsys.readouterr()
    dims = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).get_inputs()[0].shape
    assert [isinstance(d, str) for d in dims] == [batch_dynamic, time_dynamic], dims
    assert main(["export", "specrewrite.demo:TinyKWS", out, "--shape", "2,16000", "--dynamic", "channel"]) == 2
    assert "the roles are batch and time" in capsys.readouterr().err


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    from specrewrite.cli import main

    assert main(["export", "specrewrite.demo:NoSuchModel", str(tmp_path / "a.onnx"), "--shape", "2,100"]) == 2
    assert "has no 'NoSuchModel'" in capsys.readouterr().err
    assert main(["export", "specrewrite.demo:TinyKWS", str(tmp_path / "a.onnx")]) == 2
    assert "--shape" in capsys.readouterr().err
    model_file = tmp_path / "net.py"
    model_file.write_text("import torch\n\nclass Net(torch.nn.Module):\n    def forward(self, x):\n"
                          "        return torch.stft(x, 64, 16, window=torch.hann_window(50), "
                          "return_complex=True).abs()\n")
    assert main(["inspect", f"{model_file}:Net", "--shape", "1,1000"]) == 2
    err = capsys.readouterr().err
    assert "net.py:5" in err and "win_length" in err


# ------------------------------------------------------------------------------------------------ on device
@pytest.mark.parametrize("ext, module", [("tflite", "litert_torch"), ("pte", "executorch")])
@pytest.mark.parametrize("model_cls", [MelNet, Denoise])
def test_on_device_files_are_verified_in_their_runtimes(ext, module, model_cls, tmp_path):
    pytest.importorskip(module)
    model = model_cls().eval()
    wav = torch.randn(2, 8000) * 0.1
    path = str(tmp_path / f"m.{ext}")
    result = export(model, (wav,), path)
    assert result.ok and result.target == ext and os.path.getsize(path) == result.size_bytes
    assert result.spectral_ops_left == [] and result.checks and all(c.ok for c in result.checks)
    # every axis the file claims dynamic was run at a second size; every fixed one is said
    if result.dynamic_axes:
        assert len(result.checks) == 2
    else:
        assert any("example's shapes" in n for n in result.notes), result.notes
    if ext == "pte":
        from specrewrite.export import _edge

        run = _edge.run_pte(path)
        x = wav if not result.dynamic_axes else torch.randn(2, 7001) * 0.1
        got = torch.from_numpy(np.asarray(run([x])[0]))
        assert rel_err(got, _f64(model, x)) <= TOL["fp32_rel"] * 10


def test_a_runtime_that_cannot_load_the_dynamic_file_gets_fewer_dynamic_axes(tmp_path, monkeypatch):
    """An on-device runtime that cannot load a dynamic file at all (the LiteRT interpreter on HDemucs': no kernel
    for STABLEHLO_IOTA, which litert-torch writes for an arange of a dynamic size) is treated like one that runs it
    wrong at another shape: the file is written again with fewer dynamic axes (then with the example's shapes),
    the notes say why, and what is kept is verified as usual. Here the runtime refuses the first file written."""
    pytest.importorskip("executorch")
    from specrewrite.export import _edge

    real, calls = _edge.run_pte, []

    def loader(path):
        calls.append(path)
        if len(calls) == 1:
            raise ValueError("Didn't find op for builtin opcode 'STABLEHLO_IOTA' version '1'")
        return real(path)

    monkeypatch.setattr(_edge, "run_pte", loader)
    model = MelNet().eval()
    wav = torch.randn(2, 8000) * 0.1
    result = export(model, (wav,), str(tmp_path / "m.pte"))
    assert len(calls) == 2, calls
    assert result.ok and result.checks and all(c.ok for c in result.checks), result
    assert len(result.dynamic_axes) == 1 and "time" in result.dynamic_axes[0], result.dynamic_axes
    assert any("cannot load or run" in n and "STABLEHLO_IOTA" in n for n in result.notes), result.notes
    x = torch.randn(2, 7001) * 0.1
    got = torch.from_numpy(np.asarray(real(result.path)([x])[0]))
    assert rel_err(got, _f64(model, x)) <= TOL["fp32_rel"] * 10


class _LogMag(torch.nn.Module):
    def __init__(self, n_fft, hop):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop

    def forward(self, wav):
        s = torch.stft(wav, self.n_fft, self.hop, window=torch.hann_window(self.n_fft), return_complex=True)
        return torch.log(s.abs() + 1e-3)


@pytest.mark.parametrize("ext, module, n_fft, hop", [
    ("pte", "executorch", 1024, 256), ("pte", "executorch", 1024, 441),
    ("tflite", "litert_torch", 1024, 441), ("tflite", "litert_torch", 619, 601)])
def test_on_the_fly_files_on_device(ext, module, n_fft, hop, tmp_path):
    """on_the_fly builds the bases in the graph. ExecuTorch refused every such file: a constant made from a
    numpy view kept its strides, and the lifted constant's dim order [1, 2, 0] had no memory format. 1024 / 441
    is the dense basis in 16 chunks in this mode (coremltools takes no dilation on a weight computed in the graph,
    which the framed plan needs): as one grouped conv, LiteRT's depthwise kernel ran it for over 15 minutes; as
    one conv per chunk, milliseconds. 619 / 601: a prime n_fft, chunks in every mode."""
    pytest.importorskip(module)
    model = _LogMag(n_fft, hop).eval()
    result = export(model, (torch.randn(2, 8000) * 0.1,), str(tmp_path / f"m.{ext}"), mode="on_the_fly")
    assert result.ok and result.checks and all(c.ok for c in result.checks), result


def test_rewritten_model_has_no_non_persistent_buffers():
    """ExecuTorch's verifier rejects a program whose state dict holds a non-persistent buffer: the rewritten
    model keeps its helper tensors as ordinary buffers (the user's own model is not touched)."""
    model = MelNet().eval()
    fast = sr.rewrite(model, (torch.randn(2, 8000),))
    for m in fast.modules():
        keep = set(m.state_dict(keep_vars=True))
        assert all(name in keep for name, _ in m.named_buffers(recurse=False)), type(m).__name__


@pytest.mark.parametrize("ext, module", [("onnx", "onnx"), ("pte", "executorch")])
def test_export_keeps_the_console_quiet(ext, module, tmp_path, capfd):
    pytest.importorskip(module)
    export(MelNet().eval(), (torch.randn(2, 8000) * 0.1,), str(tmp_path / f"m.{ext}"))
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out[-500:], err[-500:])


def test_error_lines_torch_logs_during_a_capture_stay_off_the_console():
    """A capture that fails (and is handled: another capture, the trace route) makes torch log error lines with a
    stack, e.g. fake_tensor's "propagate_real_tensors: we cannot infer a Fake kernel" (speechbrain's GCC-PHAT
    printed 40 such lines): during a rewrite no such record is emitted, and the levels come back after it."""
    import logging

    from specrewrite.rewrite import _quiet_torch_logs

    logger = logging.getLogger("torch._subclasses.fake_tensor")
    before = logger.isEnabledFor(logging.ERROR)
    with _quiet_torch_logs():
        assert not logger.isEnabledFor(logging.ERROR)
    assert logger.isEnabledFor(logging.ERROR) == before


# ------------------------------------------------------------------------------------------------ framed STFT
class FramedMag(torch.nn.Module):
    """n_fft 512 with hop 50 and win_length 240 (auraloss' third resolution): no phase split divides the hop,
    so the STFT is framed by 16 shifted copies of the signal and a dilated conv (the default plan)."""

    def forward(self, wav):
        s = torch.stft(wav, 512, 50, 240, window=torch.hann_window(240, dtype=wav.dtype), return_complex=True)
        return torch.log(s.abs() + 1e-3)


@pytest.mark.parametrize("ext", ["onnx", "mlpackage"])
def test_framed_stft_from_a_batch_of_one_to_any_batch_and_length(ext, tmp_path):
    """Exported from a batch of one: torch.export specialises a size-1 axis, and torch.onnx wrote an input that
    took any batch over reshapes holding 1 (a batch of 2 came out silently wrong); the example is doubled for
    the export. Core ML with a flexible length failed while frames were gathered by a computed index table
    (coremltools made its arange float); the shifted copies have constant slice bounds."""
    if ext == "mlpackage":
        pytest.importorskip("coremltools")
    model = FramedMag().eval()
    fast = sr.rewrite(model, (torch.randn(1, 8000) * 0.1,))
    assert any("framed" in str(e.replaced_by) for e in fast.specrewrite_report.entries)
    result = export(model, (torch.randn(1, 8000) * 0.1,), str(tmp_path / f"m.{ext}"))
    assert result.ok and result.checks and all(c.ok for c in result.checks), result
    if ext == "onnx":
        sess = ort.InferenceSession(result.path, providers=["CPUExecutionProvider"])
        x = torch.randn(3, 9001) * 0.1
        got = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])
        assert rel_err(got, _f64(model, x)) <= TOL["fp32_rel"] * 10


def test_a_star_args_forward_with_only_a_swap_exports_dynamic(tmp_path):
    """``forward(self, *a)`` around a torchaudio transform (nothing captured): torch.export wants the specs of
    ``*a`` as one tuple (the export used to fail: 'inputs[0] is a tuple, but dynamic_shapes[0] is a dict')."""
    torchaudio = pytest.importorskip("torchaudio")

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=400, n_mels=40)

        def forward(self, *a):
            return self.mel(a[0])

    wav = torch.randn(2, 8000) * 0.1
    result = export(Wrap().eval(), (wav,), str(tmp_path / "v.onnx"))
    assert result.ok and any("axis 1" in d for d in result.dynamic_axes), result


class PadsOddLengths(torch.nn.Module):
    """No spectral op at all: a strided conv front end that pads one sample when the length is not a multiple of
    its stride (asteroid's SuDORMRF pads its input in Python the same way)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 4, 8, stride=4)

    def forward(self, x):
        if x.shape[-1] % 4 != 0:
            x = torch.nn.functional.pad(x, (0, 1))
        return self.conv(x.unsqueeze(1))


def test_a_model_with_nothing_spectral_gets_its_size_guards_in_the_file(tmp_path):
    """Before: exported as is, the file took every length and at 4003 samples returned 999 frames where eager has
    1000 (torch.export's check of the branch is not in the file). Now such a model is captured by ``export`` too:
    right at the lengths the captured branch holds, non-finite at the others; ``rewrite`` still hands it back
    unchanged."""
    import onnxruntime as ort

    torch.manual_seed(0)
    model = PadsOddLengths().eval()
    x = torch.randn(2, 4000)
    assert sr.rewrite(model, (x,)) is not model and isinstance(sr.rewrite(model, (x,)), PadsOddLengths)
    res = sr.export(model, (x,), tmp_path / "pads.onnx")
    assert res.ok, str(res)
    sess = ort.InferenceSession(res.path, providers=["CPUExecutionProvider"])
    for n in (4000, 4004, 8000):
        xx = torch.randn(3, n)
        with torch.no_grad():
            ref = model.double()(xx.double())
            model.float()
        assert rel_err(sess.run(None, {"x": xx.numpy()})[0], ref) <= 1e-6, n
    assert not np.isfinite(sess.run(None, {"x": torch.randn(3, 4003).numpy()})[0]).all()
