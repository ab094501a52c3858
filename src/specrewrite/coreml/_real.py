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


@rule(*_OF_CONSTANTS)
def of_constant(context, node):
    """The op's value where its input is a constant (computed in float64), else a clear error."""
    if node_has_pair(context, node):
        return fallback(context, node)
    ins = raw_inputs(node)
    x = bind(context, ins[0])
    rest = [bind(context, r) for r in ins[1:]]
    rest = [r.val if isinstance(r, Var) else r for r in rest]
    k = kind(node)
    extra = rest[1:] if k == "cumprod" else rest
    if not isinstance(x, Var) or x.val is None or any(r not in (None, False) for r in extra):
        raise unsupported(node, f"{k} of a value computed at run time (Core ML has no {k})",
                          fix="compute it once outside forward (a buffer), or rewrite the model first "
                              "(specrewrite.rewrite), which folds it where it is a constant")
    val = np.asarray(x.val)
    out = _OF_CONSTANTS[k](torch.from_numpy(val.astype(np.float64)), *rest).numpy().astype(val.dtype)
    add(context, node, mb.const(val=out, name=node.name), False)
