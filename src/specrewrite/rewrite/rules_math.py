"""Lowering rules for elementwise math, reductions, comparisons and linear algebra on complex values
(see ``rules`` for the conventions: ``Cx`` real pairs, one rule per ATen overload packet)."""
from __future__ import annotations

import torch

from . import _complex as C  # noqa: F401
from .rules import RULES, Cx, _n, aten, is_c, nd, rule  # noqa: F401
