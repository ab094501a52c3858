"""DFT bases for analysis (torch.stft), synthesis (torch.istft) and plain FFTs, dense and factored.

All angles are 2*pi*m/N with an integer phase index m reduced mod N before any float arithmetic, which keeps
the bases exact to float rounding even at large N (k*n would overflow float32's integer range otherwise).

Layout conventions (shared by every emitter):
* analysis_dense -> (2F, N): rows [Re bins 0..F-1, Im bins 0..F-1]; frame (N) @ basis.T gives re/im.
* analysis_factored: N = N1*N2, input sample n = N2*n1 + n2, bin k = k1 + N1*k2.
  stage 1 (N2*2*N1, N1): group n2, channel (c, k1), tap n1; window and twiddle W_N^{n2 k1} folded in.
  stage 2 (2*N2, 2*K2): rows (c_in, n2), cols (c_out, k2), k2 < K2 (onesided needs only the low k2).
* the half form of it (``half_layout``, what the torch emitter writes): stage 1 only for k1 <= N1 // 2 (a real
  frame's other half is conjugate-symmetric to it), stage 2 a full N2-point DFT with conjugated rows for the
  bins k1 > N1 // 2, then one gather of the bins: 24 % less work than the form above at 1024 and 4096.
* synthesis_dense -> (2F, N): frame[n] = sum_k Re Z_k * A[k, n] + Im Z_k * A[F + k, n] (irfft semantics,
  Hermitian weights, DC/Nyquist imaginary parts ignored); window and scale folded in.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np


class _NumpyNS:
    """Array namespace for float64 numpy evaluation (the ``store`` and ``input`` modes)."""

    def arange(self, n):
        return np.arange(n, dtype=np.int64)

    def cos_sin(self, m, n):
        m = np.asarray(m) % n
        a = (2.0 * np.pi / n) * m.astype(np.float64)
        c, s = np.cos(a), np.sin(a)
        # exact at multiples of a quarter turn (DC / Nyquist rows are exactly real, as in torch's FFT)
        quarter = (4 * m) % n == 0
        q = (4 * m) // n % 4
        c = np.where(quarter, np.array([1.0, 0.0, -1.0, 0.0])[q], c)
        s = np.where(quarter, np.array([0.0, 1.0, 0.0, -1.0])[q], s)
        return c, s

    def const(self, arr):
        return np.asarray(arr, dtype=np.float64)

    def cat(self, xs, axis):
        return np.concatenate(xs, axis=axis)

    def stack(self, xs, axis):
        return np.stack(xs, axis=axis)


NP = _NumpyNS()


def _col(ns, n):
    return ns.arange(n).reshape(-1, 1)


def _row(ns, n):
    return ns.arange(n).reshape(1, -1)


def analysis_dense(ns, n_fft: int, n_bins: int, window, scale: float = 1.0):
    """(2F, N) forward basis with the window folded in: Re = w cos, Im = -w sin."""
    m = (_col(ns, n_bins) * _row(ns, n_fft)) % n_fft
    c, s = ns.cos_sin(m, n_fft)
    w = ns.const(np.asarray(window, dtype=np.float64).reshape(1, -1) * scale)
    return ns.cat([c * w, s * (-w)], 0)


def analysis_chunked(ns, n_fft: int, n_bins: int, window, scale: float, chunks: int):
    """``analysis_dense`` cut into ``chunks`` runs of Lc = ceil(N / chunks) taps (zero past N): (chunks*2F, Lc),
    rows (chunk, [Re | Im] bin), the weight of a grouped conv over the signal shifted by c*Lc (see
    ``dense_chunks``)."""
    lc = -(-n_fft // chunks)
    win = np.zeros(chunks * lc)
    win[:n_fft] = np.asarray(window, dtype=np.float64) * scale
    rows = []
    for part in range(chunks):
        m = (_col(ns, n_bins) * (_row(ns, lc) + part * lc)) % n_fft
        c, s = ns.cos_sin(m, n_fft)
        w = ns.const(win[part * lc:(part + 1) * lc].reshape(1, -1))
        rows += [c * w, s * (-w)]
    return ns.cat(rows, 0)


def fft_matrix(ns, n: int, n_out: int, inverse: bool, scale: float = 1.0):
    """Complex DFT of length n as a real (2n, 2*n_out) matrix acting on [re | im] row vectors.

    out_k = sum_j z_j exp(-+2 pi i j k / n), k < n_out. Row index (c_in, j), column index (c_out, k).
    """
    m = (_col(ns, n) * _row(ns, n_out)) % n
    c, s = ns.cos_sin(m, n)
    c = c * scale
    s = s * (scale if inverse else -scale)
    # e^{i sign th} = cos + i s':  (a + ib)(c + i s) = (ac - bs) + i(as + bc)
    top = ns.cat([c, s], 1)       # rows for re_in: -> re: c, im: s
    bottom = ns.cat([-s, c], 1)   # rows for im_in: -> re: -s, im: c
    return ns.cat([top, bottom], 0)


def _hermitian_weights(n_fft: int, n_bins: int, onesided: bool) -> np.ndarray:
    wk = np.ones(n_bins)
    if onesided:
        wk[1:] = 2.0
        if n_fft % 2 == 0 and n_bins > n_fft // 2:
            wk[n_fft // 2] = 1.0
        wk[n_fft // 2 + 1:] = 0.0
    return wk


def ifft_real_matrix(ns, n: int, n_bins: int, onesided: bool, scale: float = 1.0):
    """(2F, n): real part of the inverse DFT (irfft if onesided) from [re | im] bins, times ``scale`` (the
    caller passes the 1/n)."""
    m = (_col(ns, n_bins) * _row(ns, n)) % n
    c, s = ns.cos_sin(m, n)
    wk = ns.const((_hermitian_weights(n, n_bins, onesided) * scale).reshape(-1, 1))
    return ns.cat([c * wk, s * (-wk)], 0)


def synthesis_dense(ns, n_fft: int, n_bins: int, onesided: bool, window, scale: float):
    """(2F, N) overlap-add kernel: irfft (1/N included) times the synthesis window."""
    base = ifft_real_matrix(ns, n_fft, n_bins, onesided, scale / n_fft)
    return base * ns.const(np.asarray(window, dtype=np.float64).reshape(1, -1))


# ---------------------------------------------------------------------------------------------- factored


@dataclasses.dataclass(frozen=True)
class FactorPlan:
    n1: int  # inner DFT length (taps of the first stage)
    n2: int  # number of phases / groups
    k2: int  # second-stage outputs actually needed
    # phases are shifted copies of the signal and stage 1 a conv dilated by N2: any split (N2 need not divide the
    # hop); see ``framed_plan``
    framed: bool = False
    # the inverse only: stage A for k2 <= N2 // 2, the rest their conjugates (``synthesis_groups``)
    half: bool = False
    # the forward only: stage 2 (the N2-point DFT) itself split as N2 = P * Q (``kernels.split``); 0: one stage
    p: int = 0

    @property
    def n(self) -> int:
        return self.n1 * self.n2


def _divisors(n: int):
    return [d for d in range(1, n + 1) if n % d == 0]


def _cheapest_split(n_fft: int, n_bins: int, limit: int, framed: bool) -> FactorPlan | None:
    """The split N = N1*N2 (both >= 4, N2 | ``limit``) with the fewest multiply-adds per frame, if it costs under
    0.6x a dense basis; None below n_fft 256 (one matmul beats two stages there)."""
    if n_fft < 256:
        return None
    dense = 2.0 * n_bins * n_fft  # dense multiply-adds per frame
    best, best_cost = None, 0.6 * dense
    for n2 in _divisors(limit):
        n1 = n_fft // n2
        if n2 < 4 or n1 < 4:
            continue
        k2 = min(n2, -(-n_bins // n1))
        cost = 2.0 * n1 * n_fft + 4.0 * n1 * n2 * k2
        if cost < best_cost:
            best, best_cost = FactorPlan(n1, n2, k2, framed=framed), cost
    return best


@functools.lru_cache(maxsize=None)
def choose_plan(n_fft: int, hop: int | None, n_bins: int) -> FactorPlan | None:
    """Pick N = N1*N2 minimising multiply-adds, with N2 | hop (the first stage is a strided conv over N2
    phases). Returns None where a dense basis is as cheap (small or awkward sizes)."""
    return _cheapest_split(n_fft, n_bins, n_fft if hop is None else math.gcd(n_fft, hop), framed=False)


def forced_plan(n: int, hop: int, n_bins: int) -> FactorPlan | None:
    """A factored plan even where ``choose_plan`` prefers dense (strategy 'factored'); None if n has no split
    whose phase count divides the hop."""
    g = math.gcd(n, hop)
    for n2 in sorted((d for d in range(2, g + 1) if g % d == 0), key=lambda d: abs(d - n ** 0.5)):
        n1 = n // n2
        if n1 >= 2:
            return FactorPlan(n1, n2, min(n2, -(-n_bins // n1)))
    return None


#: most phases a framed plan cuts: each is one shifted copy of the signal
MAX_FRAMED_PHASES = 32


@functools.lru_cache(maxsize=None)
def framed_plan(n: int, n_bins: int) -> FactorPlan | None:
    """A split N = N1*N2 (N1 >= 4, 4 <= N2 <= MAX_FRAMED_PHASES) for an STFT whose hop no phase count divides
    (n_fft 525 with hop 144, 1024 or 2048 with hop 441, 255 with 196): phase n2 is the signal shifted by n2
    samples, and stage 1 a conv dilated by N2 with stride hop over those copies (no gather, no frame count in
    the graph). None where N has no such split (a prime, 2 x prime, ...).

    Accuracy decides: a dense conv sums n_fft products in one float32 accumulator, 3.9x torch.stft's own rms
    error at 1024 / 441 and 5.3x at 2048 / 441; the two stages sum N1 and 2*N2 products, so the split keeps the
    longer of the two sums shortest (then the cheaper one)."""
    best, best_key = None, None
    for n2 in range(4, MAX_FRAMED_PHASES + 1):
        n1 = n // n2
        if n % n2 or n1 < 4:
            continue
        k2 = min(n2, -(-n_bins // n1))
        key = (max(n1, 2 * n2), 2.0 * n1 * n + 4.0 * n1 * n2 * k2)
        if best_key is None or key < best_key:
            best, best_key = FactorPlan(n1, n2, k2, framed=True), key
    return best


def stft_plan(strategy: str, n_fft: int, hop: int, n_bins: int, framed: bool = True) -> FactorPlan | None:
    """The one planning policy for the forward STFT, shared by every emitter: None (dense) for 'dense'; the
    cheapest phase split for 'auto' where it beats dense; a factored plan wherever one exists for 'factored'.

    Under 'auto', from n_fft 64 a factored plan is taken even where it does not save work: accuracy decides.
    A dense basis sums n_fft products in one accumulator, 1.7x torch.stft's own float32 rms error at 128 / 32
    and 200 / 80 (2.2x at 255 / 64, 3.9x at 1024 / 441, 5.3x at 2048 / 441), where two stages give 1.00-1.04x;
    ONNX Runtime time at 10 s (1 thread, 2026-12-04) 6.1 against 5.5 ms at 128 / 32, 6.7 against 4.9 at
    200 / 80, 7.0 against 8.4 at 160 / 40. A phase split whose phase count divides the hop comes first
    (``forced_plan``); where none does, a framed plan over shifted copies (``framed_plan``), for an emitter
    that writes one (``framed``)."""
    if strategy == "dense":
        return None
    plan = choose_plan(n_fft, hop, n_bins)
    if plan is None and strategy != "factored" and n_fft < 64:
        return None
    plan = plan or forced_plan(n_fft, hop, n_bins)
    shifted = framed_plan(n_fft, n_bins) if framed else None
    # a phase count that divides the hop may be small (5 at 925 / 840, 2 at 2048 / 882), leaving N1 = N/5 or
    # N/2 products in one sum: the framed plan wins where it halves the longer sum
    if shifted is not None and (plan is None or _longest_sum(plan) > 2 * _longest_sum(shifted)):
        return shifted
    return plan


def _longest_sum(plan: FactorPlan) -> int:
    """Products in the longer of the two stages' sums (stage 1: N1 taps; stage 2: re and im of N2 phases)."""
    return max(plan.n1, 2 * plan.n2)


