"""Interleaved latency measurement: round-robin over candidates, per-candidate repetition targets, medians.

Every candidate is a zero-argument callable. After a warm-up call (which also gives a first estimate of its
cost), each candidate gets a repetition target ``clamp(budget_s / estimate, min_reps, max_reps)``. Rounds then
visit every candidate that has not reached its target, in an order that rotates by one each round, so slow
drift of the machine (frequency, caches, other tenants) hits all candidates alike. A candidate that needs a
second per call drops out after ``min_reps`` while the cheap ones keep being interleaved with each other.
"""
from __future__ import annotations

import gc
import statistics
import time
from typing import Callable, Dict


def _stats(samples):
    s = sorted(samples)
    n = len(s)

    def q(p):
        return s[min(n - 1, max(0, int(round(p * (n - 1)))))]

    return {"median_ms": statistics.median(s) * 1e3, "p25_ms": q(0.25) * 1e3, "p75_ms": q(0.75) * 1e3,
            "min_ms": s[0] * 1e3, "n": n}


def interleaved(cands: Dict[str, Callable[[], object]], budget_s: float = 0.5, min_reps: int = 3,
                max_reps: int = 40, warmup: int = 2, wall_limit_s: float | None = None) -> Dict[str, dict]:
    """Median latency (ms) of each candidate, measured round-robin. Failing candidates get {"error": ...}."""
    out: Dict[str, dict] = {}
    live: Dict[str, Callable] = {}
    est: Dict[str, float] = {}
    for name, fn in cands.items():
        try:
            for _ in range(warmup):
                t0 = time.perf_counter()
                fn()
                est[name] = time.perf_counter() - t0
            live[name] = fn
        except Exception as e:  # noqa: BLE001 - a failing candidate is a result, not a crash
            out[name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    if not live:
        return out
    target = {n: max(min_reps, min(max_reps, int(budget_s / max(est[n], 1e-6)))) for n in live}
    samples = {n: [] for n in live}
    names = list(live)
    start = time.perf_counter()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        rnd = 0
        while any(len(samples[n]) < target[n] for n in names):
            k = rnd % len(names)
            for name in names[k:] + names[:k]:
                if len(samples[name]) >= target[name]:
                    continue
                fn = live[name]
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
            rnd += 1
            if wall_limit_s is not None and time.perf_counter() - start > wall_limit_s \
                    and all(len(samples[n]) >= min_reps for n in names):
                break
    finally:
        if gc_was:
            gc.enable()
    for name in names:
        out[name] = _stats(samples[name])
    return out


def timed(fn: Callable[[], object]):
    """(result, seconds) of one call."""
    t0 = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t0
