"""Values of the inputs baked into a traced graph.

A model that torch.export cannot capture is traced with the example inputs (``capture.via_trace``). What its
Python reads out of an input (``x.numpy()``, ``.item()``, ``.tolist()``) then enters the graph as a constant or
a literal, and the graph is right for the example's values only: right at the example, where verification
runs, and wrong for every other clip of the same shape. The model is traced a second time with other values
of the same shapes (each floating input's values permuted and shrunk, so signs and ranges stay the model's);
a node whose constant, literal or op differs between the two graphs depends on the values, and is named by its
source line.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.fx as fx

from ._multi_trace import differences, source_line


def other_values(args: tuple) -> Optional[tuple]:
    """``args`` with each floating tensor's values permuted (a fixed seed); None when no input would change."""
    g = torch.Generator().manual_seed(4321)
    out, changed = [], False
    for a in args:
        if isinstance(a, torch.Tensor) and (a.is_floating_point() or a.is_complex()) and a.numel() > 1:
            flat = a.detach().reshape(-1)
            # permuted, and each value shrunk by a factor in (0.5, 1]: signs and ranges stay the model's, and
            # what a permutation keeps (the maximum, the sum) changes too
            shrink = 1 - 0.5 * torch.rand(flat.shape, generator=g, dtype=torch.float64)
            b = (flat[torch.randperm(flat.numel(), generator=g)] * shrink.to(flat.dtype)).reshape(a.shape)
            changed = changed or not torch.equal(b, a)
            out.append(b)
        else:
            out.append(a)
    return tuple(out) if changed else None


def values_read(trace: Callable, model, args: tuple, gm: fx.GraphModule) -> Optional[str]:
    """Where ``gm`` (traced at ``args``) holds something of the inputs' values: 'file:line in func: code' of the
    first node that differs from a trace at other values, '' when that line is unknown; None when the two
    graphs are the same (or the second trace cannot be made: the model's own code then refuses other values,
    which verification sees)."""
    other = other_values(args)
    if other is None:
        return None
    try:
        gm2 = trace(model, other)[0]
    except Exception:  # noqa: BLE001 - see the docstring
        return None
    return _first_difference(gm, gm2)


def _first_difference(gm: fx.GraphModule, gm2: fx.GraphModule) -> Optional[str]:
    found = differences([gm, gm2])
    if isinstance(found, tuple):
        return source_line(found[1])
    return source_line(list(gm.graph.nodes)[found[0][0]]) if found else None
