"""The second shape every rewrite and export is verified at: each dynamic axis moved (time +25 %, odd; batch +1),
with inputs that continue the example's (per-clip values repeated, lengths scaled with the time axis)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch


def second_inputs(args: tuple, axes: List[Dict[str, Any]]) -> Optional[tuple]:
    """``args`` with every dynamic axis of ``axes`` (the report's dicts) moved: time +25 % (odd, within its
    range), batch +1. None when no axis is dynamic."""
    # a batch fixed on one input is the batch of every input with a batch axis of that size (a lengths vector
    # beside the fixed audio: moving it alone gives inputs the model cannot take)
    fixed_batch = {ax["size"] for ax in axes if ax["role"] == "batch" and not ax["dynamic"] and ax.get("requested")}
    dyn = {(ax["index"], ax["axis"]): ax for ax in axes if ax["dynamic"]
           and not (ax["role"] == "batch" and ax["size"] in fixed_batch)}
    if not dyn:
        return None
    g = torch.Generator().manual_seed(1234)
    out = []
    moved: Dict[int, int] = {}   # a time axis' example size -> its new size
    for i, a in enumerate(args):
        if not isinstance(a, torch.Tensor) or not any(k[0] == i for k in dyn):
            out.append(a)
            continue
        shape = list(a.shape)
        for (j, d), ax in dyn.items():
            if j != i:
                continue
            if ax["role"] == "time":
                shape[d] = shape[d] + max(shape[d] // 4, 1) | 1
            elif ax["role"] == "batch":
                shape[d] = shape[d] + 1
            if ax.get("max") is not None:
                shape[d] = min(shape[d], ax["max"])
            if ax.get("sizes"):   # the nearest size that the graph holds (below the maximum)
                from ._guards import holds

                near = [n for n in range(shape[d] - 64, shape[d] + 64) if n >= 2 and holds(ax["sizes"], n)
                        and (ax.get("max") is None or n <= ax["max"]) and n != a.shape[d]]
                shape[d] = min(near, key=lambda n: (abs(n - shape[d]), n)) if near else shape[d]
            if ax["role"] == "time":
                moved[a.shape[d]] = shape[d]
        per_clip = a.dim() == 1 and any(ax["role"] == "batch" for (j, _), ax in dyn.items() if j == i)
        out.append(_resize_like(a, shape, g, repeat=per_clip))   # one value per clip: the example's, repeated
    return tuple(_lengths_moved(a, moved) for a in out)


def _lengths_moved(a, moved: Dict[int, int]):
    """An integer tensor of lengths (positive, its largest value the example's size of a time axis: ``ilens``,
    ``lengths`` for a packed sequence) scaled to the moved axis, the longest at its new size exactly; other
    inputs as they are."""
    if not isinstance(a, torch.Tensor) or a.is_floating_point() or a.is_complex() or a.dtype == torch.bool \
            or a.dim() != 1 or not a.numel() or int(a.min()) <= 0 or int(a.max()) not in moved:
        return a
    old = int(a.max())
    new = moved[old]
    scaled = torch.div(a.to(torch.float64) * new, old).round().to(a.dtype).clamp(1, new)
    return torch.where(a == old, torch.full_like(a, new), scaled)


def _resize_like(a: torch.Tensor, shape, g, repeat: bool = False) -> torch.Tensor:
    """A tensor of ``shape`` that continues ``a``: the example's values where they fit, fresh values of the
    same scale beyond (integer inputs, and any with ``repeat``, repeat the example's values)."""
    if (a.is_floating_point() or a.is_complex()) and not repeat:
        scale = float(a.detach().abs().max()) if a.numel() else 1.0
        fresh = torch.randn(shape, generator=g, dtype=torch.float64) * (scale or 1.0) * 0.5
        fresh = fresh.to(a.dtype) if not a.is_complex() else torch.complex(fresh, fresh).to(a.dtype)
    else:
        idx = [torch.arange(s) % max(n, 1) for s, n in zip(shape, a.shape)]
        return a[torch.meshgrid(*idx, indexing="ij")] if a.dim() else a.clone()
    region = tuple(slice(0, min(s, n)) for s, n in zip(shape, a.shape))
    fresh[region] = a[region]
    return fresh
