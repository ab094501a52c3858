"""rewrite(model): the graph pass that makes any real audio model free of spectral ops and complex tensors."""
from __future__ import annotations

import contextlib
import logging
import time
import warnings
from typing import Any, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .._copy import copy_model
from ..errors import SpecRewriteError
from ..modes import Mode, Strategy
from .._where import from_guard
from ._branches import branches_agree, off_multiple_capture
from ._data_guards import install as install_value_checks
from ._guards import guards_at_batch_two, install as install_size_checks, size_class
from .dynamic import AxisPlan, accept, describe_guard
from ._user_errors import internal_error, model_raises
from .report import Report
from ._twin import values_read
from .verify import _first_line, _flat, max_rel_err, verify_example, verify_second_shape

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
            verify: bool = True, dynamic_shapes: Any = None, _capture_always: bool = False) -> torch.nn.Module:
    """Return a module computing the same function as ``model`` with no stft / istft / fft op and no complex tensor.

    * ``example_inputs``: a tensor or tuple of positional inputs. Without them only torchaudio transforms are
      swapped (no tracing); where more is needed (direct torch.stft calls, complex outputs) a clear error asks
      for them (``strict=False`` returns the partial result instead).
    * ``mode``: where the DFT bases live: 'store' (constants), 'on_the_fly' (computed in the graph) or 'input'
      (extra model inputs after the original ones; ``result.basis_inputs()`` gives the tensors to feed).
    * ``inplace``: allow changing ``model`` itself (its torchaudio transforms are swapped); never otherwise.
    * ``verify``: run the result on the example inputs and record the error against eager in the report; where
      an axis stays dynamic, also at a second length (and batch size) derived from them. With ``strict=True`` a
      result that is right at the example but wrong at the second shape is a ``SpecRewriteError``.
    * ``dynamic_shapes``: which input axes must stay dynamic, in torch.export's format (a dict keyed by the
      forward's argument names, or a tuple, of ``{axis: Dim}``). Default: every batch axis (axis 0 of inputs of
      rank >= 2, also when the example's batch is 1) and every time axis (the last axis) stays dynamic unless the
      model's code pins it; ``False``: all static. ``report.axes`` says per axis whether it stayed dynamic and,
      if not, why (with ``strict=True`` an axis you asked for explicitly that cannot stay dynamic is an error).

    The result carries ``.specrewrite_report`` (see ``specrewrite.inspect``). (``_capture_always``, for
    ``specrewrite.export``: capture a graph even where nothing spectral is left to lower, so that the guards on the
    input sizes reach the file: an exporter drops torch.export's own check, and a no-spectral model that pads odd
    lengths ran silently wrong from an ONNX file. ``rewrite`` itself hands such a model back unchanged.)
    """
    with warnings.catch_warnings(record=True) as caught, _quiet_torch_logs():
        warnings.simplefilter("always")
        try:
            out = _rewrite(model, example_inputs, mode=mode, strategy=strategy, strict=strict, inplace=inplace,
                           verify=verify, dynamic_shapes=dynamic_shapes, capture_always=_capture_always)
        except SpecRewriteError:
            raise
        except Exception as e:  # noqa: BLE001 - anything else escaping is a bug of ours: said so
            raise internal_error(e) from e
    report = getattr(out, "specrewrite_report", None)
    if report is not None and caught:   # torch / tracing warnings the user cannot act on: in the report
        seen = []
        for w in caught:
            if issubclass(w.category, ResourceWarning):   # torch.export's draft report files: not the user's
                continue
            msg = f"{w.category.__name__}: {str(w.message).strip().splitlines()[0][:160]}"
            if msg not in seen:
                seen.append(msg)
        report.notes += [f"warning during the rewrite: {m}" for m in seen[:5]]
    return out


@contextlib.contextmanager
def _quiet_torch_logs():
    """torch.export / symbolic-shape log lines (e.g. 'dimension ... specialized') are about our own capture, not
    something the user can act on: keep them off the console while rewriting. That includes the error lines a
    failed capture logs (fake_tensor's "propagate_real_tensors ..." with a stack): each failure is an exception
    that the capture handles or reports."""
    names = ("torch._export", "torch.export", "torch.fx", "torch._dynamo", "torch._subclasses", "torch._functorch")
    loggers = [logging.getLogger(n) for n in names]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, saved):
            lg.setLevel(lvl)


