"""Bad or unusual inputs, as a table. Each bad case must raise a ``SpecRewriteError`` (never another type) that
names the op, the line of this file that calls it (for failures inside the model) and a fix, and must leave the
model and the inputs as they were. The unusual-but-fine cases are positive tests: rewritten, and right."""
from __future__ import annotations

import os

import pytest
import torch

import specrewrite as sr
from specrewrite.errors import SpecRewriteError

from conftest import TOL, rel_err

HERE = os.path.basename(__file__)
W = torch.hann_window(256)


def sig(*shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


Z = torch.stft(sig(4000), 256, 64, window=W, return_complex=True)   # a (129, 63) spectrum


class Fn(torch.nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, *a):
        return self.f(*a)


def S(x, **k):
    return torch.stft(x, 256, 64, window=W, return_complex=True, **k)


# ---------------------------------------------------------------- the model itself fails on the inputs
# (id, the model's forward, inputs, the op the error must name, a word of the fix)
EAGER_BAD = [
    ("window of the wrong length",
     lambda x: torch.stft(x, 256, 64, window=torch.hann_window(200), return_complex=True).abs(),
     (sig(4000),), "torch.stft", "win_length"),
    ("istft window of the wrong length",
     lambda z: torch.istft(z, 256, 64, window=torch.hann_window(100)), (Z,), "torch.istft", "win_length"),
    ("3-D audio", lambda x: torch.stft(x, 256, 64, window=W, return_complex=True).abs(), (sig(2, 2, 4000),),
     "torch.stft", "(batch, time)"),
    ("4-D audio", lambda x: torch.stft(x, 256, 64, window=W, return_complex=True).abs(), (sig(1, 2, 2, 4000),),
     "torch.stft", "(batch, time)"),
    ("int64 audio", lambda x: torch.stft(x, 256, 64, window=W, return_complex=True).abs(),
     (torch.randint(-100, 100, (4000,)),), "torch.stft", "float32"),
    ("int16 PCM", lambda x: torch.stft(x, 256, 64, window=W, return_complex=True).abs(),
     (torch.randint(-100, 100, (4000,), dtype=torch.int16),), "torch.stft", "32768"),
    ("bool audio", lambda x: torch.stft(x, 256, 64, window=W, return_complex=True).abs(),
     (torch.ones(4000, dtype=torch.bool),), "torch.stft", "float32"),
    ("hop 0", lambda x: torch.stft(x, 256, 0, window=W, return_complex=True).abs(), (sig(4000),), "torch.stft",
     "hop_length >= 1"),
    ("n_fft 1 with the default hop", lambda x: torch.stft(x, 1, return_complex=True).abs(), (sig(4000),),
     "torch.stft", "n_fft // 4"),
    ("empty clip with reflect padding", lambda x: torch.stft(x, 256, 64, window=W, return_complex=True).abs(),
     (sig(0),), "torch.stft", "pad_mode='constant'"),
    ("clip shorter than the padding", lambda x: torch.stft(x, 256, 64, window=W, return_complex=True).abs(),
     (sig(100),), "torch.stft", "longer"),
    ("batch of empty clips", lambda x: torch.stft(x, 256, 64, window=W, return_complex=True).abs(),
     (sig(3, 0),), "torch.stft", "longer"),
    ("NOLA violated", lambda z: torch.istft(z, 256, 64, window=torch.zeros(256)), (Z,), "torch.istft", "NOLA"),
    ("NOLA violated without centre", lambda z: torch.istft(z, 256, 256, window=W, center=False), (Z,),
     "torch.istft", "NOLA"),
    ("float16 audio", lambda x: torch.stft(x, 256, 64, window=W.half(), return_complex=True).abs(),
     (sig(4000, dtype=torch.float16),), "torch.stft", "float32"),
    ("bfloat16 audio", lambda x: torch.stft(x, 256, 64, window=W.bfloat16(), return_complex=True).abs(),
     (sig(4000, dtype=torch.bfloat16),), "torch.stft", "float32"),
    ("float16 FFT", lambda x: torch.fft.rfft(x).abs(), (sig(512, dtype=torch.float16),), "torch.fft.rfft",
     "float32"),
    ("stft without return_complex", lambda x: torch.stft(x, 256, 64, window=W).abs(), (sig(4000),),
     "torch.stft", "return_complex=True"),
    ("n_fft longer than the clip", lambda x: torch.stft(x, 256, 64, window=W, center=False,
                                                        return_complex=True).abs(), (sig(100),), "torch.stft",
     "n_fft <="),
    ("win_length longer than n_fft", lambda x: torch.stft(x, 256, 64, win_length=300, return_complex=True).abs(),
     (sig(4000),), "torch.stft", "win_length <= n_fft"),
    ("istft of a real tensor", lambda x: torch.istft(x, 256, 64, window=W), (sig(129, 20),), "torch.istft",
     "return_complex"),
    ("istft with the wrong n_fft", lambda z: torch.istft(z, 512, 64, window=torch.hann_window(512)), (Z,),
     "torch.istft", "n_fft"),
    ("istft hop 0", lambda z: torch.istft(z, 256, 0, window=W), (Z,), "torch.istft", "hop"),
    ("istft negative length", lambda z: torch.istft(z, 256, 64, window=W, length=-5), (Z,), "torch.istft",
     "accepts"),
    ("rfft of a complex signal", lambda z: torch.view_as_real(torch.fft.rfft(z)),
     (torch.randn(100, dtype=torch.complex64),), "torch.fft.rfft", "accepts"),
    ("irfft n=0", lambda x: torch.fft.irfft(torch.fft.rfft(x), n=0), (sig(100),), "torch.fft.irfft", "accepts"),
    ("rfft n<0", lambda x: torch.fft.rfft(x, n=-3).abs(), (sig(100),), "torch.fft.rfft", "accepts"),
    ("fft dim out of range", lambda x: torch.fft.rfft(x, dim=3).abs(), (sig(100),), "torch.fft.rfft", "dim"),
    ("fft2 of a 1-D signal", lambda x: torch.fft.rfft2(x).abs(), (sig(100),), "torch.fft.rfft2", "dim"),
    ("unknown fft norm", lambda x: torch.fft.rfft(x, norm="bad").abs(), (sig(100),), "torch.fft.rfft", "accepts"),
    ("hfft of an empty signal", lambda z: torch.fft.hfft(z), (torch.randn(0, dtype=torch.complex64),),
     "torch.fft.hfft", "accepts"),
    ("unknown pad_mode", lambda x: torch.stft(x, 256, 64, window=W, pad_mode="foo", return_complex=True).abs(),
     (sig(4000),), "torch.stft", "accepts"),
    ("float n_fft", lambda x: torch.stft(x, 256.0, 64, window=W, return_complex=True).abs(), (sig(4000),),
     "torch.stft", "ints"),
    ("onesided stft of a complex signal",
     lambda z: torch.view_as_real(torch.stft(z, 256, 64, window=W, return_complex=True, onesided=True)),
     (torch.randn(4000, dtype=torch.complex64),), "torch.stft", "accepts"),
    ("mel matrix of the wrong size", lambda x: torch.matmul(torch.ones(40, 100), S(x).abs()), (sig(4000),),
     "torch.matmul", "shape"),
    ("too few inputs", lambda x, y: S(x).abs() + y, (sig(4000),), "model", "number of inputs"),
    ("too many inputs", lambda x: S(x).abs(), (sig(4000), sig(4000)), "model", "number of inputs"),
]


def _snapshot(model, args):
    return ({k: v.clone() for k, v in model.state_dict().items()}, model.training,
            [a.clone() if isinstance(a, torch.Tensor) else a for a in args])


def _assert_untouched(model, args, snap):
    state, training, inputs = snap
    after = model.state_dict()
    assert set(after) == set(state) and all(torch.equal(after[k], v) for k, v in state.items()), "model changed"
    assert model.training == training, "model mode changed"
    for a, b in zip(args, inputs):
        if isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype and torch.equal(a, b), "an input changed"


@pytest.mark.parametrize("case", EAGER_BAD, ids=[c[0] for c in EAGER_BAD])
def test_model_failing_on_its_inputs_is_named(case):
    _, fn, args, op, fix_word = case
    model = Fn(fn).eval()
    snap = _snapshot(model, args)
    with pytest.raises(SpecRewriteError) as info:
        sr.rewrite(model, args)
    e = info.value
    assert e.op == op, str(e)
    # the user's line: this file, at the line of the lambda (or of Fn.forward, for a wrong number of inputs)
    line = fn.__code__.co_firstlineno if op != "model" else Fn.forward.__code__.co_firstlineno + 1
    assert e.where and f"{HERE}:{line}" in e.where, str(e)
    assert "the model raises on the example inputs" in e.reason and e.fix and fix_word in e.fix, str(e)
    _assert_untouched(model, args, snap)


# ---------------------------------------------------------------- what rewrite itself refuses
class Dropped(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(S(x).abs())


class Normed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(129)

    def forward(self, x):
        return self.bn(S(x).abs())


class Augmented(torch.nn.Module):
    def forward(self, x):
        if self.training:
            x = x + 0.01 * torch.randn_like(x)
        return S(x).abs()


class WindowFromInput(torch.nn.Module):
    def forward(self, x):
        return torch.stft(x, 256, 64, window=x[0, :256].abs(), return_complex=True).abs()


class Plain(torch.nn.Module):
    def forward(self, wav):
        return S(wav).abs()


REFUSED = [
    # (id, call, words the message must hold, the model to check untouched (or None), its inputs)
    ("dropout in train mode", lambda m, a: sr.rewrite(m, a), ("training mode", "Dropout", ".eval()"),
     Dropped().train(), (sig(2, 4000),)),
    ("batch norm in train mode", lambda m, a: sr.rewrite(m, a), ("training mode", "BatchNorm1d", ".eval()"),
     Normed().train(), (sig(2, 4000),)),
    ("random augmentation in train mode", lambda m, a: sr.rewrite(m, a), ("training mode", ".eval()"),
     Augmented().train(), (sig(2, 4000),)),
    ("window computed from the input", lambda m, a: sr.rewrite(m, a), ("window", "computed from the model input"),
     WindowFromInput().eval(), (sig(2, 4000),)),
    ("align_to_window", lambda m, a: sr.rewrite(m, a), ("align_to_window",),
     Fn(lambda x: torch.stft(x, 256, 64, window=W, return_complex=True, center=False,
                             align_to_window=True).abs()).eval(), (sig(4000),)),
    ("no example inputs", lambda m, a: sr.rewrite(m), ("stft at", f"{HERE}:{S.__code__.co_firstlineno + 1}", "in S"), Plain().eval(), ()),
    ("unknown mode", lambda m, a: sr.rewrite(m, a, mode="fast"), ("mode",), Plain().eval(), (sig(4000),)),
    ("unknown strategy", lambda m, a: sr.rewrite(m, a, strategy="fastest"), ("strategy",), Plain().eval(),
     (sig(4000),)),
    ("not a module", lambda m, a: sr.rewrite(lambda x: x, a), ("nn.Module",), None, (sig(4000),)),
    ("example inputs of the wrong type", lambda m, a: sr.rewrite(m, "audio.wav"), ("example_inputs",),
     Plain().eval(), ()),
    ("TorchScript module", lambda m, a: sr.rewrite(torch.jit.script(torch.nn.Linear(2, 2)), (torch.randn(2, 2),)),
     ("TorchScript",), None, ()),
    ("dynamic_shapes naming an unknown input",
     lambda m, a: sr.rewrite(m, a, dynamic_shapes={"x": {1: torch.export.Dim("t")}}), ("not inputs of forward",),
     Plain().eval(), (sig(2, 4000),)),
    ("dynamic_shapes naming an axis the input lacks",
     lambda m, a: sr.rewrite(m, a, dynamic_shapes={"wav": {5: torch.export.Dim("t")}}), ("axis 5",),
     Plain().eval(), (sig(2, 4000),)),
    ("dynamic_shapes of the wrong type", lambda m, a: sr.rewrite(m, a, dynamic_shapes=3), ("dynamic_shapes",),
     Plain().eval(), (sig(2, 4000),)),
    ("dynamic_shapes with too many entries",
     lambda m, a: sr.rewrite(m, a, dynamic_shapes=({1: torch.export.Dim("t")}, None)), ("entries",),
     Plain().eval(), (sig(2, 4000),)),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_with_a_clear_error(case):
    _, call, words, model, args = case
    snap = _snapshot(model, args) if model is not None else None
    with pytest.raises(SpecRewriteError) as info:
        call(model, args)
    msg = str(info.value)
    assert all(w in msg for w in words), msg
    assert info.value.fix, msg
    if model is not None:
        _assert_untouched(model, args, snap)


def test_the_table_has_forty_bad_inputs():
    assert len(EAGER_BAD) + len(REFUSED) >= 40


# ---------------------------------------------------------------- unusual but fine: rewritten, and right
def _f64(fn, *args):
    with torch.no_grad():
        return Fn(fn).double()(*[a.double() if a.is_floating_point() else a.to(torch.complex128)
                                 if a.is_complex() else a for a in args])


def _mag_f64(x):
    return torch.stft(x, 256, 64, window=W.double(), return_complex=True).abs()


def test_nan_and_inf_propagate_like_eager():
    x = sig(2, 4000)
    x[0, 1000] = float("nan")
    x[1, 2000] = float("inf")
    model = Fn(lambda x: S(x).abs()).eval()
    fast = sr.rewrite(model, (sig(2, 4000),))
    got, ref = fast(x), model(x)
    # the same outputs are non-finite, and a NaN sample gives NaN wherever it reaches. Whether a frame holding an
    # inf sample gives inf or nan in a bin depends on the order of the FFT's butterflies: torch built with MKL
    # (torch 2.11 + CUDA on x86) differs there from the pocketfft of the CPU wheel, so inf and nan of that row
    # are not told apart
    assert torch.equal(got.isfinite(), ref.isfinite())
    assert torch.equal(got[0].isnan(), ref[0].isnan()) and bool(ref[0].isnan().any())
    ok = ref.isfinite()
    assert ok.sum() > 0.5 * ok.numel()
    assert rel_err(got[ok], _mag_f64(x.double())[ok]) <= TOL["fp32_rel"]


def test_return_complex_false():
    model = Fn(lambda x: torch.stft(x, 256, 64, window=W, return_complex=False)).eval()
    x = sig(2, 4000)
    fast = sr.rewrite(model, (x,))
    ref = torch.view_as_real(torch.stft(x.double(), 256, 64, window=W.double(), return_complex=True))
    assert rel_err(fast(x), ref) <= TOL["fp32_rel"]


def test_rewriting_twice_is_the_same_function():
    model = Fn(lambda x: torch.log1p(S(x).abs())).eval()
    x = sig(2, 4000)
    once = sr.rewrite(model, (x,))
    twice = sr.rewrite(once, (x,))
    assert rel_err(twice(x), torch.log1p(_mag_f64(x.double()))) <= TOL["fp32_rel"]


def test_hop_longer_than_the_window():
    model = Fn(lambda x: torch.stft(x, 256, 300, window=W, return_complex=True).abs()).eval()
    x = sig(2, 4000)
    fast = sr.rewrite(model, (x,))
    ref = torch.stft(x.double(), 256, 300, window=W.double(), return_complex=True).abs()
    assert rel_err(fast(x), ref) <= TOL["fp32_rel"]


def test_silence():
    model = Fn(lambda x: torch.log(S(x).abs() + 1e-6)).eval()
    fast = sr.rewrite(model, (torch.zeros(2, 4000),))
    assert torch.equal(fast(torch.zeros(2, 4000)), model(torch.zeros(2, 4000)))


def test_float64_window_with_float32_audio():
    model = Fn(lambda x: torch.stft(x, 256, 64, window=W.double(), return_complex=True).abs()).eval()
    x = sig(2, 4000)
    fast = sr.rewrite(model, (x,))
    assert fast(x).dtype == model(x).dtype
    assert rel_err(fast(x), _mag_f64(x.double())) <= TOL["fp32_rel"]


class MutatesInput(torch.nn.Module):
    def forward(self, x):
        x *= 4
        return S(x).abs()


def test_a_model_writing_into_its_input_leaves_the_callers_tensor_alone():
    x = sig(2, 4000)
    x0 = x.clone()
    fast = sr.rewrite(MutatesInput().eval(), (x,))
    assert torch.equal(x, x0)
    assert rel_err(fast(x0.clone()), _mag_f64(4 * x0.double())) <= TOL["fp32_rel"]


def test_train_mode_without_mode_dependent_layers_is_rewritten():
    model = Fn(lambda x: S(x).abs()).train()
    x = sig(2, 4000)
    fast = sr.rewrite(model, (x,))
    assert fast.training and model.training
    assert rel_err(fast(x), _mag_f64(x.double())) <= TOL["fp32_rel"]


def test_complex_scalars_in_where():
    def fn(x):
        z = S(x)
        c = z.real > 0
        return torch.view_as_real(torch.where(c, z, 1j)), torch.view_as_real(torch.where(c, 0.5 - 0.5j, z)), \
            torch.view_as_real(torch.where(c, 1j, 0.5)), torch.view_as_real(torch.where(c, z.abs(), 2j))
    x = sig(2, 4000)
    fast = sr.rewrite(Fn(fn).eval(), (x,))
    for got, ref in zip(fast(x), _f64(fn, x)):
        assert rel_err(got, ref) <= TOL["fp32_rel"]


def test_istft_with_a_float64_window_promotes_like_eager():
    def fn(z):
        return torch.istft(z, 256, 64, window=W.double())
    fast = sr.rewrite(Fn(fn).eval(), (Z,))
    got = fast(Z)
    assert got.dtype == torch.float64
    assert rel_err(got, _f64(fn, Z)) <= TOL["fp32_rel"]


def test_an_internal_failure_is_a_specrewrite_error_that_says_it_is_our_bug(monkeypatch):
    """Anything but a SpecRewriteError escaping rewrite() is wrapped: the message says it is a specrewrite bug,
    the original exception stays chained."""
    import importlib

    lower = importlib.import_module("specrewrite.rewrite.lower")

    def broken(self, *a, **k):
        raise ValueError("an invariant of ours")

    monkeypatch.setattr(lower.Lowering, "run", broken)
    with pytest.raises(SpecRewriteError) as info:
        sr.rewrite(Fn(lambda x: S(x).abs()).eval(), (sig(4000),))
    assert "internal error (ValueError: an invariant of ours" in str(info.value)
    assert "specrewrite bug" in info.value.fix and isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize("code, entered, op", [
    ("z = torch.view_as_real(torch.fft.rfft(x))", None, "torch.fft.rfft"),
    ("return self.head(torch.stft(x, 400, window=w).abs())", "stft", "torch.stft"),
    ("y = torch.matmul(a, b)", None, "torch.matmul"),
    ("spec = x.stft(512, return_complex=True)", None, "x.stft"),
    ("y = helper(x)", "istft", "istft"),
])
def test_the_op_a_failing_line_is_about(code, entered, op):
    from specrewrite._where import _called

    assert _called(code, entered) == op
