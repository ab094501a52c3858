"""Every use of coremltools' private (underscored or frontend-internal) names lives in this module.

coremltools documents ``register_torch_op`` for custom lowerings, but the helpers a lowering needs (reading a
node's inputs, the registry table, the current MIL function, the opset in use) are internal. Keeping them here
means one file to adjust when coremltools changes. Public coremltools API (``ct``, ``mb``, ``types``) is used
directly elsewhere.
"""
from __future__ import annotations

import contextlib
import copy
import itertools

import torch

from coremltools.converters.mil.frontend.torch import ops as _ops
from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY, register_torch_op
from coremltools.converters.mil.mil import Builder as mb
from coremltools.converters.mil.mil import Placeholder as _Placeholder
from coremltools.converters.mil.mil import types
from coremltools.converters.mil.mil.block import curr_block as _curr_block
from coremltools.converters.mil.mil.block import (
    is_current_opset_version_compatible_with as _opset_at_least,
)
from coremltools.converters.mil.mil.var import Var

from ..errors import SpecRewriteError

PRIVATE_NAMES = (
    "coremltools.converters.mil.frontend.torch.ops._get_bindings (how coremltools reads a node input)",
    "coremltools.converters.mil.frontend.torch.torch_op_registry._TORCH_OPS_REGISTRY"
    " (.name_to_func_mapping, .get_func)",
    "coremltools.converters.mil.mil.block.curr_block / Function._input_dict / .placeholder_inputs",
    "coremltools.converters.mil.mil.block.is_current_opset_version_compatible_with",
    "coremltools.converters.mil.mil.Placeholder",
    "TranscriptionContext.add / __contains__ / __getitem__ / .frontend (+ an attribute for our state)",
    "InternalTorchIRNode.inputs / kwinputs / kind / name / outputs / attr / meta",
    "MLModel._mil_program",
    "coremltools.converters.mil.frontend.torch.internal_graph.InternalTorchIRNode.from_exir_node (wrapped)",
    "coremltools.converters.mil.frontend.torch.utils.sanitize_op_kind / unify_inplace_and_functional",
    "torch._C.Node.cs (a missing accessor for complex-scalar constants, added while registered)",
    "coremltools.converters.mil.mil.Builder._maybe_set_name / _get_free_name (op name prefix in our lowerings)",
    "coremltools.converters.mil.frontend.milproto.load.load (a saved mlprogram back to MIL, for evaluate)",
    "coremltools.converters.mil.frontend.torch.converter.generate_tensor_assignment_ops (wrapped: the view "
    "dimensions of each fused slice write) and InternalTorchIRGraph.nodes",
    "coremltools.converters.mil.frontend.torch.converter.TorchConverter.convert (wrapped: the program it builds "
    "is folded to rank 5) and Block.operations / replace_uses_of_var_after_op / remove_ops, Var.child_ops,"
    " Operation.scopes, coremltools.converters.mil.mil.scope.ScopeInfo",
    "coremltools.converters.mil.frontend._utils.build_einsum_mil (the real einsums of a complex einsum)",
)

__all__ = ["Var", "mb", "types", "register_torch_op", "PRIVATE_NAMES", "registry_snapshot", "registry_pristine",
           "registry_restore", "registry_names_of", "original_func", "set_get_func_hook", "get_func_hooked",
           "raw_inputs", "raw_kwinputs", "bind", "delegate", "with_attr", "with_inputs", "node_attr", "node_meta",
           "is_torchscript", "conversion_state", "op_name_prefix", "opset_at_least", "add_function_input",
           "mil_program", "milproto_load", "walk_ops", "install_frontend_patches", "remove_frontend_patches",
           "is_complex_literal", "scope_of", "new_ts_node", "einsum_mil"]

_REG = _TORCH_OPS_REGISTRY
_PRISTINE = dict(_REG.name_to_func_mapping)  # coremltools' own table, taken before any specrewrite change
_fresh = itertools.count()


# --------------------------------------------------------------------------------------------- the registry

def registry_snapshot() -> dict:
    return dict(_REG.name_to_func_mapping)


def registry_pristine() -> dict:
    return dict(_PRISTINE)


def registry_restore(snapshot: dict) -> None:
    table = _REG.name_to_func_mapping
    table.clear()
    table.update(snapshot)