def _rewrite(model, example_inputs, *, mode, strategy, strict, inplace, verify, dynamic_shapes, capture_always):
    from .lower import Lowering, NeedsStaticShapes
    from .swap import forward_mentions_spectral_ops, swap_torchaudio

    t0 = time.perf_counter()
    if not isinstance(model, torch.nn.Module):
        raise SpecRewriteError(f"rewrite() needs an nn.Module, got {type(model).__name__}",
                               fix="wrap the function in an nn.Module")
    _refuse_scripted(model)
    mode, strategy = Mode.parse(mode), Strategy.parse(strategy)
    args = _as_args(example_inputs)
    # every run specrewrite makes uses copies: a model that writes into its input never changes the caller's
    args = None if args is None else _clones(args)
    report = Report()
    work = model if inplace else copy_model(model)

    if args is None:
        work, left = swap_torchaudio(work, mode, strategy, report, allow_complex_out=False)
        mentions = forward_mentions_spectral_ops(work)
        report.capture = "module swap (no example inputs, no tracing)"
        if left or mentions:
            what = [f"torchaudio Spectrogram(power=None) '{n}' (complex output)" for n in left] + mentions
            msg = ("spectral ops outside torchaudio transforms need example inputs to be rewritten (they are "
                   "found by tracing):\n  - " + "\n  - ".join(what))
            if strict:
                raise SpecRewriteError(msg, op="rewrite", fix="pass example_inputs, e.g. rewrite(model, (x,))")
            report.notes.append(msg + " (left unchanged)")
        report.seconds = time.perf_counter() - t0
        _persist_helper_buffers(work)
        _attach(work, report)
        return work

    from .swap import has_torchaudio_transforms

    spy = _SpectralSpy()
    swaps = has_torchaudio_transforms(work)
    try:  # one eager run when there is nothing to swap: the reference and the spectral check at once
        with torch.no_grad(), (spy if not swaps else contextlib.nullcontext()):
            ref = work(*_clones(args))
    except Exception as e:  # noqa: BLE001 - user model errors become one clear error
        raise model_raises(e) from e
    _refuse_fake_outputs(ref)
    if work.training:
        _refuse_train_mode(work, args, ref)

    swapped_out = ref
    if swaps:
        work, _ = swap_torchaudio(work, mode, strategy, report, allow_complex_out=True)
        with torch.no_grad(), spy:
            swapped_out = work(*_clones(args))
    if spy.seen is None and not capture_always:   # nothing spectral after the swap: no capture needed
        report.capture = "module swap only (an eager run saw no other spectral op or complex tensor)"
        if verify and not inplace:   # judged like any rewrite (the user's model is the eager reference)
            verify_example(model, work, args, {}, ref, report, strict)
        elif verify:
            report.max_rel_err = max_rel_err(swapped_out, ref)
        report.seconds = time.perf_counter() - t0
        _persist_helper_buffers(work)
        _attach(work, report)
        return work
    plan = AxisPlan(work, args, dynamic_shapes)
    gm, sites, attr_map = _capture(work, plan, strict, report)
    n_swapped = len(report.entries)
    for _ in range(8):
        try:
            low = Lowering(gm, mode=mode, strategy=strategy, report=report, sites=sites.sites,
                           attr_placeholders=attr_map, input_names=plan.names)
            out = low.run()
            if plan.batch_expanded and plan.batch_one_guards:
                guards_at_batch_two(out, plan.batch_one_guards)
            if not plan.batch_expanded or _same_at_example(work, out, args, swapped_out):
                break
            # captured at batch 2 for a batch of 1: at 1 the graph takes another path (a squeeze of the batch
            # axis, say) than the one captured, so one graph cannot hold both
            report.forget_lowering(n_swapped)
            plan.without_batch_expansion("at a batch of 1 the model's code takes another path than at 2 (such as "
                                         "a squeeze of the batch axis), which one graph cannot hold")
            gm, sites, attr_map = _capture(work, plan, strict, report)
        except NeedsStaticShapes as e:
            report.forget_lowering(n_swapped)
            axes = (plan.axes_behind(gm, e.symbols) or [ax for ax in plan.axes if ax.dynamic and ax.role == "time"]
                    or [ax for ax in plan.axes if ax.dynamic])
            for ax in axes:
                if ax.explicit:
                    _refuse_explicit(plan, strict, str(e), only=ax)
                plan.fix(ax, str(e))
            gm, sites, attr_map = _capture(work, plan, strict, report)
    else:
        raise SpecRewriteError("the rewrite kept needing static shapes", op="rewrite",
                               fix="pass dynamic_shapes=False, and report this model as a specrewrite bug")
    if out is not work:
        install_size_checks(out, [c for c in plan.size_classes
                                  if any(ax.dynamic and (plan.names.index(ax.input), ax.axis) == (c.index, c.axis)
                                         for ax in plan.axes)],
                            ranges=plan.ranges(), erase=plan.remainder_guards(gm))
        fixed_values = install_value_checks(out)
        if fixed_values:
            shown = [t for t in fixed_values if t.startswith("Eq(")] or fixed_values
            report.notes.append(f"values the model's Python reads from input tensors are fixed to the example's "
                                f"({'; '.join(shown[:3])}{' ...' if len(shown) > 3 else ''}): other values are "
                                "an error in eager and give nan from an exported file")
    report.axes = plan.report()
    report.shapes_specialised = not any(ax.dynamic for ax in plan.axes)
    if len(report.entries) == n_swapped and not report.complex_ops and not report.folded and not (
            capture_always and report.capture.startswith("torch.export")):
        out = work  # nothing spectral in the graph: hand back the (swapped) copy, not a re-traced graph
    else:
        out.train(model.training)
    # (a swapped torchaudio module has basis_inputs in every mode: only in 'input' mode are they inputs)
    feeds = out.basis_inputs() if hasattr(out, "basis_inputs") and Mode.parse(mode) is Mode.INPUT else {}
    if feeds:
        report.notes.append("input mode: feed the DFT bases after the model inputs, in this order: "
                            + ", ".join(feeds) + " (values from result.basis_inputs())")
    explain = None
    if out is not work:
        from ._diverge import first_divergence

        # run on a failure only, at the inputs that failed
        explain = lambda at: first_divergence(gm, low, out, at, feeds)  # noqa: E731
    if verify and verify_example(work, out, args, feeds, ref, report, strict, explain):
        verify_second_shape(work, out, plan.second_inputs(), feeds, report, strict, explain)
    report.seconds = time.perf_counter() - t0
    _persist_helper_buffers(out)
    _attach(out, report)
    return out


