"""Capture: any model -> an ATen-level FX graph, with torch.stft / istft kept as single opaque nodes.

Order of attempts: torch.export (non-strict, dynamic axes where the model allows) and, where it cannot capture
(data-dependent Python such as int(tensor) or asserts on values), tracing with the real example inputs
(make_fx, pre-dispatch): control flow is evaluated and shapes are specialised.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import operator
import warnings
from typing import Dict, Tuple

import torch
import torch.fx as fx

from .._torch_private import reading_values, stop_when_fixed, user_locations
from ._known import _is_int, known_value, tracking
from ._nodes import attr_of
from ._ops import CallSites, patched
from ._packed import padded_packing
from ._rnn import opaque_rnns, restore_rnns


def via_export(model, args, dynamic_shapes=None, draft: bool = False, sym_len: bool = True,
               pad_multiple: bool = True, watch: tuple = ()) -> Tuple[fx.GraphModule, CallSites]:
    """torch.export (non-strict) with ``dynamic_shapes`` in torch.export's format (None: all static).
    ``draft``: capture, as torch.export.draft_export does (without its logging), a model whose Python reads
    values from tensors (``int(t)``, asserts on values), with those values taken from the example and checked at
    run time, instead of failing; the shapes stay dynamic (``_torch_private.reading_values``). ``sym_len``: ``len(tensor)`` and ``int(size)`` stay symbolic (see
    ``symbolic_len``, ``symbolic_int``). ``pad_multiple``: pads up to a multiple written with an ``if`` hold
    for every length (``_pad_multiple``). ``watch``: (input name, axis) pairs whose becoming a constant stops
    the capture at once with ``_torch_private.SizeFixed``."""
    sites = CallSites()
    # torch.export prints the partial graph of a failed capture to stderr: a failure here only means the next
    # capture route is tried, so it is kept off the user's console
    maybe = contextlib.nullcontext
    with patched(sites), opaque_rnns(), padded_packing(), warnings.catch_warnings(), \
            contextlib.redirect_stderr(io.StringIO()), (symbolic_len() if sym_len else maybe()), \
            (symbolic_int(model) if sym_len else maybe()), tracking(pad_multiple) as known, \
            torch.backends.opt_einsum.flags(enabled=False), (reading_values() if draft else maybe()), \
            stop_when_fixed(watch), user_locations():
        # (opt_einsum picks a multi-operand einsum's contraction order from the example's sizes, guarding on
        # them: NeMo's beamformer postfilter fixed the batch axis; torch's left-to-right order guards nothing)
        warnings.simplefilter("ignore")
        ep = torch.export.export(model, tuple(args), dynamic_shapes=_for_signature(model, dynamic_shapes), strict=False)
        # no run_decompositions(): it re-traces the whole model (47 s of 53 s on HDemucs); the rules handle
        # the pre-dispatch ops (torch.fft.* as fft_*, in-place ops on complex values) directly.
        gm = ep.module()
    gm.meta["specrewrite_absorbed"] = list(known.absorbed)   # guards of pads made right for both branches
    restore_rnns(gm)
    inline_higher_order(gm)
    return gm, sites


class Captures:
    """The torch.export captures of one ``_capture`` search, each made once: the search judges an axis at a size
    moved off the example's and comes back to the example's capture (HTDemucs asked for the same 9 s capture
    twice). Keyed by the identity of the capture inputs (kept alive here, so an id is not reused), the dynamic
    shapes and the capture options; a failure is remembered like a result. Nothing in the search changes a
    captured graph (it is judged and run, and lowered only after the search returns it)."""

    def __init__(self, model):
        self.model = model
        self._done: dict = {}

    def __call__(self, args, spec, **options):
        key = (tuple(id(a) for a in args), _spec_key(spec), tuple(sorted(options.items())))
        if key not in self._done:
            from . import _clones

            try:
                got = (via_export(self.model, _clones(args), spec, **options), None)
            except Exception as e:  # noqa: BLE001 - the caller decides per failure
                got = (None, e)
            self._done[key] = (args, got)
        result, error = self._done[key][1]
        if error is not None:
            raise error
        return result


def _spec_key(spec):
    """A hashable form of torch.export dynamic shapes: per axis the hint's kind or the Dim's name and range."""
    def leaf(d):
        if d is None or isinstance(d, (int, str)):
            return d
        return (type(d).__name__, str(getattr(d, "type", "")), getattr(d, "__name__", None),
                getattr(d, "min", None), getattr(d, "max", None))

    if isinstance(spec, dict):
        return tuple(sorted((str(k), _spec_key(v)) for k, v in spec.items()))
    if isinstance(spec, (tuple, list)):
        return tuple(_spec_key(v) for v in spec)
    return leaf(spec)


def _for_signature(model, spec):
    """Per-input specs (one per positional input) as torch.export wants them for ``forward``'s signature: the
    inputs that ``*args`` takes, as one tuple (else torch.export refuses the structure and the capture used to
    fall back to tracing, every shape fixed)."""
    if not isinstance(spec, (tuple, list)):
        return spec
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return spec
    star = next((i for i, p in enumerate(params) if p.kind is p.VAR_POSITIONAL), None)
    if star is None or star > len(spec):
        return spec
    return tuple(spec[:star]) + (tuple(spec[star:]),)


@contextlib.contextmanager
def symbolic_len():
    """``len(tensor)`` is ``tensor.shape[0]``, but Python makes ``len`` return an int, so under torch.export a
    dynamic first size would be fixed to the example's (torchaudio's kaldi ``fbank`` asserts
    ``window_size <= len(waveform)``, pinning the clip length). During the capture ``len`` of a tensor whose first
    size is symbolic returns that size; anything else goes to Python's own ``len``. Restored on exit."""
    import builtins

    own = builtins.len
    plain = frozenset((str, list, tuple, dict, set, frozenset, bytes, range))   # (torch's own tracing calls len
    # millions of times while it formats stack traces: these answer at once)

    def length(obj, /):
        if type(obj) in plain:
            return own(obj)
        if isinstance(obj, torch.Tensor) and obj.dim() > 0 and isinstance(obj.shape[0], torch.SymInt):
            return obj.shape[0]
        return own(obj)

    builtins.len = length
    try:
        yield
    finally:
        builtins.len = own


