"""The second half of ``test_realmodels_more.py``'s real models (``SECOND`` there), in a file of its own so that
``--dist loadfile`` runs the two halves on two workers (one file took 17 of the suite's 25 minutes alone). The
checks are that module's: rewrite + ONNX against eager, and every dynamic axis exported and run in ONNX Runtime
at three lengths and two batch sizes."""
from __future__ import annotations

import pytest

import test_realmodels_more as base

pytestmark = [pytest.mark.realmodel, pytest.mark.slow]   # run by `make test-slow` (CI runs both tiers)


@pytest.mark.parametrize("name", base._params("static", base.SECOND))
def test_rewrite_and_onnx(name, tmp_path):
    base.check_rewrite_and_onnx(name, tmp_path)


@pytest.mark.parametrize("name", base._params("dynamic", base.SECOND))
def test_dynamic_shapes(name, tmp_path):
    model, args, y0, snap, out = base.rewritten(name)
    base.check_dynamic(name, model, args, out, tmp_path)


def test_the_two_halves_cover_every_model_once():
    assert set(base.SECOND) <= set(base.BUILDERS), sorted(set(base.SECOND) - set(base.BUILDERS))
    first = [p if isinstance(p, str) else p.values[0] for p in base._params("static")]
    assert sorted(first + list(base.SECOND)) == sorted(base.BUILDERS)
