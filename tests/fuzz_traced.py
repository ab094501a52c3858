"""The random programs of ``fuzz_programs.py`` on the trace route: a first line that leaves torch for numpy
(``float(x.detach().numpy().max() > -1e30)``, always 1) makes every capture but tracing fail, so ``rewrite()``
traces the program at three sizes and makes the numbers that change with the size symbolic
(``rewrite/_multi_trace.py``). Each program must give a ``SpecRewriteError`` naming its source line, or a model
that matches float64 eager at the example and, for every axis the report calls dynamic, at three other lengths
inside the range the report gives (4x eager float32's own error there too).
"""
from __future__ import annotations

import torch

from fuzz_dynamic import other_lengths
from fuzz_programs import Outcome, _compare, generate

NUMPY_LINE = "_k = float(x.detach().numpy().max() > -1e30)"


def traced(seed: int):
    prog = generate(seed)
    prog.lines.insert(0, NUMPY_LINE)
    return prog


def check_traced(prog) -> Outcome:
    import specrewrite as sr
    from conftest import TOL

    x64 = prog.inputs(torch.float64)
    try:
        m32, m64 = prog.build(torch.float32), prog.build(torch.float64)
        with torch.no_grad():
            m64(*x64)
    except Exception as e:  # noqa: BLE001
        return Outcome("invalid", f"eager: {type(e).__name__}: {e}")
    try:
        rw = sr.rewrite(m32, tuple(a.float() for a in x64))
    except sr.SpecRewriteError as e:
        kind = "clear_error" if "prog_" in (e.where or "") + str(e) and "internal error" not in str(e) else \
            "unclear_error"
        return Outcome(kind, str(e)[:600], op=e.op or "")
    except Exception as e:  # noqa: BLE001
        return Outcome("crash", f"{type(e).__name__}: {str(e)[:600]}", op=type(e).__name__)
    rep = rw.specrewrite_report
    shapes = [tuple(a.shape) for a in x64]
    time_axes = [ax for ax in rep.axes if ax["dynamic"] and ax["role"] == "time"]
    moves = [None] + (other_lengths(time_axes[0]) if time_axes else [])
    worst = 0.0
    for k, n in enumerate(moves):
        if n is None:
            xi64 = x64
        else:   # every dynamic time axis to n (the others as in the example)
            g = torch.Generator().manual_seed(n)
            moved = {ax["index"] for ax in time_axes}
            xi64 = tuple(torch.randn(*s[:-1], n, generator=g, dtype=torch.float64) if i in moved else a
                         for i, (s, a) in enumerate(zip(shapes, x64)))
        with torch.no_grad():
            try:
                ref, eager = m64(*xi64), m32(*(a.float() for a in xi64))
            except Exception:  # noqa: BLE001 - the program's own code takes this length only
                continue
            mag = None
            if prog.periodic:
                from dataclasses import replace

                mag = replace(prog, ret="z.abs()", periodic=False).build(torch.float64)(*xi64)
            try:
                got = rw(*(a.float() for a in xi64))
                err, own = _compare(prog, got, ref, mag), _compare(prog, eager, ref, mag)
            except Exception as e:  # noqa: BLE001 - inside the range the report gives, eager runs: so must this
                return Outcome("wrong", f"at length {n} (report: {rep.axes}): {type(e).__name__}: {str(e)[:400]}",
                               op="dynamic_length")
        tol = max(TOL["fp32_rel"], 8 * own)   # (one rounding: 8x, where the main fuzzer judges 4x over four)
        if not err <= tol:
            return Outcome("wrong", f"at length {n}: error {err:.3e} against tol {tol:.3e}", err=err, tol=tol,
                           op="dynamic_length" if k else "example")
        worst = max(worst, err)
    return Outcome("pass", f"{rep.capture}; checked at {moves}", err=worst)
