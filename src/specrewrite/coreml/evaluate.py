"""Numpy reference evaluator for coremltools MIL programs: ``specrewrite.coreml.evaluate``.

coremltools converts on Linux but cannot run Core ML models there.  ``evaluate`` walks a
converted ``Program`` op by op in numpy so tests can check the numbers::

    ml = ct.convert(traced, ..., convert_to="mlprogram", skip_model_load=True)
    out = evaluate(ml, {"x": x})                 # as declared (fp16 where the program says fp16)
    out16 = evaluate(ml, {"x": x}, fp16=True)    # additionally round every float value to fp16

Precision model: every op is computed in float32 (fp16 operands are widened) and each output is
cast to the dtype the program declares for it, so an fp16 program (compute_precision FLOAT16,
the default) rounds every op output to float16 just like Core ML mlprogram does. With
``fp16=True`` fp32 inputs, consts and op outputs are rounded to float16 as well (kept as float32
arrays), emulating an fp16 compute device.  Values beyond 65504 overflow to inf as in fp16.

Op semantics follow the MIL op definitions in ``coremltools/converters/mil/mil/ops/defs``; the
implementations live in ``_eval_ops.py`` / ``_eval_ops_shape.py``.  Unsupported ops raise ``NotImplementedError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _eval_ops as _ops
from ._ct_private import walk_ops

__all__ = ["evaluate", "op_types", "unsupported_op_types", "SUPPORTED_OPS"]

_CONTROL = ("const", "cond", "while_loop", "read_state", "coreml_update_state")
SUPPORTED_OPS = frozenset(_ops.OPS) | frozenset(_CONTROL)


def _program(model):
    prog = getattr(model, "_mil_program", None)
    if prog is None and hasattr(model, "functions"):
        prog = model
    if prog is None and hasattr(model, "get_spec") and getattr(model, "weights_dir", None):
        # MLModel loaded from disk (skip_model_load=True): rebuild the program from the proto
        from ._ct_private import milproto_load as _milproto_load

        spec = model.get_spec()
        if spec.WhichOneof("Type") == "mlProgram":
            prog = _milproto_load(spec, spec.specificationVersion, model.weights_dir)
    if prog is None:
        raise TypeError(
            "mil_eval: expected a coremltools MLModel with a MIL program (convert_to='mlprogram') "
            f"or a coremltools.converters.mil.Program, got {type(model).__name__}")
    return prog


def op_types(mlmodel_or_program) -> set[str]:
    """All op types used in all functions of the program, including ops in nested blocks."""
    prog = _program(mlmodel_or_program)
    return {op.op_type for f in prog.functions.values() for op in walk_ops(f)}


def unsupported_op_types(mlmodel_or_program) -> set[str]:
    """Op types of the program that ``evaluate`` cannot run."""
    return {t for t in op_types(mlmodel_or_program)
            if t not in SUPPORTED_OPS and not t.startswith("constexpr_")}


def _np_dtype(var):
    from coremltools.converters.mil.mil import types

    dt = var.dtype
    if dt is None or dt == types.str:
        return None
    try:
        return np.dtype(types.nptype_from_builtin(dt))
    except (KeyError, TypeError):
        return None


class _Evaluator:
    def __init__(self, fp16: bool):
        self.fp16 = fp16
        self.env: dict[str, Any] = {}

    # ------------------------------------------------------------------ values
    def read(self, var):
        if var.name in self.env:
            return self.env[var.name]
        val = var.val if var.val is not None else var.sym_val
        if val is None:
            raise KeyError(f"mil_eval: no value for var {var.name!r}")
        return val if isinstance(val, str) else np.asarray(val)

    def store(self, var, value, op_name: str):
        """Convert ``value`` to ``var``'s declared dtype (+ fp16 emulation), check its shape."""
        if isinstance(value, str):
            self.env[var.name] = value
            return
        value = np.asarray(value)
        dt = _np_dtype(var)
        if dt is not None and value.dtype != dt:
            if dt.kind in "iu" and value.dtype.kind == "f":
                value = np.trunc(value)  # float -> int casts truncate toward zero
            value = value.astype(dt)
        if self.fp16 and value.dtype == np.float32:
            value = value.astype(np.float16).astype(np.float32)
        shape = tuple(var.shape) if var.shape is not None else None
        if shape is not None and len(shape) == value.ndim:
            for got, want in zip(value.shape, shape):
                if isinstance(want, (int, np.integer)) and got != want:
                    raise AssertionError(
                        f"mil_eval: op {op_name} produced shape {value.shape} for var {var.name}, "
                        f"program declares {shape}")
        elif shape is not None and not (len(shape) == 0 and value.size == 1):
            raise AssertionError(
                f"mil_eval: op {op_name} produced rank {value.ndim} for var {var.name}, "
                f"program declares shape {shape}")
        else:
            value = value.reshape(()) if shape == () else value
        self.env[var.name] = value

    def _widen(self, v):
        if isinstance(v, np.ndarray) and v.dtype == np.float16:
            return v.astype(np.float32)
        return v

    def args(self, op) -> dict:
        a: dict[str, Any] = {}
        try:
            defaults = dict(op.default_inputs().items())
        except Exception:  # default_inputs may need attributes that are absent
            defaults = {}
        for k, v in defaults.items():
            a[k] = v if (v is None or isinstance(v, str)) else np.asarray(v)
        for k, v in op.inputs.items():
            if isinstance(v, (list, tuple)):
                a[k] = [self._widen(self.read(t)) for t in v]
            else:
                a[k] = self._widen(self.read(v))
        for k in op._input_types:  # every declared input is present (None when absent)
            a.setdefault(k, None)
        return a

    # --------------------------------------------------------------- execution
    def run_block(self, block):
        for op in block.operations:
            self.run_op(op)

    def run_op(self, op):
        t = op.op_type
        if t == "const" or t.startswith("constexpr_"):
            v = op.outputs[0].val if t == "const" else op.materialized_val_inference()
            outs = v if isinstance(v, tuple) else (v,)
        elif t == "cond":
            blk = op.blocks[0] if bool(np.asarray(self.read(op.inputs["pred"]))) else op.blocks[1]
            self.run_block(blk)
            outs = tuple(self.read(v) for v in blk.outputs)
        elif t == "while_loop":
            outs = self._while(op)
        elif t == "read_state":
            outs = (self.read(op.inputs["input"]),)
        elif t == "coreml_update_state":
            val = self.read(op.inputs["value"])
            self.store(op.inputs["state"], val, op.name)
            outs = (val,)
        elif t in _ops.OPS:
            a = self.args(op)
            with np.errstate(all="ignore"):
                res = _ops.OPS[t](a, op)
            outs = res if isinstance(res, tuple) else (res,)
        else:
            raise NotImplementedError(f"mil_eval: op {op.op_type} ({op.name}) not supported")
        if len(outs) != len(op.outputs):
            raise AssertionError(f"mil_eval: op {op.name} gave {len(outs)} outputs, expected {len(op.outputs)}")
        with np.errstate(over="ignore", invalid="ignore"):
            for var, val in zip(op.outputs, outs):
                self.store(var, val, op.name)

    def _while(self, op, max_iter: int = 1_000_000):
        cond_b, body_b = op.blocks
        vals = [self.read(v) for v in op.inputs["loop_vars"]]
        for _ in range(max_iter):
            for bv, val in zip(cond_b.inputs, vals):
                self.env[bv.name] = val
            self.run_block(cond_b)
            if not bool(np.asarray(self.read(cond_b.outputs[0]))):
                return tuple(vals)
            for bv, val in zip(body_b.inputs, vals):
                self.env[bv.name] = val
            self.run_block(body_b)
            vals = [self.read(v) for v in body_b.outputs]
        raise RuntimeError(f"mil_eval: while_loop {op.name} exceeded {max_iter} iterations")


