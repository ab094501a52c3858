"""Numpy implementations of the MIL shape, data-movement and indexing ops for ``evaluate`` (the elementwise,
reduction and neural-network ops are in ``_eval_ops.py``; same signature ``fn(a, op)``)."""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._eval_ops import OPS, _axis, _bools, _i, _ints, _reg, _sigmoid, opset  # noqa: F401


# ------------------------------------------------------- shape / data movement
@_reg("reshape")
def _reshape(a, op):
    x, shp = a["x"], _ints(a["shape"])
    if 0 in shp:
        if opset(op) >= 17:  # iOS17: zeros are matched from the right, 1 if out of range
            r = x.shape[::-1]
            shp = [(r[j] if j < len(r) else 1) if s == 0 else s for j, s in enumerate(shp[::-1])][::-1]
        else:
            if len(shp) != x.ndim:
                raise ValueError("mil_eval: reshape with 0 requires len(shape) == rank(x) before iOS17")
            shp = [x.shape[j] if s == 0 else s for j, s in enumerate(shp)]
    return np.reshape(x, shp)


@_reg("expand_dims")
def _expand_dims(a, op):
    x = a["x"]
    axes = _ints(a["axes"])
    r = x.ndim + len(axes)
    return np.reshape(x, np.expand_dims(np.empty(x.shape, np.int8), tuple(_axis(t, r) for t in axes)).shape)


@_reg("squeeze")
def _squeeze(a, op):
    x = a["x"]
    if a["axes"] is None:
        return np.reshape(x, [d for d in x.shape if d != 1])
    axes = {_axis(t, x.ndim) for t in _ints(a["axes"])}
    return np.reshape(x, [d for i, d in enumerate(x.shape) if not (i in axes and d == 1)])


@_reg("transpose")
def _transpose(a, op):
    return np.transpose(a["x"], _ints(a["perm"]))


@_reg("flatten2d")
def _flatten2d(a, op):
    x = a["x"]
    ax = _i(a["axis"])
    ax = ax + x.ndim if ax < 0 else ax
    return x.reshape(int(np.prod(x.shape[:ax])), int(np.prod(x.shape[ax:])))


@_reg("concat")
def _concat(a, op):
    vals = [np.atleast_1d(v) for v in a["values"]]
    ax = _i(a["axis"])
    if a.get("interleave") is not None and bool(a["interleave"]):
        ax = _axis(ax, vals[0].ndim)
        s = list(vals[0].shape)
        s[ax] *= len(vals)
        return np.stack(vals, axis=ax + 1).reshape(s)
    return np.concatenate(vals, axis=ax)


@_reg("stack")
def _stack(a, op):
    return np.stack(a["values"], axis=_i(a["axis"]))


@_reg("split")
def _split(a, op):
    x = a["x"]
    ax = _axis(_i(a["axis"]), x.ndim)
    if a["split_sizes"] is not None:
        sizes = _ints(a["split_sizes"])
    else:
        k = _i(a["num_splits"])
        sizes = [x.shape[ax] // k] * k
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=ax))


@_reg("tile")
def _tile(a, op):
    return np.tile(a["x"], _ints(a["reps"]))


@_reg("reverse")
def _reverse(a, op):
    x = a["x"]
    axes = range(x.ndim) if a["axes"] is None else _ints(a["axes"])
    return np.flip(x, axis=tuple(axes)) if x.ndim else x


