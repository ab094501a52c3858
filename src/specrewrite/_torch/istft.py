"""Real-valued torch.istft: (..., F, T, 2) -> (..., L), exact torch.istft semantics, no data-dependent check."""
from __future__ import annotations

from typing import Optional

import math

import torch
import torch.nn.functional as F

from ..kernels import istft_plan, synthesis_conv_tables, synthesis_conv_weights, synthesis_dense, synthesis_groups
from ..kernels.split import inverse_split_sizes, inverse_split_tables, inverse_split_weights
from ..modes import Mode, Strategy
from ..specs import IstftSpec
from .bases import BasisHolder



def overlap_add(frames: torch.Tensor, hop: int, n: int) -> torch.Tensor:
    """(B, T, N) -> (B, (T-1)*hop + N) as a sum of R = N / gcd(N, hop) shifted copies (constant pads only).

    ``n`` (= N) is passed in, not read from the shape, so traced graphs carry no shape arithmetic."""
    g = math.gcd(n, hop)
    r, s = n // g, hop // g
    blocks = frames.unflatten(2, (r, g))                                       # (B, T, R, g)
    if s > 1:  # frame t starts at block t*s: interleave s-1 zero frames
        blocks = F.pad(blocks.unsqueeze(2), (0, 0, 0, 0, 0, s - 1)).flatten(1, 2)
    out = None
    for i in range(r):
        part = F.pad(blocks[:, :, i, :], (0, 0, i, r - 1 - i))
        out = part if out is None else out + part
    out = out.flatten(1)                                                       # (B, (T*s + R - 1) * g)
    return out[:, : -(s - 1) * g] if s > 1 else out


