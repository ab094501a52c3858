"""Shared test helpers: the single tolerance table, error metrics, hypothesis profiles and an ONNX round trip.

Every test compares against an independent reference (torch / torchaudio in float64, numpy.fft) using the
tolerances of ``TOL`` only. Import what you need: ``from conftest import TOL, rel_err, onnx_roundtrip``.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

# Small tensors everywhere: one intra-op thread per process avoids oversubscription (pytest-xdist runs one
# process per core, and a busy machine makes multi-threaded torch spin). Override with SPECREWRITE_TEST_THREADS.
torch.set_num_threads(int(os.environ.get("SPECREWRITE_TEST_THREADS", "1")))

# ------------------------------------------------------------------------------------------ tolerances
# The one table of tolerances. Errors are relative to the peak magnitude of the reference (see rel_err).
TOL = {
    "fp64_kernel": 1e-9,   # float64 kernels (bases, filterbanks, DCT) vs numpy.fft / torchaudio in float64
    "fp64_rel": 1e-9,      # float64 computation end to end (float32 bases are NOT used)
    "fp32_rel": 1e-5,      # float32 computation (float32 bases / data) vs a float64 reference
    "fp16_op": 2e-3,       # one MIL program whose every op output is rounded to fp16, vs torch float32
    "fp16_model": 1e-2,    # a whole model converted at fp16 compute precision (Core ML), vs torch float32
    "exact": 0.0,          # pure data movement / integer results
}

# ------------------------------------------------------------------------------------------ hypothesis
settings.register_profile(
    "ci", max_examples=40, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough", max_examples=300, deadline=None, derandomize=False, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("SPECREWRITE_HYPOTHESIS_PROFILE", "ci"))


# ------------------------------------------------------------------------------------------ metrics
def _as_f64(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().resolve_conj().resolve_neg()   # views such as z.conj().imag carry lazy bits
        if a.is_complex():
            a = torch.view_as_real(a)
        return a.to(torch.float64).numpy()
    a = np.asarray(a)
    if np.iscomplexobj(a):
        a = np.stack([a.real, a.imag], axis=-1)
    return a.astype(np.float64)


def rel_err(a, b) -> float:
    """max|a - b| / max|b| in float64 (b is the reference). Complex inputs compare as (re, im) pairs.

    Shapes must match exactly. A zero reference returns the absolute error.
    """
    a64, b64 = _as_f64(a), _as_f64(b)
    assert a64.shape == b64.shape, f"shape mismatch: got {a64.shape}, reference {b64.shape}"
    assert np.all(np.isfinite(a64)), "result has non-finite values"
    if a64.size == 0:
        return 0.0
    peak = float(np.max(np.abs(b64)))
    err = float(np.max(np.abs(a64 - b64)))
    return err / peak if peak > 0 else err


def assert_close(a, b, tol_key: str = "fp32_rel", what: str = "") -> float:
    """Assert rel_err(a, b) <= TOL[tol_key]; returns the error (for recording maxima)."""
    e = rel_err(a, b)
    assert e <= TOL[tol_key], f"{what} rel err {e:.3e} > {TOL[tol_key]:.1e} ({tol_key})"
    record_error(what.split(":")[0] if what else "unnamed", e)
    return e


# Max error per op family, printed at the end of the session (visible with -s or in the terminal summary).
_MAX_ERRORS: dict = {}


def record_error(family: str, err: float) -> None:
    if err > _MAX_ERRORS.get(family, -1.0):
        _MAX_ERRORS[family] = err


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _MAX_ERRORS:  # only populated in this process (i.e. without xdist, or on the worker's own output)
        terminalreporter.write_sep("-", "max relative errors observed")
        for k in sorted(_MAX_ERRORS):
            terminalreporter.write_line(f"{k:>24s}: {_MAX_ERRORS[k]:.3e}")


# ------------------------------------------------------------------------------------------ signals
def make_signal(shape, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """A reproducible test signal: white noise plus a few sinusoids (so spectra have real peaks)."""
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    n = torch.arange(shape[-1], dtype=torch.float64)
    for f in (0.013, 0.11, 0.37):
        x = x + torch.sin(2 * torch.pi * f * n + seed)
    return x.to(dtype)


def ola_amplification(padded_window, hop: int, n_frames: int, start: int, stop: int) -> float:
    """Conditioning of an inverse STFT's overlap-add division on output samples [start, stop):
    max over samples of (sum |w|) / (sum w^2) across the frames covering each sample.

    Float32 rounding of the overlap-added frames is multiplied by this factor, so where it is large (e.g. the
    tail of a hann window when ``length`` runs past the signal) the float64 reference is ill-conditioned for a
    float32 computation and a comparison at 1e-5 of peak would test rounding, not the library. Returns inf
    where a covered sample has a zero envelope."""
    w = torch.as_tensor(np.asarray(padded_window), dtype=torch.float64).reshape(1, 1, -1)
    ones = torch.ones(1, 1, n_frames, dtype=torch.float64)
    env = torch.nn.functional.conv_transpose1d(ones, w * w, stride=hop)[0, 0]
    absw = torch.nn.functional.conv_transpose1d(ones, w.abs(), stride=hop)[0, 0]
    stop = min(stop, env.shape[0])
    if stop <= start:
        return 1.0
    env, absw = env[start:stop], absw[start:stop]
    if bool((env <= 0).any()):
        return float("inf")
    return float((absw / env).max())


# ------------------------------------------------------------------------------------------ onnx
FORBIDDEN_ONNX_OPS = frozenset({"STFT", "DFT"})


def onnx_op_types(model) -> set:
    """All op types in the main graph, subgraphs (If/Loop/Scan bodies) and local functions."""
    types = set()

    def walk(graph):
        for node in graph.node:
            types.add(node.op_type)
            for attr in node.attribute:
                if attr.HasField("g"):
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    for fn in model.functions:
        for node in fn.node:
            types.add(node.op_type)
            for attr in node.attribute:
                if attr.HasField("g"):
                    walk(attr.g)
    return types


def onnx_roundtrip(module, args, dynamic_shapes=None, input_names=None, kwargs=None, path=None, optimize=True):
    """Export ``module(*args, **kwargs)`` with the dynamo exporter (single file, no external data), check
    that no STFT/DFT op is present, and load it in onnxruntime (CPU). ``optimize=False`` skips onnxscript's
    optimiser (exporter's default: on), whose pattern matcher takes minutes on graphs of tens of thousands of
    nodes (a run-time-length Bluestein FFT: 537 s of dasp's 664 s dynamic export, under a profiler).

    Returns (session, onnx_model, path). The file is written to ``path``; without one it goes to a temporary
    directory that is removed once the session holds the model (then the returned path is None).
    """
    if path is None:
        with tempfile.TemporaryDirectory(prefix="specrewrite_onnx_") as tmp:
            sess, model, _ = onnx_roundtrip(module, args, dynamic_shapes, input_names, kwargs,
                                            os.path.join(tmp, "model.onnx"), optimize)
        return sess, model, None
    import onnx
    import onnxruntime as ort

    module = module.eval()
    torch.onnx.export(module, tuple(args), path, kwargs=kwargs, dynamo=True, external_data=False,
                      dynamic_shapes=dynamic_shapes, input_names=input_names, verbose=False, optimize=optimize)
    model = onnx.load(path)
    found = onnx_op_types(model) & FORBIDDEN_ONNX_OPS
    assert not found, f"exported model still contains spectral ops {sorted(found)}"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return sess, model, path


@pytest.fixture
def tmp_onnx_path(tmp_path):
    """A fresh .onnx path inside pytest's tmp_path."""
    return str(tmp_path / "model.onnx")


SPECIAL_NFFT = (16, 17, 31, 64, 97, 127, 256, 257, 400, 509, 512, 1000, 1024, 1031, 1100)


def make_window(kind: str, n: int, seed: int):
    """float64 window by name ('hann', 'hamming', 'random' positive, anything else: None = rectangular)."""
    if kind == "hann":
        return torch.hann_window(n, dtype=torch.float64)
    if kind == "hamming":
        return torch.hamming_window(n, dtype=torch.float64)
    if kind == "random":
        return torch.as_tensor(np.random.default_rng(seed).uniform(0.05, 1.0, n))
    return None


# ------------------------------------------------------------------------------------------ module hygiene
def _drop_unloadable_lazy_modules() -> None:
    """speechbrain registers lazy modules for optional integrations (k2_fsa, ...) in sys.modules; touching any
    attribute of one whose package is missing raises ImportError. Hypothesis scans sys.modules for constants
    (getattr(module, '__file__')) and would crash on them in a worker that ran a speechbrain test first."""
    import sys

    for name, mod in list(sys.modules.items()):
        try:
            getattr(mod, "__file__", None)
        except ImportError:
            del sys.modules[name]


def pytest_runtest_setup(item):
    _drop_unloadable_lazy_modules()