@_reg("pad")
def _pad(a, op):
    x, p, mode = a["x"], _ints(a["pad"]), str(a["mode"])
    if min(p, default=0) < 0:
        raise NotImplementedError("mil_eval: negative pad")
    spec = [(0, 0)] * (x.ndim - len(p) // 2) + [(p[2 * i], p[2 * i + 1]) for i in range(len(p) // 2)]
    if mode == "constant":
        return np.pad(x, spec, mode="constant", constant_values=np.asarray(a["constant_val"]).item())
    if mode == "reflect":
        for d, (lo, hi) in enumerate(spec):
            if max(lo, hi) > x.shape[d] - 1:
                raise ValueError(f"mil_eval: reflect pad {lo, hi} too large for dim {x.shape[d]}")
        return np.pad(x, spec, mode="reflect")
    if mode == "replicate":
        return np.pad(x, spec, mode="edge")
    raise NotImplementedError(f"mil_eval: pad mode {mode!r}")


def _slices(a, x):
    r = x.ndim
    begin, end = _ints(a["begin"]), _ints(a["end"])
    stride = [1] * r if a["stride"] is None else _ints(a["stride"])
    bm, em, sm = _bools(a["begin_mask"], r), _bools(a["end_mask"], r), _bools(a["squeeze_mask"], r)
    idx = []
    for d in range(r):
        if sm[d]:  # pure index at begin (0 under begin_mask), end/stride ignored
            b = 0 if bm[d] else (begin[d] + x.shape[d] if begin[d] < 0 else begin[d])
            if not 0 <= b < x.shape[d]:
                raise IndexError(f"mil_eval: squeeze index {begin[d]} out of range for dim {x.shape[d]}")
            idx.append(b)
        else:  # numpy semantics with masks meaning "open end" (as coremltools' value_inference)
            idx.append(slice(None if bm[d] else begin[d], None if em[d] else end[d], stride[d]))
    return tuple(idx)


@_reg("slice_by_index")
def _slice_by_index(a, op):
    x = a["x"]
    return np.asarray(x[_slices(a, x)])


@_reg("slice_update")
def _slice_update(a, op):
    x = np.array(a["x"], copy=True)
    idx = _slices(a, x)
    x[idx] = np.reshape(a["update"], x[idx].shape)
    return x


@_reg("slice_by_size")
def _slice_by_size(a, op):
    x = a["x"]
    idx = []
    for d, (b, s) in enumerate(zip(_ints(a["begin"]), _ints(a["size"]))):
        b = b + x.shape[d] if b < 0 else b
        idx.append(slice(b, None if s == -1 else b + s))
    return x[tuple(idx)]


def _check_idx(op, idx, size):
    idx = np.asarray(idx).astype(np.int64)
    neg_ok = opset(op) < 17  # iOS17+: negative indices are out of bounds (undefined behaviour)
    lo = -size if neg_ok else 0
    if idx.size and (idx.min() < lo or idx.max() >= size):
        raise IndexError(
            f"mil_eval: {op.op_type} ({op.name}) index out of range [{lo}, {size}) "
            f"(min {idx.min()}, max {idx.max()}); undefined in Core ML")
    return np.where(idx < 0, idx + size, idx)


@_reg("gather")
def _gather(a, op):
    x = a["x"]
    ax = _axis(_i(a["axis"]), x.ndim)
    bd = _i(a["batch_dims"]) if a.get("batch_dims") is not None else 0
    idx = _check_idx(op, a["indices"], x.shape[ax])
    if bd == 0:
        return np.take(x, idx, axis=ax)
    B = x.shape[:bd]
    xs = x.reshape((-1,) + x.shape[bd:])
    ids = idx.reshape((-1,) + idx.shape[bd:])
    res = np.stack([np.take(xi, ii, axis=ax - bd) for xi, ii in zip(xs, ids)])
    return res.reshape(B + res.shape[1:])


@_reg("gather_along_axis")
def _gather_along_axis(a, op):
    x = a["x"]
    ax = _axis(_i(a["axis"]), x.ndim)
    return np.take_along_axis(x, _check_idx(op, a["indices"], x.shape[ax]), axis=ax)


@_reg("gather_nd")
def _gather_nd(a, op):
    x, idx = a["x"], np.asarray(a["indices"]).astype(np.int64)
    bd = _i(a["batch_dims"]) if a.get("batch_dims") is not None else 0
    k = idx.shape[-1]
    for j in range(k):
        idx[..., j] = _check_idx(op, idx[..., j], x.shape[bd + j])
    if bd == 0:
        return x[tuple(idx[..., j] for j in range(k))]
    B = x.shape[:bd]
    xs, ids = x.reshape((-1,) + x.shape[bd:]), idx.reshape((-1,) + idx.shape[bd:])
    res = np.stack([xi[tuple(ii[..., j] for j in range(k))] for xi, ii in zip(xs, ids)])
    return res.reshape(B + res.shape[1:])


_SCATTER = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide,
            "max": np.maximum, "min": np.minimum}