def _persist_helper_buffers(module) -> None:
    """specrewrite's modules keep small helper tensors (phase splits, masks) as non-persistent buffers;
    ExecuTorch's verifier rejects a program whose state dict holds one ('Non-persistent buffer ... is in the
    state dict'), so in a rewritten model they are ordinary buffers."""
    for m in module.modules():
        if not type(m).__module__.startswith("specrewrite."):
            continue
        keep = set(m.state_dict(keep_vars=True))
        for name, buf in list(m.named_buffers(recurse=False)):
            if name not in keep:
                delattr(m, name)
                m.register_buffer(name, buf, persistent=True)


def _capture(work, plan: AxisPlan, strict: bool, report: Report, generalise: bool = True):
    """torch.export with the plan's dynamic axes (re-captured with an axis fixed where the capture pins it to
    the example's size), else tracing with the example inputs, generalised from traces at three sizes where it
    can be (``_multi_trace``). Returns (gm, sites, attr_map)."""
    from . import capture as cap

    draft, sym_len, branch_tried, pad_multiple = False, True, False, True
    captures = cap.Captures(work)
    for _ in range(12):
        try:
            gm, sites = captures(plan.capture_args, plan.spec, draft=draft, sym_len=sym_len,
                                 pad_multiple=pad_multiple, watch=plan.expanded_batch_axes())
        except SpecRewriteError:
            raise
        except Exception as e:  # noqa: BLE001 - each failure has a fallback below
            fixed = _size_fixed(e)
            if fixed is not None:   # the batch captured at 2 for an example of 1 became a constant: stopped there
                why = "the capture fixed the batch size (the model's code uses its value" + (
                    f" at {fixed.where})" if fixed.where else ")")
                for ax in plan.axes:
                    if ax.explicit and (ax.input, ax.axis) == (fixed.name, fixed.axis):
                        _refuse_explicit(plan, strict, f"input '{ax.input}' axis {ax.axis}: {why}", only=ax)
                plan.without_batch_expansion(why)
                continue
            if sym_len and not _data_dependent(e) and not _is_constraint_violation(e):
                sym_len = False   # code that needs len() to be an int: captured again with Python's own len
                continue
            if _is_constraint_violation(e) and any(ax.explicit for ax in plan.axes):
                _refuse_explicit(plan, strict, str(e))
                plan.relax_explicit()
                continue
            if not draft and _data_dependent(e):
                draft = True   # the same shapes, with the example's data-dependent values checked at run time
                continue
            if plan.batch_expanded and not (draft and _data_dependent(e)):
                # the model may not take a batch of 2: keep the example's batch of 1 (a data-dependent failure of
                # the draft capture is about values, not the batch size: no second draft attempt, which costs as much
                # as the first)
                # (the reason is tentative: if batch 1 fails the same way, the real reason is given below)
                plan.without_batch_expansion(f"the model fails at batch 2 ({_first_line(e)})", tentative=True)
                continue   # in draft mode still, when plain export failed on data-dependent Python
            gm, sites, attr_map = cap.via_trace(work, _clones(plan.args))
            report.capture = "trace with the example inputs (make_fx)"
            _values_baked(work, plan.args, gm, e, report, strict)
            if generalise:
                found, why_not = _generalised(work, plan, gm, attr_map, sites, e, strict, report)
                if found is not None:
                    return found
            why = (f"torch.export could not capture the model ({_first_line(e)}); traced with the example "
                   "inputs instead" + (f"; the traces at other sizes could not be generalised: {why_not}"
                                       if generalise and why_not else ""))
            _refuse_explicit(plan, strict, why)
            plan.all_static(why)
            plan.judge(gm)
            report.notes.append(why + ", so every shape is fixed to the example's")
            return gm, sites, attr_map
        capture = "torch.export" + (" (reading values: values the model's Python reads from tensors are fixed to "
                                     "the example's and checked at run time)" if draft else "")
        if pad_multiple and not branches_agree(work, plan, gm):
            pad_multiple = False   # a guard that steers more than a pad: the graph holds a class of sizes
            continue
        pinned = plan.judge(gm)
        if pinned and pad_multiple and not branch_tried:
            branch_tried = True
            gm, sites, pinned = off_multiple_capture(work, plan, gm, sites, pinned, draft, sym_len, captures)
        for ax in plan.axes:   # an axis asked for explicitly that the capture made a constant
            if ax.explicit and ax.requested and not ax.dynamic:
                _refuse_explicit(plan, strict, f"input '{ax.input}' axis {ax.axis}: {ax.why}", only=ax)
        refix = False
        if plan.batch_expanded and plan.expanded_axis_fixed():
            # captured again at batch 1, with the pinned axes below fixed in the same pass (each capture of a
            # large model costs seconds); draft mode stays as it was
            plan.without_batch_expansion("the capture fixed the batch size (the model's code uses its value)")
            pinned = [p for p in pinned if p[0].role != "batch"]
            refix = True
        if not pinned and not refix:
            report.capture = capture
            return gm, sites, None
        for _ in range(16):   # after accepting a guard, the same graph is judged again for the next one
            accepted = False
            for ax, guard, size in pinned:
                if ax.role == "batch" and plan.batch_expanded and size == ax.size == 1:
                    # captured at batch 2 for an example of 1, a guard that fails only at 1 (sympy cannot prove
                    # Mod(F, B*F) != 0 for B >= 2 with a symbolic F): the graph is run at batch 1 against eager
                    # before it is kept (_same_at_example), and it is the same graph an exporter writes
                    plan.accept(ax, guard, "")
                    plan.batch_one_guards.add(plan.names.index(ax.input))
                    accepted = True
                    continue
                cls = size_class(guard.expr, plan.names.index(ax.input), ax.axis, from_guard(guard), ax.input,
                                 int(plan.capture_args[plan.names.index(ax.input)].shape[ax.axis]))
                if cls is not None and cls.lower_only and not any(
                        _eager_runs(work, plan.inputs_at(ax, n)) for n in _below(cls.lower_only)):
                    # a lower bound the model's own code has too (a reflect pad wider than the clip): a range
                    plan.accept(ax, guard, "")
                    plan.raise_lower(ax, cls.lower_only)
                    accepted = True
                    continue
                if cls is not None:   # right for a residue class of sizes: kept dynamic, checked at run time
                    plan.keep_for_class(ax, cls)   # (first: the check costs nothing where eager fails too)
                    accepted = True
                    continue
                if not _eager_runs(work, plan.inputs_at(ax, size)):
                    plan.accept(ax, guard, accept(ax, guard, size, plan.sources))   # the model's own code restricts it alike
                    accepted = True
                    continue
                why = describe_guard(guard, size, plan.sources)
                if plan.back_to_example():   # pinned in the capture moved off the example's size: the
                    refix = True             # example's own capture is judged instead
                    break
                if ax.explicit:
                    _refuse_explicit(plan, strict, f"input '{ax.input}' axis {ax.axis}: {why}", only=ax)
                plan.fix(ax, why)
                refix = True
            if refix or not accepted:
                break
            pinned = plan.judge(gm)
            if not pinned:
                break
        else:   # guard after guard accepted and more left: the axes they restrict are fixed instead
            refix = plan.back_to_example()   # (a capture moved off the example's size: the example's instead)
            for ax, guard, size in pinned if not refix else ():
                plan.fix(ax, "the capture's guards on this axis kept restricting it ("
                         + describe_guard(guard, size, plan.sources)
                         + ")")
                refix = True
        if not refix:
            report.capture = capture
            return gm, sites, None
    raise SpecRewriteError("the capture kept pinning input axes to the example's sizes", op="rewrite",
                           fix="pass dynamic_shapes=False (or report this model as a specrewrite bug)")


