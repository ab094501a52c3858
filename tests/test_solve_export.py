"""Complex solves and inverses (MVDR beamformers: torchaudio's SoudenMVDR / RTFMVDR, speechbrain's Mvdr) run on
the real block system; inside an exporter's trace its solve is Gauss-Jordan elimination with partial pivoting
(``rewrite/_solve.py``), because ONNX has no solve operator and coremltools no converter. Judged against float64
next to torch.linalg.solve's own float32 error, and end to end in ONNX Runtime."""
from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch.export import Dim

import specrewrite as sr
from conftest import rel_err
from specrewrite.rewrite._solve import gauss_jordan


@pytest.mark.parametrize("n, cond", [(2, 1e1), (8, 1e2), (8, 1e4), (17, 1e3)])
def test_unrolled_lu_is_as_accurate_as_lapack_in_float32(n, cond):
    """Over 20 batches of 6 systems with a zero where elimination without pivoting divides: the median ratio of
    max errors to LAPACK's float32 solve within 2 (measured 0.8-1.8), every batch's rms error within the
    verification's RMS_FACTOR of LAPACK's (measured <= 6.2 at condition number 1e4)."""
    from specrewrite.rewrite.verify import RMS_FACTOR

    ratios = []
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        u, _ = torch.linalg.qr(torch.randn(6, n, n, generator=g, dtype=torch.float64))
        v, _ = torch.linalg.qr(torch.randn(6, n, n, generator=g, dtype=torch.float64))
        a = u @ torch.diag_embed(torch.logspace(0, -np.log10(cond), n, dtype=torch.float64)) @ v.mT
        a[:, 0, 0] = 0.0
        b = torch.randn(6, n, 3, generator=g, dtype=torch.float64)
        x64 = torch.linalg.solve(a, b)
        lapack = torch.linalg.solve(a.float(), b.float()).double() - x64
        ours = gauss_jordan(a.float(), b.float()).double() - x64
        ratios.append(float(ours.abs().max() / lapack.abs().max()))
        assert ours.pow(2).mean().sqrt() <= RMS_FACTOR * lapack.pow(2).mean().sqrt(), seed
    assert np.median(ratios) <= 2.0, ratios


class MVDR(torch.nn.Module):
    """An MVDR-style beamformer: covariance by einsum, a diagonally loaded solve and an inverse, per bin."""

    def forward(self, x):   # (mics, time)
        w = torch.hann_window(512, dtype=x.dtype)
        X = torch.stft(x, 512, 128, window=w, return_complex=True)
        psd = torch.einsum("cft,eft->fce", X, X.conj()) / X.shape[-1]
        eye = torch.eye(psd.size(-1), dtype=psd.dtype)
        num = torch.linalg.solve(psd + 1e-3 * eye, psd[..., 0])
        inv = torch.linalg.inv(psd + 1e-2 * eye)
        y = torch.einsum("fc,cft->ft", num.conj(), X)
        return torch.view_as_real(y), torch.view_as_real(inv)


