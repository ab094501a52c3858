"""The private torch names specrewrite relies on (``specrewrite._torch_private.PRIVATE_NAMES``) still exist, and
the draft capture built on them does what draft_export does: a value read from a tensor is the example's, checked
at run time, with the shapes left dynamic."""
import importlib

import pytest
import torch

from specrewrite import _torch_private as P


@pytest.mark.parametrize("name", P.PRIVATE_NAMES)
def test_private_name_still_exists(name):
    """Each name resolves: the longest importable module prefix, then attributes (``Cls()`` makes an instance)."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
            break
        except ImportError:
            continue
    for part in parts[cut:]:
        call = part.endswith("()")
        part = part[:-2] if call else part
        if isinstance(obj, dict):   # a dataclass's fields
            assert part in obj, f"torch no longer has {name} ({part} missing)"
            obj = obj[part]
            continue
        assert hasattr(obj, part), f"torch no longer has {name} ({part} missing)"
        obj = getattr(obj, part)() if call else getattr(obj, part)


class _ReadsValue(torch.nn.Module):
    def forward(self, x):
        k = int((x.abs().max() > 0.0).item()) + 1   # data-dependent Python: 2 for any non-zero input
        return x[..., ::k] * 3.0


def test_reading_values_captures_with_a_run_time_check():
    x = torch.randn(2, 100)
    with pytest.raises(Exception):
        torch.export.export(_ReadsValue(), (x,), dynamic_shapes=({0: torch.export.Dim.AUTO, 1: torch.export.Dim.AUTO},),
                            strict=False)
    with P.reading_values():
        ep = torch.export.export(_ReadsValue(), (x,),
                                 dynamic_shapes=({0: torch.export.Dim.AUTO, 1: torch.export.Dim.AUTO},), strict=False)
    assert any("_assert_scalar" in str(n.target) for n in ep.graph.nodes)
    gm = ep.module()
    y = torch.randn(3, 77)
    torch.testing.assert_close(gm(y), y[..., ::2] * 3.0, rtol=0, atol=0)   # dynamic shapes, same value
    with pytest.raises(Exception):
        gm(torch.zeros(3, 77))   # the value read differs from the example's: the run-time check fires


class _LoopsOverBatch(torch.nn.Module):
    def forward(self, x):
        y = x * 2.0
        return torch.stack([y[b] + b for b in range(x.shape[0])])   # the batch size used as a Python int


def test_stop_when_fixed_stops_at_the_line_that_fixes_the_size():
    x = torch.randn(2, 64)
    with pytest.raises(P.SizeFixed) as info, P.stop_when_fixed((("x", 0),)):
        torch.export.export(_LoopsOverBatch(), (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},), strict=False)
    assert (info.value.name, info.value.axis) == ("x", 0)
    assert "test_torch_private.py" in info.value.where and "range(x.shape[0])" in info.value.where
    # not watched (or no longer within): the same capture fixes the batch and succeeds
    ep = torch.export.export(_LoopsOverBatch(), (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},), strict=False)
    assert ep.module()(x).shape == (2, 64)


def test_user_locations_names_the_models_line_of_a_bound():
    """A bound made inside a torch kernel (an FFT padding the batch) records the model's line."""
    from specrewrite._where import from_guard

    class FftOverBatch(torch.nn.Module):
        def forward(self, x):
            return torch.fft.fft(x, n=6, dim=0).abs()   # <bound-line>

    with P.user_locations():
        ep = torch.export.export(FftOverBatch(), (torch.randn(2, 8),), dynamic_shapes=({0: torch.export.Dim.AUTO},),
                                 strict=False)
    (ph,) = [n for n in ep.graph.nodes if n.op == "placeholder"]
    env = ph.meta["val"].shape[0].node.shape_env
    assert any("<bound-line>" in from_guard(g) for g in env.guards), [str(g.sloc) for g in env.guards]
