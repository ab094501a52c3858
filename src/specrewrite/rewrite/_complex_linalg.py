"""Run-time helpers for the linear algebra rules (``rules_linalg``) on complex matrices carried as real pairs
(..., m, n, 2): the real block form for solves and inverses, and elimination unrolled over n for determinants
and Cholesky factors.
"""
from __future__ import annotations

import itertools

import torch

from . import _solve as S
from ._complex import pack
from ._complex_math import cprod_dim, hypot, im, re


def block(a):
    """The real (2n, 2n) form [[Ar, -Ai], [Ai, Ar]] of complex matrices a (..., n, n, 2): an algebra map, so
    products, inverses, solves and matrix functions commute with it."""
    ar, ai = re(a), im(a)
    top = torch.cat([ar, -ai], -1)
    bot = torch.cat([ai, ar], -1)
    return torch.cat([top, bot], -2)


def unblock(m, n: int):
    """The complex (..., n, k, 2) pair from the real block form of a complex matrix (first block column)."""
    return pack(m[..., :n, :n], m[..., n:, :n])


def stack_rows(b):
    """Complex (..., n, k) pair -> real (..., 2n, k) [Br; Bi] (right-hand sides of the block system)."""
    return torch.cat([re(b), im(b)], -2)


def unstack_rows(x, n: int):
    return pack(x[..., :n, :], x[..., n:, :])


def csolve(a, b, vector: bool):
    """A X = B for complex A (..., n, n) and B (..., n, k) or vector B (..., n) through the real block system."""
    n = S._sizes(a.shape)[-3]   # an int under torch.jit.trace too (no aten::Int for coremltools)
    m = block(a)
    if vector:
        rhs = torch.cat([re(b), im(b)], -1)
        x = S.solve(m, rhs)
        return pack(x[..., :n], x[..., n:])
    return unstack_rows(S.solve(m, stack_rows(b)), n)


def cinv(a):
    n = S._sizes(a.shape)[-3]
    return unblock(S.inv(block(a)), n)


def cmatrix_exp(a):
    n = S._sizes(a.shape)[-3]
    return unblock(torch.linalg.matrix_exp(block(a)), n)


def cscale(z, s):
    """Pair z times a Python number s (real or complex)."""
    s = complex(s)
    if s.imag == 0:
        return z * s.real
    return pack(re(z) * s.real - im(z) * s.imag, re(z) * s.imag + im(z) * s.real)


def cmatmul(a, b):
    ar, ai, br, bi = re(a), im(a), re(b), im(b)
    return pack(torch.matmul(ar, br) - torch.matmul(ai, bi), torch.matmul(ar, bi) + torch.matmul(ai, br))


def caddbmm(x, b1, b2, beta, alpha):
    """beta x + alpha sum_b b1[b] @ b2[b] (beta = 0 ignores x, nan included, like eager)."""
    prod = torch.sum(cmatmul(b1, b2), 0)
    out = cscale(prod, alpha)
    if complex(beta) != 0:
        out = out + cscale(x, beta)
    return out


def info_zeros(a):
    """The ``info`` output of the *_ex linalg ops (0: success) for a batch of matrices a (..., n, n, 2)."""
    return torch.zeros(a.shape[:-3], dtype=torch.int32, device=a.device)


def _mT(z):
    """Plain transpose of the matrix dims of a pair (..., m, n, 2)."""
    return z.transpose(-3, -2)


def csolve_side(a, b, left: bool, vector: bool):
    if left:
        return csolve(a, b, vector)
    return _mT(csolve(_mT(a), _mT(b), False))


def _triangle(x, upper: bool):
    return torch.triu(x) if upper else torch.tril(x)


def ctriangular(a, upper: bool, unit: bool):
    """The triangle of a (..., n, n, 2) that a triangular solve reads, with a unit diagonal if ``unit``."""
    ar, ai = _triangle(re(a), upper), _triangle(im(a), upper)
    if unit:
        n = S._sizes(ar.shape)[-1]
        eye = torch.eye(n, dtype=ar.dtype, device=ar.device)
        ar = ar - torch.diag_embed(torch.diagonal(ar, 0, -2, -1)) + eye
        ai = ai - torch.diag_embed(torch.diagonal(ai, 0, -2, -1))
    return pack(ar, ai)


