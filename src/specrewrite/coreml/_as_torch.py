"""The torch API on MIL values, so the plugin runs the graph pass's own real-pair formulas.

Each complex op's math is written once, in torch, in ``rewrite._complex`` / ``rewrite._complex_math`` (the
functions the rewritten graph calls). ``Mil`` wraps a MIL Var and answers the torch functions and tensor
operators those formulas use (through ``__torch_function__``, torch's own protocol for tensor-like objects) by
building MIL ops, so ``on_mil(formula, pair_var)`` emits exactly the arithmetic that ``rewrite()`` exports.
A formula that reaches a torch function not bound here raises ``NotImplementedError`` naming it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ._ct_private import Var, einsum_mil, mb, types
from ._mil_ns import dims, fill_shape


def _v(x):
    """A MIL operand: the Var of a Mil, a float32 numpy value for a number / torch constant."""
    if isinstance(x, Mil):
        return x.v
    if isinstance(x, Var):
        return x
    if isinstance(x, torch.Tensor):
        if x.is_floating_point():
            return x.detach().to(torch.float32).numpy()
        return x.detach().numpy().astype(np.int32) if x.dtype != torch.bool else x.detach().numpy()
    if isinstance(x, bool):
        return np.bool_(x)
    if isinstance(x, (int, float, np.number)):
        return np.float32(x)
    return x


def _float(v):
    return mb.cast(x=v, dtype="fp32") if isinstance(v, Var) and not types.is_float(v.dtype) else v


def _w(v):
    return Mil(v)


def _bin(op):
    def fn(a, b, *, out=None):
        x, y = _v(a), _v(b)
        if not isinstance(x, Var) and not isinstance(y, Var):
            return _w(mb.const(val=np.asarray(op_np[op](x, y))))
        if op not in _LOGICAL and op not in _COMPARE:
            x, y = _float(x), _float(y)
        return _w(getattr(mb, op)(x=x, y=y))
    return fn


_LOGICAL = {"logical_and", "logical_or"}
_COMPARE = {"greater", "greater_equal", "less", "less_equal", "equal", "not_equal"}
op_np = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": np.divide, "pow": np.power,
         "maximum": np.maximum, "minimum": np.minimum, "greater": np.greater, "greater_equal": np.greater_equal,
         "less": np.less, "less_equal": np.less_equal, "equal": np.equal, "not_equal": np.not_equal,
         "logical_and": np.logical_and, "logical_or": np.logical_or}


def _unary(op):
    return lambda x: _w(getattr(mb, op)(x=_float(_v(x))))


def _full_like(x, value, *, dtype=None, device=None):
    v = _v(x)
    if v.rank == 0:
        return _w(mb.const(val=np.float32(value)))
    return _w(mb.fill(shape=fill_shape(dims(v)), value=np.float32(value)))


def _where(cond, a, b):
    a, b = _v(a), _v(b)
    if not isinstance(a, Var) and not isinstance(b, Var):   # MIL select needs one Var of the output's rank
        a = mb.fill(shape=fill_shape(dims(_v(cond))), value=np.float32(a))
    return _w(mb.select(cond=_v(cond), a=a, b=b))


def _log1p(x):
    """log(1 + x) without losing x where 1 + x rounds (Goldberg): log(u) * x / (u - 1), u = 1 + x."""
    x = _v(x)
    u = mb.add(x=x, y=np.float32(1.0))
    d = mb.sub(x=u, y=np.float32(1.0))
    one = mb.equal(x=d, y=np.float32(0.0))
    safe = mb.select(cond=one, a=np.float32(1.0), b=d)
    out = mb.real_div(x=mb.mul(x=mb.log(x=u), y=x), y=safe)
    return _w(mb.select(cond=one, a=x, b=out))


def _expm1(x):
    """exp(x) - 1 (Kahan): (u - 1) * x / log(u), u = exp(x); x where u rounds to 1."""
    x = _v(x)
    u = mb.exp(x=x)
    d = mb.sub(x=u, y=np.float32(1.0))
    one = mb.equal(x=d, y=np.float32(0.0))
    lu = mb.log(x=mb.select(cond=one, a=np.float32(2.0), b=u))
    out = mb.select(cond=mb.equal(x=d, y=np.float32(-1.0)), a=d, b=mb.real_div(x=mb.mul(x=d, y=x), y=lu))
    return _w(mb.select(cond=one, a=x, b=out))


def _asinh(x):
    """asinh(x) = sign(x) log1p(|x| + x^2 / (1 + sqrt(1 + x^2))) (no cancellation for small |x|)."""
    a = mb.abs(x=_v(x))
    s = mb.mul(x=a, y=a)
    t = mb.add(x=a, y=mb.real_div(x=s, y=mb.add(x=np.float32(1.0), y=mb.sqrt(x=mb.add(x=s, y=np.float32(1.0))))))
    big = mb.greater(x=a, y=np.float32(1e18))   # x^2 overflows: log(2|x|)
    r = mb.select(cond=big, a=mb.add(x=mb.log(x=a), y=np.float32(math.log(2.0))), b=_log1p(t).v)
    return _w(mb.mul(x=r, y=mb.sign(x=_v(x))))


def _isnan(x):
    v = _v(x)
    return _w(mb.not_equal(x=v, y=v))


def _isinf(x):
    return _w(mb.equal(x=mb.abs(x=_v(x)), y=np.float32(np.inf)))


def _isfinite(x):
    v = _v(x)
    return _w(mb.logical_and(x=mb.equal(x=v, y=v), y=mb.less(x=mb.abs(x=v), y=np.float32(np.inf))))


def _stack(tensors, dim=0):
    """expand_dims + concat rather than MIL stack: the rank-5 fold (``_fold.py``) reads those."""
    vs = [_v(t) for t in tensors]
    axis = dim if dim >= 0 else dim + vs[0].rank + 1
    return _w(mb.concat(values=[mb.expand_dims(x=v, axes=[axis]) for v in vs], axis=axis))


def _cat(tensors, dim=0):
    return _w(mb.concat(values=[_v(t) for t in tensors], axis=dim))


def _reduce(op):
    def fn(x, dim=None, keepdim=False, *, dtype=None):
        v = _float(_v(x))
        dims = list(range(v.rank)) if dim is None else [int(d) % v.rank for d in
                                                          (dim if isinstance(dim, (list, tuple)) else [dim])]
        return _w(getattr(mb, op)(x=v, axes=dims, keep_dims=bool(keepdim)))
    return fn


def _squeeze(x, dim=None):
    v = _v(x)
    if dim is None:
        return _w(mb.squeeze(x=v))
    dims = [int(d) % v.rank for d in (dim if isinstance(dim, (list, tuple)) else [dim])]
    return _w(mb.squeeze(x=v, axes=dims))


def _gather(x, dim, index):
    v = _v(x)
    return _w(mb.gather_along_axis(x=v, indices=_v(index), axis=int(dim) % v.rank))


def _solve(a, b):
    """``torch.linalg.solve`` on MIL values: the graph pass's elimination, unrolled over a static n."""
    from ..rewrite import _solve as S

    if not S._static(_v(a).shape[-1]):
        raise NotImplementedError("specrewrite.coreml: a linear solve of a size unknown at conversion or over "
                                  f"{S.MAX_N}")
    return S.unrolled_solve(a, b)


