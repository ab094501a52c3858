"""The Core ML target: the rewritten model converted by ``specrewrite.coreml.convert`` (a time axis the rewrite
kept dynamic becomes a ``RangeDim``), saved, and checked with the numpy MIL evaluator (Core ML itself predicts
on macOS only) at the declared precision."""
from __future__ import annotations

import os
import shutil

import numpy as np
import torch

from .._quiet import quiet
from ..errors import SpecRewriteError, missing_extra
from ._result import RuntimeCheck


def write(model, fast, args, path, names, axes, runs, mode, strategy, precision, judge):
    with quiet():
        out = _write(model, fast, args, path, names, axes, runs, mode, strategy, precision, judge)
        checks = out[3]
        if checks and checks[0].ok and not all(c.ok for c in checks) and any(a["dynamic"] for a in axes):
            # right at the example's length only: the traced program holds a length (Core ML's route traces, and
            # shape arithmetic becomes constants there), so the file is written for the example's length
            why = "; ".join(str(c) for c in checks if not c.ok)
            fixed = [dict(a, dynamic=False) for a in axes]
            ops, left, dyn, checks, size, notes = _write(model, fast, args, path, names, fixed, runs[:1], mode,
                                                         strategy, precision, judge)
            notes.insert(0, f"the time axis is fixed to the example's length in this file: with a variable length "
                         f"the converted program was wrong at another length ({why})")
            out = (ops, left, dyn, checks, size, notes)
    return out


def _write(model, fast, args, path, names, axes, runs, mode, strategy, precision, judge):
    try:
        from .. import coreml
        from ..coreml.evaluate import evaluate, op_types
    except ImportError as e:
        raise missing_extra("coreml", "coremltools") from e
    time_dynamic = any(a["dynamic"] and a["role"] == "time" for a in axes)
    target_ext = os.path.splitext(path.rstrip("/\\"))[1].lower()
    convert_to = "neuralnetwork" if target_ext == ".mlmodel" else "mlprogram"
    ml = coreml.convert(fast, args, convert_to=convert_to, precision=precision, variable_length=time_dynamic,
                        mode=mode, strategy=strategy)
    if os.path.isdir(path):
        # only an earlier ML package is replaced, never another folder
        if not (path.rstrip("/\\").endswith(".mlpackage") and os.path.isfile(os.path.join(path, "Manifest.json"))):
            raise SpecRewriteError(f"{path} is a folder that is not an ML package", op="specrewrite.export",
                                   fix="give a path ending in .mlpackage (or remove that folder yourself)")
        shutil.rmtree(path)
    ml.save(path)
    ops = sorted(op_types(ml))
    left = sorted(t for t in ops if any(w in t for w in ("complex", "stft", "fft")))
    dyn = [f"{a['input']} axis {a['axis']} ({a['role']})" for a in axes if a["dynamic"] and a["role"] == "time"]
    checks, notes = [], []
    if convert_to == "mlprogram":
        label = f"coreml (MIL evaluator, {precision})"
        file_names = [i.name for i in ml.get_spec().description.input]
        out_names = None
        for inputs, ref in runs:
            shapes = ", ".join(str(tuple(a.shape)) for a in inputs if isinstance(a, torch.Tensor))
            # fed in the file's own input order and names (a traced rewrite names its inputs arg0, arg1, ...)
            feed = {n: a.detach().numpy() for n, a in zip(file_names, [a for a in inputs
                                                                      if isinstance(a, torch.Tensor)])}
            try:
                res = evaluate(ml, feed, fp16=precision == "fp16")
            except Exception as e:  # noqa: BLE001 - a program the evaluator cannot run is a failed check
                checks.append(RuntimeCheck(label, shapes, None, False, f"{type(e).__name__}: {str(e)[:200]}"))
                continue
            out_names = out_names or sorted(res, key=_output_order)
            got = [torch.from_numpy(np.asarray(res[k], dtype=np.float32)) for k in out_names]
            ok, err, detail = judge(inputs, got, ref)
            if precision == "fp16":   # fp16 compute: judged against the fp16 error bound, not float32's
                ok, detail = err <= 1e-2, "fp16 compute; allowed 1e-2 of the peak"
            checks.append(RuntimeCheck(label, shapes, err, ok, detail))
    else:
        notes.append("neuralnetwork (.mlmodel) files are not run by the MIL evaluator: checked on macOS only")
    notes.append("Core ML predicts on macOS only; the numbers above come from specrewrite.coreml.evaluate, "
                 "which runs the saved MIL program op by op in numpy")
    return ops, left, dyn, checks, _size(path), notes


def _output_order(name: str):
    digits = "".join(ch for ch in name if ch.isdigit())
    return (int(digits) if digits else 0, name)


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
