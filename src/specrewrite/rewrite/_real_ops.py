"""Run-time forms of real (non-complex) ops that exporters translate wrongly or not at all.

The graph pass spells these out wherever they appear, spectral path or not:

- ``as_strided`` (framing a signal by strides: julius' unfold, torchaudio's kaldi ``fbank``): coremltools has no
  translation, and with a dynamic length its strides are ``sym_stride`` values that torch.onnx cannot export. It
  becomes one gather from the tensor's memory order, with the strides computed from the sizes.
- ``arange`` with a fractional start, end or step (phase vocoders' ``arange(0, frames, rate)``): eager computes
  start + i * step in float64 and rounds once, while torch.onnx exports a float32 ``Range`` (90 * 1.3 gives
  116.99999 instead of 117, and a ``.long()`` of it picks another frame). It becomes an integer arange scaled in
  float64, then cast.
- reductions and pads coremltools' torch frontend cannot convert (the rewritten model is what users trace for
  Core ML): ``std_mean`` / ``var_mean`` (no converter), ``mean`` / ``sum`` of every element without ``dim``
  (``KeyError: 'axes'``), ``F.pad`` with negative amounts (cropping; "pad must be non-negative"). They become
  the same arithmetic with explicit axes, and slices.
- ops coremltools has no converter for at all (a survey of torch's OpInfo database, 2026-12-02: 169 of 369 ops
  fail whether traced directly or after torch.export): ``hypot``, ``trunc``, ``fmod``, ``logsigmoid``,
  ``asinh``, ``acosh``, tensor ``clamp``, ``lerp`` spelt out below (torch decomposes them into prims), and
  ``unfold`` (framing), ``diff``, ``logaddexp``, ``movedim``, ... replaced by torch's own decomposition
  (``CORE_ML_DECOMPOSE``), whose pieces convert; where torch has none the op is kept.
- uninitialised allocations (``empty_like``, ``new_empty``, ``empty``, ``empty_strided``, ``empty_permuted``):
  litert-torch has no lowering for ``empty_permuted`` (what ``empty_like`` decomposes to), coremltools none for
  ``empty_strided``. Zeros are one legal content of an uninitialised tensor, and every exporter has them.
"""
from __future__ import annotations

import math

import torch

from .._torch.bases import size_tensor, tracing
from ._solve import _sizes


def strided_gather(x: torch.Tensor, order, size, stride, offset=0) -> torch.Tensor:
    """``x.as_strided(size, stride, offset)`` for a tensor dense in ``order`` from storage offset 0: one gather
    of its memory (``x.permute(order)`` flattened) at offset + sum_d i_d * stride_d."""
    flat = x.permute(list(order)).reshape(-1)
    dev = x.device
    idx = size_tensor(offset or 0, dev)
    for d, (n, s) in enumerate(zip(size, stride)):
        shape = [1] * len(size)
        shape[d] = -1
        idx = idx + (torch.arange(n, device=dev) * size_tensor(s, dev)).reshape(shape)
    idx = idx.expand(list(size))
    return flat.index_select(0, idx.reshape(-1)).reshape(list(size))


def arange_f64(*args, dtype=None, layout=None, device=None, pin_memory=None):
    """torch.arange with a floating dtype and fractional bounds. In eager it is torch's own; in an exporter's
    trace start + i * step in float64, rounded once (within an ulp of torch's float32 kernel, where a float32
    Range drifts by many): i is an integer arange, as torch.onnx exports a floating arange as a float32 Range
    whatever its dtype."""
    if not tracing():   # eager: torch's own kernel, to the last bit (its vectorised float32 steps included)
        return torch.arange(*args, dtype=dtype, device=device)
    start, step = (0, 1) if len(args) == 1 else (args[0], args[2] if len(args) > 2 else 1)
    count = torch.arange(*args, dtype=torch.float32, device=device).shape[0]
    i = torch.arange(count, device=device).to(torch.float64)
    f64 = [torch.tensor(v, dtype=torch.float64, device=device) if isinstance(v, (int, float)) else v
           for v in (step, start)]   # tensors: an exporter would make a Python float a float32 constant
    return (i * f64[0] + f64[1]).to(dtype or torch.get_default_dtype())


