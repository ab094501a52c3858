"""The coremltools op-registry plugin: plain ct.convert of un-rewritten models (jit.trace and torch.export)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torchaudio

from test_coreml_common import (TARGETS, TOL, ComplexViews, FftArgs, IstftArgs, KitchenSink, StftArgs, check, ct,
                                forbidden_ops, kitchen_args, op_types, plugin_convert, reference, rel_err, run, src)

from specrewrite.errors import SpecRewriteError
from specrewrite.coreml import _ct_private as P

ANGLE = (3,)  # KitchenSink's output 3 is a phase


@pytest.fixture
def registered():
    with src.register() as reg:
        yield reg


# ------------------------------------------------------------------------------------------ registration

def test_import_does_not_pull_coremltools_and_missing_extra_is_clear():
    code = ("import sys; import specrewrite; assert 'coremltools' not in sys.modules, 'imported'\n"
            "sys.modules['coremltools'] = None\n"
            "try:\n    import specrewrite.coreml\nexcept specrewrite.SpecRewriteError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "pip install 'specrewrite[coreml]'" in out.stdout


def test_register_is_idempotent_and_the_context_manager_restores_the_registry():
    before = P.registry_snapshot()
    assert not src.is_registered()
    with src.register(mode="on_the_fly") as reg:
        first = P.registry_snapshot()
        assert src.is_registered() and reg.mode.value == "on_the_fly"
        assert first["stft"] is not before["stft"] and "istft" in first and "polar" in first
        with src.register(mode="input"):
            assert P.registry_snapshot() == first  # same functions: registering again changes nothing
            assert src._registry.CONFIG.mode.value == "input"
        assert src._registry.CONFIG.mode.value == "on_the_fly"
        src.register()  # plain call inside: still idempotent
        assert P.registry_snapshot() == first
    after = P.registry_snapshot()
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    assert not src.is_registered() and not hasattr(torch._C.Node, "cs")
    src.register()
    src.unregister()
    assert P.registry_snapshot() == before and not src.is_registered()


def test_private_names_are_listed():
    assert any("_get_bindings" in n for n in P.PRIVATE_NAMES)


# ------------------------------------------------------------------------------------- every target

@pytest.mark.parametrize("target", list(TARGETS))
def test_kitchen_sink_trace_every_target(registered, target):
    model, args = KitchenSink(), kitchen_args()
    ml = plugin_convert(model, args, target, "trace")
    assert forbidden_ops(ml) == []
    check(ml, model, args, TOL["fp32_rel"], angles=ANGLE)


@pytest.mark.parametrize("target", ["iOS15", "iOS17", "neuralnetwork"])
def test_kitchen_sink_export(registered, target):
    model, args = KitchenSink(), kitchen_args()
    ml = plugin_convert(model, args, target, "export")
    assert forbidden_ops(ml) == []
    check(ml, model, args, TOL["fp32_rel"], angles=ANGLE)


@pytest.mark.parametrize("mode,route,target", [("input", "trace", "iOS16"), ("on_the_fly", "export", "iOS18"),
                                               ("on_the_fly", "trace", "neuralnetwork")])
def test_modes(mode, route, target):
    model, args = KitchenSink(), kitchen_args()
    with src.register(mode=mode):
        ml = plugin_convert(model, args, target, route)
    assert forbidden_ops(ml) == []
    func = ml._mil_program.functions["main"]
    bases = [n for n in func.inputs if n.startswith("sr_basis_")]
    if mode == "input":
        assert len(bases) >= 3 and set(src.basis_inputs(ml)) == set(bases)
    else:
        assert not bases and {"cos", "sin"} <= op_types(ml)
    total = sum(np.size(op.outputs[0].val) for op in func.operations if op.op_type == "const")
    assert total < 40_000, total  # store mode holds 1.2M values; no basis was folded back into the file
    check(ml, model, args, TOL["fp32_rel"], angles=ANGLE)


def test_stft_arguments_and_windows(registered):
    model, args = StftArgs(), (torch.rand(2, 300) * 2 - 1,)
    for route in ("trace", "export"):
        ml = plugin_convert(model, args, "iOS16", route)
        assert forbidden_ops(ml) == []
        check(ml, model, args, TOL["fp32_rel"])


@pytest.mark.parametrize("route", ["trace", "export"])
def test_complex_views_reductions_arithmetic(registered, route):
    model, args = ComplexViews(), (torch.randn(3, 4, 5, 2),)
    ml = plugin_convert(model, args, "iOS17", route)
    assert forbidden_ops(ml) == []
    check(ml, model, args, TOL["fp32_rel"])


@pytest.mark.parametrize("model,args,mode,route,target", [
    (IstftArgs(), (torch.rand(2, 300) * 2 - 1,), "store", "trace", "iOS16"),
    (IstftArgs(), (torch.rand(2, 300) * 2 - 1,), "on_the_fly", "export", "iOS17"),
    (FftArgs(), (torch.rand(32, 16) * 2 - 1,), "store", "export", "neuralnetwork"),
    (FftArgs(), (torch.rand(32, 16) * 2 - 1,), "on_the_fly", "trace", "iOS18")])
def test_istft_and_fft_arguments(model, args, mode, route, target):
    with src.register(mode=mode):
        ml = plugin_convert(model, args, target, route)
    assert forbidden_ops(ml) == []
    check(ml, model, args, TOL["fp32_rel"])


class _Resynth(torch.nn.Module):
    """stft -> mask -> istft at n_fft 512 (the factored inverse)."""

    def forward(self, x):
        w = torch.hann_window(512, dtype=x.dtype)
        z = torch.stft(x, 512, 128, window=w, return_complex=True)
        return torch.istft(z * torch.sigmoid(z.abs()), 512, 128, window=w, length=x.shape[-1])


@pytest.mark.parametrize("mode,route,target", [("store", "trace", "iOS16"), ("on_the_fly", "export", "iOS17"),
                                               ("input", "trace", "iOS17"), ("store", "export", "neuralnetwork")])
def test_factored_istft_is_as_accurate_as_torchs(mode, route, target):
    """The plugin's istft is the factored inverse of the graph pass (two grouped 1x1 convs, the same tables): its
    float32 rms error against float64 within 1.45x eager float32's where the bases are float64-computed
    constants (the dense basis it used gave 1.8-2.2x). on_the_fly computes its bases in the graph in float32,
    which alone costs about 2x: held to the fp32 tolerance like every plugin output."""
    model, args = _Resynth(), (torch.randn(2, 6000, generator=torch.Generator().manual_seed(3)),)
    with src.register(mode=mode):
        ml = plugin_convert(model, args, target, route)
    assert forbidden_ops(ml) == []
    check(ml, model, args, TOL["fp32_rel"])
    if mode == "on_the_fly":
        return
    (got,) = run(ml, args)
    (ref,) = reference(model, args)
    with torch.no_grad():
        own = model(*args).double().numpy()
    rms = lambda y: float(np.sqrt(np.mean((np.asarray(y, dtype=np.float64) - ref) ** 2)))  # noqa: E731
    assert rms(got) <= 1.45 * rms(own), (rms(got) / rms(own))


class _AwkwardHop(torch.nn.Module):
    """No phase count divides the hop (n_fft 1024 / hop 441; 255 / 196): the framed plan over shifted copies; or
    no split of n_fft at all (a prime): the chunked dense basis."""

    def __init__(self, n_fft, hop):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop

    def forward(self, x):
        w = torch.hann_window(self.n_fft, dtype=x.dtype)
        return torch.view_as_real(torch.stft(x, self.n_fft, self.hop, window=w, return_complex=True))


@pytest.mark.parametrize("n_fft,hop,mode,route,target,bound", [(1024, 441, "store", "trace", "iOS16", 1.45),
                                                               (255, 196, "input", "export", "iOS17", 1.45),
                                                               (619, 601, "store", "export", "iOS16", 1.15),
                                                               (521, 128, "on_the_fly", "trace", "iOS17", 1.15)])
def test_framed_stft_is_as_accurate_as_torchs(n_fft, hop, mode, route, target, bound):
    """Where no phase split divides the hop the plugin wrote one dense conv (n_fft products in one float32 sum:
    4.7x torch.stft's own rms error at 1024 / 441, 2.6x at 255 / 196); it now writes the graph pass's framed
    plan (shifted copies, a dilated grouped conv, the same stage 2). A prime n_fft (619, 521) has no split: its
    dense basis in chunks of 64 taps, summed apart (MIL evaluator: 0.71x and 0.94x; one conv: 1.43x, 1.40x)."""
    model = _AwkwardHop(n_fft, hop)
    args = (torch.randn(2, 8000, generator=torch.Generator().manual_seed(n_fft)),)
    with src.register(mode=mode):
        ml = plugin_convert(model, args, target, route)
    assert forbidden_ops(ml) == []
    (got,) = run(ml, args)
    (ref,) = reference(model, args)
    with torch.no_grad():
        own = model(*args).double().numpy()
    rms = lambda y: float(np.sqrt(np.mean((np.asarray(y, dtype=np.float64) - ref) ** 2)))  # noqa: E731
    assert rms(got) <= bound * rms(own), (rms(got) / rms(own))


def test_fp16_program(registered):
    model, args = KitchenSink(), kitchen_args()
    ml = plugin_convert(model, args, "iOS16", "trace", precision="fp16")
    errs = check(ml, model, args, TOL["fp16_model"], fp16=True, angles=ANGLE)
    assert max(errs) > TOL["fp32_rel"]  # it really ran in fp16


# -------------------------------------------------------------------------------------- torchaudio

def test_torchaudio_melspectrogram_trace_and_export(registered):
    model, x = torchaudio.transforms.MelSpectrogram(n_fft=1024, hop_length=256), torch.rand(1, 4000) - 0.5
    for route in ("trace", "export"):
        ml = plugin_convert(model, (x,), "iOS17", route)
        assert forbidden_ops(ml) == []
        check(ml, model, (x,), TOL["fp32_rel"])


def test_rangedim_torchaudio_melspectrogram():
    """coremltools alone fails here (complex_shape lowering); ours has no complex op to lower."""
    model = torchaudio.transforms.MelSpectrogram(n_fft=512, hop_length=160)
    x = torch.rand(1, 4000) - 0.5
    shape = (1, ct.RangeDim(lower_bound=1024, upper_bound=48000, default=4000))
    with src.register(mode="on_the_fly"):
        ml = plugin_convert(model, (x,), "iOS16", "trace", shapes=[shape])
    assert forbidden_ops(ml) == []
    for length in (2345, 9000):
        xx = torch.rand(1, length) - 0.5
        (out,) = run(ml, (xx,))
        (ref,) = reference(model, (xx,))
        assert out.shape == ref.shape and rel_err(out, ref) <= TOL["fp32_rel"]


# ------------------------------------------------------------------------------------------- errors

class _Cumsum(torch.nn.Module):
    def forward(self, x):
        return torch.view_as_real(torch.cumsum(torch.view_as_complex(x), dim=0))


def test_complex_op_without_lowering_is_a_clear_error(registered):
    with pytest.raises(SpecRewriteError, match="cumsum"):
        plugin_convert(_Cumsum(), (torch.randn(4, 3, 2),), "iOS16", "trace")


class _DynamicWindow(torch.nn.Module):
    def forward(self, x, w):
        return torch.stft(x, 16, 4, window=w, return_complex=True).abs()


def test_non_constant_window_is_a_clear_error(registered):
    with pytest.raises(SpecRewriteError, match="window must be a constant"):
        plugin_convert(_DynamicWindow(), (torch.randn(1, 64), torch.rand(16)), "iOS16", "trace")


class _StftL1Loss(torch.nn.Module):
    """A spectral loss (auraloss-style): |STFT| of two signals compared with F.l1_loss, every reduction."""

    def forward(self, x, y):
        w = torch.hann_window(256, dtype=x.dtype)
        mx = torch.stft(x, 256, 64, window=w, return_complex=True).abs()
        my = torch.stft(y, 256, 64, window=w, return_complex=True).abs()
        f = torch.nn.functional.l1_loss
        return f(mx, my), f(mx, my, reduction="sum"), f(mx, my, reduction="none")


@pytest.mark.parametrize("route", ["trace", "export"])
def test_l1_loss_converts_under_the_plugin(registered, route):
    g = torch.Generator().manual_seed(3)
    args = (torch.randn(1, 2000, generator=g), torch.randn(1, 2000, generator=g))
    ml = plugin_convert(_StftL1Loss(), args, "iOS16", route)
    assert forbidden_ops(ml) == []
    check(ml, _StftL1Loss(), args, TOL["fp32_rel"])


def test_private_loader_still_exists():
    """The one private coremltools function the evaluator needs (a saved ML program back to MIL) is still there."""
    import importlib

    assert callable(importlib.import_module("coremltools.converters.mil.frontend.milproto.load").load)
    assert any("milproto" in n for n in P.PRIVATE_NAMES)


def test_private_fusion_pass_still_exists_and_is_restored():
    """The slice-write fusion pass the plugin wraps is still where it was, the wrapper is installed while
    registered and coremltools' own function is back afterwards."""
    import importlib

    cv = importlib.import_module("coremltools.converters.mil.frontend.torch.converter")
    own = cv.generate_tensor_assignment_ops
    assert callable(own) and any("generate_tensor_assignment_ops" in n for n in P.PRIVATE_NAMES)
    node = importlib.import_module("coremltools.converters.mil.frontend.torch.internal_graph").InternalTorchIRNode
    assert {"inputs", "outputs", "kind", "attr"} <= set(node.__init__.__code__.co_varnames)
    with src.register():
        assert cv.generate_tensor_assignment_ops is not own
    assert cv.generate_tensor_assignment_ops is own


def test_private_converter_entry_still_exists_and_is_restored():
    """TorchConverter.convert (wrapped so that the program it builds is folded to rank 5) and the MIL block
    methods the fold uses are still there; coremltools' own convert is back after register()."""
    import importlib

    cv = importlib.import_module("coremltools.converters.mil.frontend.torch.converter")
    own = cv.TorchConverter.convert
    assert callable(own) and any("TorchConverter.convert" in n for n in P.PRIVATE_NAMES)
    block = importlib.import_module("coremltools.converters.mil.mil").Block
    assert all(callable(getattr(block, m)) for m in ("replace_uses_of_var_after_op", "remove_ops"))
    assert hasattr(importlib.import_module("coremltools.converters.mil.mil.var").Var, "child_ops")
    with src.register():
        assert cv.TorchConverter.convert is not own
    assert cv.TorchConverter.convert is own


class Unfolds(torch.nn.Module):
    """Framing with ``Tensor.unfold`` (torch-mdct, julius): along the last axis, along the first, and of a complex
    spectrum along its frame axis."""

    def forward(self, x):
        frames = x.unfold(-1, 64, 32)
        spec = torch.fft.rfft(frames * torch.hann_window(64))
        return frames.sum(-1), x.t().unfold(0, 10, 5).amax(-1), torch.view_as_real(spec.unfold(1, 4, 2)).sum(-2)


def test_unfold_converts_on_the_plugin_route():
    """coremltools has no converter for ``unfold``: the plugin gathers the frames."""
    model, x = Unfolds().eval(), torch.randn(2, 1024, generator=torch.Generator().manual_seed(0))
    with src.register():
        ml = plugin_convert(model, (x,))
    assert not forbidden_ops(ml)
    check(ml, model, (x,), TOL["fp32_rel"])


class SpectrumWrites(torch.nn.Module):
    """Writes into a complex spectrum through slice / select views: a real zero, a complex number, a real tensor
    (imaginary part 0) and a complex tensor; the pair dimension stays whole behind the views' dimensions."""

    def forward(self, x):
        ft = torch.fft.rfft(x)
        ft[:, :3] = 0
        ft[:, 5] = 1 + 2j
        ft[:, 7:9] = x[:, :2] * 3
        ft[:, -4:] = ft[:, 10:14] * (0.5 - 1j)
        return torch.fft.irfft(ft, n=x.shape[-1])


@pytest.mark.parametrize("name", ["fourier-layer", "in-place-sum", "spectrum-writes"])
def test_complex_writes_einsum_and_fresh_tensors_on_the_plugin_route(registered, name):
    """The plain route of an unchanged model with a complex einsum (a Fourier layer), complex ``zeros_like``
    accumulated in place, and slice writes into a complex tensor: each converts and matches float64 eager (the
    einsum and zeros_like had no lowering; a write left its pair unmarked, so the next op made a rank-6 pair)."""
    from test_coreml import FourierLayer, InPlaceAccumulate

    model, length = {"fourier-layer": (FourierLayer(), 1024), "in-place-sum": (InPlaceAccumulate(), 800),
                     "spectrum-writes": (SpectrumWrites(), 64)}[name]
    x = torch.randn(2, length, generator=torch.Generator().manual_seed(0))
    ml = plugin_convert(model.eval(), (x,), "iOS16", "trace")
    assert forbidden_ops(ml) == []
    check(ml, model, (x,), TOL["fp32_rel"])


def test_private_einsum_builder_still_exists():
    """The plugin's complex einsum builds its real einsums with coremltools' own einsum builder."""
    import importlib

    utils = importlib.import_module("coremltools.converters.mil.frontend._utils")
    assert callable(utils.build_einsum_mil) and any("build_einsum_mil" in n for n in P.PRIVATE_NAMES)


class _RunTimeProduct(torch.nn.Module):
    def forward(self, x):
        mag = torch.fft.rfft(x).abs()
        return mag[..., :6].prod(-1), (mag[..., :3] + 1).prod(), mag[..., :4].prod(-1, keepdim=True)


@pytest.mark.parametrize("name", ["constants", "run-time-prod"])
def test_real_ops_coremltools_lacks_on_the_plugin_route(registered, name):
    """prod, cumprod and pinv have no coremltools converter: a product is MIL's reduce_prod, and each of them of
    a constant is its value (computed in float64)."""
    from test_coreml import ConstantsInForward

    model = ConstantsInForward() if name == "constants" else _RunTimeProduct()
    x = torch.randn(2, 640, generator=torch.Generator().manual_seed(0)) * 0.5
    ml = plugin_convert(model.eval(), (x,), "iOS16", "trace")
    check(ml, model, (x,), TOL["fp32_rel"])


def test_matrix_function_of_a_run_time_value_is_a_clear_error_on_the_plugin_route(registered):
    class _Pinv(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.pinv(x @ x.T)

    with pytest.raises(SpecRewriteError, match="linalg_pinv of a value computed at run time"):
        plugin_convert(_Pinv(), (torch.randn(4, 6),), "iOS16", "trace")


class _Alias(torch.nn.Module):
    def forward(self, x):
        return torch.ops.aten.alias(x) * 2 + 1


def test_an_exported_alias_of_a_real_tensor_converts(registered):
    """torch.export writes ``x[...]`` as aten.alias, which coremltools has no converter for (julius' band split,
    unchanged, on the exported-program route): the plugin takes it as the value itself."""
    x = torch.randn(3, 4)
    ml = plugin_convert(_Alias(), (x,), "iOS16", "export")
    assert np.array_equal(np.asarray(run(ml, (x,))[0]), _Alias()(x).numpy())


class _LogOfInts(torch.nn.Module):
    def forward(self, x):
        n = torch.arange(1, 9)                       # int64: torch.log / sqrt of it is float
        return x * torch.log(n) + torch.sqrt(n) + torch.exp(n[:2] * 0)[0]


@pytest.mark.parametrize("route", ["trace", "export"])
def test_float_functions_of_integer_tensors(registered, route):
    """torch.log / sqrt / exp of an integer tensor (dasp's parametric EQ: log of a frequency grid): coremltools'
    own lowering refuses an int input; the plugin casts it first, as torch does."""
    x = torch.randn(8)
    ml = plugin_convert(_LogOfInts(), (x,), "iOS16", route)
    got = np.asarray(run(ml, (x,))[0])
    assert np.abs(got - _LogOfInts()(x).numpy()).max() <= 1e-6 * np.abs(got).max()
