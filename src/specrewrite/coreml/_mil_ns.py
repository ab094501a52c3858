"""MIL building blocks: the kernels' array namespace as MIL ops (``on_the_fly``), the three basis modes, and
shape helpers that work for static and symbolic (``ct.RangeDim``) dimensions."""
from __future__ import annotations

import hashlib
import itertools
import math

import numpy as np

from ..errors import SpecRewriteError
from ..kernels import NP
from ..modes import Mode
from ._ct_private import add_function_input, mb, types

#: ops that build bases in ``on_the_fly`` mode are named with this prefix, so an fp16 op selector can keep
#: them in fp32 (see ``specrewrite.coreml.fp16_op_selector``).
OTF_PREFIX = "sr_otf_"
_names = itertools.count()

#: values of the basis tensors that ``input`` mode adds as model inputs, by input name
BASIS_VALUES: dict = {}


def _name(prefix=OTF_PREFIX):
    return f"{prefix}{next(_names)}"


def is_static(d) -> bool:
    return isinstance(d, (int, np.integer))


# ------------------------------------------------------------------------------------------ shape helpers

def dims(x) -> list:
    """x's shape as Python ints where static, scalar int32 Vars where symbolic."""
    out, shp = [], None
    for i, d in enumerate(x.shape):
        if is_static(d):
            out.append(int(d))
        else:
            if shp is None:
                shp = mb.shape(x=x)
            out.append(mb.gather(x=shp, indices=i, axis=0))
    return out


