"""Complex-op coverage of ``specrewrite.rewrite`` driven by torch's OpInfo database.

For every OpInfo that supports ``torch.complex64`` on CPU, a few of its samples become small modules with REAL
inputs (each complex tensor argument enters as ``torch.view_as_real(t)``, real tensors as they are, everything else
is baked in as a constant). Inside ``forward`` the complex tensors are rebuilt with ``torch.view_as_complex``, the op
runs, and complex outputs leave as ``torch.view_as_real`` (tuples flattened). The rewrite must match eager or raise
``SpecRewriteError``; each op gets one of the statuses below.

Used by tests/test_opinfo.py (against the committed table tests/opinfo_expected.json) and by
scripts/opinfo_coverage.py (which writes docs/opinfo_coverage.md and regenerates that table).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import TOL

LOWERED, CLEAR, WRONG, CRASH, SKIP = "lowered", "clear error", "wrong", "crash", "skip-eager"
STATUSES = (LOWERED, CLEAR, WRONG, CRASH, SKIP)
# how good a status is: a run may never be worse than the committed table says (crash and wrong are defects)
RANK = {LOWERED: 0, CLEAR: 1, WRONG: 2, CRASH: 2, SKIP: 0}

# torch.export logs every input dim it specialises (small OpInfo shapes): noise here
for _name in ("torch._export.non_strict_utils", "torch._subclasses.fake_tensor"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)

EXPECTED_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "opinfo_expected.json")
FP32_REL = TOL["fp32_rel"]   # the floor of the tolerance; above it the rewrite may be EAGER_FACTOR x eager's error
EAGER_FACTOR = 4.0       # the rewrite may be up to 4x as far from float64 as eager float32 itself is
MAX_TRIES = 8            # samples tried per op to find the ones that run in eager
TABLE_SAMPLES = 3        # samples per op behind the committed table (scripts/opinfo_coverage.py's default)

# Not comparable run to run (random or uninitialised values) or not a tensor function of tensors.
NOT_RELEVANT = {
    "rand_like": "random", "randn": "random", "randn_like": "random", "normal": "random", "uniform": "random",
    "svd_lowrank": "random", "pca_lowrank": "random", "bernoulli": "random",
    "empty": "uninitialised values", "empty_like": "uninitialised values", "empty_strided": "uninitialised values",
    "empty_permuted": "uninitialised values", "new_empty": "uninitialised values",
    "new_empty_strided": "uninitialised values", "resize_": "uninitialised values",
    "resize_as_": "uninitialised values",
    "to_sparse": "sparse output", "sparse.sampled_addmm": "sparse input",
    "jiterator_2inputs_2outputs": "CUDA jiterator", "jiterator_4inputs_with_extra_args": "CUDA jiterator",
    "jiterator_binary": "CUDA jiterator", "jiterator_binary_return_by_ref": "CUDA jiterator",
    "jiterator_unary": "CUDA jiterator",
}


def op_id(op) -> str:
    return op.name + ("." + op.variant_test_name if op.variant_test_name else "")


def complex_opinfos() -> list:
    """Every OpInfo of op_db that supports complex64 on CPU, sorted by id (ids are unique)."""
    frozen = torch.backends.flags_frozen()
    from torch.testing._internal.common_methods_invocations import op_db

    if not frozen:   # torch's test utilities freeze torch.backends flags on import (disable_global_flags); undo
        # it so packages imported later in the same process (speechbrain sets cudnn flags) still import
        torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True
    ops = [op for op in op_db if torch.complex64 in op.supported_dtypes("cpu")]
    return sorted(ops, key=op_id)


# ------------------------------------------------------------------------------------------ the module
@dataclasses.dataclass(frozen=True)
class _In:
    """A placeholder of the argument template: model input ``i``; ``cx``: rebuilt with view_as_complex."""
    i: int
    cx: bool


_DTYPE64 = {torch.complex64: torch.complex128, torch.float32: torch.float64, torch.complex32: torch.complex128,
            torch.float16: torch.float64, torch.bfloat16: torch.float64}


def _template(obj, inputs: list, wide: bool):
    """``obj`` with every tensor replaced by an _In (its real form appended to ``inputs``); ``wide``: dtype
    constants widened to 64 bits (the float64 reference)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.is_complex():
            inputs.append(torch.view_as_real(t.resolve_conj()).clone())
            return _In(len(inputs) - 1, True)
        inputs.append(t.resolve_neg().clone())
        return _In(len(inputs) - 1, False)
    if isinstance(obj, torch.dtype):
        return _DTYPE64.get(obj, obj) if wide else obj
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*[_template(v, inputs, wide) for v in obj])
    if isinstance(obj, (list, tuple)):
        return type(obj)(_template(v, inputs, wide) for v in obj)
    if isinstance(obj, dict):
        return {k: _template(v, inputs, wide) for k, v in obj.items()}
    return obj


