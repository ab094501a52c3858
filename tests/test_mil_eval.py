"""Tests of the numpy MIL reference evaluator (tests/mil_eval.py) against torch and numpy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

with warnings.catch_warnings():  # untested-torch-version / missing libcoremlpython notices
    warnings.simplefilter("ignore")
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

from conftest import TOL  # noqa: E402
from specrewrite.coreml.evaluate import SUPPORTED_OPS, evaluate, op_types, unsupported_op_types  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")  # coremltools/torch version & renaming chatter

# max |got - want| / max|want| allowed, per comparison kind

F32 = ct.precision.FLOAT32
F16 = ct.precision.FLOAT16


class Fn(torch.nn.Module):
    def __init__(self, fn, **mods):
        super().__init__()
        self.fn = fn
        for k, m in mods.items():
            if isinstance(m, torch.nn.Parameter):
                self.register_parameter(k, m)
            else:
                self.add_module(k, m)

    def forward(self, *xs):
        return self.fn(self, *xs)


def _convert(module, *examples, target=ct.target.iOS16, precision=F32):
    traced = torch.jit.trace(module.eval(), examples)
    return ct.convert(
        traced,
        inputs=[ct.TensorType(name=f"x{i}", shape=e.shape) for i, e in enumerate(examples)],
        convert_to="mlprogram",
        minimum_deployment_target=target,
        compute_precision=precision,
        skip_model_load=True,
    )


def _flat(r):
    return sum((_flat(t) for t in r), ()) if isinstance(r, (tuple, list)) else (r,)


def _assert_close(got, want, tol, what=""):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if want.size == 0:
        return
    peak = max(np.max(np.abs(want)), 1e-30)
    err = np.max(np.abs(got - want)) / peak
    assert err <= TOL[tol], f"{what}: relative error {err:.3g} > {TOL[tol]} ({tol})"


def check_torch(module, *examples, tol="fp32_rel", target=ct.target.iOS16, precision=F32, fp16=False):
    """Convert ``module``, evaluate the MIL program and compare every output with torch."""
    ml = _convert(module, *examples, target=target, precision=precision)
    assert not unsupported_op_types(ml), unsupported_op_types(ml)
    with torch.no_grad():
        ref = _flat(module(*examples))
    out = evaluate(ml, {f"x{i}": e.numpy() for i, e in enumerate(examples)}, fp16=fp16)
    assert len(out) == len(ref)
    for i, (r, o) in enumerate(zip(ref, out.values())):
        _assert_close(o, r.numpy(), tol, f"output {i}")
    return ml, out


def run_prog(prog, *arrays, **kw):
    names = list(prog.functions["main"].inputs)
    return list(evaluate(prog, dict(zip(names, arrays)), **kw).values())


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)  # module weights are drawn from torch's global RNG


def randn(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


# ------------------------------------------------------------------- torch: conv
def test_conv1d_strided_grouped_dilated():
    check_torch(torch.nn.Conv1d(4, 6, 5, stride=3, groups=2, padding=2, dilation=2), randn(2, 4, 33))


def test_conv1d_same_padding_even_kernel():
    check_torch(torch.nn.Conv1d(3, 5, 4, padding="same"), randn(1, 3, 20))


def test_conv2d_strided_asymmetric():
    check_torch(torch.nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0)), randn(1, 4, 9, 8))


def test_conv2d_depthwise():
    check_torch(torch.nn.Conv2d(4, 8, 3, groups=4, padding=1, bias=False), randn(2, 4, 6, 7))


def test_conv_transpose1d_strided_grouped():
    check_torch(torch.nn.ConvTranspose1d(4, 6, 5, stride=3, groups=2, padding=1), randn(2, 4, 17))


def test_conv_transpose2d_output_padding():
    ml, _ = check_torch(torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1), randn(1, 4, 5, 6))
    assert {"conv_transpose", "crop"} <= op_types(ml)


# ------------------------------------------------------ torch: deployment targets
def _stft_like():
    conv = torch.nn.Conv1d(1, 10, 16, stride=4, bias=False)
    up = torch.nn.ConvTranspose1d(10, 1, 16, stride=4, bias=False)

    def fwd(self, x):
        p = torch.nn.functional.pad(x, (8, 8), mode="reflect")
        spec = self.conv(p)
        mag = torch.sqrt(spec[:, :5] ** 2 + spec[:, 5:] ** 2 + 1e-6)
        y = self.up(spec * torch.sigmoid(torch.cat([mag, mag], 1)))
        return y[..., 8:-8], torch.softmax(mag, dim=1)

    return Fn(fwd, conv=conv, up=up)


@pytest.mark.parametrize("target", [ct.target.iOS15, ct.target.iOS16, ct.target.iOS17, ct.target.iOS18],
                         ids=lambda t: t.name)
def test_stft_like_pipeline_across_targets(target):
    check_torch(_stft_like(), randn(2, 1, 64), target=target)


# --------------------------------------------------------------- torch: linear
def test_matmul_linear_broadcast():
    lin = torch.nn.Linear(5, 3)
    m = Fn(lambda s, a, b: (a @ b, s.lin(a @ b), torch.matmul(a[0], b), a.transpose(1, 2) @ a), lin=lin)
    check_torch(m, randn(2, 3, 4), randn(2, 4, 5, seed=1))


def test_einsum_from_torch():
    m = Fn(lambda s, a, b: torch.einsum("bij,bjk->bik", a, b))
    check_torch(m, randn(2, 3, 4), randn(2, 4, 6, seed=1))


# ---------------------------------------------------------------- torch: pad
@pytest.mark.parametrize("mode", ["reflect", "replicate", "constant"])
def test_pad_modes(mode):
    kw = {"value": 1.5} if mode == "constant" else {}
    m = Fn(lambda s, a: torch.nn.functional.pad(a, (3, 2), mode=mode, **kw))
    ml, _ = check_torch(m, randn(2, 4, 9))
    assert "pad" in op_types(ml)


def test_pad_constant_2d():
    check_torch(Fn(lambda s, a: torch.nn.functional.pad(a, (1, 2, 3, 0), value=-2.0)), randn(2, 3, 4, 5))


# ------------------------------------------------- torch: slicing / data movement
def test_slicing_and_flip():
    m = Fn(lambda s, a: (a[:, 1:3, 2:30:3], a[..., -5:], a[:, 0], a[1, :, ::2], a.flip(-1), a[:, [0, 2, 1]]))
    ml, _ = check_torch(m, randn(2, 4, 33), tol="exact")
    assert {"slice_by_index", "reverse"} <= op_types(ml)


def test_shape_ops():
    m = Fn(lambda s, a: (a.reshape(2, -1), a.permute(2, 0, 1), torch.cat([a, a * 2], 1), torch.stack([a, a], 0),
                         *a.split([1, 3], 1), a.unsqueeze(1).squeeze(1), a.repeat(1, 2, 1), a.flatten(1),
                         a.chunk(2, dim=-1)[1]))
    check_torch(m, randn(2, 4, 6), tol="exact")


def test_pixel_shuffle_unshuffle():
    f = torch.nn.functional
    check_torch(Fn(lambda s, a: (f.pixel_shuffle(a, 2), f.pixel_unshuffle(a, 2))), randn(1, 8, 4, 6), tol="exact")


def test_gather_cumsum_topk():
    idx = torch.tensor([[[1, 0, 4]] * 4] * 2)
    m = Fn(lambda s, a: (torch.cumsum(a, -1), torch.topk(a, 3, dim=-1)[0], torch.gather(a, 2, idx),
                         a.index_select(1, torch.tensor([3, 1]))))
    check_torch(m, randn(2, 4, 7))


# ----------------------------------------------------------- torch: elementwise
def test_elementwise_unary():
    f = torch.nn.functional
    m = Fn(lambda s, a: (a.abs(), a.exp(), torch.sin(a), torch.cos(a), torch.tanh(a), torch.sigmoid(a),
                         torch.relu(a), f.gelu(a), f.gelu(a, approximate="tanh"), f.silu(a), f.softplus(a),
                         torch.sign(a), torch.floor(a), torch.ceil(a), torch.round(a), a**2,
                         torch.clamp(a, -0.5, 0.3), torch.erf(a), torch.atan(a), torch.sqrt(a.abs()),
                         torch.rsqrt(a.abs() + 1), torch.log(a.abs() + 1), torch.atan2(a, a + 1),
                         f.leaky_relu(a, 0.1), f.elu(a), f.hardtanh(a), f.relu6(a * 4), torch.tan(a * 0.5),
                         torch.exp2(a), f.softsign(a)))
    check_torch(m, randn(3, 11) * 2)


def test_elementwise_binary_and_select():
    m = Fn(lambda s, a, b: (a + b, a - b, a * b, a / b, torch.floor_divide(a, b), b**a, torch.maximum(a, b),
                            torch.minimum(a, b), torch.remainder(a, b), (a > b).float(), (a <= b).float(),
                            (a == b).float(), (a != b).float(), ((a > 0) & (b > 3)).float(), torch.where(a > b, a, b),
                            (a >= 0.5).float(), (a < -0.5).float()))
    check_torch(m, randn(3, 5) * 3, randn(3, 5, seed=1) + 3)


def test_reciprocal_maps_to_inverse_with_epsilon():
    """coremltools lowers ``1 / x`` to ``inverse`` whose default epsilon 1e-4 is *added* to x."""
    x = randn(4, 9) + 5
    ml = _convert(Fn(lambda s, a: 1 / a), x)
    assert "inverse" in op_types(ml)
    (got,) = evaluate(ml, {"x0": x.numpy()}).values()
    _assert_close(got, 1.0 / (x.numpy().astype(np.float64) + 1e-4), "fp32_rel")
    assert np.max(np.abs(got - 1 / x.numpy())) > 1e-6  # visibly different from the exact reciprocal


def test_cast_ops():
    m = Fn(lambda s, a: ((a * 3).int().float(), (a > 0).float() * 2, a.to(torch.int32).to(torch.float32) + a))
    ml, _ = check_torch(m, randn(3, 7) * 2)
    assert "cast" in op_types(ml)


# --------------------------------------------------------- torch: normalizations
def test_reductions():
    m = Fn(lambda s, a: (a.sum(1), a.mean(-1, keepdim=True), a.amax(2), a.amin((0, 2)), a.argmax(-1).float(),
                         a.argmin(1).float(), a.norm(dim=-1), torch.logsumexp(a, 1), a.var(-1), a.std(1)))
    check_torch(m, randn(2, 4, 9))


def test_softmax_and_norm_layers():
    bn = torch.nn.BatchNorm1d(4)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    m = Fn(lambda s, a: (torch.softmax(a, 1), torch.log_softmax(a, -1), s.ln(a), s.bn(a), s.inorm(a), s.gn(a)),
           ln=torch.nn.LayerNorm(9), bn=bn, inorm=torch.nn.InstanceNorm1d(4, affine=True),
           gn=torch.nn.GroupNorm(2, 4))
    check_torch(m, randn(2, 4, 9))


def test_resampling_and_pooling():
    f = torch.nn.functional
    m = Fn(lambda s, a, b: (f.interpolate(a, scale_factor=2, mode="nearest"),
                            f.interpolate(a, scale_factor=3, mode="linear"),
                            f.interpolate(b, scale_factor=2, mode="bilinear", align_corners=True),
                            f.avg_pool1d(a, 3, 2, 1), f.max_pool1d(a, 3, 2, ceil_mode=True),
                            f.avg_pool2d(b, 2), f.max_pool2d(b, 3, 1, 1)))
    check_torch(m, randn(2, 3, 10), randn(1, 2, 4, 6, seed=1))


# -------------------------------------------------------------------- torch: LSTM
class _LSTM(torch.nn.Module):
    def __init__(self, batch, **kw):
        super().__init__()
        self.lstm = torch.nn.LSTM(7, 8, **kw)
        n = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
        self.h0 = torch.nn.Parameter(torch.randn(n, batch, 8) * 0.5)
        self.c0 = torch.nn.Parameter(torch.randn(n, batch, 8) * 0.5)

    def forward(self, x):  # explicit states: tracing the implicit zeros trips the converter
        return self.lstm(x, (self.h0, self.c0))


@pytest.mark.parametrize("batch,kw", [(3, {}), (5, {"bidirectional": True, "batch_first": True}),
                                      (3, {"num_layers": 2})], ids=["uni", "bi_batch_first", "two_layers"])
def test_lstm_from_torch(batch, kw):
    torch.manual_seed(0)
    ml, _ = check_torch(_LSTM(batch, **kw), randn(5, 3, 7))
    assert "lstm" in op_types(ml)


# --------------------------------------------------------------------------- fp16
def test_fp16_program_iOS16_declares_fp16_io():
    m = _stft_like()
    ml, out = check_torch(m, randn(2, 1, 64), tol="fp16_op", precision=F16)
    func = ml._mil_program.functions["main"]
    assert func.inputs["x0"].dtype == types.fp16
    assert all(v.dtype == np.float16 for v in out.values())


def test_saved_and_reloaded_mlpackage(tmp_path):
    x = randn(2, 1, 64)
    ml = _convert(_stft_like(), x, precision=F16)
    ml.save(str(tmp_path / "m.mlpackage"))
    loaded = ct.models.MLModel(str(tmp_path / "m.mlpackage"), skip_model_load=True)
    assert loaded._mil_program is None  # rebuilt from the saved proto + weights
    direct = evaluate(ml, {"x0": x.numpy()})
    reloaded = evaluate(loaded, {"x0": x.numpy()})
    assert list(direct) == list(reloaded)
    for a, b in zip(direct.values(), reloaded.values()):
        np.testing.assert_array_equal(a, b)


def test_fp16_program_iOS15_follows_casts():
    torch.manual_seed(0)
    m = Fn(lambda s, a: torch.relu(s.conv(a)) @ s.w, conv=torch.nn.Conv1d(3, 4, 3, padding=1),
           w=torch.nn.Parameter(torch.randn(12, 5)))
    ml, out = check_torch(m, randn(2, 3, 12), tol="fp16_op", precision=F16, target=ct.target.iOS15)
    assert "cast" in op_types(ml)
    assert all(v.dtype == np.float32 for v in out.values())  # iOS15 keeps fp32 I/O, casts inside


def test_fp16_lstm_and_softmax_chain():
    torch.manual_seed(1)
    m = Fn(lambda s, a: torch.softmax(s.lstm(a)[0], -1), lstm=_LSTM(3))
    check_torch(m, randn(5, 3, 7), tol="fp16_op", precision=F16, target=ct.target.iOS17)


def test_fp16_rounding_matches_numpy():
    x = randn(64) * 10
    ml = _convert(Fn(lambda s, a: a * 3.0 + 1.0), x, precision=F16)
    (got,) = evaluate(ml, {"x0": x.numpy()}).values()
    h = lambda v: np.asarray(v, np.float32).astype(np.float16).astype(np.float32)  # noqa: E731
    want = h(h(h(x.numpy()) * 3.0) + 1.0)
    np.testing.assert_array_equal(got.astype(np.float32), want)


def test_fp16_overflow_gives_inf():
    x = torch.full((2, 8), 300.0)
    m = Fn(lambda s, a: a * 300.0 - 1.0)  # 90000 > 65504
    ml16 = _convert(m, x, precision=F16)
    (y16,) = evaluate(ml16, {"x0": x.numpy()}).values()
    assert np.isinf(y16).all()
    ml32 = _convert(m, x, precision=F32)
    (y32,) = evaluate(ml32, {"x0": x.numpy()}).values()
    np.testing.assert_allclose(y32, 89999.0)
    (y32h,) = evaluate(ml32, {"x0": x.numpy()}, fp16=True).values()  # emulate an fp16 device
    assert np.isinf(y32h).all() and y32h.dtype == np.float32


def test_fp16_flag_rounds_fp32_program():
    x = randn(3, 50)
    ml = _convert(Fn(lambda s, a: torch.exp(a) * 1.0001), x)
    (exact,) = evaluate(ml, {"x0": x.numpy()}).values()
    (emul,) = evaluate(ml, {"x0": x.numpy()}, fp16=True).values()
    assert np.array_equal(emul, emul.astype(np.float16).astype(np.float32))
    assert not np.array_equal(exact, emul)
    _assert_close(emul, exact, "fp16_op")


# ---------------------------------------------------------------- Builder programs
def test_builder_slice_by_index_masks_and_negative_strides():
    xs = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)

    @mb.program(input_specs=[mb.TensorSpec(shape=xs.shape)], opset_version=ct.target.iOS16)
    def prog(x):
        a = mb.slice_by_index(x=x, begin=[1, 4, 6], end=[0, 0, 0], stride=[1, -1, -2],
                              begin_mask=[True, False, False], end_mask=[True, True, True])
        b = mb.slice_by_index(x=x, begin=[1, -2, 0], end=[2, 0, 5], stride=[1, 1, 2],
                              end_mask=[False, True, False], squeeze_mask=[True, False, False])
        c = mb.slice_by_index(x=x, begin=[0, 3, -1], end=[2, 1, 0], stride=[1, -1, 1],
                              squeeze_mask=[False, False, True])
        d = mb.slice_by_size(x=x, begin=[1, -3, 2], size=[1, 2, 3])
        e = mb.slice_by_size(x=x, begin=[0, 2, 4], size=[-1, -1, -1])
        return a, b, c, d, e

    a, b, c, d, e = run_prog(prog, xs)
    np.testing.assert_array_equal(a, xs[:, 4::-1, 6::-2])
    np.testing.assert_array_equal(b, xs[1, -2:, 0:5:2])
    np.testing.assert_array_equal(c, xs[0:2, 3:1:-1, -1])
    np.testing.assert_array_equal(d, xs[1:2, -3:-1, 2:5])
    np.testing.assert_array_equal(e, xs[:, 2:, 4:])


def test_builder_gather_family_and_scatter():
    xs = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    idx = np.array([[0, 4, 4, 1]] * 12, np.int32).reshape(3, 4, 4)

    @mb.program(input_specs=[mb.TensorSpec(shape=xs.shape)], opset_version=ct.target.iOS16)
    def prog(x):
        g = mb.gather(x=x, indices=np.array([2, -1, 0], np.int32), axis=1)
        gb = mb.gather(x=x, indices=np.array([[1, 0], [4, 4], [2, 3]], np.int32), axis=2, batch_dims=1)
        ga = mb.gather_along_axis(x=x, indices=idx, axis=-1)
        gn = mb.gather_nd(x=x, indices=np.array([[0, 1], [2, 3]], np.int32))
        sa = mb.scatter_along_axis(data=x, indices=idx, updates=mb.mul(x=ga, y=10.0), axis=2, mode="add")
        su = mb.scatter_along_axis(data=x, indices=idx[:, :, :1], updates=np.ones((3, 4, 1), np.float32),
                                   axis=2, mode="update")
        sc = mb.scatter(data=x, indices=np.array([1, 1], np.int32), updates=np.ones((3, 2, 5), np.float32),
                        axis=1, mode="add")
        return g, gb, ga, gn, sa, su, sc

    g, gb, ga, gn, sa, su, sc = run_prog(prog, xs)
    np.testing.assert_array_equal(g, xs[:, [2, -1, 0]])
    np.testing.assert_array_equal(gb, np.stack([xs[i][:, [[1, 0], [4, 4], [2, 3]][i]] for i in range(3)]))
    np.testing.assert_array_equal(ga, np.take_along_axis(xs, idx, -1))
    np.testing.assert_array_equal(gn, xs[[0, 2], [1, 3]])
    want = xs.copy()
    np.add.at(want, (np.arange(3)[:, None, None], np.arange(4)[None, :, None], idx), 10 * ga)
    np.testing.assert_allclose(sa, want, rtol=1e-6)
    want = xs.copy()
    want[:, :, 0] = 1.0
    np.testing.assert_array_equal(su, want)
    want = xs.copy()
    want[:, 1] += 2.0
    np.testing.assert_allclose(sc, want, rtol=1e-6)


def test_builder_gather_negative_indices_per_opset():
    xs = np.arange(6, dtype=np.float32)
    for target, ok in ((ct.target.iOS16, True), (ct.target.iOS17, False)):
        @mb.program(input_specs=[mb.TensorSpec(shape=(6,)), mb.TensorSpec(shape=(2,), dtype=types.int32)],
                    opset_version=target)
        def prog(x, i):
            return mb.gather(x=x, indices=i, axis=0)

        if ok:
            np.testing.assert_array_equal(run_prog(prog, xs, np.array([-1, 2]))[0], [5.0, 2.0])
        else:  # iOS17+: negative indices are out of bounds (undefined behaviour)
            with pytest.raises(IndexError):
                run_prog(prog, xs, np.array([-1, 2]))


def test_builder_conv_transpose_output_shape_same():
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((1, 4, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 4)).astype(np.float32)  # [C_in, C_out/groups, K]
    for target_len in (10, 9):  # D_in * stride, and one less (TF-style 'SAME' transposed conv)

        @mb.program(input_specs=[mb.TensorSpec(shape=xs.shape)], opset_version=ct.target.iOS16)
        def prog(x):
            return mb.conv_transpose(x=x, weight=w, strides=[2], pad_type="same", output_shape=[1, 3, target_len])

        (got,) = run_prog(prog, xs)
        full = torch.nn.functional.conv_transpose1d(torch.from_numpy(xs), torch.from_numpy(w), stride=2).numpy()
        total = full.shape[-1] - target_len
        lo = total // 2
        _assert_close(got, full[..., lo:lo + target_len], "fp32_rel", f"target {target_len}")


def test_builder_conv_same_lower_and_custom_pads():
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((1, 2, 9, 8)).astype(np.float32)
    w = rng.standard_normal((3, 2, 2, 3)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=xs.shape)], opset_version=ct.target.iOS17)
    def prog(x):
        return (mb.conv(x=x, weight=w, strides=[2, 2], pad_type="same"),
                mb.conv(x=x, weight=w, strides=[2, 2], pad_type="same_lower"),
                mb.conv(x=x, weight=w, pad_type="custom", pad=[2, 0, 1, 3], dilations=[2, 1]))

    same, lower, custom = run_prog(prog, xs)
    tx, tw = torch.from_numpy(xs), torch.from_numpy(w)
    conv = torch.nn.functional.conv2d
    # totals: H: (5-1)*2+2-9 = 1, W: (4-1)*2+3-8 = 1 -> 'same' pads after, 'same_lower' before
    _assert_close(same, conv(torch.nn.functional.pad(tx, (0, 1, 0, 1)), tw, stride=2).numpy(), "fp32_rel")
    _assert_close(lower, conv(torch.nn.functional.pad(tx, (1, 0, 1, 0)), tw, stride=2).numpy(), "fp32_rel")
    _assert_close(custom, conv(torch.nn.functional.pad(tx, (1, 3, 2, 0)), tw, dilation=(2, 1)).numpy(), "fp32_rel")


def test_builder_pad_reflect_partial_pad_list():
    xs = np.random.default_rng(2).standard_normal((2, 3, 6, 5)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=xs.shape)], opset_version=ct.target.iOS16)
    def prog(x):
        return (mb.pad(x=x, pad=[2, 1, 0, 4], mode="reflect"),
                mb.pad(x=x, pad=[1, 2], mode="replicate"),
                mb.pad(x=x, pad=[0, 0, 0, 0, 1, 1, 2, 0], mode="constant", constant_val=7.0))

    r, e, c = run_prog(prog, xs)
    np.testing.assert_array_equal(r, np.pad(xs, [(0, 0), (0, 0), (2, 1), (0, 4)], mode="reflect"))
    np.testing.assert_array_equal(e, np.pad(xs, [(0, 0), (0, 0), (0, 0), (1, 2)], mode="edge"))
    np.testing.assert_array_equal(c, np.pad(xs, [(0, 0), (0, 0), (1, 1), (2, 0)], constant_values=7.0))


def test_builder_einsum_equations():
    rng = np.random.default_rng(3)
    a4, b4 = rng.standard_normal((2, 3, 4, 5)).astype(np.float32), rng.standard_normal((1, 5, 4, 6)).astype(np.float32)
    a3, b3 = rng.standard_normal((3, 1, 5)).astype(np.float32), rng.standard_normal((5, 4, 2)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=s) for s in (a4.shape, b4.shape, a3.shape, b3.shape)],
                opset_version=ct.target.iOS16)
    def prog(x, y, u, v):
        return (mb.einsum(values=(x, y), equation="nchw,nwhu->nchu"),
                mb.einsum(values=(x, y), equation="abcd,adce->abce"),
                mb.einsum(values=(u, v), equation="chw,whr->chr"))

    r1, r2, r3 = run_prog(prog, a4, b4, a3, b3)
    want4 = np.einsum("nchw,nwhu->nchu", a4, np.broadcast_to(b4, (2, 5, 4, 6)))
    _assert_close(r1, want4, "fp32_rel")
    _assert_close(r2, want4, "fp32_rel")
    _assert_close(r3, np.einsum("chw,whr->chr", np.broadcast_to(a3, (3, 4, 5)), b3), "fp32_rel")


def test_builder_reshape_zero_semantics_per_opset():
    xs = np.arange(100, dtype=np.float32).reshape(2, 50)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 5, 10))], opset_version=ct.target.iOS16)
    def p16(x):
        return mb.reshape(x=x, shape=[0, -1, 5])  # 0 copies the same position (len must equal rank)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 50))], opset_version=ct.target.iOS17)
    def p17(x):
        return mb.reshape(x=x, shape=[1, 0, -1, 0])  # zeros match x.shape from the right

    assert run_prog(p16, xs.reshape(2, 5, 10))[0].shape == (2, 10, 5)
    got = run_prog(p17, xs)[0]
    assert got.shape == (1, 1, 2, 50)
    np.testing.assert_array_equal(got.reshape(2, 50), xs)


def test_builder_misc_tensor_ops():
    xs = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=xs.shape)], opset_version=ct.target.iOS16)
    def prog(x):
        sh = mb.shape(x=x)
        return (sh, mb.fill(shape=sh, value=2.5), mb.range_1d(start=1.0, end=4.0, step=0.5),
                mb.tile(x=x, reps=[2, 1]), mb.identity(x=x), mb.band_part(x=x, lower=0, upper=1),
                mb.select(cond=mb.greater(x=x, y=0.0), a=x, b=mb.mul(x=x, y=-1.0)),
                mb.reduce_prod(x=x, axes=[1]), mb.reduce_l1_norm(x=x, axes=[0], keep_dims=True),
                mb.reduce_sum_square(x=x), mb.reduce_argmin(x=x, axis=0),
                mb.cumsum(x=x, axis=1, exclusive=True, reverse=True),
                mb.topk(x=x, k=2, axis=1, ascending=True)[1], mb.flatten2d(x=mb.expand_dims(x=x, axes=[0, -1]), axis=2),
                mb.squeeze(x=mb.expand_dims(x=x, axes=[1]), axes=[1]), mb.softmax(x=x, axis=0),
                mb.inverse(x=x, epsilon=0.5), mb.log(x=mb.abs(x=x), epsilon=1.0), mb.threshold(x=x, alpha=0.1),
                mb.clip(x=x, alpha=-0.2, beta=0.2), mb.square(x=x), mb.exp2(x=x), mb.mod(x=x, y=0.7),
                mb.floor_div(x=x, y=0.3), mb.logical_not(x=mb.less(x=x, y=0.0)), mb.split(x=x, num_splits=2, axis=1)[1])

    (sh, fill, rng1, tile, ident, band, sel, prod, l1, ssq, amin, cs, tk, flat, sq, sm, inv, log, thr, clip, sqr,
     e2, mod, fdiv, lnot, spl) = run_prog(prog, xs)
    np.testing.assert_array_equal(sh, [3, 4])
    assert sh.dtype == np.int32
    np.testing.assert_array_equal(fill, np.full((3, 4), 2.5))
    np.testing.assert_array_equal(rng1, np.arange(1.0, 4.0, 0.5))
    np.testing.assert_array_equal(tile, np.tile(xs, (2, 1)))
    np.testing.assert_array_equal(ident, xs)
    np.testing.assert_array_equal(band, np.triu(np.tril(xs, 1)))
    np.testing.assert_array_equal(sel, np.abs(xs))
    _assert_close(prod, np.prod(xs, 1), "fp32_rel")
    _assert_close(l1, np.abs(xs).sum(0, keepdims=True), "fp32_rel")
    _assert_close(ssq, np.square(xs).sum(), "fp32_rel")
    np.testing.assert_array_equal(amin, xs.argmin(0))
    _assert_close(cs, np.flip(np.cumsum(np.flip(xs, 1), 1), 1) - xs, "fp32_rel")
    np.testing.assert_array_equal(tk, np.argsort(xs, 1)[:, :2])
    assert flat.shape == (3, 4)
    np.testing.assert_array_equal(sq, xs)
    _assert_close(sm, np.exp(xs) / np.exp(xs).sum(0), "fp32_rel")
    _assert_close(inv, 1 / (xs + 0.5), "fp32_rel")
    _assert_close(log, np.log(np.abs(xs) + 1), "fp32_rel")
    _assert_close(thr, np.maximum(xs, 0.1), "fp32_rel")
    _assert_close(clip, np.clip(xs, -0.2, 0.2), "fp32_rel")
    _assert_close(sqr, xs**2, "fp32_rel")
    _assert_close(e2, 2.0**xs, "fp32_rel")
    _assert_close(mod, np.mod(xs, np.float32(0.7)), "fp32_rel")
    _assert_close(fdiv, np.floor(xs / np.float32(0.3)), "fp32_rel")
    np.testing.assert_array_equal(lnot, xs >= 0)
    np.testing.assert_array_equal(spl, xs[:, 2:])


def test_builder_control_flow_and_op_types():
    @mb.program(input_specs=[mb.TensorSpec(shape=(2,)), mb.TensorSpec(shape=(1,), dtype=types.int32)],
                opset_version=ct.target.iOS16)
    def prog(x, n1):
        n = mb.squeeze(x=n1)

        def cond(v, i):
            return mb.less(x=i, y=n)

        def body(v, i):
            return mb.mul(x=v, y=2.0), mb.add(x=i, y=1)

        v, i = mb.while_loop(_cond=cond, _body=body, loop_vars=(x, mb.const(val=np.int32(0))))
        pos = mb.greater(x=mb.reduce_sum(x=x), y=0.0)
        c = mb.cond(pred=pos, _true_fn=lambda: mb.sqrt(x=mb.abs(x=v)), _false_fn=lambda: mb.sin(x=v))
        return v, i, c

    xs = np.array([1.0, 2.0], np.float32)
    v, i, c = run_prog(prog, xs, np.array([3], np.int32))
    np.testing.assert_array_equal(v, xs * 8)
    assert int(i) == 3
    _assert_close(c, np.sqrt(xs * 8), "fp32_rel")
    _, _, c = run_prog(prog, -xs, np.array([2], np.int32))
    _assert_close(c, np.sin(-xs * 4), "fp32_rel")
    assert {"while_loop", "cond", "less", "mul", "sqrt", "sin"} <= op_types(prog)


def test_builder_quantize_constexpr_and_state_iOS18():
    xs = np.array([[0.25, -1.0, 100.0], [0.04, 0.3, -2.0]], np.float32)
    scale, zp = np.array([0.1, 0.2, 0.5], np.float32), np.array([0, 10, -3], np.int8)
    codes = np.arange(12, dtype=np.uint8).reshape(3, 4)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3)), mb.StateTensorSpec(shape=(2, 4), dtype=types.fp16)],
                opset_version=ct.target.iOS18)
    def prog(x, s):
        q = mb.quantize(input=x, scale=scale, zero_point=zp, axis=1, output_dtype="int8")
        dq = mb.dequantize(input=q, scale=scale, zero_point=zp, axis=1)
        w = mb.constexpr_blockwise_shift_scale(data=codes, scale=np.full((3, 1), 0.5, np.float32),
                                               offset=np.full((3, 1), 2, np.uint8))
        y = mb.matmul(x=dq, y=w)  # (2, 4)
        new_s = mb.add(x=mb.read_state(input=s), y=mb.cast(x=y, dtype="fp16"))
        mb.coreml_update_state(state=s, value=new_s)
        return q, dq, new_s

    q, dq, new_s = run_prog(prog, xs, np.ones((2, 4), np.float16))
    np.testing.assert_array_equal(q, [[2, 5, 127], [0, 12, -7]])  # 2.5 rounds to even; 197 clips to 127
    assert q.dtype == np.int8
    np.testing.assert_allclose(dq, [[0.2, -1.0, 65.0], [0.0, 0.4, -2.0]], rtol=1e-6)
    want = np.float16(1) + (dq @ ((codes.astype(np.float32) - 2) * 0.5)).astype(np.float16)
    np.testing.assert_array_equal(new_s, want)
    assert {"constexpr_blockwise_shift_scale", "read_state", "coreml_update_state"} <= op_types(prog)


def _torch_lstm_weights(lstm, suffix=""):
    """torch gate order [i, f, g, o] -> MIL [i, f, o, z]; bias = b_ih + b_hh."""
    def reorder(t):
        i, f, g, o = np.split(t.detach().numpy(), 4)
        return np.concatenate([i, f, o, g])

    return (reorder(getattr(lstm, "weight_ih_l0" + suffix)), reorder(getattr(lstm, "weight_hh_l0" + suffix)),
            reorder(getattr(lstm, "bias_ih_l0" + suffix) + getattr(lstm, "bias_hh_l0" + suffix)))


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_builder_lstm_matches_torch(direction):
    torch.manual_seed(2)
    lstm = torch.nn.LSTM(4, 6)
    x, h0, c0 = randn(5, 2, 4), randn(1, 2, 6, seed=1), randn(1, 2, 6, seed=2)
    wih, whh, b = _torch_lstm_weights(lstm)

    @mb.program(input_specs=[mb.TensorSpec(shape=(5, 2, 4)), mb.TensorSpec(shape=(2, 6)), mb.TensorSpec(shape=(2, 6))],
                opset_version=ct.target.iOS16)
    def prog(x, h, c):
        return mb.lstm(x=x, initial_h=h, initial_c=c, weight_ih=wih, weight_hh=whh, bias=b,
                       direction=direction, output_sequence=True)

    seq, h, c = run_prog(prog, x.numpy(), h0[0].numpy(), c0[0].numpy())
    xt = x if direction == "forward" else x.flip(0)
    with torch.no_grad():
        ref_seq, (ref_h, ref_c) = lstm(xt, (h0, c0))
    ref_seq = ref_seq if direction == "forward" else ref_seq.flip(0)
    _assert_close(seq, ref_seq.numpy(), "fp32_rel")
    _assert_close(h, ref_h[0].numpy(), "fp32_rel")
    _assert_close(c, ref_c[0].numpy(), "fp32_rel")


def test_unsupported_op_raises():
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))], opset_version=ct.target.iOS16)
    def prog(x):
        return mb.add(x=x, y=mb.random_uniform(shape=[2, 3]))

    assert unsupported_op_types(prog) == {"random_uniform"}
    assert "conv" in SUPPORTED_OPS
    with pytest.raises(NotImplementedError, match=r"mil_eval: op random_uniform \(.*\) not supported"):
        run_prog(prog, np.zeros((2, 3), np.float32))


def test_input_validation_and_program_argument():
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))], opset_version=ct.target.iOS16)
    def prog(x):
        return mb.relu(x=x)

    with pytest.raises(KeyError):
        evaluate(prog, {"y": np.zeros((2, 3), np.float32)})
    with pytest.raises(TypeError):
        evaluate(object(), {})
    out = evaluate(prog, {"x": np.array([[-1, 2, -3], [4, -5, 6]], np.float32)})
    np.testing.assert_array_equal(list(out.values())[0], [[0, 2, 0], [4, 0, 6]])


# ------------------------------------------------------------------- iOS18: attention
@pytest.mark.parametrize("mask", ["none", "float", "bool"])
def test_scaled_dot_product_attention_at_ios18(mask):
    """coremltools keeps F.scaled_dot_product_attention as one MIL op from iOS18 (whisper's encoder): the
    evaluator runs it, unmasked, with an additive mask and with a boolean keep-mask, against float64 torch."""
    q, k, v = randn(2, 3, 5, 8, seed=1), randn(2, 3, 7, 8, seed=2), randn(2, 3, 7, 4, seed=3)
    m = {"none": None, "float": randn(5, 7, seed=4), "bool": randn(5, 7, seed=4) > -0.5}[mask]
    mod = Fn(lambda self, q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m))
    ml = _convert(mod, q, k, v, target=ct.target.iOS18)
    assert "scaled_dot_product_attention" in op_types(ml)
    (out,) = evaluate(ml, {"x0": q.numpy(), "x1": k.numpy(), "x2": v.numpy()}).values()
    with torch.no_grad():
        m64 = m if m is None or m.dtype == torch.bool else m.double()
        want = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=m64)
    _assert_close(out, want.numpy(), "fp32_rel", mask)