def iop(a, b, op):
    """Integer arithmetic on ints or scalar int32 Vars: op in + - * //."""
    if is_static(a) and is_static(b):
        return {"+": a + b, "-": a - b, "*": a * b, "//": a // b}[op]
    a = a if not is_static(a) else np.int32(a)
    b = b if not is_static(b) else np.int32(b)
    return {"+": mb.add, "-": mb.sub, "*": mb.mul, "//": mb.floor_div}[op](x=a, y=b)


def shape_var(parts):
    """A shape argument for reshape / fill: a list of ints, or one int32 vector Var."""
    if all(is_static(p) for p in parts):
        return [int(p) for p in parts]
    dyn = [i for i, p in enumerate(parts) if not is_static(p)]
    if len(dyn) == 1 and -1 not in parts:
        return [(-1 if i == dyn[0] else int(p)) for i, p in enumerate(parts)]
    pieces = [mb.expand_dims(x=p, axes=[0]) if not is_static(p) else np.array([p], dtype=np.int32)
              for p in parts]
    return mb.concat(values=pieces, axis=0)


def fill_shape(parts):
    """Like shape_var but never uses -1 (for fill)."""
    if all(is_static(p) for p in parts):
        return [int(p) for p in parts]
    pieces = [mb.expand_dims(x=p, axes=[0]) if not is_static(p) else np.array([p], dtype=np.int32)
              for p in parts]
    return mb.concat(values=pieces, axis=0)


def reshape(x, parts, name=None):
    kw = {} if name is None else {"name": name}
    return mb.reshape(x=x, shape=shape_var(list(parts)), **kw)


def slice_axis(x, axis, begin=0, end=None, squeeze=False):
    """x[..., begin:end, ...] along ``axis`` (begin/end ints; end None = to the end; negative = from end)."""
    r = x.rank
    axis = axis % r
    b, e = [0] * r, [0] * r
    bm, em = [True] * r, [True] * r
    sq = [False] * r
    b[axis], bm[axis] = int(begin), False
    if end is not None:
        e[axis], em[axis] = int(end), False
    if squeeze:
        sq[axis] = True
    return mb.slice_by_index(x=x, begin=b, end=e, begin_mask=bm, end_mask=em, squeeze_mask=sq)


# ------------------------------------------------------------------------------------ on-the-fly namespace

class _M:
    """A MIL Var with the array operators the kernel formulas use (* + % - reshape transpose)."""

    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v

    def _other(self, o):
        if isinstance(o, _M):
            return o.v
        is_int = types.is_int(self.v.dtype)
        return np.int32(o) if is_int and isinstance(o, (int, np.integer)) else np.float32(o)

    def __mul__(self, o):
        return _M(mb.mul(x=self.v, y=self._other(o), name=_name()))

    __rmul__ = __mul__

    def __add__(self, o):
        return _M(mb.add(x=self.v, y=self._other(o), name=_name()))

    __radd__ = __add__

    def __mod__(self, o):
        return _M(mb.mod(x=self.v, y=self._other(o), name=_name()))

    def __neg__(self):
        return _M(mb.mul(x=self.v, y=self._other(-1), name=_name()))

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return _M(mb.reshape(x=self.v, shape=[int(s) for s in shape], name=_name()))

    def transpose(self, *perm):
        perm = perm[0] if len(perm) == 1 and isinstance(perm[0], (tuple, list)) else perm
        return _M(mb.transpose(x=self.v, perm=[int(p) for p in perm], name=_name()))


class MilNS:
    """The kernels' namespace, emitting MIL ops. Index ramps are offset by a zero derived from ``anchor`` (a
    model value), so coremltools' constant folding cannot bake the O(N^2) bases back into the file."""

    def __init__(self, anchor):
        first = mb.slice_by_size(x=anchor, begin=[0] * anchor.rank, size=[1] * anchor.rank, name=_name())
        first = mb.reshape(x=first, shape=[1], name=_name())
        self.zero = mb.cast(x=mb.not_equal(x=first, y=first, name=_name()), dtype="int32", name=_name())

    def arange(self, n):
        return _M(mb.add(x=np.arange(n, dtype=np.int32), y=self.zero, name=_name()))

    def cos_sin(self, m, n):
        if isinstance(m, np.ndarray):
            m = _M(mb.const(val=m.astype(np.int32)))
        a = mb.cast(x=mb.mod(x=m.v, y=np.int32(n), name=_name()), dtype="fp32", name=_name())
        a = mb.mul(x=a, y=np.float32(2.0 * math.pi / n), name=_name())
        return _M(mb.cos(x=a, name=_name())), _M(mb.sin(x=a, name=_name()))

    def const(self, arr):
        return _M(mb.const(val=np.asarray(arr, dtype=np.float32), name=_name()))

    def cat(self, xs, axis):
        return _M(mb.concat(values=[x.v for x in xs], axis=axis, name=_name()))

    def stack(self, xs, axis):
        return _M(mb.stack(values=[x.v for x in xs], axis=axis, name=_name()))


# ------------------------------------------------------------------------------------------------- modes

def bases(mode: Mode, anchor, key: tuple, builders: list, max_index: int):
    """The basis tensors of one op as MIL Vars.

    ``builders`` holds ``(builder, post)`` pairs: ``builder(ns)`` evaluates a kernel formula, ``post(arr)``
    brings it to the layout the op consumes using only ``.reshape`` / ``.transpose`` (so it runs on numpy
    arrays and on ``_M``). ``max_index`` is the largest integer the formula forms before reducing mod N.
    """
    if mode is Mode.ON_THE_FLY:
        if max_index >= 2 ** 31:
            raise SpecRewriteError(f"on_the_fly bases need int32 phase indices, this size needs {max_index}",
                                   op="specrewrite.coreml", fix="use mode='store' or 'input' for this size")
        ns = MilNS(anchor)
        return [post(b(ns)).v for b, post in builders]
    values = [np.ascontiguousarray(post(np.asarray(b(NP))), dtype=np.float32) for b, post in builders]
    if mode is Mode.STORE:
        return [mb.const(val=v) for v in values]
    tag = hashlib.sha1(repr(key).encode()).hexdigest()[:10]
    out = []
    for i, v in enumerate(values):
        name = f"sr_basis_{tag}_{i}"
        BASIS_VALUES[name] = v
        out.append(add_function_input(name, v.shape))
    return out
