"""Verification of a rewritten model against eager: at the example inputs and, where an axis stayed dynamic, at
a second shape. An error above ``TOL`` of the output peak is judged against float64 eager next to eager
float32's own error there (an ill-conditioned model, such as phase accumulated over near-zero bins, is as
far from float64 in eager float32 as in the rewrite), and a model whose eager output is random (dropout in
train mode, torch.rand) is told apart by running eager twice."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .._copy import copy_model
from ..errors import SpecRewriteError

TOL = 1e-5          # of the output peak: above it, the error is judged against float64 eager (float32's level)
RANDOM_TOL = 1e-4   # two eager runs further apart than this: the model is random (dropout, torch.rand)
PLAIN_TOL = 1e-3    # when the model has no float64 form to judge against
EAGER_FACTOR = 4.0  # the rewrite may be this many times as far from float64 as eager float32 is (max error)
RMS_FACTOR = 8.0    # ... or, for an ill-conditioned output whose max error is a heavy tail, this many (rms error)


def _flat(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat(o)]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _flat(out[k])]
    return []


def _paired(got, ref):
    """(x, y) float64 tensor pairs of the outputs (complex as (re, im) pairs), or None on a count / shape
    mismatch."""
    a, b = _flat(got), _flat(ref)
    if len(a) != len(b):
        return None
    out = []
    for x, y in zip(a, b):
        x = torch.view_as_real(x.resolve_conj()) if x.is_complex() else x
        y = torch.view_as_real(y.resolve_conj()) if y.is_complex() else y
        if x.shape != y.shape:
            return None
        out.append((x.detach().double(), y.detach().double()))
    return out


def _finite_part(x, y):
    """(x, y) at the positions where eager's value is finite, or None when the two differ in where they are NaN
    or infinite (or in the sign of an infinity): a NaN where eager is finite is never a small error."""
    fx, fy = torch.isfinite(x), torch.isfinite(y)
    if not bool(torch.equal(fx, fy)) or not bool(torch.equal(x.isnan(), y.isnan())):
        return None
    inf = ~fy & ~y.isnan()
    if bool(inf.any()) and not bool(torch.equal(x[inf], y[inf])):
        return None
    return x[fy], y[fy]


def _rel_err(got, ref, norm) -> float:
    """max over outputs of norm(got - ref) / max|ref|, over eager's finite values (complex outputs as (re, im)
    pairs); inf on a shape or count mismatch, or where NaN / inf positions differ."""
    pairs = _paired(got, ref)
    if pairs is None:
        return float("inf")
    worst = 0.0
    for x, y in pairs:
        part = _finite_part(x, y)
        if part is None:
            return float("inf")
        x, y = part
        if y.numel():
            err = norm(x - y) / max(float(y.abs().max()), 1e-12)
            worst = max(worst, err if err == err else float("inf"))
    return worst


def max_rel_err(got, ref) -> float:
    """max|got - ref| / max|ref| (the worst output)."""
    return _rel_err(got, ref, lambda d: float(d.abs().max()))


def rms_rel_err(got, ref) -> float:
    """rms(got - ref) / max|ref| (the worst output)."""
    return _rel_err(got, ref, lambda d: float(d.pow(2).mean().sqrt()))


def _clones(inputs):
    return tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in inputs)


def judge(work, inputs, got, ref) -> Tuple[bool, float, str]:
    """(ok, error, detail) of ``got`` against eager ``ref`` at ``inputs``."""
    err = max_rel_err(got, ref)
    if err <= TOL:
        return True, err, ""
    try:   # two fresh runs: comparing one with ``ref`` would call a model whose state moved since "random"
        with torch.no_grad():
            again, third = work(*_clones(inputs)), work(*_clones(inputs))
    except Exception:  # noqa: BLE001
        again = third = ref
    if max_rel_err(again, third) > RANDOM_TOL:
        return True, err, "eager itself is random (it differs between two runs on the same inputs)"
    try:
        m64 = copy_model(work).double()
        a64 = tuple(a.double() if isinstance(a, torch.Tensor) and a.is_floating_point() else
                    a.to(torch.complex128) if isinstance(a, torch.Tensor) and a.is_complex() else a for a in inputs)
        with torch.no_grad():
            ref64 = m64(*a64)
    except Exception:  # noqa: BLE001 - no float64 form of the model: the plain criterion stands
        return err <= PLAIN_TOL, err, f"no float64 form of the model to judge against; {PLAIN_TOL:.0e} allowed"
    against = "float64 eager"
    if _not_float64(ref64, ref):
        # the model casts to float32 inside forward (audiotools' AudioSignal turns float64 audio into float32):
        # its ``.double()`` form is float32 again. The reference is then eager with every spectral op in
        # float64 (the rest of the model as it computes): both float32 computations are judged against it.
        try:
            with torch.no_grad(), _SpectralInFloat64():
                ref64 = work(*_clones(inputs))
        except Exception:  # noqa: BLE001
            return err <= PLAIN_TOL, err, f"no float64 form of the model to judge against; {PLAIN_TOL:.0e} allowed"
        against = "eager with its spectral ops in float64 (the model casts to float32 in forward)"
    err64, eager64 = max_rel_err(got, ref64), max_rel_err(ref, ref64)
    detail = f"against {against}: {err64:.2e} (eager float32: {eager64:.2e})"
    if err64 <= EAGER_FACTOR * eager64 + 1e-6:
        return True, err, detail
    # an ill-conditioned output (an angle where |z| is tiny) has a heavy-tailed float32 error whose maximum varies
    # between two equally good computations: there the root-mean-square error decides, against eager's own
    rms64, eager_rms64 = rms_rel_err(got, ref64), rms_rel_err(ref, ref64)
    detail += f"; rms {rms64:.2e} (eager float32: {eager_rms64:.2e})"
    if rms64 <= RMS_FACTOR * eager_rms64 + 1e-7:
        return True, err, detail
    # an output that float32 rounding of the inputs alone moves as far (a phase difference where a bin sits on
    # the branch cut, -12.7 + 1e-6j: which side a float32 computation lands on is chance, eager's included):
    # judged against how far eager itself moves when its inputs move by one float32 rounding
    moved = _sensitivity(work, inputs, ref)
    if moved is not None:
        detail += f"; eager moves {moved:.2e} when its inputs move by float32 rounding"
        if err <= EAGER_FACTOR * moved:
            return True, err, detail
    return False, err, detail


def _sensitivity(work, inputs, ref, runs: int = 3) -> Optional[float]:
    """max over a few runs of |eager(x (1 + e)) - eager(x)| / max|eager(x)|, e ~ float32's unit rounding."""
    g = torch.Generator().manual_seed(20261203)
    eps = float(torch.finfo(torch.float32).eps) / 2
    worst = 0.0
    try:
        for _ in range(runs):
            moved = tuple(a * (1 + eps * torch.randn(a.shape, generator=g, dtype=torch.float64).to(a.dtype))
                          if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in inputs)
            with torch.no_grad():
                worst = max(worst, max_rel_err(work(*_clones(moved)), ref))
    except Exception:  # noqa: BLE001 - not judged this way
        return None
    return worst