def csolve_triangular(a, b, upper: bool, left: bool, unit: bool):
    return csolve_side(ctriangular(a, upper, unit), b, left, False)


def cadjoint(z):
    """Conjugate transpose of the matrix dims."""
    t = _mT(z)
    return pack(re(t), -im(t))


def ccholesky_solve(b, l, upper: bool):
    """A X = B with A = L L^H: two triangular solves through the block system."""
    t = ctriangular(l, upper, False)
    first, second = (cadjoint(t), t) if upper else (t, cadjoint(t))
    return csolve(second, csolve(first, b, False), False)


def ccholesky_inverse(l, upper: bool):
    n = S._sizes(l.shape)[-3]
    eye = torch.eye(n, dtype=l.dtype, device=l.device)
    eye = torch.stack([eye, torch.zeros_like(eye)], -1).expand(S._sizes(l.shape))
    return ccholesky_solve(eye, l, upper)


def _cdiv_parts(ar, ai, br, bi):
    d = br * br + bi * bi
    return (ar * br + ai * bi) / d, (ai * br - ar * bi) / d


def clu(a):
    """LU factorisation with partial pivoting of complex matrices a (..., m, n, 2), LAPACK getrf's way (pivot: the
    largest |re| + |im| in the column; the multipliers stored below U's diagonal; row swaps applied to whole rows),
    unrolled over min(m, n). Returns (LU pair, pivots (..., k) int32 1-based, number of swaps (..., ) float)."""
    m, n = S._sizes(a.shape)[-3:-1]
    ar, ai = re(a), im(a)
    batch = ar.shape[:-2]
    rows = torch.arange(m, device=a.device)
    pivots = []
    swaps = torch.zeros(batch, dtype=ar.dtype, device=a.device)
    for k in range(min(m, n)):
        col = torch.abs(ar[..., k:, k]) + torch.abs(ai[..., k:, k])            # (..., m - k)
        p = torch.argmax(col, -1) + k                                         # (...,)
        pivots.append(p + 1)
        pk = p.unsqueeze(-1)
        perm = torch.where(rows == k, pk, torch.where(rows == pk, torch.full_like(pk, k), rows))
        gidx = perm.unsqueeze(-1).expand(batch + (m, n))
        ar, ai = torch.gather(ar, -2, gidx), torch.gather(ai, -2, gidx)
        swaps = swaps + (p != k).to(ar.dtype)
        if k + 1 < m:
            pr, pi = ar[..., k, k], ai[..., k, k]
            zero = (pr == 0) & (pi == 0)        # a zero pivot (singular): LAPACK leaves the column as it is
            sr = torch.where(zero, torch.ones_like(pr), pr)
            si = torch.where(zero, torch.zeros_like(pi), pi)
            fr, fi = _cdiv_parts(ar[..., k + 1:, k], ai[..., k + 1:, k], sr.unsqueeze(-1), si.unsqueeze(-1))
            fr = torch.where(zero.unsqueeze(-1), ar[..., k + 1:, k], fr)
            fi = torch.where(zero.unsqueeze(-1), ai[..., k + 1:, k], fi)
            f_r, f_i = fr.unsqueeze(-1), fi.unsqueeze(-1)                      # (..., m-k-1, 1)
            rr, ri = ar[..., k, k + 1:].unsqueeze(-2), ai[..., k, k + 1:].unsqueeze(-2)
            upd = ~zero.unsqueeze(-1).unsqueeze(-1)
            low_r = torch.where(upd, ar[..., k + 1:, k + 1:] - (f_r * rr - f_i * ri), ar[..., k + 1:, k + 1:])
            low_i = torch.where(upd, ai[..., k + 1:, k + 1:] - (f_r * ri + f_i * rr), ai[..., k + 1:, k + 1:])
            ar = torch.cat([ar[..., : k + 1, :], torch.cat([ar[..., k + 1:, :k], f_r, low_r], -1)], -2)
            ai = torch.cat([ai[..., : k + 1, :], torch.cat([ai[..., k + 1:, :k], f_i, low_i], -1)], -2)
    piv = torch.stack(pivots, -1).to(torch.int32) if pivots else torch.zeros(batch + (0,), dtype=torch.int32,
                                                                               device=a.device)
    return pack(ar, ai), piv, swaps