#: taps per float32 accumulator of a dense basis where n_fft has no split at all (``dense_chunks``)
CHUNK_TAPS = 64


def dense_chunks(strategy: str, n_fft: int, plan: FactorPlan | None) -> int:
    """How many chunks of taps a dense forward basis is cut into (``plan`` None: no factored plan is used), each
    summed on its own and then added (every emitter writes them as one grouped conv over shifted copies of the
    signal). One conv sums n_fft products in one float32 accumulator: 2.1x torch.stft's own rms error at
    619 / 601 (a prime: no split at all), 2.2x at 1021 / 256; in chunks of 64 taps, 0.65-0.74x. One chunk (a
    plain conv) under 'dense', where a plan is used, and below n_fft 64."""
    if plan is not None or strategy == "dense" or n_fft < 64:
        return 1
    return -(-n_fft // CHUNK_TAPS)


def stft_layout(strategy: str, n_fft: int, hop: int, n_bins: int, constant_weights: bool = True,
                split: bool = False):
    """(plan, chunks) of the forward STFT, for every emitter: ``stft_plan`` and ``dense_chunks``. A framed plan's
    conv is dilated, and coremltools takes no dilation on a weight that is not a constant: where the bases are
    inputs or computed in the graph (``constant_weights`` False), the chunked dense basis instead (as accurate,
    a dense basis's work). So too under 'auto' up to n_fft 1024 where the plan's longer sum exceeds 128 products
    (894 / 303 had only a 3-phase split: 298 taps in one sum, 2.8x the fuzzer's tolerance). ``split``: an emitter
    that writes stage 2 in two parts (``kernels.split``) gets such a plan where it saves enough work
    (``split.split_plan``)."""
    plan = stft_plan(strategy, n_fft, hop, n_bins)
    if plan is not None and plan.framed and not constant_weights:
        plan = None
    if plan is not None and strategy == "auto" and n_fft <= 1024 and _longest_sum(plan) > 2 * CHUNK_TAPS:
        plan = None   # a lopsided split (894 / 303: 3 phases of 298 taps); dense work is cheap at this size
    if split and plan is not None and not plan.framed:
        from .split import split_plan

        plan = split_plan(plan, n_fft, hop, n_bins) or plan
    return plan, dense_chunks(strategy, n_fft, plan)


#: the overlap-add of the inverse STFT as a sum of shifted frame blocks: at most this many shifts (n_fft / gcd
#: (n_fft, hop)); beyond, one conv_transpose does the overlap-add
MAX_OLA_SHIFTS = 64


def ola_shifts_ok(n_fft: int, hop: int) -> bool:
    return n_fft // math.gcd(n_fft, hop) <= MAX_OLA_SHIFTS


#: largest n_fft whose inverse takes the half form (``synthesis_groups``). Its stage A is computed once for k2 and
#: N2 - k2, so its rounding counts twice rather than two independent roundings: measured against torch.istft's
#: own float32 rms error (hann, hop n_fft / 4, 2026-12-05), the half form with the split below gives 1.08-1.14x
#: at 256-512, 1.33x at 1024 and 1.43x at 2048, but 1.50-1.65x at 4096 for every split, where the full form
#: with N1 = 128, N2 = 32 gives 1.35x
HALF_INVERSE_MAX = 2048


def _half_inverse_split(n_fft: int) -> FactorPlan | None:
    """The half-form split N = N1*N2 (both >= 4) whose longer sum is shortest (stage A sums 2*N1 products, stage
    B N2 + 2), then the cheapest (about (2*N1 + N2) multiply-adds per sample); None where N has no such split."""
    best, best_key = None, None
    for n2 in _divisors(n_fft):
        n1 = n_fft // n2
        if n1 < 4 or n2 < 4:
            continue
        key = (max(2 * n1, n2 + 2), 2 * n1 + n2)
        if best_key is None or key < best_key:
            best, best_key = FactorPlan(n1, n2, n2, half=True), key
    return best


def istft_plan(strategy: str, n_fft: int, hop: int, split: bool = False) -> FactorPlan | None:
    """The planning policy for the inverse STFT: a factored plan wherever one exists (n_fft >= 256) and the
    overlap-add shift count allows it (``ola_shifts_ok``), dense otherwise or for 'dense'. Up to
    ``HALF_INVERSE_MAX`` the half form (half the work of both stages), beyond it the cheapest full split.

    Accuracy decides, not speed: one dense conv_transpose sums 2 * (n_fft/2 + 1) products per sample in one
    accumulator, which gives 1.5-2.2x torch.istft's own float32 error (rms and max, n_fft 256-4096, float64
    reference); the two factored stages give 1.06-1.43x. In an iteration the difference compounds: torchaudio's
    GriffinLim (n_fft 512, hop 128, 32 iterations, momentum 0.99) ended at 7x eager float32's error in median over
    20 input roundings (2.9e-2 against 4.3e-3), and at 1.1x with the factored inverse (4.8e-3). The factored
    inverse as two grouped 1x1 convs is also the faster one in ONNX Runtime."""
    if strategy == "dense" or not ola_shifts_ok(n_fft, hop):
        return None
    plan = choose_plan(n_fft, None, n_fft)
    if plan is None and strategy == "factored":
        plan = forced_plan(n_fft, n_fft, n_fft)
    if plan is not None and split:
        from .split import inverse_split_plan

        found = inverse_split_plan(n_fft)
        if found is not None:
            return found
    if plan is not None and n_fft <= HALF_INVERSE_MAX:
        plan = _half_inverse_split(n_fft) or plan
    return plan


def synthesis_groups(plan: FactorPlan) -> int:
    """Stage A groups of the factored inverse: N2, or in the half form (``plan.half``) k2 = 0 .. N2 // 2 only. The
    output is real, so the spectrum is Hermitian and stage A's output for N2 - k2 is the conjugate of that for k2
    (with the twiddle folded in); stage B counts each k2 strictly between 0 and N2 / 2 twice, and the rest is
    never computed: half the work of both stages."""
    return plan.n2 // 2 + 1 if plan.half else plan.n2


def synthesis_conv_tables(plan: FactorPlan) -> dict:
    """Channel orders (numpy int64) of the factored inverse as two grouped 1x1 convs over (B, channels, T), shared
    by every emitter: ``gather_a`` picks stage A's input channels (k2, c, k1), k2 < ``synthesis_groups``, from a
    onesided spectrum laid out [re | im] (B, 2F, T), bin k = N2*k1 + k2, the mirrored half read at N - k;
    ``gather_b`` reorders stage A's outputs (k2, c, n1) to stage B's groups (n1, c, k2); ``sample_order`` puts
    stage B's outputs (n1, n2) in sample order n1 + N1*n2."""
    n1, n2, n = plan.n1, plan.n2, plan.n
    ha = synthesis_groups(plan)
    k2, c, k1 = np.meshgrid(np.arange(ha), np.arange(2), np.arange(n1), indexing="ij")
    k = k1 * n2 + k2
    o1, oc, o2 = np.meshgrid(np.arange(n1), np.arange(2), np.arange(ha), indexing="ij")
    samples = np.arange(n)
    return {"gather_a": (np.where(k > n // 2, n - k, k) + c * (n // 2 + 1)).reshape(-1),
            "gather_b": (o2 * 2 * n1 + oc * n1 + o1).reshape(-1),
            "sample_order": (samples % n1) * n2 + samples // n1}


def synthesis_conv_weights(ns, plan: FactorPlan, window, scale: float):
    """The grouped 1x1 conv weights of the factored inverse (see ``synthesis_conv_tables``), H =
    ``synthesis_groups``: stage A (H*2*N1, 2*N1, 1), whose columns carry -1 for a mirrored imaginary part
    (the conjugate) and 0 for the imaginary parts of DC and Nyquist (irfft ignores them); stage B (N1*N2, 2*H, 1)
    with ``scale`` / N and the synthesis window at sample n1 + N1*n2 folded in."""
    n1, n2, n = plan.n1, plan.n2, plan.n
    ha = synthesis_groups(plan)
    k2, c, k1 = np.meshgrid(np.arange(ha), np.arange(2), np.arange(n1), indexing="ij")
    k = k1 * n2 + k2
    sign = np.where((k > n // 2) & (c == 1), -1.0, 1.0)
    sign[(c == 1) & ((k == 0) | ((n % 2 == 0) & (k == n // 2)))] = 0.0
    a = synthesis_factored_a(ns, plan, half=plan.half) * ns.const(sign.reshape(ha, 1, 2 * n1))
    win = np.asarray(window, dtype=np.float64)[np.arange(n1)[:, None] + n1 * np.arange(n2)[None, :]]
    b = synthesis_factored_b(ns, plan, scale / n, half=plan.half).reshape(1, n2, 2 * ha) * ns.const(win.reshape(n1, n2, 1))
    return a.reshape(ha * 2 * n1, 2 * n1, 1), b.reshape(n1 * n2, 2 * ha, 1)


def analysis_factored(ns, plan: FactorPlan, window, scale: float = 1.0):
    """(stage1 (N2*2*N1, N1), stage2 (2*N2, 2*K2)) for a real input frame; see the module docstring."""
    return analysis_stage1(ns, plan, window, scale), analysis_stage2(ns, plan)


def analysis_stage2(ns, plan: FactorPlan):
    """Stage 2 of ``analysis_factored`` alone (it needs no window): (2*N2, 2*K2)."""
    return fft_matrix(ns, plan.n2, plan.k2, inverse=False)


def analysis_stage1(ns, plan: FactorPlan, window, scale: float = 1.0, half: bool = False):
    """Stage 1 of ``analysis_factored`` alone: (N2*2*N1, N1), window, scale and twiddles folded in; ``half``: only
    the first-stage bins k1 = 0 .. N1 // 2, (N2*2*J, N1) with J = N1 // 2 + 1 (see ``half_layout``). Rows by
    phase, in the order ``phase_order`` (natural unless stage 2 is split)."""
    n1, n2, n = plan.n1, plan.n2, plan.n
    nk = n1 // 2 + 1 if half else n1
    order = phase_order(plan)
    win = np.asarray(window, dtype=np.float64).reshape(n1, n2)[:, order]  # sample N2*i1 + i2 -> [i1, i2]
    r = ns.arange(n2)
    g = ((r % plan.p) * (n2 // plan.p) + r // plan.p if plan.p else r).reshape(n2, 1, 1)   # phase
    k1 = ns.arange(nk).reshape(1, nk, 1)    # first-stage bin
    t1 = ns.arange(n1).reshape(1, 1, n1)    # tap n1
    m = (n2 * t1 * k1 + g * k1) % n
    c, s = ns.cos_sin(m, n)                  # (N2, nk[k1], N1[tap])
    w = ns.const((win.T * scale).reshape(n2, 1, n1))
    stage1 = ns.stack([c * w, -(s * w)], 1)  # (N2, 2, nk, N1); (not s * -w: a second window constant in graphs)
    return stage1.reshape(n2 * 2 * nk, n1)


def phase_order(plan: FactorPlan) -> np.ndarray:
    """The phase held by each of stage 1's groups: 0 .. N2 - 1, or with stage 2 split as N2 = P * Q, group
    i = b*P + a holds phase Q*a + b, so that stage 2's first part (grouped by b) reads its P inputs in a row."""
    r = np.arange(plan.n2)
    return (r % plan.p) * (plan.n2 // plan.p) + r // plan.p if plan.p else r


@functools.lru_cache(maxsize=None)
def half_layout(plan: FactorPlan, n_bins: int):
    """The half-stage-1 form of the factored STFT of a real frame: (direct, conj, index).

    With the twiddle folded in, stage 1's outputs at k1 and N1 - k1 are related: T[n2, N1 - j] =
    W_N2^{n2} conj(T[n2, j]) (the inner DFT of real samples is Hermitian), so bin k = N1 - j + N1*k2 is
    conj(D_j[N2 - 1 - k2]), D_j the N2-point DFT of T[., j]. Stage 1 computes only j = 0 .. N1 // 2 (half its
    work); stage 2 gives rows m of D_j for the bins k1 <= N1 // 2 (``direct``) and the conjugates of rows m for
    the others (``conj``); ``index`` (n_bins,) picks bin k from the stage-2 output flattened as (row, j), rows in
    the order direct + conj."""
    n1, n2 = plan.n1, plan.n2
    nj = n1 // 2 + 1
    k = np.arange(n_bins)
    k1, k2 = k % n1, k // n1
    mirrored = k1 > n1 // 2
    m = np.where(mirrored, n2 - 1 - k2, k2)
    j = np.where(mirrored, n1 - k1, k1)
    direct, conj = np.unique(m[~mirrored]), np.unique(m[mirrored])
    row = np.where(mirrored, len(direct) + np.searchsorted(conj, m), np.searchsorted(direct, m))
    out = direct, conj, (row * nj + j).astype(np.int64)
    for a in out:   # cached: shared by every caller (an on_the_fly module rebuilds stage 2 on each call)
        a.flags.writeable = False
    return out


def half_stage2(ns, plan: FactorPlan, n_bins: int):
    """Stage 2 of the half form (``half_layout``): (2*N2 [c_in, n2], 2*R [c_out, row]), R = len(direct) +
    len(conj), the imaginary columns of the conjugated rows negated."""
    direct, conj, _ = half_layout(plan, n_bins)
    full = fft_matrix(ns, plan.n2, plan.n2, inverse=False)
    rows = np.concatenate([direct, conj])
    sign = ns.const(np.concatenate([np.ones(len(direct)), -np.ones(len(conj))]).reshape(1, -1))
    return ns.cat([full[:, rows], full[:, plan.n2 + rows] * sign], 1)


def synthesis_factored_a(ns, plan: FactorPlan, half: bool = False):
    """Stage A of the inverse (per k2, a length-N1 inverse DFT over k1 with twiddle e^{2 pi i k2 n1 / N}).

    Input bin k = N2*k1 + k2. Returns (K, 2*N1[c', n1], 2*N1[c, k1]) batched matrices (outputs by inputs), K = N2,
    or ``synthesis_groups`` for ``half`` (k2 = 0 .. N2 // 2: a real output's other half is their conjugate)."""
    n1, n2, n = plan.n1, plan.n2, plan.n
    nk = n2 // 2 + 1 if half else n2
    kk = ns.arange(nk).reshape(nk, 1, 1)
    t1 = ns.arange(n1).reshape(1, n1, 1)
    k1 = ns.arange(n1).reshape(1, 1, n1)
    m = (n2 * k1 * t1 + kk * t1) % n
    c, s = ns.cos_sin(m, n)   # (K, N1[n1], N1[k1]) for e^{+i th}
    re_out = ns.cat([c, -s], 2)    # from (re_in, im_in)
    im_out = ns.cat([s, c], 2)
    return ns.cat([re_out, im_out], 1)


def synthesis_factored_b(ns, plan: FactorPlan, scale: float, half: bool = False):
    """Stage B: x[n1 + N1*n2] = Re sum_k2 U[k2, n1] e^{2 pi i k2 n2 / N2}; (N2[n2], 2*K[c, k2]), K = N2. With
    ``half``, K = ``synthesis_groups``: U[N2 - k2] = conj(U[k2]) for a real output, so each k2 strictly between 0
    and N2 / 2 is weighted twice and the others once."""
    n1, n2, n = plan.n1, plan.n2, plan.n
    nk = n2 // 2 + 1 if half else n2
    m = (_col(ns, n2) * _row(ns, nk) * n1) % n
    c, s = ns.cos_sin(m, n)
    k2 = np.arange(nk)
    twice = ns.const(np.where((k2 == 0) | (2 * k2 == n2), 1.0, 2.0).reshape(1, nk) if half else np.ones((1, nk)))
    return ns.cat([c * (twice * scale), s * (twice * -scale)], 1)
