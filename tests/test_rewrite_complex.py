"""Complex dataflow carried as real pairs by rewrite(): every rule against eager torch.

Most cases build the complex value from a real model input (``torch.view_as_complex(x)``) so the check isolates
the lowering rule: the model is float64 and the rewritten model must match eager float64 to ``TOL['fp64_rel']``
(no DFT basis involved). The cases on STFT outputs run in float32 against the float64 model.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import specrewrite as sr
from conftest import TOL, onnx_roundtrip, rel_err
from specrewrite import SpecRewriteError
from test_rewrite import as_pairs, assert_matches, check_rewrite, flat, names_line, ref64, run_real_only, signal


def inputs(b=2, n=6, m=8, seed=0):
    """A complex-as-pairs tensor x (b, n, m, 2) and a real tensor y (b, n, m), float64."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, m, 2, generator=g, dtype=torch.float64), torch.randn(b, n, m, generator=g,
                                                                               dtype=torch.float64)


IDX = torch.randint(0, 4, (2, 6, 8), generator=torch.Generator().manual_seed(1))


class Cx(torch.nn.Module):
    """forward(x, y) = fn(view_as_complex(x), y)"""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.register_buffer("idx", IDX.clone())

    def forward(self, x, y):
        return self.fn(torch.view_as_complex(x), y, self)


def _inplace_div(z, y, s):
    z = z.clone()
    z /= 3
    return z


def _inplace_mul_add(z, y, s):
    z = z * 1
    z *= 2
    z += y
    z -= 1j
    z.mul_(1j)
    z.add_(z.conj())
    return z


def _inplace_setitem_zero(z, y, s):
    z = z.clone()
    z[..., 0] = 0
    return z


def _inplace_setitem_complex(z, y, s):
    z = z.clone()
    z[:, 1] = z[:, 2] * 1j
    return z


def _inplace_on_view(z, y, s):
    z = z.clone()
    v = z[:, 2:4]
    v *= 2
    return z


def _inplace_copy(z, y, s):
    w = torch.zeros_like(z)
    w.copy_(z * (1 + 2j))
    return w


def _inplace_fill_complex(z, y, s):
    w = torch.empty_like(z)
    w.fill_(1 - 2j)
    return w * z