def registry_names_of(func_name: str) -> list:
    """Every registry key that coremltools maps to the same function as ``func_name`` (its aliases)."""
    target = _PRISTINE.get(func_name)
    if target is None:
        return [func_name]
    return [k for k, f in _PRISTINE.items() if f is target]


def original_func(kind: str):
    """coremltools' own lowering for a (sanitized) op kind, ignoring any override."""
    from coremltools.converters.mil.frontend.torch.utils import sanitize_op_kind, unify_inplace_and_functional

    return _PRISTINE.get(unify_inplace_and_functional(sanitize_op_kind(kind)))


def set_get_func_hook(hook) -> None:
    """Route every registry lookup through ``hook(name, func) -> func`` (None removes the hook)."""
    if hook is None:
        _REG.__dict__.pop("get_func", None)
        return
    cls_get = type(_REG).get_func

    def get_func(op_lookup):
        return hook(op_lookup, cls_get(_REG, op_lookup))

    _REG.get_func = get_func


def get_func_hooked() -> bool:
    return "get_func" in _REG.__dict__


# ------------------------------------------------------------------------------------------- node inputs

def raw_inputs(node) -> list:
    return list(node.inputs)


def raw_kwinputs(node) -> dict:
    return dict(node.kwinputs or {})


def bind(context, item):
    """One raw node input (a name, a literal, a list) to a Var / list, like coremltools does.

    Python complex literals (torch.export keeps ``1j`` as a literal) are returned as Python complex."""
    if isinstance(item, complex):
        return item
    if is_complex_literal(item):
        return complex(item[len(COMPLEX_MARK):])
    if isinstance(item, str) and item in context:
        return context[item]
    return _ops._get_bindings(context, [item])[0]


def is_torchscript(context) -> bool:
    """True for jit.trace / jit.script input, False for torch.export programs."""
    return "SCRIPT" in str(getattr(context.frontend, "name", context.frontend)).upper()


def conversion_state(context) -> dict:
    """A dict that lives as long as one ct.convert call (kept on coremltools' conversion context)."""
    state = getattr(context, "_specrewrite_state", None)
    if state is None:
        state = {}
        context._specrewrite_state = state
    return state


def node_attr(node) -> dict:
    return dict(node.attr or {})


def with_attr(node, **attr):
    """A copy of a TorchScript node with some attributes changed (constantchunk's dim)."""
    new = copy.copy(node)
    new.attr = dict(node.attr or {}, **attr)
    return new


def with_inputs(node, inputs):
    new = copy.copy(node)
    new.inputs = list(inputs)
    return new


def node_meta(node) -> dict:
    meta = getattr(node, "meta", None)
    return meta if isinstance(meta, dict) else {}


def milproto_load(spec, version, weights_dir):
    """A saved ML program's MIL ``Program`` (coremltools has no public loader back to MIL)."""
    from coremltools.converters.mil.frontend.milproto.load import load

    return load(spec, version, weights_dir)


def walk_ops(block):
    """Every op of a MIL block, nested blocks (cond / while_loop bodies) included."""
    for op in block.operations:
        yield op
        for b in op.blocks:
            yield from walk_ops(b)


def mil_program(mlmodel):
    """The MIL program of a converted model (or the program itself)."""
    return getattr(mlmodel, "_mil_program", mlmodel)


def delegate(context, node, func, replace: dict | None = None, kw_replace: dict | None = None):
    """Run coremltools lowering ``func`` on a copy of ``node`` whose inputs at the given positions (or keyword
    names) are replaced by constants."""
    new = copy.copy(node)
    inputs = list(node.inputs)
    for i, val in (replace or {}).items():
        while len(inputs) <= i:
            inputs.append(None)
        inputs[i] = _const_name(context, val)
    new.inputs = inputs
    if kw_replace:
        kw = dict(node.kwinputs or {})
        for k, val in kw_replace.items():
            kw[k] = [_const_name(context, val)]  # keyword inputs are one-element sequences
        new.kwinputs = kw
    func(context, new)


def _const_name(context, val):
    if isinstance(val, Var):
        name = f"_sr_arg{next(_fresh)}"
        context.add(val, name)
        return name
    if val is None:
        return None
    name = f"_sr_const{next(_fresh)}"
    context.add(mb.const(val=val), name)
    return name