def _clones(inputs):
    return tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in inputs)


def _refuse_fake_outputs(ref) -> None:
    """An eager run that returns torch.export's fake tensors: a value the model caches across calls was filled
    during an earlier export (whisper's ``mel_filters`` is an ``lru_cache``), so eager itself is broken now."""
    if any(type(t).__name__ == "FakeTensor" for t in _flat(ref)):
        raise SpecRewriteError("the model's eager forward returns fake tensors (no data): a value it caches between "
                               "calls, such as an functools.lru_cache'd filterbank, was created during an earlier "
                               "torch.export / torch.onnx.export in this process", op="rewrite",
                               fix="clear that cache (e.g. whisper.audio.mel_filters.cache_clear()) or call "
                               "rewrite() before exporting the original model")


def _refuse_train_mode(work, args, ref) -> None:
    """A model in train() mode: one graph holds one mode, so a model whose output depends on the mode (dropout,
    batch norm's batch statistics, random augmentation, ``if self.training``) is refused with the fix; one that
    computes the same in both modes is rewritten as it is."""
    flags = {m: m.training for m in work.modules()}   # submodules the user set to eval stay so
    try:
        work.eval()
        with torch.no_grad():
            ev = work(*_clones(args))
    except Exception:  # noqa: BLE001 - fails in eval mode: the mode matters
        ev = None
    finally:
        for m, flag in flags.items():
            m.training = flag
    if ev is not None and max_rel_err(ev, ref) <= 1e-6:
        return
    kinds = sorted({type(m).__name__ for m in work.modules() if isinstance(m, _MODE_DEPENDENT)})
    what = f" ({', '.join(kinds)})" if kinds else ""
    raise SpecRewriteError(f"the model is in training mode and computes differently there than in eval mode{what}; "
                           "a rewritten graph holds one mode, and baking training-mode behaviour (such as dropout) "
                           "into it would be wrong after .eval()", op="rewrite",
                           fix="call model.eval() before rewrite() (deployment graphs are inference graphs)")


