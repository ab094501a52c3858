"""Complex-op coverage from torch's OpInfo database: every OpInfo that supports complex64 on CPU, a few of its
samples each, rewritten and compared with eager (see opinfo_cases.py for how the cases are built and judged).

Each op's status must be at least as good as the committed table tests/opinfo_expected.json: an op recorded as
``lowered`` must still lower and match eager, an op recorded as ``clear error`` may lower (then regenerate the
table with scripts/opinfo_coverage.py) or raise SpecRewriteError, never anything else. Known defects (``wrong`` /
``crash`` in the table) are expected failures until fixed.

CI runs 2 samples per op; SPECREWRITE_OPINFO_SAMPLES=n runs more.
"""
from __future__ import annotations

import warnings

import pytest

pytest.importorskip("expecttest")   # torch.testing._internal (the OpInfo database) imports it

import opinfo_cases as oc  # noqa: E402
from conftest import record_error  # noqa: E402

N_SAMPLES = oc.n_samples_from_env(2)
EXPECTED = oc.load_expected()
OPS = oc.complex_opinfos()


def test_table_covers_every_op():
    """The committed table names exactly the OpInfos of this torch (a new or removed op: regenerate it)."""
    names = {oc.op_id(op) for op in OPS}
    missing, stale = sorted(names - set(EXPECTED)), sorted(set(EXPECTED) - names)
    assert not missing and not stale, (f"tests/opinfo_expected.json is out of date (missing {missing[:10]}, "
                                       f"stale {stale[:10]}): run scripts/opinfo_coverage.py")


@pytest.mark.parametrize("op", OPS, ids=oc.op_id)
def test_opinfo(op):
    name = oc.op_id(op)
    expected = EXPECTED.get(name)
    if expected is None:
        pytest.skip(f"{name} is not in tests/opinfo_expected.json (see test_table_covers_every_op)")
    res = oc.classify(op, N_SAMPLES)
    if res.status == oc.SKIP:
        assert expected == oc.SKIP, f"{name}: recorded as {expected!r}, but no sample ran ({res.note})"
        pytest.skip(res.note)
    if res.status in (oc.WRONG, oc.CRASH):
        if expected == res.status:
            pytest.xfail(f"known defect ({res.status}): {res.note}")
        pytest.fail(f"{name}: {res.status} (recorded as {expected!r}): {res.note}")
    assert expected != oc.SKIP, f"{name}: recorded as skip-eager but its samples now run: regenerate the table"
    if oc.RANK[res.status] > oc.RANK[expected]:
        pytest.fail(f"{name}: regression from {expected!r} to {res.status!r}: {res.note}")
    if res.status == oc.LOWERED:
        record_error("opinfo", res.err or 0.0)
    if oc.RANK[res.status] < oc.RANK[expected] and N_SAMPLES >= oc.TABLE_SAMPLES:   # fewer samples: may not hold
        warnings.warn(f"{name} improved from {expected!r} to {res.status!r}: run scripts/opinfo_coverage.py to "
                      "record it", stacklevel=1)


# ------------------------------------------------------------------------------------------ branch cuts
def _grid():
    """Random points plus the branch cuts and their neighbours, with signed zeros on the axes (complex128)."""
    import torch

    g = torch.Generator().manual_seed(0)
    xs = [-5.0, -2.0, -1.5, -1.0, -0.5, -1e-3, -0.0, 0.0, 1e-3, 0.5, 1.0, 1.5, 2.0, 5.0]
    ys = [0.0, -0.0, 1e-4, -1e-4, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0]
    re_ = torch.tensor([x for x in xs for _ in ys], dtype=torch.float64)
    im_ = torch.tensor([y for _ in xs for y in ys], dtype=torch.float64)
    rnd = torch.randn(2, 400, generator=g, dtype=torch.float64) * 3
    return torch.complex(torch.cat([re_, rnd[0]]), torch.cat([im_, rnd[1]]))


_FUNCS = ("sin", "cos", "tan", "sinh", "cosh", "tanh", "asin", "acos", "atan", "asinh", "acosh", "atanh", "log",
          "log10", "log2", "log1p", "expm1", "exp2", "sqrt", "rsqrt", "sigmoid", "reciprocal", "exp")


@pytest.mark.parametrize("fn", _FUNCS)
def test_elementwise_branch_cuts(fn):
    """Each complex elementary function, element by element: as close to complex128 as eager complex64 is (within
    4x, or 2e-7 relative), and on the branch cuts the imaginary part (where nonzero) on eager's side."""
    import torch

    import specrewrite as sr

    class F(torch.nn.Module):
        def forward(self, x):
            return torch.view_as_real(getattr(torch, fn)(torch.view_as_complex(x)))

    z = _grid()
    x = torch.view_as_real(z).float().contiguous()
    out = sr.rewrite(F(), (x,), verify=False)(x).double()
    ref = torch.view_as_real(getattr(torch, fn)(z))
    e32 = torch.view_as_real(getattr(torch, fn)(z.to(torch.complex64))).double()
    fin = torch.isfinite(ref).all(-1)
    scale = ref.abs().amax(-1).clamp_min(1e-30)
    err = ((out - ref).abs().amax(-1) / scale)[fin]
    err32 = ((e32 - ref).abs().amax(-1) / scale)[fin]
    assert torch.isfinite(out[fin]).all(), f"{fn}: non-finite results where complex128 is finite"
    worst = float(err.max())
    assert worst <= max(2e-7, 4 * float(err32.max())), f"{fn}: {worst:.2e} vs eager complex64 {float(err32.max()):.2e}"
    side = (torch.sign(out[..., 1]) == torch.sign(ref[..., 1])) | (ref[..., 1].abs() < 1e-6)
    assert bool(side[fin].all()), f"{fn}: imaginary part on the wrong side of a branch cut at {z[fin & ~side][:4]}"
    record_error("opinfo elementwise", worst)
