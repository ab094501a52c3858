"""Public real models (/work/shared/corpus-public/cases/*.py): rewrite time and latency before / after.

Each case runs in its own subprocess (``python realmodels.py CASE OUT_JSON ...``) under a time limit, writing its
JSON after every stage, so a slow export still leaves the rewrite time and eager latencies. Stages:

1. ``build()`` (skipped with a note when the case's package does not import), eager latency of the original;
2. ``specrewrite.rewrite(model, inputs)`` timed ("not available" while the library has none), eager latency and
   error of the rewritten model;
3. export of the original (native; may hold STFT/DFT ops) and of the rewritten model with
   ``torch.onnx.export(dynamo=True)``, then interleaved latency in ONNX Runtime / OpenVINO where they load.

With --quick only build and rewrite run (no latency, no export).
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import subprocess
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CASES_DIR = "/work/shared/corpus-public/cases"


def get_rewrite():
    """specrewrite.rewrite if the library has it, else None."""
    try:
        import specrewrite
    except Exception:  # noqa: BLE001
        return None
    fn = getattr(specrewrite, "rewrite", None)
    if isinstance(fn, types.ModuleType):
        fn = getattr(fn, "rewrite", None)
    return fn if callable(fn) else None


def case_files(cases_dir: str):
    return sorted(glob.glob(os.path.join(cases_dir, "*.py")))


def _flat(out):
    from specrewrite.rewrite import _flat as flat

    return flat(out)


def _rel(a, b):
    from specrewrite.rewrite import max_rel_err

    return max_rel_err(a, b)


def _plain_capture_s(model, inputs):
    """Seconds of a plain static ``torch.export.export`` of the model (or, where export cannot capture it, of a
    make_fx trace with the example inputs), after one warm-up export of a trivial module so that neither it nor
    the rewrite after it pays torch.export's first-call set-up: the yardstick of the rewrite-time goal."""
    import torch
    from torch.fx.experimental.proxy_tensor import make_fx

    import candidates as C

    with C.quiet():
        torch.export.export(torch.nn.Linear(2, 2), (torch.randn(1, 2),))
        t0 = time.perf_counter()
        try:
            torch.export.export(model, tuple(inputs), strict=False)
            return time.perf_counter() - t0, "torch.export"
        except Exception:  # noqa: BLE001 - not capturable by export: the trace is the yardstick
            t0 = time.perf_counter()
            with torch.no_grad():
                make_fx(lambda *a: model(*a), tracing_mode="real", pre_dispatch=True,
                        _error_on_data_dependent_ops=False)(*inputs)
            return time.perf_counter() - t0, "make_fx trace"


def _warm_up() -> float:
    """Seconds of one-time set-up paid before anything is timed: a static and a dynamic torch.export and a
    specrewrite.rewrite of a small stft model (imports, torch.export's symbolic-shape machinery, our lazy modules),
    so that neither yardstick nor rewrite pays what a process pays once."""
    import torch

    import candidates as C

    class Tiny(torch.nn.Module):
        def forward(self, x):
            z = torch.stft(x, 64, 16, window=torch.hann_window(64), return_complex=True)
            return z.abs().mean(-1)

    x = torch.randn(2, 4000)
    t0 = time.perf_counter()
    with C.quiet():
        torch.export.export(Tiny(), (x,), strict=False)
        auto = torch.export.Dim.AUTO
        torch.export.export(Tiny(), (x,), dynamic_shapes=({0: auto, 1: auto},), strict=False)
        rewrite = get_rewrite()
        if rewrite is not None:
            rewrite(Tiny(), (x[:1],))
    return time.perf_counter() - t0


