"""rewrite(model): the graph pass that makes any real audio model free of spectral ops and complex tensors."""
from __future__ import annotations

import contextlib
import copy
import logging
import time
import warnings
from typing import Any, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..errors import SpecRewriteError
from ..modes import Mode, Strategy
from .report import Report

__all__ = ["rewrite", "inspect", "Report"]


def _as_args(example_inputs) -> Optional[tuple]:
    if example_inputs is None:
        return None
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (list, tuple)):
        return tuple(example_inputs)
    raise SpecRewriteError(f"example_inputs must be a tensor or a tuple of inputs, got {type(example_inputs).__name__}",
                           fix="pass example_inputs=(x,) or (x, y)")


def _flat(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat(o)]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _flat(out[k])]
    return []


def max_rel_err(got, ref) -> float:
    a, b = _flat(got), _flat(ref)
    if len(a) != len(b):
        return float("inf")
    worst = 0.0
    for x, y in zip(a, b):
        x = torch.view_as_real(x.resolve_conj()) if x.is_complex() else x
        y = torch.view_as_real(y.resolve_conj()) if y.is_complex() else y
        if x.shape != y.shape:
            return float("inf")
        x, y = x.detach().double(), y.detach().double()
        peak = max(float(y.abs().max()) if y.numel() else 0.0, 1e-12)
        worst = max(worst, float((x - y).abs().max()) / peak if y.numel() else 0.0)
    return worst


# what reaches the dispatcher: stft / istft / torch.fft.* are composite and arrive as the _fft_* kernels
_SPECTRAL_ATEN = ("_fft_r2c", "_fft_c2r", "_fft_c2c", "fft_fftfreq", "fft_rfftfreq", "hann_window",
                  "hamming_window", "blackman_window", "bartlett_window", "kaiser_window")


class _SpectralSpy(TorchDispatchMode):
    """Notes whether an eager run executes a spectral ATen op or makes a complex tensor (then a capture is
    needed). It watches the ATen ops that actually run, so any spelling (torch.fft.*, Tensor methods, library
    wrappers, real-input irfft) is seen."""

    def __init__(self):
        super().__init__()
        self.seen = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.seen is None:
            name = getattr(func, "_opname", "") or getattr(func, "__name__", "")
            if name in _SPECTRAL_ATEN or any(isinstance(t, torch.Tensor) and t.is_complex() for t in _flat(out)):
                self.seen = f"aten.{name}"
        return out


def _refuse_scripted(model):
    for name, m in model.named_modules():
        if isinstance(m, (torch.jit.ScriptModule, torch.jit.ScriptFunction)):
            what = "the model" if not name else f"submodule '{name}'"
            raise SpecRewriteError(f"{what} is a TorchScript module ({type(m).__name__}); its FFTs cannot be "
                                   "rewritten from the compiled graph", op="rewrite",
                                   fix="pass the eager nn.Module (before torch.jit.script / torch.jit.trace)")


def rewrite(model: torch.nn.Module, example_inputs: Any = None, *, mode: Mode | str = Mode.STORE,
            strategy: Strategy | str = Strategy.AUTO, strict: bool = True, inplace: bool = False,
            verify: bool = True) -> torch.nn.Module:
    """Return a module computing the same function as ``model`` with no stft / istft / fft op and no complex tensor.

    * ``example_inputs``: a tensor or tuple of positional inputs. Without them only torchaudio transforms are
      swapped (no tracing); where more is needed (direct torch.stft calls, complex outputs) a clear error asks
      for them (``strict=False`` returns the partial result instead).
    * ``mode``: where the DFT bases live: 'store' (constants), 'on_the_fly' (computed in the graph) or 'input'
      (extra model inputs after the original ones; ``result.basis_inputs()`` gives the tensors to feed).
    * ``inplace``: allow changing ``model`` itself (its torchaudio transforms are swapped); never otherwise.
    * ``verify``: run the result on the example inputs and record the error against eager in the report.

    The result carries ``.specrewrite_report`` (see ``specrewrite.inspect``).
    """
    with warnings.catch_warnings(record=True) as caught, _quiet_torch_logs():
        warnings.simplefilter("always")
        out = _rewrite(model, example_inputs, mode=mode, strategy=strategy, strict=strict, inplace=inplace,
                       verify=verify)
    report = getattr(out, "specrewrite_report", None)
    if report is not None and caught:   # torch / tracing warnings the user cannot act on: in the report
        seen = []
        for w in caught:
            msg = f"{w.category.__name__}: {str(w.message).strip().splitlines()[0][:160]}"
            if msg not in seen:
                seen.append(msg)
        report.notes += [f"warning during the rewrite: {m}" for m in seen[:5]]
    return out


@contextlib.contextmanager
def _quiet_torch_logs():
    """torch.export / symbolic-shape log lines (e.g. 'dimension ... specialized') are about our own capture, not
    something the user can act on: keep them off the console while rewriting."""
    names = ("torch._export", "torch.export", "torch.fx", "torch._dynamo", "torch._subclasses", "torch._functorch")
    loggers = [logging.getLogger(n) for n in names]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, saved):
            lg.setLevel(lvl)


