"""Integer tensors a model builds in forward from sizes and constants, and reads back in Python (open-unmix's
frame windows ``pos = int(torch.arange(pos, min(F, pos + W))[-1]) + 1``, its Wiener filter's channel-pair loop
``for index in torch.cartesian_prod(...)``: ``x[:, index[0]]``). torch.export alone calls those reads
data-dependent and fails, so the model used to be traced with its length fixed; with their values known during
the capture (``rewrite/_known.py``) it is captured by torch.export with the length dynamic, and the bound the
window loop puts on the length (one window: F <= W) is checked: a ``SpecRewriteError`` naming the line in eager,
inf / nan in an exported file, never a silently wrong number."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import specrewrite as sr
from conftest import onnx_roundtrip, rel_err
from specrewrite import SpecRewriteError


class Windowed(torch.nn.Module):
    """open-unmix's two patterns: frames in windows of an arange whose last value is read with int(), and a loop
    over channel pairs from an index tensor built in forward."""

    def __init__(self, win: int = 100):
        super().__init__()
        self.win = win
        self.register_buffer("window", torch.hann_window(256, dtype=torch.float64).float())

    def forward(self, x):
        b, c, n = x.shape
        z = torch.stft(x.reshape(b * c, n), 256, 64, window=self.window.to(x.dtype), return_complex=True)
        z = z.reshape(b, c, z.shape[-2], z.shape[-1])
        frames = z.shape[-1]
        out = torch.zeros_like(z)
        pos = 0
        while pos < frames:
            t = torch.arange(pos, min(frames, pos + self.win))
            pos = int(t[-1]) + 1
            out[..., t] = z[..., t] * torch.sigmoid(z[..., t].abs())
        acc = torch.zeros_like(out[:, 0])
        for index in torch.cartesian_prod(torch.arange(2), torch.arange(2)):
            acc = acc + out[:, index[0]] * out[:, index[1]].conj()
        y = out + 1e-3 * acc[:, None]
        y = torch.istft(y.reshape(b * c, y.shape[-2], y.shape[-1]), 256, 64, window=self.window.to(x.dtype),
                        length=n)
        return y.reshape(b, c, n)


def _errors(fast, model, x):
    m64 = Windowed(model.win).double().eval()
    with torch.no_grad():
        ref = m64(x.double())
        return rel_err(fast(x), ref), rel_err(model(x), ref), ref


def test_values_read_back_from_index_tensors_keep_the_length_dynamic(tmp_path):
    model = Windowed().eval()
    x = torch.randn(1, 2, 4000, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = sr.rewrite(model, (x,), strict=True)
    rep = fast.specrewrite_report
    assert rep.capture.startswith("torch.export"), rep.capture   # not traced with the example's length
    time_ax = rep.axis("x", "time")
    assert time_ax["dynamic"] and rep.axis("x", "batch")["dynamic"], str(rep)
    assert "size <= 6399" in time_ax["range"] and "test_known_values.py" in time_ax["range"], time_ax["range"]
    for batch, n in ((1, 4000), (2, 3001), (1, 2880), (2, 6399)):
        xi = torch.randn(batch, 2, n, generator=torch.Generator().manual_seed(n))
        err, eager, _ = _errors(fast, model, xi)
        assert err <= max(4 * eager, 1e-6), (batch, n, err, eager)
    with pytest.raises(SpecRewriteError) as info:   # two windows in eager: another graph
        fast(torch.randn(1, 2, 7001))
    assert "size 7001" in str(info.value) and "test_known_values.py" in str(info.value), str(info.value)

    t = torch.export.Dim("t", min=300, max=1 << 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess, _, _ = onnx_roundtrip(fast, (x,), dynamic_shapes=({2: t},), path=str(tmp_path / "m.onnx"))
    name = sess.get_inputs()[0].name
    for n in (4000, 3001, 5121):
        xi = torch.randn(1, 2, n, generator=torch.Generator().manual_seed(n + 1))
        _, eager, ref = _errors(fast, model, xi)
        got = torch.from_numpy(sess.run(None, {name: xi.numpy()})[0])
        assert rel_err(got, ref) <= max(4 * eager, 1e-6), (n, rel_err(got, ref), eager)
    got = sess.run(None, {name: torch.randn(1, 2, 7001).numpy()})[0]
    assert not np.isfinite(got).all(), "a length past the captured window must not give finite numbers in ONNX"


def test_known_values_follow_sizes_and_constants():
    """The values the capture answers with: symbolic where they follow a size, Python ints where constant."""
    from specrewrite.rewrite._known import known_value, tracking

    seen = {}

    class Reads(torch.nn.Module):
        def forward(self, x):
            with tracking():
                frames = x.shape[-1] // 4
                last = torch.arange(2, frames)[-1]
                pairs = torch.cartesian_prod(torch.arange(3), torch.arange(2))
                seen["last"] = known_value(last)
                seen["pair"] = [known_value(p[1]) for p in pairs]
                seen["sum"] = known_value((pairs[:, 0] * 2 + 1).sum())   # a reduction: not followed
                seen["data"] = known_value(x.argmax())                    # from the input's values: unknown
                return x * 2

    ep = torch.export.export(Reads(), (torch.randn(2, 400),),
                             dynamic_shapes=({1: torch.export.Dim("t", min=16, max=4096)},), strict=False)
    last = seen["last"]
    assert isinstance(last, torch.SymInt) and last.node.hint == 400 // 4 - 1, seen   # not the int 99
    assert str(last).replace(" ", "").endswith("//4))-1") or "//4" in str(last), str(last)
    assert seen["pair"] == [0, 1, 0, 1, 0, 1] and seen["sum"] is None and seen["data"] is None, seen
    assert ep.module()(torch.randn(2, 64)).shape == (2, 64)


class ResampleLength(torch.nn.Module):
    """julius' resample: the output length as a 0-d float tensor, floored, ``long()``, a slice end (used to fix
    the clip length to the example's through torch's guard on the float)."""

    def forward(self, x):
        n = torch.floor(torch.as_tensor(3 * x.shape[-1] / 4)).long()
        y = x[..., :n]
        w = torch.hann_window(128, dtype=y.dtype)
        return torch.stft(y, 128, 32, window=w, return_complex=True).abs()


def test_a_length_through_a_float_tensor_stays_dynamic():
    model = ResampleLength().eval()
    fast = sr.rewrite(model, (torch.randn(1, 8000),))
    time_ax = [a for a in fast.specrewrite_report.axes if a["role"] == "time"][0]
    assert time_ax["dynamic"], fast.specrewrite_report
    for n in (8000, 9001, 6543):
        x = torch.randn(2, n)
        with torch.no_grad():
            ref = model(x.double())
        got = fast(x)
        assert got.shape == ref.shape and rel_err(got, ref) <= 1e-5, n
