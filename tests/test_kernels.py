"""Kernel-level checks in float64: DFT bases (dense, factored, synthesis, fft matrices), filterbanks and DCT
against numpy.fft and torchaudio.functional (run in float64)."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from conftest import TOL, rel_err, record_error
from specrewrite.kernels import (NP, FactorPlan, analysis_dense, analysis_factored, analysis_stage1, choose_plan,
                                 create_dct, half_layout, half_stage2,
                                 fft_matrix, ifft_real_matrix, linear_fbanks, melscale_fbanks, synthesis_dense,
                                 synthesis_factored_a, synthesis_factored_b, synthesis_conv_tables,
                                 synthesis_conv_weights, synthesis_groups)
from specrewrite.specs import padded_window

RNG = np.random.default_rng(1234)


def _check(a, b, what):
    e = rel_err(a, b)
    record_error("kernels", e)
    assert e <= TOL["fp64_kernel"], f"{what}: rel err {e:.3e}"


@contextlib.contextmanager
def _default_f64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _window(kind, n):
    if kind == "hann":
        return torch.hann_window(n, dtype=torch.float64).numpy()
    if kind == "hamming":
        return torch.hamming_window(n, dtype=torch.float64).numpy()
    if kind == "random":
        return RNG.uniform(0.1, 1.0, n)
    return np.ones(n)


def _frames(n, count=5):
    return RNG.standard_normal((count, n))


# ----------------------------------------------------------------------------------------- dense analysis
@pytest.mark.parametrize("n_fft", [1, 2, 7, 16, 97, 400, 512, 1021])
@pytest.mark.parametrize("onesided", [True, False])
@pytest.mark.parametrize("win", ["hann", "hamming", "random", "none"])
def test_analysis_dense_matches_numpy(n_fft, onesided, win):
    w = _window(win, n_fft)
    nb = n_fft // 2 + 1 if onesided else n_fft
    scale = 0.37
    basis = np.asarray(analysis_dense(NP, n_fft, nb, w, scale))
    assert basis.shape == (2 * nb, n_fft)
    x = _frames(n_fft)
    y = x @ basis.T
    ref = (np.fft.rfft(x * w, axis=-1) if onesided else np.fft.fft(x * w, axis=-1)) * scale
    got = y[:, :nb] + 1j * y[:, nb:]
    _check(got, ref, f"analysis_dense n={n_fft}")


@pytest.mark.parametrize("n_fft,win_length", [(16, 9), (400, 320), (512, 400), (101, 50)])
def test_analysis_dense_with_centred_short_window(n_fft, win_length):
    w = torch.hann_window(win_length, dtype=torch.float64)
    pw = padded_window(w.numpy(), win_length, n_fft)
    # torch.stft centres a short window inside n_fft: compare the padded window against torch's own padding
    x = torch.randn(3 * n_fft, dtype=torch.float64)
    ref = torch.stft(x, n_fft, n_fft, win_length, w, center=False, return_complex=True)
    basis = np.asarray(analysis_dense(NP, n_fft, n_fft // 2 + 1, pw))
    frames = x.numpy()[: 3 * n_fft].reshape(3, n_fft)
    y = frames @ basis.T
    nb = n_fft // 2 + 1
    got = (y[:, :nb] + 1j * y[:, nb:]).T
    _check(got, ref.numpy(), "analysis_dense short window")


# ----------------------------------------------------------------------------------------- factored analysis
def _apply_factored(plan, stage1, stage2, x):
    """Reference application of the factored stages to one frame (float64, explicit index arithmetic)."""
    n1, n2 = plan.n1, plan.n2
    s1 = np.asarray(stage1).reshape(n2, 2, n1, n1)
    taps = x.reshape(n1, n2)                      # sample N2*i1 + i2 -> [i1, i2]
    y1 = np.einsum("gckt,tg->gck", s1, taps)      # (N2, 2, N1)
    v = y1.transpose(2, 1, 0).reshape(n1, 2 * n2)  # per k1: [re over n2 | im over n2]
    y2 = v @ np.asarray(stage2)                    # (N1, 2*K2)
    re, im = y2[:, : plan.k2], y2[:, plan.k2:]
    out = np.zeros(n1 * plan.k2, dtype=complex)
    for k2 in range(plan.k2):
        out[k2 * n1:(k2 + 1) * n1] = re[:, k2] + 1j * im[:, k2]   # bin k = k1 + N1*k2
    return out


@pytest.mark.parametrize("n1,n2", [(4, 4), (8, 4), (4, 8), (16, 32), (32, 16), (5, 7), (3, 64), (25, 16)])
@pytest.mark.parametrize("onesided", [True, False])
def test_factored_analysis_reproduces_dft(n1, n2, onesided):
    n = n1 * n2
    nb = n // 2 + 1 if onesided else n
    k2 = min(n2, -(-nb // n1))
    plan = FactorPlan(n1, n2, k2)
    w = _window("random", n)
    stage1, stage2 = analysis_factored(NP, plan, w, 0.5)
    assert np.asarray(stage1).shape == (n2 * 2 * n1, n1)
    assert np.asarray(stage2).shape == (2 * n2, 2 * k2)
    for x in _frames(n, 3):
        got = _apply_factored(plan, stage1, stage2, x)[:nb]
        ref = np.fft.fft(x * w)[:nb] * 0.5
        _check(got, ref, f"factored {n1}x{n2}")


def _apply_half(plan, stage1, stage2, index, x):
    """Reference application of the half form (``half_layout``) to one frame: stage 1 for k1 <= N1 // 2 only,
    stage 2 over every phase (rows direct + conjugated), the bins picked by ``index``."""
    n1, n2 = plan.n1, plan.n2
    nj = n1 // 2 + 1
    s1 = np.asarray(stage1).reshape(n2, 2, nj, n1)
    y1 = np.einsum("gcjt,tg->gcj", s1, x.reshape(n1, n2))   # (N2, 2, J)
    v = y1.transpose(2, 0, 1).reshape(nj, 2 * n2)            # per j: (n2, c) -- the conv layout's columns
    s2 = np.asarray(stage2)                                   # (2*N2 [c, n2], 2*R [c, row])
    s2 = s2.reshape(2, n2, -1).transpose(1, 0, 2).reshape(2 * n2, -1)   # rows as (n2, c)
    y2 = v @ s2                                               # (J, 2*R)
    rows = y2.shape[1] // 2
    flat = (y2[:, :rows] + 1j * y2[:, rows:]).T.reshape(-1)  # (row, j)
    return flat[index]


@pytest.mark.parametrize("n1,n2", [(4, 4), (8, 4), (4, 8), (16, 32), (32, 16), (5, 7), (3, 64), (25, 16),
                                   (64, 64), (7, 9)])
@pytest.mark.parametrize("onesided", [True, False])
def test_half_form_reproduces_dft(n1, n2, onesided):
    """Stage 1 for half the first-stage bins, the others from conjugated stage-2 rows: every bin of the DFT,
    odd N1 and N2 included, one- and two-sided, against numpy's FFT in float64."""
    n = n1 * n2
    nb = n // 2 + 1 if onesided else n
    plan = FactorPlan(n1, n2, min(n2, -(-nb // n1)))
    direct, conj, index = half_layout(plan, nb)
    w = _window("random", n)
    stage1, stage2 = analysis_stage1(NP, plan, w, 0.5, half=True), half_stage2(NP, plan, nb)
    assert np.asarray(stage1).shape == (n2 * 2 * (n1 // 2 + 1), n1)
    assert np.asarray(stage2).shape == (2 * n2, 2 * (len(direct) + len(conj)))
    # rows beyond a full DFT's only where one row is needed both ways (onesided: the middle one, for j = 0)
    assert len(direct) + len(conj) <= (n2 + 1 if onesided else 2 * n2)
    for x in _frames(n, 3):
        got = _apply_half(plan, stage1, stage2, index, x)
        ref = np.fft.fft(x * w)[:nb] * 0.5
        _check(got, ref, f"half form {n1}x{n2}")


@pytest.mark.parametrize("n_fft,hop", [(256, 64), (400, 160), (512, 128), (1024, 256), (2048, 512), (4096, 1024),
                                       (1000, 250), (512, None), (300, 75)])
def test_choose_plan_is_consistent(n_fft, hop):
    nb = n_fft // 2 + 1
    plan = choose_plan(n_fft, hop, nb)
    if plan is None:
        return
    assert plan.n1 * plan.n2 == n_fft
    if hop is not None:
        assert hop % plan.n2 == 0
    assert plan.k2 * plan.n1 >= nb and plan.k2 <= plan.n2
    x = _frames(n_fft, 1)[0]
    w = _window("hann", n_fft)
    got = _apply_factored(plan, *analysis_factored(NP, plan, w), x)[:nb]
    _check(got, np.fft.rfft(x * w), f"chosen plan {plan}")


def test_choose_plan_factors_large_sizes():
    # the design relies on factoring at 4096 (68 MB dense basis otherwise)
    plan = choose_plan(4096, 1024, 2049)
    assert plan is not None and plan.n == 4096


# ----------------------------------------------------------------------------------------- synthesis
@pytest.mark.parametrize("n_fft", [2, 7, 16, 97, 400, 512])
@pytest.mark.parametrize("onesided", [True, False])
def test_synthesis_dense_inverts(n_fft, onesided):
    w = _window("random", n_fft)
    nb = n_fft // 2 + 1 if onesided else n_fft
    a = np.asarray(synthesis_dense(NP, n_fft, nb, onesided, w, 1.7))
    assert a.shape == (2 * nb, n_fft)
    z = RNG.standard_normal((4, nb)) + 1j * RNG.standard_normal((4, nb))
    got = np.concatenate([z.real, z.imag], axis=1) @ a
    if onesided:
        ref = np.fft.irfft(z, n_fft, axis=-1) * w * 1.7   # ignores imag of DC / Nyquist like torch
    else:
        ref = np.fft.ifft(z, n_fft, axis=-1).real * w * 1.7
    _check(got, ref, f"synthesis_dense n={n_fft}")
    # and it inverts the analysis basis (unit window): x -> X -> x
    x = _frames(n_fft, 2)
    fwd = np.asarray(analysis_dense(NP, n_fft, nb, np.ones(n_fft)))
    inv = np.asarray(synthesis_dense(NP, n_fft, nb, onesided, np.ones(n_fft), 1.0))
    _check((x @ fwd.T) @ inv, x, "analysis -> synthesis identity")


@pytest.mark.parametrize("n1,n2", [(4, 4), (8, 4), (4, 8), (16, 32), (5, 7), (3, 64)])
def test_synthesis_factored_inverts(n1, n2):
    plan = FactorPlan(n1, n2, n2)
    n = plan.n
    a = np.asarray(synthesis_factored_a(NP, plan))
    b = np.asarray(synthesis_factored_b(NP, plan, 1.0 / n))
    assert a.shape == (n2, 2 * n1, 2 * n1) and b.shape == (n2, 2 * n2)
    z = RNG.standard_normal(n) + 1j * RNG.standard_normal(n)
    zz = z.reshape(n1, n2)                         # bin N2*k1 + k2 -> [k1, k2]
    inp = np.concatenate([zz.real, zz.imag], axis=0).T  # (N2[k2], 2*N1[c, k1])
    u = np.einsum("ki,koi->ko", inp, a)             # (N2[k2], 2*N1[c', n1])
    u = u.reshape(n2, 2, n1).transpose(2, 1, 0).reshape(n1, 2 * n2)  # per n1: [re over k2 | im over k2]
    x = u @ b.T                                     # (N1[n1], N2[n2]) -> sample n1 + N1*n2
    got = x.T.reshape(n)
    _check(got, np.fft.ifft(z).real, f"synthesis factored {n1}x{n2}")


@pytest.mark.parametrize("n1,n2", [(4, 4), (8, 4), (4, 8), (16, 32), (5, 7), (7, 5), (3, 64), (6, 9)])
@pytest.mark.parametrize("window", [False, True])
@pytest.mark.parametrize("half", [False, True])
def test_synthesis_conv_form_is_irfft(n1, n2, window, half):
    """The emitters' factored inverse (``synthesis_conv_tables`` / ``_weights``), in full and in the half form
    (stage A for k2 <= N2 / 2 only, stage B counting the others' conjugates) run in numpy over a onesided spectrum whose DC and Nyquist carry imaginary
    parts (irfft ignores them) equals numpy's irfft times the window, for odd and even N1 and N2."""
    plan = FactorPlan(n1, n2, n2, half=half)
    n, nb = plan.n, plan.n // 2 + 1
    ha = synthesis_groups(plan)
    win = RNG.uniform(0.5, 1.5, n) if window else np.ones(n)
    wa, wb = (np.asarray(w)[..., 0] for w in synthesis_conv_weights(NP, plan, win, 0.7))
    tables = synthesis_conv_tables(plan)
    assert wa.shape == (ha * 2 * n1, 2 * n1) and wb.shape == (n * 1, 2 * ha) and ha == (n2 // 2 + 1 if half else n2)
    z = RNG.standard_normal((nb, 3)) + 1j * RNG.standard_normal((nb, 3))   # 3 frames
    zz = np.concatenate([z.real, z.imag], 0)                            # (2F, T)
    x = zz[tables["gather_a"]].reshape(ha, 2 * n1, 3)
    x = np.einsum("goi,git->got", wa.reshape(ha, 2 * n1, 2 * n1), x).reshape(-1, 3)
    x = x[tables["gather_b"]].reshape(n1, 2 * ha, 3)
    x = np.einsum("goi,git->got", wb.reshape(n1, n2, 2 * ha), x).reshape(-1, 3)
    got = x[tables["sample_order"]]
    _check(got, np.fft.irfft(z, n, axis=0) * 0.7 * win[:, None], f"synthesis {n1}x{n2} half={half}")


# ----------------------------------------------------------------------------------------- plain fft matrices
@pytest.mark.parametrize("n", [1, 2, 5, 8, 31, 64, 100])
@pytest.mark.parametrize("inverse", [False, True])
def test_fft_matrix(n, inverse):
    m = np.asarray(fft_matrix(NP, n, n, inverse, 0.25))
    assert m.shape == (2 * n, 2 * n)
    z = RNG.standard_normal((3, n)) + 1j * RNG.standard_normal((3, n))
    y = np.concatenate([z.real, z.imag], axis=1) @ m
    got = y[:, :n] + 1j * y[:, n:]
    ref = (np.fft.ifft(z, axis=-1) * n if inverse else np.fft.fft(z, axis=-1)) * 0.25
    _check(got, ref, f"fft_matrix n={n}")


@pytest.mark.parametrize("n", [1, 2, 5, 8, 31, 64, 100])
def test_ifft_real_matrix_is_irfft(n):
    nb = n // 2 + 1
    m = np.asarray(ifft_real_matrix(NP, n, nb, True, 1.0 / n))
    z = RNG.standard_normal((3, nb)) + 1j * RNG.standard_normal((3, nb))
    got = np.concatenate([z.real, z.imag], axis=1) @ m
    _check(got, np.fft.irfft(z, n, axis=-1), f"ifft_real_matrix n={n}")


# ----------------------------------------------------------------------------------------- filterbanks / dct
@pytest.mark.parametrize("mel_scale", ["htk", "slaney"])
@pytest.mark.parametrize("norm", [None, "slaney"])
@pytest.mark.parametrize("n_freqs,f_min,f_max,n_mels,sr", [(201, 0.0, 8000.0, 40, 16000),
                                                          (257, 20.0, 7600.0, 80, 16000),
                                                          (1025, 0.0, 11025.0, 128, 22050),
                                                          (513, 300.0, 4000.0, 23, 44100)])
def test_melscale_fbanks_matches_torchaudio(mel_scale, norm, n_freqs, f_min, f_max, n_mels, sr):
    got = melscale_fbanks(n_freqs, f_min, f_max, n_mels, sr, norm, mel_scale)
    with _default_f64():
        ref = AF.melscale_fbanks(n_freqs, f_min, f_max, n_mels, sr, norm, mel_scale)
    assert got.shape == tuple(ref.shape) == (n_freqs, n_mels)
    _check(got, ref, "melscale_fbanks")


@pytest.mark.parametrize("n_freqs,f_min,f_max,n_filter,sr", [(201, 0.0, 8000.0, 128, 16000),
                                                            (257, 50.0, 6000.0, 20, 16000),
                                                            (513, 0.0, 22050.0, 64, 44100)])
def test_linear_fbanks_matches_torchaudio(n_freqs, f_min, f_max, n_filter, sr):
    got = linear_fbanks(n_freqs, f_min, f_max, n_filter, sr)
    with _default_f64():
        ref = AF.linear_fbanks(n_freqs, f_min, f_max, n_filter, sr)
    _check(got, ref, "linear_fbanks")


@pytest.mark.parametrize("n_out,n_in", [(13, 40), (40, 40), (20, 128), (1, 7)])
@pytest.mark.parametrize("norm", [None, "ortho"])
def test_create_dct_matches_torchaudio(n_out, n_in, norm):
    got = create_dct(n_out, n_in, norm)
    with _default_f64():
        ref = AF.create_dct(n_out, n_in, norm)
    assert got.shape == tuple(ref.shape) == (n_in, n_out)
    _check(got, ref, "create_dct")
    if norm == "ortho" and n_out == n_in:
        _check(got.T @ got, np.eye(n_in), "dct orthonormal")


@pytest.mark.parametrize("n_fft,hop", [(525, 144), (924, 130), (455, 311), (2000, 441), (256, 7)])
def test_framed_plan_where_no_phase_split_divides_the_hop(n_fft, hop):
    from specrewrite.kernels import framed_plan, stft_plan

    nb = n_fft // 2 + 1
    assert choose_plan(n_fft, hop, nb) is None
    # no phase split of 4 or more phases divides these hops: 'auto' and 'factored' both take the framed plan,
    # whose longer sum (N1 or 2*N2 products) is as short as it can be
    plan = stft_plan("factored", n_fft, hop, nb)
    assert stft_plan("auto", n_fft, hop, nb) == plan == framed_plan(n_fft, nb)
    assert plan.framed and plan.n1 * plan.n2 == n_fft
    assert plan.n1 >= 4 and 4 <= plan.n2 <= 32 and plan.k2 * plan.n1 >= nb
    longest = min(max(n_fft // d, 2 * d) for d in range(4, 33) if n_fft % d == 0 and n_fft // d >= 4)
    assert max(plan.n1, 2 * plan.n2) == longest
    x = _frames(n_fft, 1)[0]
    w = _window("hann", n_fft)
    got = _apply_factored(plan, *analysis_factored(NP, plan, w), x)[:nb]
    _check(got, np.fft.rfft(x * w), f"framed plan {plan}")
    assert stft_plan("dense", n_fft, hop, nb) is None
    assert framed_plan(521, 261) is None and framed_plan(526, 264) is None   # prime; 2 x a prime above 32
    assert stft_plan("auto", 63, 5, 32) is None                                # short: dense under 'auto'
    assert stft_plan("auto", 2048, 882, 1025).framed                           # not the 2-phase split (N1 1024)
    assert stft_plan("auto", 925, 840, 463).framed                             # nor 5 phases (N1 185)
    assert not stft_plan("auto", 1024, 256, 513).framed                        # a balanced phase split stays


@pytest.mark.parametrize("n,chunks", [(619, 10), (521, 9), (1021, 16), (64, 1)])
def test_chunked_basis_is_the_dense_basis_in_runs_of_taps(n, chunks):
    from specrewrite.kernels import CHUNK_TAPS, analysis_chunked, dense_chunks

    assert dense_chunks("auto", n, None) == chunks and dense_chunks("dense", n, None) == 1
    assert dense_chunks("auto", n, FactorPlan(4, n // 4, 1)) == 1 and dense_chunks("auto", 63, None) == 1
    nb, lc = n // 2 + 1, -(-n // chunks)
    assert lc <= CHUNK_TAPS
    w = _window("hann", n)
    got = np.asarray(analysis_chunked(NP, n, nb, w, 0.5, chunks)).reshape(chunks, 2 * nb, lc)
    flat = got.transpose(1, 0, 2).reshape(2 * nb, chunks * lc)
    _check(flat[:, :n], np.asarray(analysis_dense(NP, n, nb, w, 0.5)), f"chunked basis {n}/{chunks}")
    assert not flat[:, n:].any()


def test_stft_layout_takes_chunks_where_a_plan_would_sum_long_or_need_a_dilation_on_a_graph_weight():
    from specrewrite.kernels import stft_layout, stft_plan

    assert stft_layout("auto", 894, 303, 448) == (None, 14)                 # only a 3-phase split: 298 taps
    plan, chunks = stft_layout("auto", 1024, 441, 513)
    assert plan.framed and chunks == 1
    assert stft_layout("auto", 1024, 441, 513, constant_weights=False) == (None, 16)
    assert stft_layout("auto", 1024, 256, 513, constant_weights=False)[0] == stft_plan("auto", 1024, 256, 513)
    assert stft_layout("dense", 619, 601, 310) == (None, 1)


@pytest.mark.parametrize("n1,p,q,n_bins", [(16, 16, 16, 2049), (8, 4, 8, 129), (5, 3, 4, 31), (6, 5, 3, 90),
                                           (4, 4, 4, 64)])
def test_split_stage2_reproduces_dft(n1, p, q, n_bins):
    """Stage 1 in its half form with the phases in ``phase_order``, then stage 2 split as N2 = P * Q
    (``kernels.split``), run in numpy: every bin (one- and two-sided, odd N1 / P / Q) and its power equal numpy's
    FFT of the windowed frame in float64."""
    from specrewrite.kernels.dft import phase_order
    from specrewrite.kernels.split import split_layout, split_sizes, split_stage2

    plan = FactorPlan(n1, p * q, 0, p=p)
    n, nj, n2 = plan.n, n1 // 2 + 1, p * q
    win = RNG.uniform(0.5, 1.5, n)
    x = RNG.standard_normal(n)
    s1 = np.asarray(analysis_stage1(NP, plan, win, 0.5, half=True)).reshape(n2, 2 * nj, n1)
    taps = x.reshape(n1, n2)[:, phase_order(plan)]                     # tap i1 of each group's phase
    y = np.einsum("gri,ig->gr", s1, taps).reshape(q, 2 * p, nj)        # groups (b, a), rows (c, j) -> (b, [a, c], j)
    flat = np.asarray(split_stage2(NP, plan))
    _, _, na = split_sizes(plan)
    wa, wb = flat[:na].reshape(q, 2 * p, 2 * p), flat[na:].reshape(p, 2 * q, 2 * q)
    gather_b, planes, signs, power = split_layout(plan, n_bins)
    y = np.einsum("bor,brj->boj", wa, y.reshape(q, p, 2, nj).reshape(q, 2 * p, nj)).reshape(2 * n2, nj)
    y = y[gather_b].reshape(p, 2 * q, nj)
    y = np.einsum("mor,mrj->moj", wb, y).reshape(-1)                   # (m1, c', m2, j)
    got = y[planes[:n_bins]] + 1j * y[planes[n_bins:]] * signs
    ref = np.fft.fft(x * win)[:n_bins] * 0.5
    _check(got, ref, f"split stage 2 {n1}x{p}x{q}")
    pw = (y.reshape(p, 2, q, nj) ** 2).sum(1).reshape(-1)[power]
    _check(pw, np.abs(ref) ** 2, f"split stage 2 power {n1}x{p}x{q}")


@pytest.mark.parametrize("n1,p,n2,half", [(16, 4, 8, True), (16, 4, 8, False), (12, 3, 5, True), (15, 5, 6, False),
                                          (128, 8, 32, True)])
def test_inverse_split_is_irfft(n1, p, n2, half):
    """The inverse with stage A split in two (``kernels.split.inverse_split_*``), run in numpy over a onesided
    spectrum whose DC and Nyquist carry imaginary parts, equals numpy's irfft times the window (odd sizes too)."""
    from specrewrite.kernels.split import inverse_split_sizes, inverse_split_tables, inverse_split_weights

    plan = FactorPlan(n1, n2, n2, half=half, p=p)
    n, nb = plan.n, plan.n // 2 + 1
    ha, _, q, na = inverse_split_sizes(plan)
    win = RNG.uniform(0.5, 1.5, n)
    flat, wb = inverse_split_weights(NP, plan, win, 0.7)
    flat, wb = np.asarray(flat), np.asarray(wb)[..., 0]
    t = inverse_split_tables(plan)
    z = RNG.standard_normal((nb, 3)) + 1j * RNG.standard_normal((nb, 3))
    x = np.concatenate([z.real, z.imag], 0)[t["gather_a"]].reshape(ha * q, 2 * p, 3)
    x = np.einsum("goi,git->got", flat[:na].reshape(ha * q, 2 * p, 2 * p), x).reshape(-1, 3)
    x = x[t["gather_m"]].reshape(ha * p, 2 * q, 3)
    x = np.einsum("goi,git->got", flat[na:].reshape(ha * p, 2 * q, 2 * q), x).reshape(-1, 3)
    x = x[t["gather_b"]].reshape(n1, 2 * ha, 3)
    x = np.einsum("goi,git->got", wb.reshape(n1, n2, 2 * ha), x).reshape(-1, 3)
    _check(x[t["sample_order"]], np.fft.irfft(z, n, axis=0) * 0.7 * win[:, None], f"inverse split {n1}x{n2} p={p}")
