"""convert(): the rewritten route in one call (rewrite -> torch.jit.trace -> ct.convert)."""
from __future__ import annotations

import inspect
import sys

import numpy as np
import torch

from .._copy import copy_model
from ..errors import SpecRewriteError
from ..modes import Mode, Strategy
from . import _fp16
from ._ct_private import mil_program, walk_ops

FORBIDDEN = ("complex", "stft", "fft")


def _target(ct, target, convert_to):
    if target is None:
        return ct.target.iOS16 if convert_to == "mlprogram" else ct.target.iOS14
    if isinstance(target, str):
        try:
            return getattr(ct.target, target)
        except AttributeError:
            raise SpecRewriteError(f"unknown deployment target {target!r}",
                                   fix="use e.g. 'iOS15', 'iOS16', 'iOS17', 'iOS18' or a ct.target value") from None
    return target


def _rewrite(model, args, mode, strategy, dynamic=False):
    """specrewrite.rewrite where available (static shapes unless ``dynamic``: the route traces, so a fixed-length
    plan is what the file holds anyway); else swap the torchaudio transforms only."""
    try:
        from ..rewrite import rewrite
    except ImportError:
        rewrite = None
    if rewrite is not None:
        return rewrite(model, args, mode=mode, strategy=strategy, verify=False,
                       dynamic_shapes=None if dynamic else False)
    from ..modules import InverseSpectrogram, LFCC, MFCC, MelSpectrogram, Spectrogram
    import torchaudio.transforms as T

    table = {T.Spectrogram: Spectrogram, T.MelSpectrogram: MelSpectrogram, T.MFCC: MFCC, T.LFCC: LFCC,
             T.InverseSpectrogram: InverseSpectrogram}
    work = copy_model(model)
    for name, m in list(work.named_modules()):
        if type(m) in table:
            new = table[type(m)].from_torchaudio(m, mode=mode, strategy=strategy)
            if name == "":
                return new
            parent, _, leaf = name.rpartition(".")
            setattr(work.get_submodule(parent) if parent else work, leaf, new)
    return work