def _rewrite(model, example_inputs, *, mode, strategy, strict, inplace, verify):
    from .lower import Lowering, NeedsStaticShapes
    from .swap import forward_mentions_spectral_ops, swap_torchaudio
    from . import capture as cap

    t0 = time.perf_counter()
    if not isinstance(model, torch.nn.Module):
        raise SpecRewriteError(f"rewrite() needs an nn.Module, got {type(model).__name__}",
                               fix="wrap the function in an nn.Module")
    _refuse_scripted(model)
    mode, strategy = Mode.parse(mode), Strategy.parse(strategy)
    args = _as_args(example_inputs)
    report = Report()
    work = model if inplace else copy.deepcopy(model)

    if args is None:
        work, left = swap_torchaudio(work, mode, strategy, report, allow_complex_out=False)
        mentions = forward_mentions_spectral_ops(work)
        report.capture = "module swap (no example inputs, no tracing)"
        if left or mentions:
            what = [f"torchaudio Spectrogram(power=None) '{n}' (complex output)" for n in left] + mentions
            msg = ("spectral ops outside torchaudio transforms need tracing to rewrite: " + "; ".join(what))
            if strict:
                raise SpecRewriteError(msg, op="rewrite", fix="pass example_inputs, e.g. rewrite(model, (x,))")
            report.notes.append(msg + " (left unchanged)")
        report.seconds = time.perf_counter() - t0
        _attach(work, report)
        return work

    from .swap import has_torchaudio_transforms

    spy = _SpectralSpy()
    swaps = has_torchaudio_transforms(work)
    try:  # one eager run when there is nothing to swap: the reference and the spectral check at once
        with torch.no_grad(), (spy if not swaps else contextlib.nullcontext()):
            ref = work(*args)
    except Exception as e:  # noqa: BLE001 - user model errors become one clear error
        raise SpecRewriteError(f"the model raises on the example inputs: {type(e).__name__}: {e}", op="rewrite",
                               fix="pass example inputs the model accepts (shapes, dtypes, number of inputs)") from e

    swapped_out = ref
    if swaps:
        work, _ = swap_torchaudio(work, mode, strategy, report, allow_complex_out=True)
        with torch.no_grad(), spy:
            swapped_out = work(*args)
    if spy.seen is None:  # nothing spectral left after the module swap: no capture needed
        report.capture = "module swap only (an eager run saw no other spectral op or complex tensor)"
        if verify:
            report.max_rel_err = max_rel_err(swapped_out, ref)
        report.seconds = time.perf_counter() - t0
        _attach(work, report)
        return work
    attr_map = None
    try:
        gm, sites = cap.via_export(work, args)
        report.capture = "torch.export (dynamic shapes kept where the model allows)"
        static = _static_input_dims(gm, args)
        if static:
            report.shapes_specialised = True
            report.notes.append("torch.export fixed these input sizes to the example's: " + ", ".join(static))
    except SpecRewriteError:
        raise
    except Exception as e:  # noqa: BLE001 - fall back to tracing with the real inputs
        first = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        gm, sites, attr_map = cap.via_trace(work, args)
        report.capture = "trace with the example inputs (make_fx)"
        report.shapes_specialised = True
        report.notes.append(f"torch.export could not capture the model ({first}); traced instead, so shapes are "
                            "specialised to the example inputs")
    n_swapped = len(report.entries)
    try:
        out = Lowering(gm, mode=mode, strategy=strategy, report=report, sites=sites.sites,
                       attr_placeholders=attr_map).run()
    except NeedsStaticShapes as e:
        del report.entries[n_swapped:]
        report.complex_ops.clear()
        gm, sites = cap.via_export(work, args, dynamic=False)
        report.capture = "torch.export with the example shapes"
        report.shapes_specialised = True
        report.notes.append(f"{e}: shapes specialised to the example inputs")
        out = Lowering(gm, mode=mode, strategy=strategy, report=report, sites=sites.sites).run()
    if len(report.entries) == n_swapped and not report.complex_ops and not report.folded:
        out = work  # nothing spectral in the graph: hand back the (swapped) copy, not a re-traced graph
    else:
        out.train(model.training)
    feeds = out.basis_inputs() if hasattr(out, "basis_inputs") else {}
    if feeds:
        report.notes.append("input mode: feed the DFT bases after the model inputs, in this order: "
                            + ", ".join(feeds) + " (values from result.basis_inputs())")
    if verify:
        with torch.no_grad():
            got = out(*args, *feeds.values())
        report.max_rel_err = max_rel_err(got, ref)
        if report.max_rel_err > 1e-3:
            report.notes.append("the rewritten model differs from eager on the example inputs by more than 1e-3 "
                                "of the peak: the model may be random (dropout in train mode, torch.rand) or this is "
                                "a specrewrite bug worth reporting")
    report.seconds = time.perf_counter() - t0
    _attach(out, report)
    return out


def _static_input_dims(gm, args):
    """'input i dim d = n' for every input dimension (size > 1) that the capture made static."""
    out = []
    phs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for i, (ph, a) in enumerate(zip(phs, args)):
        v = ph.meta.get("val")
        if not isinstance(a, torch.Tensor) or not isinstance(v, torch.Tensor):
            continue
        for d, size in enumerate(v.shape):
            fixed = isinstance(size, int)
            if not fixed:
                try:  # a symbol the export later pinned to one value (a guard such as s0 == 4000)
                    node = size.node
                    rng = node.shape_env.bound_sympy(node.shape_env.simplify(node.expr))
                    fixed = rng.lower == rng.upper
                except Exception:  # noqa: BLE001 - best effort, only for the report
                    fixed = False
            if fixed and a.shape[d] > 1:
                out.append(f"input {i} dim {d} = {a.shape[d]}")
    return out


def _attach(module, report):
    try:
        object.__setattr__(module, "specrewrite_report", report)
    except Exception:  # noqa: BLE001
        pass


def inspect(model: torch.nn.Module, example_inputs: Any = None, **kwargs) -> Report:
    """The report of what ``rewrite`` finds and does, without keeping the rewritten model."""
    kwargs.setdefault("strict", False)
    return rewrite(model, example_inputs, **kwargs).specrewrite_report