def overlap_add_hop_blocks(frames: torch.Tensor, hop: int, n: int) -> torch.Tensor:
    """(B, T, N) -> (B, (T-1)*hop + N) as a sum of R = ceil(N / hop) shifted block sequences (Pad + Add only).

    Each frame is zero-padded to R*hop samples and cut into R blocks of hop samples: block i of frame t lands on
    output block t + i. Constant pads and trims only (no shape arithmetic), and R stays small for any N and hop,
    unlike ``overlap_add``'s N / gcd(N, hop) shifts."""
    r = -(-n // hop)
    extra = r * hop - n
    if extra:
        frames = F.pad(frames, (0, extra))
    blocks = frames.unflatten(2, (r, hop))                                     # (B, T, R, hop)
    out = None
    for i in range(r):
        part = F.pad(blocks[:, :, i, :], (0, 0, i, r - 1 - i))                  # (B, T + R - 1, hop)
        out = part if out is None else out + part
    out = out.flatten(1)                                                       # (B, (T + R - 1) * hop)
    return out[:, :-extra] if extra else out


class RealISTFT(BasisHolder):
    """Drop-in for ``torch.istft(torch.view_as_complex(z), ...)`` with real output."""

    def __init__(self, spec: IstftSpec, mode: Mode | str = Mode.STORE, strategy: Strategy | str = Strategy.AUTO,
                 dtype=torch.float32):
        super().__init__(mode, dtype)
        self.spec = spec
        self.strategy = Strategy.parse(strategy)
        # torch.istft with a real output always inverts with irfft: a full (onesided=False) spectrum is narrowed
        # to its first n_fft//2 + 1 bins first, so the maths below is always the onesided one.
        n, nb = spec.n_fft, spec.n_fft // 2 + 1
        scale = math.sqrt(n) if spec.normalized else 1.0
        window = spec.padded_window()
        self.register_buffer("window_sq", torch.as_tensor(window ** 2, dtype=dtype).reshape(1, 1, n),
                             persistent=False)
        plan = istft_plan(self.strategy.value, n, spec.hop_length, split=True)
        self.plan = plan
        if plan is None:
            self._add_basis("idft_basis", lambda ns: synthesis_dense(ns, n, nb, True, window, scale),
                            lambda t: t.unsqueeze(1))
        elif plan.p:   # stage A split in two (``kernels.split``): parts A and M as one flat basis
            self._add_bases(("idft_stage_a", "idft_stage_b"),
                            lambda ns: inverse_split_weights(ns, plan, window, scale))
            for name, value in inverse_split_tables(plan).items():
                self.register_buffer(name, torch.as_tensor(value), persistent=False)
        else:
            self._add_bases(("idft_stage_a", "idft_stage_b"),
                            lambda ns: synthesis_conv_weights(ns, plan, window, scale))
            for name, value in synthesis_conv_tables(plan).items():
                self.register_buffer(name, torch.as_tensor(value), persistent=False)

    def extra_repr(self) -> str:
        s = self.spec
        how = "dense" if self.plan is None else f"factored {self.plan.n1}x{self.plan.n2}" + (
            f" ({self.plan.p}x{self.plan.n1 // self.plan.p})" if self.plan.p else "") + (
            ", half" if self.plan.half else "")
        return f"n_fft={s.n_fft}, hop={s.hop_length}, win_length={s.win_length}, {how}, mode={self.mode.value}"

    def forward(self, z: torch.Tensor, basis0: Optional[torch.Tensor] = None, basis1: Optional[torch.Tensor] = None, length: int | None = None) -> torch.Tensor:
        spec = self.spec
        lead = z.shape[:-3]
        z = z.reshape((-1,) + z.shape[-3:])                                    # (B, F, T, 2)
        if not spec.onesided:
            z = z[:, : spec.n_fft // 2 + 1]
        w = self._bases((basis0, basis1), z)
        if z.dtype == torch.float64 or spec.n_fft % spec.hop_length:
            # MatMul frames, overlap-add by Pad + Add: ONNX Runtime's CPU provider has no double ConvTranspose,
            # and torch's CPU (oneDNN) conv_transpose1d returns garbage, or corrupts memory, on several threads
            # for some strides that do not divide the kernel (n_fft 200 / hop 3, 125 / 2 at batch >= 4)
            y, env = self._synthesis_pad_add(z, w)
        else:
            if self.plan is None:
                zz = torch.cat([z[..., 0], z[..., 1]], 1)                      # (B, 2F, T): 3-D only
                y = F.conv_transpose1d(zz, w[0].to(z.dtype), stride=spec.hop_length)[:, 0]
            else:
                y = overlap_add(self._frames(z, w[0].to(z.dtype), w[1].to(z.dtype)), spec.hop_length, spec.n_fft)
            ones = torch.ones_like(z[:1, :1, :, 0])                            # (1, 1, T)
            env = F.conv_transpose1d(ones, self.window_sq.to(z.dtype), stride=spec.hop_length)[:, 0]
        # trimming uses constant bounds only (no shape arithmetic: traced graphs stay free of int ops)
        start = spec.n_fft // 2 if spec.center else 0
        if length is not None:
            y = F.pad(y, (0, start + length))[:, start: start + length]
            env = F.pad(env, (0, start + length), value=1.0)[:, start: start + length]
        elif spec.center and start > 0:
            y, env = y[:, start:-start], env[:, start:-start]
        y = y / torch.where(env.abs() > 1e-11, env, torch.ones_like(env))
        return y.reshape(lead + y.shape[-1:])

    def _synthesis_pad_add(self, z, w):
        """Overlap-added frames and window envelope, conv-free: (B, F, T, 2) -> (B, L'), (1, L')."""
        spec = self.spec
        n, hop = spec.n_fft, spec.hop_length
        if self.plan is None:
            zz = z.permute(0, 2, 3, 1).flatten(2)                              # (B, T, 2F): [re | im]
            frames = torch.matmul(zz, w[0].to(z.dtype)[:, 0])                  # (B, T, N), window folded in
        else:
            frames = self._frames(z, w[0].to(z.dtype), w[1].to(z.dtype))     # (B, T, N), window folded in
        y = overlap_add_hop_blocks(frames, hop, n)
        ones = torch.ones_like(z[:1, 0, :, :1])                                # (1, T, 1)
        env = overlap_add_hop_blocks(ones * self.window_sq.to(z.dtype)[0], hop, n)
        return y, env

    def _frames(self, z, wa, wb):
        """Windowed inverse DFT of every frame: (B, F, T, 2) -> (B, T, N), every tensor holding the frames 3-D
        (B, channels, T) (``kernels.synthesis_conv_tables`` / ``synthesis_conv_weights``).

        Stage A is a 1x1 conv grouped by k2 (k2 <= N2 / 2 only: the half form, ``kernels.synthesis_groups``) over
        the spectrum gathered into (k2, c, k1) order; stage B a 1x1 conv grouped by n1 over (c, k2); one gather
        puts the samples in order. No reshape merges the batch or the frame count with another axis: a matmul
        over (..., T, K) folded its leading axes, and the stride checks of higher-rank views guarded the frame
        count, so torch.export refused a Dim range and an ONNX export from a batch-1 example came out with both
        axes fixed. In float64 the convs are batched matmuls (ONNX Runtime's CPU provider has no double Conv)."""
        n1, n2, ha = self.plan.n1, self.plan.n2, synthesis_groups(self.plan)
        double = z.dtype == torch.float64
        zz = torch.cat([z[..., 0], z[..., 1]], 1)                              # (B, 2F, T): [re | im]
        x = torch.index_select(zz, 1, self.gather_a)                           # (B, 2*H*N1 [k2, c, k1], T)
        if self.plan.p:   # stage A in two parts: (k2, kb) groups of P, the gather, (k2, n1a) groups of Q
            _, p, q, na = inverse_split_sizes(self.plan)
            x = _grouped(x, wa[:na], ha * q, 2 * p, 2 * p, double)             # (B, [k2, kb, c', n1a], T)
            x = torch.index_select(x, 1, self.gather_m)
            x = _grouped(x, wa[na:], ha * p, 2 * q, 2 * q, double)             # (B, [k2, n1a, c', n1b], T)
            x = torch.index_select(x, 1, self.gather_b)                        # (B, [n1, c, k2], T)
            x = _grouped(x, wb, n1, n2, 2 * ha, double)
            return torch.index_select(x, 1, self.sample_order).transpose(1, 2)
        if double:
            x = torch.matmul(wa.reshape(ha, 2 * n1, 2 * n1), x.unflatten(1, (ha, 2 * n1))).flatten(1, 2)
        else:
            x = F.conv1d(x, wa, groups=ha)                                     # (B, 2*H*N1 [k2, c, n1], T)
        x = torch.index_select(x, 1, self.gather_b)                            # (B, 2*H*N1 [n1, c, k2], T)
        if double:
            x = torch.matmul(wb.reshape(n1, n2, 2 * ha), x.unflatten(1, (n1, 2 * ha))).flatten(1, 2)
        else:
            x = F.conv1d(x, wb, groups=n1)                                     # (B, N [n1, n2], T)
        x = torch.index_select(x, 1, self.sample_order)                        # (B, N [sample], T)
        return x.transpose(1, 2)


def _grouped(x, w, groups: int, n_out: int, n_in: int, double: bool):
    """A 1x1 conv with ``groups`` groups of ``n_out`` outputs from ``n_in`` inputs each over (B, C, T), from a
    weight of any shape holding groups * n_out * n_in values; in float64 a batched matmul (ONNX Runtime's CPU
    provider has no double Conv). Sizes are given, never read from a shape: a traced graph would hold the
    division as an int op, which coremltools' TorchScript frontend cannot convert."""
    if double:
        return torch.matmul(w.reshape(groups, n_out, n_in), x.unflatten(1, (groups, n_in))).flatten(1, 2)
    return F.conv1d(x, w.reshape(groups * n_out, n_in, 1), groups=groups)
