"""Core ML support: a coremltools op-registry plugin and a one-call rewritten route.

Two routes, both giving MIL programs without any ``complex_*`` / ``stft`` / ``fft`` op:

* ``register(mode=..., strategy=...)`` installs torch-frontend lowerings into coremltools so that a plain
  ``ct.convert`` of an *unchanged* ``torch.jit.trace`` / ``torch.export`` program works: ``torch.stft`` (every
  argument; dense or factored; the three modes), ``torch.istft``, ``torch.fft.{fft,ifft,rfft,irfft}`` and the
  decomposed ``aten._fft_*``, the complex ops (view_as_complex / view_as_real / complex / polar / angle / abs /
  real / imag / conj, + - * / with tensors, scalars and ``1j``, exp, sum / mean, pad, slicing, reshapes and the
  other view ops, casts), the window functions created inside forward (hann, hamming, blackman, bartlett,
  kaiser) and ``aten::Int`` / ``aten::Bool`` on traced shape arithmetic (a numpy-2 failure in coremltools).
  Complex values are real tensors with a trailing (re, im) dimension; any other coremltools op that meets one
  raises a ``SpecRewriteError`` naming the op. Registration is idempotent, never done at import, and
  ``with register(): ...`` restores coremltools' registry on exit (``unregister()`` restores it any time).
  In ``mode='input'`` the DFT bases become model inputs named ``sr_basis_*``; feed ``basis_inputs(mlmodel)``.
* ``convert(model, example_inputs, target=..., convert_to=..., precision=..., variable_length=...)``:
  ``specrewrite.rewrite`` -> ``torch.jit.trace`` -> ``ct.convert``.

Why coremltools fails today (coremltools 9.0, torch 2.13, numpy 2.4): ``torch.stft`` traced with its centre
padding emits ``aten::Int(NumToTensor(size))`` whose value coremltools converts with ``int()`` on a (1,)
array (an error with numpy >= 2); ``hann_window`` under ``torch.export`` has one positional input where
coremltools expects 5 or 6, and the other windows are missing; ``istft`` and ``polar`` / ``angle`` /
``view_as_complex`` have no lowering, nor do complex constants (TorchScript attribute kind ``cs`` and
``torch.export`` literals ``1j`` / ``torch.complex64`` fail while coremltools builds its graph); and
torchaudio's MelSpectrogram with a ``ct.RangeDim`` length fails in the ``lower_complex_dialect_ops`` pass:
torchaudio reshapes the complex STFT with its own ``size()``, which becomes ``complex_shape``; with a
static length it is constant-folded, with a symbolic one it is lowered by ``_lower_complex_shape``, which
reads ``op.data`` although the op's input is named ``x`` (an AttributeError). Our lowering never creates
complex dialect ops, so symbolic lengths work.

fp16. Core ML mlprogram computes in fp16 (max 65504) unless told otherwise. For |x| <= 1 and a window w
with the bases' scale e folded in, every STFT value obeys |X_k| <= A = ||w e||_1 (about n_fft/2 for hann)
and every per-bin power <= A^2; a filterbank output obeys mel_m <= min(A^2 max_m sum_k fb[k, m],
max(fb) n_fft ||w e||_2^2) (peak and Parseval bounds). The power of a full-scale hann STFT therefore
exceeds 65504 from n_fft = 1024 on. ``convert(..., precision='fp16')`` (``fp16_safe`` on by default)
multiplies the DFT bases of every Spectrogram / MelSpectrogram / MFCC / LFCC by the power of two
``s = 2^-ceil(log2(sqrt(B / 2^14)))`` (B: the largest squared bound above), so every scaled intermediate is
<= 2^14 for |x| <= 1 (2x amplitude headroom), and undoes ``s^power`` exactly at the first point where the
true values fit again: folded into the mel / linear filterbank, inside the MFCC / LFCC log
(``log(k mel + k eps) - log k``, ``10 log10(clamp(k mel, k amin)) - 10 log10 k``), or as a final rescale of
the output that runs in fp32 (it is a multiply by a power of two, kept out of fp16 by the op selector).
Scaling by a power of two is exact, so the error is the plain fp16 one. Error bound: every value and
basis weight is rounded to 11 significant bits (u = 2^-11 = 4.9e-4) and so is each op output; if the
accumulation inside a conv / matmul is wider than fp16 (as the evaluator assumes), a DFT value
X_k obeys |dX_k| <= 3u * sum_n |w_n e x_n| <= 3u * A, i.e. 1.5e-3 of the spectrum's bound, and the power,
filterbank and log add about 2u each; if the accumulation itself ran in fp16 the worst case would grow to
(n_fft + 3) u A, typically sqrt(n_fft) u A. Measured with the MIL evaluator (tests/mil_eval.py, declared
dtypes and fp16 emulation) at n_fft = 2048 for a full-scale sine, twice full scale and noise: 3.8e-4 to
5.8e-4 of the peak for MelSpectrogram, 5.2e-4 to 7.3e-4 for Spectrogram, 4.9e-4 to 1.4e-3 for MFCC; the
tests allow 1e-2 of the peak. The largest input that stays finite (MelSpectrogram, hop n_fft/4, every op in
fp16 except the final rescale): with fp16_safe an amplitude of 5.66 for a sine or a square wave at n_fft
1024, 2048 and 4096 (the worst-case bounds guarantee 2; real signals spread over several bins), 32 to 45
for uniform noise; without it 0.71 (n_fft 1024), 0.35 (2048) and 0.18
(4096) for a sine, i.e. full-scale audio overflows from n_fft 1024 on (n_fft 400: 2.0 without, 4.0 with).
On the plugin route the lowering of ``abs`` on complex values is overflow-free (``m sqrt(1 + (s/m)^2)``),
but a user's ``abs() ** 2`` is computed as written; use ``convert`` (or compensate yourself) for power
spectra in fp16, and ``fp16_op_selector`` to keep ``on_the_fly`` basis construction in fp32.

coremltools' private names are used only in ``_ct_private.py`` (listed in ``PRIVATE_NAMES`` there).
"""
from __future__ import annotations

try:
    import coremltools as _ct  # noqa: F401
except ImportError as _e:  # pragma: no cover - exercised only without the extra installed
    from ..errors import missing_extra as _missing

    raise _missing("coreml", "coremltools") from _e

from ._convert import convert, op_types
from ._ct_private import mil_program as _mil_program
from ._mil_ns import BASIS_VALUES as _BASIS_VALUES
from ._mil_ns import OTF_PREFIX as _OTF_PREFIX
from ._registry import Registration, is_registered, register, unregister

__all__ = ["register", "unregister", "is_registered", "Registration", "convert", "basis_inputs",
           "fp16_op_selector", "op_types"]


def basis_inputs(mlmodel) -> dict:
    """The values to feed for the ``sr_basis_*`` inputs a ``register(mode='input')`` conversion added.

    They are recorded when the model is converted (in this process): save them with the model if you predict
    elsewhere (``np.savez(path, **basis_inputs(mlmodel))``)."""
    prog = _mil_program(mlmodel)
    names = [n for f in prog.functions.values() for n in f.inputs if n.startswith("sr_basis_")]
    return {n: _BASIS_VALUES[n] for n in names}


def fp16_op_selector(op) -> bool:
    """For ``ct.transform.FP16ComputePrecision(op_selector=...)`` on the plugin route: keeps the ops that build
    ``on_the_fly`` bases (phase indices, cos / sin) in fp32, where the integer phases are exact."""
    return not op.name.startswith(_OTF_PREFIX)
