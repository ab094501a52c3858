"""Numpy implementations of MIL ops for the reference evaluator in ``evaluate.py``.

Every function has the signature ``fn(a, op)``: ``a`` maps each input name of the
op (including the coremltools defaults of optional inputs) to a numpy array
(fp16 already widened to fp32), a python ``str`` or ``None``; ``op`` is the MIL
``Operation``.  It returns one array, or a tuple of arrays for multi-output ops.
Casting to the declared output dtype (and fp16 rounding) is done by the caller.
Semantics follow ``coremltools/converters/mil/mil/ops/defs/iOS1{5,6,7,8}``.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

OPS: dict = {}


def _reg(*names):
    def deco(fn):
        for n in names:
            OPS[n] = fn
        return fn

    return deco


def opset(op) -> int:
    """iOS version of the op *definition* used (iOS18 programs reuse iOS17 classes)."""
    m = re.search(r"iOS(\d+)", type(op).__module__)
    return int(m.group(1)) if m else 15


def _i(v):
    return int(np.asarray(v).reshape(()))


def _ints(v):
    return [int(t) for t in np.asarray(v).reshape(-1)]


def _bools(v, n):
    return [False] * n if v is None else [bool(t) for t in np.asarray(v).reshape(-1)]


def _axis(ax, rank):
    ax = int(ax)
    if not -rank <= ax < max(rank, 1):
        raise IndexError(f"mil_eval: axis {ax} out of range for rank {rank}")
    return ax + rank if ax < 0 else ax


# ----------------------------------------------------------------- elementwise
def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(np.asarray(x, np.float64))


def _sigmoid(x):
    x = np.asarray(x)
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


_UNARY = {
    "abs": np.abs, "acos": np.arccos, "asin": np.arcsin, "atan": np.arctan, "atanh": np.arctanh,
    "ceil": np.ceil, "cos": np.cos, "cosh": np.cosh, "erf": _erf, "exp": np.exp,
    "exp2": lambda x: np.power(2.0, x), "floor": np.floor, "round": np.round, "sign": np.sign,
    "sin": np.sin, "sinh": np.sinh, "sqrt": np.sqrt, "square": np.square, "tan": np.tan,
    "tanh": np.tanh, "logical_not": np.logical_not, "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6), "sigmoid": _sigmoid, "silu": lambda x: x * _sigmoid(x),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "softplus": lambda x: np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0),
}
for _n, _f in _UNARY.items():
    _reg(_n)(lambda a, op, _f=_f: _f(a["x"]))


def _true_div(x, y):
    return np.true_divide(x, y)


def _floor_div(x, y):
    if np.issubdtype(np.result_type(x, y), np.integer):
        return np.floor_divide(x, y)
    return np.floor(np.true_divide(x, y))


_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": _true_div,
    "floor_div": _floor_div, "mod": np.mod, "maximum": np.maximum, "minimum": np.minimum,
    "pow": lambda x, y: np.power(np.asarray(x, np.float64), y),
    "equal": np.equal, "not_equal": np.not_equal, "greater": np.greater,
    "greater_equal": np.greater_equal, "less": np.less, "less_equal": np.less_equal,
    "logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor,
}
for _n, _f in _BINARY.items():
    _reg(_n)(lambda a, op, _f=_f: _f(a["x"], a["y"]))


@_reg("log")
def _log(a, op):
    return np.log(a["x"] + a["epsilon"])


@_reg("rsqrt")
def _rsqrt(a, op):
    return 1.0 / np.sqrt(a["x"] + a["epsilon"])


@_reg("inverse")
def _inverse(a, op):
    return 1.0 / (a["x"] + a["epsilon"])


@_reg("clip")
def _clip(a, op):
    return np.minimum(np.maximum(a["x"], a["alpha"]), a["beta"])


@_reg("threshold")
def _threshold(a, op):
    return np.maximum(a["x"], a["alpha"])


@_reg("cast", "identity")
def _identity(a, op):  # the caller converts to the declared output dtype
    return np.array(a["x"], copy=True)


@_reg("select")
def _select(a, op):
    return np.where(a["cond"], a["a"], a["b"])


@_reg("gelu")
def _gelu(a, op):
    x, mode = a["x"], a["mode"]
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x * _sigmoid(1.702 * x)
    return 0.5 * x * (1 + _erf(x / np.sqrt(2.0)))


@_reg("leaky_relu")
def _leaky_relu(a, op):
    return np.where(a["x"] >= 0, a["x"], a["alpha"] * a["x"])


@_reg("elu")
def _elu(a, op):
    return np.where(a["x"] > 0, a["x"], a["alpha"] * np.expm1(np.minimum(a["x"], 0)))


@_reg("clamped_relu")
def _clamped_relu(a, op):
    x = a["x"]
    return np.minimum(np.where(x >= 0, x, a["alpha"] * x), a["beta"])


@_reg("thresholded_relu")
def _thresholded_relu(a, op):
    return np.where(a["x"] >= a["alpha"], a["x"], 0)


@_reg("linear_activation")
def _linear_activation(a, op):
    return a["alpha"] * a["x"] + a["beta"]


@_reg("scaled_tanh")
def _scaled_tanh(a, op):
    return a["alpha"] * np.tanh(a["beta"] * a["x"])


@_reg("sigmoid_hard")
def _sigmoid_hard(a, op):
    return np.clip(a["alpha"] * a["x"] + a["beta"], 0, 1)


def _per_channel(v, rank):
    v = np.asarray(v).reshape(-1)
    return v.reshape((1, -1) + (1,) * (rank - 2))


@_reg("prelu")
def _prelu(a, op):
    x = a["x"]
    return np.where(x > 0, x, _per_channel(a["alpha"], x.ndim) * x)


@_reg("softplus_parametric")
def _softplus_parametric(a, op):
    x = a["x"]
    al, be = _per_channel(a["alpha"], x.ndim), _per_channel(a["beta"], x.ndim)
    z = be * x
    return al * (np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0))


@_reg("softmax")
def _softmax(a, op):
    x, ax = a["x"], _i(a["axis"])
    e = np.exp(x - np.max(x, axis=ax, keepdims=True))
    return e / np.sum(e, axis=ax, keepdims=True)


@_reg("scaled_dot_product_attention")
def _sdpa(a, op):
    """iOS18: softmax(Q K^T / sqrt(E) + mask) V; a bool mask keeps where True (the rest -inf)."""
    q, k, v, mask = a["query"], a["key"], a["value"], a["attn_mask"]
    s = np.matmul(q, np.swapaxes(k, -1, -2)) / np.sqrt(np.float32(q.shape[-1]))
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    return np.matmul(_softmax({"x": s, "axis": -1}, op), v)


# ------------------------------------------------------------------ reductions
def _axes(a, rank):
    return tuple(range(rank)) if a["axes"] is None else tuple(_axis(t, rank) for t in _ints(a["axes"]))


def _lse(x, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True)
    r = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return r if keepdims else np.squeeze(r, axis=axis)


_REDUCE = {
    "reduce_sum": np.sum, "reduce_mean": np.mean, "reduce_max": np.max, "reduce_min": np.min,
    "reduce_prod": np.prod, "reduce_log_sum_exp": _lse,
    "reduce_sum_square": lambda x, axis, keepdims: np.sum(np.square(x), axis=axis, keepdims=keepdims),
    "reduce_l1_norm": lambda x, axis, keepdims: np.sum(np.abs(x), axis=axis, keepdims=keepdims),
    "reduce_l2_norm": lambda x, axis, keepdims: np.sqrt(np.sum(np.square(x), axis=axis, keepdims=keepdims)),
    "reduce_log_sum": lambda x, axis, keepdims: np.log(np.sum(x, axis=axis, keepdims=keepdims)),
}
for _n, _f in _REDUCE.items():
    _reg(_n)(lambda a, op, _f=_f: _f(a["x"], axis=_axes(a, a["x"].ndim), keepdims=bool(a["keep_dims"])))


@_reg("reduce_argmax", "reduce_argmin")
def _reduce_arg(a, op):
    f = np.argmax if op.op_type == "reduce_argmax" else np.argmin
    x = a["x"]
    ax = _axis(_i(a["axis"]), x.ndim)
    r = f(x, axis=ax)
    return np.expand_dims(r, ax) if bool(a["keep_dims"]) else r


# --------------------------------------------------------------- linear / conv
@_reg("linear")
def _linear(a, op):
    y = np.matmul(a["x"], a["weight"].T)
    return y if a["bias"] is None else y + a["bias"]


@_reg("matmul")
def _matmul(a, op):
    x, y = a["x"], a["y"]
    if bool(a["transpose_x"]) and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if bool(a["transpose_y"]) and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


@_reg("einsum")
def _einsum(a, op):
    eq = str(a["equation"]).replace(" ", "")
    x, y = a["values"]
    lhs, out = eq.split("->")
    s1, s2 = lhs.split(",")
    lab = {c: i for i, c in enumerate(dict.fromkeys(s1 + s2))}
    pat = ([lab[c] for c in s1], [lab[c] for c in s2], [lab.get(c) for c in out])
    ok = {4: ([0, 1, 2, 3], [0, 3, 2, 4], [0, 1, 2, 4]), 3: ([0, 1, 2], [2, 1, 3], [0, 1, 3])}
    if x.ndim != y.ndim or ok.get(x.ndim) != pat:
        raise NotImplementedError(f"mil_eval: einsum equation {eq!r} not supported")
    bx, by = list(x.shape), list(y.shape)
    for d in ((0, 2) if x.ndim == 4 else (1,)):  # B and H broadcast
        bx[d] = by[d] = max(x.shape[d], y.shape[d])
    return np.einsum(eq, np.broadcast_to(x, bx), np.broadcast_to(y, by))


def _split_total(pad_type, totals):
    # 'same' puts the odd extra element after (bottom/right heavy), 'same_lower' before
    return [(t // 2, t - t // 2) if pad_type == "same" else (t - t // 2, t // 2) for t in totals]


def _conv_pads(a, in_sp, ks_eff, strides):
    pt = str(a["pad_type"]).lower()
    if pt == "custom":
        p = _ints(a["pad"])
        return [(p[2 * i], p[2 * i + 1]) for i in range(len(in_sp))]
    if pt == "valid":
        return [(0, 0)] * len(in_sp)
    if pt in ("same", "same_lower"):
        return _split_total(pt, [max(0, (math.ceil(n / s) - 1) * s + k - n)
                                 for n, k, s in zip(in_sp, ks_eff, strides)])
    raise NotImplementedError(f"mil_eval: pad_type {pt!r}")


@_reg("conv")
def _conv(a, op):
    x, w, G = a["x"], a["weight"], _i(a["groups"])
    n, cin, *in_sp = x.shape
    cout, gin, *ks = w.shape
    nd = len(ks)
    st, dil = _ints(a["strides"]), _ints(a["dilations"])
    ks_eff = [(k - 1) * d + 1 for k, d in zip(ks, dil)]
    xp = np.pad(x, [(0, 0), (0, 0)] + _conv_pads(a, in_sp, ks_eff, st))
    v = sliding_window_view(xp, ks_eff, axis=tuple(range(2, 2 + nd)))
    v = v[(slice(None),) * 2 + tuple(slice(None, None, s) for s in st) + tuple(slice(None, None, d) for d in dil)]
    out_sp = v.shape[2:2 + nd]
    P, K, gout = int(np.prod(out_sp)), int(np.prod(ks)), cout // G
    wg = w.reshape(G, gout, gin, K)
    if n * cin * P * K <= 1 << 24:  # im2col: one batched matmul
        v = v.reshape(n, G, gin, P, K).transpose(1, 0, 3, 2, 4).reshape(G, n * P, gin * K)
        y = np.matmul(v, wg.reshape(G, gout, gin * K).transpose(0, 2, 1))  # (G, n*P, gout)
        y = y.reshape(G, n, P, gout).transpose(1, 0, 3, 2).reshape(n, cout, *out_sp)
    else:  # large: accumulate one kernel tap at a time
        y = 0
        for j, kidx in enumerate(itertools.product(*[range(k) for k in ks])):
            tap = v[(Ellipsis,) + kidx].reshape(n, G, gin, P)
            y = y + np.matmul(wg[..., j], tap)  # (n, G, gout, P)
        y = y.reshape(n, cout, *out_sp)
    return y if a["bias"] is None else y + _per_channel(a["bias"], y.ndim)


@_reg("conv_transpose")
def _conv_transpose(a, op):
    x, w, G = a["x"], a["weight"], _i(a["groups"])
    n, cin, *in_sp = x.shape
    _, gout, *ks = w.shape
    nd, gin, cout = len(ks), cin // G, gout * G
    st, dil = _ints(a["strides"]), _ints(a["dilations"])
    full = [(i - 1) * s + (k - 1) * d + 1 for i, s, k, d in zip(in_sp, st, ks, dil)]
    K, P = int(np.prod(ks)), int(np.prod(in_sp))
    wk = w.reshape(G, gin, gout * K).transpose(0, 2, 1)  # (G, gout*K, gin)
    cols = np.matmul(wk[None], x.reshape(n, G, gin, P)).reshape(n, G, gout, *ks, *in_sp)
    y = np.zeros((n, G, gout, *full), dtype=cols.dtype)
    for kidx in itertools.product(*[range(k) for k in ks]):
        sl = tuple(slice(k * d, k * d + (i - 1) * s + 1, s) for k, d, i, s in zip(kidx, dil, in_sp, st))
        y[(slice(None),) * 3 + sl] += cols[(slice(None),) * 3 + kidx]
    pt = str(a["pad_type"]).lower()
    target = None if a["output_shape"] is None else _ints(a["output_shape"])[2:]
    if pt in ("same", "same_lower"):
        # crop such that the output is D_in*stride (or output_shape), split like conv 'same'
        tgt = target or [i * s for i, s in zip(in_sp, st)]
        pads = _split_total(pt, [max(0, f - t) for f, t in zip(full, tgt)])
    elif pt == "custom":
        p = _ints(a["pad"])
        pads = [(p[2 * i], p[2 * i + 1]) for i in range(nd)]
    else:
        pads = [(0, 0)] * nd
    y = y[(slice(None),) * 3 + tuple(slice(lo, f - hi) for (lo, hi), f in zip(pads, full))]
    if target is not None:  # crop / zero-extend at the end to the requested shape
        y = y[(slice(None),) * 3 + tuple(slice(0, t) for t in target)]
        y = np.pad(y, [(0, 0)] * 3 + [(0, t - c) for t, c in zip(target, y.shape[3:])])
    y = y.reshape(n, cout, *y.shape[3:])
    return y if a["bias"] is None else y + _per_channel(a["bias"], y.ndim)


def _pool(a, op, kind):
    x = a["x"]
    n, c, *in_sp = x.shape
    ks, st = _ints(a["kernel_sizes"]), _ints(a["strides"])
    nd = len(ks)
    pads = _conv_pads(a, in_sp, ks, st)
    padded = [i + lo + hi for i, (lo, hi) in zip(in_sp, pads)]
    out_sp = [int(d) if isinstance(d, (int, np.integer)) else (p - k) // s + 1  # declared shape has ceil_mode
              for d, p, k, s in zip(op.outputs[0].shape[2:], padded, ks, st)]
    extra = [max(0, (o - 1) * s + k - p) for o, s, k, p in zip(out_sp, st, ks, padded)]  # ceil_mode
    spec = [(0, 0), (0, 0)] + [(lo, hi + e) for (lo, hi), e in zip(pads, extra)]
    real = np.pad(np.ones(in_sp, bool), spec[2:])
    inpad = np.pad(np.ones(padded, bool), [(0, e) for e in extra])
    win = lambda t: sliding_window_view(t, ks, axis=tuple(range(t.ndim - nd, t.ndim)))[
        (Ellipsis,) + tuple(slice(0, o * s, s) for o, s in zip(out_sp, st)) + (slice(None),) * nd]
    wa = tuple(range(-nd, 0))
    if kind == "max":
        return np.max(win(np.where(real, np.pad(x, spec), -np.inf)), axis=wa)
    if kind == "l2":
        return np.sqrt(np.sum(win(np.pad(x, spec) ** 2), axis=wa))
    cnt = np.sum(win(real if bool(a["exclude_padding_from_average"]) else inpad), axis=wa)
    return np.sum(win(np.pad(x, spec)), axis=wa) / np.maximum(cnt, 1)


_reg("max_pool")(lambda a, op: _pool(a, op, "max"))
_reg("avg_pool")(lambda a, op: _pool(a, op, "avg"))
_reg("l2_pool")(lambda a, op: _pool(a, op, "l2"))


# -------------------------------------------------------------- normalization
def _norm(x, axes, eps):
    m = np.mean(x, axis=axes, keepdims=True)
    v = np.mean(np.square(x - m), axis=axes, keepdims=True)
    return (x - m) / np.sqrt(v + eps)


@_reg("layer_norm")
def _layer_norm(a, op):
    x = a["x"]
    axes = _axes(a, x.ndim)
    shp = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    y = _norm(x, axes, a["epsilon"])
    if a["gamma"] is not None:
        y = y * np.reshape(a["gamma"], shp)
    return y if a["beta"] is None else y + np.reshape(a["beta"], shp)


@_reg("batch_norm", "instance_norm")
def _bn(a, op):
    x = a["x"]
    if op.op_type == "batch_norm":
        y = (x - _per_channel(a["mean"], x.ndim)) / np.sqrt(_per_channel(a["variance"], x.ndim) + a["epsilon"])
    else:
        y = _norm(x, tuple(range(2, x.ndim)), a["epsilon"])
    if a["gamma"] is not None:
        y = y * _per_channel(a["gamma"], x.ndim)
    return y if a["beta"] is None else y + _per_channel(a["beta"], x.ndim)


@_reg("l2_norm")
def _l2_norm(a, op):
    x = a["x"]
    flat = x.reshape(int(np.prod(x.shape[:-3])), -1)
    return (flat / np.sqrt(np.sum(flat * flat, axis=1, keepdims=True) + a["epsilon"])).reshape(x.shape)


from . import _eval_ops_shape  # noqa: E402,F401 - registers the shape / indexing ops
