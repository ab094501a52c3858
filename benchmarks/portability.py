"""Portability matrix: each real model through ``specrewrite.export`` to every target, beside the unchanged model
through each tool's own exporter.

    python benchmarks/portability.py [--models a,b] [--out benchmarks/results/portability.md]

Rows: the real models of ``tests/test_realmodels.py`` (``--set public``, the default) or the 23 models of the
sweep in ``tests/test_realmodels_more.py`` (``--set sweep``; random weights, packages from
``scripts/install_realmodels.sh``). Columns: ONNX Runtime, onnx.reference, OpenVINO (when installed), Core ML
(MIL evaluator, fp32 and fp16), LiteRT, ExecuTorch. A cell is the max error against eager (of the output peak,
at the example and at a second length where the file keeps time dynamic), or the blocker in a few words. Each
model runs in its own subprocess under a time limit, so one slow or crashing converter cannot stop the table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COLUMNS = ["onnxruntime", "onnx.reference", "openvino (CPU, f32)", "coreml fp32", "coreml fp16", "litert", "executorch"]


def _cell_from_checks(result) -> str:
    if result is None:
        return "-"
    errs = [c["max_rel_err"] for c in result["checks"] if c["max_rel_err"] is not None]
    if result["spectral_ops_left"]:
        return "left: " + ", ".join(result["spectral_ops_left"])[:40]
    if not result["checks"]:
        return "not run"
    bad = [c for c in result["checks"] if not c["ok"]]
    if bad:
        return "FAILED: " + (bad[0]["note"] or "mismatch")[:60]
    return f"{max(errs):.1e}" + ("" if result["dynamic_axes"] else " (fixed shape)")


def _short(e: BaseException) -> str:
    import re

    text = re.sub(r"\x1b\[[0-9;]*m|\[[0-9;]*m", "", str(e)).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:90] if text else ''}".replace("|", "/")


def run_one(name: str, targets=(), native: bool = True) -> dict:
    """In a subprocess: every target (or those named in ``targets``: onnx, coreml, litert, executorch) for the
    rewritten model, and each tool's exporter on the original (unless not ``native``); seconds per target kept."""
    import tempfile

    import torch

    from specrewrite.export import export_many

    model, args = _builders()[name]()
    out = {"model": name, "rewritten": {}, "native": {}}
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        cells = out["rewritten"]
        jobs = [("onnx", "m.onnx", "fp32"), ("coreml fp32", "m.mlpackage", "fp32"),
                ("coreml fp16", "m16.mlpackage", "fp16"), ("litert", "m.tflite", "fp32"),
                ("executorch", "m.pte", "fp32")]
        out["target_seconds"] = times = {}
        for label, fname, precision in jobs:
            if targets and label.split()[0] not in targets:
                continue
            t1 = time.perf_counter()
            print(f"{name}: {label} ...", file=sys.stderr, flush=True)
            try:
                (r,) = export_many(model, args, [os.path.join(d, fname)], precision=precision, strict=False)
            except Exception as e:  # noqa: BLE001 - a target failing is a cell, not the end of the row
                for col in (("onnxruntime", "onnx.reference", "openvino (CPU, f32)") if label == "onnx" else (label,)):
                    cells[col] = _short(e)
                continue
            finally:
                times[label] = round(time.perf_counter() - t1, 1)
            r = r.to_dict()
            if label == "onnx":
                for rt in ("onnxruntime", "onnx.reference", "openvino (CPU, f32)"):
                    sub = dict(r, checks=[c for c in r["checks"] if c["runtime"] == rt])
                    cells[rt] = _cell_from_checks(sub) if sub["checks"] else _absent(rt)
            else:
                cells[label] = _cell_from_checks(r)
            print(json.dumps(out), flush=True)   # a partial row: what a time limit leaves
        out["seconds"] = time.perf_counter() - t0
        out["native"] = {}
        if native:
            real = os.fdopen(os.dup(1), "w")   # (the exporters run with stdout silenced)

            def flush():
                real.write(json.dumps(out) + "\n")
                real.flush()
            _native(model, args, d, out["native"], flush)
    return out


