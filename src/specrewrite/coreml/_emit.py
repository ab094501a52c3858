"""The MIL emitter: stft / istft / fft as real MIL ops, the same math as ``specrewrite._torch``.

Complex values are real tensors with a trailing dimension of 2 (re, im). Every function takes and returns MIL
Vars and works with static and symbolic (RangeDim) lengths.
"""
from __future__ import annotations

import math

import numpy as np

from ..kernels import (analysis_chunked, analysis_dense, analysis_stage1, analysis_stage2, fft_matrix, ifft_real_matrix, istft_plan, ola_shifts_ok,
                       stft_layout, synthesis_conv_tables, synthesis_conv_weights, synthesis_dense,
                       synthesis_groups)
from ..modes import Mode, Strategy
from ..specs import IstftSpec, StftSpec
from ..errors import SpecRewriteError
from ._ct_private import mb, opset_at_least
from ._mil_ns import bases, dims, fill_shape, iop, is_static, reshape, slice_axis



def ct_target(name):
    import coremltools as ct

    return getattr(ct.target, name)


def _plan(spec: StftSpec, strategy: Strategy, mode: Mode):
    """(plan, chunks): ``kernels.stft_layout``, or one plain conv where the backend cannot do better."""
    if strategy is Strategy.DENSE:
        return None, 1
    if mode is not Mode.STORE and not opset_at_least(ct_target("iOS15")):
        return None, 1  # the neuralnetwork backend has no grouped conv with non-constant weights
    return stft_layout(strategy.value, spec.n_fft, spec.hop_length, spec.n_bins, mode is Mode.STORE)


def center_pad(x, pad: int, mode: str):
    """torch.stft's centre padding of the last axis of x in any torch pad mode."""
    if pad == 0:
        return x
    if mode == "circular":
        head, tail = slice_axis(x, -1, -pad), slice_axis(x, -1, 0, pad)
        return mb.concat(values=[head, x, tail], axis=-1)
    spec = [0, 0] * (x.rank - 1) + [pad, pad]
    if mode == "constant":
        return mb.pad(x=x, pad=np.array(spec, dtype=np.int32), mode="constant", constant_val=0.0)
    return mb.pad(x=x, pad=np.array(spec[-2:], dtype=np.int32), mode=mode)


