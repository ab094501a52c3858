"""The forward STFT's stage 2 split in two (three stages in all): N = N1 * N2 with N2 = P * Q.

Stage 1 (``dft.analysis_stage1``, half form) gives for each phase n2 and first-stage bin j <= N1 / 2 a complex
value T[n2, j] with the twiddle folded in; stage 2 is the N2-point DFT D_j[m] = sum_n2 T[n2, j] W_N2^(n2 m),
the same for every j. With n2 = Q*a + b and m = m1 + P*m2 it is Cooley-Tukey's

    D_j[m1 + P*m2] = sum_b W_Q^(b m2) [W_N2^(b m1) sum_a W_P^(a m1) T[Q*a + b, j]]

part A, for each b, a P-point DFT over a with the twiddle folded in (a 1x1 conv grouped by b: stage 1's groups
come in the order ``dft.phase_order``, b major), one channel gather, and part B, for each m1, a Q-point DFT over
b (a 1x1 conv grouped by m1). Per frame that is about N*N1 + 2*N*(P + Q) multiply-adds, against N*N1 + 2*N*N2
for one stage 2, and no sum longer than max(N1, 2P, 2Q) products. The bins are then gathered as in the half
form (``dft.half_layout``): bin k reads row m of j, conjugated for the mirrored half.
"""
from __future__ import annotations

import functools

import numpy as np

from .dft import FactorPlan, half_layout


def split_stage2(ns, plan: FactorPlan):
    """Both parts' 1x1 conv weights as one flat vector: part A (Q*2P, 2P) [rows (b, m1, c'), columns (a, c)],
    then part B (P*2Q, 2Q) [rows (m1, c', m2), columns (b, c)]."""
    p, q, n2 = plan.p, plan.n2 // plan.p, plan.n2
    b = ns.arange(q).reshape(q, 1, 1)
    m1 = ns.arange(p).reshape(1, p, 1)
    a = ns.arange(p).reshape(1, 1, p)
    c, s = ns.cos_sin(q * a * m1 + b * m1, n2)                   # e^{+i theta}; the DFT takes e^{-i theta}
    part_a = ns.stack([ns.stack([c, s], 3), ns.stack([-s, c], 3)], 2)           # (Q, m1, c', a, c)
    m2 = ns.arange(q).reshape(q, 1)
    bb = ns.arange(q).reshape(1, q)
    c, s = ns.cos_sin(m2 * bb, q)
    one = ns.stack([ns.stack([c, s], 2), ns.stack([-s, c], 2)], 0)              # (c', m2, b, c)
    part_b = ns.cat([one.reshape(1, 2 * q * 2 * q)] * p, 0)
    return ns.cat([part_a.reshape(-1), part_b.reshape(-1)], 0)


def split_sizes(plan: FactorPlan):
    """(P, Q, number of part A weights)."""
    p, q = plan.p, plan.n2 // plan.p
    return p, q, q * 2 * p * 2 * p


@functools.lru_cache(maxsize=None)
def split_layout(plan: FactorPlan, n_bins: int):
    """(gather_b, planes, signs, power) for the split stage 2, numpy int64 / float64, read-only.

    ``gather_b`` (2*N2,): part B's input channels (m1, b, c) from part A's outputs (b, m1, c'). Part B's outputs
    are channels (m1, c', m2) over (J, T). ``planes`` (2F,): bin k's real then imaginary value from those outputs
    flattened with J, ``signs`` (F,): -1 where the imaginary part is conjugated; ``power`` (F,): bin k from
    |.|^2 laid out (m1, m2, j) (the two planes summed before the gather)."""
    p, q = plan.p, plan.n2 // plan.p
    nj = plan.n1 // 2 + 1
    direct, conj, index = half_layout(plan, n_bins)
    rows = np.concatenate([direct, conj])
    row, j = index // nj, index % nj
    m = rows[row]
    m1, m2 = m % p, m // p
    mi, bi, ci = np.meshgrid(np.arange(p), np.arange(q), np.arange(2), indexing="ij")
    out = ((bi * p + mi) * 2 + ci).reshape(-1), \
        np.concatenate([(m1 * 2 * q + m2) * nj + j, (m1 * 2 * q + q + m2) * nj + j]), \
        np.where(row >= len(direct), -1.0, 1.0), \
        (m1 * q + m2) * nj + j
    for arr in out:
        arr.flags.writeable = False
    return out


