"""The on-device targets: ``.tflite`` (litert-torch, run with the LiteRT interpreter) and ``.pte`` (ExecuTorch with
the XNNPACK partitioner, run with the ExecuTorch runtime). Both convert the rewritten model through torch.export
with the axes the rewrite kept dynamic (bounded: ExecuTorch plans memory for the largest size) and fall back to
the example's shapes where the converter cannot keep them dynamic, saying so."""
from __future__ import annotations

import re
from typing import List

import numpy as np
import torch

from .._quiet import quiet
from ..errors import SpecRewriteError
from ._result import RuntimeCheck

_BOUND = 16   # a dynamic axis accepts up to 16x its example size (ExecuTorch plans memory for the maximum)


def _specs(args, axes):
    spec = []
    for i, a in enumerate(args):
        dyn = {}
        for ax in axes:
            if ax["dynamic"] and ax["index"] == i and isinstance(a, torch.Tensor):
                size = int(a.shape[ax["axis"]])
                lo = max(int(ax.get("min") or 1), 1)
                hi = int(ax.get("max") or max(_BOUND * size, 2))
                # AUTO: torch.export narrows the range by itself (a reflect pad needs time >= n_fft // 2 + 1)
                dyn[ax["axis"]] = torch.export.Dim.AUTO(min=min(lo, size), max=max(hi, size))
        spec.append(dyn or None)
    return tuple(spec)


def _convert(fn, args, axes, what, notes):
    """``fn(spec)`` with the dynamic axes as bounded Dims; where torch.export's range analysis suggests tighter
    bounds (a reflect pad needs time >= n_fft // 2 + 1), again with its suggestions; then with the time axes
    only (XNNPACK reshapes take one dynamic dimension); else with the example's shapes, said in ``notes``.
    Returns (result, axes as written)."""
    if not _dynamic(axes):
        return fn(None), axes
    tries = [axes]
    time_only = [dict(a, dynamic=a["dynamic"] and a["role"] == "time") for a in axes]
    if _dynamic(time_only) and _dynamic(time_only) != _dynamic(axes):
        tries.append(time_only)
    errors = []
    for cand in tries:
        spec = _specs(args, cand)
        for _ in range(3):
            try:
                out = fn(spec)
                notes.append(f"each dynamic axis accepts up to {_BOUND}x its size in the example (a bound the "
                             "on-device runtime plans memory for)")
                if cand is not axes:
                    notes.append(f"{what} keeps only {', '.join(_dynamic(cand))} dynamic ({errors[0]})")
                return out, cand
            except Exception as e:  # noqa: BLE001 - refined, then fewer dynamic axes, then the example's shapes
                first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
                errors.append(f"{type(e).__name__}: {first}")
                spec = _refine(str(e), spec)
                if spec is None:
                    break
    notes.append(f"{what} could not keep the dynamic axes ({errors[-1]}); the file has the example's shapes")
    return fn(None), [dict(a, dynamic=False) for a in axes]


_FIX = re.compile(r"^\s*(\w+) = Dim\('(\w+)'(?:, min=(\d+))?(?:, max=(\d+))?\)\s*$")


def _refine(message: str, spec):
    """The spec with the range fixes torch.export suggests ('t = Dim('t', min=257, max=256000)') applied, or
    None when it suggests none of that form."""
    if "Suggested fixes:" not in message:
        return None
    fixes = {}
    for line in message.split("Suggested fixes:", 1)[1].splitlines()[1:]:
        if not line.strip():
            break
        m = _FIX.match(line)
        if m:
            fixes[m.group(1)] = (int(m.group(3)) if m.group(3) else None, int(m.group(4)) if m.group(4) else None)
    if not fixes:
        return None
    out = []
    for per in spec:
        if not per:
            out.append(per)
            continue
        new = {}
        for axis, dim in per.items():
            name = getattr(dim, "__name__", None)
            if name in fixes:
                lo, hi = fixes[name]
                dim = torch.export.Dim(name, min=lo if lo is not None else dim.min,
                                       max=hi if hi is not None else dim.max)
            new[axis] = dim
        out.append(new)
    return tuple(out)


def _dynamic(axes) -> List[str]:
    return [f"{a['input']} axis {a['axis']} ({a['role']})" for a in axes if a["dynamic"]]


