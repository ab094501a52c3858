"""Source locations: the one place that decides which frame of a stack is the user's code.

Every location specrewrite prints has the form ``file:line in func: code``: the innermost frame that is not
torch, specrewrite, torchaudio's transforms and functions or the standard library's contextlib. It is found from
a live stack (the patched stft / istft), a traceback (the model raising on the example inputs), the text of an FX
node's ``stack_trace`` (an op the pass cannot lower) or a shape guard's recorded location (an axis the capture
pins).
"""
from __future__ import annotations

import os
import re
import traceback
from typing import Iterable, Optional, Tuple

import torch

_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# torchaudio's transforms and functions are library code (the user's line is where they are called); its
# models (HDemucs, Conv-TasNet, ...) are model code like any other, so a location inside them is shown
_LIB_PARTS = tuple(os.sep + os.path.join("torchaudio", *p.split("/")) + os.sep
                   for p in ("functional", "transforms", "compliance", "prototype/functional",
                             "prototype/transforms", "_internal")) + (os.sep + "contextlib.py",)


def is_library_file(filename: str) -> bool:
    """torch, specrewrite, torchaudio's transforms and functions, or contextlib: not the user's code."""
    path = os.path.abspath(filename) if filename and not filename.startswith("<") else (filename or "")
    return path.startswith(_TORCH_DIR) or path.startswith(_OWN_DIR) or any(p in path for p in _LIB_PARTS)


def fmt(filename: str, lineno: int, func: str = "", code: str = "") -> str:
    text = f"{filename}:{lineno}"
    if func:
        text += f" in {func}"
    if code:
        text += f": {code.strip()}"
    return text


def _innermost_user(frames: Iterable[Tuple[str, int, str, str]]) -> Optional[str]:
    found = None
    for filename, lineno, func, code in frames:
        if not is_library_file(filename):
            found = fmt(filename, lineno, func, code)
    return found


#: specrewrite's capture entry points: a stack walked out to one of them holds no frame of the model's
_CAPTURE_ENTRIES = frozenset(("via_export", "via_trace", "_capture", "_rewrite"))
#: code that FX generates (a GraphModule's forward, its lambdas): the user's line is the node's stack trace
_GENERATED = ("<eval_with_key>", "<string>")


def from_stack() -> Optional[str]:
    """The innermost user frame of the current call stack (walked from the inside out, stopping at the first
    user frame: cheap enough to call for every shape guard of a capture). Inside a graph's generated code (a
    graph captured again: the traced models of ``rewrite/_multi_trace``), the stack trace of the node running."""
    import linecache
    import sys

    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name in _CAPTURE_ENTRIES and code.co_filename.startswith(_OWN_DIR):
            return None   # (a guard made outside the model's forward: the frames beyond are the rewrite's caller)
        if code.co_filename.startswith(_GENERATED):
            from torch.fx.traceback import get_current_meta

            return from_stack_text((get_current_meta() or {}).get("stack_trace"))
        if not is_library_file(code.co_filename):
            line = linecache.getline(code.co_filename, frame.f_lineno)
            return fmt(code.co_filename, frame.f_lineno, code.co_name, line)
        frame = frame.f_back
    return None


def from_exception(e: BaseException) -> Tuple[Optional[str], Optional[str]]:
    """(user location, op) of an exception raised inside the user's model: the innermost user frame of its
    traceback, and the torch function that line calls (a spectral one first: ``torch.view_as_real(
    torch.fft.rfft(z))`` failing is about rfft), else the torch function the frame entered."""
    frames = traceback.extract_tb(e.__traceback__)
    where, op = None, None
    for i, f in enumerate(frames):
        if not is_library_file(f.filename):
            where = fmt(f.filename, f.lineno, f.name, f.line or "")
            inner = frames[i + 1] if i + 1 < len(frames) else None
            entered = inner.name if inner is not None and is_library_file(inner.filename) else None
            op = _called(f.line or "", entered)
    return where, op


_CALL = re.compile(r"((?:torch\.|\bF\.)?[A-Za-z_][\w.]*)\s*\(")
_SPECTRAL = re.compile(r"^torch\.(?:fft\.\w+|stft|istft)$|\.(?:stft|istft)$")


def _called(code: str, entered: Optional[str] = None) -> Optional[str]:
    """The op a failing line of user code is about: a spectral call in it first (``torch.fft.rfft``), then the
    torch function the traceback entered (``stft`` for ``torch.stft``), then the first ``torch.`` call."""
    names = [m.group(1) for m in _CALL.finditer(code)]
    for n in names:
        if _SPECTRAL.search(n):
            return n
    if entered in ("stft", "istft") or (entered or "").startswith(("fft", "rfft", "irfft", "ifft", "hfft")):
        return entered
    for n in names:
        if n.startswith("torch."):
            return n
    return None


def from_stack_text(text: Optional[str]) -> Optional[str]:
    """The innermost user frame of an FX node's ``stack_trace`` text."""
    if not text:
        return None
    lines = [ln.strip() for ln in str(text).strip().splitlines()]
    frames = []
    pat = re.compile(r'File "?([^",]+)"?, line (\d+)(?:, in (.+))?')
    for i, ln in enumerate(lines):
        m = pat.match(ln)
        if m:
            code = lines[i + 1] if i + 1 < len(lines) and not pat.match(lines[i + 1]) else ""
            frames.append((m.group(1), int(m.group(2)), (m.group(3) or "").strip(), code))
    return _innermost_user(frames)


def from_guard(guard) -> str:
    """A shape guard's source line, when it is in the user's code ('' when torch recorded none)."""
    loc = getattr(guard, "sloc", None)
    for frame in (getattr(loc, "maybe_user_loc", None), getattr(loc, "framework_loc", None)):
        if frame is None:
            continue
        if isinstance(frame, str):
            if is_library_file(frame.rsplit(":", 1)[0]):
                continue
            return frame
        if not is_library_file(frame.filename):
            return fmt(frame.filename, frame.lineno)
    return ""