@contextlib.contextmanager
def op_name_prefix(prefix: str):
    """Auto-generated op names get ``prefix``: torch.export node names ('abs_2') look like coremltools'
    automatic names, and the neuralnetwork backend rejects duplicate layer names."""
    builder = type(mb) if not isinstance(mb, type) else mb
    orig = builder.__dict__["_maybe_set_name"]

    def _maybe_set_name(cls, kwargs, op_type):
        if "name" not in kwargs:
            kwargs["name"] = cls._get_free_name(prefix + op_type)
        return kwargs

    builder._maybe_set_name = classmethod(_maybe_set_name)
    try:
        yield
    finally:
        builder._maybe_set_name = orig


# ----------------------------------------------------------------------------------------- MIL function

def opset_at_least(target) -> bool:
    return _opset_at_least(target)


def add_function_input(name: str, shape, dtype=types.fp32) -> Var:
    """Add (or reuse) an input of the MIL function being built (the ``input`` mode's basis tensors)."""
    blk = _curr_block()
    func = blk
    while getattr(func, "outer_op", None) is not None:
        func = func.outer_op.enclosing_block
    if name in func._input_dict:
        return func._input_dict[name]
    ph = _Placeholder(sym_shape=tuple(shape), dtype=dtype, name=name)
    ph.set_name(name)
    func.placeholder_inputs[name] = ph
    func._input_dict[name] = ph.outputs[0]
    return ph.outputs[0]


# ------------------------------------------------------------------------------ graph-construction patches
# coremltools builds its node list before any op lowering runs, and fails there on complex constants:
# TorchScript complex-scalar constants (attribute kind 'cs', which torch._C.Node has no accessor for) and
# torch.export literals ``1j`` / ``torch.complex64``. While registered, those are passed through: the complex
# literal as a marker string that ``bind`` turns back into a Python complex, complex dtypes as torch's numbers.

COMPLEX_MARK = "__specrewrite_complex__"
_COMPLEX_DTYPE_NUM = {torch.complex32: 8, torch.complex64: 9, torch.complex128: 10}
_patches = {}


def is_complex_literal(item) -> bool:
    return isinstance(item, str) and item.startswith(COMPLEX_MARK)


def _clean(v):
    if isinstance(v, complex):
        return f"{COMPLEX_MARK}{v!r}"
    if isinstance(v, torch.dtype) and v in _COMPLEX_DTYPE_NUM:
        return _COMPLEX_DTYPE_NUM[v]
    if isinstance(v, (list, tuple)):
        items = [_clean(e) for e in v]
        if any(a is not b for a, b in zip(items, v)):
            return type(v)(items)
    return v


class _NodeView:
    """An fx node as coremltools sees it, with complex literals / dtypes cleaned (the node is not modified)."""

    def __init__(self, node):
        self._node = node
        self.args = tuple(_clean(a) for a in node.args)
        self.kwargs = {k: _clean(v) for k, v in node.kwargs.items()}

    def __getattr__(self, name):
        return getattr(self._node, name)


_ASSIGN_KINDS = ("_internal_op_tensor_inplace_copy_", "_internal_op_tensor_inplace_fill_")


