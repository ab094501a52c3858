"""Lowerings of torch.stft / torch.istft / torch.fft.* and the window functions, plus the numpy-2 fix for
``aten::Int`` / ``aten::Bool`` on traced shape arithmetic."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import SpecRewriteError
from ..specs import IstftSpec, StftSpec, fft_scale
from . import _emit
from ._ct_private import Var, bind, mb, raw_inputs
from ._pairs import (CONFIG, add, context_is_script, fallback, is_native_complex, is_pair, rule, to_pair,
                     unsupported, where)
from ._pairs import kind as node_kind
from ._pairs import arg as _arg
from ._pairs import value as _val


def _const_int(context, node, i, kw, what):
    v = _arg(context, node, i, kw)
    if isinstance(v, Var):
        raise unsupported(node, f"{what} must be a constant", fix=f"pass {what} as a Python int")
    return None if v is None else int(v)


def _window(context, node, i, kw):
    w = _arg(context, node, i, kw)
    if w is None:
        return None
    if isinstance(w, Var):
        raise SpecRewriteError("the window must be a constant (a buffer, a parameter or a torch.*_window "
                               "call with constant arguments)", op=f"specrewrite.coreml ({node.kind})",
                               where=where(node), fix="create the window in __init__ or from constant sizes")
    return np.asarray(w, dtype=np.float64).reshape(-1)


# ----------------------------------------------------------------------------------------------- stft

@rule("stft")
def stft(context, node):
    ins = raw_inputs(node)
    x = bind(context, ins[0])
    centre_overload = len(ins) > 6 and isinstance(_val(context, ins[6]), str)
    n_fft = _const_int(context, node, 1, "n_fft", "n_fft")
    hop = _const_int(context, node, 2, "hop_length", "hop_length")
    win = _const_int(context, node, 3, "win_length", "win_length")
    window = _window(context, node, 4, "window")
    if centre_overload:  # stft.center(self, n_fft, hop, win, window, center, pad_mode, normalized, ...)
        center, pad_mode = bool(_arg(context, node, 5, "center")), str(_arg(context, node, 6, "pad_mode"))
        k = 7
    else:
        center, pad_mode, k = False, "constant", 5
    normalized = bool(_arg(context, node, k, "normalized", False) or False)
    onesided = _arg(context, node, k + 1, "onesided")
    return_complex = _arg(context, node, k + 2, "return_complex")
    if _arg(context, node, k + 3, "align_to_window"):
        raise unsupported(node, "align_to_window=True is not supported", fix="use align_to_window=False")
    cplx = is_pair(context, x) or is_native_complex(x)
    if cplx and onesided:
        raise unsupported(node, "onesided output needs a real input")
    spec = StftSpec.make(n_fft, hop, win, window, center, pad_mode, normalized,
                         False if cplx else onesided, op="torch.stft", where=where(node))
    if cplx:
        y = _emit.stft_complex_input(to_pair(context, x), spec, CONFIG.mode, CONFIG.strategy)
    else:
        y = _emit.stft(x, spec, CONFIG.mode, CONFIG.strategy)
    add(context, node, mb.identity(x=y, name=node.name), return_complex is None or bool(return_complex))


@rule("istft")
def istft(context, node):
    ins = raw_inputs(node)
    z = bind(context, ins[0])
    if not (is_pair(context, z) or is_native_complex(z)):
        raise unsupported(node, "torch.istft needs a complex input", fix="pass a complex spectrogram")
    n_fft = _const_int(context, node, 1, "n_fft", "n_fft")
    hop = _const_int(context, node, 2, "hop_length", "hop_length")
    win = _const_int(context, node, 3, "win_length", "win_length")
    window = _window(context, node, 4, "window")
    center = _arg(context, node, 5, "center", True)
    normalized = bool(_arg(context, node, 6, "normalized", False) or False)
    onesided = _arg(context, node, 7, "onesided")
    length = _const_int(context, node, 8, "length", "length")
    if _arg(context, node, 9, "return_complex"):
        raise unsupported(node, "return_complex=True (a complex signal) is not supported")
    spec = IstftSpec.make(n_fft, hop, win, window, True if center is None else bool(center), normalized,
                          onesided, op="torch.istft", where=where(node))
    y = _emit.istft(to_pair(context, z), spec, CONFIG.mode, length, CONFIG.strategy)
    add(context, node, mb.identity(x=y, name=node.name), False)


# ------------------------------------------------------------------------------------------------ fft

def _scale(norm, n, forward):
    if isinstance(norm, str) or norm is None or isinstance(norm, (int, np.integer)):
        return fft_scale(norm if not isinstance(norm, np.integer) else int(norm), n, forward)
    raise SpecRewriteError(f"unknown fft norm {norm!r}")


def _size(v, axis):
    d = v.shape[axis]
    if not isinstance(d, (int, np.integer)):
        raise SpecRewriteError("fft along an axis of symbolic length is not supported",
                               fix="give n explicitly or use a fixed length on that axis")
    return int(d)


@rule("fft_fft", "fft_ifft", "fft_rfft", "fft_irfft")
def fft_1d(context, node):
    x = bind(context, raw_inputs(node)[0])
    n = _arg(context, node, 1, "n")
    axis = int(_arg(context, node, 2, "dim", -1))
    norm = _arg(context, node, 3, "norm")
    kind = node_kind(node)
    mode = CONFIG.mode
    cplx = is_pair(context, x) or is_native_complex(x)
    if kind == "fft_rfft":
        if cplx:
            raise unsupported(node, "rfft of a complex input")
        n = _size(x, axis) if n is None else int(n)
        y, pair = _emit.rfft(x, axis, n, _scale(norm, n, True), mode), True
    elif kind == "fft_irfft":
        z = to_pair(context, x)
        n = 2 * (_size(z, axis % (z.rank - 1)) - 1) if n is None else int(n)
        y, pair = _emit.irfft(z, axis, n, _scale(norm, n, False), mode), False
    else:
        z = to_pair(context, x)
        n = _size(z, axis % (z.rank - 1)) if n is None else int(n)
        inverse = kind == "fft_ifft"
        y, pair = _emit.c2c(z, axis, n, _scale(norm, n, not inverse), inverse, mode), True
    add(context, node, mb.identity(x=y, name=node.name), pair)


_ND = ["fft_fftn", "fft_ifftn", "fft_rfftn", "fft_irfftn", "fft_fft2", "fft_ifft2", "fft_rfft2", "fft_irfft2"]


@rule(*_ND)
def fft_nd(context, node):
    """torch.fft.{fft,ifft,rfft,irfft}{2,n}: one-dimensional transforms along each axis (norm per axis)."""
    x = bind(context, raw_inputs(node)[0])
    kind = node_kind(node).replace("2", "n")
    shapes, axes = _arg(context, node, 1, "s"), _arg(context, node, 2, "dim")
    norm, mode = _arg(context, node, 3, "norm"), CONFIG.mode
    cplx = is_pair(context, x) or is_native_complex(x)
    rank = x.rank - 1 if cplx else x.rank
    if axes is None:
        count = len(np.asarray(shapes).reshape(-1)) if shapes is not None else (2 if "2" in node.kind else rank)
        axes = list(range(rank - count, rank))
    axes = [int(a) % rank for a in np.asarray(axes).reshape(-1)]
    sizes = [None] * len(axes) if shapes is None else [int(n) for n in np.asarray(shapes).reshape(-1)]
    if kind == "fft_rfftn":
        if cplx:
            raise unsupported(node, "rfftn of a complex input")
        n = sizes[-1] or _size(x, axes[-1])
        z = _emit.rfft(x, axes[-1], n, _scale(norm, n, True), mode)
        todo, inverse = list(zip(axes[:-1], sizes[:-1])), False
    else:
        z = to_pair(context, x)
        inverse = kind in ("fft_ifftn", "fft_irfftn")
        todo = list(zip(axes, sizes)) if kind != "fft_irfftn" else list(zip(axes[:-1], sizes[:-1]))
    for a, n in reversed(todo):
        n = n or _size(z, a)
        z = _emit.c2c(z, a, n, _scale(norm, n, not inverse), inverse, mode)
    if kind != "fft_irfftn":
        return add(context, node, mb.identity(x=z, name=node.name), True)
    n = sizes[-1] or 2 * (_size(z, axes[-1]) - 1)
    y = _emit.irfft(z, axes[-1], n, _scale(norm, n, False), mode)
    add(context, node, mb.identity(x=y, name=node.name), False)


@rule("_fft_r2c", "_fft_c2r", "_fft_c2c")
def fft_aten(context, node):
    """torch.export's decomposed FFTs: dims list, normalization 0/1/2 (none, 1/sqrt n, 1/n) over all dims."""
    x = bind(context, raw_inputs(node)[0])
    axes = [int(a) for a in np.asarray(_arg(context, node, 1, "dim")).reshape(-1)]
    norm = int(_arg(context, node, 2, "normalization", 0))
    mode, kind = CONFIG.mode, node_kind(node)
    if kind == "_fft_r2c":
        onesided = bool(_arg(context, node, 3, "onesided", True))
        if onesided:
            last = axes[-1]
            n = _size(x, last)
            z = _emit.rfft(x, last, n, _scale(norm, n, True), mode)
            rest = axes[:-1]
        else:
            z, rest = to_pair(context, x), axes
        for a in reversed(rest):
            n = _size(x, a)
            z = _emit.c2c(z, a % x.rank, n, _scale(norm, n, True), False, mode)
        return add(context, node, mb.identity(x=z, name=node.name), True)
    z = to_pair(context, x)
    r = z.rank - 1
    if kind == "_fft_c2c":
        forward = bool(_arg(context, node, 3, "forward", True))
        for a in reversed(axes):
            n = _size(z, a % r)
            z = _emit.c2c(z, a % r, n, _scale(norm, n, forward), not forward, mode)
        return add(context, node, mb.identity(x=z, name=node.name), True)
    last_size = int(_arg(context, node, 3, "last_dim_size"))
    for a in axes[:-1]:
        n = _size(z, a % r)
        z = _emit.c2c(z, a % r, n, _scale(norm, n, False), True, mode)
    y = _emit.irfft(z, axes[-1] % r, last_size, _scale(norm, last_size, False), mode)
    add(context, node, mb.identity(x=y, name=node.name), False)


