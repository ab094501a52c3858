"""One lowering, both routes: every elementwise complex op of the shared formula table (rewrite/_formulas.py)
and every operand mix of the binary ops, through ``rewrite()`` and through the Core ML plugin on the unchanged
model, each compared with float64 eager next to eager float32's own error. The case list is the table itself,
so an op added to the table is tested on both routes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("coremltools")

import specrewrite as sr  # noqa: E402
from specrewrite.rewrite import _formulas as F  # noqa: E402
from test_coreml_common import plugin_convert, reference, rel_err, run, src  # noqa: E402

# input range per op: inside the domain where float32 eager is well conditioned (exp / sinh / cosh overflow,
# tan / tanh poles far away)
_SCALE = {"exp": 2.0, "exp2": 2.0, "expm1": 2.0, "sinh": 2.0, "cosh": 2.0, "sin": 2.0, "cos": 2.0, "tan": 1.0,
          "tanh": 1.0, "sigmoid": 1.0}


def _z(seed: int, n: int = 96, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) * scale


class Unary(torch.nn.Module):
    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, x):
        z = torch.view_as_complex(x)
        y = getattr(torch, self.name)(z) if hasattr(torch, self.name) else getattr(torch.ops.aten, self.name)(z)
        y = y.resolve_conj()
        return torch.view_as_real(y) if y.is_complex() else y.to(x.dtype)


def _errors(model, args, out):
    """Errors of ``out`` (a list of arrays) and of eager float32 against float64 eager."""
    refs = reference(model, args)
    with torch.no_grad():
        own = model(*args)
    own = own if isinstance(own, (tuple, list)) else (own,)
    got = [rel_err(o, r) for o, r in zip(out, refs)]
    eager = [rel_err(o.numpy(), r) for o, r in zip(own, refs)]
    return max(got), max(eager)


def _both_routes(model, args):
    model = model.eval()
    rewritten = sr.rewrite(model, args)
    with torch.no_grad():
        out = rewritten(*args)
    out = out if isinstance(out, (tuple, list)) else (out,)
    err_rw, eager = _errors(model, args, [o.numpy() for o in out])
    with src.register():
        ml = plugin_convert(model, args)
    err_ml, _ = _errors(model, args, run(ml, args))
    bound = max(4 * eager, 2e-6)
    assert err_rw <= bound, (err_rw, eager)
    assert err_ml <= bound, (err_ml, eager)
    return err_rw, err_ml


_UNARY = sorted(set(F.PAIR_TO_PAIR) | set(F.PAIR_TO_REAL))


@pytest.mark.parametrize("name", [n for n in _UNARY if not n.startswith("_")])
def test_every_table_op_matches_eager_on_both_routes(name):
    if name in ("isnan", "isinf", "isfinite"):
        x = _z(1)
        x[3, 0], x[5, 1], x[7, 0] = float("nan"), float("inf"), -float("inf")
        model = Unary(name).eval()
        ref = model(x).numpy()
        assert np.array_equal(sr.rewrite(model, (x,))(x).numpy(), ref)
        with src.register():
            ml = plugin_convert(model, (x,))
        assert np.array_equal(np.asarray(run(ml, (x,))[0], bool), ref)
        return
    _both_routes(Unary(name), (_z(2, scale=_SCALE.get(name, 3.0)),))


class Binary(torch.nn.Module):
    """a op b for one operand mix: complex tensor (c), real tensor (r), Python complex (k) or real (f)."""

    def __init__(self, op: str, mix: str):
        super().__init__()
        self.op, self.mix = op, mix

    def forward(self, x, y):
        zx, zy = torch.view_as_complex(x), torch.view_as_complex(y)
        pick = {"c": (zx, zy), "r": (x[..., 0], y[..., 0] + 2.0), "k": (0.5 - 1.5j, 1.25 + 0.75j), "f": (-1.5, 2.5)}
        a, b = pick[self.mix[0]][0], pick[self.mix[1]][1]
        out = {"mul": lambda: a * b, "div": lambda: a / b, "add": lambda: a + b, "sub": lambda: a - b,
               "alpha": lambda: torch.add(a, b, alpha=-2.0), "pow": lambda: torch.pow(a, b * 0.5)}[self.op]()
        return torch.view_as_real(out)


_MIXES = ["cc", "cr", "rc", "ck", "kc", "cf", "fc", "rk", "kr"]


@pytest.mark.parametrize("op,mix", [(op, mix) for op in ("mul", "div", "add", "sub", "alpha") for mix in _MIXES
                                    if op != "alpha" or mix in ("cc", "cr", "rc")]   # add(alpha=) takes tensors
                         + [("pow", mix) for mix in ("cc", "cr", "rc", "ck", "cf")])
def test_binary_operand_mixes_match_eager_on_both_routes(op, mix):
    _both_routes(Binary(op, mix), (_z(3), _z(4)))


def test_negation_signs_its_zeros_as_eager_on_both_routes():
    """-z is eager's vectorised 0 - z, so a zero part of -z is +0 (angle() of a negated DC bin is pi): the graph
    pass and the plugin share the formula; the plugin used to hand neg to coremltools (an IEEE negation, -0)."""
    vals = [-2.0, -0.0, 0.0, 3.0]
    x = torch.tensor([[a, b] for a in vals for b in vals]).repeat(4, 1)   # 64 values: no scalar tail in eager
    model = Unary("neg").eval()
    eager = model(x)
    assert (eager == 0).any() and not torch.signbit(eager[eager == 0]).any()
    got = sr.rewrite(model, (x,), verify=False)(x)
    assert torch.equal(got, eager) and torch.equal(torch.signbit(got), torch.signbit(eager))
    with src.register():
        ml = plugin_convert(model, (x,))
    (out,) = run(ml, (x,))
    out = np.asarray(out, np.float32).reshape(eager.shape)
    assert np.array_equal(out, eager.numpy()) and np.array_equal(np.signbit(out), torch.signbit(eager).numpy())


def test_atan2_of_real_tensors_on_the_negative_axis():
    """Real atan2 runs the graph pass's formula on the plugin route too: pi (not coremltools' 0) at y = 0, x < 0."""
    class Atan2(torch.nn.Module):
        def forward(self, y, x):
            return torch.atan2(y, x)

    y = torch.tensor([0.0, 0.0, 1.0, -1.0, 0.0, 2.0])
    x = torch.tensor([-1.0, 2.0, 0.0, -3.0, -0.5, 2.0])
    with src.register():
        ml = plugin_convert(Atan2(), (y, x))
    np.testing.assert_allclose(run(ml, (y, x))[0], torch.atan2(y, x).numpy(), rtol=1e-6, atol=1e-6)


def test_real_reciprocal_is_exact_on_both_core_ml_routes():
    """coremltools lowers torch.reciprocal to MIL inverse, whose default epsilon 1e-4 is added to x: 0.5% off
    at x = 0.02. Both routes divide instead (plugin rule; the rewrite spells it as a division)."""
    import coremltools as ct

    class Recip(torch.nn.Module):
        def forward(self, x):
            return torch.reciprocal(x) + x.reciprocal() * 0.5

    x = torch.tensor([0.02, -0.013, 0.5, 3.0, -7.0, 1e-3])
    ref = Recip()(x).numpy()
    with src.register():
        ml = plugin_convert(Recip(), (x,))
    np.testing.assert_allclose(run(ml, (x,))[0], ref, rtol=1e-6)

    class RoundTrip(torch.nn.Module):   # a spectral op, so that rewrite() has something to do
        def forward(self, x):
            y = torch.fft.irfft(torch.fft.rfft(x), n=x.shape[-1])
            return torch.reciprocal(y * y + 0.01)   # 1 / (x^2 + 0.01): coremltools' epsilon is 1% of it

    rewritten = sr.rewrite(RoundTrip(), (x,))
    ml = ct.convert(torch.jit.trace(rewritten, (x,)), inputs=[ct.TensorType(shape=x.shape)],
                    convert_to="mlprogram", minimum_deployment_target=ct.target.iOS15,
                    compute_precision=ct.precision.FLOAT32, skip_model_load=True)
    np.testing.assert_allclose(run(ml, (x,))[0], 1.0 / (x.double().numpy() ** 2 + 0.01), rtol=1e-5)


@pytest.mark.parametrize("n", [8, 100])
def test_fft_along_the_time_axis_converts_on_the_plain_core_ml_route(n):
    """rfft / irfft over the time axis become a dynamic-length Bluestein FFT whose index ramps must stay
    integers in coremltools (its floor_divide of a traced size is a float) and which uses no '|' (no converter)."""
    import coremltools as ct

    class Filter(torch.nn.Module):
        def forward(self, x):
            s = torch.fft.rfft(x)
            return torch.fft.irfft(s * torch.linspace(1.0, 0.0, s.shape[-1]), n=x.shape[-1])

    x = torch.randn(2, n, generator=torch.Generator().manual_seed(n))
    rewritten = sr.rewrite(Filter(), (x,))
    ml = ct.convert(torch.jit.trace(rewritten, (x,)), inputs=[ct.TensorType(shape=x.shape)],
                    convert_to="mlprogram", minimum_deployment_target=ct.target.iOS15,
                    compute_precision=ct.precision.FLOAT32, skip_model_load=True)
    ref = Filter()(x.double()).numpy()
    own = rel_err(Filter()(x).numpy(), ref)
    assert rel_err(run(ml, (x,))[0], ref) <= max(4 * own, 2e-6)


def test_a_second_rule_for_an_op_is_an_error_on_both_registries():
    from specrewrite.coreml._pairs import rule as plugin_rule
    from specrewrite.rewrite.rules import RULES

    with pytest.raises(RuntimeError, match="two rules"):
        plugin_rule("abs")(lambda context, node: None)
    with pytest.raises(RuntimeError, match="two rules"):
        RULES[torch.ops.aten.abs] = lambda ctx, node, args, kwargs: None


def test_variance_and_means_convert_on_the_plugin_route_with_the_graph_pass_spelling():
    """std_mean / var_mean (every overload; coremltools has no converter) run rewrite/_real_ops' formulas on the
    plugin route too."""
    class Stats(torch.nn.Module):
        def forward(self, x):
            m = torch.stft(x, 256, 64, window=torch.hann_window(256, dtype=x.dtype), return_complex=True).abs()
            std, mean = torch.std_mean(m, dim=-1, keepdim=True)                  # aten.std_mean.correction
            var, mu = torch.var_mean(m, dim=(1, 2), unbiased=False)             # aten.var_mean.dim
            v_all, m_all = torch.var_mean(m)                                     # aten.var_mean.default
            return (m - mean) / std, var + mu, v_all * m_all

    model = Stats().eval()
    x = torch.randn(2, 4000, generator=torch.Generator().manual_seed(5))
    with src.register():
        ml = plugin_convert(model, (x,))
    refs = reference(model, (x,))
    with torch.no_grad():
        own = model(x)
    for got, ref, o in zip(run(ml, (x,)), refs, own):
        assert rel_err(got, ref) <= max(4 * rel_err(o.numpy(), ref), 2e-6)


@pytest.mark.parametrize("route", ["trace", "export"])
def test_ops_coremltools_cannot_convert_are_named_before_conversion(route):
    """A non-spectral op with no coremltools converter (torch.special.i0e in coremltools 9) is a SpecRewriteError
    naming it (and, from an exported program, the user's line), not coremltools' bare NotImplementedError."""
    class Bessel(torch.nn.Module):
        def forward(self, x):
            s = torch.stft(x, 64, 16, window=torch.hann_window(64), return_complex=True).abs()
            return torch.special.i0e(s)

    x = torch.randn(1, 400)
    with pytest.raises(sr.SpecRewriteError, match="no converter for .*i0e") as info:
        with src.register():
            plugin_convert(Bessel(), (x,), route=route)
    if route == "export":
        assert "test_shared_lowering.py" in str(info.value)


class Products(torch.nn.Module):
    """Complex matrix products (torch takes no complex @ real) and torch.where with a complex side (a complex
    tensor, a real tensor, a Python complex)."""

    def forward(self, x, y):
        a = torch.view_as_complex(x.reshape(4, 6, 2))
        b = torch.view_as_complex(y.reshape(6, 4, 2))
        p = a @ b + torch.matmul(a.conj(), b * (1.0 - 0.5j))
        q = torch.where(p.real > 0, p, x[:16, 1].reshape(4, 4))
        r = torch.where(p.imag > 0, q, 0.5 - 2.0j)
        return torch.view_as_real(r)


def test_complex_matmul_and_where_match_eager_on_both_routes():
    _both_routes(Products(), (_z(5, n=24), _z(6, n=24)))


# ------------------------------------------------------------------------------- views, one description
# Each view / copy / shape op of ``rewrite/_pair_views.PAIR_VIEWS`` (the one description both routes build their
# rules from) called on a complex tensor of rank 3 with negative dims (the case the pair axis moves), on both
# routes. The case list must cover the table: an op added to it is tested on both routes.
_IDX = [2, 0]
_VIEW_CALLS = {
    "view": lambda z: z.view(3, 8), "reshape": lambda z: z.reshape(-1, 4),
    "expand": lambda z: z[:, :1].expand(2, 5, 4), "repeat": lambda z: z.repeat(1, 2, 1),
    "permute": lambda z: z.permute(-1, 0, 1), "select": lambda z: z.select(-2, 1),
    "slice": lambda z: z[..., 1:3], "narrow": lambda z: z.narrow(-1, 1, 2),
    "squeeze": lambda z: z[:, :1].squeeze(-2), "unsqueeze": lambda z: z.unsqueeze(-1),
    "transpose": lambda z: z.transpose(-1, 0), "flatten": lambda z: z.flatten(1),
    "cat": lambda z: torch.cat([z, z * 2], -1), "concat": lambda z: torch.concat([z * 3, z], -2),
    "stack": lambda z: torch.stack([z, z * 2], -1), "flip": lambda z: z.flip(-1),
    "roll": lambda z: z.roll(1, -1), "index_select": lambda z: z.index_select(-1, torch.tensor(_IDX)),
    "unbind": lambda z: torch.cat(z.unbind(-1)[::-1], -1), "split": lambda z: torch.cat(z.split(3, -1)[::-1], -1),
    "split_with_sizes": lambda z: torch.cat(z.split([1, 3], -1)[::-1], -1),
    "chunk": lambda z: torch.cat(z.chunk(2, -1)[::-1], -1),
    "tensor_split": lambda z: torch.cat(z.tensor_split(3, -1)[::-1], -1),
    "pad": lambda z: torch.nn.functional.pad(z, (1, 2)), "constant_pad_nd": lambda z: torch.constant_pad_nd(z, (2, 1)),
    "clone": lambda z: z.clone() * 2, "contiguous": lambda z: z.transpose(0, 1).contiguous(),
    "detach": lambda z: z.detach() * 2, "dropout": lambda z: torch.dropout(z, 0.5, False),
}
# view ops with a permutation of their own (``_pair_views.transposed_dims``), not in the table's argument roles
_PERM_CALLS = {"t": lambda z: z[0].t(), "mT": lambda z: z.mT, "T": lambda z: z[0].T}
# names a model cannot call on its own: made by the capture (reshape -> _unsafe_view, x[...] -> alias) or ones
# that only copy (lift_fresh)
_NOT_CALLABLE = {"_unsafe_view", "alias", "lift_fresh", "lift_fresh_copy"}


class View(torch.nn.Module):
    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, x):
        call = _VIEW_CALLS.get(self.name) or _PERM_CALLS[self.name]
        return torch.view_as_real(call(torch.view_as_complex(x)).contiguous())


def test_the_view_cases_cover_the_shared_table():
    from specrewrite.rewrite._pair_views import PAIR_VIEWS

    bases = {n for n in PAIR_VIEWS if not n.endswith("_copy")}
    assert bases - _NOT_CALLABLE == set(_VIEW_CALLS), sorted(bases ^ set(_VIEW_CALLS))


@pytest.mark.parametrize("route", ["trace", "export"])
@pytest.mark.parametrize("name", sorted(_VIEW_CALLS) + sorted(_PERM_CALLS))
def test_every_view_op_is_exact_on_both_routes(name, route):
    x = _z(5, n=24).reshape(2, 3, 4, 2)
    model = View(name).eval()
    with torch.no_grad():
        ref = model(x).numpy()
    got = sr.rewrite(model, (x,))(x).numpy()
    assert got.shape == ref.shape and np.array_equal(got, ref), name
    with src.register():
        ml = plugin_convert(model, (x,), route=route)
    (out,) = run(ml, (x,))
    assert np.asarray(out).shape == ref.shape and np.array_equal(np.asarray(out, np.float32), ref), name


def test_rules_read_arguments_by_their_schema_names():
    """``_nodes.bind`` (``rules.bound``): a rule reads an argument by name, whether the call gave it by position, by keyword or not
    at all (the op's default)."""
    from types import SimpleNamespace

    from specrewrite.rewrite.rules import bound

    aten = torch.ops.aten
    node = SimpleNamespace(target=aten.slice_scatter.default)
    assert bound(node, ["z", "src", 1], {"end": 7}) == {"self": "z", "src": "src", "dim": 1, "start": None,
                                                         "end": 7, "step": 1}
    assert bound(SimpleNamespace(target=aten.add.Tensor), ["a", "b"], {}) == {"self": "a", "other": "b", "alpha": 1}
    assert bound(SimpleNamespace(target=aten.pad.default), ["z", [1, 2]], {"mode": "reflect"})["value"] is None


_SCALAR_CALLS = {"index_select": lambda z: z.index_select(0, torch.tensor([0])), "flip": lambda z: z.flip(0),
                 "flatten": lambda z: z.flatten(), "squeeze": lambda z: z.squeeze(0),
                 "transpose": lambda z: z.transpose(0, -1), "unsqueeze": lambda z: z.unsqueeze(-1)}


class ScalarView(torch.nn.Module):
    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, x):
        return torch.view_as_real(_SCALAR_CALLS[self.name](torch.view_as_complex(x)) * 1)


@pytest.mark.parametrize("name", sorted(_SCALAR_CALLS))
def test_view_ops_on_a_0d_complex_value_on_both_routes(name):
    """dim 0 of a 0-d complex value is torch's virtual axis of a scalar, not the (re, im) axis of its pair (flip
    swapped re and im, index_select kept one of them)."""
    x = torch.tensor([1.5, -2.0])
    model = ScalarView(name).eval()
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.array_equal(sr.rewrite(model, (x,))(x).numpy(), ref), name
    with src.register():
        ml = plugin_convert(model, (x,))
    (out,) = run(ml, (x,))
    assert np.asarray(out).shape == ref.shape and np.array_equal(np.asarray(out, np.float32), ref), name


class Diagonals(torch.nn.Module):
    def forward(self, x):
        z = torch.view_as_complex(x)                                   # (3, 4, 4)
        return (torch.view_as_real(z.diagonal(0, -2, -1)), torch.view_as_real(z.diagonal(1, 0, 2)),
                torch.view_as_real(torch.linalg.diagonal(z, offset=-1)), torch.linalg.diagonal(x[..., 0]))


@pytest.mark.parametrize("route", ["trace", "export"])
def test_diagonals_of_complex_values_on_both_routes(route):
    """torch.diagonal / torch.linalg.diagonal of a complex value (the trace of torchaudio's Souden MVDR): one
    gather of each part on both routes (``_real_ops.cdiagonal``), exact."""
    x = _z(6, n=48).reshape(3, 4, 4, 2)
    model = Diagonals().eval()
    with torch.no_grad():
        ref = [t.numpy() for t in model(x)]
    got = [t.numpy() for t in sr.rewrite(model, (x,))(x)]
    assert all(np.array_equal(g, r) for g, r in zip(got, ref))
    with src.register():
        ml = plugin_convert(model, (x,), route=route)
    out = run(ml, (x,))
    assert all(np.array_equal(np.asarray(o, np.float32), r) for o, r in zip(out, ref))