def clu_pivots(a):
    """(re, im) of U's diagonal and the number of row swaps of ``clu``."""
    lu, _, swaps = clu(a)
    d = torch.diagonal(lu, 0, -3, -2)           # (..., 2, n)
    return d[..., 0, :], d[..., 1, :], swaps


def clu_factor(a):
    lu, piv, _ = clu(a)
    return lu, piv


def cpermutation(pivots, m: int, dtype):
    """P (..., m, m) real with A = P L U from 1-based LAPACK pivots (..., k)."""
    batch = pivots.shape[:-1]
    rows = torch.arange(m, device=pivots.device)
    order = rows.expand(batch + (m,))
    for i in range(pivots.shape[-1]):
        p = (pivots[..., i].long() - 1).unsqueeze(-1)                         # (..., 1)
        at_i = torch.gather(order, -1, torch.full_like(p, i))
        at_p = torch.gather(order, -1, p)
        order = torch.where(rows == i, at_p, torch.where(rows == p, at_i, order))
    # row j of P L U is row order[j] of A: P[order[j], j] = 1
    return (order.unsqueeze(-2) == rows.unsqueeze(-1)).to(dtype)


def clu_unpack(lu, pivots, unpack_data: bool = True, unpack_pivots: bool = True):
    """(P, L, U) as pairs from an LU pair (..., m, n, 2) and its pivots."""
    m, n = S._sizes(lu.shape)[-3:-1]
    k = min(m, n)
    lr, li = re(lu), im(lu)
    eye = torch.eye(m, k, dtype=lr.dtype, device=lr.device)
    low = pack(torch.tril(lr[..., :, :k], -1) + eye, torch.tril(li[..., :, :k], -1))
    up = pack(torch.triu(lr[..., :k, :]), torch.triu(li[..., :k, :]))
    p = cpermutation(pivots, m, lr.dtype)
    p = pack(p, torch.zeros_like(p))
    return p, low, up


def clu_solve(lu, pivots, b, left: bool, adjoint: bool):
    """A X = B (or X A = B; A^H for ``adjoint``) with A = P L U rebuilt from the factors."""
    p, low, up = clu_unpack(lu, pivots)
    a = cmatmul(p, cmatmul(low, up))
    if adjoint:
        a = cadjoint(a)
    return csolve_side(a, b, left, False)


def cdet(a):
    """det of complex matrices (..., n, n, 2): the product of U's diagonal (pairwise) times (-1)^swaps."""
    n = S._sizes(a.shape)[-3]
    if n == 0:
        return torch.zeros(a.shape[:-3] + (2,), dtype=a.dtype, device=a.device) + torch.tensor(
            [1.0, 0.0], dtype=a.dtype, device=a.device)
    dr, di, swaps = clu_pivots(a)
    d = cprod_dim(pack(dr, di), -2, n, False)
    sign = 1.0 - 2.0 * torch.remainder(swaps, 2.0)
    return d * sign.unsqueeze(-1)


def cslogdet(a):
    """(sign, log|det|) of complex matrices: sign = det / |det| (0 for a singular matrix), log|det| the sum of
    log|u_kk| (no overflow of the product)."""
    n = S._sizes(a.shape)[-3]
    if n == 0:
        return cdet(a), torch.zeros(a.shape[:-3], dtype=a.dtype, device=a.device)
    dr, di, swaps = clu_pivots(a)
    mag = hypot(dr, di)
    logabs = torch.sum(torch.log(mag), -1)
    safe = torch.where(mag > 0, mag, torch.ones_like(mag))
    unit = pack(dr / safe, di / safe)
    s = cprod_dim(unit, -2, n, False)
    parity = 1.0 - 2.0 * torch.remainder(swaps, 2.0)
    singular = (mag == 0).any(-1)
    s = torch.where(singular.unsqueeze(-1), torch.zeros_like(s), s * parity.unsqueeze(-1))
    return s, logabs