def install_frontend_patches() -> None:
    if _patches:
        return
    from coremltools.converters.mil.frontend.torch import internal_graph as ig

    cls = ig.InternalTorchIRNode
    orig = cls.__dict__["from_exir_node"]

    def from_exir_node(klass, node):
        try:
            return orig.__func__(klass, _NodeView(node))
        except NotImplementedError as e:   # an op coremltools' exported-program reader does not know
            from .._where import from_stack_text

            raise SpecRewriteError(f"coremltools has no converter for {node.target} ({e})", op="specrewrite.coreml",
                                   where=from_stack_text(node.meta.get("stack_trace")) or f"node {node.name!r}",
                                   fix="express this step with ops coremltools converts, or register a converter "
                                       "for it (coremltools.converters.mil.register_torch_op)") from None

    _patches["exir"] = (cls, orig)
    cls.from_exir_node = classmethod(from_exir_node)

    from coremltools.converters.mil.frontend.torch import converter as cv

    fuse = cv.generate_tensor_assignment_ops

    def tensor_assignment_with_dims(graph):
        from ._ts_writes import refresh_stale_views, stale_view_write, view_chains, write_back_view_writes

        write_back_view_writes(graph)
        refresh_stale_views(graph)
        found = stale_view_write(graph)
        if found is not None:
            node, what = found
            raise SpecRewriteError(f"an in-place write that coremltools would convert wrong: {what}",
                                   op=f"specrewrite.coreml ({node.kind})", where=node.name,
                                   fix="convert the rewritten model (specrewrite.coreml.convert, or "
                                       "specrewrite.export to .mlpackage): specrewrite.rewrite turns every write into "
                                       "a scatter that converts exactly")
        chains = view_chains(graph)
        fuse(graph)
        for i, chain in chains.items():
            node = graph.nodes[i]
            if node.kind in _ASSIGN_KINDS and (len(node.inputs) - 2) == 3 * len(chain):
                node.attr = dict(node.attr or {}, sr_view_dims=chain)

    _patches["assign"] = (cv, fuse)
    cv.generate_tensor_assignment_ops = tensor_assignment_with_dims
    if not hasattr(torch._C.Node, "cs"):
        torch._C.Node.cs = lambda self, name: self.output().toIValue()
        _patches["cs"] = True

    conv_cls = cv.TorchConverter
    convert = conv_cls.__dict__["convert"]

    def convert_folded(self):
        from ._fold import fold_program

        _refuse_missing_converters(self.graph)
        prog = convert(self)
        fold_program(prog)   # tensors of rank over 5 (Core ML's limit) held as reshapes of rank 5 or less
        return prog

    _patches["fold"] = (conv_cls, convert)
    conv_cls.convert = convert_folded


def _refuse_missing_converters(graph) -> None:
    """Every op of the graph that coremltools has no converter for (ours included), named with its source line
    in one error before any is converted (coremltools stops at the first with a bare NotImplementedError)."""
    from .._where import from_stack_text

    missing, stack = {}, [graph]
    while stack:
        g = stack.pop()
        for node in g.nodes:
            if _REG.get_func(node.kind) is None:
                where = from_stack_text(node_meta(node).get("stack_trace")) or f"torch node {node.name!r}"
                missing.setdefault(node.kind, []).append(where)
            stack.extend(node.blocks or ())
    if missing:
        listed = "; ".join(f"{k} ({len(w)}x, first at {w[0]})" for k, w in sorted(missing.items()))
        raise SpecRewriteError(f"coremltools has no converter for {len(missing)} op(s) of this model: {listed}",
                               op="specrewrite.coreml", where=next(iter(missing.values()))[0],
                               fix="express these steps with ops coremltools converts, or register a converter "
                                   "for them (coremltools.converters.mil.register_torch_op)")


def new_ts_node(**kwargs):
    """A coremltools TorchScript IR node (``InternalTorchIRNode(kind=, inputs=, outputs=, name=, parent=, ...)``)."""
    from coremltools.converters.mil.frontend.torch.internal_graph import InternalTorchIRNode

    return InternalTorchIRNode(**kwargs)


def scope_of(op):
    """A context in which new MIL ops take ``op``'s scopes (the frontend checks that every op has its module's)."""
    from coremltools.converters.mil.mil.scope import ScopeInfo

    scopes = [ScopeInfo(source=k, data=list(v)) for k, v in (getattr(op, "scopes", None) or {}).items() if v]
    return mb.scope(*scopes) if scopes else contextlib.nullcontext()


def remove_frontend_patches() -> None:
    if "fold" in _patches:
        conv_cls, convert = _patches.pop("fold")
        conv_cls.convert = convert
    if "assign" in _patches:
        cv, fuse = _patches.pop("assign")
        cv.generate_tensor_assignment_ops = fuse
    if "exir" in _patches:
        cls, orig = _patches.pop("exir")
        cls.from_exir_node = orig
    if _patches.pop("cs", None):
        del torch._C.Node.cs


def einsum_mil(operands, equation: str):
    """One real einsum as MIL ops, as coremltools' own einsum converter builds it (any equation, any count)."""
    from coremltools.converters.mil.frontend import _utils

    return _utils.build_einsum_mil(list(operands), equation, f"sr_einsum_{next(_fresh)}")