def _fill(obj, xs):
    if isinstance(obj, _In):
        return torch.view_as_complex(xs[obj.i]) if obj.cx else xs[obj.i]
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*[_fill(v, xs) for v in obj])
    if isinstance(obj, (list, tuple)):
        return type(obj)(_fill(v, xs) for v in obj)
    if isinstance(obj, dict):
        return {k: _fill(v, xs) for k, v in obj.items()}
    return obj


def _leaves(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _leaves(o)]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _leaves(out[k])]
    return [out]


class OpModule(torch.nn.Module):
    """forward(x0, x1, ...) = flat real outputs of ``fn(*args, **kwargs)``, complex tensors as view_as_real.

    forward has one named parameter per input (see ``_module_class``): a ``*xs`` signature would test only the
    tracing fallback of the capture (torch.export's dynamic_shapes do not describe varargs)."""

    def __init__(self, fn, template):
        super().__init__()
        self.fn, self.template = fn, template

    def body(self, xs):
        args, kwargs = _fill(self.template, xs)
        out = self.fn(*args, **kwargs)
        return tuple(torch.view_as_real(t.resolve_conj()) if isinstance(t, torch.Tensor) and t.is_complex() else t
                     for t in _leaves(out))


_CLASSES: Dict[int, type] = {}


def _module_class(n: int) -> type:
    """The OpModule subclass whose forward takes exactly n positional inputs x0 .. x{n-1}."""
    if n not in _CLASSES:
        names = ", ".join(f"x{i}" for i in range(n))
        ns: Dict[str, Any] = {}
        exec(f"def forward(self{', ' if n else ''}{names}):\n    return self.body(({names}{',' if n else ''}))\n", ns)
        _CLASSES[n] = type(f"OpModule{n}", (OpModule,), {"forward": ns["forward"]})
    return _CLASSES[n]


@dataclasses.dataclass
class Case:
    module: OpModule            # float32 / complex64 constants
    module64: OpModule          # the same with dtype constants widened (float64 reference)
    inputs: tuple               # real inputs (complex ones as (..., 2) float32 pairs)
    inputs64: tuple
    desc: str


def _widen(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float64) if t.is_floating_point() else t


def make_case(op, sample) -> Case:
    args = (sample.input,) + tuple(sample.args)
    inputs: list = []
    tpl = _template((args, dict(sample.kwargs)), inputs, wide=False)
    tpl64 = _template((args, dict(sample.kwargs)), [], wide=True)
    desc = ", ".join(f"{tuple(x.shape)}{'c' if t else ''}" for x, t in
                     zip(inputs, [leaf.cx for leaf in _tpl_leaves(tpl)]))
    cls = _module_class(len(inputs))
    return Case(cls(op.op, tpl), cls(op.op, tpl64), tuple(inputs),
                tuple(_widen(x) for x in inputs), desc)


def _tpl_leaves(obj) -> list:
    if isinstance(obj, _In):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [v for o in obj for v in _tpl_leaves(o)]
    if isinstance(obj, dict):
        return [v for o in obj.values() for v in _tpl_leaves(o)]
    return []


