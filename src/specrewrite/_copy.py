"""copy_model(): a deep copy of a user's model that also copies models torch refuses to deepcopy."""
from __future__ import annotations

import copy
import types

import torch


def copy_model(model: torch.nn.Module) -> torch.nn.Module:
    """copy.deepcopy, also for modules holding a tensor computed from parameters as a plain attribute (the legacy
    ``torch.nn.utils.weight_norm`` keeps ``weight = g * v / |v|`` so, in HiFi-GAN, BigVGAN, DAC and EnCodec
    style models): torch refuses to deepcopy a non-leaf tensor. The copy holds a detached clone of such a value;
    the module recomputes it from its parameters on every forward."""
    memo = {}
    for m in model.modules():
        for v in vars(m).values():
            if isinstance(v, types.ModuleType):   # a Python module held as an attribute (espnet's beamformer)
                memo[id(v)] = v
            elif isinstance(v, torch.Tensor) and not v.is_leaf:
                memo[id(v)] = v.detach().clone()
    try:
        return copy.deepcopy(model, dict(memo))
    except (TypeError, RuntimeError, copy.Error):
        pass
    # something else torch or pickle cannot copy (a lock, a generator, a file): shared with the original, as
    # a module's other state is copied
    for m in model.modules():
        for k, v in vars(m).items():
            if k in ("_parameters", "_buffers", "_modules") or id(v) in memo:
                continue
            try:
                copy.deepcopy(v, dict(memo))
            except Exception:  # noqa: BLE001 - whatever fails to copy is shared
                memo[id(v)] = v
    return copy.deepcopy(model, memo)
