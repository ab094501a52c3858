"""Tensors of rank over 5 (a complex one counted with its (re, im) axis) are folded to rank 5 before lowering, so
that Core ML, which holds rank 5 at most, converts the rewritten model (``rewrite/_rank.py``).

Each case is a pattern real separators use (HDemucs' mask view, open-unmix's Wiener estimates written into a
rank-6 buffer, a complex mask broadcast over sources). Checked: no op of the rewritten model makes a tensor of
rank over 5 (recorded while it runs), the rewritten model matches float64 eager at the example and at another
batch, and its Core ML file (``specrewrite.export``, checked by the MIL evaluator) and a plain ``ct.convert`` of
its trace both convert.
"""
from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import specrewrite as sr
from conftest import TOL, rel_err

N_FFT, HOP = 64, 16


class MaskView(torch.nn.Module):
    """HDemucs' _mask / _ispec: a real (B, S, 2C, F, T) view as complex (B, S, C, F, T), padded, then istft."""

    def forward(self, x):
        spec = torch.stft(x.reshape(-1, x.shape[-1]), N_FFT, HOP, window=torch.hann_window(N_FFT),
                          return_complex=True)
        B, C = x.shape[:2]
        mag = torch.view_as_real(spec).reshape(B, 1, 2 * C, N_FFT // 2 + 1, -1)[:, :, :, :-1]
        m = torch.cat([mag, 0.5 * mag, -mag], dim=1)                       # (B, S, 2C, F-1, T) real
        Bm, S, C2, F, T = m.shape
        out = m.view(Bm, S, -1, 2, F, T).permute(0, 1, 2, 4, 5, 3)        # rank 6
        z = torch.view_as_complex(out.contiguous())                         # complex rank 5
        z = torch.nn.functional.pad(z, (0, 0, 0, 1))
        z = z * (0.5 + 0.25j)
        y = torch.istft(z.reshape(-1, F + 1, T), N_FFT, HOP, window=torch.hann_window(N_FFT))
        return y.reshape(Bm, S, C2 // 2, -1)


class WienerBuffer(torch.nn.Module):
    """open-unmix's Separator: estimates written frame-block by block into a (B, T, F, C, 2, S) buffer, then
    permuted to (B, S, C, F, T, 2) for istft."""

    def forward(self, x):
        B, C, L = x.shape
        spec = torch.view_as_real(torch.stft(x.reshape(-1, L), N_FFT, HOP, window=torch.hann_window(N_FFT),
                                             return_complex=True))            # (B*C, F, T, 2)
        spec = spec.reshape(B, C, N_FFT // 2 + 1, -1, 2).permute(0, 3, 2, 1, 4)  # (B, T, F, C, 2)
        est = torch.zeros(spec.shape + (2,))
        for b in range(B):
            est[b, ..., 0] = spec[b] * 0.75
            est[b, ..., 1] = spec[b] * 0.25
        est = est.permute(0, 5, 3, 2, 1, 4).contiguous()                       # (B, S, C, F, T, 2)
        z = torch.view_as_complex(est.reshape(-1, N_FFT // 2 + 1, est.shape[-2], 2))
        y = torch.istft(z, N_FFT, HOP, window=torch.hann_window(N_FFT), length=L)
        return y.reshape(B, 2, C, L)


class BroadcastMask(torch.nn.Module):
    """A complex mask per source (B, S, C, F, T) times the mixture's spectrum broadcast over sources."""

    def forward(self, x):
        B, C, L = x.shape
        spec = torch.stft(x.reshape(-1, L), N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
        spec = spec.reshape(B, C, N_FFT // 2 + 1, -1)
        mask = torch.stack([spec.abs() / (1 + spec.abs()), 1 / (1 + spec.abs())], dim=1)    # (B, S, C, F, T)
        est = spec.unsqueeze(1) * torch.polar(mask, 0.1 * mask)                           # complex rank 5
        y = torch.istft(est.reshape(-1, N_FFT // 2 + 1, est.shape[-1]), N_FFT, HOP,
                        window=torch.hann_window(N_FFT), length=L)
        return y.reshape(B, 2, C, L)


class WienerBlocks(torch.nn.Module):
    """open-unmix's Separator at batch 1: each source's estimate written frame block by frame block,
    ``est[b, t0:t1] = ...`` on a (B, T, F, C, 2, S) buffer, then permuted for istft (no two adjacent axes stay
    adjacent: only the batch axis of size 1 lets it fold to rank 5)."""

    def forward(self, x):
        B, C, L = x.shape
        spec = torch.view_as_real(torch.stft(x.reshape(-1, L), N_FFT, HOP, window=torch.hann_window(N_FFT),
                                             return_complex=True))            # (B*C, F, T, 2)
        spec = spec.reshape(B, C, N_FFT // 2 + 1, -1, 2).permute(0, 3, 2, 1, 4)  # (B, T, F, C, 2)
        est = torch.zeros(spec.shape + (2,))
        for b in range(B):
            for t0 in range(0, spec.shape[1], 8):
                blk = spec[b, t0:t0 + 8]
                est[b, t0:t0 + 8] = torch.stack([blk * 0.75, blk.abs() * 0.25], -1)
        est = est.permute(0, 5, 3, 2, 1, 4).contiguous()                       # (B, S, C, F, T, 2)
        z = torch.view_as_complex(est.reshape(-1, N_FFT // 2 + 1, est.shape[-2], 2))
        y = torch.istft(z, N_FFT, HOP, window=torch.hann_window(N_FFT), length=L)
        return y.reshape(B, 2, C, L)


class ExpandedSources(torch.nn.Module):
    """A separator's per-source mask: the mixture's complex spectrum broadcast over sources with ``expand``
    (complex rank 5), the mask read as (B, S, C, 2, F, T) real pairs, and the output cast with ``.to(z.real.dtype)``
    (a ``real`` of the wide value)."""

    def forward(self, x):
        B, C, L = x.shape
        z = torch.stft(x.reshape(B * C, L), N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
        F, T = z.shape[-2:]
        z = z.view(B, 1, C, F, T).expand(B, 2, C, F, T)
        m = torch.sigmoid(torch.view_as_real(z).permute(0, 1, 2, 5, 3, 4)) * 2           # (B, S, C, 2, F, T)
        zz = torch.view_as_complex(m.permute(0, 1, 2, 4, 5, 3).contiguous()) * z
        y = torch.istft(zz.reshape(-1, F, T), N_FFT, HOP, window=torch.hann_window(N_FFT), length=L)
        return y.view(B, 2, C, L).to(z.real.dtype)


class Covariance(torch.nn.Module):
    """torchaudio's PSD (beamformers: MVDR, Souden): each frame's channel outer product (B, F, T, C, C) by an
    einsum on the complex spectrum (rank 6 as pairs), weighted by a mask and summed over frames."""

    def forward(self, x):
        B, C, L = x.shape
        z = torch.stft(x.reshape(B * C, L), N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
        z = z.reshape(B, C, z.shape[-2], z.shape[-1]).transpose(-3, -2)                    # (B, F, C, T)
        mask = torch.sigmoid(z.abs().mean(-2))                                              # (B, F, T)
        psd = torch.einsum("...ct,...et->...tce", [z, z.conj()])
        psd = (psd * mask[..., None, None]).sum(dim=-3)
        return torch.view_as_real(psd)


class WidestRank(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.widest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor):
                self.widest = max(self.widest, t.dim() + int(t.is_complex()))
        return out


CASES = {"mask_view": (MaskView, (2, 2, 400)), "wiener_buffer": (WienerBuffer, (1, 2, 400)),
         "broadcast_mask": (BroadcastMask, (1, 2, 400)), "wiener_blocks": (WienerBlocks, (1, 2, 400)),
         "expanded_sources": (ExpandedSources, (1, 2, 400)), "covariance": (Covariance, (2, 3, 400)),
         "covariance_batch1": (Covariance, (1, 3, 400))}


def _rewrite(name):
    cls, shape = CASES[name]
    model = cls().eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = sr.rewrite(model, (x,), strict=True)
    return model, x, fast


@pytest.mark.parametrize("name", list(CASES))
def test_rewritten_model_has_no_tensor_over_rank_5(name):
    model, x, fast = _rewrite(name)
    eager = WidestRank()
    with torch.no_grad(), eager:
        model(x)
    assert eager.widest == 6, "the case must build a rank-6 tensor (counting a complex tensor's pair axis)"
    assert any("rank over 5" in n and "held as reshapes" in n for n in fast.specrewrite_report.notes), \
        fast.specrewrite_report.notes
    for b in ([x.shape[0], x.shape[0] + 1] if name == "mask_view" else [x.shape[0]]):
        xb = torch.randn(b, *x.shape[1:], generator=torch.Generator().manual_seed(b))
        seen = WidestRank()
        with torch.no_grad(), seen:
            got = fast(xb)
        assert seen.widest <= 5, f"the rewritten model made a tensor of rank {seen.widest}"
        with torch.no_grad():
            ref64 = model.double()(xb.double())
            ref32 = model.float()(xb)
        err, eager_err = rel_err(got, ref64), rel_err(ref32, ref64)
        assert err <= max(4 * eager_err, TOL["fp32_rel"]), (err, eager_err)


@pytest.mark.parametrize("name", list(CASES))
def test_folded_model_converts_to_core_ml(name, tmp_path):
    ct = pytest.importorskip("coremltools")
    model, x, fast = _rewrite(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = sr.export(model, (x,), str(tmp_path / "m.mlpackage"), dynamic_shapes=False)
    assert r.ok and r.spectral_ops_left == [], str(r)
    assert r.max_rel_err is not None and r.max_rel_err <= TOL["fp32_rel"], str(r)
    # the way a user converts by hand: trace the rewritten model, plain ct.convert (no plugin)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(fast, (x,), check_trace=False)
        ct.convert(traced, inputs=[ct.TensorType(shape=x.shape)], convert_to="mlprogram",
                   minimum_deployment_target=ct.target.iOS15, skip_model_load=True)


class SevenAxes(torch.nn.Module):
    """A rank-7 tensor permuted so that no two axes stay adjacent: it cannot fold to rank 5."""

    def forward(self, x):
        spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True).abs()
        y = spec[:, :30, :16].reshape(2, 3, 2, 5, 2, 2, 4)
        return y.permute(6, 4, 2, 0, 5, 3, 1).sum(dim=(0, 1, 2))


def test_unfoldable_rank_is_reported_and_numbers_stay_right():
    model = SevenAxes().eval()
    x = torch.randn(2, 400, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = sr.rewrite(model, (x,))
    notes = fast.specrewrite_report.notes
    assert any("left as they are" in n and "Core ML cannot convert them" in n for n in notes), notes
    with torch.no_grad():
        assert rel_err(fast(x), model.double()(x.double())) <= TOL["fp32_rel"]


@pytest.mark.parametrize("target", ["iOS15", "iOS18"])
@pytest.mark.parametrize("name", ["mask_view", "broadcast_mask", "wiener_buffer", "wiener_blocks"])
def test_plugin_folds_the_unchanged_models_program(name, target):
    """The native route: the unchanged model traced and converted by plain ct.convert inside register(): the MIL
    program the frontend builds is folded to rank 5 (``coreml/_fold.py``, the same plan as the graph pass) and
    matches float64 eager in the MIL evaluator at fp32. From iOS18 coremltools writes slices with
    ``slice_update`` instead of its fused ``torch_tensor_assign``: both are folded."""
    ct = pytest.importorskip("coremltools")
    import specrewrite.coreml as src
    from specrewrite.coreml.evaluate import evaluate

    cls, shape = CASES[name]
    model = cls().eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (x,), check_trace=False)
        with src.register():
            ml = ct.convert(traced, inputs=[ct.TensorType(shape=x.shape, name="x")], convert_to="mlprogram",
                            minimum_deployment_target=getattr(ct.target, target),
                            compute_precision=ct.precision.FLOAT32, skip_model_load=True)
    (got,) = evaluate(ml, {"x": x.numpy()}).values()
    with torch.no_grad():
        ref64, ref32 = model.double()(x.double()), model.float()(x)
    err, eager = rel_err(torch.from_numpy(got), ref64), rel_err(ref32, ref64)
    assert err <= max(4 * eager, TOL["fp32_rel"]), (err, eager)


def _new_zeros(x):
    y = x.unsqueeze(1) * 2
    return (y.new_zeros(y.shape) + y).reshape(2, -1)


def _cat_then_permute(x):
    y = x.unsqueeze(1)                                   # (B, 1, C, F, T, 2): the unit axis kept for cat
    c = torch.cat([y, y], 1)
    return torch.cat([c.reshape(2, -1), y.permute(0, 2, 1, 3, 4, 5).reshape(2, -1)], 1)


def _pad_unit_axis(x):
    y = x.unsqueeze(1) + 1
    a = torch.nn.functional.pad(y, (1, 1))[..., 1:-1] * 2
    b = torch.nn.functional.pad(y, (0, 0, 0, 0, 0, 0, 0, 0, 1, 1))   # the axis of size 1 padded to 3
    return torch.cat([a.reshape(2, -1), b.reshape(2, -1)], 1)


def _broadcast_unit(x):
    y = x.unsqueeze(1)
    return (torch.cat([y, -y], 1) * y).permute(0, 2, 1, 3, 4, 5).reshape(2, -1)


@pytest.mark.parametrize("fn", [_new_zeros, _cat_then_permute, _pad_unit_axis, _broadcast_unit],
                         ids=lambda f: f.__name__)
def test_fold_is_exact_or_declines(fn):
    """Graph-level cases around axes of size 1 (kept in one value, dropped in the next): the folded graph has no
    tensor over rank 5 and gives eager's numbers exactly, or the graph is left as it was, never half-changed."""
    from specrewrite.rewrite._rank import MAX_RANK, fold_wide

    class M(torch.nn.Module):
        def forward(self, x):
            return fn(x)

    x = torch.randn(2, 3, 4, 5, 2, generator=torch.Generator().manual_seed(1))
    ep = torch.export.export(M(), (x,))
    gm = ep.graph_module
    folded, why = fold_wide(gm)
    seen = WidestRank()
    with torch.no_grad(), seen:
        (got,) = gm(x)
    assert torch.equal(got, fn(x))
    assert folded and seen.widest <= MAX_RANK, (folded, why, seen.widest)
