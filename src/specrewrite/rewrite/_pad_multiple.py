"""Padding up to a multiple of a stride, written with an ``if``: one graph for every length.

Real encoders pad their input to a multiple of their stride this way (Demucs / HDemucs time encoders, many
U-Nets and codecs)::

    le = x.shape[-1]
    if not le % stride == 0:
        x = F.pad(x, (0, stride - le % stride))

torch.export takes the branch of the example and guards on it (``Ne(Mod(T, 4), 0)``), so the graph holds for a
residue class of lengths only, and where several layers do this, for a narrow class (HDemucs: a length that is
not a multiple of 4 whose quarter is not either, ...). Both branches are one formula: padding by
``(stride - le % stride) % stride``, which is 0 when ``le`` is a multiple (``F.pad`` by 0 is the input itself).
During a capture this module rewrites such a pad amount into that formula and drops the guard it made, so the
graph holds for every length. The pad is recognised from its amount and the guard together: an amount
``s - Mod(e, s)`` (``s`` an integer) right after the capture guarded ``Ne(Mod(e, s), 0)``, with 0 on the other
side of that axis or the amount split in halves (``p // 2`` and ``p - p // 2``).

A model whose guard also steers something else than the pad would be wrong in the other branch; the rewrite
verifies the graph at a length where each dropped guard's remainder is 0 (``_branches.py``).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import sympy
import torch


def _mod_atoms(expr):
    return [a for a in sympy.preorder_traversal(expr)
            if type(a).__name__ in ("Mod", "PythonMod") and len(a.args) == 2]


def _stride_of(expr) -> Optional[Tuple[object, int]]:
    """(Mod(e, s), s) when ``expr`` is ``s - Mod(e, s)`` with an integer s >= 2."""
    for m in _mod_atoms(expr):
        s = m.args[1]
        if getattr(s, "is_Integer", False) and int(s) >= 2 and sympy.expand(expr - (s - m)) == 0:
            return m, int(s)
    return None


def _take_guard(env, mod) -> Optional[object]:
    """Remove and return the latest guard ``Ne(mod, 0)`` of the capture (the branch that led to this pad)."""
    guards = getattr(env, "guards", None)
    if not isinstance(guards, list):
        return None
    want = sympy.Ne(mod, 0)
    for k in range(len(guards) - 1, -1, -1):
        if guards[k].expr == want:
            return guards.pop(k).expr
    return None


def _sym(v) -> bool:
    return isinstance(v, torch.SymInt) and bool(getattr(v.node.expr, "free_symbols", None))


def _value(v, at: dict) -> Optional[int]:
    if not isinstance(v, torch.SymInt):
        return int(v)
    try:
        return int(v.node.expr.xreplace(at))
    except (TypeError, ValueError):
        return None


def _halves(a, b) -> bool:
    """``a == (a + b) // 2`` at every size tried: the smaller half of a symmetric split."""
    free = set()
    for v in (a, b):
        if isinstance(v, torch.SymInt):
            free |= set(v.node.expr.free_symbols)
    for n in list(range(2, 67)) + [1001, 4097, 44101]:
        at = {f: sympy.Integer(n) for f in free}
        va, vb = _value(a, at), _value(b, at)
        if va is None or vb is None or va != (va + vb) // 2:
            return False
    return True


def generalise(args: tuple, kwargs: dict, absorbed: List[object]) -> Tuple[tuple, dict]:
    """``F.pad``'s arguments with every pad-up-to-a-multiple amount made right for both branches; each guard
    dropped is appended to ``absorbed``."""
    pad = kwargs.get("pad", args[1] if len(args) > 1 else None)
    if not isinstance(pad, (list, tuple)) or not any(_sym(v) for v in pad):
        return args, kwargs
    pad = list(pad)
    changed = False
    for k in range(0, len(pad) - 1, 2):
        lo, hi = pad[k], pad[k + 1]
        other = hi if _sym(lo) else lo
        if _sym(lo) != _sym(hi) and isinstance(other, int) and other == 0:   # one side: the amount, 0 there
            j, v = (k, lo) if _sym(lo) else (k + 1, hi)
            hit = _stride_of(v.node.expr)
            if hit is None:
                continue
            guard = _take_guard(v.node.shape_env, hit[0])
            if guard is None:
                continue
            pad[j] = v % hit[1]
            absorbed.append(guard)
            changed = True
            continue
        if not (_sym(lo) or _sym(hi)):
            continue
        total = lo + hi
        if not isinstance(total, torch.SymInt):
            continue
        hit = _stride_of(total.node.expr)
        if hit is None:
            continue
        small_lo = _halves(lo, hi)
        if not small_lo and not _halves(hi, lo):
            continue
        env = (lo if isinstance(lo, torch.SymInt) else hi).node.shape_env
        guard = _take_guard(env, hit[0])
        if guard is None:
            continue
        p = total % hit[1]
        half = p // 2
        pad[k], pad[k + 1] = (half, p - half) if small_lo else (p - half, half)
        absorbed.append(guard)
        changed = True
    if not changed:
        return args, kwargs
    if "pad" in kwargs:
        return args, {**kwargs, "pad": type(kwargs["pad"])(pad) if isinstance(kwargs["pad"], tuple) else pad}
    return (args[0], tuple(pad) if isinstance(args[1], tuple) else pad, *args[2:]), kwargs


def other_branch(guard, example: int, symbol, keep=()) -> Optional[int]:
    """A size near ``example`` where a dropped ``guard`` on ``symbol`` is false (its remainder 0) and every guard
    of ``keep`` (the capture's other guards on ``symbol``) still holds: a length at which the graph's other
    branch is verified. None when there is none within reach."""
    def true(g, n) -> bool:
        return bool(g.xreplace({symbol: sympy.Integer(n)}))

    if set(getattr(guard, "free_symbols", ())) != {symbol}:
        return None
    keep = [g for g in keep if set(getattr(g, "free_symbols", ())) == {symbol}]
    for d in range(1, 4097):
        for n in (example + d, example - d):
            try:
                if n >= 2 and not true(guard, n) and all(true(k, n) for k in keep):
                    return n
            except (AssertionError, ZeroDivisionError):
                continue   # below the guards' range (torch's Mod asserts a dividend >= 0): asteroid's DCUNet
            except (TypeError, ValueError):
                return None
    return None


def zero_remainders(shape_env, symbol) -> list:
    """The capture's guards ``Eq(Mod(e, s), 0)`` on ``symbol`` alone: where the example took the branch with no
    pad (a multiple already); a capture at a length off the multiple may take the pad instead."""
    out = []
    for g in getattr(shape_env, "guards", []) or []:
        e = g.expr
        if isinstance(e, sympy.Eq) and set(getattr(e, "free_symbols", ())) == {symbol} and \
                any(a == 0 for a in e.args) and any(type(a).__name__ in ("Mod", "PythonMod") for a in e.args):
            out.append(e)
    return out


def off_multiples(guards, symbol, example: int, reach: int = 4096) -> Optional[int]:
    """The nearest size above ``example`` where every guard of ``zero_remainders`` is false."""
    for n in range(example + 1, example + reach + 1):
        try:
            if not any(bool(g.xreplace({symbol: sympy.Integer(n)})) for g in guards):
                return n
        except (AssertionError, ZeroDivisionError):
            continue
        except (TypeError, ValueError):
            return None
    return None