class _IntMeta(type):
    """``isinstance(x, int)`` / ``issubclass`` still answer for Python's int."""

    def __instancecheck__(cls, obj):
        return isinstance(obj, int)

    def __subclasscheck__(cls, sub):
        return issubclass(sub, int)

    def __call__(cls, *args, **kwargs):
        if len(args) == 1 and not kwargs:
            v = args[0]
            if isinstance(v, torch.SymInt):
                return v                  # already an integer: Python's int() would fix it to the example's
            if isinstance(v, torch.SymFloat):
                return torch.sym_int(v)   # truncation toward zero, as int() does, kept symbolic
            if isinstance(v, torch.Tensor):
                k = known_value(v)   # a value built from sizes and constants (``int(arange(..)[-1])``)
                if _is_int(k):
                    return k
        return int(*args, **kwargs)


class _SymbolicInt(metaclass=_IntMeta):
    """What the name ``int`` means in the model's own modules during a capture."""


@contextlib.contextmanager
def symbolic_int(model):
    """``int(x.shape[-1] / hop)``, ``int(math.ceil(T / hl))`` (HDemucs), ``int(audio.shape[1] // hop)``: sizes
    computed in Python and passed through ``int()``, which makes torch.export fix the length to the example's
    (a SymInt's ``__int__`` must return a real int). During the capture the name ``int`` in the modules that
    define the model's own classes (not torch's, not ours) returns a symbolic size unchanged and truncates a
    symbolic float symbolically; anything else is Python's int. A capture that fails with it is retried
    without it. Restored on exit."""
    import sys

    names = {type(m).__module__ for m in model.modules()}
    names = {n for n in names if n and not n.startswith(("torch.", "torchaudio.transforms", "specrewrite."))
             and n != "torch"}
    # the helpers those modules call live beside them (openunmix.model calls openunmix.filtering's wiener)
    packages = {n.rpartition(".")[0] + "." for n in names if "." in n}
    names |= {n for n in list(sys.modules) if n.startswith(tuple(packages)) and not n.startswith(
        ("torch.", "torchaudio.transforms", "torchaudio.functional", "specrewrite."))}
    mods = [sys.modules.get(n) for n in names]
    patched_mods = [m for m in mods if m is not None and "int" not in vars(m)]
    for m in patched_mods:
        m.int = _SymbolicInt
    try:
        yield
    finally:
        for m in patched_mods:
            if vars(m).get("int") is _SymbolicInt:
                del m.int