def _inv(a):
    from ..rewrite import _solve as S

    if not S._static(_v(a).shape[-1]):
        raise NotImplementedError(f"specrewrite.coreml: a matrix inverse of a size unknown at conversion or over "
                                  f"{S.MAX_N}")
    return S.unrolled_inv(a)


_FUNCS = {
    torch.add: _bin("add"), torch.sub: _bin("sub"), torch.mul: _bin("mul"), torch.div: _bin("real_div"),
    torch.true_divide: _bin("real_div"), torch.pow: _bin("pow"), torch.maximum: _bin("maximum"),
    torch.minimum: _bin("minimum"), torch.logical_and: _bin("logical_and"), torch.logical_or: _bin("logical_or"),
    torch.logical_not: lambda x: _w(mb.logical_not(x=_v(x))),
    torch.abs: _unary("abs"), torch.sqrt: _unary("sqrt"), torch.exp: _unary("exp"), torch.log: _unary("log"),
    torch.sin: _unary("sin"), torch.cos: _unary("cos"), torch.tan: _unary("tan"), torch.sinh: _unary("sinh"),
    torch.cosh: _unary("cosh"), torch.tanh: _unary("tanh"), torch.atan: _unary("atan"),
    torch.asin: _unary("asin"), torch.acos: _unary("acos"), torch.atanh: _unary("atanh"),
    torch.sign: _unary("sign"), torch.floor: _unary("floor"),
    torch.log1p: _log1p, torch.expm1: _expm1, torch.asinh: _asinh,
    torch.isnan: _isnan, torch.isinf: _isinf, torch.isfinite: _isfinite,
    torch.where: _where, torch.stack: _stack, torch.cat: _cat,
    torch.zeros_like: lambda x, **k: _full_like(x, 0.0), torch.ones_like: lambda x, **k: _full_like(x, 1.0),
    torch.full_like: _full_like, torch.mean: _reduce("reduce_mean"), torch.sum: _reduce("reduce_sum"),
    torch.squeeze: _squeeze, torch.matmul: lambda a, b: _w(mb.matmul(x=_float(_v(a)), y=_float(_v(b)))),
    torch.einsum: lambda eq, *ops: _w(einsum_mil([_float(_v(o)) for o in ops], eq)),
    torch.gather: _gather, torch.linalg.solve: _solve, torch.linalg.inv: _inv,
    # a torch constant on the left of an operator whose right side is a MIL value
    **{f: _bin(op) for name, op in (("eq", "equal"), ("ne", "not_equal"), ("gt", "greater"),
                                    ("ge", "greater_equal"), ("lt", "less"), ("le", "less_equal"))
       for f in (getattr(torch, name), getattr(torch.Tensor, name), getattr(torch.Tensor, f"__{name}__"))},
    torch.Tensor.__mul__: _bin("mul"), torch.Tensor.__add__: _bin("add"), torch.Tensor.__sub__: _bin("sub"),
    torch.Tensor.__truediv__: _bin("real_div"),
}


