"""Pads up to a multiple (``_pad_multiple``) in the capture loop: where the example took no pad, a capture at a
length off the multiples; before a dropped guard is trusted, the graph against eager in the branch not taken."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from ._pad_multiple import off_multiples, other_branch, zero_remainders
from .dynamic import AxisPlan, Axis, _shape_env, _sources, _user_placeholders
from .verify import max_rel_err

_MAX_BRANCHES = 6   # pads whose other branch is checked (one per layer; HDemucs has five)


def _env(plan: AxisPlan, gm):
    return _shape_env(_user_placeholders(gm, len(plan.args)))


def _size(plan: AxisPlan, ax: Axis) -> int:
    return int(plan.capture_args[plan.names.index(ax.input)].shape[ax.axis])


def _trial(plan: AxisPlan, gm) -> Optional[Tuple[Axis, int, int]]:
    """(axis, size, count): a dynamic time axis whose capture guarded ``count`` remainders to be 0 (the example
    is a multiple where a pad up to a multiple is skipped), and the nearest longer size where none is 0."""
    env = _env(plan, gm)
    for ax in plan.axes if env is not None else ():
        if not ax.dynamic or ax.role != "time":
            continue
        for sym in _sources(env, ax.input, ax.axis):
            zs = zero_remainders(env, sym)
            n = off_multiples(zs, sym, _size(plan, ax)) if zs else None
            if n is not None:
                return ax, n, len(zs)
    return None


def _zero_count(plan: AxisPlan, gm, ax: Axis) -> int:
    env = _env(plan, gm)
    return sum(len(zero_remainders(env, sym)) for sym in _sources(env, ax.input, ax.axis)) if env else 0


def _other_branches(plan: AxisPlan, gm) -> List[Tuple[Axis, int]]:
    """(axis, size) per axis and per pad made right for both branches (the first ``_MAX_BRANCHES``): a size near
    the capture's where that pad is 0 and every other guard of the capture still holds."""
    absorbed = gm.meta.get("specrewrite_absorbed") or []
    env = _env(plan, gm)
    if not absorbed or env is None:
        return []
    keep = [g.expr for g in getattr(env, "guards", [])]
    out = []
    for ax in plan.axes:
        for sym in _sources(env, ax.input, ax.axis):
            sizes = []
            for g in absorbed:
                n = other_branch(g, _size(plan, ax), sym, keep)
                if n is not None and n not in sizes:
                    sizes.append(n)
                if len(sizes) == _MAX_BRANCHES:
                    break
            out += [(ax, n) for n in sizes]
            if sizes:
                break
    return out


def branches_agree(work, plan: AxisPlan, gm) -> bool:
    """The captured graph, whose pads up to a multiple were made right for both branches, gives eager's output
    where each branch not taken at the capture's size runs (a guard that also steers other code would show)."""
    from . import _clones

    for ax, n in _other_branches(plan, gm):
        at = plan.inputs_at(ax, n, plan.capture_args)
        try:
            with torch.no_grad():
                ref = work(*_clones(at))
                got = gm(*_clones(at))
        except Exception:  # noqa: BLE001 - the model or the graph refuses that size: not the same function
            return False
        if not max_rel_err(got, ref) <= 1e-3:
            return False
    return True


def off_multiple_capture(work, plan: AxisPlan, gm, sites, pinned, draft: bool, sym_len: bool, captures):
    """A capture whose example is a multiple where the model pads up to a multiple (``if T % s: pad``) holds
    for multiples only: captured again at the nearest longer size that is a multiple of none of them, where
    the pads are taken (and made right for both branches); kept when it guards fewer remainders to be 0 and
    agrees with eager in the branches not taken (``plan.moved`` then holds the example's capture args).
    Returns (gm, sites, pinned) of the capture kept."""
    from . import _eager_runs

    trial = _trial(plan, gm)
    if trial is None:
        return gm, sites, pinned
    ax, n, before = trial
    if not _eager_runs(work, plan.inputs_at(ax, n)):
        return gm, sites, pinned   # the model takes multiples only
    saved = plan.capture_args
    plan.capture_args = plan.inputs_at(ax, n, saved)
    try:
        gm2, sites2 = captures(plan.capture_args, plan.spec, draft=draft, sym_len=sym_len, pad_multiple=True)
    except Exception:  # noqa: BLE001 - the first capture stands
        gm2 = None
    if gm2 is not None and gm2.meta.get("specrewrite_absorbed") and _zero_count(plan, gm2, ax) < before \
            and branches_agree(work, plan, gm2):
        plan.moved = saved
        return gm2, sites2, plan.judge(gm2)
    plan.capture_args = saved
    return gm, sites, plan.judge(gm)