def _run(module, inputs):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return module(*[x.clone() for x in inputs])


# ------------------------------------------------------------------------------------------ comparison
def _as64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float64)


def rel_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| / max |ref| over the finite entries of ``ref`` (float64); inf where ``got`` is not finite
    where ``ref`` is, or differs where ``ref`` is not finite (nan must be nan, inf the same inf)."""
    g, r = _as64(got), _as64(ref)
    fin = torch.isfinite(r)
    bad_nonfinite = ~fin & ~((torch.isnan(r) & torch.isnan(g)) | (g == r))
    if bool(bad_nonfinite.any()):
        return float("inf")
    if not bool(fin.any()):
        return 0.0
    gf, rf = g[fin], r[fin]
    if not bool(torch.isfinite(gf).all()):
        return float("inf")
    peak = float(rf.abs().max())
    err = float((gf - rf).abs().max())
    return err / peak if peak > 0 else err


class _ComplexSpy(TorchDispatchMode):
    """Names the first ATen op that sees or makes a complex tensor (none may run in a rewritten model)."""

    def __init__(self):
        super().__init__()
        self.seen: Optional[str] = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.seen is None:
            for t in torch.utils._pytree.tree_leaves((args, kwargs, out)):
                if isinstance(t, torch.Tensor) and t.is_complex():
                    self.seen = str(func)
                    break
        return out


@dataclasses.dataclass
class Result:
    status: str
    err: Optional[float] = None      # worst rewrite error over the compared samples (relative to the peak)
    eager_err: Optional[float] = None  # eager float32's own error on that sample
    note: str = ""
    samples: int = 0                 # samples compared (or that raised the clear error)


def _one_line(e: BaseException, n: int = 160) -> str:
    s = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    return s if len(s) <= n else s[: n - 3] + "..."


def check_case(case: Case) -> Result:
    """Rewrite one sample and compare with eager (see the module docstring)."""
    import specrewrite as sr
    from specrewrite import SpecRewriteError

    try:
        ref32 = _run(case.module, case.inputs)
        ref64 = _run(case.module64, case.inputs64)
    except Exception as e:  # noqa: BLE001 - the sample does not run in eager
        return Result(SKIP, note=f"eager raises {_one_line(e)}")
    l32, l64 = _leaves(ref32), _leaves(ref64)
    if not all(isinstance(t, torch.Tensor) for t in l32) or not l32:
        return Result(SKIP, note="non-tensor output")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out_mod = sr.rewrite(case.module, case.inputs, verify=False)
        spy = _ComplexSpy()
        with torch.no_grad(), spy:
            got = _leaves(out_mod(*[x.clone() for x in case.inputs]))
    except SpecRewriteError as e:
        return Result(CLEAR, note=(e.reason or str(e)).splitlines()[0][:160] + (f" [{e.op}]" if e.op else ""))
    except Exception as e:  # noqa: BLE001 - anything else is a defect of the rewrite
        return Result(CRASH, note=_one_line(e))
    if spy.seen is not None:
        return Result(WRONG, note=f"a complex tensor survives the rewrite ({spy.seen})")
    if len(got) != len(l32):
        return Result(WRONG, note=f"{len(got)} outputs, eager has {len(l32)}")
    worst, worst_eager = 0.0, 0.0
    for k, (g, a, b) in enumerate(zip(got, l32, l64)):
        if not isinstance(g, torch.Tensor) or tuple(g.shape) != tuple(a.shape):
            shape = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
            return Result(WRONG, note=f"output {k}: shape {shape}, eager {tuple(a.shape)}")
        if not a.is_floating_point():
            if g.dtype != a.dtype or not torch.equal(g, a):
                return Result(WRONG, err=float("inf"), note=f"output {k} ({a.dtype}) differs from eager "
                                                               f"(got {g.dtype})")
            continue
        if g.dtype != a.dtype:
            return Result(WRONG, err=float("inf"), note=f"output {k}: dtype {g.dtype}, eager {a.dtype}")
        e_rw, e_32 = rel_error(g, b), rel_error(a, b)
        tol = max(FP32_REL, EAGER_FACTOR * e_32)
        if e_rw > tol:
            return Result(WRONG, err=e_rw, eager_err=e_32,
                          note=f"output {k}: error {e_rw:.2e} > {tol:.1e} (eager float32 {e_32:.1e})")
        if e_rw >= worst:
            worst, worst_eager = e_rw, e_32
    return Result(LOWERED, err=worst, eager_err=worst_eager)


def samples_of(op, n: int) -> Iterator[Case]:
    """Up to ``n`` cases of ``op`` whose eager call runs (from the first MAX_TRIES samples, fixed seed)."""
    torch.manual_seed(0)
    try:
        gen = op.sample_inputs("cpu", torch.complex64, requires_grad=False)
    except Exception:  # noqa: BLE001
        return
    found = 0
    for k, sample in enumerate(gen):
        if k >= MAX_TRIES or found >= n:
            return
        try:
            case = make_case(op, sample)
            _run(case.module, case.inputs)
            _run(case.module64, case.inputs64)
        except Exception:  # noqa: BLE001 - samples that do not run in eager are skipped
            continue
        found += 1
        yield case


def classify(op, n_samples: int) -> Result:
    """The status of one OpInfo over up to ``n_samples`` samples: the worst sample decides (wrong/crash before
    clear error before lowered)."""
    name = op_id(op)
    if op.name in NOT_RELEVANT or name in NOT_RELEVANT:
        return Result(SKIP, note=NOT_RELEVANT.get(name, NOT_RELEVANT.get(op.name)))
    results: List[Result] = []
    for case in samples_of(op, n_samples):
        has_cx = any(leaf.cx for leaf in _tpl_leaves(case.module.template))
        if not has_cx and not _makes_complex(case):
            continue  # no complex value anywhere: nothing for the lowering to do
        results.append(check_case(case))
    return worst_of(results)


def worst_of(results: List[Result]) -> Result:
    """The status of an op over its samples' results: the worst sample decides."""
    results = [r for r in results if r.status != SKIP] or results
    if not results:
        return Result(SKIP, note="no sample with a complex value runs in eager")
    order = {WRONG: 0, CRASH: 1, CLEAR: 2, LOWERED: 3, SKIP: 4}
    worst = min(results, key=lambda r: order[r.status])
    lowered = [r for r in results if r.status == LOWERED]
    res = dataclasses.replace(worst, samples=len(results))
    if lowered:
        best = max(lowered, key=lambda r: r.err)
        if worst.status == LOWERED:
            res.err, res.eager_err = best.err, best.eager_err
        else:
            res.note = f"{res.note} ({len(lowered)}/{len(results)} samples lowered)"
    return res


def _makes_complex(case: Case) -> bool:
    spy = _ComplexSpy()
    with torch.no_grad(), spy:
        _run(case.module, case.inputs)
    return spy.seen is not None


# ------------------------------------------------------------------------------------------ the table
def load_expected(path: str = EXPECTED_PATH) -> Dict[str, str]:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def save_expected(table: Dict[str, str], path: str = EXPECTED_PATH) -> None:
    with open(path, "w") as f:
        json.dump(dict(sorted(table.items())), f, indent=1)
        f.write("\n")


def n_samples_from_env(default: int) -> int:
    return int(os.environ.get("SPECREWRITE_OPINFO_SAMPLES", default))


def summary(results: Dict[str, Result]) -> Tuple[Dict[str, int], str]:
    counts = {s: 0 for s in STATUSES}
    for r in results.values():
        counts[r.status] += 1
    line = (f"lowered {counts[LOWERED]} / clear error {counts[CLEAR]} / wrong {counts[WRONG]} / crash {counts[CRASH]}"
            f" / skip-eager {counts[SKIP]} / total {len(results)}")
    return counts, line

