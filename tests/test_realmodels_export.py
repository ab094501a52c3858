"""The public real models through ``specrewrite.export`` to every deployment target (issue 12): one test per model
x target, each file verified numerically in its own runtime (ONNX Runtime, onnx.reference and OpenVINO; the MIL
evaluator for Core ML; the LiteRT interpreter; the ExecuTorch runtime with XNNPACK) against eager.

This file: ONNX and Core ML with the default dynamic axes; ``test_realmodels_ondevice.py``: LiteRT and ExecuTorch
(a file of its own so that the two halves run side by side). Each model is rewritten once per file
(``export_many``) and its files are shared by its tests. open-unmix and HDemucs go to ONNX in
``test_realmodels.py``; here HDemucs' Core ML file is checked
(HDemucs: its rank-6 mask view, folded to rank 5 by the rewrite). Their LiteRT and ExecuTorch
conversions take minutes each on this machine (HDemucs to LiteRT had not finished after 6 min), so they are
measured by ``benchmarks/portability.py`` rather than in the suite.
"""
from __future__ import annotations

import importlib.util
import os
import warnings

import pytest

import specrewrite as sr
from conftest import TOL
from test_realmodels import BUILDERS

pytestmark = pytest.mark.realmodel

EXT = {"onnx": ".onnx", "coreml": ".mlpackage"}
EVERY_TARGET = ["whisper_logmel_encoder", "vocos_istft_head", "speechbrain_fbank_ecapa", "auraloss_mrstft"]
_files = {}


NEEDS = {"onnx": ["onnx", "onnxruntime"], "coreml": ["coremltools"], "tflite": ["litert_torch"], "pte": ["executorch"]}


def results_for(name, ext, tmp_path_factory, cache, **kw):
    """Every target's ExportResult for one model, from one rewrite (kept in ``cache``)."""
    if name not in cache:
        model, args = BUILDERS[name][0]()
        out = tmp_path_factory.mktemp(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = sr.export_many(model, args, [str(out / f"model{e}") for e in ext.values()], **kw)
        cache[name] = {r.target: r for r in results}
    return cache[name]


def check_file(r):
    assert r.ok and os.path.exists(r.path) and r.size_bytes > 0, str(r)
    assert r.spectral_ops_left == [], r.spectral_ops_left
    assert r.checks and all(c.ok for c in r.checks), str(r)
    # float32 level: the runtime's own arithmetic differs from torch's (XNNPACK fuses and reorders)
    assert r.max_rel_err is not None and r.max_rel_err <= 10 * TOL["fp32_rel"], str(r)


@pytest.mark.parametrize("target", list(EXT))
@pytest.mark.parametrize("name", EVERY_TARGET)
def test_real_model_to_every_target(name, target, tmp_path_factory):
    for module in NEEDS[target]:
        pytest.importorskip(module)
    r = results_for(name, EXT, tmp_path_factory, _files)[target]
    check_file(r)
    if target == "onnx":   # every runtime installed ran the file (OpenVINO is optional)
        wanted = {"onnxruntime"} | ({"openvino (CPU, f32)"} if importlib.util.find_spec("openvino") else set())
        assert wanted <= {c.runtime for c in r.checks}, str(r)


def test_hdemucs_rank6_mask_folds_and_converts_to_core_ml(tmp_path_factory):
    """HDemucs views its mask as a rank-6 tensor (Core ML holds rank 5 at most): the rewrite folds it to rank 5
    before lowering, and the Core ML file matches eager in the MIL evaluator. (open-unmix's rank-6 Wiener buffer
    is the same class, covered by ``test_rank.py``; its Core ML conversion takes minutes, so the corpus judge and
    ``benchmarks/portability.py`` measure it.)"""
    pytest.importorskip("coremltools")
    r = results_for("torchaudio_hdemucs_low", {"coreml": ".mlpackage"}, tmp_path_factory, {})["coreml"]
    check_file(r)
    assert "lstm" in r.op_types, r.op_types


def test_openunmix_converts_on_the_plugin_route_and_matches():
    """The unchanged open-unmix Separator, traced and converted by plain ct.convert inside register(): its Wiener
    filter writes through shared views of the covariance (re-taken after each write) into a rank-6 buffer of
    batch 1 (folded to rank 5: an axis of size 1 is never a slice), and the MIL evaluator matches float64
    eager."""
    ct = pytest.importorskip("coremltools")
    import numpy as np
    import torch
    import specrewrite.coreml as src
    from specrewrite.coreml.evaluate import evaluate

    model, (x,) = BUILDERS["openunmix_separator"][0]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (x,), check_trace=False)
        with src.register():
            ml = ct.convert(traced, inputs=[ct.TensorType(shape=x.shape, name="x")], convert_to="mlprogram",
                            minimum_deployment_target=ct.target.iOS15, compute_precision=ct.precision.FLOAT32,
                            skip_model_load=True)
    (got,) = evaluate(ml, {"x": x.numpy()}).values()
    with torch.no_grad():
        ref64, ref32 = model.double()(x.double()).numpy(), model.float()(x).numpy()
    err = np.abs(got - ref64).max() / np.abs(ref64).max()
    eager = np.abs(ref32 - ref64).max() / np.abs(ref64).max()
    assert err <= max(4 * eager, TOL["fp32_rel"]), (err, eager)