def _input_names(model, n):
    try:
        params = [p for p in inspect.signature(model.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        names = [p.name for p in params][:n]
    except (TypeError, ValueError):
        names = []
    return names + [f"input_{i}" for i in range(len(names), n)]


def _ct_inputs(ct, names, args, variable_length):
    out = []
    for name, t in zip(names, args):
        shape = list(t.shape)
        if variable_length is not False and variable_length is not None and t.is_floating_point() and shape:
            axis, lo, hi = -1, 1, max(16 * int(shape[-1]), 2 ** 21)
            if isinstance(variable_length, tuple):
                lo, hi = variable_length
            elif variable_length is not True:
                axis = int(variable_length)
                hi = max(16 * int(shape[axis]), 2 ** 21)
            axis %= len(shape)
            shape[axis] = ct.RangeDim(lower_bound=int(lo), upper_bound=int(hi), default=int(shape[axis]))
        dtype = np.float32 if t.is_floating_point() else np.int32
        out.append(ct.TensorType(name=name, shape=shape, dtype=dtype))
    return out


def _n_outputs(module, args) -> int:
    """The number of output tensors, nested lists and tuples flattened as a trace flattens them (bigvgan's
    discriminators return (logits, [feature maps]))."""
    with torch.no_grad():
        out = module(*args)

    def count(o) -> int:
        return sum(count(x) for x in o) if isinstance(o, (tuple, list)) else 1
    return count(out)


def _keep_fp32(factors):
    vals = [np.float32(f) for f in factors]

    def selector(op) -> bool:  # True: run in fp16
        if op.op_type != "mul" or not vals:
            return True
        for v in (op.inputs.get("x"), op.inputs.get("y")):
            if v is not None and v.val is not None and np.size(v.val) == 1 and \
                    any(np.float32(np.asarray(v.val).reshape(-1)[0]) == f for f in vals):
                return False
        return True

    return selector


def op_types(mlmodel) -> set:
    prog = mil_program(mlmodel)
    return {op.op_type for f in prog.functions.values() for op in walk_ops(f)}


def convert(model: torch.nn.Module, example_inputs, *, target=None, convert_to: str = "mlprogram",
            precision: str = "fp32", variable_length=False, fp16_safe=None, mode: Mode | str = Mode.STORE,
            strategy: Strategy | str = Strategy.AUTO, **ct_kwargs):
    """Rewrite ``model`` (no spectral op, no complex tensor), trace it and convert it with coremltools.

    target: 'iOS15'..'iOS18' or a ``ct.target`` (default iOS16 for mlprogram, iOS14 for neuralnetwork).
    precision: 'fp32' or 'fp16' (mlprogram compute precision; neuralnetwork models store fp32).
    variable_length: True makes the last axis of every float input a ``ct.RangeDim`` (1 to max(16 L, 2^21)
    samples; mlprogram needs a finite bound); an int picks another axis, a (lower, upper) tuple the bounds.
    fp16_safe: scale the DFT bases so every intermediate stays in fp16 range for |x| <= 1, compensated
    exactly (default: on for precision='fp16'); what was done is in ``mlmodel.specrewrite_fp16``.
    mode: 'store' or 'on_the_fly' (for 'input', use ``register(mode='input')`` with ``ct.convert``).
    Other keyword arguments go to ``ct.convert``.
    """
    import coremltools as ct

    if convert_to not in ("mlprogram", "neuralnetwork"):
        raise SpecRewriteError(f"convert_to={convert_to!r}", fix="use 'mlprogram' or 'neuralnetwork'")
    if precision not in ("fp32", "fp16"):
        raise SpecRewriteError(f"precision={precision!r}", fix="use 'fp32' or 'fp16'")
    mode = Mode.parse(mode)
    if mode is Mode.INPUT:
        raise SpecRewriteError("convert() supports mode 'store' and 'on_the_fly'",
                               fix="for bases fed as model inputs use `with specrewrite.coreml.register("
                                   "mode='input'): ct.convert(...)` and specrewrite.coreml.basis_inputs()")
    args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    tgt = _target(ct, target, convert_to)
    work = _rewrite(model, args, mode, Strategy.parse(strategy), dynamic=bool(variable_length)).eval()
    fp16 = precision == "fp16" and convert_to == "mlprogram"
    info, factors = [], []
    if fp16 and fp16_safe is not False:
        work, info, factors = _fp16.make_safe(work)
    with torch.no_grad():
        traced = torch.jit.trace(work, args, check_trace=False, strict=False)
    kw = dict(ct_kwargs)
    kw.setdefault("inputs", _ct_inputs(ct, _input_names(model, len(args)), args, variable_length))
    kw.setdefault("skip_model_load", sys.platform != "darwin")
    if convert_to == "mlprogram" and tgt >= ct.target.iOS16:  # keep fp32 I/O (the default would be fp16)
        kw.setdefault("outputs", [ct.TensorType(name=f"output_{i}", dtype=np.float32)
                                  for i in range(_n_outputs(work, args))])
    if convert_to == "mlprogram":
        kw.setdefault("compute_precision", ct.transform.FP16ComputePrecision(op_selector=_keep_fp32(factors))
                      if fp16 else ct.precision.FLOAT32)
    from ._registry import register

    with register(mode=mode, strategy=strategy):  # the numpy-2 / window fixes apply to traced rewrites too
        mlmodel = ct.convert(traced, convert_to=convert_to, minimum_deployment_target=tgt, **kw)
    bad = sorted(t for t in op_types(mlmodel) if any(f in t for f in FORBIDDEN))
    if bad:
        raise SpecRewriteError(f"the converted program still has {bad}",
                               op="specrewrite.coreml.convert", fix="report this as a specrewrite bug")
    mlmodel.specrewrite_fp16 = info
    return mlmodel
