"""View-like torch ops on complex values (pairs): reshapes, permutations and ops delegated to coremltools with
their dimension arguments moved past the pair axis, as ``rewrite/_pair_views`` describes each op for every backend.
"""
from __future__ import annotations

import numpy as np

from ._ct_private import (Var, bind, delegate, mb, node_attr, original_func, raw_inputs, raw_kwinputs,
                          with_attr, with_inputs)
from ._mil_ns import is_static, shape_var, slice_axis
from ._pairs import (add, fallback, is_native_complex, is_pair, kind, mark_outputs, node_has_pair, rule,
                     to_pair, unsupported)
from ._pairs import arg as _arg
from ._pairs import pair_input as _z
from ..rewrite._real_ops import cdiagonal
from ..rewrite._real_ops import diagonal as real_diagonal
from ._as_torch import on_mil
from ..rewrite._pair_views import PAIR_VIEWS, missing_arg, needs_unit_axis, pair_arg, transposed_dims


# ------------------------------------------------------------------------------------ views and copies


@rule("view", "reshape", "_unsafe_view", "view_copy")
def view(context, node):
    if not node_has_pair(context, node):
        return fallback(context, node)
    z = _z(context, node)
    shape = bind(context, raw_inputs(node)[1])
    if isinstance(shape, Var) and shape.val is not None:
        parts = [int(s) for s in np.asarray(shape.val).reshape(-1)]
    elif isinstance(shape, (list, tuple)):
        parts = [int(s.val) if isinstance(s, Var) and s.val is not None else s for s in shape]
        parts = [mb.cast(x=p, dtype="int32") if isinstance(p, Var) else p for p in parts]
    else:
        raise unsupported(node, "a reshape of a complex tensor to a shape given as a tensor")
    add(context, node, mb.reshape(x=z, shape=shape_var(pair_arg("shape", parts, z.rank - 1)), name=node.name), True)


@rule("permute", "permute_copy")
def permute(context, node):
    if not node_has_pair(context, node):
        return fallback(context, node)
    z = _z(context, node)
    perm = pair_arg("perm", np.asarray(_arg(context, node, 1, "dims")).reshape(-1), z.rank - 1)
    add(context, node, mb.transpose(x=z, perm=perm, name=node.name), True)


@rule("t", "numpy_t", "mt")
def transposed(context, node):
    """``Tensor.t()`` / ``.T`` (coremltools' own needs a rank-2 input or dims) on a complex value; ``.mT`` (which
    coremltools has no converter for), real or complex."""
    if not node_has_pair(context, node):
        if kind(node) != "mt":
            return fallback(context, node)
        x = bind(context, raw_inputs(node)[0])
        return add(context, node, mb.transpose(x=x, perm=transposed_dims("mT", x.rank), name=node.name), False)
    z = _z(context, node)
    perm = pair_arg("perm", transposed_dims(kind(node), z.rank - 1), z.rank - 1)
    add(context, node, mb.transpose(x=z, perm=perm, name=node.name), True)


@rule("diagonal", "linalg_diagonal")
def diagonal(context, node):
    """``torch.diagonal`` of a complex value (the trace of torchaudio's Souden MVDR): one gather of each part, the
    graph pass's ``cdiagonal``; ``torch.linalg.diagonal`` (which coremltools has no converter for), real or
    complex."""
    defaults = (0, -2, -1) if kind(node) == "linalg_diagonal" else (0, 0, 1)
    offset, d1, d2 = (int(_arg(context, node, i + 1, kw, dflt))
                      for i, (kw, dflt) in enumerate(zip(("offset", "dim1", "dim2"), defaults)))
    pair = node_has_pair(context, node)
    if not pair:   # coremltools' own lowering takes diagonal(0, 0, 1) only
        r = bind(context, raw_inputs(node)[0]).rank
        if kind(node) == "diagonal" and (offset, d1 % r, d2 % r) == (0, 0, 1):
            return fallback(context, node)
    if pair:
        out = on_mil(cdiagonal, _z(context, node), offset, d1, d2)
    else:
        out = on_mil(real_diagonal, bind(context, raw_inputs(node)[0]), offset, d1, d2, True)
    add(context, node, mb.identity(x=out, name=node.name), pair)


@rule("movedim", "moveaxis")
def movedim(context, node):
    """torch.movedim (coremltools has no lowering; rewritten models use it), real or complex."""
    x = bind(context, raw_inputs(node)[0])
    pair = is_pair(context, x) or is_native_complex(x)
    x = to_pair(context, x) if pair else x
    r = x.rank - 1 if pair else x.rank
    src = [int(d) % r for d in np.asarray(_arg(context, node, 1, "source")).reshape(-1)]
    dst = [int(d) % r for d in np.asarray(_arg(context, node, 2, "destination")).reshape(-1)]
    perm = [None] * r
    for s_, d_ in zip(src, dst):
        perm[d_] = s_
    rest = iter(d for d in range(r) if d not in src)
    perm = [p if p is not None else next(rest) for p in perm] + ([r] if pair else [])
    add(context, node, mb.transpose(x=x, perm=perm, name=node.name), pair)


