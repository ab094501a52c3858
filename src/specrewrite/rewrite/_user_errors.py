"""Errors about the user's model and inputs, said in the user's terms: the op, the user's line, torch's own
message and the fix. Also the wrapper that turns any other exception escaping ``rewrite()`` into a
``SpecRewriteError`` that says it is a specrewrite bug."""
from __future__ import annotations

import re
import traceback
from typing import Optional

import torch

from .._where import from_exception
from ..errors import SpecRewriteError

# (pattern in torch's message, fix); the first match wins
_FIXES = (
    (r"window tensor of size|window shape|window has to be|window.*length",
     "pass a 1-D window of length win_length (win_length defaults to n_fft)"),
    (r"frequency dimension|n_fft / 2 \+ 1",
     "the spectrum's frequency axis must hold n_fft // 2 + 1 bins (onesided) or n_fft (two-sided): give istft the "
     "n_fft of the stft that made it"),
    (r"Padding size should be less than|non-zero dimensions",
     "the clip is empty or shorter than the centre padding (n_fft // 2) that reflect padding needs: pass a longer "
     "clip, or pad_mode='constant'"),
    (r"Dimension out of range",
     "pass dim / dims that the input has (an FFT over axis d needs an input of rank > d)"),
    (r"expected a 1D or 2D tensor|expected a 2D or 3D tensor|Expected.*1D.*2D|not supported for \dD input",
     "pass audio shaped (time,) or (batch, time) to stft (fold other axes into the batch: "
     "x.reshape(-1, x.shape[-1])), and a spectrogram shaped (freq, frames) or (batch, freq, frames) to istft"),
    (r"0 < hop_length <= win_length",
     "use 1 <= hop_length <= win_length (istft needs frames that overlap or touch)"),
    (r"hop_length > 0|0 < hop_length|hop_length.*positive|expected hop_length",
     "use hop_length >= 1 (torch's default is n_fft // 4, which is 0 for n_fft < 4)"),
    (r"n_fft.*(?:> 0|positive|<=)|expected 0 < n_fft|0 < n_fft",
     "use 1 <= n_fft <= the padded input length"),
    (r"win_length.*(?:<=|n_fft)|expected 0 < win_length",
     "use 0 < win_length <= n_fft"),
    (r"NOLA|overlap.add|window overlap",
     "the window and hop do not satisfy NOLA (the summed squared windows vanish somewhere): use a window "
     "without zeros at its ends (or center=True) and a hop of at most win_length // 2"),
    (r"invalid combination of arguments|must be int|an integer is required",
     "pass n_fft, hop_length and win_length as Python ints (int(...)), and tensors where torch expects them"),
    (r"(?:Half|BFloat16|bfloat16|float16|ComplexHalf)",
     "float16 / bfloat16 FFTs are not run by torch on CPU: rewrite in float32 (model.float(), x.float()) and "
     "lower precision when converting (specrewrite.coreml.convert(precision='fp16'))"),
    (r"\b(?:Long|Int|Bool|Byte|Short|Char)Tensor\b|floating point or complex|expected a tensor of floating|"
     r"not implemented for '(?:Bool|Long|Int|Short|Char|Byte)'",
     "pass float32 audio (x.float(), or x / 32768.0 for 16-bit PCM)"),
    (r"return_complex",
     "pass return_complex=True (and torch.view_as_real if real pairs are wanted)"),
    (r"size mismatch|must match the size|shape .* is invalid|mat1 and mat2|shapes cannot be multiplied",
     "pass example inputs of the shape the model expects (the shape it was trained on)"),
)


_SIGNATURE = re.compile(r"^i?stft\([^()]*\)\s*:?\s*")


def fix_for(message: str) -> str:
    message = _SIGNATURE.sub("", message)   # torch's 'stft(<every argument>) : <what is wrong>'
    for pat, fix in _FIXES:
        if re.search(pat, message, flags=re.IGNORECASE):
            return fix
    return "pass example inputs the model accepts in eager (shapes, dtypes, number of inputs)"


def model_raises(e: BaseException, what: str = "the example inputs") -> SpecRewriteError:
    """The model itself failed on ``what``: name the op and the user's line from the traceback, keep torch's
    message, add the fix."""
    where, op = from_exception(e)
    msg = str(e).strip()
    first = msg.splitlines()[0] if msg else ""
    op_name = _op_name(op)
    text = f"the model raises on {what}: {type(e).__name__}: {first[:400]}"
    return SpecRewriteError(text, op=op_name, where=where, fix=fix_for(msg))


def _op_name(op: Optional[str]) -> str:
    if not op:
        return "model"
    if op.startswith("torch."):
        return op
    if op in ("stft", "istft"):
        return f"torch.{op}"
    if op.startswith(("fft", "rfft", "irfft", "ifft", "hfft", "ihfft")):
        return f"torch.fft.{op}"
    return op.split(".")[-1] if "." in op and not op.startswith(("torch", "F.")) else op


def value_read(e: BaseException) -> Optional[SpecRewriteError]:
    """The rewritten graph failed one of the draft capture's run-time checks on a value the model's Python read from
    a tensor (``float(t)``, ``t.item()``, ``bool(t)``) at the example inputs themselves: the capture fixed what
    the Python did with that value to the example's, and the rewritten graph computes it within float32
    rounding of eager (torchaudio's ``Vad``: ``float(torch.sum(rfft(x).abs() ** 2))``). A clear error, not
    a bug of ours: no graph can hold Python that branches on values."""
    msg = str(e)
    if "Runtime assertion failed for expression" not in msg:
        return None
    expr = msg.split("Runtime assertion failed for expression", 1)[1].strip().split(" on node")[0][:200]
    return SpecRewriteError(
        "the model's Python reads a value from a tensor (float(t), t.item(), bool(t) or int(t) of a value "
        f"computed from the input) and what it does with it was fixed to the example's value (check {expr}); "
        "the rewritten graph computes that value within float32 rounding of eager and fails the check",
        op="rewrite", where=None if "eval_with_key" in str(from_exception(e)[0]) else from_exception(e)[0],
        fix="keep the value a tensor (torch.log(t) instead of math.log(float(t)), torch.where instead of if), "
            "or run that part of the model outside the rewritten graph")


def internal_error(e: BaseException) -> SpecRewriteError:
    """An exception from specrewrite's own code: a bug of ours, said so, with what to send."""
    known = value_read(e)
    if known is not None:
        return known
    where, _ = from_exception(e)
    inner = traceback.extract_tb(e.__traceback__)
    at = f"{inner[-1].filename}:{inner[-1].lineno}" if inner else "?"
    msg = str(e).strip().splitlines()
    return SpecRewriteError(
        f"internal error ({type(e).__name__}: {msg[0][:300] if msg else ''}; raised at {at})", op="rewrite",
        where=where, fix="this is a specrewrite bug, not a problem with your model: please report it with the "
        "model (or a small one that shows it), the example input shapes, torch " + torch.__version__
        + " and this traceback; rewrite(..., dynamic_shapes=False) or strict=False may avoid it meanwhile")
