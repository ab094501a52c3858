"""Runners: ONNX Runtime (CPU EP), OpenVINO CPU and torch eager, each as a zero-argument callable.

A runner is built once per (model file, runtime, thread count) with its inputs bound, so the timed call is only
the inference itself (no input conversion, no session set-up).
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np
import torch

ORT_SPIN = False  # set from run.py (--ort-spin); see README: spinning workers of idle sessions steal cores


def openvino_available() -> str | None:
    """None if openvino imports, else the reason."""
    try:
        import openvino  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    return None


def versions() -> dict:
    import onnx
    import onnxruntime

    v = {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
         "numpy": np.__version__}
    try:
        import onnxscript

        v["onnxscript"] = onnxscript.__version__
    except Exception:  # noqa: BLE001
        pass
    try:
        import torchaudio

        v["torchaudio"] = torchaudio.__version__
    except Exception:  # noqa: BLE001
        pass
    try:
        import openvino

        v["openvino"] = openvino.__version__
    except Exception:  # noqa: BLE001
        pass
    return v


class OrtRunner:
    def __init__(self, path: str, threads: int, arrays: Sequence[np.ndarray]):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if not ORT_SPIN:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        names = [i.name for i in self.sess.get_inputs()]
        if len(names) != len(arrays):
            raise ValueError(f"model has inputs {names}, {len(arrays)} arrays given")
        self.feeds = {n: np.ascontiguousarray(a) for n, a in zip(names, arrays)}

    def __call__(self):
        return self.sess.run(None, self.feeds)[0]


_OV_CORE = None


class OvRunner:
    def __init__(self, path: str, threads: int, arrays: Sequence[np.ndarray]):
        import openvino as ov

        global _OV_CORE
        if _OV_CORE is None:
            import tempfile

            _OV_CORE = ov.Core()
            # the compiled-blob cache is shared across thread counts: the native STFT graph compiles slowly
            import atexit
            import shutil

            cache = tempfile.mkdtemp(prefix="specrewrite-ov-cache-")
            atexit.register(shutil.rmtree, cache, True)
            _OV_CORE.set_property({"CACHE_DIR": cache})
        model = _OV_CORE.read_model(path)
        cfg = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": int(threads),
               "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        self.compiled = _OV_CORE.compile_model(model, "CPU", cfg)
        self.req = self.compiled.create_infer_request()
        if len(self.compiled.inputs) != len(arrays):
            raise ValueError(f"model has {len(self.compiled.inputs)} inputs, {len(arrays)} arrays given")
        self.inputs = {i: np.ascontiguousarray(a) for i, a in enumerate(arrays)}

    def __call__(self):
        res = self.req.infer(self.inputs, share_inputs=True, share_outputs=True)
        return res[self.compiled.outputs[0]]


class EagerRunner:
    """torch eager; the caller sets torch.set_num_threads for the group."""

    def __init__(self, module: torch.nn.Module, tensors: List[torch.Tensor]):
        self.module, self.tensors = module, tensors

    def __call__(self):
        with torch.inference_mode():
            return self.module(*self.tensors)


def make_runner(runtime: str, path: str, threads: int, arrays):
    if runtime == "ort":
        return OrtRunner(path, threads, arrays)
    if runtime == "openvino":
        return OvRunner(path, threads, arrays)
    raise ValueError(runtime)


def to_numpy(y) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        return y.detach().cpu().numpy()
    if isinstance(y, (list, tuple)):
        return to_numpy(y[0])
    return np.asarray(y)


def rel_error(y, ref: np.ndarray) -> float:
    """max |y - ref| / max |ref| (ref in float64)."""
    y = to_numpy(y).astype(np.float64)
    if y.shape != ref.shape:
        return float("inf")
    peak = max(float(np.abs(ref).max()), 1e-300)
    return float(np.abs(y - ref).max()) / peak


_PEAK_PROBE = r"""
import sys, numpy as np

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024.0

import onnxruntime as ort
path, threads, *arrays = sys.argv[1:]
feeds = [np.load(a) for a in arrays]
before = status("VmRSS")
so = ort.SessionOptions()
so.intra_op_num_threads = int(threads)
so.inter_op_num_threads = 1
sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
feed = {i.name: a for i, a in zip(sess.get_inputs(), feeds)}
for _ in range(3):
    sess.run(None, feed)
print(status("VmHWM") - before)
"""


def ort_peak_mb(path: str, threads: int, arrays, workdir: str, timeout: int = 600) -> float:
    """Peak resident memory (MB) an ONNX Runtime session of ``path`` adds: a fresh process loads the inputs and
    onnxruntime, reads VmRSS, then builds the session and runs it 3 times; the result is VmHWM minus that VmRSS
    (Linux ``/proc``). The session's weights, its arena and the run's intermediates, not the interpreter's."""
    import os
    import subprocess
    import sys

    files = []
    for i, a in enumerate(arrays):
        files.append(os.path.join(workdir, f"peak_in{i}.npy"))
        np.save(files[-1], np.asarray(a))
    proc = subprocess.run([sys.executable, "-c", _PEAK_PROBE, path, str(threads), *files], capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip()[-300:])
    return float(proc.stdout.strip().splitlines()[-1])
