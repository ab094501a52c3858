"""Real-valued torch.fft along the last dimension: rfft (r2c), irfft (c2r) and fft/ifft (c2c).

Complex tensors are carried as real tensors with a trailing dimension of 2. A length whose plan is one stage
(see ``kernels.fft_plan``: at most 8 points, or a prime up to 31) is one dense matrix (bins and the (re, im) pair interleaved, no transpose at run time). Longer
transforms follow a factored plan from ``kernels.fft_plan``: mixed-radix Cooley-Tukey stages (a small dense
DFT as a batched matmul, then a twiddle multiply), or Bluestein's chirp-z through a smooth-length FFT for
lengths with a large prime factor. An even-length rfft / irfft runs a half-length complex FFT on the samples
packed in pairs (x[2m] + i x[2m+1]) plus a per-bin split / merge step.

All the constants of a factored transform are one flat tensor ``fft_basis`` (a buffer in ``store`` mode, one
extra input in ``input`` mode); ``on_the_fly`` rebuilds them in the graph, Bluestein's filter spectrum
included (computed with the same plan).
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch

from ..kernels import (NP, analysis_dense, chirp, chirp_filter, ct_constants, ct_shapes, fft_matrix,
                       ifft_real_matrix, irfft_pre, plan_fft, rfft_post)
from ..kernels.fft_plan import ACCURATE_RADIX, check_length, check_weights, pair_counts, symmetric
from ..modes import Mode
from .bases import BasisHolder, TorchNS


# ------------------------------------------------------------------------------------------ executors
def _cmul(z: torch.Tensor, w: torch.Tensor, conj_z: bool = False) -> torch.Tensor:
    """Complex product of pairs (..., L, 2) * (L, 2), conjugating z first if asked."""
    a, b = z[..., 0], z[..., 1]
    c, s = w[..., 0], w[..., 1]
    if conj_z:
        return torch.stack([a * c + b * s, a * s - b * c], dim=-1)
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1)


def pair_in(y: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """The slots of a symmetric stage along ``dim`` (size r): [x_0, x_j + x_{r-j}, (x_{r/2}), x_j - x_{r-j}]."""
    h = (r - 1) // 2
    head, tail = y.narrow(dim, 1, h), y.narrow(dim, r - h, h).flip(dim)
    mid = [y.narrow(dim, r // 2, 1)] if r % 2 == 0 else []
    return torch.cat([y.narrow(dim, 0, 1), head + tail] + mid + [head - tail], dim)


def pair_out(y: torch.Tensor, r: int, dim: int, complex_dim: Optional[int] = None) -> torch.Tensor:
    """Bins k = 0..r-1 along ``dim`` from a symmetric stage's rows [A_0, A_1..A_h, (A_{r/2}), B_1..B_h]:
    X[k] = A_k -/+ B_k, X[r - k] = A_k +/- B_k (re / im). ``complex_dim``: the (re, im) axis; None: real only."""
    na, h = pair_counts(r)
    assert dim < 0 and (complex_dim is None or complex_dim < dim)   # negative: dim stays valid per channel
    parts = [y] if complex_dim is None else [y.select(complex_dim, 0), y.select(complex_dim, 1)]
    out = []
    for c, t in enumerate(parts):
        a, b = t.narrow(dim, 0, na), t.narrow(dim, na, h)
        a1 = a.narrow(dim, 1, h)
        lo, hi = (a1 - b, a1 + b) if c == 0 else (a1 + b, a1 - b)
        mid = [a.narrow(dim, h + 1, 1)] if na > h + 1 else []
        out.append(torch.cat([a.narrow(dim, 0, 1), lo] + mid + [hi.flip(dim)], dim))
    return out[0] if complex_dim is None else torch.stack(out, complex_dim)


def _ct(z: torch.Tensor, radices, c: Dict[str, torch.Tensor], real_in: bool = False,
        real_out: bool = False) -> torch.Tensor:
    """Cooley-Tukey stages over the last axis: (B, n, 2) or (B, n) if real_in -> (B, n, 2) or (B, n) if
    real_out. See kernels.fft_plan for the layout of each stage (and of a symmetric one)."""
    n, s = math.prod(radices), len(radices)
    r = radices[0]
    if real_in:
        y = z.reshape(-1, 1, r, n // r)
    else:
        y = z.transpose(-1, -2).reshape(-1, 1, 2 * r, n // r)
    p = 1
    for i, r in enumerate(radices):
        q = n // (p * r)
        sym = symmetric(r)
        rin, rout = real_in and i == 0, real_out and i == s - 1
        if i == s - 1:   # Q = 1: one (B P, [c, j]) x ([c, j], [c, k]) product (the matrix is stored transposed)
            y = y.reshape(-1, p, y.shape[-2])
            if sym:
                y = (pair_in(y, r, -1) if rin else pair_in(y.reshape(-1, p, 2, r), r, -1).reshape(-1, p, 2 * r))
            y = torch.matmul(y, c[f"m{i}"])
            if sym:
                y = pair_out(y, r, -1) if rout else pair_out(y.reshape(-1, p, 2, r), r, -1, -2).reshape(-1, p, 2 * r)
            break
        if sym:
            y = pair_in(y, r, -2) if rin else pair_in(y.reshape(-1, p, 2, r, q), r, -2).reshape(-1, p, 2 * r, q)
        y = torch.matmul(c[f"m{i}"], y)                         # (B, P, [c, k_i], Q)
        y = y.reshape(-1, p, 2, r, q)
        if sym:
            y = pair_out(y, r, -2, -3)
        a, b = y[:, :, 0], y[:, :, 1]
        t = c[f"t{i}"]
        tc, ts = t[0], t[1]
        re, im = a * tc - b * ts, a * ts + b * tc                # (B, P, r, Q)
        r2 = radices[i + 1]
        p *= r   # (B, P r, [c,] r2, Q / r2): rank 5 at most (Core ML's limit)
        y = torch.stack([re.reshape(-1, p, r2, q // r2), im.reshape(-1, p, r2, q // r2)], dim=2)
        y = y.reshape(-1, p, 2 * r2, q // r2)
    # y: (B, r_1..r_{s-1}, [c,] r_s) in digit order k_1..k_s; the output index has k_1 fastest
    lead = tuple(radices[:-1])
    if real_out:
        y = y.reshape((-1,) + lead + (radices[-1],))
        return y.permute([0, s] + list(range(s - 1, 0, -1))).reshape(-1, n)
    y = y.reshape((-1,) + lead + (2, radices[-1]))
    return y.permute([0, s + 1] + list(range(s - 1, 0, -1)) + [s]).reshape(-1, n, 2)


def _bluestein(z: torch.Tensor, plan, c: Dict[str, torch.Tensor], n_out: int, real_in: bool = False,
               real_out: bool = False) -> torch.Tensor:
    """X[k] = w[k] sum_j (z[j] w[j]) conj(w[k - j]) for k < n_out, the convolution by two length-M FFTs
    (the second as conj(FFT(conj(.))) so both use the forward stages)."""
    w = c["chirp"]
    a = z.unsqueeze(-1) * w if real_in else _cmul(z, w)
    a = torch.nn.functional.pad(a, (0, 0, 0, plan.m - plan.n))
    d = _cmul(_ct(a, plan.radices, c), c["filter"], conj_z=True)
    e = _ct(d, plan.radices, c)[:, :n_out]
    wo = w[:n_out]
    if real_out:
        return (e * wo).sum(-1)
    return _cmul(e, wo, conj_z=True)


def _c2c(z, plan, c, n_out=None, real_in=False, real_out=False):
    if plan.bluestein:
        return _bluestein(z, plan, c, plan.n if n_out is None else n_out, real_in, real_out)
    y = _ct(z, plan.radices, c, real_in, real_out)
    return y if n_out is None else y[:, :n_out]


def _conj(z: torch.Tensor) -> torch.Tensor:
    return torch.stack([z[..., 0], -z[..., 1]], dim=-1)


def _plan_constants(ns, plan, sign: int, scale: float, real_in=False, real_out=False) -> dict:
    """Constants of a c2c plan in namespace ns; Bluestein folds ``scale`` into its filter."""
    if not plan.bluestein:
        return ct_constants(ns, plan.radices, sign, scale, real_in, real_out)
    out = ct_constants(ns, plan.radices, -1)
    out["chirp"] = chirp(ns, plan.n, sign)
    fft = None
    if ns is not NP:
        def fft(b):
            return _ct(b.unsqueeze(0), plan.radices, out)[0]
    out["filter"] = chirp_filter(ns, plan.n, plan.m, sign, scale, fft)
    return out


def _plan_shapes(plan, real_in=False, real_out=False) -> dict:
    if not plan.bluestein:
        return ct_shapes(plan.radices, real_in, real_out)
    out = ct_shapes(plan.radices)
    out["chirp"] = (plan.n, 2)
    out["filter"] = (plan.m, 2)
    return out


# ------------------------------------------------------------------------------------------ modules
_OP = {"r2c": "torch.fft.rfft", "c2c": "torch.fft.fft", "c2r": "torch.fft.irfft"}


class PlanHolder(BasisHolder):
    """A module whose constants are ``self._constants(ns)`` (a dict of arrays with shapes ``self._shapes``), held
    flat as one basis ``fft_basis`` in the module's mode."""

    _shapes: Dict[str, tuple]

    def _constants(self, ns) -> dict:
        raise NotImplementedError

    def _add_plan_basis(self) -> None:
        self._add_basis("fft_basis", lambda ns: ns.cat([t.reshape(-1) for t in self._constants(ns).values()], 0))

    def _get_constants(self, x, basis0, basis1) -> Dict[str, torch.Tensor]:
        if self.mode is Mode.ON_THE_FLY:
            c = self._constants(TorchNS(self._basis_dtype, x.device, x))
            return {k: v.to(x.dtype) for k, v in c.items()}
        (flat,) = self._bases((basis0, basis1), x)
        out, off = {}, 0
        for k, shape in self._shapes.items():
            size = math.prod(shape)
            out[k] = flat[off: off + size].reshape(shape).to(x.dtype)
            off += size
        return out