def _arange_dtype(args, kwargs) -> torch.dtype:
    """The dtype torch.arange gives: the one asked for, else the default float with a float bound, else int64."""
    return kwargs.get("dtype") or (torch.get_default_dtype() if any(isinstance(a, float) for a in args)
                                   else torch.int64)


def fractional_arange(args, kwargs) -> bool:
    """An arange whose result is floating with a non-integer start, end or step."""
    dtype = _arange_dtype(args, kwargs)
    return dtype.is_floating_point and dtype != torch.float64 and \
        any(isinstance(a, float) and not float(a).is_integer() for a in args)


def integral_float_arange(args, kwargs) -> bool:
    """A floating arange whose start, end and step are whole numbers, one of them a Python float (HTDemucs'
    ``arange(0.0, dim, 2)``): torch.onnx writes its Range with float and int64 inputs, which ONNX Runtime refuses to
    load (only onnxscript's optimiser, folding it, had hidden that)."""
    return _arange_dtype(args, kwargs).is_floating_point and any(isinstance(a, float) for a in args) and \
        all(_whole(a) for a in args)


def _whole(a) -> bool:
    """A whole number: an int, a whole float, or a graph value that is an integer (a size)."""
    if isinstance(a, float):
        return a.is_integer()
    if isinstance(a, torch.fx.Node):
        a = a.meta.get("val")
    return isinstance(a, (int, torch.SymInt)) and not isinstance(a, bool)


def arange_cast(*args, dtype=None, layout=None, device=None, pin_memory=None):
    """``integral_float_arange``'s arange: an integer arange cast to its dtype (the same whole numbers)."""
    ints = [int(a) if isinstance(a, float) else a for a in args]
    return torch.arange(*ints, device=device).to(dtype or torch.get_default_dtype())


def _dims(x: torch.Tensor, dim):
    if dim is None:
        return list(range(x.dim()))
    return [d % max(x.dim(), 1) for d in ([dim] if isinstance(dim, int) else dim)] or list(range(x.dim()))


def mean_all(x: torch.Tensor, *, dtype=None) -> torch.Tensor:
    """``aten.mean.default``: the mean of every element, with its axes spelt out."""
    return torch.mean(x, dim=_dims(x, None), dtype=dtype) if x.dim() else (x if dtype is None else x.to(dtype))


def sum_all(x: torch.Tensor, *, dtype=None) -> torch.Tensor:
    """``aten.sum.default``: the sum of every element, with its axes spelt out."""
    return torch.sum(x, dim=_dims(x, None), dtype=dtype) if x.dim() else (x if dtype is None else x.to(dtype))


def var_mean(x: torch.Tensor, dim=None, *, correction=None, keepdim: bool = False):
    """``aten.var_mean.correction``: (variance, mean) in two passes (mean, then the mean square deviation), as
    accurate as torch's own; ``correction`` defaults to 1 (Bessel), as in torch."""
    dims = _dims(x, dim)
    m = torch.mean(x, dim=dims, keepdim=True) if dims else x
    d = x - m
    n = 1
    for a in dims:
        n = n * x.shape[a]
    c = 1 if correction is None else correction
    # the mean square times n / (n - c) (n <= c: inf / nan, as torch), dims kept until the end: coremltools
    # fuses a sum divided by a size expression into reduce_mean (dividing by n instead of n - c), and its
    # fuse_reduce_mean pass fails on a rank-0 result divided
    var = (torch.mean(d * d, dim=dims, keepdim=True) if dims else d * d) * (n / (n - c) if n > c else math.inf)
    if keepdim or not dims:
        return var, m
    return torch.squeeze(var, dims), torch.squeeze(m, dims)


def std_mean(x: torch.Tensor, dim=None, *, correction=None, keepdim: bool = False):
    """``aten.std_mean.correction``: (standard deviation, mean)."""
    var, mean = var_mean(x, dim, correction=correction, keepdim=keepdim)
    return torch.sqrt(var), mean


def var_mean_dim(x, dim=None, unbiased: bool = True, keepdim: bool = False):
    """``aten.var_mean.dim`` (what ``torch.var_mean(x, dim)`` records)."""
    return var_mean(x, dim, correction=int(unbiased), keepdim=keepdim)


def std_mean_dim(x, dim=None, unbiased: bool = True, keepdim: bool = False):
    """``aten.std_mean.dim``."""
    return std_mean(x, dim, correction=int(unbiased), keepdim=keepdim)