def ccholesky(a, upper: bool):
    """Cholesky factor of Hermitian positive-definite complex matrices (..., n, n, 2) (only the lower triangle
    is read, like LAPACK), column by column over the static n; upper: U = L^H."""
    n = S._sizes(a.shape)[-3]
    if n == 0:
        return a.clone()
    ar, ai = re(a), im(a)
    cols_r, cols_i = [], []
    for j in range(n):
        # column j of L below and on the diagonal: (A[:, j] - sum_k<j L[:, k] conj(L[j, k])) / L[j, j]
        vr, vi = ar[..., :, j], ai[..., :, j]
        for k in range(j):
            lr, li = cols_r[k], cols_i[k]
            cr, ci = lr[..., j:j + 1], -li[..., j:j + 1]         # conj(L[j, k])
            vr = vr - (lr * cr - li * ci)
            vi = vi - (lr * ci + li * cr)
        d = torch.sqrt(vr[..., j:j + 1])                          # real, positive
        below = torch.arange(n, device=a.device) >= j
        zero = torch.zeros_like(vr)
        col_r = torch.where(below, vr / d, zero)
        col_i = torch.where(below & (torch.arange(n, device=a.device) > j), vi / d, zero)
        cols_r.append(col_r)
        cols_i.append(col_i)
    low = pack(torch.stack(cols_r, -1), torch.stack(cols_i, -1))
    return cadjoint(low) if upper else low


def ccov(x, correction, fweights=None, aweights=None):
    """torch.cov of complex variables x (vars, obs, 2) or (obs, 2): weighted mean, then
    (x - avg) (w (x - avg))^H / norm with torch's normalisation (a non-positive norm becomes 0, like eager)."""
    x2 = x if x.dim() == 3 else x.reshape(1, -1, 2)
    n_obs = x2.shape[1]
    w = fweights
    if aweights is not None:
        w = aweights if w is None else w * aweights
    if w is None:
        w_sum = torch.tensor(float(n_obs), dtype=x.dtype, device=x.device)
        avg = torch.sum(x2, 1) / w_sum
    else:
        w_sum = torch.sum(w).to(x.dtype)
        avg = torch.sum(x2 * w.to(x.dtype).unsqueeze(-1), 1) / w_sum
    if w is not None and aweights is not None and correction != 0:
        norm = w_sum - correction * torch.sum(w * aweights).to(x.dtype) / w_sum
    else:
        norm = w_sum - correction
    norm = torch.where(norm <= 0, torch.zeros_like(norm), norm)
    xc = x2 - avg.unsqueeze(1)
    rhs = xc if w is None else xc * w.to(x.dtype).unsqueeze(-1)
    c = cmatmul(xc, cadjoint(rhs)) / norm
    keep = [s for s in c.shape[:-1] if s != 1]
    return c.reshape(keep + [2])


def ccorrcoef(x):
    """torch.corrcoef: cov / (stddev stddev^T) with stddev = sqrt(Re diag), both parts clipped to [-1, 1]."""
    c = ccov(x, 1)
    if c.dim() == 1:       # a single variable: c / c
        d = re(c) * re(c) + im(c) * im(c)
        return pack((re(c) * re(c) + im(c) * im(c)) / d, (im(c) * re(c) - re(c) * im(c)) / d)
    sd = torch.sqrt(torch.diagonal(re(c), 0, -2, -1))
    c = c / sd.reshape(-1, 1, 1) / sd.reshape(1, -1, 1)
    return torch.clamp(c, -1.0, 1.0)


EINSUM_MAX_COMPLEX = 3   # 2^k real einsums for k complex operands; past that, torch's decomposition


def ceinsum(equation: str, operands, is_complex):
    """``torch.einsum`` of complex pairs (and real tensors) as real einsums of the same equation, one for each
    choice of real / imaginary part per complex operand, signed by i^k: no operand grows an axis, so the ranks
    stay those of the equation (torch's decomposition of a complex einsum builds a rank-6 pair from rank-4
    operands, past Core ML's rank 5: every Fourier neural operator's spectral convolution)."""
    choices = [((re(x), 0), (im(x), 1)) if c else ((x, 0),) for x, c in zip(operands, is_complex)]
    parts = [None, None]
    for combo in itertools.product(*choices):
        k = sum(p for _, p in combo)
        t = torch.einsum(equation, *[x for x, _ in combo])
        acc = parts[k % 2]
        neg = (k // 2) % 2 == 1
        parts[k % 2] = (-t if neg else t) if acc is None else (acc - t if neg else acc + t)
    return pack(parts[0], parts[1])
