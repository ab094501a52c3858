"""Real-valued torch.stft: (..., L) -> (..., F, T, 2), exact torch.stft semantics, no complex tensor."""
from __future__ import annotations

from typing import Optional

import math

import torch
import torch.nn.functional as F

from ..kernels import analysis_chunked, analysis_dense, analysis_stage1, half_layout, half_stage2, stft_layout
from ..kernels.dft import phase_order
from ..kernels.split import split_layout, split_sizes, split_stage2
from ..modes import Mode, Strategy
from ..specs import StftSpec
from .bases import BasisHolder, TorchNS


def center_pad(x: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    """torch.stft's centre padding of a (B, 1, L) signal in any mode torch accepts."""
    if pad == 0:
        return x
    if mode == "constant":
        return F.pad(x, (pad, pad))
    return F.pad(x, (pad, pad), mode=mode)


def shifted_copies(x: torch.Tensor, count: int, step: int) -> torch.Tensor:
    """(B, 1, L) -> (B, count, L - (count - 1) * step): copy c starts at sample c * step. Constant slice bounds
    (the end counted from the back), so no length arithmetic reaches a traced graph."""
    return torch.cat([x[:, :, c * step: (c + 1 - count) * step or None] for c in range(count)], dim=1)


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
        plan, self.chunks = stft_layout(self.strategy.value, n, spec.hop_length, nb, self.mode is Mode.STORE,
                                        split=True)
        self.plan = plan
        if plan is not None and not plan.framed:   # phase split: channel i holds phase phase_order(plan)[i]
            self.register_buffer("phase_index", torch.tensor(phase_order(plan)), persistent=False)
            if self.mode is not Mode.ON_THE_FLY:   # (built in forward there: an N2 x N2 constant otherwise)
                self.register_buffer("phase_split", torch.eye(plan.n2, dtype=dtype)[phase_order(plan)].unsqueeze(1),
                                     persistent=False)
        # the DC (and even-N Nyquist) bins' imaginary parts are an exact +0, as torch's FFT gives them for a real
        # signal: the factored stages (and a conv's summation order) leave ~1e-8 of either sign there, which
        # flips angle() at a negative real bin between +pi and -pi
        self.nyquist = n // 2 if n % 2 == 0 and n // 2 < nb else None
        real_bins = torch.ones(2, nb, 1, dtype=torch.bool)
        real_bins[1, 0] = False
        if self.nyquist is not None:
            real_bins[1, self.nyquist] = False
        self.register_buffer("real_bins", real_bins, persistent=False)
        if plan is None and self.chunks > 1:
            k = self.chunks
            self._add_basis("dft_basis", lambda ns: analysis_chunked(ns, n, nb, window, scale, k),
                            lambda t: t.unsqueeze(1))
        elif plan is None:
            self._add_basis("dft_basis", lambda ns: analysis_dense(ns, n, nb, window, scale),
                            lambda t: t.unsqueeze(1))
        else:
            # the half form (``kernels.half_layout``): stage 1 only for k1 <= N1 // 2, stage 2 over every phase
            # with conjugated rows for the other half, a gather of the bins in order
            self._add_basis("dft_stage1", lambda ns: analysis_stage1(ns, plan, window, scale, half=True),
                            lambda t: t.unsqueeze(1))
            self.half_j = plan.n1 // 2 + 1                 # stage 1's bins; stage 2 gives rows x half_j values
            if plan.p:   # stage 2 in two parts (``kernels.split``): one flat basis, cut in forward
                self._add_basis("dft_stage2", lambda ns: split_stage2(ns, plan))
                gather_b, planes, signs, power = split_layout(plan, nb)
                self.register_buffer("split_gather", torch.tensor(gather_b), persistent=False)
                self.register_buffer("bin_planes", torch.tensor(planes), persistent=False)
                self.register_buffer("bin_power", torch.tensor(power), persistent=False)
                if self.mode is not Mode.ON_THE_FLY:   # (built in forward there)
                    self.register_buffer("im_signs", torch.cat([torch.ones(nb), torch.tensor(signs)]).to(dtype)
                                         .reshape(1, 2, nb, 1), persistent=False)
                return
            direct, conj, index = half_layout(plan, nb)
            n2, rows = plan.n2, len(direct) + len(conj)
            self.half_values = rows * self.half_j
            # a 1x1 conv over (B, (n2, c_in), J, T): weight rows (c_out, row), columns (n2, c_in)
            self._add_basis("dft_stage2", lambda ns: half_stage2(ns, plan, nb),
                            lambda t: t.T.reshape(2 * rows, 2, n2).permute(0, 2, 1).reshape(2 * rows, 2 * n2, 1, 1))
            self.register_buffer("bin_index", torch.tensor(index), persistent=False)

    def extra_repr(self) -> str:
        s = self.spec
        how = ("dense" if self.chunks == 1 else f"dense in {self.chunks} chunks") if self.plan is None else \
            f"{'framed' if self.plan.framed else 'factored'} {self.plan.n1}x{self.plan.n2}" + (
                f" ({self.plan.p}x{self.plan.n2 // self.plan.p})" if self.plan.p else "")
        return f"n_fft={s.n_fft}, hop={s.hop_length}, win_length={s.win_length}, {how}, mode={self.mode.value}"

    def forward(self, x: torch.Tensor, basis0: Optional[torch.Tensor] = None, basis1: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(..., L) -> (..., F, T, 2), the layout of torch.view_as_real(torch.stft(...))."""
        y = self.planar(x, basis0, basis1)
        r = y.dim()
        return y.permute(tuple(range(r - 3)) + (r - 2, r - 1, r - 3))

    def planar(self, x: torch.Tensor, basis0: Optional[torch.Tensor] = None,
               basis1: Optional[torch.Tensor] = None, exact_real_bins: bool = True) -> torch.Tensor:
        """(..., L) -> (..., 2, F, T): re/im planes, the layout the kernels produce without any transpose.
        ``exact_real_bins``: DC / Nyquist imaginary parts an exact +0 (what a phase needs; a power does not)."""
        return self._run(x, basis0, basis1, "exact" if exact_real_bins else "planes")

    def power(self, x: torch.Tensor, basis0: Optional[torch.Tensor] = None,
              basis1: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(..., L) -> (..., F, T): |STFT|^2. A factored plan squares before it gathers the bins (half the
        data it would gather as re / im planes)."""
        return self._run(x, basis0, basis1, "power")

    def _run(self, x, basis0, basis1, out: str):
        spec = self.spec
        lead = x.shape[:-1]
        x = x.reshape(-1, 1, x.shape[-1])
        if spec.center:
            x = center_pad(x, spec.n_fft // 2, spec.pad_mode)
        w = self._bases((basis0, basis1), x)
        if x.dtype == torch.float64:
            # ONNX Runtime's CPU provider has no double Conv: frame with Gather and transform with MatMul
            y = self._planar_gemm(x, w[0].to(x.dtype), None if self.plan is None else w[1].to(x.dtype))
            if self.plan is not None and self.plan.p:
                return self._split_bins(y, out, lead)
        elif self.plan is None and self.chunks > 1:
            y = self._chunked(x, w[0].to(x.dtype))                             # (B, 2F, T)
        elif self.plan is None:
            y = F.conv1d(x, w[0].to(x.dtype), stride=spec.hop_length)          # (B, 2F, T)
        else:
            y = self._factored(x, w[0].to(x.dtype), w[1].to(x.dtype))          # (B, 2*R, J, T)
            if self.plan.p:
                return self._split_bins(y, out, lead)
            if isinstance(y.shape[-1], torch.SymInt):
                return self._gather_symbolic(y, out).reshape(tuple(lead) + (
                    () if out == "power" else (2,)) + (spec.n_bins, -1))
            y = y.flatten(1, 2)                                                 # (B, 2*R*J, T)
        # (B, 2, F or R*J, T), sizes given (the TorchScript ONNX exporter fixes the batch of an unflatten's -1;
        # a static size computed from a traced one is an aten::Int that coremltools' frontend cannot convert)
        y = y.reshape(y.shape[0], 2, spec.n_bins if self.plan is None else self.half_values, y.shape[2])
        if out == "power":
            y = y[:, 0] * y[:, 0] + y[:, 1] * y[:, 1]                           # (B, F or R*J, T)
            if self.plan is not None:
                y = torch.index_select(y, 1, self.bin_index)                   # (B, F, T)
            return y.reshape(tuple(lead) + (spec.n_bins, -1))
        if self.plan is not None:
            y = torch.index_select(y, 2, self.bin_index)                       # (B, 2, F, T)
        y = self._exact_real_bins(y) if out == "exact" else y
        return y.reshape(tuple(lead) + (2, spec.n_bins, -1))  # no frame count baked into traced graphs

    def _chunked(self, x, w):
        """The dense basis in K chunks of taps (``kernels.dense_chunks``), each summed in its own accumulator,
        then added. Chunk c sees the signal from tap c*Lc on (constant slice bounds: no frame count in the
        graph); one conv per chunk, added in order. w: (K*2F, 1, Lc). Not one grouped conv over the K shifted
        copies: LiteRT's depthwise kernel, what that becomes, did not finish in 15 minutes on 16 x 1026 output
        channels of weights computed in the graph (on_the_fly / input modes), where K convs take milliseconds."""
        n, k, hop = self.spec.n_fft, self.chunks, self.spec.hop_length
        lc = w.shape[-1]
        if k * lc > n:
            x = F.pad(x, (0, k * lc - n))
        ws = w.unflatten(0, (k, -1))                                                            # (K, 2F, 1, Lc)
        y = None
        for c in range(k):
            part = F.conv1d(x[:, :, c * lc: (c + 1 - k) * lc or None], ws[c], stride=hop)           # (B, 2F, T)
            y = part if y is None else y + part
        return y

    def _dense_rows(self, w):
        """The (2F, N) dense basis, from the chunked layout if need be."""
        if self.chunks == 1:
            return w[:, 0]
        k = self.chunks
        return w.reshape(k, -1, w.shape[-1]).transpose(0, 1).reshape(-1, k * w.shape[-1])[:, : self.spec.n_fft]

    def _exact_real_bins(self, y):
        """(B, 2, F, T) with the DC / Nyquist imaginary rows replaced by +0: slices and a concatenation with a
        zero row (a mask of the output's size would become a full-size constant in static-shape converters).
        The bin axis is static, so every slice below has a known, non-zero size."""
        nb, nyq = self.spec.n_bins, self.nyquist
        re, im = y[:, :1], y[:, 1:]
        zero = torch.zeros_like(im[:, :, :1])
        cut = [0] + ([nyq] if nyq is not None else [])          # the rows that become zero, in order
        parts, start = [], 0
        for row in cut:
            if row > start:
                parts.append(im[:, :, start:row])
            parts.append(zero)
            start = row + 1
        if start < nb:
            parts.append(im[:, :, start:])
        return torch.cat([re, torch.cat(parts, dim=2)], dim=1)

    def _planar_gemm(self, x, w0, w1):
        """The conv-free route (float64): (B, 1, L) -> (B, 2F, T) (dense) or (B, 2*R*J, T) (factored, the
        layout of ``_factored`` flattened); the DC / Nyquist imaginary parts are exact zeros in the dense form."""
        spec, plan = self.spec, self.plan
        frames = frame_signal(x[:, 0], spec.n_fft, spec.hop_length)          # (B, T, N)
        if plan is None:
            y = torch.matmul(frames, self._dense_rows(w0).transpose(0, 1)).transpose(1, 2)  # (B, 2F, T)
            y = y.unflatten(1, (2, spec.n_bins))                                # (B, 2, F, T)
            return torch.where(self.real_bins, y, torch.zeros_like(y)).flatten(1, 2)
        n1, n2 = plan.n1, plan.n2
        nj = self.half_j
        # sample N2*i1 + i2 of a frame is tap i1 of phase i2: stage 1 is one GEMM per phase (batched over N2)
        ph = frames.unflatten(2, (n1, n2)).permute(0, 3, 1, 2)                 # (B, N2, T, N1[i1])
        if plan.p:   # the phases in stage 1's group order
            ph = torch.index_select(ph, 1, self.phase_index)
        y = torch.matmul(ph, w0[:, 0].reshape(n2, 2 * nj, n1).transpose(1, 2))  # (B, N2, T, 2*J)
        y = y.transpose(2, 3).reshape(y.shape[0], 2 * n2, nj, -1)               # (B, (n2, c), J, T)
        if plan.p:   # part A by b, the channel gather, part B by m1, as batched matmuls over (B, groups, J, ., T)
            p, q, na = split_sizes(plan)
            y = torch.matmul(w1[:na].reshape(q, 1, 2 * p, 2 * p), y.unflatten(1, (q, 2 * p)).transpose(2, 3))
            y = torch.index_select(y.transpose(2, 3).flatten(1, 2), 1, self.split_gather)
            y = torch.matmul(w1[na:].reshape(p, 1, 2 * q, 2 * q), y.unflatten(1, (p, 2 * q)).transpose(2, 3))
            return y.transpose(2, 3).flatten(1, 2)                              # (B, [m1, c', m2], J, T)
        z = torch.matmul(w1[:, :, 0, 0], y.transpose(1, 2))                     # (B, J, 2*R, T)
        return z.transpose(1, 2).flatten(1, 2)                                  # (B, 2*R*J, T)

    def _factored(self, x, w1, w2):
        """(B, 1, L) -> (B, 2*R, J, T), rows (c, row), j of ``kernels.half_layout`` (the caller gathers the bins).
        No shape arithmetic anywhere (it becomes fragile int ops in traced graphs): the phase split is a strided
        identity conv, which also drops the tail samples that no frame uses, so the number of frames comes out
        exactly as torch.stft's; stage 2 is a 1x1 conv over (B, (n2, c), J, T), which merges no static size with
        the frame count (that adds guards torch.export rejects under a Dim range)."""
        spec, plan = self.spec, self.plan
        n2, hop = plan.n2, spec.hop_length
        if plan.framed:
            # N2 does not divide the hop: phase i2 is the signal shifted by i2 samples (constant slice bounds,
            # all of length L - N2 + 1), and stage 1 a conv dilated by N2 with stride hop, which sees samples
            # t*hop + N2*i1 + i2 of frame t and gives torch.stft's frame count
            y = F.conv1d(shifted_copies(x, n2, 1), w1, stride=hop, dilation=n2, groups=n2)   # (B, N2*2*J, T)
        else:
            phases = F.conv1d(x, self._phase_split(x), stride=n2)                  # (B, N2, L // N2)
            y = F.conv1d(phases, w1, stride=hop // n2, groups=n2)                  # (B, N2*2*J, T)
        y = y.reshape(y.shape[0], 2 * n2, self.half_j, y.shape[2])
        if plan.p:   # (B, [b, a, c], J, T) -> part A by b, the channel gather, part B by m1: (B, [m1, c', m2], J, T)
            p, q, na = split_sizes(plan)
            y = F.conv2d(y, w2[:na].reshape(q * 2 * p, 2 * p, 1, 1), groups=q)
            y = torch.index_select(y, 1, self.split_gather)
            return F.conv2d(y, w2[na:].reshape(p * 2 * q, 2 * q, 1, 1), groups=p)
        return F.conv2d(y, w2)                                                      # (B, 2*R, J, T)

    def _phase_split(self, x):
        """The strided identity conv's weight (N2, 1, N2), rows in ``phase_order``; in ``on_the_fly`` mode built
        from a ramp tied to the input (``TorchNS``), so that exporters keep no N2 x N2 constant (64 kB at 128)."""
        if self.mode is not Mode.ON_THE_FLY:
            return self.phase_split.to(x.dtype)
        ramp = TorchNS(x.dtype, x.device, x).arange(self.plan.n2)
        return (self.phase_index.unsqueeze(1) == ramp.unsqueeze(0)).to(x.dtype).unsqueeze(1)

    def _im_signs(self, y):
        """(1, 2, F, 1): -1 on the imaginary parts of the bins read conjugated (k mod N1 > N1 / 2, see
        ``kernels.half_layout``), else 1; in ``on_the_fly`` mode from a ramp tied to the data."""
        if self.mode is not Mode.ON_THE_FLY:
            return self.im_signs.to(y.dtype)
        n1, nb = self.plan.n1, self.spec.n_bins
        k = TorchNS(y.dtype, y.device, y).arange(nb)
        sign = 1 - 2 * (torch.remainder(k, n1) > n1 // 2).to(y.dtype)
        return torch.cat([torch.ones_like(sign), sign]).reshape(1, 2, nb, 1)

    def _split_bins(self, y, out: str, lead):
        """The bins from the split stage 2's (B, [m1, c', m2], J, T) (``kernels.split_layout``): a power sums
        the two planes before one gather; planes are one gather of re and im, the conjugated half's imaginary
        parts negated. For a symbolic frame count the frames go outermost first (see ``_gather_symbolic``)."""
        p, q, _ = split_sizes(self.plan)
        nb = self.spec.n_bins
        if isinstance(y.shape[-1], torch.SymInt):
            z = y.permute(0, 3, 1, 2).contiguous()                                       # (B, T, 2*N2, J)
            if out == "power":
                z = z.reshape(z.shape[0], z.shape[1], p, 2, q * self.half_j)
                z = (z[:, :, :, 0] * z[:, :, :, 0] + z[:, :, :, 1] * z[:, :, :, 1]).flatten(2, 3)
                y = torch.index_select(z, 2, self.bin_power).transpose(1, 2)            # (B, F, T)
                return y.reshape(tuple(lead) + (nb, -1))
            z = torch.index_select(z.flatten(2, 3), 2, self.bin_planes)                  # (B, T, 2F)
            y = z.unflatten(2, (2, nb)).permute(0, 2, 3, 1)                              # (B, 2, F, T)
        else:
            y = y.flatten(1, 2)                                                          # (B, 2*N2*J, T)
            if out == "power":
                y = y.reshape(y.shape[0], p, 2, q * self.half_j, y.shape[2])
                y = (y[:, :, 0] * y[:, :, 0] + y[:, :, 1] * y[:, :, 1]).flatten(1, 2)    # (B, N2*J, T)
                y = torch.index_select(y, 1, self.bin_power)
                return y.reshape(tuple(lead) + (nb, -1))
            y = torch.index_select(y, 1, self.bin_planes)                                # (B, 2F, T)
            y = y.reshape(y.shape[0], 2, nb, y.shape[2])
        y = y * self._im_signs(y)
        y = self._exact_real_bins(y) if out == "exact" else y
        return y.reshape(tuple(lead) + (2, nb, -1))

    def _gather_symbolic(self, z, out: str):
        """The bins of ``_factored``'s (B, 2*R, J, T) for a symbolic frame count (torch.export / ONNX with a
        dynamic length): the conv's output strides are symbolic, and merging (R, J) in place (a view) or any
        elementwise op on it adds guards such as ``Min(T, 17*T) == T`` that torch.export cannot prove under a Dim
        range; the frames go outermost first (one copy), then the same gather."""
        z = z.unflatten(1, (2, -1)).permute(0, 1, 4, 2, 3).contiguous().flatten(3, 4)   # (B, 2, T, R*J)
        if out == "power":
            p = z[:, 0] * z[:, 0] + z[:, 1] * z[:, 1]                                  # (B, T, R*J)
            return torch.index_select(p, 2, self.bin_index).transpose(1, 2)           # (B, F, T)
        y = torch.index_select(z, 3, self.bin_index).transpose(2, 3)                  # (B, 2, F, T)
        return self._exact_real_bins(y) if out == "exact" else y


def frame_signal(x: torch.Tensor, n: int, hop: int) -> torch.Tensor:
    """(B, L) -> (B, T, N) frames, T = 1 + (L - N) // hop, from reshapes and one Gather (no conv, no unfold).

    The signal is cut into blocks of g = gcd(N, hop) samples; frame t is blocks t*s .. t*s + R - 1
    (s = hop / g, R = N / g), so the gathered index table is only (T, R) and is computed from the dynamic
    length (no frame count baked into exported graphs)."""
    g = math.gcd(n, hop)
    r, s = n // g, hop // g
    m = x.shape[-1] // g                                                       # whole blocks
    blocks = x[:, : m * g].unflatten(1, (-1, g))                               # (B, M, g)
    t = (m - r) // s + 1
    ramp = torch.arange(t, dtype=torch.int64, device=x.device) * s
    idx = ramp.unsqueeze(1) + torch.arange(r, dtype=torch.int64, device=x.device).unsqueeze(0)  # (T, R)
    frames = torch.index_select(blocks, 1, idx.reshape(-1))                    # (B, T*R, g)
    return frames.reshape(frames.shape[0], -1, n)                              # (B, T, N)
