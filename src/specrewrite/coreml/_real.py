"""Real ops coremltools has no converter for, as models use them around a spectral front end: ``prod`` (index
strides, sizes of a band split), and matrix functions and cumulative products of constants (a filterbank's
pseudo-inverse computed in forward). The graph pass folds such constants before export (``rewrite/_fold``);
this is the same for the plain route, where the model is converted unchanged."""
from __future__ import annotations

import numpy as np
import torch

from ._ct_private import Var, bind, mb, raw_inputs
from ._pairs import add, fallback, kind, node_has_pair, rule, unsupported


@rule("prod")
def prod(context, node):
    """``torch.prod`` over all elements or one dimension: MIL's reduce_prod (a constant input: its value)."""
    if node_has_pair(context, node):
        raise unsupported(node, "the product of complex values")
    ins = raw_inputs(node)
    x = bind(context, ins[0])
    dim = bind(context, ins[1]) if len(ins) > 2 else None     # prod(self, dtype) | prod(self, dim, keepdim, dtype)
    keep = bind(context, ins[2]) if len(ins) > 2 else None
    dim = None if dim is None else int(dim.val if isinstance(dim, Var) else dim)
    keep = bool(keep.val if isinstance(keep, Var) else keep) if keep is not None else False
    if x.val is not None:
        val = np.asarray(x.val)
        out = np.prod(val) if dim is None else np.prod(val, axis=dim, keepdims=keep)
        return add(context, node, mb.const(val=np.asarray(out, dtype=val.dtype), name=node.name), False)
    if dim is None:
        return add(context, node, mb.reduce_prod(x=x, keep_dims=False, name=node.name), False)
    add(context, node, mb.reduce_prod(x=x, axes=[dim % x.rank], keep_dims=keep, name=node.name), False)


_OF_CONSTANTS = {"cumprod": lambda x, dim, *_: torch.cumprod(x, int(dim)),
                 "linalg_inv": lambda x, *_: torch.linalg.inv(x), "inverse": lambda x, *_: torch.inverse(x),
                 "linalg_pinv": lambda x, *_: torch.linalg.pinv(x),
                 "linalg_matrix_exp": lambda x, *_: torch.linalg.matrix_exp(x),
                 "matrix_exp": lambda x, *_: torch.linalg.matrix_exp(x),
                 "linalg_det": lambda x, *_: torch.linalg.det(x), "det": lambda x, *_: torch.linalg.det(x),
                 "logdet": lambda x, *_: torch.logdet(x)}


_INVERSES = ("linalg_inv", "inverse")


@rule(*_OF_CONSTANTS)
def of_constant(context, node):
    """The op's value where its input is a constant (computed in float64), else a clear error."""
    k = kind(node)
    ins = raw_inputs(node)
    x = bind(context, ins[0])
    if k in _INVERSES and (node_has_pair(context, node) or not isinstance(x, Var) or x.val is None):
        from ._linalg import inverse

        return inverse(context, node, x)   # a run-time value: the graph pass's unrolled elimination
    if node_has_pair(context, node):   # coremltools' own lowering would take the (re, im) pair for a real tensor
        raise unsupported(node, f"{k} of complex values")
    rest = [bind(context, r) for r in ins[1:]]
    rest = [r.val if isinstance(r, Var) else r for r in rest]
    extra = rest[1:] if k == "cumprod" else rest
    if not isinstance(x, Var) or x.val is None or any(r not in (None, False) for r in extra):
        raise unsupported(node, f"{k} of a value computed at run time (Core ML has no {k})",
                          fix="compute it once outside forward (a buffer), or rewrite the model first "
                              "(specrewrite.rewrite), which folds it where it is a constant")
    val = np.asarray(x.val)
    out = _OF_CONSTANTS[k](torch.from_numpy(val.astype(np.float64)), *rest).numpy().astype(val.dtype)
    add(context, node, mb.const(val=out, name=node.name), False)


def _ints(context, raw):
    v = bind(context, raw)
    v = v.val if isinstance(v, Var) else v
    return [int(d) for d in np.asarray(v).reshape(-1)] if v is not None else None


@rule("col2im")
def col2im(context, node):
    """``F.fold`` of one-dimensional, overlapping blocks (the overlap-add of hand-written inverse STFTs), which
    coremltools refuses: Pad + Add of shifted hop blocks, as the graph pass spells it. Other folds are
    coremltools' own."""
    if node_has_pair(context, node):
        raise unsupported(node, "F.fold (col2im) of complex values")
    ins = raw_inputs(node)
    x = bind(context, ins[0])
    (h, w), (kh, kw), (dh, dw), (ph, pw), (sh, sw) = (_ints(context, r) or [None, None] for r in ins[1:6])
    static = all(isinstance(d, (int, np.integer)) for d in x.shape)
    if not static or (kh, dh, ph, sh, h, dw) != (1, 1, 0, 1, 1, 1) or sw >= kw:
        return fallback(context, node)
    batched = x.rank == 3
    shape = [int(d) for d in x.shape]
    b, ck, t = shape if batched else [1] + shape
    c = ck // kw
    r = -(-kw // sw)
    frames = mb.transpose(x=mb.reshape(x=x, shape=[b * c, kw, t]), perm=[0, 2, 1])          # (BC, T, K)
    if r * sw > kw:
        frames = mb.pad(x=frames, pad=[0, 0, 0, 0, 0, r * sw - kw])
    blocks = mb.reshape(x=frames, shape=[b * c, t, r, sw])
    out = None
    for i in range(r):
        part = mb.squeeze(x=mb.slice_by_index(x=blocks, begin=[0, 0, i, 0], end=[b * c, t, i + 1, sw]), axes=[2])
        part = mb.pad(x=part, pad=[0, 0, i, r - 1 - i, 0, 0])                                # (BC, T+R-1, S)
        out = part if out is None else mb.add(x=out, y=part)
    y = mb.reshape(x=out, shape=[b * c, (t + r - 1) * sw])
    n = (t - 1) * sw + kw
    full = w + 2 * pw
    y = mb.slice_by_index(x=y, begin=[0, 0], end=[b * c, min(n, full)])
    if full > n:
        y = mb.pad(x=y, pad=[0, 0, 0, full - n])
    y = mb.slice_by_index(x=y, begin=[0, pw], end=[b * c, pw + w])
    add(context, node, mb.reshape(x=y, shape=[b, c, 1, w] if batched else [c, 1, w], name=node.name), False)