# -------------------------------------------------------------------------------------------- windows

_WINDOWS = {"hann_window": torch.hann_window, "hamming_window": torch.hamming_window,
            "blackman_window": torch.blackman_window, "bartlett_window": torch.bartlett_window,
            "kaiser_window": torch.kaiser_window}
_OVERLOADS = ["hann_window.periodic", "hamming_window.periodic", "hamming_window.periodic_alpha",
              "hamming_window.periodic_alpha_beta", "blackman_window.periodic", "bartlett_window.periodic",
              "kaiser_window.periodic", "kaiser_window.beta"]


@rule(*_WINDOWS, *_OVERLOADS)
def window_fn(context, node):
    ins = raw_inputs(node)
    # TorchScript appends dtype, layout, device, pin_memory; torch.export passes those as keywords
    n_args = len(ins) - 4 if context_is_script(context) else len(ins)
    args = [_val(context, r) for r in ins[:max(n_args, 1)]]
    if any(isinstance(a, Var) for a in args):
        raise unsupported(node, "window functions need constant arguments", fix="use a constant window length")
    length, rest = int(args[0]), args[1:]
    kw = {}
    if rest:
        kw["periodic"] = bool(rest[0])
    extra = [float(a) for a in rest[1:]]
    if node.kind.startswith("hamming_window") and extra:
        kw["alpha"] = extra[0]
        if len(extra) > 1:
            kw["beta"] = extra[1]
    elif node.kind.startswith("kaiser_window") and extra:
        kw["beta"] = extra[0]
    w = _WINDOWS[node.kind.split(".")[0]](length, dtype=torch.float64, **kw).numpy().astype(np.float32)
    add(context, node, mb.const(val=w, name=node.name), False)


# ----------------------------------------------------------------------------------- numpy 2 scalar fix

@rule("int", "bool")
def scalar_cast(context, node):
    """coremltools calls int()/bool() on the (1,)-shaped value of NumToTensor, an error with numpy >= 2."""
    x = bind(context, raw_inputs(node)[0])
    if isinstance(x, Var) and x.val is not None and np.size(x.val) == 1 and np.ndim(x.val) > 0:
        py = bool if "bool" in node.kind else int
        val = py(np.asarray(x.val).reshape(-1)[0])
        return add(context, node, mb.const(val=val, name=node.name), False)
    return fallback(context, node)
