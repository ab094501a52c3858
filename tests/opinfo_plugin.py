"""The OpInfo cases of ``opinfo_cases`` on the Core ML plugin route: the UNCHANGED case module traced and converted
by plain ``ct.convert`` inside ``specrewrite.coreml.register()``, run by the MIL evaluator (fp32), and judged as the
rewrite is (``opinfo_cases.check_case``): within max(1e-5, 4 x eager float32's own error) of the float64 result,
integer and bool outputs exact.

Statuses as for the rewrite. ``clear error``: a SpecRewriteError naming the op, or coremltools' own "convert
function for op ... not implemented" (an op that has no Core ML lowering on any route); ``crash``: anything else,
the MIL evaluator lacking an op included. Used by tests/test_opinfo_plugin.py against the committed table
tests/opinfo_plugin_expected.json (``scripts/opinfo_coverage.py --route plugin`` regenerates it).
"""
from __future__ import annotations

import os
import warnings
from typing import Dict

import numpy as np
import torch

import opinfo_cases as oc

EXPECTED_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "opinfo_plugin_expected.json")
TARGET = "iOS17"
N_SAMPLES = 1   # per op, in the table and in the test (the first sample with a complex value that runs in eager)


def _convert(case):
    import coremltools as ct

    import specrewrite.coreml as src

    traced = torch.jit.trace(case.module.eval(), tuple(x.clone() for x in case.inputs), check_trace=False)
    inputs = [ct.TensorType(name=f"x{i}", shape=tuple(x.shape),
                            dtype=np.float32 if x.is_floating_point() else (np.bool_ if x.dtype == torch.bool
                                                                            else np.int32))
              for i, x in enumerate(case.inputs)]
    with src.register():
        return ct.convert(traced, inputs=inputs, convert_to="mlprogram", skip_model_load=True,
                          minimum_deployment_target=getattr(ct.target, TARGET),
                          compute_precision=ct.precision.FLOAT32)


def check_case_plugin(case) -> oc.Result:
    from specrewrite import SpecRewriteError
    from specrewrite.coreml.evaluate import evaluate

    try:
        ref32 = oc._run(case.module, case.inputs)
        ref64 = oc._run(case.module64, case.inputs64)
    except Exception as e:  # noqa: BLE001 - the sample does not run in eager
        return oc.Result(oc.SKIP, note=f"eager raises {oc._one_line(e)}")
    l32, l64 = oc._leaves(ref32), oc._leaves(ref64)
    if not l32 or not all(isinstance(t, torch.Tensor) for t in l32):
        return oc.Result(oc.SKIP, note="non-tensor output")
    if any(t.dim() == 0 for t in case.inputs):
        return oc.Result(oc.SKIP, note="a 0-d input (Core ML inputs have rank 1 or more)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ml = _convert(case)
    except SpecRewriteError as e:
        return oc.Result(oc.CLEAR, note=(e.reason or str(e)).splitlines()[0][:160])
    except Exception as e:  # noqa: BLE001
        text = str(e)
        if "convert function for op" in text and "not implemented" in text:
            return oc.Result(oc.CLEAR, note="coremltools: " + oc._one_line(e, 140))
        return oc.Result(oc.CRASH, note="convert: " + oc._one_line(e))
    feed = {f"x{i}": (x.numpy() if x.is_floating_point() or x.dtype == torch.bool else x.numpy().astype(np.int32))
            for i, x in enumerate(case.inputs)}
    try:
        res = evaluate(ml, feed)
    except Exception as e:  # noqa: BLE001
        return oc.Result(oc.CRASH, note="evaluate: " + oc._one_line(e))
    got = [res[o.name] for o in ml.get_spec().description.output]
    if len(got) != len(l32):
        return oc.Result(oc.WRONG, note=f"{len(got)} outputs, eager has {len(l32)}")
    worst, worst_eager = 0.0, 0.0
    for k, (g, a, b) in enumerate(zip(got, l32, l64)):
        g = np.asarray(g)
        if g.size != a.numel():
            return oc.Result(oc.WRONG, note=f"output {k}: shape {g.shape}, eager {tuple(a.shape)}")
        g = torch.from_numpy(g.reshape(tuple(a.shape)).copy())
        if not a.is_floating_point():
            if not torch.equal(g.to(a.dtype), a):
                return oc.Result(oc.WRONG, err=float("inf"), note=f"output {k} ({a.dtype}) differs from eager")
            continue
        e_ml, e_32 = oc.rel_error(g, b), oc.rel_error(a, b)
        tol = max(oc.FP32_REL, oc.EAGER_FACTOR * e_32)
        if e_ml > tol:
            return oc.Result(oc.WRONG, err=e_ml, eager_err=e_32,
                             note=f"output {k}: error {e_ml:.2e} > {tol:.1e} (eager float32 {e_32:.1e})")
        if e_ml >= worst:
            worst, worst_eager = e_ml, e_32
    return oc.Result(oc.LOWERED, err=worst, eager_err=worst_eager)


def classify_plugin(op, n_samples: int) -> oc.Result:
    """As ``opinfo_cases.classify``, on the plugin route."""
    name = oc.op_id(op)
    if op.name in oc.NOT_RELEVANT or name in oc.NOT_RELEVANT:
        return oc.Result(oc.SKIP, note=oc.NOT_RELEVANT.get(name, oc.NOT_RELEVANT.get(op.name)))
    results = []
    for case in oc.samples_of(op, n_samples):
        has_cx = any(leaf.cx for leaf in oc._tpl_leaves(case.module.template))
        if not has_cx and not oc._makes_complex(case):
            continue
        results.append(check_case_plugin(case))
    return oc.worst_of(results)


def load_expected() -> Dict[str, str]:
    return oc.load_expected(EXPECTED_PATH)


def save_expected(table: Dict[str, str]) -> None:
    oc.save_expected(table, EXPECTED_PATH)
