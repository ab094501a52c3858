"""specrewrite benchmark suite: rewritten ONNX (every strategy x mode) vs native ONNX STFT vs torch eager.

    python benchmarks/run.py                 # full run (ORT 1 and 2 threads, OpenVINO if importable)
    python benchmarks/run.py --quick         # smoke run, < 3 minutes
    python benchmarks/run.py --filter 'power-(512|1024)' --threads 1 --no-real

See benchmarks/README.md for what is measured and how.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
try:
    import specrewrite  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

import torch  # noqa: E402

import candidates as C  # noqa: E402
import report as P  # noqa: E402
import runtimes as R  # noqa: E402
import timing as T  # noqa: E402

N_FFT_HOP = [(400, 160), (512, 128), (1024, 256), (2048, 512), (4096, 1024)]
SECONDS = [10.0, 30.0]
QUICK_N_FFT_HOP = [(512, 128)]
QUICK_SECONDS = [10.0]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short smoke run (2 n_fft, 10 s audio, few reps)")
    p.add_argument("--out", default=None,
                   help="JSON with raw medians (default results/latest.json; --quick: results/quick.json)")
    p.add_argument("--md", default=None, help="markdown report (default: --out with .md)")
    p.add_argument("--threads", type=int, nargs="+", default=None, help="thread counts (default 1 2; quick: 1)")
    p.add_argument("--filter", default=None,
                   help="regex on setting ids like 'power-512-10s', 'mel-4096-30s', 'istft-400-10s', "
                        "'real-whisper_logmel_encoder'")
    p.add_argument("--no-openvino", action="store_true", help="skip OpenVINO even if importable")
    p.add_argument("--no-real", action="store_true", help="skip the public real models")
    p.add_argument("--cases-dir", default=None, help="real-model case builders (default: corpus-public)")
    p.add_argument("--budget", type=float, default=None, help="seconds of timing per candidate per group")
    p.add_argument("--max-reps", type=int, default=None)
    p.add_argument("--min-reps", type=int, default=None)
    p.add_argument("--ort-spin", action="store_true",
                   help="let ORT worker threads spin (default off: idle sessions' spinning distorts interleaving)")
    p.add_argument("--case-timeout", type=float, default=None, help="seconds per real model (default 240; quick 120)")
    p.add_argument("--real-budget", type=float, default=None,
                   help="seconds for all real models together (default 900; quick 600)")
    p.add_argument("--ov-native-max-frames", type=int, default=2000,
                   help="skip OpenVINO on the native STFT file above this many frames (its compile is slow)")
    p.add_argument("--keep-onnx", default=None, help="keep the exported files in this folder")
    p.add_argument("--report-only", action="store_true",
                   help="no measurement: rebuild the tables, goals and markdown from the JSON at --out")
    a = p.parse_args(argv)
    if a.out is None:
        a.out = os.path.join(HERE, "results", "quick.json" if a.quick else "latest.json")
    if a.threads is None:
        a.threads = [1] if a.quick else [1, 2]
    a.budget = a.budget if a.budget is not None else (0.08 if a.quick else 0.2)
    a.max_reps = a.max_reps if a.max_reps is not None else (5 if a.quick else 20)
    a.min_reps = a.min_reps if a.min_reps is not None else (2 if a.quick else 3)
    # (each case times four captures / rewrites in fresh processes of their own: about 4 x 5 s of start-up)
    a.case_timeout = a.case_timeout if a.case_timeout is not None else (120.0 if a.quick else 240.0)
    a.real_budget = a.real_budget if a.real_budget is not None else (600.0 if a.quick else 900.0)
    if a.md is None:
        a.md = os.path.join(os.path.dirname(os.path.abspath(a.out)), "latest.md") \
            if os.path.basename(a.out) == "latest.json" else os.path.splitext(a.out)[0] + ".md"
    return a


def machine() -> dict:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def setting_ids(quick: bool):
    for op in C.OPS:
        for n_fft, hop in (QUICK_N_FFT_HOP if quick else N_FFT_HOP):
            for sec in (QUICK_SECONDS if quick else SECONDS):
                yield op, n_fft, hop, sec, f"{op}-{n_fft}-{sec:g}s"


def bench_setting(op, n_fft, hop, sec, args, runtimes, workdir, log):
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    built = C.build_setting(op, n_fft, hop, sec, workdir)
    t_export = time.perf_counter() - t0
    cands, ref = built["cands"], built["ref"]
    out = {"op": op, "n_fft": n_fft, "hop": hop, "seconds": sec, "samples": int(sec * C.SAMPLE_RATE),
           "cands": {n: {k: v for k, v in c.items() if k not in ("arrays", "path")} for n, c in cands.items()},
           "errors": {}, "timings": {}, "load_errors": {}}
    phase = out["phase_s"] = {}
    for t in args.threads:
        for rt in runtimes:
            tp = time.perf_counter()
            runners = {}
            for name, c in cands.items():
                if "path" not in c or "error" in c:
                    continue
                frames = out["samples"] // hop + 1
                if rt == "openvino" and name == "native" and frames > args.ov_native_max_frames:
                    out["load_errors"][f"{rt}/{name}"] = (
                        f"skipped: {frames} frames > --ov-native-max-frames {args.ov_native_max_frames} (OpenVINO's "
                        "compile of the ONNX STFT op grows ~quadratically with frames: 104 s for 3751 frames)")
                    continue
                try:
                    tl = time.perf_counter()
                    runners[name] = R.make_runner(rt, c["path"], t, c["arrays"])
                    out.setdefault("load_s", {}).setdefault(f"{rt}/{t}t", {})[name] = time.perf_counter() - tl
                except Exception as e:  # noqa: BLE001
                    msg = f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"
                    out["load_errors"][f"{rt}/{name}"] = msg
            if t == args.threads[0]:
                errs = out["errors"].setdefault(rt, {})
                for name, r in list(runners.items()):
                    try:
                        errs[name] = R.rel_error(r(), ref)
                    except Exception as e:  # noqa: BLE001
                        out["load_errors"][f"{rt}/{name}"] = f"run failed: {type(e).__name__}: {str(e)[:300]}"
                        del runners[name]
            tt = time.perf_counter()
            out["timings"][f"{rt}/{t}t"] = T.interleaved(runners, args.budget, args.min_reps, args.max_reps)
            del runners
            phase[f"{rt}/{t}t"] = [round(tt - tp, 1), round(time.perf_counter() - tt, 1)]  # load+check, timing
        torch.set_num_threads(t)
        eager = {"eager": R.EagerRunner(built["native"], [built["x"]])}
        sr_mod, bases = C.rewritten_module(op, n_fft, hop, "auto", "store", built["native"])
        eager["sr:auto:store"] = R.EagerRunner(sr_mod, [built["x"]] + bases)
        if t == args.threads[0]:
            out["errors"]["torch"] = {n: R.rel_error(r(), ref) for n, r in eager.items()}
        tt = time.perf_counter()
        out["timings"][f"torch/{t}t"] = T.interleaved(eager, args.budget, args.min_reps, args.max_reps)
        phase[f"torch/{t}t"] = [0.0, round(time.perf_counter() - tt, 1)]
    out["export_s"], out["wall_s"] = t_export, time.perf_counter() - t0
    out["loadavg"] = [load0, os.getloadavg()[0]]
    d = out["timings"].get(f"{runtimes[0]}/{args.threads[0]}t", {})
    dm, nm = d.get(C.DEFAULT, {}).get("median_ms"), d.get("native", {}).get("median_ms")
    log(f"  {op:5s} {n_fft:4d}/{hop:<4d} {sec:g}s: export {t_export:5.1f}s, total {out['wall_s']:5.1f}s; "
        f"{runtimes[0]}/{args.threads[0]}t auto/store {P.fmt_ms(dm)} ms, native {P.fmt_ms(nm)} ms; "
        + " ".join(f"{k} {v[0]:.0f}+{v[1]:.0f}s" for k, v in phase.items()))
    return out


def write_json(path, data):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=str)
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    if args.report_only:
        with open(args.out) as f:
            data = json.load(f)
        return finish(data, args)
    R.ORT_SPIN = args.ort_spin
    filt = re.compile(args.filter).search if args.filter else None
    runtimes = ["ort"]
    ov_note = R.openvino_available()
    if args.no_openvino:
        ov_note = "disabled (--no-openvino)"
    if ov_note is None:
        runtimes.append("openvino")
    torch_threads = torch.get_num_threads()
    t_start = time.perf_counter()
    workdir = args.keep_onnx or tempfile.mkdtemp(prefix="specrewrite-bench-")
    os.makedirs(workdir, exist_ok=True)

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.0f}s] {msg}", flush=True)

    data = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": machine(),
            "versions": R.versions(), "openvino": ov_note or "used", "complete": False,
            "config": {"quick": args.quick, "threads": args.threads, "budget_s": args.budget,
                       "max_reps": args.max_reps, "min_reps": args.min_reps, "ort_spin": args.ort_spin,
                       "opset": C.OPSET, "filter": args.filter, "runtimes": runtimes},
            "settings": [], "real_models": []}
    log(f"runtimes {runtimes}, threads {args.threads}, workdir {workdir}"
        + (f" (OpenVINO: {ov_note})" if ov_note else ""))
    try:
        for op, n_fft, hop, sec, sid in setting_ids(args.quick):
            if filt and not filt(sid):
                continue
            data["settings"].append(bench_setting(op, n_fft, hop, sec, args, runtimes, workdir, log))
            write_json(args.out, data)
        if not args.no_real:
            import realmodels

            cases_dir = args.cases_dir or realmodels.DEFAULT_CASES_DIR
            data["rewrite_available"] = realmodels.get_rewrite() is not None
            log(f"real models from {cases_dir} (specrewrite.rewrite "
                f"{'available' if data['rewrite_available'] else 'not available'})")
            data["real_models"] = realmodels.bench_all(
                cases_dir, args.threads, runtimes, workdir, args.budget, args.max_reps, args.quick,
                args.case_timeout, args.real_budget, filt, log)
    finally:
        torch.set_num_threads(torch_threads)
        if not args.keep_onnx:
            shutil.rmtree(workdir, ignore_errors=True)
    data["complete"] = True
    data["wall_s"] = time.perf_counter() - t_start
    return finish(data, args)


def finish(data, args):
    """Goals, JSON, console table and markdown from the collected data."""
    runtimes = data["config"]["runtimes"]
    want = [f"{rt}/{t}t" for rt in runtimes for t in data["config"]["threads"]]
    data["goals"] = [{"goal": g, "verdict": v, "detail": d} for g, v, d in
                     P.goals(data["settings"], data["real_models"], want)]
    write_json(args.out, data)
    rows = P.ratio_rows(data["settings"])
    print()
    print("Latency ratios: rewritten (auto strategy, store mode) / native ONNX STFT op, / torch.stft eager")
    print("(* native istft needed an int64 index patch to load in ONNX Runtime; see notes)")
    print(P.console_table(rows))
    print()
    for g in data["goals"]:
        print(f"{g['verdict']:4s}  {g['goal']}: {g['detail']}")
    import markdown_report

    markdown_report.write(args.md, data)
    print(f"\nJSON: {args.out}\nmarkdown: {args.md}\ntotal {data.get('wall_s', 0):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
