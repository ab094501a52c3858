"""Real-valued torch.fft along the last dimension: rfft (r2c), irfft (c2r) and fft/ifft (c2c).

Complex tensors are carried as real tensors with a trailing dimension of 2; bins and the (re, im) pair are
interleaved in the matrices so no transpose is needed at run time.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..kernels import analysis_dense, fft_matrix, ifft_real_matrix
from ..modes import Mode
from .bases import BasisHolder


class RealFFT(BasisHolder):
    """kind: 'r2c' (x (..., n) -> (..., F, 2)), 'c2c' ((..., n, 2) -> (..., n, 2)), 'c2r' ((..., F, 2) -> (..., n)).

    ``scale`` is the normalisation factor (torch.fft's norm), ``inverse`` the sign of c2c.
    """

    def __init__(self, kind: str, n: int, *, scale: float = 1.0, inverse: bool = False, onesided: bool = True,
                 mode: Mode | str = Mode.STORE, dtype=torch.float32):
        super().__init__(mode, dtype)
        self.kind, self.n, self.onesided = kind, n, onesided
        if kind == "r2c":
            nb = n // 2 + 1 if onesided else n
            self.n_bins = nb
            self._add_basis("fft_basis", lambda ns: analysis_dense(ns, n, nb, [1.0] * n, scale),
                            lambda t: t.reshape(2, nb, n).permute(2, 1, 0).reshape(n, 2 * nb))
        elif kind == "c2c":
            self._add_basis("fft_basis", lambda ns: fft_matrix(ns, n, n, inverse, scale),
                            lambda t: t.reshape(2, n, 2, n).permute(1, 0, 3, 2).reshape(2 * n, 2 * n))
        elif kind == "c2r":
            nb = n // 2 + 1
            self.n_bins = nb
            self._add_basis("fft_basis", lambda ns: ifft_real_matrix(ns, n, nb, True, scale),
                            lambda t: t.reshape(2, nb, n).permute(1, 0, 2).reshape(2 * nb, n))
        else:
            raise ValueError(kind)

    def extra_repr(self):
        return f"{self.kind}, n={self.n}, mode={self.mode.value}"

    def forward(self, x: torch.Tensor, basis0: Optional[torch.Tensor] = None, basis1: Optional[torch.Tensor] = None) -> torch.Tensor:
        (m,) = self._bases((basis0, basis1), x)
        m = m.to(x.dtype)
        if self.kind == "r2c":
            return torch.matmul(x, m).unflatten(-1, (self.n_bins, 2))
        if self.kind == "c2c":
            return torch.matmul(x.flatten(-2), m).unflatten(-1, (self.n, 2))
        return torch.matmul(x[..., : self.n_bins, :].flatten(-2), m)