_MODE_DEPENDENT = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm,
                   torch.nn.modules.instancenorm._InstanceNorm, torch.nn.RReLU)


def _same_at_example(work, out, args, expect) -> bool:
    """The graph captured at batch 2 gives eager's output at the example's batch of 1 (judged as verification
    judges: an ill-conditioned output against float64 eager next to eager float32's own error, not a flat
    1e-4, which called torchaudio's TimeStretch -> InverseSpectrogram "another path at batch 1")."""
    from .verify import judge

    feeds = out.basis_inputs() if hasattr(out, "basis_inputs") else {}
    try:
        with torch.no_grad():
            got = out(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args], *feeds.values())
    except Exception:  # noqa: BLE001 - a guard or a shape error at batch 1
        return False
    try:
        return judge(work, args, got, expect)[0]
    except Exception:  # noqa: BLE001 - outputs that cannot be paired (another count or shape): another path
        return False


def _below(lo: int) -> list:
    """Sizes under a lower bound where the model's own code is tried (it may take multiples of a block only)."""
    return sorted({n for n in (lo - 1, lo - 2, (3 * lo) // 4, lo // 2, lo // 4) if n >= 1}, reverse=True)


def _eager_runs(work, inputs) -> bool:
    try:
        with torch.no_grad():
            work(*[a.clone() if isinstance(a, torch.Tensor) else a for a in inputs])
        return True
    except Exception:  # noqa: BLE001 - the model's own code rejects the shape
        return False


def _size_fixed(e: BaseException):
    """The ``SizeFixed`` that stopped a capture, also when torch.export wrapped it in its own error."""
    from .._torch_private import SizeFixed

    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, SizeFixed):
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def _data_dependent(e: BaseException) -> bool:
    return "data-dependent" in str(e) or "DataDependent" in type(e).__name__


def _is_constraint_violation(e: BaseException) -> bool:
    return "Constraints violated" in str(e) or type(e).__name__ in ("ConstraintViolationError", "UserError")


def _generalised(work, plan: AxisPlan, gm, attr_map, sites, e, strict: bool, report: Report):
    """((gm, sites, None), '') for a traced model whose sizes ``_multi_trace`` made symbolic, captured by
    torch.export with its axes dynamic; (None, why not) otherwise."""
    from .capture import via_trace
    from ._multi_trace import generalise
    from .verify import judge

    plan.retry_tentative()   # a batch of 2 that failed for the reason the trace was needed is tried again
    gen, kept = generalise(work, plan, gm, attr_map, via_trace, judge)
    if gen is None:
        return None, kept
    for ax, why in kept:   # the model cannot be traced at another batch: that axis stays fixed
        plan.fix(ax, why)
    notes = len(report.notes)
    gm2, _, attrs = _capture(gen, plan, strict, report, generalise=False)
    if attrs is not None:   # torch.export failed on the generalised graph too: the example's trace stands
        del report.notes[notes:]
        return None, "torch.export could not capture the graph made from three sizes"
    report.capture = "traces at three sizes made symbolic, then " + report.capture
    note = (f"torch.export could not capture the model ({_first_line(e)}); it was traced at three sizes instead, "
            "and the numbers that change with the size were made sizes of the graph's tensors (checked against "
            "eager at a fourth size)")
    if note not in report.notes:   # (captured again when the lowering fixes an axis)
        report.notes.append(note)
    return (gm2, sites, None), ""


def _values_baked(work, args, gm, e, report, strict: bool) -> None:
    """A traced graph that holds the example's input values (``_twin``) is wrong for every other clip, though
    right at the example where verification runs: an error under strict, else a note."""
    from .capture import via_trace

    where = values_read(via_trace, work, _clones(args), gm)
    if where is None:
        return
    why = (f"torch.export could not capture the model ({_first_line(e)}), and its trace depends on the example's "
           "values: the model's code reads values of its inputs into Python (numpy, .item(), .tolist(), a branch "
           "on a value), so the traced graph holds the example's values and is wrong for other inputs")
    fix = ("compute those values with torch ops on tensors (torch.export then captures the model), or pass them "
           "as inputs; strict=False returns the graph traced at the example's values")
    if strict:
        raise SpecRewriteError(why, op="rewrite", where=where or None, fix=fix)
    report.notes.append(why + (f" (at {where})" if where else ""))


def _refuse_explicit(plan: AxisPlan, strict: bool, why: str, only=None) -> None:
    """With strict=True, an axis the user asked to keep dynamic that cannot stay so is an error."""
    asked = [ax for ax in plan.axes if ax.explicit and (only is None or ax is only)]
    if strict and asked:
        names = ", ".join(f"input '{ax.input}' axis {ax.axis}" for ax in asked)
        raise SpecRewriteError(f"dynamic_shapes asks for {names} to stay dynamic, but it cannot: {why}",
                               op="rewrite", fix="drop that axis from dynamic_shapes (it is then fixed to the "
                               "example's size), or pass strict=False to get a graph with it fixed")


def _attach(module, report):
    try:
        object.__setattr__(module, "specrewrite_report", report)
    except Exception:  # noqa: BLE001
        pass


def inspect(model: torch.nn.Module, example_inputs: Any = None, **kwargs) -> Report:
    """The report of what ``rewrite`` finds and does, without keeping the rewritten model."""
    kwargs.setdefault("strict", False)
    return rewrite(model, example_inputs, **kwargs).specrewrite_report