#: a split plan is taken where it needs at most this share of the two-stage half form's multiply-adds
SPLIT_SHARE = 0.6
#: and from this n_fft on (below it, the extra gather and conv cost more than the work they save)
SPLIT_MIN_N = 1024


def work(plan: FactorPlan, n_bins: int) -> int:
    """Multiply-adds per frame of the half form: stage 1 (N2 * 2J * N1), then stage 2 in one part
    (J * 2R * 2N2) or split (J * (Q * (2P)^2 + P * (2Q)^2))."""
    nj = plan.n1 // 2 + 1
    first = plan.n2 * 2 * nj * plan.n1
    if plan.p:
        p, q = plan.p, plan.n2 // plan.p
        return first + nj * (q * 4 * p * p + p * 4 * q * q)
    direct, conj, _ = half_layout(plan, n_bins)
    return first + nj * 2 * (len(direct) + len(conj)) * 2 * plan.n2


def split_plan(plan: FactorPlan, n_fft: int, hop: int, n_bins: int):
    """A plan with stage 2 split (N = N1 * P * Q, P * Q | hop, N1, P, Q >= 4) whose work is at most
    ``SPLIT_SHARE`` of ``plan``'s, the least work first, then the shortest longest sum (max(N1, 2P, 2Q)); None
    where there is none or below ``SPLIT_MIN_N``."""
    if n_fft < SPLIT_MIN_N:
        return None
    g = np.gcd(n_fft, hop)
    best, best_key, limit = None, None, SPLIT_SHARE * work(plan, n_bins)
    for n2 in range(16, g + 1):
        if g % n2 or n_fft % n2 or n_fft // n2 < 4:
            continue
        for p in range(4, n2 // 4 + 1):
            if n2 % p:
                continue
            cand = FactorPlan(n_fft // n2, n2, min(n2, -(-n_bins // (n_fft // n2))), p=p)
            key = (work(cand, n_bins), max(cand.n1, 2 * p, 2 * (n2 // p)), cand.n1)
            if key[0] <= limit and (best_key is None or key < best_key):
                best, best_key = cand, key
    return best


# ------------------------------------------------------------------------------------- the inverse, stage A split
def inverse_split_sizes(plan: FactorPlan):
    """(H, P, Q, number of part A weights) of an inverse plan whose stage A (an N1-point inverse DFT per k2) is
    split as N1 = P * Q; H = stage A's groups (``dft.synthesis_groups``)."""
    from .dft import synthesis_groups

    ha, p, q = synthesis_groups(plan), plan.p, plan.n1 // plan.p
    return ha, p, q, ha * q * 2 * p * 2 * p


def inverse_split_tables(plan: FactorPlan) -> dict:
    """Channel orders (numpy int64) of the inverse with stage A split, N1 = P * Q, k1 = Q*ka + kb and
    n1 = n1a + P*n1b: ``gather_a`` picks part A's inputs (k2, kb, c, ka) from the onesided spectrum [re | im]
    (bin k = N2*k1 + k2, the mirrored half read at N - k); ``gather_m`` part M's inputs (k2, n1a, c, kb) from part
    A's outputs (k2, kb, c', n1a); ``gather_b`` stage B's inputs (n1, c, k2) from part M's outputs
    (k2, n1a, c', n1b); ``sample_order`` as in ``dft.synthesis_conv_tables``."""
    ha, p, q, _ = inverse_split_sizes(plan)
    n1, n2, n = plan.n1, plan.n2, plan.n
    k2, kb, c, ka = np.meshgrid(np.arange(ha), np.arange(q), np.arange(2), np.arange(p), indexing="ij")
    k = n2 * (q * ka + kb) + k2
    gather_a = np.where(k > n // 2, n - k, k) + c * (n // 2 + 1)
    k2, na, c, kb = np.meshgrid(np.arange(ha), np.arange(p), np.arange(2), np.arange(q), indexing="ij")
    gather_m = ((k2 * q + kb) * 2 + c) * p + na
    o1, oc, o2 = np.meshgrid(np.arange(n1), np.arange(2), np.arange(ha), indexing="ij")
    gather_b = ((o2 * p + o1 % p) * 2 + oc) * q + o1 // p
    samples = np.arange(n)
    return {"gather_a": gather_a.reshape(-1), "gather_m": gather_m.reshape(-1), "gather_b": gather_b.reshape(-1),
            "sample_order": (samples % n1) * n2 + samples // n1}


def inverse_split_weights(ns, plan: FactorPlan, window, scale: float):
    """(parts A and M as one flat vector, stage B): part A (H*Q groups (k2, kb); rows (c', n1a), columns (c, ka))
    a P-point inverse DFT with the twiddle e^{2 pi i kb n1a / N1}, the mirrored bins' imaginary columns negated
    and those of DC and Nyquist zero; part M (H*P groups (k2, n1a); rows (c', n1b), columns (c, kb)) a Q-point
    inverse DFT with the outer twiddle e^{2 pi i k2 n1 / N}; stage B as ``dft.synthesis_conv_weights``."""
    from .dft import synthesis_conv_weights

    ha, p, q, _ = inverse_split_sizes(plan)
    n1, n2, n = plan.n1, plan.n2, plan.n
    k2, kb, ka = np.meshgrid(np.arange(ha), np.arange(q), np.arange(p), indexing="ij")
    k = n2 * (q * ka + kb) + k2
    sign = np.where(k > n // 2, -1.0, 1.0)
    sign[(k == 0) | ((n % 2 == 0) & (k == n // 2))] = 0.0
    sgn = ns.const(sign.reshape(ha, q, 1, 1, p))
    kb_ = ns.arange(q).reshape(1, q, 1, 1)
    na_ = ns.arange(p).reshape(1, 1, p, 1)
    ka_ = ns.arange(p).reshape(1, 1, 1, p)
    c, s = ns.cos_sin(q * ka_ * na_ + kb_ * na_, n1)                    # (1, Q, P[n1a], P[ka])
    c, s = c.reshape(1, q, 1, p, p), s.reshape(1, q, 1, p, p)
    zero = ns.const(np.zeros((ha, 1, 1, 1, 1)))
    c, s = c + zero, s + zero                                            # (H, Q, 1, n1a, ka)
    part_a = ns.stack([ns.cat([c, -(s * sgn)], 4), ns.cat([s, c * sgn], 4)], 2)   # (H, Q, c', 1, n1a, [c, ka])
    k2_ = ns.arange(ha).reshape(ha, 1, 1, 1)
    na_ = ns.arange(p).reshape(1, p, 1, 1)
    nb_ = ns.arange(q).reshape(1, 1, q, 1)
    kb_ = ns.arange(q).reshape(1, 1, 1, q)
    c, s = ns.cos_sin(kb_ * nb_ * (n // q) + k2_ * (na_ + p * nb_), n)   # (H, P, Q[n1b], Q[kb])
    part_m = ns.stack([ns.cat([c, -s], 3), ns.cat([s, c], 3)], 2)       # (H, P, c', n1b, [c, kb])
    _, wb = synthesis_conv_weights(ns, plan, window, scale)
    return ns.cat([part_a.reshape(-1), part_m.reshape(-1)], 0), wb


def inverse_split_plan(n_fft: int):
    """The inverse's plan with stage A split (N = N1 * N2, N1 = P * Q, all >= 4) in the half form, from
    ``SPLIT_MIN_N``: the least work, about N * (2P + 2Q + N2) multiply-adds per frame (part A 2N*P, part M
    2N*Q, stage B N*N2), then the shortest longest sum (max(2P, 2Q, N2 + 2)); None where there is no such split.
    Measured against torch.istft's own float32 rms error (hann, hop n_fft / 4, 2026-12-05): 1.10x at 4096 (256
    x 16 or 128 x 32; the two-stage full form 1.35x, its half form 1.50x), 1.06-1.07x at 2048 (half form
    unsplit 1.43x)."""
    if n_fft < SPLIT_MIN_N:
        return None
    best, best_key = None, None
    for n2 in range(4, n_fft // 16 + 1):
        n1 = n_fft // n2
        if n_fft % n2:
            continue
        for p in range(4, n1 // 4 + 1):
            if n1 % p:
                continue
            q = n1 // p
            key = (2 * p + 2 * q + n2, max(2 * p, 2 * q, n2 + 2), -n1)
            if best_key is None or key < best_key:
                best, best_key = FactorPlan(n1, n2, n2, half=True, p=p), key
    return best
