"""Input-independent values computed in forward (windows, grids, filterbanks): which nodes to fold."""
from __future__ import annotations

import torch
import torch.fx as fx

from ._nodes import attr_of as _attr_of

FOLD_MAX_NUMEL = 1 << 20
# ops whose input-independent results are folded (they are what exporters do not translate everywhere; eye,
# tril and triu lower to an iota in litert-torch, which the LiteRT interpreter cannot run: STABLEHLO_IOTA)
FOLD_OPS = {"hann_window", "hamming_window", "blackman_window", "bartlett_window", "kaiser_window", "linspace",
             "logspace", "arange", "fft_fftfreq", "fft_rfftfreq", "polar", "complex", "view_as_complex", "exp",
             "cos", "sin", "eye", "tril", "triu", "tril_indices", "triu_indices",
             # reductions and matrix functions of buffers (index strides, filter inverses): coremltools has no
             # prod / cumprod converter, and no exporter has a matrix inverse or exponential
             "prod", "cumprod", "linalg_inv", "inverse", "linalg_pinv", "pinverse", "linalg_matrix_exp",
             "matrix_exp", "linalg_det", "det", "logdet"}


def foldable_roots(gm: fx.GraphModule, attr_placeholders):
    """(roots, const, skip): ``const`` are the nodes that depend on no model input (nor on a parameter, which
    stays trainable) and that nothing input-dependent writes into; ``skip`` are in-place ops whose effect is
    already in the folded values; ``roots`` are those among them that compute
    something worth folding (a window function, a grid, complex constants) and feed a non-constant node."""
    const, base = set(), {}
    for n in gm.graph.nodes:
        base[n] = n
        if n.op == "get_attr":
            v = _attr_of(gm, n.target)
            if isinstance(v, torch.Tensor) and not isinstance(v, torch.nn.Parameter):
                const.add(n)
            continue
        if n.op == "placeholder" and n.name in attr_placeholders:
            if not isinstance(_attr_of(gm, attr_placeholders[n.name]), torch.nn.Parameter):
                const.add(n)
            continue
        if n.op != "call_function" or not isinstance(n.target, torch._ops.OpOverload):
            continue
        schema = n.target._schema
        if schema.returns and schema.returns[0].alias_info is not None and n.args and \
                isinstance(n.args[0], fx.Node):
            base[n] = base[n.args[0]]   # a view (or an in-place op returning self) shares its input's storage
        if torch.Tag.nondeterministic_seeded in n.target.tags or n.target.namespace == "specrewrite":
            continue
        if all(a in const for a in n.all_input_nodes):
            const.add(n)
    # storage that an input-dependent in-place op writes into is not constant (nor anything derived from it)
    # (to a fixed point: a write that stops being constant taints the storage it writes into, and so on)
    tainted = set()
    while True:
        before = len(tainted)
        for n in gm.graph.nodes:
            if n in const or n.op != "call_function" or not isinstance(n.target, torch._ops.OpOverload):
                continue
            for a, v in zip(n.target._schema.arguments, n.args):
                if a.alias_info is not None and a.alias_info.is_write and isinstance(v, fx.Node) and v in const:
                    tainted.add(base[v])
        if len(tainted) == before:
            break
        for n in gm.graph.nodes:
            if n in const and (base[n] in tainted or any(a not in const for a in n.all_input_nodes)):
                const.discard(n)
    interesting = set()
    for n in gm.graph.nodes:
        if n in const and n.op == "call_function" and (n.target._opname in FOLD_OPS or
                                                       any(a in interesting for a in n.all_input_nodes)):
            interesting.add(n)
    roots = {n for n in interesting if isinstance(n.meta.get("val"), torch.Tensor)
             and n.meta["val"].numel() <= FOLD_MAX_NUMEL and any(u not in const for u in n.users)}
    # an in-place op inside the constant region is already in the folded values: emitting it again would
    # apply it twice, unless some member of its storage family reaches the model unfolded
    seen_outside = {base[n] for n in const if n not in roots and any(u not in const for u in n.users)}
    folded_bases = {base[a] for r in roots for a in ancestors(r)}   # ancestors(r) includes r
    skip = {n for n in const if _mutates(n) and base[n] in folded_bases and base[n] not in seen_outside}
    return roots, const, skip


def _mutates(n) -> bool:
    return n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload) and \
        any(a.alias_info is not None and a.alias_info.is_write for a in n.target._schema.arguments)


def ancestors(node):
    seen, todo = set(), [node]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(n.all_input_nodes)
    return seen