def _dynamic_yardstick(model, inputs, axes):
    """(inputs, dynamic_shapes) for a plain torch.export with the axes the rewrite kept dynamic (Dim.AUTO), a
    batch of 1 taken as 2 as the rewrite captures it (torch.export specialises a size of 1)."""
    import inspect

    import torch

    names = list(inspect.signature(model.forward).parameters)
    spec = [None] * len(inputs)
    args = list(inputs)
    for ax in axes or []:
        if not ax.get("dynamic") or ax.get("input") not in names:
            continue
        i, a = names.index(ax["input"]), ax["axis"]
        if i >= len(args) or not torch.is_tensor(args[i]):
            continue
        spec[i] = dict(spec[i] or {})
        spec[i][a] = torch.export.Dim.AUTO
        if args[i].shape[a] == 1:
            args[i] = torch.cat([args[i], args[i]], dim=a)
    return tuple(args), tuple(spec)


def _measure_fresh(path, what: str, res: dict, axes=None, timeout: float = 600.0):
    """One of ``rewrite_s``, ``rewrite_static_s``, ``export_s``, ``export_dynamic_s`` measured in a fresh process
    (the same warm-up first), so that no measurement inherits the model's first symbolic trace from another: in
    one process the second capture of a model is 0.6 s faster (speechbrain), whichever it is."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        out, ax = os.path.join(d, "m.json"), os.path.join(d, "axes.json")
        with open(ax, "w") as f:
            json.dump(axes or [], f)
        cmd = [sys.executable, os.path.abspath(__file__), path, out, "--measure", what, "--axes", ax]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            with open(out) as f:
                got = json.load(f)
        except (subprocess.TimeoutExpired, OSError, ValueError) as e:
            res["notes"].append(f"{what} in a fresh process: {type(e).__name__}")
            return None
    if got.get("error"):
        res["notes"].append(f"{what}: {got['error']}")
    key = {"rewrite": "rewrite_s", "rewrite_static": "rewrite_static_s", "export": "export_s",
           "export_dynamic": "export_dynamic_s"}[what]
    if got.get("seconds") is not None:
        res[key] = got["seconds"]
    if got.get("how"):
        res["export_how"] = got["how"]
    return got


def measure_main(path, out_json, what, axes_json):
    """The child of ``_measure_fresh``."""
    import torch

    import candidates as C

    name = os.path.basename(path)[:-3]
    spec = importlib.util.spec_from_file_location(f"case_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    with C.quiet():
        spec.loader.exec_module(mod)
        model, inputs = mod.build()
    inputs = tuple(inputs)
    with open(axes_json) as f:
        axes = json.load(f)
    got = {"warm_up_s": _warm_up()}
    rewrite = get_rewrite()
    try:
        if what in ("rewrite", "rewrite_static"):
            with C.quiet():
                t0 = time.perf_counter()
                out = rewrite(model, inputs, **({"dynamic_shapes": False} if what == "rewrite_static" else {}))
                got["seconds"] = time.perf_counter() - t0
            got["axes"] = getattr(getattr(out, "specrewrite_report", None), "axes", None)
        elif what == "export":
            got["seconds"], got["how"] = _plain_capture_s(model, inputs)
        else:
            res = {"notes": []}
            _dynamic_capture_s(model, inputs, axes, res)
            got["seconds"] = res.get("export_dynamic_s")
            got["error"] = "; ".join(res["notes"])
    except Exception as e:  # noqa: BLE001
        got["error"] = f"{type(e).__name__}: {str(e)[:160]}"
    with open(out_json, "w") as f:
        json.dump(got, f, default=str)


def _dynamic_capture_s(model, inputs, axes, res):
    """``export_dynamic_s``: a plain torch.export with the axes the rewrite kept dynamic (Dim.AUTO), the
    default rewrite's yardstick (the static capture where the rewrite kept none)."""
    import torch

    import candidates as C

    if any(ax.get("dynamic") for ax in axes or []):
        args, spec = _dynamic_yardstick(model, inputs, axes)
        with C.quiet():
            t0 = time.perf_counter()
            try:
                torch.export.export(model, args, dynamic_shapes=spec, strict=False)
                res["export_dynamic_s"] = time.perf_counter() - t0
            except Exception as e:  # noqa: BLE001 - no dynamic capture: the static one is the yardstick
                res["notes"].append(f"plain dynamic export failed: {type(e).__name__}: {str(e)[:120]}")
    else:
        res["export_dynamic_s"] = _plain_capture_s(model, inputs)[0]