def _delegated(context, node):
    name = node.kind if node.kind in PAIR_VIEWS else node.kind.split(".")[0]
    spec = PAIR_VIEWS.get(name, [])  # other coremltools aliases of a delegated op (its no-ops) move no dim
    if not node_has_pair(context, node):
        if not spec and original_func(node.kind) is None:   # aten.alias (an exported x[...]): the value itself
            return add(context, node, mb.identity(x=bind(context, raw_inputs(node)[0]), name=node.name), False)
        return fallback(context, node)
    ins = raw_inputs(node)
    first = bind(context, ins[0])
    if isinstance(first, (list, tuple)):  # cat / stack: every element becomes a pair
        pairs = [to_pair(context, e) for e in first]
        ref = pairs[0]
        replace = {0: None}
        list_name = f"_sr_list_{id(node)}"
        context.add(pairs, list_name)
    else:
        ref = to_pair(context, first)
        list_name = None
    r = ref.rank - 1
    unit = list_name is None and needs_unit_axis(name, r)
    if unit:
        ref, r = mb.reshape(x=ref, shape=np.array([1, 2], dtype=np.int32)), 1
    if list_name is None:
        replace = {0: ref}
    kw_replace = {}
    for pos, kw, how in spec:
        in_kw = kw in raw_kwinputs(node)
        val = _arg(context, node, pos, kw)
        if val is None:
            val = missing_arg(name, how)
            if val is None:
                continue
        if isinstance(val, Var):
            raise unsupported(node, f"a non-constant {kw} on a complex tensor")
        if how == "pads":
            is_pad = kind(node) == "pad"
            mode = _arg(context, node, 2, "mode", "constant") if is_pad else "constant"
            value = _arg(context, node, 3 if is_pad else 2, "value", 0.0)
            if (mode or "constant") == "constant" and value not in (None, 0, 0.0):
                raise unsupported(node, "constant padding of a complex tensor with a non-zero value")
        new = pair_arg(how, val, r)
        if in_kw:
            kw_replace[kw] = new
        else:
            replace[pos] = new
    if list_name is not None:
        new_node_inputs = [list_name] + list(ins[1:])
        node = with_inputs(node, new_node_inputs)
        replace.pop(0)
    delegate(context, node, original_func(node.kind), replace, kw_replace)
    if unit:   # back to the op's own shape: a 0-d result, or flatten's (1,)
        out = context[node.outputs[0]]
        shape = [1, 2] if name.removesuffix("_copy") == "flatten" else [2]
        context.add(mb.reshape(x=out, shape=np.array(shape, dtype=np.int32), name=node.name + "_sr_0d"),
                    torch_name=node.outputs[0], override=True)
    mark_outputs(context, node)


_OWN = {"view", "reshape", "_unsafe_view", "view_copy", "reshape_copy", "_unsafe_view_copy", "permute",
        "permute_copy"}   # the rules above
for _name in PAIR_VIEWS:   # where coremltools has a lowering to delegate to (chunk / alias: TorchScript spellings)
    if _name not in _OWN and (original_func(_name) is not None or _name in ("chunk", "alias")):
        rule(_name)(_delegated)


@rule("size", "sym_size", "dim", "numel")
def size(context, node):
    if not node_has_pair(context, node):
        return fallback(context, node)
    z = _z(context, node)
    r = z.rank - 1
    if kind(node) == "dim":
        return add(context, node, mb.const(val=np.int32(r), name=node.name), False)
    shape = slice_axis(mb.shape(x=z), 0, 0, r)
    if kind(node) == "numel":
        return add(context, node, mb.reduce_prod(x=shape, name=node.name), False)
    dim = _arg(context, node, 1, "dim")
    if dim is None:
        return add(context, node, shape, False)
    d = int(dim) % r
    if is_static(z.shape[d]):
        return add(context, node, mb.const(val=np.int32(z.shape[d]), name=node.name), False)
    add(context, node, mb.gather(x=shape, indices=d, axis=0, name=node.name), False)


@rule("constantchunk")
def constantchunk(context, node):
    if not node_has_pair(context, node):
        return fallback(context, node)
    z = _z(context, node)
    new = with_attr(node, dim=int(node_attr(node)["dim"]) % (z.rank - 1))
    delegate(context, new, original_func("constantchunk"), {0: z})
    mark_outputs(context, node)


