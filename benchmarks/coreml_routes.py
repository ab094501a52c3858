"""Both Core ML routes on the real models, measured with the MIL evaluator (issue 11's table).

    python benchmarks/coreml_routes.py [--set public|sweep|all] [--models a,b] [--out FILE.md]

Routes, for each model (random weights):
  rewritten      ``specrewrite.coreml.convert(model, args)``: the rewrite, traced, converted;
  plugin trace   the UNCHANGED model, ``torch.jit.trace``, plain ``ct.convert`` inside ``coreml.register()``;
  plugin export  the UNCHANGED model, ``torch.export.export(...).run_decompositions({})``, the same.
Each at iOS15 and iOS18, compute precision fp32 and fp16. A cell is the max |error| of the evaluator's outputs
against float64 eager, of the output peak, or what stopped the conversion / evaluation. A cell also fails when the
MIL program holds a ``complex_*``, ``stft`` or ``fft`` op. fp32 is judged at 1e-4 of the peak (or 4x eager float32's own
error where that is larger), fp16 at 1e-2 (one fp16 rounding is 4.9e-4 of a value, and a model sums many).
Each model runs in a subprocess under a time limit, and each row is appended to ``<out>.jsonl`` as it comes.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ROUTES = ["rewritten", "plugin trace", "plugin export"]
TARGETS = ["iOS15", "iOS18"]
PRECISIONS = ["fp32", "fp16"]
BOUND = {"fp32": 1e-4, "fp16": 1e-2}
FORBIDDEN = ("complex", "stft", "fft")


def _ok(err: float, precision: str, eager: float) -> bool:
    """fp32: within 1e-4 of the peak, or 4x eager float32's own error where that is larger (an ill-conditioned
    output such as an angle near a zero magnitude); fp16: within 1e-2."""
    return err <= (max(BOUND["fp32"], 4 * eager) if precision == "fp32" else BOUND["fp16"])


def _short(e: BaseException) -> str:
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200] if text else ''}".replace("|", "/")


def _flat(y):
    import torch

    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, dict):
        y = list(y.values())
    return [t for v in y for t in _flat(v)]


def _convert(route, model, args, target, precision):
    import coremltools as ct
    import numpy as np
    import torch

    import specrewrite.coreml as src

    kw = dict(convert_to="mlprogram", minimum_deployment_target=getattr(ct.target, target), skip_model_load=True,
              compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16)
    if route == "rewritten":
        return src.convert(model, args, target=target, precision=precision)
    with src.register():
        if route == "plugin trace":
            traced = torch.jit.trace(model, args, check_trace=False, strict=False)
            inputs = [ct.TensorType(name=f"x{i}", shape=a.shape, dtype=np.float32) for i, a in enumerate(args)]
            return ct.convert(traced, inputs=inputs, **kw)
        ep = torch.export.export(model, args).run_decompositions({})
        return ct.convert(ep, **kw)


def run_one(name: str, builders: str) -> dict:
    """In a subprocess: every route x target x precision cell of one model."""
    import warnings

    import numpy as np
    import torch

    from specrewrite._quiet import quiet
    from specrewrite.coreml.evaluate import evaluate, op_types

    warnings.simplefilter("ignore")
    model, args = _builders(builders)[name]()
    model = model.eval()
    with torch.no_grad():
        try:
            ref = [t.numpy() for t in _flat(copy.deepcopy(model).double()(*[a.double() for a in args]))]
        except Exception:  # noqa: BLE001 - float32 constants made in forward (whisper's filters): no float64 run
            ref = None
        eager = [t.numpy() for t in _flat(model(*args))]
    row = {"model": name, "cells": {}}
    if ref is None:
        ref, row["reference"] = eager, "float32 eager (the model makes float32 constants in forward)"
    peak = max(float(np.abs(r).max()) for r in ref) or 1.0
    row["eager_fp32"] = max(float(np.abs(e - r).max()) for e, r in zip(eager, ref)) / peak
    for route in ROUTES:
        for target in TARGETS:
            for precision in PRECISIONS:
                key = f"{route} {target} {precision}"
                t0 = time.perf_counter()
                try:
                    with quiet():
                        ml = _convert(route, model, args, target, precision)
                    left = sorted(t for t in op_types(ml) if any(w in t for w in FORBIDDEN))
                    names = [i.name for i in ml.get_spec().description.input]
                    feed = {n: a.numpy() for n, a in zip(names, args)}
                    res = evaluate(ml, feed, fp16=precision == "fp16")
                    outs = [np.asarray(res[o.name], dtype=np.float64) for o in ml.get_spec().description.output]
                    if len(outs) != len(ref):
                        cell = {"error": f"{len(outs)} outputs, eager has {len(ref)}"}
                    else:
                        err = max(float(np.abs(g.reshape(r.shape) - r).max()) for g, r in zip(outs, ref)) / peak
                        cell = {"err": err, "ok": _ok(err, precision, row["eager_fp32"]) and not left, "left": left}
                except Exception as e:  # noqa: BLE001 - a cell that fails is a finding, not the end of the row
                    cell = {"error": _short(e)}
                cell["seconds"] = round(time.perf_counter() - t0, 1)
                row["cells"][key] = cell
                print(f"{name} {key}: {cell}", file=sys.stderr, flush=True)
    return row


def _builders(which: str) -> dict:
    sys.path.insert(0, HERE)
    from portability import _builders as builders   # the same model sets as the portability matrix

    return builders(which)


def _cell_text(c) -> str:
    if c is None:
        return "-"
    if "error" in c:
        return c["error"]
    text = f"{c['err']:.1e}"
    if c["left"]:
        text += " left: " + ", ".join(c["left"])
    return text if c["ok"] else f"FAILED {text}"


def markdown(rows) -> str:
    cols = [f"{r} {t} {p}" for r in ROUTES for t in TARGETS for p in PRECISIONS]
    lines = [f"Core ML routes, {datetime.date.today()} (MIL evaluator; max error / peak of float64 eager, or of "
             f"float32 eager where the model cannot run in float64 (eager column: 'reference'); fp32 allowed 1e-4, "
             f"fp16 1e-2)", "", "| model | eager fp32 | " + " | ".join(cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for r in rows:
        cells = r.get("cells", {})
        head = (("reference" if r.get("reference") else f"{r['eager_fp32']:.1e}") if "eager_fp32" in r
                else r.get("error", "-"))
        lines.append(f"| {r['model']} | {head} | " + " | ".join(_cell_text(cells.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _brief(text: str) -> str:
    """A failure in a few words (the long form is in the .jsonl)."""
    import re

    text = text.replace("SpecRewriteError: specrewrite.coreml: ", "").replace("coremltools has no converter for ",
                                                                              "no converter: ")
    text = re.sub(r"1 op\(s\) of this model: (\w+).*", r"\1", text)
    text = re.sub(r"aten\.(\w+)\.\w+ .*", r"\1", text)
    for long, short in (("GuardOnDataDependentSymNode", "torch.export: guard on data"),
                        ("KeyError: 'torch._subclasses.fake_tensor'", "torch.export: numpy in forward"),
                        ("NotImplementedError: Dynamic padding", "padding by a data-dependent amount")):
        if long in text:
            return short
    return text[:48]


def compact(rows) -> str:
    """One cell per route and precision: the worst error over the targets, or the first failure."""
    lines = ["| model | " + " | ".join(f"{r} {p}" for r in ROUTES for p in PRECISIONS) + " |",
             "|---|" + "---|" * (len(ROUTES) * len(PRECISIONS))]
    for r in rows:
        cells = r.get("cells", {})
        out = []
        for route in ROUTES:
            for p in PRECISIONS:
                cs = [cells.get(f"{route} {t} {p}") for t in TARGETS]
                bad = [c for c in cs if c is None or "error" in c or not c["ok"]]
                if not cs or not cells:
                    out.append(r.get("error", "-")[:60])
                elif bad:
                    out.append(_brief(_cell_text(bad[0])))
                else:
                    out.append(f"{max(c['err'] for c in cs):.1e}")
        lines.append(f"| {r['model']} | " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="")
    p.add_argument("--set", choices=["public", "sweep", "all"], default="public")
    p.add_argument("--out", default=os.path.join(HERE, "results", "coreml_routes.md"))
    p.add_argument("--timeout", type=int, default=3600)
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--render", help="only render the rows of this .jsonl (the last row of each model) as the "
                                    "compact table")
    a = p.parse_args(argv)
    if a.render:
        rows = {}
        for line in open(a.render):
            row = json.loads(line)
            for key, c in row.get("cells", {}).items():   # judged again (the rule may have changed since)
                if "err" in c:
                    c["ok"] = _ok(c["err"], key.split()[-1], row["eager_fp32"]) and not c["left"]
            rows[row["model"]] = row
        print(compact(list(rows.values())))
        return 0
    if a.one:
        print(json.dumps(run_one(a.one, a.set)))
        return 0
    names = [m for m in (a.models.split(",") if a.models else list(_builders(a.set))) if m]
    sys.path.insert(0, HERE)
    from portability import rows_in_subprocesses

    rows = rows_in_subprocesses(__file__, names, ["--set", a.set], a.timeout, a.out,
                                lambda name, why: {"model": name, "error": why})
    text = markdown(rows) + "\n" + compact(rows)
    with open(a.out, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
