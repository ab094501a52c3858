"""The things being compared: rewritten specrewrite modules and native torch.stft / torch.istft modules.

Ops: ``power`` (|STFT|^2), ``mel`` (power then an 80-band HTK mel filterbank, torchaudio defaults) and
``istft`` (real-pair spectrogram (1, F, T, 2) -> waveform). All: Hann window, center=True, reflect padding.

* rewritten: ``specrewrite.Spectrogram`` / ``MelSpectrogram`` / ``InverseSpectrogram`` for every strategy x
  mode, exported with ``torch.onnx.export(dynamo=True)``; the file must contain no STFT / DFT op.
* native: the same computation written with torch.stft / torch.istft (as torchaudio does it), exported the
  same way; the file must contain the ONNX STFT op (power, mel) or DFT op (istft: ONNX has no ISTFT op).
  It is also what "torch eager" runs.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import time
import warnings

import numpy as np
import torch

OPS = ("power", "mel", "istft")
STRATEGIES = ("dense", "factored", "auto")
MODES = ("store", "input", "on_the_fly")
SAMPLE_RATE = 16000
N_MELS = 80
OPSET = 18
SPECTRAL_ONNX = {"STFT", "DFT"}
DEFAULT = "sr:auto:store"   # what a user gets without options; the goals are checked on it


def rewritten_names():
    return [f"sr:{s}:{m}" for s in STRATEGIES for m in MODES]


class NativeSpec(torch.nn.Module):
    """torchaudio.transforms.Spectrogram(power=2) / MelSpectrogram(n_mels=80), written out with torch.stft."""

    def __init__(self, n_fft: int, hop: int, mel: bool):
        super().__init__()
        self.n_fft, self.hop, self.mel = n_fft, hop, mel
        self.register_buffer("window", torch.hann_window(n_fft))
        if mel:
            import torchaudio

            fb = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, SAMPLE_RATE / 2, N_MELS, SAMPLE_RATE)
            self.register_buffer("fb", fb)

    def forward(self, x):
        z = torch.stft(x, self.n_fft, self.hop, window=self.window, center=True, pad_mode="reflect",
                       return_complex=True)
        spec = z.abs().pow(2.0)
        if self.mel:
            spec = torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)
        return spec


class NativeIstft(torch.nn.Module):
    """torchaudio.transforms.InverseSpectrogram on a real-pair input, written out with torch.istft."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, z):
        return torch.istft(torch.view_as_complex(z), self.n_fft, self.hop, window=self.window, center=True)


def native_module(op: str, n_fft: int, hop: int) -> torch.nn.Module:
    if op == "istft":
        return NativeIstft(n_fft, hop).eval()
    return NativeSpec(n_fft, hop, op == "mel").eval()


class _Rewritten(torch.nn.Module):
    """Positional (signal, *bases) wrapper so every mode exports with the bases as plain graph inputs."""

    def __init__(self, inner: torch.nn.Module, op: str):
        super().__init__()
        self.inner, self.op = inner, op

    def forward(self, x, basis0=None, basis1=None):
        if self.op == "istft":
            return self.inner(x, None, basis0, basis1)
        return self.inner(x, basis0, basis1)


def rewritten_module(op: str, n_fft: int, hop: int, strategy: str, mode: str, native=None):
    import specrewrite as sr

    if op == "power":
        m = sr.Spectrogram(n_fft, hop_length=hop, power=2.0, mode=mode, strategy=strategy)
    elif op == "mel":
        fb = native.fb if native is not None else None
        m = sr.MelSpectrogram(SAMPLE_RATE, n_fft, hop_length=hop, n_mels=N_MELS, fb=fb, mode=mode,
                              strategy=strategy)
    else:
        m = sr.InverseSpectrogram(n_fft, hop_length=hop, mode=mode, strategy=strategy)
    bases = list(m.basis_inputs().values()) if mode == "input" else []
    return _Rewritten(m, op).eval(), bases


def plan_of(module) -> str:
    """'dense' or 'factored N1xN2' of a rewritten module."""
    inner = module.inner
    core = getattr(inner, "stft", None) or getattr(inner, "istft", None)
    if core is None:
        core = inner.spectrogram.stft
    plan = getattr(core, "plan", None)
    return "dense" if plan is None else f"factored {plan.n1}x{plan.n2}"


def signal(op: str, n_fft: int, hop: int, seconds: float, seed: int = 0) -> torch.Tensor:
    """The float32 model input: white noise (power/mel) or its float32 STFT (istft)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, int(seconds * SAMPLE_RATE), generator=g) * 0.1
    if op != "istft":
        return x
    z = torch.stft(x.double(), n_fft, hop, window=torch.hann_window(n_fft, dtype=torch.float64), center=True,
                   return_complex=True)
    return torch.view_as_real(z).float().contiguous()


def reference(op: str, n_fft: int, hop: int, x: torch.Tensor) -> np.ndarray:
    """float64 result of the native computation on the (float32-rounded) input upcast to float64."""
    m = native_module(op, n_fft, hop).double()
    with torch.no_grad():
        return m(x.double()).numpy()


@contextlib.contextmanager
def quiet():
    """Silence the exporter's logging / warnings / prints."""
    prev = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    buf = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            warnings.simplefilter("ignore")
            yield buf
    finally:
        logging.disable(prev)