def via_trace(model, args) -> Tuple[fx.GraphModule, CallSites, Dict[str, str]]:
    """make_fx with real tensors; parameters and buffers enter as placeholders and are mapped back to
    attributes of the returned module (same qualified names as in the model)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    named = dict(model.named_parameters(remove_duplicate=False))
    named.update(dict(model.named_buffers(remove_duplicate=False)))
    names = list(named)

    def fn(flat, *a):
        return torch.func.functional_call(model, dict(zip(names, flat)), a, strict=False, tie_weights=False)

    sites = CallSites()
    with patched(sites), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # pre_dispatch keeps the ops converters know (lstm, batch_norm, linear, ...) instead of their kernels
        gm = make_fx(fn, tracing_mode="real", pre_dispatch=True, record_stack_traces=True,
                     _error_on_data_dependent_ops=False)([named[n] for n in names], *args)
    inline_higher_order(gm)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    attr_map = {}
    for node, qual in zip(placeholders[: len(names)], names):
        _set_attr(gm, qual, named[qual])
        attr_map[node.name] = qual
    return gm, sites, attr_map


def _set_attr(root: torch.nn.Module, qualname: str, value: torch.Tensor) -> None:
    *path, leaf = qualname.split(".")
    mod = root
    for p in path:
        if not hasattr(mod, p) or not isinstance(getattr(mod, p), torch.nn.Module):
            mod.add_module(p, torch.nn.Module())
        mod = getattr(mod, p)
    if isinstance(value, torch.nn.Parameter):
        mod.register_parameter(leaf, value)
    else:
        mod.register_buffer(leaf, value)


# higher-order ops that only set a dispatch context (grad mode, autocast) around a subgraph: for an inference
# graph of real pairs the context changes nothing we keep, so the subgraph is inlined into its caller
_CONTEXT_HOPS = ("wrap_with_set_grad_enabled", "wrap_with_autocast", "wrap", "autograd_function_apply_fwd",
                 "tag_activation_checkpoint")


def inline_higher_order(gm: fx.GraphModule) -> list:
    """Inline every context-only higher-order op (``with torch.no_grad()`` / ``autocast`` / ``set_grad_enabled``
    inside forward) of ``gm``, recursively. Returns the names of the inlined ops (for the report)."""
    inlined = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or not isinstance(node.target, torch._ops.HigherOrderOperator):
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if name not in _CONTEXT_HOPS:
            continue
        pos = [i for i, a in enumerate(node.args) if isinstance(a, fx.Node) and a.op == "get_attr"
               and isinstance(attr_of(gm, a.target), fx.GraphModule)]
        if not pos:
            continue
        sub = attr_of(gm, node.args[pos[0]].target)
        inlined += inline_higher_order(sub)
        operands = list(node.args[pos[0] + 1:])
        env = {}
        phs = [n for n in sub.graph.nodes if n.op == "placeholder"]
        for ph, a in zip(phs, operands):
            env[ph] = a
        out_vals = None
        with gm.graph.inserting_before(node):
            for n in sub.graph.nodes:
                if n.op == "placeholder":
                    continue
                if n.op == "output":
                    out_vals = fx.node.map_arg(n.args[0], lambda a: env[a])
                    continue
                if n.op == "get_attr":  # constants of the subgraph move to the parent under a fresh name
                    new_name, value = _fresh_attr(gm, n.target), attr_of(sub, n.target)
                    if isinstance(value, torch.Tensor):
                        _set_attr(gm, new_name, value)
                    else:
                        setattr(gm, new_name, value)
                    env[n] = gm.graph.get_attr(new_name)
                    env[n].meta = dict(n.meta)
                    continue
                new = gm.graph.node_copy(n, lambda a: env[a])
                env[n] = new
        for user in list(node.users):
            if user.op == "call_function" and user.target is operator.getitem and isinstance(out_vals, (list, tuple)):
                user.replace_all_uses_with(out_vals[user.args[1]])
                gm.graph.erase_node(user)
            else:
                user.replace_input_with(node, out_vals if not isinstance(out_vals, (list, tuple)) or
                                        len(out_vals) != 1 else out_vals[0])
        sub_attr = node.args[pos[0]]
        gm.graph.erase_node(node)
        if not sub_attr.users:
            gm.graph.erase_node(sub_attr)
        inlined.append(name)
    if inlined:
        gm.recompile()
    return inlined


def _fresh_attr(root, base):
    base = base.replace(".", "_")
    name, i = base, 0
    while hasattr(root, name):
        i += 1
        name = f"{base}_{i}"
    return name