def _scatter_into(out, index, upd, mode):
    if mode == "update":
        out[index] = upd
    elif mode in _SCATTER:
        _SCATTER[mode].at(out, index, upd)
    else:
        raise NotImplementedError(f"mil_eval: scatter mode {mode!r}")
    return out


@_reg("scatter")
def _scatter(a, op):
    out = np.array(a["data"], dtype=np.result_type(a["data"], a["updates"]), copy=True)
    ax = _axis(_i(a["axis"]), out.ndim)
    idx = _check_idx(op, a["indices"], out.shape[ax])
    _scatter_into(np.moveaxis(out, ax, 0), idx, np.moveaxis(a["updates"], ax, 0), str(a["mode"]))
    return out


@_reg("scatter_along_axis")
def _scatter_along_axis(a, op):
    out = np.array(a["data"], dtype=np.result_type(a["data"], a["updates"]), copy=True)
    ax = _axis(_i(a["axis"]), out.ndim)
    ind = _check_idx(op, a["indices"], out.shape[ax])
    full = list(np.indices(ind.shape, sparse=True))
    full[ax] = ind
    return _scatter_into(out, tuple(full), a["updates"], str(a["mode"]))


@_reg("scatter_nd")
def _scatter_nd(a, op):
    out = np.array(a["data"], dtype=np.result_type(a["data"], a["updates"]), copy=True)
    idx = np.asarray(a["indices"])
    index = tuple(_check_idx(op, idx[..., j], out.shape[j]) for j in range(idx.shape[-1]))
    return _scatter_into(out, index, a["updates"], str(a["mode"]))


@_reg("shape")
def _shape(a, op):
    return np.array(np.shape(a["x"]), dtype=np.int32)


@_reg("fill")
def _fill(a, op):
    return np.full(_ints(a["shape"]), a["value"])


@_reg("fill_like")
def _fill_like(a, op):
    return np.full(np.shape(a["ref_tensor"]), a["value"])


@_reg("range_1d")
def _range_1d(a, op):
    return np.arange(a["start"], a["end"], a["step"])


@_reg("band_part")
def _band_part(a, op):
    x = a["x"]
    lo, up = _i(a["lower"]), _i(a["upper"])
    m, n = x.shape[-2:]
    d = np.arange(m)[:, None] - np.arange(n)[None, :]
    keep = ((lo < 0) | (d <= lo)) & ((up < 0) | (-d <= up))
    return np.where(keep, x, np.zeros((), x.dtype))


@_reg("cumsum")
def _cumsum(a, op):
    x = a["x"]
    ax = _axis(_i(a["axis"]), x.ndim)
    rev, exc = bool(a["reverse"]), bool(a["exclusive"])
    y = np.flip(x, ax) if rev else x
    c = np.cumsum(y, axis=ax, dtype=y.dtype)
    if exc:
        c = np.concatenate([np.zeros_like(np.take(c, [0], axis=ax)), np.delete(c, -1, axis=ax)], axis=ax)
    return np.flip(c, ax) if rev else c


def _order(x, ax, ascending):
    return np.argsort(x if ascending else -x, axis=ax, kind="stable")


@_reg("argsort")
def _argsort(a, op):
    return _order(a["x"], _i(a["axis"]), bool(a["ascending"]))


@_reg("topk")
def _topk(a, op):
    x = a["x"]
    ax = _axis(_i(a["axis"]), x.ndim)
    k = _i(a["k"])
    k = x.shape[ax] if k == -1 else k
    ind = np.take(_order(x, ax, bool(a["ascending"])), np.arange(k), axis=ax)
    vals = np.take_along_axis(x, ind, axis=ax)
    if a.get("return_indices") is not None and not bool(a["return_indices"]):
        return vals
    return vals, ind


