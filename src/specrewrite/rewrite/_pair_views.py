"""View, copy and shape ops on a complex value carried as a real pair (..., 2): the op itself on the pair, with
each argument that names a dimension or a shape moved past the trailing (re, im) axis.

This is the one description of those ops that every backend uses: the graph pass (``rules_shapes``) calls the op
on the pair with ``pair_args``; the Core ML plugin (``coreml/_views``) hands it to coremltools' own lowering with the
arguments ``pair_arg`` gives. No dependency on torch or on a backend.
"""
from __future__ import annotations

#: op name -> [(position, keyword, role)] of the arguments the pair axis moves. Roles:
#:   "dim"   a dim of the input: d + rank when negative
#:   "new"   a dim of a result one rank up (unsqueeze, stack): d + rank + 1 when negative
#:   "dims"  a list of dims (or one dim) of the input
#:   "end"   flatten's end_dim (default -1, which would take the pair axis in)
#:   "perm"  a permutation: the dims, then the pair axis
#:   "shape" a target shape: the sizes, then 2
#:   "reps"  repeat counts: the counts, then 1
#:   "pads"  F.pad amounts (last dim first): the pair axis padded by 0, 0
#: An op listed with no argument is the same op on the pair (clone, contiguous, ...).
PAIR_VIEWS = {
    "view": [(1, "size", "shape")], "reshape": [(1, "shape", "shape")], "_unsafe_view": [(1, "size", "shape")],
    "expand": [(1, "size", "shape")], "repeat": [(1, "repeats", "reps")], "permute": [(1, "dims", "perm")],
    "select": [(1, "dim", "dim")], "slice": [(1, "dim", "dim")], "narrow": [(1, "dim", "dim")],
    "squeeze": [(1, "dim", "dims")], "unsqueeze": [(1, "dim", "new")],
    "transpose": [(1, "dim0", "dim"), (2, "dim1", "dim")], "flatten": [(1, "start_dim", "dim"), (2, "end_dim", "end")],
    "cat": [(1, "dim", "dim")], "concat": [(1, "dim", "dim")], "stack": [(1, "dim", "new")],
    "flip": [(1, "dims", "dims")], "roll": [(2, "dims", "dims")], "index_select": [(1, "dim", "dim")],
    "unbind": [(1, "dim", "dim")], "split": [(2, "dim", "dim")], "split_with_sizes": [(2, "dim", "dim")],
    "chunk": [(2, "dim", "dim")], "tensor_split": [(2, "dim", "dim")],
    "pad": [(1, "pad", "pads")], "constant_pad_nd": [(1, "pad", "pads")],
    "clone": [], "contiguous": [], "detach": [], "alias": [], "dropout": [], "lift_fresh_copy": [], "lift_fresh": [],
}
# functionalised graphs and TorchScript name the copying form of a view op ``<op>_copy``
PAIR_VIEWS.update({f"{name}_copy": spec for name, spec in list(PAIR_VIEWS.items())})

#: ops whose dim argument defaults to 0 (a default that names the same dim on the pair; listed for backends that
#: need every argument spelt out)
DEFAULT_DIM0 = {"cat", "concat", "stack", "unbind", "split", "split_with_sizes", "chunk", "tensor_split", "flatten"}


def _plain(v):
    """A Python int / list from a numpy scalar or array (the Core ML plugin's constants); others pass."""
    return v.tolist() if hasattr(v, "tolist") and not hasattr(v, "node") else v


def pair_arg(role: str, value, rank: int):
    """One argument of a view op on a rank-``rank`` complex tensor, as the argument of the same op on its pair."""
    value = _plain(value)
    if role in ("dim", "end"):
        return value + rank if value < 0 else value
    if role == "new":
        return value + rank + 1 if value < 0 else value
    if role == "dims":
        if isinstance(value, (list, tuple)):
            return [d + rank if d < 0 else d for d in value]
        return value + rank if value < 0 else value
    if role == "perm":
        return [d + rank if d < 0 else d for d in value] + [rank]
    if role == "shape":
        return list(value) + [2]
    if role == "reps":
        return list(value) + [1]
    if role == "pads":
        return [0, 0] + list(value)
    raise AssertionError(role)


def missing_arg(name: str, role: str):
    """The value of an argument the call left out, where the pair needs it spelt out (else None: the default names
    the same thing on the pair)."""
    if role == "end":
        return -1
    if role == "dim" and name.removesuffix("_copy") in DEFAULT_DIM0:
        return 0
    return None


def transposed_dims(name: str, rank: int) -> list:
    """The permutation ``t`` (rank 2: swap; lower ranks: none), ``mT`` (the last two swapped) or ``numpy_T`` / ``T``
    (all dims reversed) makes of a rank-``rank`` tensor; ``pair_arg("perm", ...)`` of it is its pair's."""
    dims = list(range(rank))
    if name == "t":
        return [1, 0] if rank == 2 else dims
    if name.lower() == "mt":
        return dims[:-2] + dims[-2:][::-1]
    return dims[::-1]


def needs_unit_axis(name: str, rank: int) -> bool:
    """A 0-d complex value's dim 0 / -1 is torch's virtual axis of a scalar, not the pair axis: such an op runs on the
    pair held as (1, 2) (dim 0 then names that axis) and its result is reshaped to its own shape, plus the pair."""
    return rank == 0 and any(role in ("dim", "dims", "end") for _, _, role in PAIR_VIEWS.get(name, ()))


def pair_args(name: str, args, kwargs, rank: int):
    """(args, kwargs) of view op ``name`` on the pair of a rank-``rank`` complex tensor."""
    args, kwargs = list(args), dict(kwargs)
    for pos, kw, role in PAIR_VIEWS[name]:
        if kw in kwargs:
            kwargs[kw] = pair_arg(role, kwargs[kw], rank)
            continue
        value = args[pos] if pos < len(args) else None
        if value is None:
            value = missing_arg(name, role)
            if value is None:
                continue
            args.extend([None] * (pos + 1 - len(args)))
        args[pos] = pair_arg(role, value, rank)
    return args, kwargs