def evaluate(mlmodel_or_program, inputs: dict[str, np.ndarray], *, fp16: bool = False,
             function: str = "main") -> dict[str, np.ndarray]:
    """Run MIL function ``function`` of a converted model/program in numpy.

    ``inputs`` maps the function's input names to arrays (states of stateful models too);
    they are cast to the declared input dtypes (fp16 inputs are rounded).  Returns
    ``{output var name: array}`` in the function's output order, with the declared dtypes
    (float16 arrays for fp16 outputs).  ``fp16=True`` additionally rounds every float32
    input/const/op output to float16, emulating an fp16 compute device.
    """
    prog = _program(mlmodel_or_program)
    if function not in prog.functions:
        raise KeyError(f"mil_eval: no function {function!r}; have {sorted(prog.functions)}")
    func = prog.functions[function]
    ev = _Evaluator(fp16)
    missing = set(func.inputs) - set(inputs)
    extra = set(inputs) - set(func.inputs)
    if missing or extra:
        raise KeyError(f"mil_eval: missing inputs {sorted(missing)}, unknown inputs {sorted(extra)}")
    with np.errstate(over="ignore"):
        for name, var in func.inputs.items():
            ev.store(var, np.asarray(inputs[name]), f"input {name}")
    ev.run_block(func)
    return {v.name: ev.read(v) for v in func.outputs}
