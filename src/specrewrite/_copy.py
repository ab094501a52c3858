"""copy_model(): a deep copy of a user's model that also copies models torch refuses to deepcopy."""
from __future__ import annotations

import copy

import torch


def copy_model(model: torch.nn.Module) -> torch.nn.Module:
    """copy.deepcopy, also for modules holding a tensor computed from parameters as a plain attribute (the legacy
    ``torch.nn.utils.weight_norm`` keeps ``weight = g * v / |v|`` so, in HiFi-GAN, BigVGAN, DAC and EnCodec
    style models): torch refuses to deepcopy a non-leaf tensor. The copy holds a detached clone of such a value;
    the module recomputes it from its parameters on every forward."""
    try:
        return copy.deepcopy(model)
    except RuntimeError as e:
        if "deepcopy" not in str(e):
            raise
    memo = {}
    for m in model.modules():
        for v in vars(m).values():
            if isinstance(v, torch.Tensor) and not v.is_leaf:
                memo[id(v)] = v.detach().clone()
    return copy.deepcopy(model, memo)
