"""Complex values during a conversion: real MIL tensors with a trailing dimension of 2, tracked per conversion.

MIL Vars use __slots__, so pair-ness is recorded in a table on the coremltools conversion context (one per
``ct.convert`` call), keyed by Var identity (the table holds the Var, so ids are not reused).
Also the rule table (torch op name -> lowering) that ``register()`` installs.
"""
from __future__ import annotations

import numpy as np

from .._where import from_stack_text
from ..errors import SpecRewriteError
from ..modes import Mode, Strategy
from ._ct_private import (Var, bind, conversion_state, is_complex_literal, is_torchscript, mb, node_meta,
                          original_func, raw_inputs, raw_kwinputs, types)
from ._mil_ns import dims, fill_shape, slice_axis


class Config:
    """What register() was asked for: how the DFT bases are held and how transforms are factored."""

    def __init__(self):
        self.mode = Mode.STORE
        self.strategy = Strategy.AUTO

    def copy(self):
        c = Config()
        c.mode, c.strategy = self.mode, self.strategy
        return c


CONFIG = Config()
RULES: dict = {}          # torch op name (coremltools canonical) -> rule function
PASSTHROUGH = {"tupleconstruct", "listconstruct", "tupleunpack", "listunpack", "tupleindex", "getitem",
               "__getitem__", "return", "output"}


def rule(*names):
    """Register ``fn`` as the lowering of torch ops ``names``; a second rule for a name is an error (which one
    won would depend on import order)."""
    def deco(fn):
        for n in names:
            if n in RULES and RULES[n] is not fn:
                raise RuntimeError(f"specrewrite.coreml: two rules for {n!r} ({RULES[n].__module__}."
                                   f"{RULES[n].__name__} and {fn.__module__}.{fn.__name__})")
            RULES[n] = fn
        return fn

    return deco


# ----------------------------------------------------------------------------------------------- tracking

def _table(context) -> dict:
    return conversion_state(context).setdefault("pairs", {})


def mark(context, var):
    _table(context)[id(var)] = var
    return var


def is_pair(context, v) -> bool:
    return isinstance(v, Var) and _table(context).get(id(v)) is v


def is_native_complex(v) -> bool:
    return isinstance(v, Var) and v.dtype is not None and types.is_complex(v.dtype)


def node_has_pair(context, node) -> bool:
    items = list(raw_inputs(node)) + list(raw_kwinputs(node).values())
    stack = list(items)
    while stack:
        it = stack.pop()
        if isinstance(it, (list, tuple)):
            stack.extend(it)
        elif isinstance(it, complex) or is_complex_literal(it):
            return True
        elif isinstance(it, Var):
            if is_pair(context, it) or is_native_complex(it):
                return True
        elif isinstance(it, str) and it in context:
            v = context[it]
            if isinstance(v, (list, tuple)):
                stack.extend(e for e in v if isinstance(e, (Var, list, tuple)))
            elif is_pair(context, v) or is_native_complex(v):
                return True
    return False


def add(context, node, var, pair: bool, name=None):
    """Bind ``var`` as the node's output (a pair if ``pair``)."""
    if pair:
        mark(context, var)
    context.add(var, name or node.name)
    return var


def mark_outputs(context, node):
    for out in node.outputs:
        if out in context:
            v = context[out]
            for e in (v if isinstance(v, (list, tuple)) else [v]):
                if isinstance(e, Var):
                    mark(context, e)


def fallback(context, node):
    """coremltools' own lowering of the node (no complex value involved)."""
    fn = original_func(node.kind)
    if fn is None:
        raise NotImplementedError(f"PyTorch convert function for op '{node.kind}' not implemented.")
    return fn(context, node)


def where(node) -> str | None:
    return from_stack_text(node_meta(node).get("stack_trace")) or f"torch node {node.name!r}"


def unsupported(node, reason: str, fix: str | None = None) -> SpecRewriteError:
    return SpecRewriteError(reason, op=f"specrewrite.coreml ({node.kind})", where=where(node),
                            fix=fix or "rewrite the model first (specrewrite.rewrite / specrewrite.coreml.convert)"
                            " or avoid this operation on complex tensors")


# ------------------------------------------------------------------------------------------ node inputs

def value(context, raw, default=None):
    """A raw node input as a Python / numpy value where constant, else its Var."""
    if raw is None:
        return default
    v = bind(context, raw)
    if isinstance(v, Var):
        if v.val is None:
            return v
        val = v.val
        return val.item() if isinstance(val, np.ndarray) and val.ndim == 0 else val
    return v


def arg(context, node, i, kw, default=None):
    """Positional input ``i`` or keyword ``kw`` of the node (torch.export passes some as keywords)."""
    ins = raw_inputs(node)
    if i < len(ins) and ins[i] is not None:
        return value(context, ins[i], default)
    kws = raw_kwinputs(node)
    if kw in kws:  # coremltools keeps each keyword input as a one-element sequence
        raw = kws[kw]
        return value(context, raw[0] if isinstance(raw, (tuple, list)) and len(raw) == 1 else raw, default)
    return default


def pair_input(context, node, i=0):
    return to_pair(context, bind(context, raw_inputs(node)[i]))


def kind(node) -> str:
    """The op name without its overload suffix ('sum.dim_intlist' -> 'sum')."""
    return node.kind.split(".")[0]


def context_is_script(context) -> bool:
    return is_torchscript(context)


# ------------------------------------------------------------------------------------------ pair values

def to_pair(context, v):
    """A pair Var for a pair, a native complex Var, a real Var / number (imaginary part 0) or a complex."""
    if is_pair(context, v):
        return v
    if is_native_complex(v):
        return mb.stack(values=[mb.complex_real(data=v), mb.complex_imag(data=v)], axis=-1)
    if isinstance(v, (complex, float, int, np.number)):
        c = complex(v)
        return mb.const(val=np.array([c.real, c.imag], dtype=np.float32))
    v = as_float(v)
    if v.rank == 0:
        return mb.concat(values=[mb.expand_dims(x=v, axes=[0]), np.zeros(1, np.float32)], axis=0)
    return mb.stack(values=[v, mb.fill(shape=fill_shape(dims(v)), value=0.0)], axis=-1)


def as_float(v):
    if isinstance(v, Var) and v.dtype is not None and not types.is_float(v.dtype):
        return mb.cast(x=v, dtype="fp32")
    return v


def re_im(z):
    """(re, im), each (..., 1) (keep-dim slices)."""
    return slice_axis(z, -1, 0, 1), slice_axis(z, -1, 1, 2)


def join(re, im, name=None):
    kw = {} if name is None else {"name": name}
    return mb.concat(values=[re, im], axis=-1, **kw)


def lift_real(r):
    """A real operand shaped to broadcast against a pair's (..., 1) parts."""
    if isinstance(r, Var) and r.rank > 0:
        return mb.expand_dims(x=as_float(r), axes=[-1])
    if isinstance(r, Var):
        return as_float(r)
    return np.float32(r)


def operand(context, raw):
    """Classify one raw binary-op input: ('pair', Var) | ('complex', complex) | ('real', Var|float)."""
    v = bind(context, raw)
    if isinstance(v, complex):
        return ("complex", v) if v.imag != 0 else ("real", float(v.real))
    if is_pair(context, v) or is_native_complex(v):
        return "pair", to_pair(context, v)
    return "real", v

