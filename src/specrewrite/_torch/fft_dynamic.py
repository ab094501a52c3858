"""torch.fft along an axis whose length is known only at run time (a dynamic clip length).

A factored or dense DFT needs its length when it is built; a whole-clip FFT (FFT convolution, a Hilbert envelope,
an FFT filter) along a dynamic time axis does not have one. ``DynamicFFT`` runs Bluestein's chirp-z algorithm
with the length N read from the input at run time:

    X[k] = w[k] * sum_j (x[j] w[j]) conj(w[k - j]),   w[m] = exp(sign pi i m^2 / N)

The convolution goes through a fixed length-M FFT (M a power of two >= 2 n_max - 1, a Cooley-Tukey plan whose
constants are the module's basis), so one graph serves every N <= n_max. The chirps are built in the graph from
N, the phase index m^2 reduced mod 2N in int64 before a float64 angle (exact for every N the plan holds). Every
tensor whose size depends on N is produced by ``index_select`` with clamped indices and masks, never by a pad or
a slice of a symbolic amount, so an exporter adds no guard on N.

A length above ``n_max`` raises ``SpecRewriteError`` in eager; inside an exporter's trace the output is divided
by a 0 / 1 flag instead, so an exported file gives inf / nan there, never a silently wrong spectrum.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..errors import SpecRewriteError
from ..kernels import chirp_at, chirp_filter_input, plan_fft
from ..kernels.fft_plan import check_length, check_weights
from ..modes import Mode
from .bases import TorchNS, size_tensor, tracing
from .fft import _OP, PlanHolder, _cmul, _conj, _ct, _plan_constants, _plan_shapes


class RuntimeNS(TorchNS):
    """TorchNS for a length that is a run-time size (a 0-d int64 tensor): no branch on its value, the angle always
    in float64."""

    def __init__(self, device):
        super().__init__(torch.float64, device)

    def arange(self, n):
        return torch.arange(n, dtype=torch.int64, device=self.device)

    def cos_sin(self, m, n):
        m = torch.remainder(m, n)
        # 2 pi as a float64 tensor: an exporter writes a Python float as a float32 constant
        a = m.to(torch.float64) * torch.tensor(2.0 * math.pi, dtype=torch.float64, device=self.device) / n
        c, s = torch.cos(a), torch.sin(a)
        # exact at the quarter turns (for odd n only m = 0 is one: 4m = 0 mod n has no other root)
        q4 = 4 * m
        on = torch.remainder(q4, n) == 0
        q = torch.div(q4, n, rounding_mode="floor")
        c = torch.where(on, (q == 0).to(torch.float64) - (q == 2).to(torch.float64), c)
        s = torch.where(on, (q == 1).to(torch.float64) - (q == 3).to(torch.float64), s)
        return c, s


def capacity(m: int) -> int:
    """The longest transform a length-m convolution holds (m >= 2 n - 1)."""
    return (m + 1) // 2


def conv_length(n_max: int) -> int:
    """The power of two M >= 2 n_max - 1 of a plan for lengths up to n_max."""
    return max(2, 1 << max(0, 2 * n_max - 2).bit_length())


class DynamicFFT(PlanHolder):
    """kind 'r2c' (x (..., N) -> (..., N // 2 + 1 or N, 2)), 'c2c' ((..., N, 2) -> (..., N, 2)) or 'c2r'
    ((..., F, 2) -> (..., n), n given at run time or 2 (F - 1)), for every N <= ``n_max``.

    ``power``: the normalisation scales by N ** -power (torch.fft's norm modes: 0, 0.5 or 1); ``inverse``: the
    sign of a c2c transform.
    """

    def __init__(self, kind: str, n_max: int, *, power: float = 0.0, inverse: bool = False, onesided: bool = True,
                 mode: Mode | str = Mode.STORE, dtype=torch.float32):
        super().__init__(mode, dtype)
        if kind not in ("r2c", "c2c", "c2r"):
            raise ValueError(kind)
        self.kind, self.power, self.onesided = kind, float(power), onesided
        self.inverse = bool(inverse) or kind == "c2r"
        self.m = conv_length(n_max)
        check_length(self.m, _OP[kind])
        self.n_max = min(int(n_max), capacity(self.m))
        self.fplan = plan_fft(self.m)
        self._shapes = _plan_shapes(self.fplan)
        itemsize = torch.tensor([], dtype=dtype).element_size()
        check_weights(self.m, sum(math.prod(s) for s in self._shapes.values()), itemsize, 2 * self.m, _OP[kind])
        self._add_plan_basis()

    def _constants(self, ns) -> dict:
        return _plan_constants(ns, self.fplan, -1, 1.0)

    @property
    def plan(self) -> str:
        return f"dynamic n <= {self.n_max}: bluestein(M={self.m}: {self.fplan.describe()})"

    def extra_repr(self):
        return f"{self.kind}, n<={self.n_max}, mode={self.mode.value}, plan={self.plan}"

    # ---------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, basis0: Optional[torch.Tensor] = None,
                basis1: Optional[torch.Tensor] = None, n=None) -> torch.Tensor:
        c = self._get_constants(x, basis0, basis1)
        if self.kind == "r2c":
            big_n, lead = x.shape[-1], x.shape[:-1]
            z, real_in = x.reshape(-1, big_n), True
            n_out = big_n // 2 + 1 if self.onesided else big_n
        elif self.kind == "c2c":
            big_n, lead = x.shape[-2], x.shape[:-2]
            z, real_in, n_out = x.reshape(-1, big_n, 2), False, big_n
        else:
            f, lead = x.shape[-2], x.shape[:-2]
            big_n = n if n is not None else 2 * (f - 1)
            z, real_in, n_out = _hermitian(x.reshape(-1, f, 2), big_n), False, big_n
        self._check(big_n)
        nt = size_tensor(big_n, z.device)
        y = self._chirp_z(z, nt, n_out, c, real_in)
        if self.power:
            nf = nt.to(y.dtype)
            y = y / (nf if self.power == 1 else nf.sqrt())
        if self.kind == "r2c":   # exactly +0 at DC and (even N) Nyquist, as torch's FFT gives
            k = torch.arange(n_out, device=y.device)
            real_bin = torch.logical_or(k == 0, 2 * k == nt)   # (coremltools has no '|')
            y = torch.stack([y[..., 0], torch.where(real_bin, torch.zeros_like(y[..., 1]), y[..., 1])], -1)
        y = y[..., 0] if self.kind == "c2r" else y
        y = y.reshape(tuple(lead) + tuple(y.shape[1:]))
        if tracing():   # inf / nan beyond the plan's longest length: an exported file is never silently wrong
            y = y / (nt <= self.n_max).to(y.dtype)
        return y

    def _check(self, big_n) -> None:
        if not tracing() and int(big_n) > self.n_max:
            raise SpecRewriteError(
                f"a dynamic-length {_OP[self.kind]} got {int(big_n)} points; this rewritten graph holds lengths up "
                f"to {self.n_max} (Bluestein through a {self.m}-point FFT)", op=_OP[self.kind],
                fix="rewrite again with dynamic_shapes giving the time axis a Dim(max=...) that covers this length, "
                    "or with an example of this length")

    def _chirp_z(self, z, nt, n_out, c, real_in: bool) -> torch.Tensor:
        """(B, N) or (B, N, 2) -> (B, n_out, 2): the first n_out bins of the length-N DFT (``nt``: N as a 0-d
        int64 tensor, so exporters see tensor arithmetic, not a symbolic scalar)."""
        sign = 1 if self.inverse else -1
        m, dt, dev = self.m, z.dtype, z.device
        ns = RuntimeNS(dev)
        j = torch.arange(m, device=dev)
        keep = (j < nt).to(dt)
        zp = z.index_select(1, torch.minimum(j, nt - 1))               # length M: x[j] for j < N, masked below
        w = chirp_at(ns, j, nt, sign).to(dt)
        a = zp.unsqueeze(-1) * w if real_in else _cmul(zp, w)
        a = a * keep.unsqueeze(-1)
        filt = _ct(chirp_filter_input(ns, nt, m, sign).to(dt).unsqueeze(0), self.fplan.radices, c)
        d = _conj(_cmul(_ct(a, self.fplan.radices, c), filt))          # conj(FFT(a) FFT(filter))
        k = torch.arange(n_out, device=dev).to(torch.int64)   # an int ramp in coremltools too (n_out: a float there)
        e = _ct(d, self.fplan.radices, c).index_select(1, torch.minimum(k, torch.full_like(k, m - 1)))
        return _cmul(e, chirp_at(ns, k, nt, sign).to(dt) / m, conj_z=True)




def _hermitian(z: torch.Tensor, big_n) -> torch.Tensor:
    """(B, F, 2) one-sided bins -> (B, N, 2) full spectrum X[k] = conj(X[N - k]) for k > N / 2, bins past F
    zero (torch.fft.irfft's n= trims or zero-pads the input to N // 2 + 1 bins)."""
    f = z.shape[1]
    k = torch.arange(big_n, device=z.device)
    r = size_tensor(big_n, z.device) - k
    src = torch.minimum(k, r)
    g = z.index_select(1, torch.minimum(src, size_tensor(f, z.device) - 1)) * (src < f).to(z.dtype).unsqueeze(-1)
    return torch.stack([g[..., 0], torch.where(k > r, -g[..., 1], g[..., 1])], -1)
