"""The second half of ``test_realmodels_more_targets.py`` (the models of ``test_realmodels_more.SECOND``), in a
file of its own so that ``--dist loadfile`` runs the two halves on two workers."""
from __future__ import annotations

import pytest

import test_realmodels_more as base
import test_realmodels_more_targets as targets

pytestmark = [pytest.mark.realmodel, pytest.mark.slow]


@pytest.mark.parametrize("name,target", targets.params(base.SECOND))
def test_sweep_model_on_target(name, target, tmp_path_factory):
    targets.check(name, target, tmp_path_factory)
