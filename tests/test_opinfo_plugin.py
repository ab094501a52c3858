"""Route parity from torch's OpInfo database: every case of test_opinfo.py (the rewrite) also on the Core ML plugin
route (``opinfo_plugin.py``: the unchanged module, ``ct.convert`` inside ``register()``, the MIL evaluator).

Each op's plugin status must equal the committed table tests/opinfo_plugin_expected.json, in both directions: a
regression fails, and so does an improvement until the table is regenerated (``scripts/opinfo_coverage.py --route
plugin``). Every op the plugin does not lower is an expected failure naming what stops it and what the rewrite does
with the same case, so a gap between the routes is listed, not hidden.
"""
from __future__ import annotations

import pytest

pytest.importorskip("expecttest")
pytest.importorskip("coremltools")

import opinfo_cases as oc  # noqa: E402
import opinfo_plugin as op_  # noqa: E402
from specrewrite._quiet import quiet  # noqa: E402

EXPECTED = op_.load_expected()
REWRITE = oc.load_expected()
OPS = oc.complex_opinfos()

pytestmark = pytest.mark.filterwarnings("ignore")


def test_table_covers_every_op():
    names = {oc.op_id(op) for op in OPS}
    assert names == set(EXPECTED), sorted(names ^ set(EXPECTED))[:10]


@pytest.mark.parametrize("op", OPS, ids=oc.op_id)
def test_opinfo_plugin(op):
    name = oc.op_id(op)
    expected = EXPECTED[name]
    with quiet():
        res = op_.classify_plugin(op, op_.N_SAMPLES)
    if res.status != expected:
        worse = oc.RANK[res.status] > oc.RANK[expected]
        pytest.fail(f"{name}: {'regression' if worse else 'improvement'} from {expected!r} to {res.status!r} "
                    f"({res.note}); {'' if worse else 'run scripts/opinfo_coverage.py --route plugin'}")
    if res.status == oc.SKIP:
        pytest.skip(res.note)
    if res.status != oc.LOWERED:
        pytest.xfail(f"plugin route {res.status}: {res.note} (the rewrite: {REWRITE.get(name)})")
    assert res.err is not None and res.err <= max(oc.FP32_REL, oc.EAGER_FACTOR * (res.eager_err or 0.0)), res
