"""The ONNX target: torch.onnx (dynamo) of the rewritten model, one self-contained file, verified in ONNX Runtime,
in onnx.reference (small graphs) and in OpenVINO when installed."""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import torch

from .._quiet import quiet
from ..errors import SpecRewriteError, missing_extra
from ..rewrite.capture import _for_signature
from ._result import RuntimeCheck

SPECTRAL_ONNX = {"STFT", "DFT", "MelWeightMatrix"}
_REFERENCE_MAX_NODES = 400   # onnx.reference is pure Python: only small graphs


def write(fast, args, feeds: Dict[str, torch.Tensor], path: str, names: List[str], axes: List[dict],
          optimize: bool = True) -> None:
    """torch.onnx.export with the rewrite's dynamic axes and the forward's input names, all weights inline (an
    external-data file of tiny initializers is what makes some runtimes refuse to load a model); ``optimize``:
    onnxscript's optimiser, torch.onnx's default."""
    try:
        import onnx  # noqa: F401 - torch.onnx's dynamo exporter needs both
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise missing_extra("onnx", "onnx / onnxscript") from e
    auto = torch.export.Dim.AUTO
    spec = []
    for i, a in enumerate(list(args) + list(feeds.values())):
        dyn = {ax["axis"]: auto for ax in axes if ax["dynamic"] and ax["index"] == i}
        spec.append(dyn or None) if isinstance(a, torch.Tensor) else spec.append(None)
    with quiet():
        prog = torch.onnx.export(fast, _doubled(args, axes) + tuple(feeds.values()), None, dynamo=True,
                                 dynamic_shapes=_for_signature(fast, tuple(spec)),
                                 input_names=names + list(feeds), verbose=False,
                                 optimize=optimize)
        prog.save(path, external_data=_too_big_for_one_file(prog))


def _doubled(args, axes) -> tuple:
    """The example with each dynamic axis of size 1 doubled: torch.export specialises a size-1 dimension even
    under Dim.AUTO, and torch.onnx then writes an input that accepts any batch over reshapes that hold 1 (a -1
    beside them folds a larger batch into another axis: silently wrong, or a Reshape error at run time)."""
    out = []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor):
            for ax in axes:
                if ax["dynamic"] and ax["index"] == i and a.dim() > ax["axis"] and a.shape[ax["axis"]] == 1:
                    a = torch.cat([a, a], dim=ax["axis"])
        out.append(a)
    return tuple(out)


def _too_big_for_one_file(prog) -> bool:
    """Protobuf files stop at 2 GB: only then are weights written beside the model."""
    total = 0
    for init in prog.model.graph.initializers.values():
        const = init.const_value
        if const is not None:
            total += const.nbytes
    return total > 1_800_000_000


def inspect_file(path: str):
    """(op types, spectral / complex ops left, dynamic input axes as names, node count) of an ONNX file."""
    import onnx

    m = onnx.load(path, load_external_data=False)
    nodes = [n for g in _graphs(m.graph) for n in g.node]
    ops = sorted({n.op_type for n in nodes})
    left = sorted(set(ops) & SPECTRAL_ONNX)
    complex_types = (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128)
    for v in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        if v.type.tensor_type.elem_type in complex_types:
            left.append(f"complex value '{v.name}'")
    dyn = []
    for v in m.graph.input:
        for d, dim in enumerate(v.type.tensor_type.shape.dim):
            if dim.dim_param or not dim.HasField("dim_value"):
                dyn.append(f"{v.name} axis {d}")
    return ops, left, dyn, len(nodes)


def _graphs(g):
    yield g
    for n in g.node:
        for a in n.attribute:
            if a.g is not None and a.g.node:
                yield from _graphs(a.g)
            for sub in a.graphs:
                yield from _graphs(sub)


def _feed(names, inputs):
    return {n: (a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)) for n, a in zip(names, inputs)}


def runtimes(path: str, names: List[str], n_nodes: int):
    """(name, run(feed) -> list of arrays) for each runtime installed."""
    out = []
    try:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        out.append(("onnxruntime", lambda feed: sess.run(None, feed)))
    except ImportError:
        pass
    if n_nodes <= _REFERENCE_MAX_NODES:
        try:
            from onnx.reference import ReferenceEvaluator

            ref = ReferenceEvaluator(path)
            out.append(("onnx.reference", lambda feed: ref.run(None, feed)))
        except ImportError:
            pass
        except Exception:  # noqa: BLE001 - an op onnx.reference does not implement (RNN with Relu): no check
            pass
    try:
        import openvino as ov

        # f32 explicitly: on CPUs with bf16 units OpenVINO's default runs in bf16 (~1e-2 of the peak), which
        # says nothing about the file
        compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        out.append(("openvino (CPU, f32)", lambda feed: [compiled(feed)[o] for o in compiled.outputs]))
    except ImportError:
        pass
    if not out:
        raise missing_extra("onnx", "onnxruntime")
    return out


def check(path: str, names: List[str], feeds: Dict[str, torch.Tensor], runs, judge,
          n_nodes: int) -> List[RuntimeCheck]:
    """Every installed runtime at every (inputs, eager reference) of ``runs``; ``judge(inputs, got, ref)`` gives
    (ok, err, detail) as rewrite's own verification does."""
    checks = []
    for runtime, run in runtimes(path, names + list(feeds), n_nodes):
        for inputs, ref in runs:
            shapes = ", ".join(str(tuple(a.shape)) for a in inputs if isinstance(a, torch.Tensor))
            try:
                got = run(_feed(names + list(feeds), list(inputs) + list(feeds.values())))
            except Exception as e:  # noqa: BLE001 - a runtime that cannot run the file is a failed check
                msg = str(e).strip().splitlines()
                text = f"{type(e).__name__}: {msg[0][:200] if msg else ''}"
                # onnx.reference is a pure-Python aid, not a deployment runtime: one of its numpy kernels
                # failing (np.choose's 64-array limit on a Where) says nothing about the file; shown, not judged
                reference = runtime == "onnx.reference"
                checks.append(RuntimeCheck(runtime, shapes, None, reference,
                                           f"not judged: onnx.reference cannot run it, {text}" if reference else text))
                continue
            got = [torch.from_numpy(np.asarray(g)) for g in got]
            ok, err, detail = judge(inputs, got, ref)
            checks.append(RuntimeCheck(runtime, shapes, err, ok, detail))
    return checks


def refuse_if_left(left: List[str], path: str) -> None:
    if left:
        raise SpecRewriteError(f"the ONNX file still holds {', '.join(left)}", op="specrewrite.export",
                               where=path, fix="report this model as a specrewrite bug")