def run_case(path, out_json, threads, runtimes, budget_s, max_reps, quick, workdir):
    """The child process: every stage, JSON written after each."""
    sys.path.insert(0, HERE)
    import torch

    import candidates as C
    import runtimes as R
    import timing as T

    name = os.path.basename(path)[:-3]
    res = {"case": name, "timings": {}, "notes": []}

    def save():
        with open(out_json, "w") as f:
            json.dump(res, f, indent=1, default=str)

    def eager_times(runners, stage):
        for t in threads:
            torch.set_num_threads(t)
            for k, v in T.interleaved(runners, budget_s, 2, max_reps).items():
                res["timings"].setdefault(f"torch/{t}t", {})[k] = v
        res["stage"] = stage
        save()

    spec = importlib.util.spec_from_file_location(f"case_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    try:
        with C.quiet():
            spec.loader.exec_module(mod)
            model, inputs = mod.build()
    except (ImportError, ModuleNotFoundError) as e:
        res["notes"].append(f"skipped: package not importable ({type(e).__name__}: {e})")
        return save()
    except Exception as e:  # noqa: BLE001
        res["notes"].append(f"skipped: build failed ({type(e).__name__}: {str(e)[:200]})")
        return save()
    inputs = tuple(inputs)
    with torch.inference_mode():
        y0 = model(*inputs)
    res["stage"] = "build"
    if not quick:
        eager_times({"eager": R.EagerRunner(model, list(inputs))}, "eager")
    # (the rewrite before any plain capture: a capture can leave fake tensors in a model's own caches, whisper's
    # lru_cache of its mel filters, which the rewrite's eager reference run then refuses)
    rewrite = get_rewrite()
    rewritten = None
    if rewrite is None:
        res["notes"].append("specrewrite.rewrite not available")
    else:
        try:
            with C.quiet():
                rewritten = rewrite(model, inputs)   # for its error and latency; timed in a fresh process below
            with torch.inference_mode():
                res["eager_rewritten_err"] = _rel(rewritten(*inputs), y0)
            res["stage"] = "rewrite"
            save()
            if not quick:
                eager_times({"eager": R.EagerRunner(model, list(inputs)),
                             "eager_rewritten": R.EagerRunner(rewritten, list(inputs))}, "rewrite")
        except Exception as e:  # noqa: BLE001
            res["notes"].append(f"rewrite failed: {type(e).__name__}: {str(e)[:200]}")
            rewritten = None
            save()
    # every timed capture and rewrite, each in a fresh process (``_measure_fresh``)
    got = _measure_fresh(path, "rewrite", res) or {}
    res["first_call_s"] = got.get("warm_up_s")
    for what in ("rewrite_static", "export"):
        _measure_fresh(path, what, res)
    _measure_fresh(path, "export_dynamic", res, axes=got.get("axes"))
    save()
    if quick:
        return save()
    arrays = [t.detach().numpy() for t in inputs]
    files = {}
    for label, m in (("rewritten", rewritten), ("native", model)):
        if m is None:
            continue
        p = os.path.join(workdir, f"real_{name}_{label}.onnx")
        info = C.export(m, inputs, p)
        res[f"{label}_export"] = {k: v for k, v in info.items() if k != "ops"}
        res[f"{label}_export"]["spectral_ops"] = sorted(set(info.get("ops", [])) & C.SPECTRAL_ONNX)
        res[f"{label}_export"]["op_types"] = sorted(set(info.get("ops", [])))
        save()
        if "error" in info:
            res["notes"].append(f"{label} export failed")
            continue
        if label == "native" and C.fix_index_types(p):
            res["native_export"]["patched"] = "int32 ScatterND/GatherND indices cast to int64"
        files[label] = p
    ref = _flat(y0)[0].detach().double().numpy()
    for t in threads:
        for rt in runtimes:
            runners = {}
            for label, p in files.items():
                try:
                    runners[label] = R.make_runner(rt, p, t, arrays)
                except Exception as e:  # noqa: BLE001
                    res.setdefault("load_errors", {})[f"{rt}/{label}"] = f"{type(e).__name__}: {str(e)[:200]}"
            for label, r in list(runners.items()):
                try:
                    res.setdefault("onnx_err", {})[f"{rt}/{label}"] = R.rel_error(r(), ref)
                except Exception as e:  # noqa: BLE001
                    res.setdefault("load_errors", {})[f"{rt}/{label}"] = f"run: {type(e).__name__}: {str(e)[:200]}"
                    del runners[label]
            if runners:
                res["timings"][f"{rt}/{t}t"] = T.interleaved(runners, budget_s, 2, max_reps)
            save()
    for label, p in files.items():   # peak memory of an ORT session of each file, 1 thread, fresh process
        try:
            res.setdefault("ort_peak_mb", {})[label] = R.ort_peak_mb(p, 1, arrays, workdir)
        except Exception as e:  # noqa: BLE001
            res["notes"].append(f"peak memory of the {label} file: {type(e).__name__}: {str(e)[:160]}")
        save()
    res["stage"] = "done"
    return save()


def bench_all(cases_dir, threads, runtimes, workdir, budget_s, max_reps, quick, case_timeout_s, total_s,
              filt=None, log=print) -> list:
    """Run every case in a subprocess; returns the per-case dicts (with 'note' and 'wall_s')."""
    out = []
    t_all = time.perf_counter()
    for path in case_files(cases_dir):
        name = os.path.basename(path)[:-3]
        if filt and not filt(f"real-{name}"):
            continue
        left = total_s - (time.perf_counter() - t_all)
        if left < 10:
            out.append({"case": name, "note": "skipped: real-model time budget used up", "timings": {}})
            log(f"  real model {name}: skipped (time budget)")
            continue
        js = os.path.join(workdir, f"real_{name}.json")
        cmd = [sys.executable, os.path.abspath(__file__), path, js, "--threads", *map(str, threads),
               "--runtimes", *runtimes, "--budget", str(budget_s), "--max-reps", str(max_reps),
               "--workdir", workdir] + (["--quick"] if quick else [])
        t0 = time.perf_counter()
        limit = min(case_timeout_s, left)
        timed_out = False
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
            tail = (proc.stderr or "").strip().splitlines()[-1:] if proc.returncode else []
        except subprocess.TimeoutExpired:
            timed_out, tail = True, []
        try:
            with open(js) as f:
                r = json.load(f)
        except (OSError, ValueError):
            r = {"case": name, "timings": {}, "notes": []}
        if timed_out:
            r["notes"].append(f"stopped after {limit:.0f} s (last completed stage: {r.get('stage', 'none')})")
        if tail:
            r["notes"].append(f"child failed: {tail[0][:200]}")
        r["note"] = "; ".join(r.pop("notes", []))
        r["wall_s"] = time.perf_counter() - t0
        log(f"  real model {name}: {r['note'] or 'ok'} ({r['wall_s']:.0f} s)")
        out.append(r)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("case")
    p.add_argument("out_json")
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--runtimes", nargs="+", default=["ort"])
    p.add_argument("--budget", type=float, default=0.3)
    p.add_argument("--max-reps", type=int, default=20)
    p.add_argument("--workdir", default="/tmp")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--measure", default=None, help="rewrite | rewrite_static | export | export_dynamic, in this process")
    p.add_argument("--axes", default=None, help="JSON file: the rewrite's axes (for --measure export_dynamic)")
    a = p.parse_args()
    sys.path.insert(0, HERE)
    try:
        import specrewrite  # noqa: F401
    except ImportError:
        sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
    if a.measure:
        measure_main(a.case, a.out_json, a.measure, a.axes)
    else:
        run_case(a.case, a.out_json, a.threads, a.runtimes, a.budget, a.max_reps, a.quick, a.workdir)
