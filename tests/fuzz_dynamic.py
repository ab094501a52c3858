"""The random programs' dynamic axes in ONNX Runtime: a program whose report keeps an axis dynamic is exported to
ONNX with those axes dynamic and run at three other lengths inside the range the report gives (longer, shorter,
odd) and two batch sizes where the batch is dynamic, each against float64 eager within 8x eager float32's own error
at that shape (one float32 rounding, where the main check judges 4x over four)."""
from __future__ import annotations

import tempfile
import warnings
from dataclasses import replace

import numpy as np
import torch


def other_lengths(ax) -> list:
    """Up to three lengths other than the example's inside the range the report gives for a dynamic axis."""
    from specrewrite.rewrite._guards import holds

    L = ax["size"]
    lo, hi = max(ax["min"] or 2, 2), ax["max"] or 1 << 30
    out = []
    for n in (L + 37, L + L // 2 + 1, L - L // 5):
        n = min(max(n, lo), hi)
        if ax.get("sizes"):
            n = next((m for m in range(n, n + 4096) if m <= hi and holds(ax["sizes"], m)), None)
        if n is not None and n != L and n not in out:
            out.append(n)
    return out


def _inputs(x64, axes, batch, length, seed):
    """The example inputs with every dynamic batch axis at ``batch`` and time axis at ``length`` (fresh values)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, a in enumerate(x64):
        mine = {ax["axis"]: ax["role"] for ax in axes if ax["index"] == i}
        if not mine:
            out.append(a)
            continue
        shape = [batch if mine.get(d) == "batch" and batch else length if mine.get(d) == "time" and length else s
                 for d, s in enumerate(a.shape)]
        out.append(torch.randn(shape, generator=g, dtype=torch.float64))
    return tuple(out)


def dynamic_onnx_failures(prog, rw, compare) -> list:
    """'batch b, length n: ...' for every shape where the dynamic ONNX file is off (empty: all within bound, or
    no axis dynamic). ``compare(got, ref, mag)`` is the fuzzer's error measure."""
    from conftest import TOL, onnx_roundtrip

    axes = [ax for ax in rw.specrewrite_report.axes if ax["dynamic"]]
    if not axes:
        return []
    m32, m64 = prog.build(torch.float32), prog.build(torch.float64)
    x64 = prog.inputs(torch.float64)
    time = next((ax for ax in axes if ax["role"] == "time"), None)
    batch = next((ax for ax in axes if ax["role"] == "batch"), None)
    # exported at batch >= 2 (torch.export fixes an axis of size 1 in its example)
    export_at = _inputs(x64, axes, max(batch["size"], 2), None, 0) if batch else x64
    spec = tuple({ax["axis"]: torch.export.Dim.AUTO for ax in axes if ax["index"] == i} or None
                 for i in range(len(x64)))
    try:
        with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sess, _, _ = onnx_roundtrip(rw, tuple(a.float() for a in export_at), dynamic_shapes=spec,
                                        path=f"{d}/m.onnx", optimize=False)
    except Exception as e:  # noqa: BLE001
        return [f"dynamic export ({spec}): {type(e).__name__}: {str(e)[:400]}"]
    bad = []
    for b in ([batch["size"], batch["size"] + 1] if batch else [None]):
        for n in ([time["size"]] + other_lengths(time) if time else [None]):
            xi64 = _inputs(x64, axes, b, n, seed=7 * (n or 0) + (b or 0))
            xi32 = tuple(a.float() for a in xi64)
            with torch.no_grad():
                try:
                    ref, own = m64(*xi64), m32(*xi32)
                except Exception:  # noqa: BLE001 - the program's own code takes this shape only
                    continue
                mag = replace(prog, ret="z.abs()", periodic=False).build(torch.float64)(*xi64) if prog.periodic \
                    else None
            try:
                got = sess.run(None, {i.name: a.numpy() for i, a in zip(sess.get_inputs(), xi32)})[0]
                err, eager = compare(np.asarray(got), ref, mag), compare(own, ref, mag)
            except Exception as e:  # noqa: BLE001 - inside the reported range eager runs: so must the file
                bad.append(f"batch {b}, length {n}: {type(e).__name__}: {str(e)[:300]}")
                continue
            tol = max(TOL["fp32_rel"], 8 * eager)
            if not err <= tol:
                bad.append(f"batch {b}, length {n}: error {err:.3e} > {tol:.3e}")
    return bad
