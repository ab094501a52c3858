"""``specrewrite.export``: any audio model to a verified deployment file in one call.

    result = specrewrite.export(model, (wav,), "model.onnx")        # or "model.mlpackage"
    print(result)          # file, size, dynamic axes, op types, each runtime's error against eager

The model is rewritten (``specrewrite.rewrite``: no spectral op, no complex tensor), exported with the axes the
rewrite kept dynamic and the input names of ``model.forward``, and the file is run in every runtime installed
(ONNX Runtime, onnx.reference for small graphs, OpenVINO; the MIL evaluator for Core ML) at the example inputs
and at a second shape (another length and batch size where those axes are dynamic), against eager PyTorch.
With ``strict=True`` (default) a file that still holds a spectral op, or that a runtime runs wrong, is a
``SpecRewriteError``; with ``strict=False`` it is returned with ``result.ok`` False.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, List, Optional

import torch

from ..errors import SpecRewriteError
from ..modes import Mode, Strategy
from ._result import ExportResult, RuntimeCheck

__all__ = ["export", "export_many", "ExportResult", "RuntimeCheck", "TARGETS"]

TARGETS = {".onnx": "onnx", ".mlpackage": "coreml", ".mlmodel": "coreml", ".tflite": "tflite", ".pte": "pte"}
_NAMES = {"onnx": "onnx", "coreml": "coreml", "mlpackage": "coreml", "mlprogram": "coreml", "tflite": "tflite",
          "litert": "tflite", "pte": "pte", "executorch": "pte"}


def _with_suffix(path: str, kind: str) -> str:
    """``path`` with the suffix its target writes (coremltools adds .mlpackage itself; say where it went)."""
    ext = os.path.splitext(path.rstrip("/\\"))[1].lower()
    if kind == "coreml" and ext not in (".mlpackage", ".mlmodel"):
        return path.rstrip("/\\") + ".mlpackage"
    return path


def target_of(path: str, target: Optional[str]) -> str:
    if target is not None:
        t = _NAMES.get(str(target).lower())
        if t is None:
            raise SpecRewriteError(f"unknown export target {target!r}", op="specrewrite.export",
                                   fix=f"use one of {sorted(set(_NAMES))}, or a path ending in "
                                   f"{', '.join(TARGETS)}")
        return t
    ext = os.path.splitext(os.fspath(path).rstrip("/\\"))[1].lower()
    if ext not in TARGETS:
        raise SpecRewriteError(f"cannot tell the target from the file name {os.fspath(path)!r}",
                               op="specrewrite.export", fix=f"use a suffix in {', '.join(TARGETS)} or target=")
    return TARGETS[ext]


def export(model: torch.nn.Module, example_inputs: Any, path, *, target: Optional[str] = None,
           dynamic_shapes: Any = None, mode: Mode | str = Mode.STORE, strategy: Strategy | str = Strategy.AUTO,
           precision: str = "fp32", verify: bool = True, strict: bool = True) -> ExportResult:
    """Rewrite ``model``, write it to ``path`` and check the file in the runtimes installed.

    * ``target``: 'onnx', 'coreml', 'tflite' or 'pte'; default from the suffix (.onnx, .mlpackage, .mlmodel,
      .tflite, .pte).
    * ``dynamic_shapes``, ``mode``, ``strategy``: as for ``specrewrite.rewrite`` (default: batch and time axes
      dynamic where the model allows; the file keeps exactly the axes the rewrite kept).
    * ``precision``: 'fp32' or 'fp16' (Core ML compute precision; ONNX files are float32).
    * ``verify``: run the file in every runtime installed at the example and at a second shape.
    """
    return export_many(model, example_inputs, [(path, target)], dynamic_shapes=dynamic_shapes, mode=mode,
                       strategy=strategy, precision=precision, verify=verify, strict=strict)[0]


def export_many(model: torch.nn.Module, example_inputs: Any, paths, *, dynamic_shapes: Any = None,
                mode: Mode | str = Mode.STORE, strategy: Strategy | str = Strategy.AUTO, precision: str = "fp32",
                verify: bool = True, strict: bool = True, progress=None) -> List[ExportResult]:
    """``export`` to several files (``paths``: paths or (path, target) pairs) from one rewrite. ``progress``: a
    callable given one line per step (the command line prints them with the elapsed time)."""
    from ..rewrite import rewrite

    say = progress or (lambda msg: None)
    jobs = [(os.fspath(p), target_of(p, t)) for p, t in (x if isinstance(x, tuple) else (x, None) for x in paths)]
    jobs = [(_with_suffix(p, kind), kind) for p, kind in jobs]
    if precision not in ("fp32", "fp16"):
        raise SpecRewriteError(f"precision={precision!r}", op="specrewrite.export", fix="use 'fp32' or 'fp16'")
    if not isinstance(model, torch.nn.Module):
        raise SpecRewriteError(f"export() needs an nn.Module, got {type(model).__name__}", op="specrewrite.export",
                               fix="wrap the function in an nn.Module")
    for _, kind in jobs:
        if kind in ("tflite", "pte") and Mode.parse(mode) is Mode.INPUT:
            raise SpecRewriteError(f"mode='input' is not supported for the {kind} target", op="specrewrite.export",
                                   fix="use mode='store' or 'on_the_fly'")
    args = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    args = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
    say("rewrite (capture, lowering, verification)")
    # a model with nothing spectral is captured too: its size guards go in the file
    fast = rewrite(model, args, mode=mode, strategy=strategy, strict=strict, verify=verify,
                   dynamic_shapes=dynamic_shapes, _capture_always=True)
    results = []
    for path, kind in jobs:
        say(f"{kind}: write {path}" + (" and verify" if verify else ""))
        try:
            results.append(_one(model, fast, args, path, kind, dynamic_shapes, mode, strategy, precision, verify,
                                strict))
        except SpecRewriteError:
            raise
        except Exception as e:  # noqa: BLE001 - an exporter or runtime failing: said as ours to report
            text = str(e).strip().splitlines()
            raise SpecRewriteError(f"the {kind} exporter failed on the rewritten model: {type(e).__name__}: "
                                   f"{text[0][:300] if text else ''}", op=f"specrewrite.export ({kind})", where=path,
                                   fix="the rewritten model holds no spectral op, so this is a limitation of the "
                                   "exporter on the rest of the model (its message above) or a specrewrite bug: "
                                   "try another target, or report it") from e
    return results


def _dyn(axes) -> List[str]:
    return [f"{a['input']} axis {a['axis']} ({a['role']})" for a in axes if a["dynamic"]]


def _one(model, fast, args, path, kind, dynamic_shapes, mode, strategy, precision, verify, strict) -> ExportResult:
    from ..rewrite.dynamic import input_names, second_inputs
    from ..rewrite.verify import _first_line, judge

    t0 = time.perf_counter()
    report = fast.specrewrite_report
    names = input_names(model, len(args))
    # (a swapped torchaudio module has basis_inputs in every mode: only in 'input' mode are they file inputs;
    # a MelSpectrogram exported in 'store' mode used to ask for its bases as inputs too)
    feeds = fast.basis_inputs() if hasattr(fast, "basis_inputs") and Mode.parse(mode) is Mode.INPUT else {}
    axes = report.axes
    if not axes and dynamic_shapes is not False:
        # nothing was captured (a torchaudio module swap is enough): the file asks for the default axes and
        # torch.export keeps those the model's code allows
        from ..rewrite.dynamic import AxisPlan

        plan = AxisPlan(model, args, dynamic_shapes)
        axes = [dict(dataclasses.asdict(ax), dynamic=ax.requested) for ax in plan.axes]
    if kind == "coreml":
        axes = [a for a in axes if a["role"] == "time"]

    def runs_for(kept):
        """(inputs, eager output) at the example and, with the axes ``kept`` dynamic moved, a second shape."""
        second = second_inputs(args, kept)
        out = []
        for inputs in (args,) + ((second,) if second is not None else ()):
            try:
                with torch.no_grad():
                    out.append((inputs, model(*[a.clone() if isinstance(a, torch.Tensor) else a for a in inputs])))
            except Exception:  # noqa: BLE001 - the model's own code takes one shape only (whisper's 3000 frames)
                if inputs is args:
                    raise
                early_notes.append("the model itself does not run at a second shape: the file was checked at the "
                                   "example's shape only")
        return out

    def _judge(inputs, got, ref):
        return judge(model, inputs, got, ref)

    early_notes: List[str] = []

    # a Core ML length is always checked: it decides whether the file can take other lengths
    runs = runs_for(axes) if verify or (kind == "coreml" and any(a["dynamic"] for a in axes)) else []
    if kind == "onnx":
        from . import _onnx

        notes = []
        for optimize in (True, False):
            _onnx.write(fast, args, feeds, path, names, axes, optimize)
            ops, left, dyn, n_nodes = _onnx.inspect_file(path)
            checks = _onnx.check(path, names, feeds, runs, _judge, n_nodes) if verify else []
            if all(c.ok for c in checks) or not optimize:
                break
            # onnxscript's optimiser (torch.onnx's default) folds ill-conditioned constant work with other
            # rounding: diffsptk's mel-cepstrum went from 4.3e-7 to 1.7e-4 of the peak. Written again without it.
            notes.append("written without the ONNX exporter's optimiser: with it the file differed from eager ("
                         + "; ".join(str(c) for c in checks if not c.ok)[:200] + ")")
        roles = {f"{a['input']} axis {a['axis']}": a["role"] for a in axes}
        dyn = [f"{d} ({roles[d]})" if d in roles else d for d in dyn]
        size = os.path.getsize(path)
    elif kind in ("tflite", "pte"):
        from . import _edge

        time_only = [dict(a, dynamic=a["dynamic"] and a["role"] == "time") for a in axes]
        tries = [axes] + ([time_only] if time_only != axes else []) + [[dict(a, dynamic=False) for a in axes]]
        earlier = []
        for cand in tries:
            if kind == "tflite":
                kept, notes = _edge.write_tflite(fast, args, path, cand)
                ops, label, runner = _edge.tflite_ops(path), "litert (interpreter)", _edge.run_tflite
            else:
                kept, notes, ops = _edge.write_pte(fast, args, path, cand)
                label, runner = "executorch (runtime, XNNPACK)", _edge.run_pte
            # the file is run at a second shape whenever it claims a dynamic axis, verify or not: a runtime that
            # cannot take the shapes the file accepts must not ship a file that claims them
            runs = runs_for(kept) if verify or any(a["dynamic"] for a in kept) else []
            try:
                checks = _edge.check(label, runner(path), runs, _judge) if runs else []
            except Exception as e:  # noqa: BLE001 - a runtime that cannot load the dynamic file: fewer axes
                if not any(a["dynamic"] for a in kept):
                    raise
                earlier.append(f"with {', '.join(_dyn(kept))} dynamic {label} cannot load or run the file "
                               f"({_first_line(e)})")
                continue
            if all(c.ok for c in checks) or not any(a["dynamic"] for a in kept):
                break
            earlier.append(f"with {', '.join(_dyn(kept))} dynamic the file fails at another shape in "
                           f"{label} ({'; '.join(c.note or 'mismatch' for c in checks if not c.ok)[:160]})")
        notes = earlier + notes
        if not verify:
            checks = []
        dyn = _dyn(kept)
        left = sorted(o for o in ops if any(w in o.lower() for w in ("fft", "stft", "complex")))
        size = os.path.getsize(path)
    else:
        from . import _coreml

        ops, left, dyn, checks, size, notes = _coreml.write(model, fast, args, path, names, axes, runs, mode,
                                                            strategy, precision, _judge)
    result = ExportResult(path=path, target=kind, size_bytes=size, report=report, input_names=names,
                          dynamic_axes=dyn, op_types=ops, spectral_ops_left=left, checks=checks,
                          notes=list(dict.fromkeys(early_notes + notes)),
                          seconds=time.perf_counter() - t0)
    if strict and not result.ok:
        bad = [str(c) for c in checks if not c.ok] + [f"left in the file: {x}" for x in left]
        raise SpecRewriteError("the exported file does not match eager: " + "; ".join(bad), op="specrewrite.export",
                               where=path, fix="strict=False returns the result to inspect; report this model as "
                               "a specrewrite bug")
    return result
