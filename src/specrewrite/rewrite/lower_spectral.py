"""The spectral nodes of the graph pass: stft / istft / ATen FFTs / torch.fft.* become RealSTFT / RealISTFT /
RealFFT submodules (a mixin of ``Lowering``)."""
from __future__ import annotations

import torch
import torch.fx as fx

from ..errors import SpecRewriteError
from ..modes import Mode
from ..specs import IstftSpec, StftSpec, fft_scale, fft_scale_power
from .._torch.fft import RealFFT
from .._torch.fft_dynamic import DynamicFFT, capacity, conv_length
from ..kernels import MAX_N
from .._torch.istft import RealISTFT
from .._torch.stft import RealSTFT
from . import _complex as C
from ._nodes import NeedsStaticShapes, bind as _bind, concrete, val as _val, where_of
from .rules import Cx, is_c

aten = torch.ops.aten


class SpectralLowering:
    def _call_spectral(self, name, args, kwargs=None):
        """call_module of a spectral submodule; in ``input`` mode its bases become new model inputs."""
        mod = self.modules[name]
        if self.mode is Mode.INPUT:
            feeds = mod.basis_inputs()
            extra = []
            for i, (bname, t) in enumerate(feeds.items()):
                ph_name = f"{name[4:]}_{bname}"
                with self.graph.inserting_after(self._last_placeholder):
                    ph = self.graph.placeholder(ph_name)
                self._last_placeholder = ph
                self.basis_feeds[ph.name] = t
                extra.append(ph)
            args = tuple(args) + tuple(extra) + (None,) * (2 - len(extra))
        return self.graph.call_module(name, tuple(args), dict(kwargs or {}))

    def _add_module(self, prefix: str, module: torch.nn.Module) -> str:
        name = f"_sr_{prefix}_{len(self.modules)}"
        self.modules[name] = module
        return name

    # ------------------------------------------------------------------ spectral ops
    def _stft(self, node, args, kwargs, op):
        b = _bind(node, args, kwargs) if op != "specrewrite::stft" else dict(zip(
            ["input", "n_fft", "hop_length", "win_length", "window", "center", "pad_mode", "normalized",
             "onesided"], args))
        where = self._where(node, "stft")
        x = b.get("input", b.get("self"))
        if is_c(x):
            raise SpecRewriteError("complex input to stft is not supported", op="torch.stft", where=where,
                                   fix="pass a real signal")
        window = self._window(node, node.args[4] if len(node.args) > 4 else node.kwargs.get("window"), "torch.stft")
        center = b.get("center", False) if op != "aten.stft.default" else False
        spec = StftSpec.make(b["n_fft"], b["hop_length"], b["win_length"], window, center,
                             b.get("pad_mode") or "reflect", b.get("normalized") or False, b.get("onesided"),
                             op="torch.stft", where=where)
        dtype = self._float_dtype(node)   # torch promotes: float32 audio with a float64 window gives complex128
        if dtype != self._float_dtype(node.args[0]):
            x = self.call(torch.Tensor.to, x, dtype)
        mod = RealSTFT(spec, self.mode, self.strategy, dtype=dtype)
        name = self._add_module("stft", mod)
        self.report.add("torch.stft", where, spec.describe(), replaced_by=f"{name}: RealSTFT({mod.extra_repr()})")
        out = self._call_spectral(name, (x,))
        if op != "specrewrite::stft" and b.get("return_complex") is False:
            return out
        return Cx(out, self.out_rank(node))

    def _istft(self, node, args, kwargs, op):
        if op == "specrewrite::istft":
            b = dict(zip(["self", "n_fft", "hop_length", "win_length", "window", "center", "normalized", "onesided",
                          "length"], args))
        else:
            b = _bind(node, args, kwargs)
        where = self._where(node, "istft")
        z = b["self"]
        if not is_c(z):
            raise SpecRewriteError("istft input is not complex", op="torch.istft", where=where)
        window = self._window(node, node.args[4] if len(node.args) > 4 else node.kwargs.get("window"),
                              "torch.istft")
        onesided = b.get("onesided")
        if onesided is None:   # torch's default: one-sided unless the input holds all n_fft bins
            onesided = _val(node.args[0]).shape[-2] != b["n_fft"]
        spec = IstftSpec.make(b["n_fft"], b["hop_length"], b["win_length"], window, b.get("center", True),
                              b.get("normalized") or False, onesided, op="torch.istft", where=where)
        dtype = self._float_dtype(node)   # promoted with the window's dtype, as torch does
        zn = z.node if dtype == self._float_dtype(node.args[0]) else self.call(torch.Tensor.to, z.node, dtype)
        mod = RealISTFT(spec, self.mode, self.strategy, dtype=dtype)
        name = self._add_module("istft", mod)
        d = spec.describe()
        d["length"] = b.get("length") if not isinstance(b.get("length"), fx.Node) else "dynamic"
        self.report.add("torch.istft", where, d, replaced_by=f"{name}: RealISTFT({mod.extra_repr()})")
        length = b.get("length")
        return self._call_spectral(name, (zn,), {"length": length} if length is not None else {})

    def _fft_module(self, node, kind, n, scale, inverse=False, onesided=True):
        n, scale = concrete(n), concrete(scale)
        if not isinstance(n, int):
            raise NeedsStaticShapes(f"{node.target} at {where_of(node)} transforms a dynamic axis", n)
        mod = RealFFT(kind, n, scale=scale, inverse=inverse, onesided=onesided, mode=self.mode,
                      dtype=self.real_dtype(self._float_dtype(node.args[0])))
        return self._add_module("fft", mod), mod

    @staticmethod
    def _bind_lengths(node, args, kwargs):
        """bind(), with the capture's value of each length argument (n=, s=, last_dim_size) kept on the graph
        node that now computes it, so a dynamic length's bound can be read from it."""
        b, orig = _bind(node, args, kwargs), _bind(node, node.args, node.kwargs)
        for key in ("n", "s", "last_dim_size"):
            new, old = b.get(key), orig.get(key)
            pairs = zip(new, old) if isinstance(new, (list, tuple)) and isinstance(old, (list, tuple)) else [(new, old)]
            for nv, ov in pairs:
                if isinstance(nv, fx.Node) and isinstance(ov, fx.Node) and "val" in ov.meta:
                    nv.meta.setdefault("val", ov.meta["val"])
        return b

    @staticmethod
    def _fft_len(n):
        """A transform length as an int where the capture made it one (a graph node of a constant size
        included), else as it is (a SymInt, or the graph node of a dynamic length)."""
        v = concrete(n.meta.get("val") if isinstance(n, fx.Node) else n)
        return v if isinstance(v, int) else concrete(n)

    def _dynamic_fft(self, node, kind, n, norm, forward, onesided=True, scale_forward=None):
        """(name, module) of a DynamicFFT for a length the capture kept symbolic, else None. ``scale_forward``:
        the direction whose normalisation applies, where it is not the transform's own (a real ifft is a
        conjugated forward r2c with the inverse's scale)."""
        sym = n.meta.get("val") if isinstance(n, fx.Node) else n
        sym = concrete(sym)
        if not isinstance(sym, torch.SymInt):
            return None
        n_max = dynamic_fft_cap(sym)
        if n_max is None:
            raise NeedsStaticShapes(f"{node.target} at {where_of(node)} transforms a dynamic axis longer than a "
                                    f"dynamic-length plan holds ({MAX_N // 2} points)", sym)
        power = fft_scale_power(norm, forward if scale_forward is None else scale_forward)
        mod = DynamicFFT(kind, n_max, power=power, inverse=not forward,
                         onesided=onesided, mode=self.mode, dtype=self.real_dtype(self._float_dtype(node.args[0])))
        name = self._add_module("fft", mod)
        self.report.notes.append(
            f"{node.target} at {where_of(node)} runs along a dynamic axis: one graph for every length up to "
            f"{mod.n_max} points (Bluestein's algorithm through a {mod.m}-point FFT); a longer input raises in "
            "eager and gives inf / nan in an exported file (give the axis a Dim(max=...) to choose the limit, or "
            "dynamic_shapes=False for a fixed-length plan)")
        return name, mod

    def _log_fft(self, node, what, n, d, norm, name, mod):
        n = f"dynamic <= {mod.n_max}" if isinstance(mod, DynamicFFT) else n
        self.report.add(what, where_of(node), {"n": n, "dim": d, "norm": norm},
                        replaced_by=f"{name}: {type(mod).__name__}({mod.extra_repr()})")

    def _r2c(self, node, x, d, n, norm, onesided=True, what="torch.fft.rfft", forward=True):
        """A real input's spectrum along d; ``forward=False``: its inverse transform (torch.fft.ifft of a real
        tensor), the conjugate of the forward one with the inverse's scale, as torch computes it: the imaginary
        parts of DC and Nyquist are then an exact -0, as eager gives them."""
        n = self._fft_len(n)
        dyn = self._dynamic_fft(node, "r2c", n, norm, True, onesided, scale_forward=forward)
        name, mod = dyn or self._fft_module(node, "r2c", n, fft_scale(norm, n, forward), onesided=onesided)
        self._log_fft(node, what, n, d, norm, name, mod)
        y = self._call_spectral(name, (self.call(C.movedim, x, d, -1),))
        y = y if forward else self.call(C.cconj, y)
        return self.call(C.unmove_fft_dim, y, d)

    def _c2c(self, node, z, d, n, norm, forward, what=None):
        n = self._fft_len(n)
        dyn = self._dynamic_fft(node, "c2c", n, norm, forward)
        name, mod = dyn or self._fft_module(node, "c2c", n, fft_scale(norm, n, forward), inverse=not forward)
        self._log_fft(node, what or ("torch.fft.fft" if forward else "torch.fft.ifft"), n, d, norm, name, mod)
        y = self._call_spectral(name, (self.call(C.move_fft_dim, z.node, d),))
        return Cx(self.call(C.unmove_fft_dim, y, d), z.rank)

    def _c2r(self, node, z, d, n, norm, what="torch.fft.irfft"):
        """``n`` the output length: an int, or a graph node or SymInt of a dynamic one (a SymInt is 2 (F - 1) of
        the input's F bins, which the module reads at run time)."""
        n = self._fft_len(n)
        dyn = self._dynamic_fft(node, "c2r", n, norm, False)
        name, mod = dyn or self._fft_module(node, "c2r", n, fft_scale(norm, n, False))
        self._log_fft(node, what, n, d, norm, name, mod)
        kw = {"n": n} if dyn and isinstance(n, fx.Node) else {}
        y = self._call_spectral(name, (self.call(C.move_fft_dim, z.node, d),), kw)
        return self.call(C.movedim, y, -1, d)

    def _resize(self, x, d, have, want):
        """torch.fft's n= semantics: zero-pad or trim dim d (of a real tensor or a complex Cx) to ``want``."""
        if want is None or want == have:
            return x
        node, c = (x.node, True) if is_c(x) else (x, False)
        y = self.call(C.resize_dim, node, d, want, c)
        return Cx(y, x.rank) if c else y

    def _fft(self, node, args, kwargs):
        """ATen's _fft_r2c / _fft_c2c / _fft_c2r (normalisation given as an int per ATen)."""
        op = node.target.overloadpacket
        b = self._bind_lengths(node, args, kwargs)
        x = b["self"]
        in_val = _val(node.args[0])
        dims = [d % in_val.dim() for d in b["dim"]]
        norm = b["normalization"]
        size = [concrete(v) for v in in_val.shape]
        if op is aten._fft_r2c:
            z = Cx(self._r2c(node, x, dims[-1], size[dims[-1]], norm, b["onesided"]), in_val.dim())
            for d in dims[:-1]:
                z = self._c2c(node, z, d, size[d], norm, True)
            return z
        if op is aten._fft_c2c:
            z = x if is_c(x) else Cx(self.call(C.from_real, x), in_val.dim())
            for d in dims:
                z = self._c2c(node, z, d, size[d], norm, b["forward"])
            return z
        z = x
        for d in dims[:-1]:
            z = self._c2c(node, z, d, size[d], norm, False)
        return self._c2r(node, z, dims[-1], concrete(b["last_dim_size"]), norm)

    def _fft_cia(self, node, args, kwargs):
        """torch.fft.* as they appear before decomposition (aten.fft_rfft, fft_irfftn, ...)."""
        name = node.target._opname            # fft_rfft, fft_irfft2, ...
        b = self._bind_lengths(node, args, kwargs)
        x = b["self"]
        in_val = _val(node.args[0])
        r = in_val.dim()
        size = [concrete(v) for v in in_val.shape]
        norm = b.get("norm")
        base = name[4:]
        multi = base.endswith("2") or base.endswith("n")
        if multi:
            dims = b.get("dim")
            s_ = b.get("s")
            if dims is None:
                dims = [-2, -1] if base.endswith("2") else (list(range(-len(s_), 0)) if s_ else list(range(r)))
            dims = [d % r for d in dims]
            ns = list(s_) if s_ else [None] * len(dims)
            base = base[:-1]
        else:
            dims, ns = [b.get("dim", -1) % r], [b.get("n")]
        if base in ("hfft", "ihfft"):
            # torch's definitions: hfft(x) = irfft(conj(x)), ihfft(x) = conj(rfft(x)), each with the dual norm.
            # (Not through the decomposition: torch's meta of its _fft_c2r resizes a fake tensor, which fails under
            # a symbolic length with the batch fixed.)
            norm = {None: "forward", "backward": "forward", "forward": "backward"}.get(norm, norm)
            if base == "hfft":
                x = Cx(self.call(C.cconj, x.node), r) if is_c(x) else x
                base = "irfft"
            else:
                return Cx(self.call(C.cconj, self._fft_cia_as(node, "rfft", x, dims, ns, size, norm, r).node), r)
        return self._fft_cia_as(node, base, x, dims, ns, size, norm, r)

    def _fft_cia_as(self, node, base, x, dims, ns, size, norm, r):
        """``_fft_cia`` once the op is read: ``base`` (fft, ifft, rfft, irfft) over ``dims`` with lengths ``ns``."""
        name = node.target._opname
        if base in ("fft", "ifft"):
            fwd = base == "fft"
            z = x
            if not is_c(x):
                # a real input: a two-sided r2c along the last axis first (torch's own route), so the DC and
                # Nyquist bins come out exactly real with eager's signed zero (a c2c left rounding residue there,
                # which angle() turns into 2 pi)
                d, n = dims[-1], ns[-1]
                x = self._resize(x, d, size[d], n)
                z = Cx(self._r2c(node, x, d, n or size[d], norm, onesided=False, what=f"torch.fft.{base}",
                                 forward=fwd), r)
                dims, ns = dims[:-1], ns[:-1]
            for d, n in zip(dims, ns):
                z = self._resize(z, d, size[d], n)
                z = self._c2c(node, z, d, n or size[d], norm, fwd)
            return z
        if base == "rfft":
            d, n = dims[-1], ns[-1]
            x = self._resize(x, d, size[d], n)
            z = Cx(self._r2c(node, x, d, n or size[d], norm), r)
            for d, n in zip(dims[:-1], ns[:-1]):
                z = self._resize(z, d, size[d], n)
                z = self._c2c(node, z, d, n or size[d], norm, True)
            return z
        if base == "irfft":
            z = x if is_c(x) else Cx(self.call(C.from_real, x), r)
            for d, n in zip(dims[:-1], ns[:-1]):
                z = self._resize(z, d, size[d], n)
                z = self._c2c(node, z, d, n or size[d], norm, False)
            d, n = dims[-1], concrete(ns[-1])
            if n is None:
                n = concrete(2 * (size[d] - 1))
            if isinstance(n, int):   # a fixed length: the input trimmed / zero-padded to its bins
                z = self._resize(z, d, size[d], n // 2 + 1)
            return self._c2r(node, z, d, n, norm)   # a dynamic one: the bins are matched at run time
        raise SpecRewriteError(f"torch.fft.{name[4:]} is not supported", op=str(node.target), where=where_of(node),
                               fix="use rfft/irfft/fft/ifft (and their 2-D / n-D forms)")


def dynamic_fft_cap(sym) -> int | None:
    """The longest length a DynamicFFT for the symbolic length ``sym`` holds: the bound the capture proved for it
    (from the axis's Dim(max=...)) where there is one, else the capacity of the power-of-two plan for 4x the
    example's length; None past the longest plan (MAX_N points of convolution)."""
    env, expr = sym.node.shape_env, sym.node.expr
    hint = int(env.optimization_hint(expr) if hasattr(env, "optimization_hint") else env.size_hint(expr))
    upper = env.bound_sympy(expr).upper
    limit = capacity(MAX_N)
    if str(upper) not in ("oo", "int_oo") and hint <= int(upper) <= limit:
        return int(upper)
    cap = capacity(conv_length(4 * max(hint, 1)))
    if cap <= limit:
        return cap
    return limit if hint <= limit else None