@_reg("one_hot")
def _one_hot(a, op):
    idx = np.asarray(a["indices"])
    depth = _i(a["one_hot_vector_size"])
    ax = _i(a["axis"])
    ax = ax + idx.ndim + 1 if ax < 0 else ax
    hot = np.expand_dims(idx, ax) == np.arange(depth).reshape([-1 if i == ax else 1 for i in range(idx.ndim + 1)])
    return np.where(hot, a["on_value"], a["off_value"])


@_reg("non_zero")
def _non_zero(a, op):
    return np.transpose(np.nonzero(a["x"]))


@_reg("sliding_windows")
def _sliding_windows(a, op):
    x = a["x"]
    ax, size, st = _axis(_i(a["axis"]), x.ndim), _i(a["size"]), _i(a["stride"])
    v = sliding_window_view(x, size, axis=ax)  # window dim goes last
    v = np.take(v, np.arange(0, v.shape[ax], st), axis=ax)
    return np.moveaxis(v, -1, ax + 1)


def _d2s(x, bs):  # depth_to_space / pixel_shuffle (CRD ordering)
    n, c, h, w = x.shape
    return x.reshape(n, c // bs**2, bs, bs, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c // bs**2, h * bs, w * bs)


def _s2d(x, bs):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // bs, bs, w // bs, bs).transpose(0, 1, 3, 5, 2, 4).reshape(n, c * bs**2, h // bs, w // bs)


_reg("pixel_shuffle")(lambda a, op: _d2s(a["x"], _i(a["upscale_factor"])))
_reg("pixel_unshuffle")(lambda a, op: _s2d(a["x"], _i(a["downscale_factor"])))


@_reg("depth_to_space")
def _depth_to_space(a, op):  # DCR ordering, as TF
    x, bs = a["x"], _i(a["block_size"])
    n, c, h, w = x.shape
    return x.reshape(n, bs, bs, c // bs**2, h, w).transpose(0, 3, 4, 1, 5, 2).reshape(n, c // bs**2, h * bs, w * bs)


@_reg("space_to_depth")
def _space_to_depth(a, op):
    x, bs = a["x"], _i(a["block_size"])
    n, c, h, w = x.shape
    return x.reshape(n, c, h // bs, bs, w // bs, bs).transpose(0, 3, 5, 1, 2, 4).reshape(n, c * bs**2, h // bs, w // bs)


# -------------------------------------------------------------------- resizing
@_reg("crop")
def _crop(a, op):
    x = a["x"]
    (t, b), (l, r) = _ints(a["crop_height"]), _ints(a["crop_width"])
    return x[..., t:x.shape[-2] - b, l:x.shape[-1] - r]


def _take_nearest(x, ax, src):
    return np.take(x, np.clip(src, 0, x.shape[ax] - 1), axis=ax)


@_reg("upsample_nearest_neighbor")
def _upsample_nn(a, op):
    x = a["x"]
    for ax, key in ((-2, "scale_factor_height"), (-1, "scale_factor_width")):
        sc = float(np.asarray(a[key]))
        out = int(math.floor(x.shape[ax] * sc))
        x = _take_nearest(x, ax, np.floor(np.arange(out) / sc).astype(np.int64))
    return x


@_reg("resize_nearest_neighbor")
def _resize_nn(a, op):
    x = a["x"]
    for ax, key in ((-2, "target_size_height"), (-1, "target_size_width")):
        out = _i(a[key])
        x = _take_nearest(x, ax, np.floor(np.arange(out) * (x.shape[ax] / out)).astype(np.int64))
    return x


@_reg("upsample_bilinear")
def _upsample_bilinear(a, op):
    x = a["x"]
    ac = bool(a["align_corners"])
    hp = (not ac) if a.get("half_pixel_centers") is None else bool(a["half_pixel_centers"])
    for ax, key in ((-2, "scale_factor_height"), (-1, "scale_factor_width")):
        n_in = x.shape[ax]
        n_out = int(math.floor(n_in * float(np.asarray(a[key]))))
        i = np.arange(n_out, dtype=np.float64)
        if ac:
            g = i * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        else:
            sp = n_in / n_out
            g = i * sp + (0.5 * sp - 0.5 if hp else 0.0)
        g = np.clip(g, 0, n_in - 1)
        lo = np.floor(g).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        wt = (g - lo).reshape([-1] + [1] * (-ax - 1))
        x = np.take(x, lo, axis=ax) * (1 - wt) + np.take(x, hi, axis=ax) * wt
    return x


def _q_param(v, x, axis):
    v = np.asarray(v)
    if v.ndim == 0 or axis is None:
        return v
    ax = _axis(_i(axis), x.ndim)
    return v.reshape([-1 if i == ax else 1 for i in range(x.ndim)])


@_reg("quantize")  # iOS17: clip(round(x / scale) + zero_point), round half to even
def _quantize(a, op):
    x = a["input"]
    q = np.round(x / _q_param(a["scale"], x, a["axis"]))
    if a["zero_point"] is not None:
        q = q + _q_param(a["zero_point"], x, a["axis"]).astype(np.float32)
    info = np.iinfo(np.dtype(str(a["output_dtype"])))
    return np.clip(q, info.min, info.max)


@_reg("dequantize")  # iOS17: scale * (x - zero_point)
def _dequantize(a, op):
    x = np.asarray(a["input"], np.float32)
    zp = 0 if a["zero_point"] is None else _q_param(a["zero_point"], x, a["axis"]).astype(np.float32)
    return _q_param(a["scale"], x, a["axis"]) * (x - zp)


# ------------------------------------------------------------------- recurrent
_ACT = {
    "sigmoid": _sigmoid, "tanh": np.tanh, "scaled_tanh": np.tanh, "relu": lambda v: np.maximum(v, 0),
    "linear": lambda v: v, "hard_sigmoid": lambda v: np.clip(0.2 * v + 0.5, 0, 1),
}


@_reg("lstm")
def _lstm(a, op):
    x = a["x"]  # [s, b, I]
    s = x.shape[0]
    H = a["weight_hh"].shape[1]
    ra, ca, oa = (_ACT[str(a[k])] for k in ("recurrent_activation", "cell_activation", "activation"))
    clip = None if a["clip"] is None else float(np.asarray(a["clip"]))

    def run(wih, whh, b, peep, reverse, h, c):
        b = np.zeros(4 * H, x.dtype) if b is None else b
        pi, pf, po = np.split(np.zeros(3 * H, x.dtype) if peep is None else peep, 3)
        xw = np.matmul(x, wih.T) + b  # gates ordered [i, f, o, z]
        outs = np.zeros((s, x.shape[1], H), x.dtype)
        for t in range(s - 1, -1, -1) if reverse else range(s):
            gi, gf, go, gz = np.split(xw[t] + h @ whh.T, 4, axis=-1)
            i, f, z = ra(gi + pi * c), ra(gf + pf * c), ca(gz)
            c = f * c + i * z
            if clip is not None:
                c = np.clip(c, -clip, clip)
            h = ra(go + po * c) * oa(c)
            outs[t] = h
        return outs, h, c

    h0, c0, direction = a["initial_h"], a["initial_c"], str(a["direction"])
    if direction == "bidirectional":
        f = run(a["weight_ih"], a["weight_hh"], a["bias"], a["peephole"], False, h0[:, :H], c0[:, :H])
        r = run(a["weight_ih_back"], a["weight_hh_back"], a["bias_back"], a["peephole_back"], True,
                h0[:, H:], c0[:, H:])
        res = [np.concatenate([p, q], axis=-1) for p, q in zip(f, r)]
    else:
        res = list(run(a["weight_ih"], a["weight_hh"], a["bias"], a["peephole"], direction == "reverse", h0, c0))
    if not bool(a["output_sequence"]):
        res[0] = res[1][None]  # final hidden state of each direction
    return tuple(res)