def _builders(which: str = "all") -> dict:
    """name -> builder() returning (model, example inputs): the public models and / or the sweep."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    out = {}
    if which in ("public", "all"):
        import test_realmodels as R

        out.update({k: v[0] for k, v in R.BUILDERS.items()})
    if which in ("sweep", "all"):
        import test_realmodels_more as S

        out.update(S.BUILDERS)
    return out


def _absent(runtime: str) -> str:
    if runtime.startswith("openvino"):
        try:
            import openvino  # noqa: F401
        except ImportError:
            return "not installed"
    return "not run (graph too large for onnx.reference)" if runtime == "onnx.reference" else "-"


def _native(model, args, d, cells: dict, flush=lambda: None) -> dict:
    """Each tool's exporter on the unchanged model: does it convert, and what is left (or what stops it). Fills
    ``cells``, calling ``flush()`` after each tool (a partial row, kept where a time limit stops the rest)."""
    import warnings

    import torch

    from specrewrite._quiet import quiet

    warnings.simplefilter("ignore")
    with quiet():
        try:
            path = os.path.join(d, "native.onnx")
            torch.onnx.export(model, args, path, dynamo=True)
            import onnx

            ops = {n.op_type for n in onnx.load(path).graph.node}
            left = sorted(ops & {"STFT", "DFT"})
            try:
                import onnxruntime as ort

                sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                sess.run(None, {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)})
                cells["onnxruntime"] = "runs" + (f" (with {', '.join(left)}: CPU provider only)" if left else "")
            except Exception as e:  # noqa: BLE001
                cells["onnxruntime"] = _short(e)
        except Exception as e:  # noqa: BLE001
            cells["onnxruntime"] = "export: " + _short(e)
        flush()
        try:
            import coremltools as ct

            traced = torch.jit.trace(model, args, check_trace=False, strict=False)
            ct.convert(traced, inputs=[ct.TensorType(shape=a.shape) for a in args], convert_to="mlprogram",
                       skip_model_load=True)
            cells["coreml fp32"] = "converts"
        except Exception as e:  # noqa: BLE001
            cells["coreml fp32"] = _short(e)
        flush()
        try:
            import litert_torch

            litert_torch.convert(model, args)
            cells["litert"] = "converts"
        except Exception as e:  # noqa: BLE001
            cells["litert"] = _short(e)
        flush()
        try:
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower

            ep = torch.export.export(model, args)
            to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
            cells["executorch"] = "converts"
        except Exception as e:  # noqa: BLE001
            cells["executorch"] = _short(e)
    return cells


def rows_in_subprocesses(script, names, extra, timeout, out, failed) -> list:
    """``script --one NAME *extra`` for each name, each in its own subprocess under ``timeout`` seconds: its last
    JSON line is the row (``failed(name, why)`` where there is none). Each row is appended to ``<out>.jsonl`` as it
    comes, so a long run that is stopped keeps what it measured."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    rows = []
    for name in names:
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, script, "--one", name, *extra], capture_output=True, text=True,
                                  timeout=timeout, cwd=ROOT)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            row = json.loads(line[-1]) if line else failed(name, proc.stderr.strip()[-200:])
        except subprocess.TimeoutExpired as e:
            out_text = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            line = [ln for ln in out_text.splitlines() if ln.startswith("{")]
            row = json.loads(line[-1]) if line else failed(name, f"timeout {timeout} s")
            row["timeout"] = f"stopped after {timeout} s"
        row["wall"] = time.perf_counter() - t0
        rows.append(row)
        with open(os.path.splitext(out)[0] + ".jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{name}: {row['wall']:.0f} s", file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="")
    p.add_argument("--set", choices=["public", "sweep", "all"], default="public")
    p.add_argument("--out", default=os.path.join(HERE, "results", "portability.md"))
    p.add_argument("--timeout", type=int, default=900)
    p.add_argument("--targets", default="", help="comma list of onnx, coreml, litert, executorch (default: all)")
    p.add_argument("--no-native", action="store_true", help="skip the unchanged model's exporters")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    targets = tuple(t for t in a.targets.split(",") if t)
    if a.one:
        print(json.dumps(run_one(a.one, targets, not a.no_native)))
        return 0
    names = [m for m in (a.models.split(",") if a.models else list(_builders(a.set))) if m]
    extra = (["--targets", a.targets] if targets else []) + (["--no-native"] if a.no_native else [])
    rows = rows_in_subprocesses(__file__, names, extra, a.timeout, a.out,
                                lambda name, why: {"model": name, "rewritten": {"error": why}, "native": {}})
    text = _markdown(rows)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)
    print(text)
    return 0


def _markdown(rows) -> str:
    import platform

    import torch

    date = datetime.date.today().isoformat()
    head = (f"Measured {date} on {platform.machine()} ({os.cpu_count()} cores), torch {torch.__version__}: "
            "max error of the output peak against eager (at the example and at a second length where the file "
            "keeps time dynamic), or what stops it.\n\n")
    out = [head, "**specrewrite.export (rewritten model)**\n",
           "| model | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for r in rows:
        cells = r["rewritten"]
        if "error" in cells:
            out.append(f"| {r['model']} | " + " | ".join([cells["error"][:60]] + [""] * (len(COLUMNS) - 1)) + " |")
            continue
        gap = "not reached: " + r["timeout"] if r.get("timeout") else "-"
        out.append(f"| {r['model']} | " + " | ".join(cells.get(c, gap) for c in COLUMNS) + " |")
    cols = ["onnxruntime", "coreml fp32", "litert", "executorch"]
    out += ["", "**The unchanged model through each tool's own exporter**\n",
            "| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        out.append(f"| {r['model']} | " + " | ".join(r["native"].get(c, "-").replace("|", "/") for c in cols)
                   + " |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
