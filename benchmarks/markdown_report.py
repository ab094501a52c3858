"""benchmarks/results/latest.md: the tables the README includes."""
from __future__ import annotations

import os

import report as P
from candidates import DEFAULT, MODES, STRATEGIES


def _notes(data):
    """Every distinct message once, with the settings it occurred in."""
    import re

    groups = {}

    def add(who, msg, tag):
        msg = re.sub(r"/tmp/\S+?\.onnx", "<file>", str(msg))
        groups.setdefault((who, msg), []).append(tag)

    for s in data["settings"]:
        tag = f"{s['op']}-{s['n_fft']}-{s['seconds']:g}s"
        nat = s["cands"].get("native", {})
        for key in ("patched", "error", "note"):
            if nat.get(key):
                add("native", nat[key], tag)
        for k, v in s.get("load_errors", {}).items():
            add(k, v, tag)
        for n, c in s["cands"].items():
            if n != "native" and c.get("error"):
                add(n, c["error"], tag)
    return [f"{who} ({', '.join(tags)}): {msg}" for (who, msg), tags in groups.items()]


def write(path: str, data: dict) -> None:
    m, v, cfg = data["machine"], data["versions"], data["config"]
    L = ["# specrewrite benchmark results", "",
         f"- date: {data['date']}" + (" (quick smoke run)" if cfg.get("quick") else ""),
         f"- machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, Python {m['python']}",
         "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
         f"- runtimes: {', '.join(cfg['runtimes'])} (OpenVINO: {data.get('openvino')}); threads {cfg['threads']};"
         f" ORT graph optimisation ALL, worker spinning {'on' if cfg['ort_spin'] else 'off'};"
         " OpenVINO f32 precision hint, LATENCY",
         f"- timing: interleaved round-robin, {cfg['min_reps']}..{cfg['max_reps']} reps per candidate "
         f"({cfg['budget_s']} s budget each), median; batch 1, 16 kHz white noise; opset {cfg['opset']}",
         f"- wall time {data.get('wall_s', 0):.0f} s; load average during the settings "
         + _load(data), "",
         "`auto/store` is the default rewrite (strategy auto, mode store). Ratios below 1 mean the rewritten "
         "model is faster. `native` is the same computation written with torch.stft / torch.istft and exported "
         "by `torch.onnx.export(dynamo=True)` (ONNX STFT op; istft: DFT op). `eager` is that module run by torch "
         "with the same thread count.", "", "## Goals", ""]
    L += [P.md_table(["goal", "verdict", "detail"], [[g["goal"], f"**{g['verdict']}**", g["detail"]]
                                                       for g in data.get("goals", [])]), ""]
    rows = P.ratio_rows(data["settings"])
    L += ["## Ratios per setting", "",
          "(`*` native needed the benchmark's int64-index patch to load in ONNX Runtime)", ""]
    L += [P.md_table(P.HEAD, [P._row_cells(r) for r in rows]), ""]
    ops = sorted({s["op"] for s in data["settings"]}, key=lambda o: ("power", "mel", "istft").index(o))
    secs = sorted({s["seconds"] for s in data["settings"]})
    groups = sorted({g for s in data["settings"] for g in P.groups_of(s)},
                    key=lambda g: (g.split("/")[0] != "ort", g))
    L += ["## Every candidate (median ms, longest audio)", ""]
    for op in ops:
        for g in groups:
            t = P.candidate_table(data["settings"], op, g, secs[-1])
            if t:
                L += [f"### {op}, {g}, {secs[-1]:g} s", "", t, ""]
    L += ["## Exported file size (kB) and stored weights", ""]
    sizes = P.size_rows(data["settings"])
    names = [f"sr:{s}:{md}" for s in STRATEGIES for md in MODES] + ["native"]
    body = []
    for (op, n_fft), d in sorted(sizes.items(), key=lambda kv: (("power", "mel", "istft").index(kv[0][0]), kv[0][1])):
        body.append([op, n_fft] + [f"{d[n]['file'] / 1e3:.0f}" if n in d and d[n]["file"] else "-" for n in names])
    L += [P.md_table(["op", "n_fft"] + [n[3:] if n.startswith("sr:") else n for n in names], body), ""]
    L += ["## float32 error (max |y - ref| / peak |ref|, ref = float64 torch, worst over settings and modes)", ""]
    errs = P.error_rows(data["settings"])
    rts = sorted({rt for d in errs.values() for s in d.values() for rt in s})
    body = []
    for op in ops:
        for key in list(STRATEGIES) + ["native", "eager"]:
            if key in errs.get(op, {}):
                e = errs[op][key]
                body.append([op, key] + [f"{e[rt]:.1e}" if rt in e else "-" for rt in rts])
    L += [P.md_table(["op", "candidate"] + rts, body), ""]
    L += ["## Public real models", ""]
    if data.get("real_models"):
        avail = data.get("rewrite_available")
        L += [f"specrewrite.rewrite {'available' if avail else 'not available'} at run time.", "",
              P.real_table(data["real_models"]), ""]
    else:
        L += ["not run", ""]
    notes = _notes(data)
    if notes:
        L += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    L += ["## Plans chosen by `auto`", ""]
    plans = {}
    for s in data["settings"]:
        plans[(s["op"], s["n_fft"])] = s["cands"].get(DEFAULT, {}).get("plan", "?")
    L += [P.md_table(["op", "n_fft", "auto plan"], [[o, n, p] for (o, n), p in sorted(plans.items())]), ""]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(L))


def _load(data):
    loads = [x for s in data["settings"] for x in s.get("loadavg", [])]
    if not loads:
        return "n/a"
    return f"{min(loads):.2f}..{max(loads):.2f} (1-min average; > 0 means other processes shared the cores)"
