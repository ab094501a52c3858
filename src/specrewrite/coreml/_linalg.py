"""Linear solves and inverses on the plugin route (coremltools has no converter for either): the graph pass's
own formulas run on MIL values. A real system is the elimination with partial pivoting that exporters get
(``rewrite/_solve.gauss_jordan``, unrolled over a static n <= 64); a complex one its real block form
(``rewrite/_complex_linalg``), then the same elimination. Inverses of constants stay folded (``_real``)."""
from __future__ import annotations

import functools

from ..rewrite import _complex_linalg as L
from ..rewrite import _solve as S
import numpy as np

from ._as_torch import on_mil
from ._complex import _run
from ._ct_private import bind, mb, raw_inputs
from ._pairs import arg, as_float, is_native_complex, is_pair, mark, rule, to_pair, unsupported


def _size_ok(node, a, pair: bool) -> None:
    n = a.shape[-2] if pair else a.shape[-1]
    if not S._static(n):
        raise unsupported(node, f"a linear solve or inverse of size {n} (unrolled for Core ML up to "
                          f"{S.MAX_N} x {S.MAX_N}, at a size known at conversion)",
                          fix="convert with static shapes, or solve a smaller system")


@rule("linalg_solve")
def linalg_solve(context, node):
    """``torch.linalg.solve(A, B, left=True)``, real or complex (torchaudio's MVDR, fast-bss-eval, diffsptk)."""
    a, b = (bind(context, r) for r in raw_inputs(node)[:2])
    left = bool(arg(context, node, 2, "left", True))
    pair = any(is_pair(context, v) or is_native_complex(v) for v in (a, b))
    if pair:
        a, b = to_pair(context, a), to_pair(context, b)
        _size_ok(node, a, True)
        vector = b.rank - 1 == a.rank - 2
        return _run(context, node, L.csolve_side, a, b, left, vector, pair=True)
    a, b = as_float(a), as_float(b)
    _size_ok(node, a, False)
    _run(context, node, functools.partial(S.linalg_solve, left=left), a, b, pair=False)


@rule("linalg_inv_ex")
def inv_ex(context, node):
    """``torch.linalg.inv_ex``: (the inverse, info zeros) of a real or complex matrix (speechbrain's MVDR)."""
    x = bind(context, raw_inputs(node)[0])
    pair = is_pair(context, x) or is_native_complex(x)
    x = to_pair(context, x) if pair else as_float(x)
    _size_ok(node, x, pair)
    out = on_mil(L.cinv if pair else S.unrolled_inv, x)
    batch = [int(d) for d in x.shape[:-3 if pair else -2]]
    context.add(mb.identity(x=out, name=node.outputs[0]), torch_name=node.outputs[0])
    if pair:
        mark(context, context[node.outputs[0]])
    info = mb.const(val=np.zeros(batch, dtype=np.int32), name=node.outputs[1]) if batch else \
        mb.const(val=np.int32(0), name=node.outputs[1])
    context.add(info, torch_name=node.outputs[1])


def inverse(context, node, x) -> None:
    """``torch.linalg.inv`` / ``torch.inverse`` of a run-time value (``_real`` folds a constant's)."""
    pair = is_pair(context, x) or is_native_complex(x)
    x = to_pair(context, x) if pair else as_float(x)
    _size_ok(node, x, pair)
    _run(context, node, L.cinv if pair else S.unrolled_inv, x, pair=pair)
