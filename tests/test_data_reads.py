"""Values a model's Python reads from its input tensors (lengths, counts): never frozen silently.

- espnet's ``make_pad_mask`` idiom, ``lengths.tolist()`` then ``x.new(lengths)`` / ``new_tensor`` /
  ``torch.tensor``: the tensor built back is the input's elements (``rewrite/_known.py``), so the mask follows
  the lengths fed at run time, in eager and in an exported file, at any clip length;
- a value read and used in Python (``int(n[0])`` as a slice end): the capture fixes it to the example's. The
  rewritten model raises a ``SpecRewriteError`` naming the line on other values, and an exported file gives nan
  there (``rewrite/_data_guards.py``), where torch.onnx drops torch's own checks (an ONNX file used to mask every
  clip with the example's lengths: 0.81 of the peak off, reported as verified).
Also: a Python module held as a model attribute (espnet's beamformer ``self.bf_func = module``) is shared by the
copy, not a deepcopy failure."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import specrewrite as sr
from conftest import onnx_roundtrip, rel_err
from specrewrite import SpecRewriteError

HOP = 64


def _spec(x):
    w = torch.hann_window(256, dtype=x.dtype)
    return torch.stft(x, 256, HOP, window=w, return_complex=True).abs()


class PadMask(torch.nn.Module):
    """Magnitude spectrogram with frames past each item's length zeroed; ``how`` builds the lengths tensor back
    from its Python list as espnet (``new``), most code (``new_tensor``) or ``torch.tensor`` do."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how

    def forward(self, x, lens):
        s = _spec(x)
        frames = (lens // HOP + 1).long().tolist()
        ref = torch.arange(s.shape[-1]).unsqueeze(0).expand(len(frames), s.shape[-1])
        if self.how == "new":
            back = ref.new(frames)
        elif self.how == "new_tensor":
            back = ref.new_tensor(frames)
        else:
            back = torch.tensor(frames, dtype=torch.int64)
        mask = ref >= back.unsqueeze(-1)
        return s.masked_fill(mask.unsqueeze(1), 0.0)


def _f64(model, x, lens):
    with torch.no_grad():
        return model(x.double(), lens)


@pytest.mark.parametrize("how", ["new", "new_tensor", "tensor"])
def test_lengths_round_trip_follows_the_input(how):
    model = PadMask(how).eval()
    x, lens = torch.randn(2, 4000), torch.tensor([4000, 2500])
    fast = sr.rewrite(model, (x, lens))
    assert not any("fixed to the example" in n for n in fast.specrewrite_report.notes), fast.specrewrite_report
    for T, ln in ((4000, [1000, 4000]), (5001, [5001, 77]), (3333, [3333, 3333])):
        xi, li = torch.randn(2, T), torch.tensor(ln)
        ref64 = _f64(model, xi, li)
        got = fast(xi, li)
        assert got.shape == ref64.shape
        assert rel_err(got, ref64) < 1e-5, (T, ln)
        # the masked frames are exactly zero where eager's are
        assert torch.equal(got == 0, ref64 == 0)


def test_lengths_round_trip_in_onnx(tmp_path):
    model = PadMask("new").eval()
    x, lens = torch.randn(2, 4000), torch.tensor([4000, 2500])
    fast = sr.rewrite(model, (x, lens))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess, _, _ = onnx_roundtrip(fast, (x, lens), dynamic_shapes=({1: torch.export.Dim("t", min=300)}, None),
                                    path=str(tmp_path / "m.onnx"), optimize=False)
    for T, ln in ((4000, [1000, 4000]), (6001, [6001, 300])):
        xi, li = torch.randn(2, T), torch.tensor(ln)
        got = sess.run(None, {sess.get_inputs()[0].name: xi.numpy(), sess.get_inputs()[1].name: li.numpy()})[0]
        assert rel_err(torch.from_numpy(got), _f64(model, xi, li)) < 1e-5, (T, ln)


class ReadsCount(torch.nn.Module):
    """A count read into Python and used as a slice end: data the graph cannot follow."""

    def forward(self, x, n):
        k = int(n[0])
        return _spec(x)[..., :k]


def test_a_value_read_into_python_is_checked_in_eager():
    model = ReadsCount().eval()
    x, n = torch.randn(1, 4000), torch.tensor([20])
    fast = sr.rewrite(model, (x, n))
    assert any("fixed to the example" in s for s in fast.specrewrite_report.notes), fast.specrewrite_report
    assert rel_err(fast(x, n), _f64(model, x, n)) < 1e-5
    with pytest.raises(SpecRewriteError) as e:
        fast(x, torch.tensor([30]))
    assert "test_data_reads.py" in str(e.value) and "int(n[0])" in str(e.value)


def test_a_value_read_into_python_gives_nan_from_onnx(tmp_path):
    model = ReadsCount().eval()
    x, n = torch.randn(1, 4000), torch.tensor([20])
    fast = sr.rewrite(model, (x, n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess, _, _ = onnx_roundtrip(fast, (x, n), path=str(tmp_path / "m.onnx"), optimize=False)
    names = [i.name for i in sess.get_inputs()]
    same = sess.run(None, dict(zip(names, (x.numpy(), n.numpy()))))[0]
    assert rel_err(torch.from_numpy(same), _f64(model, x, n)) < 1e-5
    other = sess.run(None, dict(zip(names, (x.numpy(), np.array([30])))))[0]
    assert np.isnan(other).all()


class NumpyOnValues(torch.nn.Module):
    """Leaves torch for numpy on the input's values (no capture takes ``x.numpy()``): a trace holds the example's
    values as a constant (``soft``) or a literal (``peak``), right at the example and wrong for any other clip."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how

    def forward(self, x):
        if self.how == "soft":
            x = torch.from_numpy(np.tanh(x.detach().numpy()))   # <soft-read>
        else:
            x = x / float(np.abs(x.detach().numpy()).max())      # <peak-read>
        return _spec(x)


@pytest.mark.parametrize("how", ["soft", "peak"])
def test_a_trace_that_holds_input_values_is_refused_naming_the_line(how):
    model = NumpyOnValues(how).eval()
    x = torch.randn(1, 3000)
    with pytest.raises(SpecRewriteError) as e:
        sr.rewrite(model, (x,))
    line = "torch.from_numpy(np.tanh(" if how == "soft" else "x = x / float(np.abs("
    assert "depends on the example's values" in str(e.value) and line in str(e.value), str(e.value)
    # strict=False returns the trace with the reason in the report: right at the example only
    fast = sr.rewrite(model, (x,), strict=False)
    assert any("depends on the example's values" in n and line in n for n in fast.specrewrite_report.notes)
    with torch.no_grad():
        assert rel_err(fast(x), model(x.double())) < 1e-5
        x2 = torch.randn(1, 3000, generator=torch.Generator().manual_seed(5))
        assert rel_err(fast(x2), model(x2.double())) > 1e-2


class HoldsAModule(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ops = torch.fft          # a Python module as an attribute
        self.lin = torch.nn.Linear(257, 4)

    def forward(self, x):
        return self.lin(self.ops.rfft(x).abs())


def test_a_module_attribute_is_shared_by_the_copy():
    model = HoldsAModule().eval()
    x = torch.randn(2, 512)
    fast = sr.rewrite(model, (x,))
    with torch.no_grad():
        ref64 = HoldsAModule.forward(_double(model), x.double())
    assert rel_err(fast(x), ref64) < 1e-5
    assert model.ops is torch.fft


def _double(model):
    import copy

    m = HoldsAModule().eval()
    m.load_state_dict(copy.deepcopy(model.state_dict()))
    return m.double()
