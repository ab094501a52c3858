"""Module swap: torchaudio transforms anywhere in the module tree -> specrewrite's exportable modules.

Needs no tracing, so ``rewrite(model)`` works without example inputs for models whose only spectral ops live
in such modules.
"""
from __future__ import annotations

import inspect
import re
from typing import List, Tuple

import torch

from ..modes import Mode, Strategy
from .report import Report

_SPECTRAL_SOURCE = re.compile(r"\b(stft|istft|fft\.\w+|rfft|irfft|spectrogram|inverse_spectrogram|griffinlim|fbank)\s*\(")


def _table():
    try:
        import torchaudio.transforms as T
    except Exception:  # noqa: BLE001 - torchaudio is optional (or its native libs are missing)
        return {}
    from .. import modules as M

    return {T.Spectrogram: M.Spectrogram, T.MelSpectrogram: M.MelSpectrogram, T.MFCC: M.MFCC, T.LFCC: M.LFCC,
            T.InverseSpectrogram: M.InverseSpectrogram}


def has_torchaudio_transforms(model: torch.nn.Module) -> bool:
    table = _table()
    return bool(table) and any(type(m) in table for m in model.modules())


def swap_torchaudio(model: torch.nn.Module, mode: Mode, strategy: Strategy, report: Report,
                    allow_complex_out: bool) -> Tuple[torch.nn.Module, List[str]]:
    """Replace torchaudio transforms in place (on the caller's copy). Returns (model, names of complex-output
    transforms left alone because their consumers need the graph pass)."""
    table = _table()
    left = []
    if not table:
        return model, left
    targets = [(name, m) for name, m in model.named_modules() if type(m) in table]
    taken: List[str] = []
    for name, m in targets:
        if any(name.startswith(t + ".") for t in taken):
            continue  # inside a transform already swapped (e.g. MelSpectrogram.spectrogram)
        taken.append(name)
        complex_out = type(m).__name__ == "Spectrogram" and m.power is None
        if complex_out and not allow_complex_out:
            left.append(name or type(m).__name__)
            continue
        if complex_out:
            continue  # the graph pass rewrites it together with its complex consumers
        new = table[type(m)].from_torchaudio(m, mode=mode, strategy=strategy)
        new.train(m.training)
        report.add(f"torchaudio.transforms.{type(m).__name__}", f"module '{name}'" if name else "the model itself",
                   _describe(m), replaced_by=f"specrewrite.{type(new).__name__} ({mode.value})")
        if name == "":
            return new, left
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, leaf, new)
    return model, left


def _describe(m) -> dict:
    keys = ("n_fft", "win_length", "hop_length", "power", "normalized", "center", "pad_mode", "n_mels",
            "sample_rate", "n_mfcc", "n_lfcc")
    out = {}
    for k in keys:
        if hasattr(m, k):
            out[k] = getattr(m, k)
    for sub in ("spectrogram", "MelSpectrogram", "Spectrogram"):
        if hasattr(m, sub):
            for k, v in _describe(getattr(m, sub)).items():
                out.setdefault(k, v)
    return out


def forward_mentions_spectral_ops(model: torch.nn.Module) -> List[str]:
    """Each line that calls stft / istft / an FFT in the source of a module's forward or of a function it calls
    by name (helpers, methods, to a depth of 3): 'stft at file:line in Cls.forward: code'."""
    table = _table()
    found: List[str] = []
    seen_fns: set = set()
    seen = set()
    for name, m in model.named_modules():
        cls = type(m)
        if cls in seen or cls.__module__.startswith(("torch.", "specrewrite.")) or cls in table:
            continue
        seen.add(cls)
        _scan(cls.forward, f"{cls.__qualname__}.forward" + (f" (module '{name}')" if name else ""), cls, found,
              seen_fns, 3)
    return found


def _scan(fn, label, cls, found, seen_fns, depth) -> None:
    fn = inspect.unwrap(getattr(fn, "__func__", fn))
    code = getattr(fn, "__code__", None)
    if code is None or code in seen_fns or fn.__module__ is None or fn.__module__.startswith(("torch", "specrewrite")):
        return
    seen_fns.add(code)
    try:
        lines, first = inspect.getsourcelines(fn)
        path = inspect.getsourcefile(fn)
    except (OSError, TypeError):
        return
    for i, line in enumerate(lines):
        m = _SPECTRAL_SOURCE.search(line)
        if m and not line.lstrip().startswith("#"):
            found.append(f"{m.group(1)} at {path}:{first + i} in {label}: {line.strip()}")
    if depth <= 1:
        return
    scope = dict(getattr(fn, "__globals__", {}))
    for n in code.co_names:   # helpers called by name: module-level functions and methods of the class
        target = scope.get(n)
        if target is None and cls is not None:
            target = getattr(cls, n, None)
        if inspect.isfunction(target) or inspect.ismethod(target):
            _scan(target, getattr(target, "__qualname__", n), cls, found, seen_fns, depth - 1)
