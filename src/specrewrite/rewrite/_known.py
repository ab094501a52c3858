"""Values of integer tensors that a model builds in forward from sizes and constants, known during a capture.

Real models index with tensors they build themselves and then read them back in Python:

- open-unmix: ``cur_frame = torch.arange(pos, min(nb_frames, pos + win)); pos = int(cur_frame[-1]) + 1``;
- open-unmix's Wiener filter: ``for index in torch.cartesian_prod(torch.arange(C), torch.arange(C)):
  Cj[:, :, index[0], index[1], :] = ...``.

Under torch.export those tensors are fake: reading a value (``int(t)``, ``t.item()``, a 0-d tensor used as an
index) is data-dependent, so the capture fails (or the draft capture fixes the value, and with it the clip length, to
the example's). Their values are not data at all: they follow from sizes and constants. During a capture this
mode keeps, next to each such tensor, its value (a numpy object array of ints, or of the capture's symbolic
sizes; an arange of symbolic length as its start, step and length) and answers those reads with it: ``int()`` of
``arange(0, T // hop)[-1]`` is the symbol ``T // hop - 1``, not 43, and a known 0-d index is a Python int.

Only integer and bool tensors built from Python numbers, sizes and other known tensors are followed; anything
computed from an input's values is not known and is left to the capture as before.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import weakref
from typing import Any, List, Optional

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from ._pad_multiple import generalise

_MAX_NUMEL = 1 << 16
_active: List["KnownValues"] = []


class _Range:
    """``arange(start, start + n * step, step)`` with a symbolic length ``n``."""

    def __init__(self, start, step, n):
        self.start, self.step, self.n = start, step, n

    def at(self, k: int):
        if k < 0:
            k = self.n + k
        return self.start + k * self.step


def _is_int(v) -> bool:
    return isinstance(v, (int, torch.SymInt)) and not isinstance(v, bool)


def _int_dtype(t: torch.Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex()


def known_value(t) -> Optional[Any]:
    """The value of ``t`` known to the innermost active mode (a Python int / SymInt for a 0-d tensor), else None."""
    if not _active or not isinstance(t, torch.Tensor):
        return None
    v = _active[-1].vals.get(t)
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v.item()
    return v


class _ById:
    """tensor -> value, by identity (a tensor's ``==`` is elementwise, so no dict keyed by tensors)."""

    def __init__(self):
        self._d = {}

    def get(self, t, default=None):
        e = self._d.get(id(t))
        return e[1] if e is not None and e[0]() is t else default

    def __contains__(self, t) -> bool:
        return self.get(t) is not None

    def __getitem__(self, t):
        return self.get(t)

    def __setitem__(self, t, v) -> None:
        self._d[id(t)] = (weakref.ref(t), v)


class KnownValues(TorchFunctionMode):
    """See the module's docstring. Use ``with tracking():``."""

    def __init__(self, pad_multiple: bool = True):
        super().__init__()
        self.vals = _ById()
        self.pad_multiple = pad_multiple
        self.absorbed: list = []   # guards of pads up to a multiple made right for both branches (_pad_multiple)
        self.read: dict = {}       # id(SymInt) -> (tensor, flat index, SymInt): values a tolist() read from data

    # ---------------------------------------------------------------------------------------------- reads
    def _read(self, func, t):
        v = self.vals.get(t)
        if isinstance(v, np.ndarray):
            if func is torch.Tensor.tolist:
                return v.tolist()
            if v.size == 1:
                x = v.reshape(()).item()
                if func is torch.Tensor.__bool__:
                    return bool(x) if isinstance(x, (int, bool)) else None
                if func is torch.Tensor.__int__ and not isinstance(x, int):
                    return None   # Python's int() wants a real int: the model's own int() is patched instead
                if func is torch.Tensor.__index__ and not isinstance(x, int):
                    return None
                return x
        return None

    def _plain_index(self, idx):
        """A known 0-d integer tensor inside an index becomes a Python int (a select, not a data read)."""
        def one(i):
            if isinstance(i, torch.Tensor) and i.dim() == 0 and _int_dtype(i) and i.dtype is not torch.bool:
                v = self.vals.get(i)
                if isinstance(v, np.ndarray) and _is_int(v.reshape(()).item()):
                    return v.reshape(()).item()
            return i
        def part(i):
            if isinstance(i, slice):   # julius: y[..., :length] with a 0-d length tensor
                return slice(one(i.start), one(i.stop), one(i.step))
            return one(i)
        return tuple(part(i) for i in idx) if isinstance(idx, tuple) else part(idx)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.pad_multiple and func is torch.nn.functional.pad:   # up to a multiple: both branches
            args, kwargs = generalise(args, kwargs, self.absorbed)
        if func in _READS and args and isinstance(args[0], torch.Tensor) and args[0] in self.vals:
            r = self._read(func, args[0])
            if r is not None:
                return r
        if func in _DATA_READS and args and isinstance(args[0], torch.Tensor) and _int_dtype(args[0]):
            out = func(*args, **kwargs)
            self._remember(args[0], out)
            return out
        if func in _FROM_DATA:
            t = self._round_trip(func, args, kwargs)
            if t is not None:
                return t
        if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) and len(args) >= 2:
            args = (args[0], self._plain_index(args[1]), *args[2:])
        if func is torch.Tensor.__iter__ and args and args[0] in self.vals:
            v = self.vals[args[0]]
            rows = list(func(*args, **kwargs))
            if isinstance(v, np.ndarray) and v.ndim >= 1 and len(rows) == v.shape[0]:
                for r, val in zip(rows, v):
                    self.vals[r] = np.asarray(val, dtype=object)
            return iter(rows)
        if func in (torch.tensor, torch.as_tensor) and args and isinstance(args[0], torch.SymFloat) and \
                set(kwargs) <= {"dtype", "device"}:
            # a tensor of a symbolic float (julius' resample: as_tensor(new_sr * length / old_sr)): torch would
            # fix the float to the example's, and with it the length; ``full`` keeps it symbolic
            out = torch.full((), args[0], dtype=kwargs.get("dtype") or torch.get_default_dtype(),
                             device=kwargs.get("device"))
        else:
            out = func(*args, **kwargs)
        try:
            val = _value(self, func, args, kwargs, out)
        except Exception:  # noqa: BLE001 - a value we cannot follow is simply not known
            val = None
        if val is not None:
            if isinstance(out, torch.Tensor):
                if (_int_dtype(out) or (out.dim() == 0 and out.is_floating_point())) and \
                        (isinstance(val, _Range) or
                                        (isinstance(val, np.ndarray) and tuple(val.shape) == tuple(out.shape))):
                    self.vals[out] = val
            elif isinstance(out, (tuple, list)) and isinstance(val, list) and len(val) == len(out):
                for o, v in zip(out, val):
                    if isinstance(o, torch.Tensor) and _int_dtype(o) and tuple(v.shape) == tuple(o.shape):
                        self.vals[o] = v
        return out


    # ---------------------------------------------------------------------- a tensor's values round-tripped
    def _remember(self, t, out) -> None:
        """``t.tolist()`` / ``t.item()`` of data (espnet's ``make_pad_mask``: ``lengths.tolist()`` ...
        ``new(lengths)``; under torch.export a ``tolist`` reaches here as one ``item`` per element): the symbolic
        values read, so that a tensor built back from them is made of ``t``'s elements, not the example's
        values."""
        for k, e in enumerate(_flatten(out)):
            if isinstance(e, torch.SymInt):
                self.read[id(e)] = (t, k, e)

    def _round_trip(self, func, args, kwargs):
        """``torch.tensor(L)`` / ``x.new_tensor(L)`` / ``x.new(L)`` where every element of ``L`` is a value read
        from a tensor: those tensors' elements, stacked (in the dtype the call asks for); None otherwise."""
        method = func is not torch.tensor and func is not torch.as_tensor
        data = (args[1] if len(args) > 1 else kwargs.get("data")) if method else \
            (args[0] if args else kwargs.get("data"))
        if not isinstance(data, (list, tuple)):
            return None
        flat = _flatten(data)
        hits = [self.read.get(id(e)) for e in flat]
        if not hits or any(h is None or h[2] is not e for h, e in zip(hits, flat)):
            return None
        shape = _nested_shape(data)
        if shape is None or int(np.prod(shape)) != len(hits):
            return None
        if func is torch.Tensor.new:
            if kwargs:
                return None
            dtype, device = args[0].dtype, args[0].device
        else:
            default = args[0].dtype if method else torch.int64
            dtype, device = kwargs.get("dtype") or default, kwargs.get("device") or hits[0][0].device
        parts = [t.reshape(-1)[k] if t.numel() > 1 else t.reshape(()) for t, k, _ in hits]
        return torch.stack(parts).reshape(shape).to(dtype=dtype, device=device)


