"""Every private torch name the capture relies on, in one place (``PRIVATE_NAMES``; ``tests/test_torch_private.py``
checks that each still exists, so a torch upgrade fails there with the name, not deep inside a rewrite).

``reading_values``: what ``torch.export.draft_export`` does to capture a model whose Python reads values from
tensors (``int(t)``, ``if t.item() > 0``, asserts on values): fake tensors carry the real example values beside
them, a data-dependent question is answered from the example and becomes a run-time assert in the graph
(``aten._assert_scalar``). draft_export also attaches a structured-log handler that records every symbolic
expression with its Python stack for its report, which we never read: on demucs' HTDemucs that logging was 86 %
of the capture (85 s; 12 s without it, the same graph and the same asserts).
"""
from __future__ import annotations

import contextlib

PRIVATE_NAMES = (   # (and the format of torch.export's size sources: ``is_input_size``)
    "torch._functorch.config.fake_tensor_propagate_real_tensors",
    "torch._functorch.config.generate_fake_kernels_from_real_mismatches",
    "torch.fx.graph._PyTreeCodeGen",
    "torch.fx.graph._PyTreeInfo",
    "torch.utils._pytree.tree_structure",
    "torch._C._DisablePythonDispatcher",
)


def eager_kernels():
    """Run torch's own C++ kernels inside a trace: make_fx turns the Python dispatcher on, which sends
    ``torch.istft`` to its Python reference (torch._refs.istft), wrong for an odd n_fft (it inverts without
    ``n``: "Expected input.size(2) == n_fft, got 324 != 325")."""
    import torch

    return torch._C._DisablePythonDispatcher()


def positional_signature(graph, names, like) -> None:
    """``graph`` takes positional inputs ``names`` and returns its flat outputs in the structure the traced
    graph ``like`` returns (make_fx and torch.export write that structure in a pytree code generator)."""
    from torch.fx.graph import _PyTreeCodeGen, _PyTreeInfo
    import torch.utils._pytree as pytree

    info = like._codegen.pytree_info
    in_spec = pytree.tree_structure(tuple(range(len(names))))
    graph._codegen = _PyTreeCodeGen(_PyTreeInfo(list(names), in_spec, info.out_spec))


@contextlib.contextmanager
def reading_values():
    """Within: torch.export answers data-dependent questions from the example's values, each checked at run time."""
    import torch._functorch.config as functorch_config

    with functorch_config.patch(fake_tensor_propagate_real_tensors=True,
                                generate_fake_kernels_from_real_mismatches=True):
        yield


PRIVATE_NAMES += (   # stop_when_fixed wraps the first; the second is read on a shape environment
    "torch.fx.experimental.symbolic_shapes.ShapeEnv._set_replacement",
    "torch.fx.experimental.symbolic_shapes.ShapeEnv().var_to_sources",
)


def is_input_size(source_name: str, name: str, axis: int) -> bool:
    """Whether a shape-environment source (``L['x'].size()[2]``, ``x.size()[2]``) is input ``name``'s size at
    ``axis``."""
    return source_name == f"{name}.size()[{axis}]" or source_name.endswith(f"['{name}'].size()[{axis}]")


@contextlib.contextmanager
def _wrapped(cls, name: str, make):
    """Within: ``cls.name`` is ``make(original)``; the original is back on exit."""
    own = getattr(cls, name)
    setattr(cls, name, make(own))
    try:
        yield
    finally:
        setattr(cls, name, own)


class SizeFixed(Exception):
    """Raised inside a capture the moment the model's code makes a watched input size a constant."""

    def __init__(self, name: str, axis: int, where: str):
        super().__init__(f"input '{name}' axis {axis} fixed" + (f" at {where}" if where else ""))
        self.name, self.axis, self.where = name, axis, where


@contextlib.contextmanager
def stop_when_fixed(watch):
    """Within: a capture stops with ``SizeFixed`` as soon as one of ``watch`` ((input name, axis) pairs) becomes
    a constant in torch.export's shape environment, at the line of the model's code that did it, instead of
    tracing the rest of the model for a graph that is thrown away (open-unmix's batch, captured at 2 for an
    example of 1, was fixed 5 s into a 57 s capture by its loop over the batch)."""
    if not watch:
        yield
        return
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    from ._where import from_stack

    def make(own):
        def set_replacement(self, a, tgt, *args, **kwargs):
            out = own(self, a, tgt, *args, **kwargs)
            if getattr(tgt, "is_number", False):
                for src in getattr(self, "var_to_sources", {}).get(a, ()):
                    for name, axis in watch:
                        if is_input_size(src.name, name, axis):
                            raise SizeFixed(name, axis, from_stack() or "")
            return out
        return set_replacement

    with _wrapped(ShapeEnv, "_set_replacement", make):
        yield


PRIVATE_NAMES += (   # user_locations wraps it; its SLoc's fields are read by _where.from_guard
    "torch.fx.experimental.symbolic_shapes.ShapeEnv._get_sloc",
    "torch._guards.SLoc.__dataclass_fields__.maybe_user_loc",
)


@contextlib.contextmanager
def user_locations():
    """Within: each shape guard (and range refinement) of a non-strict capture records the model's line that
    made it. torch records it only under Dynamo; otherwise the guard knows the torch function it was made in
    (a pad's meta kernel), and a bound on an axis could not be traced to the model's code."""
    import dataclasses

    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    from ._where import from_stack

    def make(own):
        def get_sloc(self, *args, **kwargs):
            sloc = own(self, *args, **kwargs)
            where = from_stack() if getattr(sloc, "maybe_user_loc", "") is None else None
            return dataclasses.replace(sloc, maybe_user_loc=where) if where else sloc
        return get_sloc

    with _wrapped(ShapeEnv, "_get_sloc", make):
        yield