def var_mean_all(x, unbiased: bool = True):
    """``aten.var_mean.default``."""
    return var_mean(x, None, correction=int(unbiased))


def std_mean_all(x, unbiased: bool = True):
    """``aten.std_mean.default``."""
    return std_mean(x, None, correction=int(unbiased))


def explicit_einsum(equation: str, ranks) -> str:
    """``equation`` with its ellipsis written out as letters for operands of ``ranks`` (and an implicit output
    made explicit, as torch orders it: the ellipsis, then the letters used once, sorted). coremltools' einsum
    converter fails on every ellipsis ('...kj,j->...kj' of torch-mdct, '...d,pde->p...e' of hyper-connections in
    bs-roformer), and converts the same equation spelt out."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        return equation
    used = set(c for c in eq if c.isalpha())
    free = [c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in used]
    widths = [r - len(t.replace("...", "")) if "..." in t else 0 for t, r in zip(terms, ranks)]
    width = max(widths, default=0)
    if width > len(free) or min(widths, default=0) < 0:
        return equation
    dots = "".join(free[:width])
    terms = [t.replace("...", dots[width - w:]) for t, w in zip(terms, widths)]
    if not arrow:
        letters = "".join(terms)
        rhs = dots + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in dots))
    else:
        rhs = rhs.replace("...", dots)
    return ",".join(terms) + "->" + rhs


SPLIT_SECTIONS_MAX = 16


def many_sections(args) -> bool:
    """A ``split_with_sizes`` into more pieces than ``SPLIT_SECTIONS_MAX`` (band-split separators cut a spectrum
    into 60+ bands): torch.onnx writes its sizes as an initializer in the external data file, and ONNX Runtime's
    shape inference of ``Split`` cannot read it there, so the file does not load."""
    return len(args) > 1 and isinstance(args[1], (list, tuple)) and len(args[1]) > SPLIT_SECTIONS_MAX


def split_sections(x: torch.Tensor, split_sizes, dim: int = 0):
    """``torch.split(x, sizes, dim)`` as one ``narrow`` per piece: views of ``x``, as split's are."""
    out, start = [], 0
    for k in split_sizes:
        out.append(torch.narrow(x, dim, start, k))
        start = start + k
    return out


def negative_pad(args, kwargs) -> bool:
    """Whether an ``aten.pad`` / ``constant_pad_nd`` call crops (some pad amount is a negative int)."""
    pad = args[1] if len(args) > 1 else kwargs.get("pad")
    mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
    return mode == "constant" and any(isinstance(p, int) and p < 0 for p in (pad or ()))


