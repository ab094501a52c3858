"""The public real models through ``specrewrite.export`` to LiteRT (``.tflite``, run with the LiteRT interpreter)
and ExecuTorch (``.pte``, XNNPACK, run with the ExecuTorch runtime): the on-device half of
``test_realmodels_export.py``. Written at the example's shapes (``dynamic_shapes=False``): LiteRT keeps none of
these models' axes dynamic (each attempt is a whole conversion, about 20 s), and the dynamic on-device path is
tested on small models in ``test_export.py``.
"""
from __future__ import annotations

import pytest

from test_realmodels_export import EVERY_TARGET, NEEDS, check_file, results_for

pytestmark = [pytest.mark.realmodel, pytest.mark.slow]   # run by `make test-slow` (CI runs both tiers)

EXT = {"tflite": ".tflite", "pte": ".pte"}
_files = {}


@pytest.mark.parametrize("target", list(EXT))
@pytest.mark.parametrize("name", EVERY_TARGET)
def test_real_model_on_device(name, target, tmp_path_factory):
    for module in NEEDS[target]:
        pytest.importorskip(module)
    check_file(results_for(name, EXT, tmp_path_factory, _files, dynamic_shapes=False)[target])