def _flatten(x) -> list:
    if isinstance(x, (list, tuple)):
        return [e for i in x for e in _flatten(i)]
    return [x]


def _nested_shape(x):
    if not isinstance(x, (list, tuple)):
        return ()
    inner = {_nested_shape(i) for i in x}
    if len(inner) > 1 or None in inner:
        return None
    return (len(x),) + (inner.pop() if inner else ())


_DATA_READS = (torch.Tensor.tolist, torch.Tensor.item, torch.Tensor.__int__, torch.Tensor.__index__)
_FROM_DATA = (torch.tensor, torch.as_tensor, torch.Tensor.new_tensor, torch.Tensor.new)
_READS = (torch.Tensor.item, torch.Tensor.__int__, torch.Tensor.__index__, torch.Tensor.tolist,
          torch.Tensor.__bool__)


def _arr(mode, a):
    """The known value of an argument as a numpy object array (Python numbers as 0-d arrays), else None."""
    if isinstance(a, torch.Tensor):
        v = mode.vals.get(a)
        return v if isinstance(v, np.ndarray) else None
    if _is_int(a) or isinstance(a, bool):
        return np.asarray(a, dtype=object)
    return None


def _ints(xs) -> bool:
    return all(_is_int(x) for x in xs)


def _value(mode, func, args, kwargs, out):
    """The value of ``func(*args, **kwargs)`` from known values, or None."""
    name = getattr(func, "__name__", "")
    if func is torch.arange:
        a = list(args)
        if kwargs.get("dtype") is not None and kwargs["dtype"].is_floating_point:
            return None
        if "end" in kwargs:
            a = [kwargs.get("start", 0), kwargs["end"], kwargs.get("step", 1)]
        if not a or not _ints(a):
            return None
        start, end, step = (0, a[0], 1) if len(a) == 1 else (a[0], a[1], a[2] if len(a) > 2 else 1)
        if all(isinstance(x, int) for x in (start, end, step)):
            r = np.arange(start, end, step).astype(object)
            return r if r.size <= _MAX_NUMEL else None
        if isinstance(step, int) and step > 0 and isinstance(out, torch.Tensor) and out.dim() == 1:
            return _Range(start, step, out.shape[0])
        return None
    if func is torch.tensor or func is torch.as_tensor:
        data = args[0] if args else kwargs.get("data")
        if isinstance(data, (float, torch.SymFloat)) and isinstance(out, torch.Tensor) and out.dim() == 0:
            return np.asarray(data, dtype=object)   # julius: as_tensor(new_sr * length / old_sr), then floor
        arr = np.asarray(data, dtype=object)
        return arr if arr.size <= _MAX_NUMEL and all(_is_int(x) or isinstance(x, bool) for x in arr.flat) else None
    if func is torch.Tensor.__getitem__:
        base = mode.vals.get(args[0])
        idx = args[1]
        if isinstance(base, _Range):
            return np.asarray(base.at(idx), dtype=object) if isinstance(idx, int) else None
        if not isinstance(base, np.ndarray):
            return None
        parts = idx if isinstance(idx, tuple) else (idx,)
        if not all(isinstance(p, (int, slice)) or p is None or p is Ellipsis for p in parts) or \
                any(isinstance(p, slice) and not _ints([x for x in (p.start, p.stop, p.step) if x is not None])
                    for p in parts):
            return None
        return np.asarray(base[idx], dtype=object)
    if func is torch.cartesian_prod:
        vs = [_arr(mode, a) for a in args]
        if any(v is None or v.ndim != 1 for v in vs):
            return None
        rows = list(itertools.product(*[list(v) for v in vs]))
        return np.asarray(rows, dtype=object).reshape(len(rows), len(vs)) if len(vs) > 1 else vs[0].copy()
    if func in (torch.unbind, torch.Tensor.unbind):
        v = _arr(mode, args[0])
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        return None if v is None else [np.asarray(x, dtype=object) for x in np.moveaxis(v, dim, 0)]
    if func in (torch.stack, torch.cat):
        vs = [_arr(mode, a) for a in args[0]]
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if any(v is None for v in vs):
            return None
        return (np.stack if func is torch.stack else np.concatenate)(vs, axis=dim).astype(object)
    if name in ("floor", "ceil", "trunc") and len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor):
        v = _arr(mode, args[0])
        if v is None or v.ndim != 0:
            return None
        return np.asarray(getattr(math, name)(v.item()), dtype=object)
    if name in _SAME and isinstance(args[0], torch.Tensor):
        v = _arr(mode, args[0])
        if v is None or not _int_dtype(out):
            return None
        if v.ndim == 0 and isinstance(v.item(), (float, torch.SymFloat)):
            return np.asarray(math.trunc(v.item()), dtype=object)
        return v.copy()
    if name in ("reshape", "view") and isinstance(args[0], torch.Tensor):
        v = _arr(mode, args[0])
        shape = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list, torch.Size)) else args[1:]
        return None if v is None or not _ints(shape) else v.reshape(tuple(int(s) for s in shape))
    if name in ("flatten", "ravel") and isinstance(args[0], torch.Tensor) and len(args) == 1 and not kwargs:
        v = _arr(mode, args[0])
        return None if v is None else v.reshape(-1)
    if name in ("unsqueeze", "squeeze", "flip", "t") and isinstance(args[0], torch.Tensor):
        v = _arr(mode, args[0])
        if v is None:
            return None
        if name == "t":
            return v.T.copy()
        d = args[1] if len(args) > 1 else kwargs.get("dim", kwargs.get("dims"))
        if name == "unsqueeze":
            return np.expand_dims(v, d)
        if name == "squeeze":
            return v.squeeze() if d is None else (v.squeeze(d) if v.shape[d] == 1 else v)
        return np.flip(v, tuple(d)).copy()
    op = _ARITH.get(name)
    if op is not None and len(args) == 2 and not kwargs:
        a, b = _arr(mode, args[0]), _arr(mode, args[1])
        if a is None or b is None:
            return None
        return np.asarray(op(a, b), dtype=object)
    return None


_SAME = {"clone", "contiguous", "detach", "long", "int", "to", "type_as", "cpu"}
_ARITH = {
    "add": lambda a, b: a + b, "__add__": lambda a, b: a + b, "__radd__": lambda a, b: b + a,
    "sub": lambda a, b: a - b, "__sub__": lambda a, b: a - b, "__rsub__": lambda a, b: b - a,
    "mul": lambda a, b: a * b, "__mul__": lambda a, b: a * b, "__rmul__": lambda a, b: b * a,
    "__floordiv__": lambda a, b: a // b, "floor_divide": lambda a, b: a // b,
    "__mod__": lambda a, b: a % b, "remainder": lambda a, b: a % b,
}


@contextlib.contextmanager
def tracking(pad_multiple: bool = True):
    """Follow known integer values for the duration of a capture (and, with ``pad_multiple``, make pads up to
    a multiple right for both branches)."""
    mode = KnownValues(pad_multiple)
    _active.append(mode)
    try:
        with mode:
            yield mode
    finally:
        _active.remove(mode)