def write_tflite(fast, args, path, axes):
    try:
        with quiet():
            import litert_torch
    except ImportError as e:
        raise SpecRewriteError("the .tflite target needs litert-torch and ai-edge-litert, which are not installed",
                               op="specrewrite.export", fix="pip install 'specrewrite[litert]' (with torch pinned: "
                               "pip install litert-torch ai-edge-litert -c <(echo torch==$(python -c 'import "
                               "torch; print(torch.__version__.split(\"+\")[0])'))") from e
    notes = []
    with quiet():
        edge, axes = _convert(lambda spec: litert_torch.convert(fast, tuple(args), dynamic_shapes=spec), args, axes,
                              "litert-torch", notes)
        edge.export(path)
    return axes, notes


def run_tflite(path):
    with quiet():
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=path)
    ins, outs = it.get_input_details(), it.get_output_details()

    def run(inputs):
        with quiet():
            for d, a in zip(ins, inputs):
                if tuple(d["shape"]) != tuple(a.shape):
                    it.resize_tensor_input(d["index"], list(a.shape))
            it.allocate_tensors()
            for d, a in zip(it.get_input_details(), inputs):
                it.set_tensor(d["index"], np.ascontiguousarray(a.detach().numpy()))
            it.invoke()
            return [it.get_tensor(d["index"]) for d in outs]
    return run


def tflite_ops(path) -> List[str]:
    try:
        from ai_edge_litert.interpreter import Interpreter

        with quiet():
            it = Interpreter(model_path=path)
        return sorted({d["op_name"] for d in it._get_ops_details()})   # noqa: SLF001 - the only op listing
    except Exception:  # noqa: BLE001 - the op listing is informative only
        return []


def write_pte(fast, args, path, axes):
    try:
        with quiet():
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower
    except ImportError as e:
        raise SpecRewriteError("the .pte target needs executorch, which is not installed", op="specrewrite.export",
                               fix="pip install 'specrewrite[executorch]' (with torch pinned, as for torch itself)") \
            from e
    notes = []

    def lower(spec):
        ep = torch.export.export(fast, tuple(args), dynamic_shapes=spec)
        return to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()

    with quiet():
        prog, axes = _convert(lower, args, axes, "ExecuTorch", notes)
    with open(path, "wb") as f:
        f.write(prog.buffer)
    gm = prog.exported_program().graph_module
    calls = [n for n in gm.graph.nodes if n.op == "call_function"]
    names = [_op_name(n.target) for n in calls]
    ops = sorted(set(names))
    delegated = names.count("executorch_call_delegate")
    undelegated = sorted({n.split(".")[1] for n in names if n.startswith("aten.")})
    notes.append(f"XNNPACK runs {delegated} delegated subgraph(s); left to ExecuTorch's portable kernels: "
                 + (", ".join(undelegated) if undelegated else "nothing"))
    return axes, notes, ops


def _op_name(target) -> str:
    """'aten.abs.out', 'executorch_prim.add.Scalar', 'executorch_call_delegate', 'getitem', ..."""
    for attr in ("_name", "__name__"):
        name = getattr(target, attr, None)
        if isinstance(name, str):
            return name.replace("::", ".")
    return str(target).split(":")[0]


def run_pte(path):
    with quiet():
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(path).load_method("forward")

    def run(inputs):
        with quiet():
            return [o.numpy() if isinstance(o, torch.Tensor) else np.asarray(o)
                    for o in method.execute([a.contiguous() for a in inputs])]
    return run


def check(label, run, runs, judge) -> List[RuntimeCheck]:
    checks = []
    for inputs, ref in runs:
        shapes = ", ".join(str(tuple(a.shape)) for a in inputs if isinstance(a, torch.Tensor))
        try:
            got = [torch.from_numpy(np.asarray(g)) for g in run(list(inputs))]
        except Exception as e:  # noqa: BLE001 - a runtime that cannot run the file is a failed check
            msg = str(e).strip().splitlines()
            checks.append(RuntimeCheck(label, shapes, None, False,
                                       f"{type(e).__name__}: {msg[0][:200] if msg else ''}"))
            continue
        ok, err, detail = judge(inputs, got, ref)
        checks.append(RuntimeCheck(label, shapes, err, ok, detail))
    return checks