def _dense(n: int) -> bool:
    """One dense matrix when the length's plan is one stage of at most ACCURATE_RADIX points: a real input then
    needs only half the weights of a complex stage. A longer prime is one symmetric stage of the plan route."""
    return n <= ACCURATE_RADIX


class RealFFT(PlanHolder):
    """kind: 'r2c' (x (..., n) -> (..., F, 2)), 'c2c' ((..., n, 2) -> (..., n, 2)), 'c2r' ((..., F, 2) -> (..., n)).

    ``scale`` is the normalisation factor (torch.fft's norm), ``inverse`` the sign of c2c. ``self.plan``
    describes the route: 'dense', 'packed ...' (even-length r2c / c2r over a half-length plan) or the plan.
    Lengths above ``kernels.fft_plan.MAX_N`` (2**22), or plans over its weight / intermediate limits (64 MiB of
    constants, 2**24 floats per row), raise SpecRewriteError.
    """

    def __init__(self, kind: str, n: int, *, scale: float = 1.0, inverse: bool = False, onesided: bool = True,
                 mode: Mode | str = Mode.STORE, dtype=torch.float32):
        super().__init__(mode, dtype)
        if kind not in ("r2c", "c2c", "c2r"):
            raise ValueError(kind)
        check_length(n, _OP[kind])
        self.kind, self.n, self.onesided = kind, n, onesided
        self.scale, self.inverse = float(scale), bool(inverse)
        self.n_bins = n if (kind == "c2c" or (kind == "r2c" and not onesided)) else n // 2 + 1
        if _dense(n):
            self.route, self.fplan = "dense", None
            self._init_dense(kind, n, scale, inverse)
            return
        self.route = "packed" if (kind != "c2c" and n % 2 == 0) else "plan"
        self.fplan = plan_fft(n // 2 if self.route == "packed" else n)
        self._shapes = self._const_shapes()
        itemsize = torch.tensor([], dtype=dtype).element_size()
        inter = 2 * max(self.fplan.length, n)    # floats per row of the largest intermediate
        check_weights(n, sum(math.prod(s) for s in self._shapes.values()), itemsize, inter,
                      op=_OP[kind])
        self._add_plan_basis()

    @property
    def plan(self) -> str:
        if self.route == "dense":
            return "dense"
        desc = self.fplan.describe()
        return f"packed n/2 {desc}" if self.route == "packed" else desc

    def _init_dense(self, kind, n, scale, inverse):
        nb = self.n_bins
        if kind == "r2c":
            self._add_basis("fft_basis", lambda ns: analysis_dense(ns, n, nb, [1.0] * n, scale),
                            lambda t: t.reshape(2, nb, n).permute(2, 1, 0).reshape(n, 2 * nb))
        elif kind == "c2c":
            self._add_basis("fft_basis", lambda ns: fft_matrix(ns, n, n, inverse, scale),
                            lambda t: t.reshape(2, n, 2, n).permute(1, 0, 3, 2).reshape(2 * n, 2 * n))
        else:
            self._add_basis("fft_basis", lambda ns: ifft_real_matrix(ns, n, nb, True, scale),
                            lambda t: t.reshape(2, nb, n).permute(1, 0, 2).reshape(2 * nb, n))

    # ---------------------------------------------------------------------------- constants
    def _io(self):
        """(sign, scale of the inner plan, real_in, real_out) of the inner complex transform."""
        sign = 1 if (self.kind == "c2r" or (self.kind == "c2c" and self.inverse)) else -1
        if self.route == "packed":
            return sign, 1.0, False, False
        return sign, self.scale, self.kind == "r2c", self.kind == "c2r"

    def _constants(self, ns) -> dict:
        sign, scale, real_in, real_out = self._io()
        out = {}
        if self.route == "packed":
            out["pack"] = (rfft_post if self.kind == "r2c" else irfft_pre)(ns, self.n, self.scale)
        out.update(_plan_constants(ns, self.fplan, sign, scale, real_in, real_out))
        return out

    def _const_shapes(self) -> dict:
        _, _, real_in, real_out = self._io()
        out = {}
        if self.route == "packed":
            h = self.n // 2
            out["pack"] = (h + 1 if self.kind == "r2c" else h, 4, 2)
        out.update(_plan_shapes(self.fplan, real_in, real_out))
        return out

    def extra_repr(self):
        return f"{self.kind}, n={self.n}, mode={self.mode.value}, plan={self.plan}"

    # ---------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, basis0: Optional[torch.Tensor] = None, basis1: Optional[torch.Tensor] = None) -> torch.Tensor:
        y = self._forward(x, basis0, basis1)
        return exact_real_bins(y, self.n) if self.kind == "r2c" else y

    def _forward(self, x, basis0, basis1):
        if self.route == "dense":
            return self._dense(x, basis0, basis1)
        c = self._get_constants(x, basis0, basis1)
        n, h, nb = self.n, self.n // 2, self.n_bins
        if self.kind == "c2c":
            lead = x.shape[:-2]
            y = _c2c(x.reshape(-1, n, 2), self.fplan, c)
            return y.reshape(lead + (n, 2))
        if self.kind == "r2c":
            lead = x.shape[:-1]
            if self.route == "packed":
                zz = _c2c(x.reshape(-1, h, 2), self.fplan, c)              # FFT of x[2m] + i x[2m+1]
                ze = torch.cat([zz, zz[:, :1]], dim=1)                      # Z[k mod h], k = 0..h
                y = torch.cat([ze, ze.flip(1)], dim=-1)                     # with Z[(h - k) mod h]
                y = _apply_pack(y, c["pack"])                               # (B, h + 1, 2)
                if not self.onesided:
                    y = torch.cat([y, _conj(y[:, 1:h].flip(1))], dim=1)
            else:
                y = _c2c(x.reshape(-1, n), self.fplan, c, n_out=nb, real_in=True)
            return y.reshape(lead + (nb, 2))
        lead = x.shape[:-2]
        z = x[..., :nb, :].reshape(-1, nb, 2)
        if self.route == "packed":
            y = torch.cat([z[:, :h], z.flip(1)[:, :h]], dim=-1)            # X[k], X[h - k], k < h
            zz = _c2c(_apply_pack(y, c["pack"]), self.fplan, c)
            return zz.reshape(lead + (n,))
        # odd n: Hermitian extension (imaginary part of DC dropped), then a complex inverse, real part only
        dc = z[:, :1] * torch.tensor([1.0, 0.0], dtype=z.dtype, device=z.device)
        full = torch.cat([dc, z[:, 1:], _conj(z[:, 1:].flip(1))], dim=1)
        y = _c2c(full, self.fplan, c, real_out=True)
        return y.reshape(lead + (n,))

    def _dense(self, x, basis0, basis1):
        (m,) = self._bases((basis0, basis1), x)
        m = m.to(x.dtype)
        if self.kind == "r2c":
            return torch.matmul(x, m).unflatten(-1, (self.n_bins, 2))
        if self.kind == "c2c":
            return torch.matmul(x.flatten(-2), m).unflatten(-1, (self.n, 2))
        return torch.matmul(x[..., : self.n_bins, :].flatten(-2), m)


def _apply_pack(y: torch.Tensor, pack: torch.Tensor) -> torch.Tensor:
    """(B, K, 4) inputs per bin times the (K, 4, 2) per-bin map: the sum runs over the last axis. Summed over a
    middle axis of 4 (``(y[..., None] * pack).sum(-2)``), ONNX Runtime's ReduceSum took 4.4 of the 6.6 ms of a
    packed rfft of 64 x 1024 points (1 thread)."""
    return (y.unsqueeze(-2) * pack.transpose(-1, -2)).sum(-1)


def exact_real_bins(y: torch.Tensor, n: int) -> torch.Tensor:
    """The spectrum of a real signal (..., F, 2) with the imaginary parts of DC (and Nyquist for even n) exactly
    +0, as torch's FFT returns them: a rounding residue of either sign there would flip angle() by 2 pi and the
    sign of sqrt / log on the negative real axis. Static slices only (no index constant of F entries)."""
    im = y[..., 1]
    zero = torch.zeros_like(im[..., :1])
    h, nb = n // 2, y.shape[-2]
    parts = [zero, im[..., 1:]]
    if n % 2 == 0 and h < nb:
        parts = [zero, im[..., 1:h], zero, im[..., h + 1:]]
    return torch.stack([y[..., 0], torch.cat(parts, -1)], -1)