def _exports_and_matches(model, x, lengths, min_t, path):
    """Rewrite, export with a dynamic length, run in ONNX Runtime at ``lengths``: each output within 4x eager
    float32's error of float64 eager."""
    fast = sr.rewrite(model, (x,))
    # the solve's size is the number of microphones (axis 0): an exporter gets it unrolled at a fixed size only,
    # so that axis is fixed with the reason and the time axis stays dynamic
    mics, time = fast.specrewrite_report.axes
    assert not mics["dynamic"] and "linear solve or inverse" in mics["why"] and "test_solve_export.py" in \
        mics["why"], mics
    assert time["dynamic"], time
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(fast, (x,), path, dynamo=True, verbose=False,
                          dynamic_shapes=({1: Dim("t", min=min_t, max=1 << 20)},))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for length in lengths:
        xi = torch.randn(x.shape[0], length, generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            ref = model.double()(xi.double())
            own = model.float()(xi)
        got = sess.run(None, {sess.get_inputs()[0].name: xi.numpy()})
        for g, r, e in zip(got, ref, own):
            assert rel_err(torch.from_numpy(g), r) <= max(4 * rel_err(e, r), 1e-6), length


def test_complex_solve_and_inverse_export_to_onnx(tmp_path):
    x = torch.randn(4, 8000, generator=torch.Generator().manual_seed(0))
    _exports_and_matches(MVDR().eval(), x, (8000, 12001), 600, str(tmp_path / "mvdr.onnx"))


def test_a_solve_larger_than_the_unrolled_one_is_named_in_the_report():
    """torchmetrics' SDR solves a 512 x 512 Toeplitz system by default: past ``MAX_N`` the solve stays
    ``linalg.solve`` (eager is right, exporters refuse it); the report says which solve, where and why."""
    from specrewrite.rewrite._solve import MAX_N

    n = MAX_N + 16

    class Big(torch.nn.Module):
        def forward(self, t):
            r = torch.fft.irfft(torch.fft.rfft(t, n=4 * n).abs() ** 2, n=4 * n)[..., :n]
            i = torch.arange(n)
            return torch.linalg.solve(r[..., (i[:, None] - i[None, :]).abs()] + torch.eye(n), r)

    t = torch.randn(1, 2 * n, generator=torch.Generator().manual_seed(0))
    fast = sr.rewrite(Big().eval(), (t,))
    skipped = [e for e in fast.specrewrite_report.skipped if e.op == "torch.linalg.solve"]
    assert len(skipped) == 1 and skipped[0].params == {"n": n} and "test_solve_export.py" in skipped[0].where
    assert f"{n} x {n}" in str(fast.specrewrite_report)
    with torch.no_grad():
        ref = Big().double()(t.double())
    assert rel_err(fast(t), ref) <= 4 * max(rel_err(Big()(t), ref), 1e-7)


class RealBlockMVDR(torch.nn.Module):
    """speechbrain's Mvdr: the complex covariance as its real block form [[Ar, -Ai], [Ai, Ar]], inverted with a
    real ``torch.inverse`` / ``torch.linalg.inv`` / ``inv_ex`` (no ONNX function: torch.onnx refused the export)."""

    def forward(self, x):   # (mics, time)
        X = torch.view_as_real(torch.stft(x, 64, 16, window=torch.hann_window(64, dtype=x.dtype),
                                          return_complex=True))
        re, im = X[..., 0], X[..., 1]
        ar = torch.einsum("cft,dft->fcd", re, re) + torch.einsum("cft,dft->fcd", im, im)
        ai = torch.einsum("cft,dft->fcd", im, re) - torch.einsum("cft,dft->fcd", re, im)
        a = torch.cat([torch.cat([ar, -ai], -1), torch.cat([ai, ar], -1)], -2) / X.shape[-2]
        a = a + 1e-1 * torch.eye(a.shape[-1], dtype=x.dtype)
        return torch.inverse(a) @ a[..., :1], torch.linalg.inv(a)[..., 0], torch.linalg.inv_ex(a)[0][..., 1]


def test_real_inverse_exports_to_onnx(tmp_path):
    x = torch.randn(4, 1000, generator=torch.Generator().manual_seed(0))
    _exports_and_matches(RealBlockMVDR().eval(), x, (1000, 1601), 600, str(tmp_path / "inv.onnx"))


@pytest.mark.parametrize("model", [MVDR, RealBlockMVDR])
def test_solves_and_inverses_convert_on_the_core_ml_plugin_route(model):
    """The unchanged models through plain ct.convert inside register() (coremltools has no converter for a solve or
    an inverse): the same unrolled elimination as the rewrite, on MIL values; the MIL evaluator matches float64
    eager within 4x eager float32's own error."""
    pytest.importorskip("coremltools")
    from test_coreml_common import plugin_convert, run, src

    x = torch.randn(4, 1000, generator=torch.Generator().manual_seed(1))
    m = model().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with src.register():
            ml = plugin_convert(m, (x,))
    got = run(ml, (x,))
    with torch.no_grad():
        ref64, ref32 = m.double()(x.double()), m.float()(x)
    for g, r64, r32 in zip(got, ref64, ref32):
        err, eager = rel_err(torch.from_numpy(np.asarray(g, np.float64)), r64), rel_err(r32, r64)
        assert err <= max(4 * eager, 1e-6), (err, eager)