def stft(x, spec: StftSpec, mode: Mode, strategy: Strategy, scale: float = 1.0):
    """Real x (..., L) -> (..., F, T, 2), torch.stft(return_complex=True) semantics (view_as_real layout)."""
    n, nb, hop = spec.n_fft, spec.n_bins, spec.hop_length
    lead = dims(x)[:-1]
    length = dims(x)[-1]
    x = reshape(x, [-1, 1, length])
    if spec.center:
        x = center_pad(x, n // 2, spec.pad_mode)
    scale = scale * (n ** -0.5 if spec.normalized else 1.0)
    window = spec.padded_window()
    plan, chunks = _plan(spec, strategy, mode)
    key = ("stft", spec, scale, plan, chunks)
    if plan is None and chunks > 1:   # the same chunks of taps as RealSTFT._chunked
        lc = -(-n // chunks)
        (w,) = bases(mode, x, key, [(lambda ns: analysis_chunked(ns, n, nb, window, scale, chunks),
                                     lambda a: a.reshape(chunks * 2 * nb, 1, lc))], nb * chunks * lc)
        if chunks * lc > n:
            x = mb.pad(x=x, pad=np.array([0, 0, 0, 0, 0, chunks * lc - n], dtype=np.int32))
        y = None   # one conv per chunk, added in order, as RealSTFT._chunked
        for c in range(chunks):
            part = mb.conv(x=slice_axis(x, -1, c * lc, (c + 1 - chunks) * lc or None),
                           weight=slice_axis(w, 0, c * 2 * nb, (c + 1) * 2 * nb), strides=[hop], pad_type="valid")
            y = part if y is None else mb.add(x=y, y=part)                      # (B, 2F, T)
        re, im = mb.split(x=y, num_splits=2, axis=1)
        y = mb.stack(values=[re, im], axis=-1)                                    # (B, F, T, 2)
    elif plan is None:
        (w,) = bases(mode, x, key, [(lambda ns: analysis_dense(ns, n, nb, window, scale),
                                     lambda a: a.reshape(2 * nb, 1, n))], nb * n)
        y = mb.conv(x=x, weight=w, strides=[hop], pad_type="valid")                 # (B, 2F, T)
        re, im = mb.split(x=y, num_splits=2, axis=1)
        y = mb.stack(values=[re, im], axis=-1)                                    # (B, F, T, 2)
    else:
        w1, w2 = bases(mode, x, key, [
            (lambda ns: analysis_stage1(ns, plan, window, scale),
             lambda a: a.reshape(plan.n2 * 2 * plan.n1, 1, plan.n1)),
            (lambda ns: analysis_stage2(ns, plan), lambda a: a)], n * n)
        y = _factored(x, spec, plan, w1, w2)
    d = dims(y)
    return reshape(y, lead + d[1:])


def _shifted_copies(x, count: int, step: int):
    """(B, 1, L) -> (B, count, L - (count - 1) * step), copy c from sample c * step (RealSTFT's shifted_copies)."""
    return mb.concat(values=[slice_axis(x, -1, c * step, (c + 1 - count) * step or None) for c in range(count)],
                     axis=1)


def _factored(x, spec, plan, w1, w2):
    n, hop, n1, n2 = spec.n_fft, spec.hop_length, plan.n1, plan.n2
    b, length = dims(x)[0], dims(x)[-1]
    if plan.framed:   # the same shifted copies and dilated conv as RealSTFT._factored
        phases = _shifted_copies(x, n2, 1)
        # a constant weight: stft_layout takes no framed plan for bases that are inputs or built in the graph
        y = mb.conv(x=phases, weight=w1, strides=[hop], dilations=[n2], pad_type="valid", groups=n2)
        return _factored_stage2(y, spec, plan, w2, b, dims(y)[-1])
    t = iop(iop(iop(length, n, "-"), hop, "//"), 1, "+")
    used = iop(iop(iop(t, 1, "-"), hop, "*"), n, "+")
    if is_static(used) and is_static(length) and used == length:
        pass
    elif is_static(used):
        x = slice_axis(x, -1, 0, used)
    else:
        end = mb.concat(values=[np.array([0, 0], dtype=np.int32), mb.expand_dims(x=used, axes=[0])], axis=0)
        x = mb.slice_by_index(x=x, begin=[0, 0, 0], end=end, end_mask=[True, True, False])
    phases = mb.transpose(x=reshape(x, [b, iop(used, n2, "//"), n2]), perm=[0, 2, 1])  # (B, N2, L/N2)
    y = mb.conv(x=phases, weight=w1, strides=[hop // n2], pad_type="valid", groups=n2)   # (B, N2*2*N1, T)
    return _factored_stage2(y, spec, plan, w2, b, t)


def _factored_stage2(y, spec, plan, w2, b, t):
    """Stage 1's output (B, N2*2*N1, T) -> (B, F, T, 2)."""
    n1, n2 = plan.n1, plan.n2
    y = mb.transpose(x=reshape(y, [b, n2, 2, n1, t]), perm=[0, 4, 3, 2, 1])          # (B, T, N1, 2, N2)
    y = mb.matmul(x=reshape(y, [b, t, n1, 2 * n2]), y=w2)                              # (B, T, N1, 2*K2)
    y = mb.transpose(x=reshape(y, [b, t, n1, 2, plan.k2]), perm=[0, 4, 2, 1, 3])     # (B, K2, N1, T, 2)
    y = reshape(y, [b, plan.k2 * n1, t, 2])
    if plan.k2 * n1 != spec.n_bins:
        y = slice_axis(y, 1, 0, spec.n_bins)
    return y


def stft_complex_input(x, spec: StftSpec, mode: Mode, strategy: Strategy, scale: float = 1.0):
    """stft of a complex (pair) signal (..., L, 2): two real transforms with full (two-sided) bases."""
    re = stft(slice_axis(x, -1, 0, 1, squeeze=True), spec, mode, strategy, scale)
    im = stft(slice_axis(x, -1, 1, 2, squeeze=True), spec, mode, strategy, scale)
    out_re = mb.sub(x=slice_axis(re, -1, 0, 1), y=slice_axis(im, -1, 1, 2))
    out_im = mb.add(x=slice_axis(re, -1, 1, 2), y=slice_axis(im, -1, 0, 1))
    return mb.concat(values=[out_re, out_im], axis=-1)


def overlap_add(frames, hop: int):
    """(B, T, N) -> (B, (T-1)*hop + N): sum of shifted blocks (N / gcd(N, hop) pads and adds)."""
    b, t, n = dims(frames)
    g = math.gcd(n, hop)
    r, s = n // g, hop // g
    blocks = reshape(frames, [b, t, r, g])
    if s > 1:  # frame t starts at block t*s: interleave s-1 zero frames
        blocks = mb.expand_dims(x=blocks, axes=[2])
        blocks = mb.pad(x=blocks, pad=np.array([0, 0, 0, 0, 0, s - 1, 0, 0, 0, 0], dtype=np.int32))
        blocks = reshape(blocks, [b, iop(t, s, "*"), r, g])
    out = None
    for i in range(r):
        part = mb.pad(x=slice_axis(blocks, 2, i, i + 1, squeeze=True),
                      pad=np.array([i, r - 1 - i, 0, 0], dtype=np.int32))
        out = part if out is None else mb.add(x=out, y=part)
    out = reshape(out, [b, -1])
    want = iop(iop(iop(t, 1, "-"), hop, "*"), n, "+")
    if is_static(want):
        return slice_axis(out, 1, 0, want)
    end = mb.concat(values=[np.array([0], dtype=np.int32), mb.expand_dims(x=want, axes=[0])], axis=0)
    return mb.slice_by_index(x=out, begin=[0, 0], end=end, end_mask=[True, False])


def _istft_frames_factored(zz, spec: IstftSpec, mode: Mode, plan, scale: float):
    """(B, 2F, T) [re | im] -> windowed frames (B, T, N): the factored inverse as two grouped 1x1 convs, the same
    weights, channel orders and stages as ``RealISTFT._frames`` (``kernels.synthesis_conv_weights`` / ``_tables``)."""
    n1 = plan.n1
    window = spec.padded_window()
    wa, wb = bases(mode, zz, ("istft_factored", spec, plan, scale), [
        (lambda ns: synthesis_conv_weights(ns, plan, window, scale)[0], lambda a: a),
        (lambda ns: synthesis_conv_weights(ns, plan, window, scale)[1], lambda a: a)], spec.n_fft ** 2)
    idx = {k: v.astype(np.int32) for k, v in synthesis_conv_tables(plan).items()}
    x = mb.gather(x=zz, indices=idx["gather_a"], axis=1)                     # (B, 2*H*N1 [k2, c, k1], T)
    x = mb.conv(x=x, weight=wa, pad_type="valid", groups=synthesis_groups(plan))      # (B, 2*H*N1 [k2, c, n1], T)
    x = mb.gather(x=x, indices=idx["gather_b"], axis=1)                      # (B, 2*H*N1 [n1, c, k2], T)
    x = mb.conv(x=x, weight=wb, pad_type="valid", groups=n1)                          # (B, N [n1, n2], T)
    x = mb.gather(x=x, indices=idx["sample_order"], axis=1)                           # (B, N, T)
    return mb.transpose(x=x, perm=[0, 2, 1])


def istft(z, spec: IstftSpec, mode: Mode, length=None, strategy: Strategy = Strategy.AUTO):
    """Pair spectrum (..., F, T, 2) -> real (..., L), torch.istft semantics. The inverse DFT is the factored one
    (``kernels.istft_plan``, float32 error at torch.istft's own) where a plan exists, else one dense basis."""
    n, nb, hop = spec.n_fft, spec.n_bins, spec.hop_length
    d = dims(z)
    lead, f, t = d[:-3], d[-3], d[-2]
    z = reshape(z, [-1, f, t, 2])
    if is_static(f) and f != nb:
        z = slice_axis(z, 1, 0, nb) if f > nb else mb.pad(x=z, pad=np.array([0, nb - f, 0, 0, 0, 0],
                                                                             dtype=np.int32))
    zz = reshape(mb.transpose(x=z, perm=[0, 3, 1, 2]), [-1, 2 * nb, t])               # (B, 2F, T)
    scale = math.sqrt(n) if spec.normalized else 1.0
    window = spec.padded_window()
    ola_ok = ola_shifts_ok(n, hop)
    as_conv = mode is Mode.STORE or not ola_ok
    if as_conv and mode is not Mode.STORE and not opset_at_least(ct_target("iOS17")):
        raise SpecRewriteError(
            f"istft with hop {hop} and n_fft {n} needs a conv_transpose with a non-constant weight in "
            f"mode {mode.value!r}, which Core ML supports from iOS17", op="torch.istft",
            fix="use mode='store', a deployment target >= iOS17, or a hop with n_fft/gcd(n_fft, hop) <= 64")
    plan = istft_plan(strategy.value, n, hop)
    if plan is not None and mode is not Mode.STORE and not opset_at_least(ct_target("iOS15")):
        plan = None   # the neuralnetwork backend has no grouped conv with non-constant weights
    if plan is not None:
        y = overlap_add(_istft_frames_factored(zz, spec, mode, plan, scale), hop)
    else:
        post = (lambda a: a.reshape(2 * nb, 1, n)) if as_conv else (lambda a: a)
        (w,) = bases(mode, zz, ("istft", spec, as_conv), [
            (lambda ns: synthesis_dense(ns, n, nb, spec.onesided, window, scale), post)], nb * n)
        if w.rank == 3:
            y = mb.squeeze(x=mb.conv_transpose(x=zz, weight=w, strides=[hop], pad_type="valid"), axes=[1])
        else:
            frames = mb.matmul(x=mb.transpose(x=zz, perm=[0, 2, 1]), y=w)             # (B, T, N)
            y = overlap_add(frames, hop)
    ones = mb.fill(shape=fill_shape([1, 1, t]), value=1.0)
    wsq = np.asarray(window ** 2, dtype=np.float32).reshape(1, 1, n)
    env = mb.squeeze(x=mb.conv_transpose(x=ones, weight=wsq, strides=[hop], pad_type="valid"), axes=[1])
    start = n // 2 if spec.center else 0
    total = iop(iop(iop(t, 1, "-"), hop, "*"), n, "+")
    pad_after = 0
    if length is not None:
        end = start + int(length)
        if is_static(total) and end > total:
            pad_after, end = end - total, None
    elif spec.center:
        end = -(n // 2) if n // 2 > 0 else None
    else:
        end = None
    y, env = slice_axis(y, -1, start, end), slice_axis(env, -1, start, end)
    safe = mb.select(cond=mb.greater(x=mb.abs(x=env), y=np.float32(1e-11)), a=env, b=np.float32(1.0))
    y = mb.real_div(x=y, y=safe)
    if pad_after:
        y = mb.pad(x=y, pad=np.array([0, pad_after], dtype=np.int32))
    return reshape(y, lead + [dims(y)[-1]])


# ------------------------------------------------------------------------------------------------- fft

def _move_last(x, axis):
    """Move ``axis`` to the end (returns the Var and the inverse permutation)."""
    r = x.rank
    axis %= r
    if axis == r - 1:
        return x, None
    perm = [i for i in range(r) if i != axis] + [axis]
    return mb.transpose(x=x, perm=perm), list(np.argsort(perm))


def _fit(x, axis, n):
    """Trim or zero-pad ``axis`` of x to n (torch.fft's ``n``)."""
    cur = x.shape[axis]
    if not is_static(cur) or cur == n:
        return x
    if cur > n:
        return slice_axis(x, axis, 0, n)
    spec = [0, 0] * x.rank
    spec[2 * (axis % x.rank) + 1] = n - cur
    return mb.pad(x=x, pad=np.array(spec, dtype=np.int32))


def rfft(x, axis: int, n: int, scale: float, mode: Mode):
    """Real x -> pair (bins at ``axis``, trailing 2)."""
    nb = n // 2 + 1
    x, inv = _move_last(_fit(x, axis, n), axis)
    (w,) = bases(mode, x, ("r2c", n, scale), [
        (lambda ns: analysis_dense(ns, n, nb, [1.0] * n, scale),
         lambda a: a.reshape(2, nb, n).transpose(2, 1, 0).reshape(n, 2 * nb))], n * nb)
    y = mb.matmul(x=x, y=w)
    y = reshape(y, dims(y)[:-1] + [nb, 2])
    return y if inv is None else mb.transpose(x=y, perm=[int(p) for p in inv] + [x.rank])


def c2c(z, axis: int, n: int, scale: float, inverse: bool, mode: Mode):
    """Pair z, complex transform along complex ``axis`` (an axis of the pair tensor excluding the last)."""
    r = z.rank
    axis %= (r - 1)
    z = _fit(z, axis, n)
    perm = None
    if axis != r - 2:
        perm = [i for i in range(r - 1) if i != axis] + [axis, r - 1]
        z = mb.transpose(x=z, perm=perm)
    (w,) = bases(mode, z, ("c2c", n, scale, inverse), [
        (lambda ns: fft_matrix(ns, n, n, inverse, scale),
         lambda a: a.reshape(2, n, 2, n).transpose(1, 0, 3, 2).reshape(2 * n, 2 * n))], n * n)
    d = dims(z)
    y = mb.matmul(x=reshape(z, d[:-2] + [2 * n]), y=w)
    y = reshape(y, d[:-2] + [n, 2])
    return y if perm is None else mb.transpose(x=y, perm=[int(p) for p in np.argsort(perm)])


def irfft(z, axis: int, n: int, scale: float, mode: Mode):
    """Pair z (bins at complex ``axis``) -> real signal of length n at ``axis``."""
    r = z.rank
    axis %= (r - 1)
    nb = n // 2 + 1
    z = _fit(z, axis, nb)
    perm = None
    if axis != r - 2:
        perm = [i for i in range(r - 1) if i != axis] + [axis, r - 1]
        z = mb.transpose(x=z, perm=perm)
    (w,) = bases(mode, z, ("c2r", n, scale), [
        (lambda ns: ifft_real_matrix(ns, n, nb, True, scale),
         lambda a: a.reshape(2, nb, n).transpose(1, 0, 2).reshape(2 * nb, n))], n * nb)
    d = dims(z)
    y = mb.matmul(x=reshape(z, d[:-2] + [2 * nb]), y=w)
    if perm is None:
        return y
    inv = [int(p) for p in np.argsort(perm[:-1])]
    return mb.transpose(x=y, perm=inv)
