"""An axis the capture holds for a residue class of sizes only (the model pads to a multiple of a stride in Python,
``if T % k != 0: pad``) stays dynamic for that class (``rewrite/_guards.py``): right inside it in eager and in
ONNX Runtime, a ``SpecRewriteError`` naming the model's line outside it in eager, inf / nan outside it in an
exported file (never a silently wrong number)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import sympy
import torch

import specrewrite as sr
from conftest import TOL, onnx_roundtrip, rel_err
from specrewrite import SpecRewriteError
from specrewrite.rewrite._guards import holds, residue_class, size_class


class PadOneOffStride(torch.nn.Module):
    """Pad by one sample only when the length is not a multiple of the stride: a residue class (a pad up to the
    multiple, HDemucs' time encoder, holds every length instead: test_pad_multiple.py)."""

    def __init__(self, stride=4):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        le = x.shape[-1]
        if le % self.stride != 0:
            x = torch.nn.functional.pad(x, (0, 1))
        spec = torch.stft(x, 64, 16, window=torch.hann_window(64, dtype=x.dtype), return_complex=True)
        return spec.abs().mean(1)


class ScaleOnMultiple(torch.nn.Module):
    """The other branch is the example's: the graph holds lengths that are multiples of 8 only."""

    def forward(self, x):
        if x.shape[-1] % 8 == 0:
            x = x * 2
        spec = torch.stft(x, 64, 16, window=torch.hann_window(64, dtype=x.dtype), return_complex=True)
        return spec.abs().mean(1)


class PadWhenRemainderLarge(torch.nn.Module):
    """A branch on an inequality of the remainder: the capture's guard is ``Mod(T, 4) <= 2``, not Eq / Ne."""

    def forward(self, x):
        if x.shape[-1] % 4 > 2:
            x = torch.nn.functional.pad(x, (0, 1))
        spec = torch.stft(x, 64, 16, window=torch.hann_window(64, dtype=x.dtype), return_complex=True)
        return spec.abs().mean(1)


def _rewrite(model, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sr.rewrite(model, (x,), strict=True)


@pytest.mark.parametrize("model, length, inside, outside", [
    (PadOneOffStride(), 4002, [4003, 5001], 4004),
    (ScaleOnMultiple(), 4000, [4008, 4800], 4004),
    (PadWhenRemainderLarge(), 4002, [4001, 5000, 4004], 4003),
])
def test_length_stays_dynamic_for_its_residue_class(model, length, inside, outside, tmp_path):
    model = model.eval()
    x = torch.randn(2, length, generator=torch.Generator().manual_seed(0))
    fast = _rewrite(model, x)
    (time_ax,) = [a for a in fast.specrewrite_report.axes if a["role"] == "time"]
    assert time_ax["dynamic"] and time_ax["sizes"] and "sizes where" in time_ax["range"], time_ax
    assert "test_size_class.py" in time_ax["range"], time_ax["range"]   # the model's branching line
    for n in inside:
        assert holds(time_ax["sizes"], n) and not holds(time_ax["sizes"], outside)
        xi = torch.randn(3, n, generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            err, eager = rel_err(fast(xi), model.double()(xi.double())), rel_err(model.float()(xi),
                                                                               model.double()(xi.double()))
        assert err <= max(4 * eager, TOL["fp32_rel"]), (n, err, eager)
    with pytest.raises(SpecRewriteError) as info:
        fast(torch.randn(3, outside))
    assert f"size {outside}" in str(info.value) and "test_size_class.py" in str(info.value), str(info.value)

    t = torch.export.Dim("t", min=64, max=1 << 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess, _, _ = onnx_roundtrip(fast, (x,), dynamic_shapes=({1: t},), path=str(tmp_path / "m.onnx"))
    name = sess.get_inputs()[0].name
    for n in inside:
        xi = torch.randn(2, n, generator=torch.Generator().manual_seed(n + 1))
        got = sess.run(None, {name: xi.numpy()})[0]
        with torch.no_grad():
            assert rel_err(torch.from_numpy(got), model.double()(xi.double())) <= TOL["fp32_rel"] * 10
    got = sess.run(None, {name: torch.randn(2, outside).numpy()})[0]
    assert not np.isfinite(got).all(), "a length outside the class must not give finite numbers in ONNX"


def test_residue_class_parses_only_mod_guards():
    s = sympy.Symbol("s0", integer=True, positive=True)
    c = residue_class(sympy.Ne(sympy.Mod(s, 4), 0), 0, 1, "", "x")
    assert c is not None and [holds(c.test, n) for n in (4, 5, 6, 7, 8)] == [False, True, True, True, False]
    flag = [eval(c.flag, {}, {"n": n}) for n in (4, 5, 6, 7, 8)]   # noqa: S307 - the module's own expression
    assert flag == [0, 1, 1, 1, 0]
    c = residue_class(sympy.Eq(sympy.Mod(3 * s + 2, 8), 0), 0, 1, "", "x")
    assert [holds(c.test, n) for n in range(8)] == [(3 * n + 2) % 8 == 0 for n in range(8)]
    assert [eval(c.flag, {}, {"n": n}) for n in range(8)] == [int((3 * n + 2) % 8 == 0) for n in range(8)]
    t = sympy.Symbol("s1", integer=True, positive=True)
    assert residue_class(sympy.Eq(s, 4000), 0, 1, "", "x") is None                # one size: stays fixed
    assert residue_class(sympy.Ne(sympy.Mod(s + t, 4), 0), 0, 1, "", "x") is None  # two sizes


def _flag(c, n):
    return eval(c.flag, {"__builtins__": {}}, {"n": n, "m": torch.sym_min})   # noqa: S307 - the module's own


def test_size_class_judges_any_guard_in_one_size_at_every_size():
    from torch.utils._sympy.functions import FloorDiv, Mod

    s = sympy.Symbol("s0", integer=True, positive=True)
    frames = FloorDiv(s, 64) + 1
    cases = {   # guard -> the sizes it holds for, by Python
        s + 2 <= 4 * FloorDiv(s, 4) + 4: lambda n: n % 4 <= 2,           # HDemucs' padding, in inequality form
        sympy.Min(100, frames) >= frames: lambda n: n // 64 + 1 <= 100,  # open-unmix's one window of frames
        sympy.And(s >= 700, sympy.Eq(Mod(s, 3), 1)): lambda n: n >= 700 and n % 3 == 1,
    }
    for guard, truth in cases.items():
        c = size_class(guard, 0, 1, "", "x", 4000)
        assert c is not None, guard
        sizes = range(1, 20000)
        assert [holds(c.test, n) for n in sizes] == [truth(n) for n in sizes], (guard, c.test)
        assert [_flag(c, n) for n in sizes] == [int(truth(n)) for n in sizes], (guard, c.flag)
    assert size_class(s + 1 >= 1, 0, 1, "", "x", 4000) is None                    # holds at every size
    assert size_class(sympy.Eq(s + 1024, 5024), 0, 1, "", "x", 4000) is None      # one size: a fixed axis
    # a frame count pinned by an equality (sizes 3968 .. 4031 share it): the graph holds the constant, fixed
    assert size_class(sympy.Eq(513 * sympy.Max(1, FloorDiv(s, 64) - 3), 513 * 59), 0, 1, "", "x", 4000) is None
    # no period and no interval: the sizes around the example where it holds, every one of them right
    odd = sympy.Ne(Mod(FloorDiv(s * s, 7), 2), 0)
    c = size_class(odd, 0, 1, "", "x", 4001)
    inside = [n for n in range(1, 20000) if holds(c.test, n)]
    assert 4001 in inside and all((n * n // 7) % 2 != 0 for n in inside)


class CropsFrames(torch.nn.Module):
    """A crop with a negative pad (asteroid's ``pad_x_to_y``) on the spectrogram: torch guards
    ``Eq(Max(1, T // 16 - 2), T // 16 - 2)``, an equality that is a lower bound (T >= 48); the axis used to be
    fixed to the example's size."""

    def forward(self, x):
        s = torch.stft(x, 64, 16, window=torch.hann_window(64, dtype=x.dtype), return_complex=True)
        return torch.view_as_real(torch.nn.functional.pad(s, [0, -3]))


def test_an_equality_that_is_a_lower_bound_keeps_the_axis(tmp_path):
    model = CropsFrames().eval()
    fast = sr.rewrite(model, (torch.randn(1, 1000),))
    time_ax = [a for a in fast.specrewrite_report.axes if a["role"] == "time"][0]
    assert time_ax["dynamic"], fast.specrewrite_report
    for n in (1000, 64, 2001, 1234):
        x = torch.randn(1, n)
        with torch.no_grad():
            ref = model(x.double())
        assert rel_err(fast(x), ref) <= TOL["fp32_rel"], n
    with pytest.raises(SpecRewriteError, match="size >= "):
        fast(torch.randn(1, 40))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess, _, _ = onnx_roundtrip(fast, (torch.randn(2, 1000),), path=str(tmp_path / "m.onnx"), optimize=False,
                                    dynamic_shapes=({0: torch.export.Dim.AUTO, 1: torch.export.Dim.AUTO},))
    name = sess.get_inputs()[0].name
    x = torch.randn(2, 1501)
    with torch.no_grad():
        ref = model(x.double())
    assert rel_err(torch.from_numpy(sess.run(None, {name: x.numpy()})[0]), ref) <= TOL["fp32_rel"]
    assert not np.isfinite(sess.run(None, {name: torch.randn(2, 50).numpy()})[0]).all()


class PadsShortClips(torch.nn.Module):
    """Pads a clip shorter than 1024 samples up to 1024 (audiocraft's chroma front end): the graph captured from a
    longer clip holds for 1024 <= time only, a range every exporter takes as a fact."""

    def forward(self, x):
        if x.shape[-1] < 1024:
            x = torch.nn.functional.pad(x, (0, 1024 - x.shape[-1]))
        return torch.stft(x, 512, 256, window=torch.hann_window(512, dtype=x.dtype), return_complex=True).abs()


def test_a_clip_below_the_range_gives_nan_from_the_file_not_fewer_frames(tmp_path):
    """Before: the ONNX file fed 600 samples returned 3 frames where eager has 5, silently."""
    model = PadsShortClips().eval()
    res = sr.export(model, (torch.randn(2, 4000),), tmp_path / "short.onnx")
    assert res.ok and "wav axis" not in str(res.dynamic_axes) and "x axis 1 (time)" in res.dynamic_axes, str(res)
    time_ax = [a for a in res.report.axes if a["role"] == "time"][0]
    assert time_ax["min"] == 1024, time_ax
    import onnxruntime as ort

    sess = ort.InferenceSession(res.path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    for n in (1024, 1025, 3001):
        x = torch.randn(2, n)
        with torch.no_grad():
            ref = model(x.double())
        assert rel_err(torch.from_numpy(sess.run(None, {name: x.numpy()})[0]), ref) <= TOL["fp32_rel"], n
    short = sess.run(None, {name: torch.randn(2, 600).numpy()})[0]
    assert np.isnan(short).all() and model(torch.randn(2, 600)).shape[-1] == 5 != short.shape[-1]