CASES = {
    # view_as_real / view_as_complex / parts
    "view_as_real": lambda z, y, s: torch.view_as_real(z * 2),
    "view_as_complex_roundtrip": lambda z, y, s: torch.view_as_complex(torch.view_as_real(z).flip(-1).contiguous()),
    "real_imag": lambda z, y, s: (z.real * 2, z.imag - 1),
    "torch_real_imag": lambda z, y, s: torch.real(z) + torch.imag(z),
    "abs": lambda z, y, s: z.abs(),
    "angle": lambda z, y, s: z.angle(),
    "pow2": lambda z, y, s: z.pow(2),
    "pow_int3": lambda z, y, s: z ** 3,
    "pow_frac": lambda z, y, s: z ** 1.5,
    "pow_neg": lambda z, y, s: (z + 3) ** -1,
    "abs_pow": lambda z, y, s: z.abs() ** 2,
    "conj": lambda z, y, s: z.conj(),
    "conj_mul": lambda z, y, s: z.conj() * z,
    "conj_physical": lambda z, y, s: torch.conj_physical(z),
    "neg": lambda z, y, s: -z,
    "exp": lambda z, y, s: torch.exp(z * 0.5),
    "log": lambda z, y, s: torch.log(z + 5),
    "sqrt": lambda z, y, s: torch.sqrt(z + 5),
    "reciprocal": lambda z, y, s: torch.reciprocal(z + 3),
    "sgn": lambda z, y, s: torch.sgn(z),
    # arithmetic with tensors and scalars
    "add_complex": lambda z, y, s: z + z.flip(1),
    "sub_complex": lambda z, y, s: z - z.flip(2),
    "add_real_tensor": lambda z, y, s: z + y,
    "real_tensor_add": lambda z, y, s: y + z,
    "sub_real_tensor": lambda z, y, s: y - z,
    "add_alpha": lambda z, y, s: torch.add(z, z.flip(1), alpha=2.5),
    "mul_complex": lambda z, y, s: z * z.flip(1),
    "mul_real_tensor": lambda z, y, s: z * y,
    "real_tensor_mul": lambda z, y, s: y * z,
    "div_complex": lambda z, y, s: z / (z.flip(1) + 3),
    "div_real_tensor": lambda z, y, s: z / (y.abs() + 1),
    "real_tensor_div": lambda z, y, s: y / (z + 3),
    "add_scalar": lambda z, y, s: z + 2.5,
    "scalar_sub": lambda z, y, s: 2.5 - z,
    "mul_scalar": lambda z, y, s: z * 3,
    "div_scalar": lambda z, y, s: z / 4,
    "scalar_div": lambda z, y, s: 2 / (z + 3),
    "add_1j": lambda z, y, s: z + 1j,
    "mul_1j": lambda z, y, s: z * 1j,
    "complex_scalar_mul": lambda z, y, s: (2 - 3j) * z,
    "div_complex_scalar": lambda z, y, s: z / (1 + 2j),
    "complex_scalar_div": lambda z, y, s: (1 + 2j) / (z + 3),
    "real_times_1j": lambda z, y, s: y * 1j,
    "real_plus_1j_real": lambda z, y, s: y + 1j * y.flip(1),    # vocos: mag * (x + 1j * y)
    "vocos_head": lambda z, y, s: torch.exp(y.clamp(max=2)) * (torch.cos(y) + 1j * torch.sin(y)),
    "torch_complex": lambda z, y, s: torch.complex(y, y.flip(-1)),
    "torch_polar": lambda z, y, s: torch.polar(y.abs(), y.flip(1)),
    "to_complex": lambda z, y, s: y.to(torch.complex128) * z,
    "where": lambda z, y, s: torch.where(y > 0, z, torch.zeros_like(z)),
    "where_scalar": lambda z, y, s: torch.where(y > 0, z, 0),
    "sum": lambda z, y, s: z.sum(-1),
    "sum_all": lambda z, y, s: z.sum(),
    "mean": lambda z, y, s: z.mean(dim=(1, 2), keepdim=True),
    "matmul": lambda z, y, s: torch.matmul(z, z.transpose(-1, -2)),
    "matmul_real_left": lambda z, y, s: torch.matmul(y.to(z.dtype), z.transpose(-1, -2)),
    # shape ops
    "reshape": lambda z, y, s: z.reshape(z.shape[0], -1),
    "view": lambda z, y, s: z.view(z.shape[0], z.shape[1], 2, -1),
    "flatten": lambda z, y, s: z.flatten(1),
    "permute": lambda z, y, s: z.permute(2, 0, 1),
    "transpose": lambda z, y, s: z.transpose(-1, -2),
    "mT": lambda z, y, s: z.mT,
    "slice": lambda z, y, s: z[:, 1:5:2, :-1],
    "select": lambda z, y, s: z[:, 3],
    "select_neg": lambda z, y, s: z[..., -1],
    "narrow": lambda z, y, s: z.narrow(2, 1, 4),
    "pad_constant": lambda z, y, s: F.pad(z, (1, 2)),
    "pad_constant_2d": lambda z, y, s: F.pad(z, (1, 2, 0, 3)),
    "pad_reflect": lambda z, y, s: F.pad(z, (2, 3), mode="reflect"),
    "pad_reflect_2d": lambda z, y, s: F.pad(z, (2, 1, 1, 2), mode="reflect"),
    "pad_replicate": lambda z, y, s: F.pad(z, (2, 3), mode="replicate"),
    "unsqueeze_squeeze": lambda z, y, s: z.unsqueeze(1).unsqueeze(-1).squeeze(-1),
    "squeeze_dim": lambda z, y, s: z[:, :1].squeeze(1),
    "cat": lambda z, y, s: torch.cat([z, z * 2], dim=-1),
    "cat_dim1": lambda z, y, s: torch.cat([z, z.conj()], dim=1),
    "cat_real_and_complex": lambda z, y, s: torch.cat([z, y.to(z.dtype)], dim=1),
    "stack": lambda z, y, s: torch.stack([z, z * 1j], dim=1),
    "stack_last": lambda z, y, s: torch.stack([z, -z], dim=-1),
    "expand": lambda z, y, s: z[:, None].expand(-1, 3, -1, -1),
    "repeat": lambda z, y, s: z.repeat(1, 2, 1),
    "flip": lambda z, y, s: z.flip(-1),
    "flip_two": lambda z, y, s: z.flip(0, 1),
    "roll": lambda z, y, s: z.roll(3, -1),
    "chunk": lambda z, y, s: z.chunk(2, dim=-1)[1],
    "split": lambda z, y, s: z.split([2, 4], dim=1)[1],
    "unbind": lambda z, y, s: z.unbind(1)[2],
    "index_select": lambda z, y, s: z.index_select(1, torch.tensor([0, 3, 5])),
    "index_tensor": lambda z, y, s: z[:, torch.tensor([1, 2, 4])],
    "gather": lambda z, y, s: z.gather(1, s.idx[:, :2]),
    "scatter_add": lambda z, y, s: torch.zeros(z.shape[0], 4, z.shape[2], dtype=z.dtype).scatter_add(1, s.idx, z),
    "unfold": lambda z, y, s: z.unfold(-1, 4, 2),
    "clone_contiguous": lambda z, y, s: z.transpose(1, 2).contiguous().clone(),
    "zeros_like": lambda z, y, s: torch.zeros_like(z) + z,
    "ones_like": lambda z, y, s: torch.ones_like(z) * z,
    "full_complex": lambda z, y, s: torch.full((z.shape[-1],), 1 + 2j, dtype=z.dtype) * z,
    "zeros_complex_dtype": lambda z, y, s: torch.zeros(z.shape, dtype=z.dtype) + z,
    "new_zeros": lambda z, y, s: z.new_zeros(z.shape) - z,
    "full_like_complex": lambda z, y, s: torch.full_like(z, 2 - 1j) * z,
    "complex_to_complex128": lambda z, y, s: z.to(torch.complex64).to(torch.complex128),
    # in-place on complex values
    "inplace_div": _inplace_div,
    "inplace_mul_add": _inplace_mul_add,
    "inplace_setitem_zero": _inplace_setitem_zero,
    "inplace_setitem_complex": _inplace_setitem_complex,
    "inplace_on_view": _inplace_on_view,
    "inplace_copy": _inplace_copy,
    "inplace_fill_complex": _inplace_fill_complex,
}


