"""Real-valued torch.stft: (..., L) -> (..., F, T, 2), exact torch.stft semantics, no complex tensor."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..kernels import analysis_dense, analysis_factored, choose_plan
from ..modes import Mode, Strategy
from ..specs import StftSpec
from .bases import BasisHolder


def center_pad(x: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    """torch.stft's centre padding of a (B, 1, L) signal in any mode torch accepts."""
    if pad == 0:
        return x
    if mode == "constant":
        return F.pad(x, (pad, pad))
    return F.pad(x, (pad, pad), mode=mode)


class RealSTFT(BasisHolder):
    """Drop-in for ``torch.view_as_real(torch.stft(x, ..., return_complex=True))``.

    ``extra_scale`` multiplies the bases (used for torchaudio's window normalisation and fp16 range scaling).
    """

    def __init__(self, spec: StftSpec, mode: Mode | str = Mode.STORE, strategy: Strategy | str = Strategy.AUTO,
                 extra_scale: float = 1.0, dtype=torch.float32):
        super().__init__(mode, dtype)
        self.spec = spec
        self.strategy = Strategy.parse(strategy)
        n, nb = spec.n_fft, spec.n_bins
        scale = extra_scale * (n ** -0.5 if spec.normalized else 1.0)
        window = spec.padded_window()
        plan = None
        if self.strategy is not Strategy.DENSE:
            plan = choose_plan(n, spec.hop_length, nb)
            if plan is None and self.strategy is Strategy.FACTORED:
                plan = _forced_plan(n, spec.hop_length, nb)
        self.plan = plan
        if plan is not None:
            self.register_buffer("phase_split", torch.eye(plan.n2, dtype=dtype).unsqueeze(1), persistent=False)
        if plan is None:
            self._add_basis("dft_basis", lambda ns: analysis_dense(ns, n, nb, window, scale),
                            lambda t: t.unsqueeze(1))
        else:
            self._add_basis("dft_stage1", lambda ns: analysis_factored(ns, plan, window, scale)[0],
                            lambda t: t.unsqueeze(1))
            # stage 2 applied from the left on the channel-first layout: rows (c_out, k2), columns (n2, c_in)
            k2, n2 = plan.k2, plan.n2
            self._add_basis("dft_stage2", lambda ns: analysis_factored(ns, plan, window, scale)[1],
                            lambda t: t.T.reshape(2 * k2, 2, n2).permute(0, 2, 1).reshape(2 * k2, 2 * n2))

    def extra_repr(self) -> str:
        s = self.spec
        how = "dense" if self.plan is None else f"factored {self.plan.n1}x{self.plan.n2}"
        return f"n_fft={s.n_fft}, hop={s.hop_length}, win_length={s.win_length}, {how}, mode={self.mode.value}"

    def forward(self, x: torch.Tensor, basis0: Optional[torch.Tensor] = None, basis1: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(..., L) -> (..., F, T, 2), the layout of torch.view_as_real(torch.stft(...))."""
        y = self.planar(x, basis0, basis1)
        r = y.dim()
        return y.permute(tuple(range(r - 3)) + (r - 2, r - 1, r - 3))

    def planar(self, x: torch.Tensor, basis0: Optional[torch.Tensor] = None,
               basis1: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(..., L) -> (..., 2, F, T): re/im planes, the layout the kernels produce without any transpose."""
        spec = self.spec
        lead = x.shape[:-1]
        x = x.reshape(-1, 1, x.shape[-1])
        if spec.center:
            x = center_pad(x, spec.n_fft // 2, spec.pad_mode)
        w = self._bases((basis0, basis1), x)
        if self.plan is None:
            y = F.conv1d(x, w[0].to(x.dtype), stride=spec.hop_length)          # (B, 2F, T)
        else:
            y = self._factored(x, w[0].to(x.dtype), w[1].to(x.dtype))          # (B, 2, F, T)
        return y.reshape(tuple(lead) + (2, spec.n_bins, -1))  # no frame count baked into traced graphs

    def _factored(self, x, w1, w2):
        # No shape arithmetic anywhere (it becomes fragile int ops in traced graphs): the phase split is a
        # strided identity conv, which also drops the tail samples that no frame uses, so the number of frames
        # comes out exactly as torch.stft's.
        spec, plan = self.spec, self.plan
        n1, n2, hop = plan.n1, plan.n2, spec.hop_length
        phases = F.conv1d(x, self.phase_split.to(x.dtype), stride=n2)          # (B, N2, L // N2)
        y = F.conv1d(phases, w1, stride=hop // n2, groups=n2)                  # (B, N2*2*N1, T)
        # channel-first: rows (n2, c) x columns (k1, t); stage 2 from the left gives rows (c, k2) and the bin
        # k = k1 + N1*k2 comes out in order with no transpose at all
        t = y.shape[-1]
        y = torch.matmul(w2, y.reshape(y.shape[0], 2 * n2, -1))                # (B, 2*K2, N1*T)
        y = y.reshape(y.shape[0], 2, plan.k2 * n1, t)                          # (B, 2, K2*N1, T)
        return y[:, :, : spec.n_bins]


def _forced_plan(n, hop, n_bins):
    """A factored plan even where AUTO would pick dense (for tests / benchmarks); None if impossible."""
    import math

    from ..kernels import FactorPlan

    g = math.gcd(n, hop)
    for n2 in sorted((d for d in range(2, g + 1) if g % d == 0), key=lambda d: abs(d - n ** 0.5)):
        n1 = n // n2
        if n1 >= 2:
            return FactorPlan(n1, n2, min(n2, -(-n_bins // n1)))
    return None