def _not_float64(ref64, ref) -> bool:
    """Whether a floating output of the model's float64 form is still single precision."""
    return any(a.dtype in (torch.float32, torch.complex64, torch.float16, torch.bfloat16)
               for a, b in zip(_flat(ref64), _flat(ref)) if a.is_floating_point() or a.is_complex())


class _SpectralInFloat64(torch.overrides.TorchFunctionMode):
    """torch.stft / istft / torch.fft.* computed in float64 from the same float32 values, the result rounded
    back to the input's precision."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        mod = getattr(func, "__module__", "") or ""
        if name not in ("stft", "istft") and not mod.startswith("torch.fft") and \
                not (name.startswith(("fft", "ifft", "rfft", "irfft", "hfft", "ihfft")) and "fft" in mod):
            return func(*args, **kwargs)
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if first is None or first.dtype not in (torch.float32, torch.complex64):
            return func(*args, **kwargs)
        up = lambda a: a.to(torch.complex128) if isinstance(a, torch.Tensor) and a.is_complex() else \
            a.double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a  # noqa: E731
        out = func(*[up(a) for a in args], **{k: up(v) for k, v in kwargs.items()})
        down = lambda t: t.to(torch.complex64) if t.dtype == torch.complex128 else \
            t.float() if t.dtype == torch.float64 else t  # noqa: E731
        return down(out) if isinstance(out, torch.Tensor) else out


def verify_example(work, out, args, feeds, ref, report, strict: bool, explain=None) -> bool:
    """Eager against the rewritten model at the example inputs; ``explain(inputs)`` (on failure only) says where
    the rewritten graph first parts from eager."""
    with torch.no_grad():
        got = out(*_clones(args), *feeds.values())
    ok, err, detail = judge(work, args, got, ref)
    report.max_rel_err = err
    wrong_dtype = _dtype_mismatch(got, ref)
    if wrong_dtype:
        ok, detail = False, wrong_dtype
    if detail:
        report.notes.append(f"verification at the example: {detail}")
    if not ok:
        msg = (f"the rewritten model differs from eager on the example inputs by {err:.2e} of the peak"
               + _worst_output(got, ref) + (f" ({detail})" if detail else "")
               + (explain(args) if explain is not None else ""))
        if strict:
            raise SpecRewriteError(msg, op="rewrite", fix="report this model as a specrewrite bug; strict=False "
                                   "returns the result with this note")
        report.notes.append(msg)
    return ok


def verify_second_shape(work, out, second: Optional[tuple], feeds, report, strict: bool, explain=None) -> None:
    """Eager and the rewritten model at a second length / batch size: a dynamic axis must give eager's numbers
    there too (a size the pass baked in would show here)."""
    if second is None:
        return
    shapes = ", ".join(str(tuple(a.shape)) for a in second if isinstance(a, torch.Tensor))
    try:
        with torch.no_grad():
            ref2 = work(*_clones(second))
    except Exception as e:  # noqa: BLE001 - the model's own code takes one shape only
        report.notes.append(f"the model itself does not run at {shapes} ({_first_line(e)}): the dynamic axes "
                            "were verified at the example's shape only")
        return
    try:
        with torch.no_grad():
            got2 = out(*_clones(second), *feeds.values())
    except Exception as e:  # noqa: BLE001 - a guard of the captured graph: the axes are narrower than claimed
        report.notes.append(f"the rewritten model does not run at {shapes}, where eager does ({_first_line(e)}): "
                            "the dynamic axes hold only for some sizes")
        return
    ok, err, detail = judge(work, second, got2, ref2)
    report.max_rel_err_second, report.second_shape = err, shapes
    if detail:
        report.notes.append(f"verification at {shapes}: {detail}")
    if not ok:
        msg = (f"the rewritten model matches eager at the example's shape but differs by {err:.2e} of the peak at "
               f"{shapes}" + (explain(second) if explain is not None else "")
               + ": a size of the example was baked into the graph, or an op is exact only at the example")
        if strict:
            raise SpecRewriteError(msg, op="rewrite", fix="pass dynamic_shapes=False to fix every shape to the "
                                   "example's, and report this model as a specrewrite bug")
        report.notes.append(msg)


def _dtype_mismatch(got, ref) -> str:
    """'output k is float32 where eager gives float64' for the first output whose dtype differs, else ''."""
    for k, (x, y) in enumerate(zip(_flat(got), _flat(ref))):
        if x.dtype != y.dtype and not (x.dtype.is_floating_point and y.is_complex() and x.shape[-1:] == (2,)):
            return f"output {k} is {x.dtype} where eager gives {y.dtype}"
    return ""


def _worst_output(got, ref) -> str:
    """' in output k (shape ...)' for the output with the largest error, when there are several."""
    a, b = _flat(got), _flat(ref)
    if len(a) != len(b) or len(a) < 2:
        return ""
    errs = [max_rel_err(x, y) for x, y in zip(a, b)]
    k = max(range(len(errs)), key=lambda i: errs[i])
    return f" in output {k} of {len(errs)} (shape {tuple(b[k].shape)})"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200] if text else ''}"