@pytest.mark.parametrize("name", list(CASES))
def test_complex_rule_float64(name):
    """The rule computes the same function as eager torch (float64, no DFT basis involved: to fp64 rounding)."""
    m = Cx(CASES[name])
    x, y = inputs()
    x0, y0 = x.clone(), y.clone()
    ref = m(x0.clone(), y0.clone())
    out = sr.rewrite(m, (x, y), verify=False)
    got = run_real_only(out, x, y)
    assert torch.equal(x, x0) and torch.equal(y, y0), f"{name}: the rewritten model mutated its inputs"
    assert_matches(got, ref, "fp64_rel", what=name)
    # complex outputs come back in view_as_real layout; real outputs as they were
    for g, r in zip(flat(got), flat(ref)):
        assert g.shape == as_pairs(r).shape and g.dtype == torch.float64


@pytest.mark.parametrize("name", ["abs", "mul_complex", "pad_reflect", "cat", "slice", "add_1j", "inplace_div",
                                  "torch_polar", "reshape", "sum", "transpose", "stack"])
def test_complex_rule_other_shapes(name):
    """Rules keep the shapes dynamic (no size baked into the rewritten graph)."""
    m = Cx(CASES[name])
    x, y = inputs()
    auto = torch.export.Dim.AUTO   # every axis but the (re, im) pair axis asked to stay dynamic
    out = sr.rewrite(m, (x, y), verify=False, dynamic_shapes=({0: auto, 1: auto, 2: auto}, {0: auto, 1: auto, 2: auto}))
    if out.specrewrite_report.shapes_specialised:
        return
    x2, y2 = inputs(3, 7, 10, seed=3)
    ref = m(x2.clone(), y2.clone())
    assert_matches(run_real_only(out, x2, y2), ref, "fp64_rel", what=name)


# ------------------------------------------------------------------------------------------ on STFT outputs
class _StftDataflow(torch.nn.Module):
    """What real models do with a spectrogram: HDemucs-style complex-as-channels, padding, masks, phase."""

    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(256))
        self.mask = torch.nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        z = torch.stft(x, 256, 64, window=self.window, normalized=True, return_complex=True)
        z = z[:, :-1]                                               # drop the Nyquist bin
        zr = torch.view_as_real(z).permute(0, 3, 1, 2)              # complex as channels
        m = torch.view_as_complex(self.mask(zr).permute(0, 2, 3, 1).contiguous())
        z = z * torch.sigmoid(m.abs()) + 1j * 1e-3 * z.real
        z = F.pad(z, (0, 0, 0, 1))                                  # back to 129 bins (complex pad)
        z = F.pad(z, (2, 2), mode="reflect")[..., 2:-2]
        mag, phase = z.abs(), torch.angle(z[:, 1:-1, 1:-1])
        y = torch.istft(z, 256, 64, window=self.window, normalized=True, length=x.shape[-1])
        return y, mag, torch.cos(phase)


def test_stft_dataflow_float32_against_float64():
    torch.manual_seed(0)
    m = _StftDataflow().eval()
    check_rewrite(m, (signal(2, 4000),), other_args=(signal(1, 3003, seed=3),))