class Mil:
    """A MIL Var that torch functions and tensor operators accept (see the module's note)."""

    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v

    @classmethod
    def __torch_function__(cls, func, types_, args=(), kwargs=None):
        fn = _FUNCS.get(func)
        if fn is None:
            raise NotImplementedError(f"specrewrite.coreml: torch.{getattr(func, '__name__', func)} has no MIL "
                                      "binding (coreml/_as_torch.py)")
        return fn(*args, **(kwargs or {}))

    # tensor attributes the formulas read
    dtype = torch.float32
    device = torch.device("cpu")

    def dim(self):
        return self.v.rank

    @property
    def shape(self):
        """The static sizes (a formula that reads a size needs it known at conversion)."""
        if not all(isinstance(d, (int, np.integer)) for d in self.v.shape):
            raise NotImplementedError("specrewrite.coreml: a size that is not known at conversion")
        return tuple(int(d) for d in self.v.shape)

    def to(self, *args, **kwargs):   # float32 throughout
        return self

    def unsqueeze(self, d):
        return _w(mb.expand_dims(x=self.v, axes=[d]))

    def abs(self):
        return _w(mb.abs(x=_float(self.v)))

    def argmax(self, dim, keepdim=False):
        return _w(mb.reduce_argmax(x=self.v, axis=int(dim) % self.v.rank, keep_dims=bool(keepdim)))

    def squeeze(self, dim=None):
        return _squeeze(self, dim)

    def expand(self, *sizes):
        """Broadcast to ``sizes`` (-1 keeps a size): new leading axes, then tiles of the axes of size 1."""
        sizes = list(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)) else list(sizes)
        v = self.v
        if len(sizes) > v.rank:
            v = mb.expand_dims(x=v, axes=list(range(len(sizes) - v.rank)))
        shape = list(v.shape)
        reps = [1 if s in (-1, n) else int(s) for s, n in zip(sizes, shape)]
        if any(n != 1 and r != 1 for n, r in zip(shape, reps)):
            raise NotImplementedError(f"specrewrite.coreml: expand of {tuple(shape)} to {tuple(sizes)}")
        return _w(v if all(r == 1 for r in reps) else mb.tile(x=v, reps=reps))

    @property
    def mT(self):
        r = self.v.rank
        return _w(mb.transpose(x=self.v, perm=list(range(r - 2)) + [r - 1, r - 2]))

    def permute(self, *dims):
        dims = list(dims[0]) if len(dims) == 1 and isinstance(dims[0], (list, tuple)) else list(dims)
        return _w(mb.transpose(x=self.v, perm=[int(d) % self.v.rank for d in dims]))

    def flatten(self, start_dim=0, end_dim=-1):
        shape, r = list(self.shape), self.v.rank
        s, e = start_dim % r, end_dim % r
        merged = shape[:s] + [int(np.prod(shape[s:e + 1]))] + shape[e + 1:]
        return _w(mb.reshape(x=self.v, shape=np.array(merged, dtype=np.int32)))

    def index_select(self, dim, index):
        return _w(mb.gather(x=self.v, indices=_v(index), axis=int(dim) % self.v.rank))

    def __matmul__(self, o):
        return _w(mb.matmul(x=_float(self.v), y=_float(_v(o))))

    def flip(self, dims):
        axes = [dims] if isinstance(dims, int) else list(dims)
        return _w(mb.reverse(x=self.v, axes=[int(a) % self.v.rank for a in axes]))

    def __getitem__(self, key):
        """``z[..., i, a:b]``: an ellipsis, then ints and step-1 slices on the last axes."""
        if not (isinstance(key, tuple) and key and key[0] is Ellipsis):
            raise NotImplementedError(f"specrewrite.coreml: indexing {key!r} on MIL values")
        v, items = self.v, key[1:]
        r = v.rank
        begin, end, bm, em, sq = [0] * r, [0] * r, [True] * r, [True] * r, [False] * r
        for d, k in zip(range(r - len(items), r), items):
            if isinstance(k, (int, np.integer)):
                begin[d], end[d], bm[d], em[d], sq[d] = int(k), int(k) + 1, False, False, True
                if int(k) == -1:
                    end[d], em[d] = 0, True
            elif isinstance(k, slice) and k.step in (None, 1):
                if k.start is not None:
                    begin[d], bm[d] = int(k.start), False
                if k.stop is not None:
                    end[d], em[d] = int(k.stop), False
            else:
                raise NotImplementedError(f"specrewrite.coreml: indexing {key!r} on MIL values")
        return _w(mb.slice_by_index(x=v, begin=begin, end=end, begin_mask=bm, end_mask=em, squeeze_mask=sq))

    __add__ = _bin("add")
    __sub__ = _bin("sub")
    __mul__ = _bin("mul")
    __truediv__ = _bin("real_div")
    __pow__ = _bin("pow")
    __gt__ = _bin("greater")
    __ge__ = _bin("greater_equal")
    __lt__ = _bin("less")
    __le__ = _bin("less_equal")
    __eq__ = _bin("equal")
    __ne__ = _bin("not_equal")
    __and__ = _bin("logical_and")
    __or__ = _bin("logical_or")
    __hash__ = object.__hash__

    def __radd__(self, o):
        return _bin("add")(o, self)

    def __rsub__(self, o):
        return _bin("sub")(o, self)

    def __rmul__(self, o):
        return _bin("mul")(o, self)

    def __rtruediv__(self, o):
        return _bin("real_div")(o, self)

    def __neg__(self):
        return _w(mb.mul(x=_float(self.v), y=np.float32(-1.0)))

    def __invert__(self):
        return _w(mb.logical_not(x=self.v))


def on_mil(formula, *args, **kwargs):
    """Run a torch-written formula on MIL Vars (other arguments pass as they are); the MIL Var(s) it returns."""
    def wrap(a):
        if isinstance(a, (list, tuple)):
            return type(a)(wrap(b) for b in a)
        return Mil(a) if isinstance(a, Var) else a

    wrapped = [wrap(a) for a in args]
    out = formula(*wrapped, **kwargs)
    if isinstance(out, tuple):
        return tuple(_v(o) for o in out)
    return _v(out)
