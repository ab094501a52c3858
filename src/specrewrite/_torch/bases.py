"""Holding DFT bases in a module in one of the three modes (store / input / on_the_fly)."""
from __future__ import annotations

import math
from typing import Callable, Dict, List

import numpy as np
import torch

from ..modes import Mode


def tracing() -> bool:
    """Inside an exporter's or compiler's trace, where a Python check on a size would become a guard."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()


def size_tensor(v, device) -> torch.Tensor:
    """An int or a run-time size (SymInt) as a 0-d int64 tensor: exporters then see tensor arithmetic, not a
    symbolic scalar (which some of their op translations cannot take)."""
    return torch.scalar_tensor(v, dtype=torch.int64, device=device)


class TorchNS:
    """Array namespace that builds the kernels' formulas as torch ops at run time (``on_the_fly``).

    The integer phase index is reduced mod N in int64 before the float conversion, so the result is exact to
    float32 rounding of cos/sin. ``anchor`` is a tensor from the model's input: deriving the index ramp from it
    keeps exporters' constant folding from baking the (large) basis back into the file.
    """

    def __init__(self, dtype, device, anchor: torch.Tensor | None = None):
        self.dtype, self.device, self.anchor = dtype, device, anchor

    def arange(self, n):
        if n > 1024 and self.anchor is not None:
            # a long ramp from two short anchored ones, so exporters keep no n-long index constant
            a = math.isqrt(n - 1) + 1
            r = self.arange(a)
            return (r.reshape(-1, 1) * a + r.reshape(1, -1)).reshape(-1)[:n]
        r = torch.arange(n, dtype=torch.int64, device=self.device)
        if self.anchor is not None:
            # 0 for every finite or infinite input; keeps the ramp data-dependent for exporters.
            r = r + (self.anchor.reshape(-1)[:1] != self.anchor.reshape(-1)[:1]).to(torch.int64)
        return r

    def cos_sin(self, m, n):
        # the angle in float64 for float64 bases, else float32 (exact for indices below 2**24)
        ft = torch.float64 if self.dtype == torch.float64 else torch.float32
        m = torch.remainder(m, n)
        a = m.to(ft) * torch.tensor(2.0 * math.pi / n, dtype=ft)   # a tensor: exporters keep it in ft
        c, s = torch.cos(a), torch.sin(a)
        if n % 2 == 0:  # exact at the quarter / half turns (DC and Nyquist rows exactly real, as torch's FFT)
            q4 = 4 * m
            on = torch.remainder(q4, n) == 0
            q = torch.div(q4, n, rounding_mode="floor")
            c = torch.where(on, (q == 0).to(ft) - (q == 2).to(ft), c)
            s = torch.where(on, (q == 1).to(ft) - (q == 3).to(ft), s)
        return c.to(self.dtype), s.to(self.dtype)

    def const(self, arr):
        # contiguous: a numpy view's strides would become a lifted constant whose dim order ExecuTorch cannot map
        return torch.as_tensor(np.ascontiguousarray(arr), dtype=self.dtype, device=self.device)

    def cat(self, xs, axis):
        return torch.cat(xs, dim=axis)

    def stack(self, xs, axis):
        return torch.stack(xs, dim=axis)


class BasisHolder(torch.nn.Module):
    """Base class for modules whose weights are DFT bases described by builder functions.

    Subclasses call ``self._add_basis(name, builder, post)`` in __init__, where ``builder(ns)`` evaluates the
    formula in an array namespace and ``post(t)`` reshapes the result to the layout the op consumes. In
    ``store`` mode the bases are buffers; in ``input`` mode they are forward arguments (see ``basis_inputs``);
    in ``on_the_fly`` mode they are rebuilt inside forward.
    """

    def __init__(self, mode: Mode | str, dtype=torch.float32):
        super().__init__()
        self.mode = Mode.parse(mode)
        self._builders: Dict[str, tuple] = {}
        self._basis_dtype = dtype

    def _add_basis(self, name: str, builder: Callable, post: Callable = lambda t: t):
        from ..kernels import NP

        self._builders[name] = (builder, post)
        if self.mode is Mode.STORE:
            value = post(torch.as_tensor(np.asarray(builder(NP)), dtype=self._basis_dtype))
            self.register_buffer(name, value.contiguous())

    def _add_bases(self, names, builder: Callable):
        """Several bases that one builder call makes together (``builder(ns)`` returns one array per name, e.g.
        both stages of a plan): it runs once per evaluation, not once per basis."""
        last = len(names) - 1
        held: list = []   # (ns, results) of the evaluation in progress; the parts are read in order

        def part(i):
            def build(ns):
                if i == 0 or not held or held[0][0] is not ns:
                    held[:] = [(ns, builder(ns))]
                value = held[0][1][i]
                if i == last:
                    held.clear()   # (no traced tensor outlives its forward)
                return value
            return build

        for i, name in enumerate(names):
            self._add_basis(name, part(i))

    def basis_names(self) -> List[str]:
        return list(self._builders)

    def basis_inputs(self) -> Dict[str, torch.Tensor]:
        """The tensors to feed, by name, in ``input`` mode (same order as ``basis_names``)."""
        from ..kernels import NP

        return {name: post(torch.as_tensor(np.asarray(b(NP)), dtype=self._basis_dtype)).contiguous()
                for name, (b, post) in self._builders.items()}

    def _bases(self, provided, anchor: torch.Tensor) -> List[torch.Tensor]:
        if self.mode is Mode.STORE:
            return [getattr(self, n) for n in self._builders]
        if self.mode is Mode.INPUT:
            provided = [p for p in provided if p is not None]
            if len(provided) != len(self._builders):
                from ..errors import SpecRewriteError

                raise SpecRewriteError(
                    f"{type(self).__name__} in 'input' mode needs {len(self._builders)} basis tensors "
                    f"({', '.join(self._builders)}), got {len(provided)}",
                    fix="pass the tensors from module.basis_inputs() as basis0, basis1")
            return list(provided)
        ns = TorchNS(self._basis_dtype, anchor.device, anchor)
        return [post(b(ns)) for b, post in self._builders.values()]