class _StftScatter(torch.nn.Module):
    """scatter_add of spectrogram bins into bands, and a complex constant built with torch.full."""

    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(64))
        self.register_buffer("band", (torch.arange(33) // 9).view(1, 33, 1))

    def forward(self, x):
        z = torch.stft(x, 64, 16, window=self.window, return_complex=True)
        bands = torch.zeros(z.shape[0], 4, z.shape[2], dtype=z.dtype).scatter_add(1, self.band.expand_as(z), z)
        return bands * torch.full((1, 1, 1), 0.5 - 0.25j, dtype=z.dtype)


def test_stft_scatter_add_and_complex_full():
    check_rewrite(_StftScatter(), (signal(2, 1000),), other_args=(signal(3, 1234, seed=1),))


class _StftInplace(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(128))

    def forward(self, x):
        z = torch.stft(x, 128, 32, window=self.window, return_complex=True)
        z /= 3
        z[:, 0] = 0                     # zero the DC bin in place
        z[..., -1] = z[..., -2] * 1j
        return torch.istft(z, 128, 32, window=self.window, length=x.shape[-1])


def test_stft_inplace_ops():
    check_rewrite(_StftInplace(), (signal(2, 2000),))


class _CloneThenInplace(torch.nn.Module):
    """A clone that is modified in place must not alias its source (nor the model input)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(128))

    def forward(self, x):
        z = torch.stft(x, 128, 32, window=self.window, return_complex=True)
        a = z.clone()
        a /= 3
        return z.abs(), a.abs()


def test_clone_then_inplace_does_not_alias():
    check_rewrite(_CloneThenInplace(), (signal(2, 1000),))


class _InputCloneInplace(torch.nn.Module):
    def forward(self, x):
        z = torch.view_as_complex(x).clone()
        z *= 1j
        return torch.view_as_real(z)


def test_rewritten_model_never_mutates_its_inputs():
    x = inputs()[0]
    x0 = x.clone()
    out = sr.rewrite(_InputCloneInplace(), (x,))          # verify=True runs the rewritten model on x
    assert torch.equal(x, x0), "rewrite() mutated the example inputs"
    got = out(x)
    assert torch.equal(x, x0), "calling the rewritten model mutated its input"
    assert_matches(got, _InputCloneInplace()(x0.clone()), "fp64_rel")


def test_complex_output_is_view_as_real_layout():
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("window", torch.hann_window(128))

        def forward(self, x):
            return torch.stft(x, 128, 32, window=self.window, return_complex=True), x * 2

    m = M()
    x = signal(2, 1000)
    out = sr.rewrite(m, (x,))
    z, x2 = run_real_only(out, x)
    ref = ref64(m, x)[0]
    assert z.shape == ref.shape + (2,) and z.dtype == torch.float32
    assert rel_err(z, torch.view_as_real(ref)) <= TOL["fp32_rel"]
    assert torch.equal(x2, x * 2)


# ------------------------------------------------------------------------------------------ no rule -> error
# ops with no exact real-arithmetic lowering (iterative eigen / singular value solvers)
class _Eig(torch.nn.Module):
    def forward(self, x):
        z = torch.view_as_complex(x)
        return torch.view_as_real(torch.linalg.eig(z[..., :5])[1])  # <no-rule-eig>


class _Svd(torch.nn.Module):
    def forward(self, x):
        z = torch.view_as_complex(x)
        return torch.view_as_real(torch.linalg.svd(z[..., :5])[0])  # <no-rule-svd>


class _Eigvals(torch.nn.Module):
    def forward(self, x):
        a = x[..., 0]
        return torch.view_as_real(torch.linalg.eigvals(a))  # <no-rule-eigvals>


class _StftCumprod(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(64))

    def forward(self, x):
        z = torch.stft(x, 64, 16, window=self.window, return_complex=True)
        return torch.linalg.eigvals(z[..., :8, :8]).abs()  # <no-rule-stft-eigvals>


class _TracedCumsum(torch.nn.Module):
    """Not torch.export-able: the error must still name the line (tracing fallback)."""

    def forward(self, x):
        k = int(x.abs().max() > -1)
        z = torch.view_as_complex(x) * k
        return torch.view_as_real(torch.linalg.eigvals(z[..., :5]))  # <no-rule-traced>


@pytest.mark.parametrize("model,op,tag,args", [
    (_Eig, "eig", "no-rule-eig", lambda: (inputs(2, 5, 5)[0],)),
    (_Svd, "svd", "no-rule-svd", lambda: (inputs(2, 5, 5)[0],)),
    (_Eigvals, "eigvals", "no-rule-eigvals", lambda: (inputs(2, 5, 5)[0],)),
    (_StftCumprod, "eig", "no-rule-stft-eigvals", lambda: (signal(2, 1000),)),
    (_TracedCumsum, "eig", "no-rule-traced", lambda: (inputs(2, 5, 5)[0].float(),)),
], ids=["eig", "svd", "eigvals", "stft-eigvals", "traced-eigvals"])
def test_op_without_rule_names_op_and_line(model, op, tag, args):
    with pytest.raises(SpecRewriteError) as ei:
        sr.rewrite(model(), args())
    err = ei.value
    msg = str(err)
    assert op in msg, msg
    assert "complex" in msg, msg
    assert names_line(err.where, tag, __file__), f"the error does not name the source line:\n{msg}"
    assert names_line(msg, tag, __file__), msg
    assert err.fix, msg


def test_op_without_rule_in_a_helper_names_the_calling_line():
    """The op sits in a helper function: the error names (at least) the forward line that calls it."""

    def helper(z):
        return torch.linalg.eigvals(z)

    class M(torch.nn.Module):
        def forward(self, x):
            return torch.view_as_real(helper(torch.view_as_complex(x)))  # <helper-call>

    with pytest.raises(SpecRewriteError) as ei:
        sr.rewrite(M(), (inputs(2, 5, 5)[0],))
    assert "eig" in str(ei.value)
    assert names_line(ei.value.where, "helper-call", __file__) or "return torch.linalg.eigvals(z)" in (ei.value.where or ""), \
        str(ei.value)


def test_inspect_reports_unsupported_op_instead_of_raising_or_raises_clearly():
    """inspect() (strict=False) on a model with an op that has no rule: a SpecRewriteError naming it is fine, any
    other exception is not."""
    try:
        rep = sr.inspect(_Eig(), (inputs(2, 5, 5)[0],))
    except SpecRewriteError as e:
        assert "eig" in str(e)
        return
    assert "eig" in str(rep)


def test_one_rule_per_op():
    """A second registration for an op is an error (rules shadowing each other by import order), unless it says
    it replaces the earlier rule on purpose."""
    import importlib

    rules = importlib.import_module("specrewrite.rewrite.rules")
    aten = torch.ops.aten
    with pytest.raises(RuntimeError, match="two rules for"):
        rules.rule(aten.angle)(lambda ctx, node, args, kwargs: None)
    with pytest.raises(RuntimeError, match="does not exist"):
        rules.rule(aten.gcd, replaces=True)(lambda ctx, node, args, kwargs: None)
    assert aten.gcd not in rules.RULES


class RandomPhase(torch.nn.Module):
    """torchaudio GriffinLim's default random initial phase: torch.rand with a complex dtype."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def forward(self, x):
        s = torch.stft(x, 256, 64, window=torch.hann_window(256, dtype=x.dtype), return_complex=True).abs()
        cdt = torch.complex128 if x.dtype == torch.float64 else torch.complex64
        a = torch.rand(s.size(), dtype=cdt) if self.kind == "rand" else torch.randn(s.size(), dtype=cdt)
        return torch.view_as_real(s * a)


@pytest.mark.parametrize("kind", ["rand", "randn"])
def test_complex_random_draws_the_same_numbers(kind):
    model = RandomPhase(kind).eval()
    x = torch.randn(2, 3000, generator=torch.Generator().manual_seed(1))
    fast = sr.rewrite(model, (x,))
    torch.manual_seed(11)
    want = model(x)
    torch.manual_seed(11)
    got = fast(x)
    assert rel_err(got, want) <= TOL["fp32_rel"], rel_err(got, want)   # the same generator stream
    assert not any("complex" in str(n.meta.get("val", "")) for n in fast.graph.nodes)


class Loaded(torch.nn.Module):
    """torchaudio's MVDR regularisation: a complex identity sized by the number of microphones."""

    def forward(self, x):
        w = torch.hann_window(512, dtype=x.dtype)
        X = torch.stft(x, 512, 128, window=w, return_complex=True)
        psd = torch.einsum("cft,eft->fce", X, X.conj())
        return (psd + 1e-3 * torch.eye(psd.size(-1), dtype=psd.dtype)).abs().sum(-1)


def test_complex_identity_follows_a_dynamic_size():
    model = Loaded().eval()
    fast = sr.rewrite(model, (torch.randn(4, 4000),))
    assert fast.specrewrite_report.axis("x", "batch")["dynamic"]
    for mics in (4, 5, 2):   # torch's own decomposition of eye had the example's 4 baked in
        x = torch.randn(mics, 5001, generator=torch.Generator().manual_seed(mics))
        with torch.no_grad():
            ref = model.double()(x.double())
            own = rel_err(model.float()(x), ref)
        assert rel_err(fast(x), ref) <= max(4 * own, TOL["fp32_rel"]), mics


class CropsComplex(torch.nn.Module):
    """A crop of a complex mask with negative pad amounts (asteroid's ``pad_x_to_y``), on both axes."""

    def forward(self, x):
        s = torch.stft(x, 64, 16, window=torch.hann_window(64, dtype=x.dtype), return_complex=True)
        return torch.view_as_real(F.pad(s, [-2, -3, 1, -4]))


def test_a_complex_crop_is_a_slice_every_onnx_runtime_runs(tmp_path):
    """(ONNX's Pad with negative pads: ONNX Runtime ran it, onnx.reference refused it.)"""
    model = CropsComplex().eval()
    x = signal(1, 1000)
    res = sr.export(model, (x,), str(tmp_path / "crop.onnx"), dynamic_shapes=False)
    ref = [c for c in res.checks if c.runtime == "onnx.reference"]
    assert res.ok and ref and all(c.ok for c in ref), res
    with torch.no_grad():
        want = model(x.double())
    fast = sr.rewrite(model, (x,), dynamic_shapes=False)
    assert rel_err(fast(x), want) <= TOL["fp32_rel"]


class PhaseLoss(torch.nn.Module):
    """audiotools' PhaseLoss: the magnitude-weighted squared difference of two STFTs' phases. Bins with a negative
    real part and an imaginary part near 0 sit on angle()'s branch cut; which side a float32 computation lands
    on is chance (eager float32's own included): the verification used to refuse the rewrite (2.2e-3 of the
    peak against float64, where eager float32 happened to be 1.7e-4)."""

    def forward(self, x, y):
        w = torch.hann_window(256, dtype=x.dtype)
        a = torch.stft(x, 256, 64, window=w, return_complex=True)
        b = torch.stft(y, 256, 64, window=w, return_complex=True)
        diff = a.angle() - b.angle()
        diff[diff < -math.pi] += 2 * math.pi
        wts = (a.abs() - a.abs().min()) / (a.abs().max() - a.abs().min())
        return ((wts * diff) ** 2).mean().reshape(1)


def _moved(model, x, y, runs=3):
    """How far eager float32 moves when its inputs move by float32 rounding (an independent measurement)."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        base = model(x, y)
        out = []
        for _ in range(runs):
            e = torch.finfo(torch.float32).eps / 2
            xs = x * (1 + e * torch.randn(x.shape, generator=g))
            ys = y * (1 + e * torch.randn(y.shape, generator=g))
            out.append(rel_err(model(xs, ys), base))
    return max(out)


@pytest.mark.parametrize("seed", [30, 0])
def test_an_output_on_the_branch_cut_is_judged_by_eagers_own_sensitivity(seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(1, 8000, generator=g), torch.randn(1, 8000, generator=g)
    model = PhaseLoss().eval()
    fast = sr.rewrite(model, (x, y))   # strict: a refusal would raise
    notes = " ".join(fast.specrewrite_report.notes)
    with torch.no_grad():
        want, ref = model(x, y), model(x.double(), y.double())
        got = fast(x, y)
    # over seeds 0-11 the rewrite lands 2.8e-4 .. 2.8e-3 from float64 and eager float32 6.9e-5 .. 7.2e-3 (which
    # side of the cut each bin takes is chance). At seed 30 (torch's CPU wheel, pocketfft) eager lands close
    # (5.2e-4) and the rewrite far (4.8e-3): the max and the rms criteria both fail (the output is one number:
    # max == rms), and the report says it judged the rewrite by eager's own sensitivity. At seed 0 (8.8e-4
    # against 1.7e-4) the rms criterion (8x) passes and no note is due. Where eager lands elsewhere (torch built
    # with MKL) the same rule decides. (Seed 11 is refused: eager 6.9e-5, the rewrite 1.3e-3, and eager moved
    # only 7.7e-5 under three float32 roundings of its inputs; the two-stage form before 2026-12-05 too.)
    if rel_err(got, ref) > 8 * rel_err(want, ref) + 1e-7:
        assert "when its inputs move by float32 rounding" in notes, notes
    assert rel_err(got, want) <= 4 * _moved(model, x, y) + 1e-6


class ThreeOperandEinsum(torch.nn.Module):
    """NeMo's beamformer post-filter: ``einsum('bfc,bfcd,bfd->bf', w.conj(), R, w)``. opt_einsum chose the
    contraction order from the example's sizes and guarded on them (the batch axis was fixed)."""

    def forward(self, x):
        s = torch.stft(x.flatten(0, 1), 256, 64, window=torch.hann_window(256, dtype=x.dtype), return_complex=True)
        s = s.unflatten(0, x.shape[:2]).permute(0, 2, 3, 1)
        r = torch.einsum("bfnc,bfnd->bfcd", s, s.conj())
        w = s.mean(2)
        return torch.einsum("bfc,bfcd,bfd->bf", w.conj(), r, w).real


def test_a_multi_operand_einsum_keeps_the_batch_dynamic():
    model = ThreeOperandEinsum().eval()
    fast = sr.rewrite(model, (signal(2, 3, 4000),))
    batch = [a for a in fast.specrewrite_report.axes if a["role"] == "batch"][0]
    assert batch["dynamic"], fast.specrewrite_report
    x = signal(3, 3, 4000)
    with torch.no_grad():
        want = model(x.double())
    assert rel_err(fast(x), want) <= TOL["fp32_rel"]


class SqrtOfSpectrum(torch.nn.Module):
    """A complex sqrt of an STFT (the DC and Nyquist bins sit on its branch cut, with signed zero imaginary parts)
    and of a value with a negative real part."""

    def forward(self, x):
        z = torch.stft(x, 128, 32, window=torch.hann_window(128, dtype=x.dtype), return_complex=True)
        return torch.view_as_real(torch.sqrt(z - 2.0 * z.abs()))


def test_complex_sqrt_exports_to_onnx(tmp_path):
    """The sign of the root's imaginary part was ``torch.copysign``, which torch.onnx decomposes to ``prims.signbit``
    and cannot translate (found by the long random-program run, seed 2096)."""
    model = SqrtOfSpectrum().eval()
    out = sr.rewrite(model, (torch.randn(2, 2000),))
    sess, _, _ = onnx_roundtrip(out, (torch.randn(2, 2000),), path=str(tmp_path / "sqrt.onnx"),
                                dynamic_shapes=({0: torch.export.Dim.AUTO, 1: torch.export.Dim.AUTO},))
    for n in (2000, 3001):
        x = torch.randn(2, n)
        with torch.no_grad():
            ref, own = model(x.double()), model(x)
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        assert rel_err(got, ref) <= 4 * rel_err(own, ref) + 1e-6, n


class _ComplexEinsums(torch.nn.Module):
    """Complex einsums as real models write them: a Fourier layer's mode mixing (two complex operands), a window
    applied with an ellipsis (complex by real), a spatial covariance with a conjugate (beamformers) and a chain
    of three complex matrices."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(4)
        self.w = torch.nn.Parameter(torch.randn(3, 5, 4, 6, dtype=torch.cdouble, generator=g).to(torch.cfloat))
        self.m = torch.nn.Parameter(torch.randn(6, 6, dtype=torch.cdouble, generator=g).to(torch.cfloat))

    def forward(self, x):
        z = torch.fft.rfft(x)                                   # (2, 3, 4, 11)
        w, m = self.w.to(z.dtype), self.m.to(z.dtype)
        a = torch.einsum("bixy,ioxy->boxy", z[..., :6], w)
        b = torch.einsum("...kj,j->...kj", z, torch.hann_window(11, dtype=x.dtype))
        c = torch.einsum("bcf,bdf->bfcd", z[:, :, 0], z[:, :, 0].conj())
        d = torch.einsum("ij,jk,kl->il", z[0, 0, :, :6].T @ z[0, 1, :, :6], m, m.conj())
        return [torch.view_as_real(t) for t in (a, b, c, d)]


def test_complex_einsum_matches_float64_with_the_ranks_of_its_equation():
    """Each complex einsum is real einsums of the same equation (one per choice of parts), so no value is wider
    than the equation's own operands (torch's decomposition of a Fourier layer's einsum built a rank-6 pair)."""
    x = signal(2, 3, 4, 20)
    fast = check_rewrite(_ComplexEinsums(), (x,))
    from torch.fx.passes.shape_prop import ShapeProp

    ShapeProp(fast).propagate(x)   # every node's value, run on the example
    widest = max(len(n.meta["tensor_meta"].shape) for n in fast.graph.nodes
                 if n.op == "call_function" and hasattr(n.meta.get("tensor_meta"), "shape"))
    assert sum("ceinsum" in str(n.target) for n in fast.graph.nodes) == 4 and widest <= 5, widest


_ZERO_SIGN_OPS = {
    "z * r": lambda z, r, w: z * r, "r * z": lambda z, r, w: r * z, "z / r": lambda z, r, w: z / r,
    "r / z": lambda z, r, w: r / z, "z - r": lambda z, r, w: z - r, "r - z": lambda z, r, w: r - z,
    "z + r": lambda z, r, w: z + r, "z * -2.5": lambda z, r, w: z * -2.5, "z / -2.5": lambda z, r, w: z / -2.5,
    "z * 2j": lambda z, r, w: z * 2j, "z - w": lambda z, r, w: z - w, "z.sub(w, alpha=2)": lambda z, r, w: z.sub(w, alpha=2),
    "z / w": lambda z, r, w: z / w, "z * w": lambda z, r, w: z * w, "1 / z": lambda z, r, w: 1 / z,
}


class _ZeroSigns(torch.nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, zr, r, wr):
        return torch.view_as_real(self.f(torch.view_as_complex(zr), r, torch.view_as_complex(wr)))


@pytest.mark.parametrize("op", list(_ZERO_SIGN_OPS))
def test_zero_signs_of_arithmetic_follow_eager(op):
    """Eager promotes a real operand to r + 0i and runs the complex formula, so (3 - 0i) * 2 is 6 + 0i and
    (-2 - 0i) / 2 is -1 + 0i; scaling the pair kept -0, and angle() of it was -pi against eager's pi. Every
    combination of -2, -0, +0, 3 in both parts, against both signs of a real and of a complex operand: the
    rewritten values and the signs of their zeros are eager's (rounding aside)."""
    vals = [-2.0, -0.0, 0.0, 3.0]
    z = torch.tensor([[a, b] for a in vals for b in vals]).repeat_interleave(4, 0)
    r = torch.tensor([-1.5, 2.0, -1.5, 2.0]).repeat(16)
    w = torch.tensor([[2.0, 0.0], [2.0, -0.0], [-1.5, -0.0], [-1.5, 0.0]]).repeat(16, 1)
    m = _ZeroSigns(_ZERO_SIGN_OPS[op])
    eager = m(z, r, w)
    got = sr.rewrite(m, (z, r, w), verify=False)(z, r, w)
    nan = torch.isnan(eager)
    assert torch.equal(torch.isnan(got), nan), op
    torch.testing.assert_close(got[~nan], eager[~nan], rtol=2.4e-7, atol=0.0)
    assert torch.equal(torch.signbit(got[~nan]), torch.signbit(eager[~nan])), (op, z[(torch.signbit(got) != torch.signbit(eager)).any(-1) & ~nan.any(-1)])


def test_angle_of_a_masked_spectrum_is_eagers_at_the_dc_bin():
    """A real mask times an STFT, then angle(): the DC bin of a frame with a negative sum has an imaginary part
    of exactly 0, and eager's product gives it the sign that makes angle() +pi; keeping -0 gave -pi (2 pi off)."""
    class Model(torch.nn.Module):
        def forward(self, x, mask):
            spec = torch.stft(x, 256, 64, window=torch.hann_window(256), return_complex=True)
            return (spec * mask).angle()

    x = torch.randn(2, 4000, generator=torch.Generator().manual_seed(3))
    mask = torch.rand(2, 129, 63, generator=torch.Generator().manual_seed(4)) + 0.5
    fast = sr.rewrite(Model(), (x, mask), verify=False)
    eager, got = Model()(x, mask), fast(x, mask)
    assert torch.equal(got[:, 0], eager[:, 0]) and bool((eager[:, 0].abs() == math.pi).any())
    # frames away from the reflect-padded edges (a symmetric edge frame has real bins that eager's own FFT
    # arithmetic leaves at exactly 0 or not, bin by bin: the verification refuses such a model, see test_verify)
    assert float((got[..., 1:-1] - eager[..., 1:-1]).abs().max()) < 1e-3


def test_angle_of_signed_zeros_and_negated_spectra_is_eagers():
    """atan2(+-0, -0) is +-pi: angle() of -0 + 0i (a masked bin: -0.02 + 0.3i times False) was 0 against eager's
    pi. And -z is 0 - z in eager's vectorised loop, so the +0 imaginary part of a DC bin stays +0 and angle(-z)
    there is pi; flipping it to -0 gave -pi."""
    class Model(torch.nn.Module):
        def forward(self, x):
            z = torch.view_as_complex(x)
            return torch.stack([(z * (z.abs() > 1.0)).angle(), (-z).angle()])

    vals = [-2.0, -0.5, -0.0, 0.0, 0.5, 2.0]
    x = torch.tensor([[a, b] for a in vals for b in vals]).repeat(4, 1)        # 144 values: the vectorised loop
    for dtype in (torch.float32, torch.float64):
        xs = x.to(dtype)
        eager = Model()(xs)
        got = sr.rewrite(Model(), (xs,), verify=False)(xs)
        assert torch.equal(torch.signbit(got), torch.signbit(eager)), dtype
        torch.testing.assert_close(got, eager, rtol=0.0, atol=4e-7 if dtype == torch.float32 else 1e-15)