def crop_pad(x: torch.Tensor, pad, mode: str = "constant", value=None) -> torch.Tensor:
    """``F.pad(x, pad, value=v)`` with some negative amounts: the crops as slices, then the non-negative pad.
    ``pad`` lists (left, right) pairs from the last axis backwards, as F.pad does."""
    for i in range(len(pad) // 2):
        axis = x.dim() - 1 - i
        lo, hi = pad[2 * i], pad[2 * i + 1]
        start = -lo if isinstance(lo, int) and lo < 0 else 0
        stop = hi if isinstance(hi, int) and hi < 0 else None   # from the end: no size arithmetic in the graph
        if start or stop is not None:
            x = x[(slice(None),) * axis + (slice(start, stop),)]
    rest = [p if not (isinstance(p, int) and p < 0) else 0 for p in pad]
    if any(not isinstance(p, int) or p for p in rest):
        x = torch.constant_pad_nd(x, rest, 0.0 if value is None else value)
    return x


# aten ops (name.overload) coremltools 9 cannot convert and torch decomposes into ops it can
CORE_ML_DECOMPOSE = frozenset({
    "unfold.default", "diff.default", "logaddexp.default", "logaddexp2.default", "sgn.default",
    "addcmul.default", "addcdiv.default", "movedim.int", "movedim.intlist", "broadcast_to.default",
    "view_as.default", "ravel.default", "flipud.default", "fliplr.default", "rot90.default", "xlogy.Tensor",
    "logit.default", "hardshrink.default", "softshrink.default", "celu.default", "count_nonzero.dim_IntList",
    "count_nonzero.default", "take_along_dim.default", "diag_embed.default", "aminmax.default", "frac.default",
    "deg2rad.default", "rad2deg.default", "float_power.Tensor_Scalar", "float_power.Tensor_Tensor",
    "true_divide.Tensor", "square.default", "logsumexp.default",
})


def decompose_for_core_ml(target) -> bool:
    """Whether the graph pass replaces this real op by torch's decomposition of it."""
    return isinstance(target, torch._ops.OpOverload) and target.namespace == "aten" \
        and f"{target._opname}.{target._overloadname}" in CORE_ML_DECOMPOSE


# ops whose torch decomposition is written in prims (which no converter knows): spelt out here instead
# (the graph pass maps them in lower._SPELL_OUT)
def _floating(*xs) -> bool:
    """Whether torch computes the op in floating point (an integer op keeps torch's own integer kernel)."""
    return any(isinstance(x, torch.Tensor) and x.is_floating_point() or isinstance(x, float) for x in xs)


def trunc(x):
    """``torch.trunc``: rounding toward zero."""
    if not _floating(x):
        return torch.trunc(x)
    return torch.sign(x) * torch.floor(torch.abs(x))


def fmod(a, b):
    """``torch.fmod``: the remainder with the sign of the dividend, a - b * trunc(a / b) (integer operands keep
    torch's integer fmod: a / b would be a float division)."""
    if not _floating(a, b):
        return torch.fmod(a, b)
    return a - b * trunc(a / b)


def log_sigmoid(x):
    """``F.logsigmoid``: min(x, 0) - log1p(exp(-|x|)), stable for any x."""
    return torch.clamp(x, max=0.0) - torch.log1p(torch.exp(-torch.abs(x)))


def asinh(x):
    """``torch.asinh``: sign(x) log(|x| + sqrt(x^2 + 1)) (odd, so exact in sign)."""
    a = torch.abs(x)
    return torch.sign(x) * torch.log(a + torch.sqrt(a * a + 1.0))


def acosh(x):
    """``torch.acosh``: log(x + sqrt(x^2 - 1)) (nan below 1, as torch)."""
    return torch.log(x + torch.sqrt(x * x - 1.0))


def clamp_tensor(x, min=None, max=None):  # noqa: A002 - torch's argument names
    """``torch.clamp`` with tensor bounds: maximum / minimum."""
    if min is not None:
        x = torch.maximum(x, min)
    if max is not None:
        x = torch.minimum(x, max)
    return x


def lerp(a, b, w):
    """``torch.lerp``: a + w (b - a)."""
    return a + w * (b - a)


def reciprocal(x):
    """``torch.reciprocal`` as a division: coremltools lowers it to MIL ``inverse``, which adds its default
    epsilon 1e-4 to x (1 / (x + 1e-4): 0.5% off at x = 0.02)."""
    return torch.ones_like(x) / x


def empty_like(x, *, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None):
    """``torch.empty_like`` as zeros (see the module's note)."""
    return torch.zeros_like(x, dtype=dtype, device=device)


def new_empty(x, size, *, dtype=None, layout=None, device=None, pin_memory=None):
    """``Tensor.new_empty`` as zeros."""
    return x.new_zeros(size, dtype=dtype, device=device)


def empty(size, *, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None):
    """``torch.empty`` as zeros."""
    return torch.zeros(size, dtype=dtype, device=device)


def empty_strided(size, stride, *, dtype=None, layout=None, device=None, pin_memory=None):
    """``torch.empty_strided`` as zeros (the strides of a fresh tensor are an exporter's business)."""
    return torch.zeros(size, dtype=dtype, device=device)


def empty_permuted(size, physical_layout, *, dtype=None, layout=None, device=None, pin_memory=None):
    """``torch.empty_permuted`` as zeros."""
    return torch.zeros(size, dtype=dtype, device=device)


def col2im(x, output_size, kernel_size, dilation, padding, stride):
    """``F.fold`` (aten ``col2im``) of one-dimensional blocks, the overlap-add of hand-written inverse STFTs
    (Vocos' ``padding="same"`` head, WavTokenizer, torch-mdct): Pad + Add over shifted hop blocks. ONNX's Col2Im
    runs on ONNX Runtime's CPU provider only and coremltools folds only blocks that do not overlap. Any other
    fold (two-dimensional blocks, a dilation) stays ``col2im``."""
    from .._torch.istft import overlap_add_hop_blocks

    (h, w), (kh, kw), (dh, dw), (ph, pw), (sh, sw) = (tuple(v) for v in (output_size, kernel_size, dilation,
                                                                          padding, stride))
    if not (kh == 1 and dh == 1 and ph == 0 and sh == 1 and dw == 1 and isinstance(h, int) and h == 1):
        if kw == 1 and dw == 1 and pw == 0 and sw == 1 and isinstance(w, int) and w == 1 and dh == 1:
            out = col2im(x, (1, h), (1, kh), (1, 1), (0, ph), (1, sh))   # blocks along H: the same, transposed
            return out.transpose(-1, -2)
        return torch.ops.aten.col2im.default(x, output_size, kernel_size, dilation, padding, stride)
    batched = x.dim() == 3
    xb = x if batched else x.unsqueeze(0)
    b, ck, t = _sizes(xb.shape)   # (ints under a trace: no aten::Int)
    c = ck // kw
    frames = xb.reshape(b * c, kw, t).transpose(1, 2)                      # (B*C, T, K)
    y = overlap_add_hop_blocks(frames, sw, kw)                             # (B*C, (T-1)*S + K)
    extra = w + 2 * pw - ((t - 1) * sw + kw)                              # positions no block reaches
    if extra:
        y = torch.nn.functional.pad(y, (0, extra))
    y = y[:, pw:pw + w] if pw else y
    y = y.reshape(b, c, 1, w)
    return y if batched else y.squeeze(0)


def diagonal(x, offset: int = 0, dim1: int = 0, dim2: int = 1, gather: bool = False):
    """``torch.diagonal`` as one gather of the flattened matrix dimensions (a covariance's trace in MVDR
    beamformers: ``psd.diagonal(0, -2, -1)``); coremltools converts only ``diagonal(0, 0, 1)``, which stays
    (unless ``gather``)."""
    r = x.dim()
    d1, d2 = dim1 % r, dim2 % r
    if (offset, d1, d2) == (0, 0, 1) and not gather:
        return torch.diagonal(x, 0, 0, 1)
    y = x.permute([d for d in range(r) if d not in (d1, d2)] + [d1, d2])   # (coremltools has no movedim)
    n, m = _sizes(y.shape[-2:])
    if offset >= 0:
        k, start = max(min(n, m - offset), 0), offset
    else:
        k, start = max(min(n + offset, m), 0), -offset * m
    idx = torch.arange(k, device=x.device) * (m + 1) + start
    return y.flatten(-2).index_select(-1, idx)


def cdiagonal(z, offset: int = 0, dim1: int = 0, dim2: int = 1):
    """``torch.diagonal`` of a complex value (..., 2): the same gather of each part (the Core ML plugin's form of
    the graph pass's per-part rule)."""
    r = z.dim() - 1
    d1, d2 = dim1 % r, dim2 % r
    parts = [diagonal(z[..., i], offset, d1, d2, gather=True) for i in (0, 1)]
    return torch.stack(parts, -1)


def roll_sized(x: torch.Tensor, shifts, dims=()) -> torch.Tensor:
    """``torch.roll`` whose shifts are sizes of a dynamic axis (``fftshift`` along the frames of an STFT: a shift
    of frames // 2): torch.onnx writes ONNX's roll from constant shifts only ("Unsupported attribute type"), so
    each shift is two slices and a cat, with the shift taken mod the axis size."""
    shifts = list(shifts) if isinstance(shifts, (list, tuple)) else [shifts]
    dims = list(dims) if isinstance(dims, (list, tuple)) else [dims]
    if not dims:   # a roll of the flattened tensor
        return roll_sized(x.reshape(-1), shifts, [0]).reshape(x.shape)
    for s, d in zip(shifts, dims):
        n = x.shape[d]
        s = s % n
        x = torch.cat([x.narrow(d, n - s, s), x.narrow(d, 0, n - s)], d)
    return x


def sized_rolls(graph) -> None:
    """Every ``aten.roll`` of ``graph`` with a shift computed from a size becomes ``roll_sized``."""
    import torch.fx as fx

    for n in graph.nodes:
        if n.op == "call_function" and n.target in (torch.ops.aten.roll.default, torch.roll) and len(n.args) > 1 and \
                any(isinstance(s, fx.Node) for s in (n.args[1] if isinstance(n.args[1], (list, tuple))
                                                     else [n.args[1]])):
            n.target = roll_sized