@rule("tensor_split")
def tensor_split(context, node):
    """``Tensor.tensor_split`` (coremltools has no converter), real or complex: one MIL split, each part the size
    torch gives it (sections: the first ``size % n`` one longer; indices: the gaps between them)."""
    x = bind(context, raw_inputs(node)[0])
    pair = is_pair(context, x) or is_native_complex(x)
    x = to_pair(context, x) if pair else x
    r = x.rank - 1 if pair else x.rank
    dim = int(_arg(context, node, 2, "dim", 0))
    dim = pair_arg("dim", dim, r) if pair else dim % r
    how = bind(context, raw_inputs(node)[1])
    how = how.val if isinstance(how, Var) else how
    size = x.shape[dim]
    if how is None or not is_static(size):
        raise unsupported(node, "tensor_split with sections computed at run time or along an axis of run-time size")
    size, how = int(size), np.asarray(how).reshape(-1) if np.ndim(how) else int(how)
    if isinstance(how, int):
        sizes = [size // how + (1 if i < size % how else 0) for i in range(how)]
    else:
        ends = [min(max(int(i) if i >= 0 else int(i) + size, 0), size) for i in how]
        bounds = [0] + ends + [size]
        sizes = [max(b - a, 0) for a, b in zip(bounds, bounds[1:])]
    if 0 in sizes:
        raise unsupported(node, f"tensor_split into an empty part (sizes {sizes})")
    parts = mb.split(x=x, split_sizes=np.array(sizes, dtype=np.int32), axis=dim, name=node.name)
    context.add(parts, torch_name=node.outputs[0])
    if pair:
        mark_outputs(context, node)


@rule("as_strided", "as_strided_copy")
def as_strided(context, node):
    """Framing a real signal by strides (kaldi fbank, lhotse, julius' unfold), which coremltools has no lowering
    for: one gather of the flattened input at offset + sum_d i_d * stride_d. Sizes and strides are constants in
    a traced model; the strides are those of the input's row-major memory (what as_strided of a contiguous
    tensor means, and what the traced framing code computed them from)."""
    if node_has_pair(context, node):
        raise unsupported(node, "as_strided of a complex tensor")
    x = bind(context, raw_inputs(node)[0])
    size, stride = _ints(_arg(context, node, 1, "size")), _ints(_arg(context, node, 2, "stride"))
    offset = _ints(_arg(context, node, 3, "storage_offset", 0) or 0)
    if any(v is None for v in (size, stride, offset)) or not all(is_static(d) for d in x.shape):
        raise unsupported(node, "as_strided with sizes or strides computed at run time",
                          fix="convert with static shapes (no variable length) or frame with Tensor.unfold")
    idx = np.full(size, int(offset[0]), dtype=np.int64)
    for d, (n, s) in enumerate(zip(size, stride)):
        shape = [1] * len(size)
        shape[d] = n
        idx = idx + (np.arange(n, dtype=np.int64) * s).reshape(shape)
    if idx.size and (idx.min() < 0 or idx.max() >= int(np.prod(x.shape))):
        raise unsupported(node, "as_strided reaching outside its input")
    flat = mb.reshape(x=x, shape=np.array([-1], dtype=np.int32))
    add(context, node, mb.gather(x=flat, indices=idx.astype(np.int32), axis=0, name=node.name), False)


def _ints(v):
    """A constant int or list of ints (Vars with known values included) as a list of ints; None if any is only
    known at run time."""
    items = list(v) if isinstance(v, (list, tuple)) else [v]
    out = []
    for e in items:
        e = e.val if isinstance(e, Var) else e
        if e is None:
            return None
        out += [int(t) for t in np.asarray(e).reshape(-1)]
    return out


@rule("unfold", "unfold_copy")
def unfold(context, node):
    """``Tensor.unfold(dim, size, step)`` (framing: torch-mdct, julius, hand-written STFTs), which coremltools has
    no converter for: one gather of the (n_frames, size) sample positions along ``dim``, the frame axis moved
    last (before the (re, im) axis of a complex pair). The length along ``dim`` must be known."""
    pair = node_has_pair(context, node)
    x = _z(context, node) if pair else bind(context, raw_inputs(node)[0])
    rank = x.rank - (1 if pair else 0)
    dim, size, step = (_ints(_arg(context, node, i, n)) for i, n in ((1, "dimension"), (2, "size"), (3, "step")))
    if any(v is None for v in (dim, size, step)):
        raise unsupported(node, "unfold with a dimension, size or step computed at run time")
    dim, size, step = dim[0] % max(rank, 1), size[0], step[0]
    if not is_static(x.shape[dim]):
        raise unsupported(node, "unfold along an axis whose length is only known at run time",
                          fix="convert with a fixed input length, or rewrite the model first "
                              "(specrewrite.coreml.convert)")
    frames = (int(x.shape[dim]) - size) // step + 1
    idx = np.arange(frames, dtype=np.int32)[:, None] * step + np.arange(size, dtype=np.int32)[None, :]
    out = mb.gather(x=x, indices=idx, axis=dim)   # (..., frames, size, ...)
    perm = [d for d in range(x.rank + 1) if d != dim + 1]
    perm.insert(rank, dim + 1)
    if perm != list(range(x.rank + 1)):
        out = mb.transpose(x=out, perm=perm)
    add(context, node, mb.identity(x=out, name=node.name), pair)