def onnx_ops(path: str) -> list:
    import onnx

    m = onnx.load(path, load_external_data=False)
    ops = {n.op_type for n in m.graph.node} | {n.op_type for f in m.functions for n in f.node}
    return sorted(ops)


def initializer_bytes(path: str) -> int:
    import onnx

    m = onnx.load(path)
    total = 0
    for t in m.graph.initializer:
        total += onnx.numpy_helper.to_array(t).nbytes
    return total


def export(module: torch.nn.Module, args: tuple, path: str, opset: int = OPSET) -> dict:
    """torch.onnx.export(dynamo=True) to one self-contained file; returns {size, ops, export_s} or {error}."""
    t0 = time.perf_counter()
    try:
        with quiet(), torch.no_grad():
            prog = torch.onnx.export(module, args, dynamo=True, opset_version=opset, verbose=False)
            prog.save(path, external_data=False)
    except Exception as e:  # noqa: BLE001
        return {"error": f"export failed: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}",
                "export_s": time.perf_counter() - t0}
    return {"export_s": time.perf_counter() - t0, "size": os.path.getsize(path), "ops": onnx_ops(path),
            "initializer_bytes": initializer_bytes(path), "bare_size": bare_size(path)}


def bare_size(path: str) -> int:
    """Bytes of the file without the exporter's per-node metadata (torch.onnx writes each node's Python stack
    trace, FX node and module path there: 69 of the 94 kB of an on_the_fly n_fft 400 spectrogram), which any
    deployment may strip; what the graph and its weights take."""
    import onnx

    m = onnx.load(path)
    for graph in [m.graph] + [f for f in m.functions]:
        for node in graph.node:
            del node.metadata_props[:]
    return len(m.SerializeToString())


def fix_index_types(path: str) -> list:
    """Cast non-int64 indices of ScatterND / GatherND to int64 in place (torch.istft's dynamo export emits
    int32 ScatterND indices, which ONNX Runtime rejects as an invalid graph). Returns the patched node names."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load(path)
    g = m.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(g.value_info) + list(g.input)}
    types.update({t.name: t.data_type for t in g.initializer})
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            types[n.output[0]] = n.attribute[0].t.data_type
    nodes, patched = [], []
    for n in g.node:
        if n.op_type in ("ScatterND", "GatherND") and types.get(n.input[1], TensorProto.INT64) != TensorProto.INT64:
            name = n.input[1] + "__i64"
            nodes.append(helper.make_node("Cast", [n.input[1]], [name], to=TensorProto.INT64))
            n.input[1] = name
            patched.append(n.name)
        nodes.append(n)
    if patched:
        del g.node[:]
        g.node.extend(nodes)
        onnx.save(m, path)
    return patched


def build_setting(op: str, n_fft: int, hop: int, seconds: float, workdir: str) -> dict:
    """Export every candidate of one setting. Returns {"x", "ref", "native", "cands": {name: {...}}}."""
    import onnxruntime as ort

    x = signal(op, n_fft, hop, seconds)
    ref = reference(op, n_fft, hop, x)
    native = native_module(op, n_fft, hop)
    cands = {}
    tag = f"{op}_{n_fft}_{int(seconds)}s"
    for name in rewritten_names():
        _, strategy, mode = name.split(":")
        try:
            mod, bases = rewritten_module(op, n_fft, hop, strategy, mode, native)
        except Exception as e:  # noqa: BLE001
            cands[name] = {"error": f"build failed: {type(e).__name__}: {e}"}
            continue
        path = os.path.join(workdir, f"{tag}_{strategy}_{mode}.onnx")
        info = export(mod, (x,) + tuple(bases), path)
        info.update(path=path, arrays=[x.numpy()] + [b.numpy() for b in bases], plan=plan_of(mod))
        if "ops" in info and set(info["ops"]) & SPECTRAL_ONNX:
            info["error"] = f"rewritten export still contains {sorted(set(info['ops']) & SPECTRAL_ONNX)}"
        cands[name] = info
    path = os.path.join(workdir, f"{tag}_native.onnx")
    info = export(native, (x,), path)
    info.update(path=path, arrays=[x.numpy()])
    if "ops" in info:
        want = "DFT" if op == "istft" else "STFT"
        info["has_spectral_op"] = want in info["ops"]
        if not info["has_spectral_op"]:
            info["note"] = f"native export has no {want} op"
        try:
            ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001
            first = f"{type(e).__name__}: {str(e)[:300]}"
            patched = fix_index_types(path)
            if patched:
                info["patched"] = (f"ONNX Runtime rejected the export ({first}); benchmark casts the int32 "
                                   f"indices of {len(patched)} ScatterND/GatherND node(s) to int64")
                info["size"] = os.path.getsize(path)
            else:
                info["error"] = f"ONNX Runtime cannot load it: {first}"
    cands["native"] = info
    return {"x": x, "ref": ref, "native": native, "cands": cands}
