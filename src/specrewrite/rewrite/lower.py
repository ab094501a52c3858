"""The graph pass: an ATen-level FX graph in, a real-valued GraphModule out.

Spectral nodes become calls to RealSTFT / RealISTFT / RealFFT submodules; complex values are carried as real
tensors with a trailing dim of 2 and every op touching one goes through its rule in ``rules.RULES``.
"""
from __future__ import annotations

import math
import operator
from typing import Any, Dict, List, Optional

import torch
import torch.fx as fx

from ..errors import SpecRewriteError
from ..modes import Mode, Strategy
from . import _complex as C, _complex_math as M, _real_ops as R, _solve as S
from ._fold import FOLD_MAX_NUMEL, FOLD_OPS, ancestors, foldable_roots
from ._nodes import NeedsStaticShapes, NotConstant, attr_of as _attr_of, is_complex_node as _is_complex_node
from ._nodes import drop_aliases, forward_names, real_dtype as _real_dtype, uncopy as _uncopy, val as _val, where_of
from .lower_spectral import SpectralLowering
from .report import Report
from ._rank import fold_wide
from ._scatters import scatters_as_cats
from ._writes import functional_writes
from .rules import RULES, Cx, is_c
from .rules_core import has_cx, strip_cx

__all__ = ["Lowering", "NeedsStaticShapes", "NotConstant", "where_of"]

aten = torch.ops.aten


class Lowering(SpectralLowering):
    def __init__(self, gm: fx.GraphModule, *, mode: Mode, strategy: Strategy, report: Report,
                 sites: Optional[dict] = None, attr_placeholders: Optional[Dict[str, str]] = None,
                 input_names: Optional[List[str]] = None):
        self.gm, self.mode, self.strategy, self.report = gm, mode, strategy, report
        self.input_names = list(input_names or [])
        folded, why = fold_wide(gm)   # Core ML holds rank 5 at most: wider tensors become reshapes of rank 5
        if folded:
            report.notes.append(f"{folded} tensors of rank over 5 (a complex one counted with its (re, im) axis) "
                                "are held as reshapes of rank 5 or less, which Core ML converts")
        elif why:
            report.notes.append(f"tensors of rank over 5 are left as they are ({why}): Core ML cannot convert them")
        # the patched torch.stft/istft recorded the innermost non-torch frame of each call; use them when they
        # pair up one-to-one with the graph's nodes (export may drop library frames from node stack traces)
        counts = {"stft": 0, "istft": 0}
        for n in gm.graph.nodes:
            if n.op == "call_function" and str(n.target).startswith("specrewrite."):
                counts[str(n.target).split(".")[1]] += 1
        self.sites = {k: list(v) for k, v in (sites or {}).items() if len(v) == counts.get(k)}
        self.attr_placeholders = attr_placeholders or {}
        self.traced = attr_placeholders is not None
        self.graph = fx.Graph()
        self.env: Dict[fx.Node, Any] = {}
        self.modules: Dict[str, torch.nn.Module] = {}
        self._const: Dict[fx.Node, Any] = {}
        self._cur: Optional[fx.Node] = None
        self._last_placeholder: Optional[fx.Node] = None
        self.basis_feeds: Dict[str, torch.Tensor] = {}
        self._depth = 0
        self._fold, self._const_nodes = set(), set()
        self._corder = list(gm.graph.nodes)   # graph order, for evaluating constants as eager would
        self._cidx = {n: i for i, n in enumerate(self._corder)}
        self._cpos = 0
        self._raw_inputs: Dict[fx.Node, fx.Node] = {}

    # ------------------------------------------------------------------ helpers used by the rules
    def call(self, fn, *args, **kwargs) -> fx.Node:
        args, kwargs = fx.node.map_aggregate((args, kwargs), self._literal)
        n = self.graph.call_function(fn, tuple(args), dict(kwargs))
        if self._cur is not None and "stack_trace" in self._cur.meta:
            n.meta["stack_trace"] = self._cur.meta["stack_trace"]
        return n

    def _literal(self, v):
        """A Python complex with a non-finite part has no literal in generated code ((nan+nanj)): build it."""
        if isinstance(v, complex) and not (math.isfinite(v.real) and math.isfinite(v.imag)):
            return self.graph.call_function(complex, (v.real, v.imag))
        if isinstance(v, float) and not math.isfinite(v):
            return self.graph.call_function(float, (str(v),))
        return v

    def copy(self, node, args, kwargs) -> fx.Node:
        n = self.graph.create_node(node.op, node.target, tuple(args), dict(kwargs), name=node.name)
        n.meta = dict(node.meta)
        return n

    def out_rank(self, node) -> int:
        v = _val(node)
        return v.dim()

    def out_dtype(self, node):
        return _val(node).dtype

    def in_shape(self, node):
        return tuple(_val(node.args[0]).shape)

    @staticmethod
    def real_dtype(dtype):
        return {torch.complex64: torch.float32, torch.complex128: torch.float64,
                torch.complex32: torch.float16}.get(dtype, dtype)

    def as_pair_like(self, x, ref):
        """``x`` (a real node or a Python number, complex included) as a real pair shaped like complex ``ref``."""
        if isinstance(x, fx.Node):
            return self.call(C.from_real, x)
        return self.call(C.from_scalar_like, ref.node, complex(x))

    def _float_dtype(self, node):
        v = _val(node)
        dt = v.dtype if isinstance(v, torch.Tensor) else torch.float32
        dt = self.real_dtype(dt)
        return torch.float64 if dt == torch.float64 else torch.float32

    def unsupported(self, node, why: str = "") -> SpecRewriteError:
        name = getattr(node.target, "__name__", str(node.target))
        return SpecRewriteError(
            f"no rule to lower {name} on a complex value" + (f" ({why})" if why else ""),
            op=str(node.target), where=where_of(node),
            fix="rewrite that expression on real and imaginary parts (torch.view_as_real), or report it")

    # ------------------------------------------------------------------ constant evaluation
    def const_value(self, node, upto: Optional[fx.Node] = None):
        """The value of an input-independent node as the graph has it just before ``upto`` (default: right after
        the node): constant nodes run in graph order, so in-place ops on views (a DCT matrix built with
        ``mul_`` / ``fill_``) are seen exactly as in eager."""
        if not isinstance(node, fx.Node):
            return node
        if node in self._const_nodes and node not in self._const:
            self._run_consts(upto if upto is not None else node.next)
        if node in self._const:
            return self._const[node]
        if node.op == "get_attr":
            v = _attr_of(self.gm, node.target)
        elif node.op == "placeholder":
            if node.name in self.attr_placeholders:
                return _attr_of(self.gm, self.attr_placeholders[node.name])
            raise NotConstant(node.name)
        elif node.op == "call_function":
            args = fx.node.map_arg(node.args, self.const_value)
            kwargs = fx.node.map_arg(node.kwargs, self.const_value)
            with torch.no_grad():
                v = node.target(*args, **kwargs)
        else:
            raise NotConstant(node.name)
        self._const[node] = v
        return v

    def _run_consts(self, stop: fx.Node):
        end = self._cidx.get(stop, len(self._corder))
        while self._cpos < end:
            n = self._corder[self._cpos]
            self._cpos += 1
            if n in self._const_nodes and n not in self._const:
                try:
                    self.const_value(n)
                except Exception:  # noqa: BLE001 - not evaluable: such a node is lowered like any other
                    self._const_nodes.discard(n)

    def _window(self, node, win_node, op):
        if win_node is None:
            return None
        try:
            return self.const_value(win_node, upto=node)
        except NotConstant:
            raise SpecRewriteError("the window is computed from the model input, so its values are not known "
                                   "when the model is rewritten", op=op, where=self._where(node, op),
                                   fix="build the window from constants (a buffer, a parameter or "
                                   "torch.hann_window(n))") from None

    def _where(self, node, kind):
        lst = self.sites.get(kind)
        if lst:
            return lst.pop(0)
        return where_of(node)

    def run(self) -> fx.GraphModule:
        # writes into fresh tensors as scatters, here where every node still has its fake value and its op's
        # alias information (the lowered complex pairs have neither), so a complex write leaves no copy_ behind
        functional_writes(self.gm)
        self._fold, self._const_nodes, self._skip = foldable_roots(self.gm, self.attr_placeholders)
        for node in self.gm.graph.nodes:
            self._cur = node
            if node.op == "placeholder":
                self._placeholder(node)
            elif node.op == "output":
                out = fx.node.map_arg(node.args, lambda n: self.env[n])
                out = strip_cx(out)
                self.graph.output(out[0], type_expr=node.type)
            else:
                self.env[node] = self.lower_node(node)
        return self._finish()

    def _placeholder(self, node):
        if node.name in self.attr_placeholders:   # a parameter or buffer (a complex one as pairs, like get_attr's)
            self.env[node] = self._attr_value(self.attr_placeholders[node.name])
            return
        self.env[node] = self._last_placeholder = self.copy(node, (), {})
        v = _val(node)
        cx = _is_complex_node(node)
        if cx:   # a complex model input: taken as it is or as torch.view_as_real of it (what exporters get)
            self._raw_inputs[node] = self.env[node]
            self.env[node] = self.call(C.as_pairs, self.env[node])
            self.report.notes.append(f"model input '{node.target}' is complex: the rewritten model also takes "
                                     "torch.view_as_real of it, which is what to give an exporter")
        if self.traced and isinstance(v, torch.Tensor):
            self._n_inputs = getattr(self, "_n_inputs", 0) + 1
            self.env[node] = self.call(C.check_shape, self.env[node], tuple(int(d) for d in v.shape)
                                       + ((2,) if cx else ()), self._n_inputs - 1)
        if cx:
            self.env[node] = Cx(self.env[node], v.dim())

    def lower_node(self, node):
        """The new graph's value (a node, a ``Cx``, a list of them or a Python value) for one original node."""
        if node.op == "get_attr":
            return self._get_attr(node)
        if node in self._fold:
            folded = self._folded(node)
            if folded is not None:
                return folded
        if node in self._skip:
            return None   # an in-place op whose effect is already in the folded constants
        if node.target is aten._assert_tensor_metadata.default and node.args[0] in self._const_nodes:
            return None   # a dtype check of a folded constant (it would keep the window op alive)
        if node.target in (aten.item.default, aten._local_scalar_dense.default) and node in self._const_nodes:
            # a Python number read from a constant (a cutoff from a tensor attribute: torch-audiomentations'
            # ``lowpass_filter(x, cutoffs[i].item())``) is that number: no symbolic float left for an exporter
            try:
                v = self.const_value(node, upto=node.next)
                return v.item() if isinstance(v, torch.Tensor) else v
            except Exception:  # noqa: BLE001 - not evaluable here: lowered like any other node
                pass
        if node.op == "call_module" and str(node.target).startswith("_guards"):
            # torch.export's input-guard check sees a complex input as the caller passed it
            args = fx.node.map_arg(node.args, lambda a: self._raw_inputs.get(a, self.env[a]))
            return self.copy(node, strip_cx(args), {})
        args = fx.node.map_aggregate(node.args, lambda a: self.env[a] if isinstance(a, fx.Node) else a)
        kwargs = fx.node.map_aggregate(node.kwargs, lambda a: self.env[a] if isinstance(a, fx.Node) else a)
        target = node.target
        if target is aten.einsum.default and "..." in args[0] and all(
                isinstance(_val(a), torch.Tensor) for a in node.args[1]):   # (coremltools: no ellipsis)
            args = (R.explicit_einsum(args[0], [_val(a).dim() for a in node.args[1]]), *args[1:])
        if target in _INDEXING and len(node.args) > 1 and isinstance(node.args[1], (list, tuple)):
            args = (args[0], self._int_indices(node, list(args[1])), *args[2:])
        key = str(target)
        is_op = node.op == "call_function" and isinstance(target, torch._ops.OpOverload)
        if is_op:
            key = f"{target.namespace}::{target._opname}" if target.namespace == "specrewrite" else \
                f"aten.{target._opname}.{target._overloadname}"
        if key in ("specrewrite::stft", "aten.stft.default", "aten.stft.center"):
            return self._stft(node, args, kwargs, key)
        if key in ("specrewrite::istft", "aten.istft.default"):
            return self._istft(node, args, kwargs, key)
        if is_op and target.overloadpacket in (aten._fft_r2c, aten._fft_c2c, aten._fft_c2r):
            return self._fft(node, args, kwargs)
        if is_op and target.namespace == "aten" and target._opname in _FFT_CIA:
            return self._fft_cia(node, args, kwargs)
        if is_op and target.namespace == "aten" and target._opname.startswith("fft_") and target not in _SPELL_OUT:
            # hfft / ihfft / fftshift / fftfreq / any other torch.fft function: lowered through its decomposition
            return self._lower_decomposed(node, args, kwargs)
        if target is operator.getitem and isinstance(args[0], (list, tuple)):
            return args[0][args[1]]
        touches = has_cx(args) or has_cx(kwargs) or _is_complex_node(node)
        if not touches and target is aten.sym_size.int:
            return self.call(C.sym_size, *args)
        if not touches and target in (aten.squeeze.dim, aten.squeeze.dims) and isinstance(args[0], fx.Node):
            squeezed = self._squeeze(node, args)
            if squeezed is not None:
                return squeezed
        if target is aten._linalg_check_errors.default and isinstance(args[0], fx.Node) and _solved_info(args[0]):
            return None   # the check of a solve's info, zeros by construction (ONNX has no op; the solve checks)
        if not touches and target is aten._linalg_solve_ex.default and not any(
                u.op == "call_function" and u.target is operator.getitem and u.args[1] in (1, 2) and u.users
                for u in node.users):   # a real solve: unrolled inside an exporter (no ONNX op, no converter)
            S.require_static(node)
            S.report_too_large(self.report, node)
            return self.call(S.solve_ex, *args, **kwargs)
        if not touches and target is aten.linalg_inv_ex.default:   # a real inverse: unrolled like a solve
            S.require_static(node)
            S.report_too_large(self.report, node)
            return self.call(S.inv_ex, *args, **kwargs)
        if not touches and target in _SPELL_OUT:   # deployment blockers outside the spectral path
            if target in (aten.linalg_solve.default, aten.inverse.default, aten.linalg_inv.default):
                S.require_static(node)
            if target is aten.linalg_solve.default:
                S.report_too_large(self.report, node)
            if target._opname.startswith("fft_"):
                self.report.add(f"torch.fft.{target._opname[4:]}", where_of(node), {},
                                replaced_by="arange arithmetic")
            new = self.call(_SPELL_OUT[target], *args, **kwargs)
            if "val" in node.meta:   # the same value, spelt with other ops: later passes (writes) read it
                new.meta["val"] = node.meta["val"]
            return new
        if not touches and target is aten.split_with_sizes.default and R.many_sections(args):
            return self.call(R.split_sections, *args, **kwargs)
        if not touches and target in _STRIDED:
            return self._real_strided(node, args, kwargs)
        if not touches and target in _PADS and R.negative_pad(args, kwargs):
            return self.call(R.crop_pad, *args, **kwargs)
        if not touches and target in _ARANGE and R.fractional_arange(args, kwargs):
            return self.call(R.arange_f64, *args, **kwargs)
        if not touches and target in _ARANGE and R.integral_float_arange(args, kwargs):
            return self.call(R.arange_cast, *args, **kwargs)
        if not touches and R.decompose_for_core_ml(target):
            from ._decompose import decompose

            sub = decompose(node)
            if sub is not None:   # (else the op is kept as it is)
                return self._lower_decomposed(node, args, kwargs, sub)
        if not touches:
            new = self.copy(node, strip_cx(args), strip_cx(kwargs))
            new.target = _uncopy(target)
            return new
        fn = RULES.get(target)
        if fn is None and isinstance(target, torch._ops.OpOverload):
            fn = RULES.get(target.overloadpacket)
            if fn is None and target._opname.endswith("_") and is_c(args[0] if args else None):
                fn = _inplace(RULES.get(getattr(aten, target._opname[:-1], None)))
        if fn is None:
            return self._lower_decomposed(node, args, kwargs)
        self.report.count_complex(getattr(target, "__name__", str(target)))
        return fn(self, node, list(args), dict(kwargs))

    def _real_strided(self, node, args, kwargs):
        """A real ``sym_stride`` / ``as_strided`` (see ``_real_ops``) from the sizes and one gather, where the
        tensor's memory is dense from offset 0; otherwise kept as it is."""
        from .rules_shapes import memory_order

        try:
            order = memory_order(self, node, node.args[0])
        except SpecRewriteError:
            return self.copy(node, args, kwargs)
        if node.target is aten.sym_stride.int:
            return self.call(C.dense_stride, args[0], order, args[1] % len(order))
        b = dict(zip(["self", "size", "stride", "storage_offset"], args), **kwargs)
        return self.call(R.strided_gather, b["self"], order, b["size"], b["stride"], b.get("storage_offset") or 0)

    def _lower_decomposed(self, node, args, kwargs, sub=None):
        """An op with no rule of its own: trace torch's decomposition of it (its CompositeImplicit kernel or its
        entry in the decomposition table) on the node's metadata and lower the pieces one by one."""
        from ._decompose import decompose

        if self._depth > 8:
            raise self.unsupported(node, "its decomposition does not terminate")
        sub = sub if sub is not None else decompose(node)
        if sub is None:
            raise self.unsupported(node)
        sub_gm, leaves = sub
        env = {}
        phs = [n for n in sub_gm.graph.nodes if n.op == "placeholder"]
        self._depth += 1
        saved = self._cur
        try:
            for ph, leaf in zip(phs, leaves):
                env[ph] = self.env[leaf] if isinstance(leaf, fx.Node) else leaf
            outer_env, self.env = self.env, env
            try:
                for n in sub_gm.graph.nodes:
                    if n.op == "placeholder":
                        continue
                    if "stack_trace" in node.meta:
                        n.meta["stack_trace"] = node.meta["stack_trace"]
                    if n.op == "output":
                        result = fx.node.map_aggregate(n.args[0], lambda a: env[a] if isinstance(a, fx.Node) else a)
                        continue
                    if n.op == "get_attr":
                        env[n] = self._const_node(_attr_of(sub_gm, n.target))
                        continue
                    self._cur = n
                    env[n] = self.lower_node(n)
            finally:
                self.env = outer_env
        except SpecRewriteError as e:
            name = getattr(node.target, "__name__", str(node.target))
            raise SpecRewriteError(f"{name} (lowered through its decomposition): {e.reason}", op=str(node.target),
                                   where=where_of(node), fix=e.fix) from None
        finally:
            self._depth -= 1
            self._cur = saved
        self.report.count_complex(getattr(node.target, "__name__", str(node.target)))
        if isinstance(result, (list, tuple)) and len(result) == 1 and not isinstance(_val(node), (list, tuple)):
            result = result[0]
        return result

    def _folded(self, node):
        """An input-independent value computed in forward (a window, a grid, a filterbank): evaluated once and
        stored as a constant, so no window / linspace op reaches an exporter."""
        use = min((u for u in node.users if u not in self._const_nodes), key=self._position, default=None)
        try:
            value = self.const_value(node, upto=use)
        except Exception:  # noqa: BLE001 - not evaluable here: lower it like any other node
            return None
        if not isinstance(value, torch.Tensor) or value.numel() > FOLD_MAX_NUMEL:
            return None
        for n in ancestors(node):
            if n.op == "call_function" and n.target._opname in FOLD_OPS:
                self.report.folded[n.target._opname] = self.report.folded.get(n.target._opname, 0) + 1
        return self._const_node(value)

    def _int_indices(self, node, new):
        """A constant boolean mask among the indices (speechbrain's ``x[..., ids_diag] += ...`` with ids_diag from
        ``torch.eq`` of ``triu_indices``) as the integer positions it selects: torch.onnx cannot write a boolean
        index_put with other (None) indices."""
        for i, orig in enumerate(node.args[1]):
            v = _val(orig)
            if not (isinstance(orig, fx.Node) and orig in self._const_nodes and isinstance(v, torch.Tensor)
                    and v.dtype == torch.bool and v.dim() == 1):
                continue
            try:
                mask = self.const_value(orig, upto=node)
            except Exception:  # noqa: BLE001 - not evaluable here: left as it is
                continue
            new[i] = self._const_node(mask.nonzero().reshape(-1))
        return new

    def _squeeze(self, node, args):
        """``squeeze(d)`` of an axis that is not 1 is a no-op in torch, but ONNX's Squeeze refuses it (speechbrain's
        ``Conv2d`` wrapper: ``wx.squeeze(1)`` on 8 channels; ONNX Runtime then fails to load the file): only the
        axes of size 1 are squeezed. None: leave the node as it is."""
        v = _val(node.args[0])
        if not isinstance(v, torch.Tensor):
            return None
        dims = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
        dims = [d % v.dim() if v.dim() else 0 for d in dims]
        keep = [d for d in dims if v.dim() and isinstance(v.shape[d], int) and v.shape[d] == 1]
        if len(keep) == len(dims):
            return None
        return self.call(torch.squeeze, args[0], tuple(keep)) if keep else args[0]

    def _position(self, node):
        return self._cidx.get(node, len(self._corder))

    def _const_node(self, value, name: Optional[str] = None):
        """A constant of the new graph: a buffer of the result (a complex one as real pairs, returned as a Cx)."""
        consts = self.modules.setdefault("__complex_consts__", {})
        name = name or f"_sr_const_{len(consts)}"
        if isinstance(value, torch.Tensor) and value.is_complex():
            consts[name] = torch.view_as_real(value.detach().resolve_conj().resolve_neg()).clone()
            return Cx(self.graph.get_attr(name), value.dim())
        consts[name] = value.detach().clone() if isinstance(value, torch.Tensor) else value
        return self.graph.get_attr(name)

    def _get_attr(self, node):
        new = self._attr_value(node.target)
        if isinstance(new, fx.Node):
            new.meta = dict(node.meta)
        return new

    def _attr_value(self, qual: str):
        """A parameter or buffer of the model in the new graph (a complex one as a constant of real pairs)."""
        v = _attr_of(self.gm, qual)
        if isinstance(v, torch.Tensor) and v.is_complex():
            return self._const_node(v, qual.replace(".", "_") + "_as_real")
        return self.graph.get_attr(qual)

    def _finish(self) -> fx.GraphModule:
        root = self.gm
        consts = self.modules.pop("__complex_consts__", {})
        for name, t in consts.items():
            root.register_buffer(name, t)
        for name, m in self.modules.items():
            root.add_module(name, m)
        self.graph._codegen = self.gm.graph._codegen
        if self.traced or self.basis_feeds:
            # traced route: parameters left the signature; input mode: the bases joined it (after the inputs)
            from .._torch_private import positional_signature

            positional_signature(self.graph, forward_names(self.graph, self.input_names, self.basis_feeds),
                                 self.gm.graph)
        gm = fx.GraphModule(root, self.graph, class_name="SpecRewritten")
        functional_writes(gm)
        scatters_as_cats(gm.graph)   # ONNX writes them as ScatterElements with run-time index tensors: slow
        drop_aliases(gm.graph)
        R.sized_rolls(gm.graph)
        gm.graph.eliminate_dead_code()
        gm.recompile()
        _check_nothing_spectral_left(gm)
        for attr in (("meta",) if self.traced or self.basis_feeds else ("_in_spec", "_out_spec", "meta")):
            if hasattr(self.gm, attr):
                try:
                    setattr(gm, attr, getattr(self.gm, attr))
                except Exception:  # noqa: BLE001 - cosmetic attributes only
                    pass
        if self.basis_feeds:
            feeds = dict(self.basis_feeds)
            object.__setattr__(gm, "basis_inputs", lambda: dict(feeds))
        return gm


_STRIDED = {aten.sym_stride.int, aten.as_strided.default, aten.as_strided_copy.default}
_ARANGE = {aten.arange.default, aten.arange.start, aten.arange.start_step}


def _solved_info(n: fx.Node) -> bool:
    """The info output of a solve the pass wrote (zeros; the solve itself raises on a singular matrix)."""
    name = getattr(n.target, "__name__", "")
    if name == "info_zeros":
        return True
    return n.target is operator.getitem and isinstance(n.args[0], fx.Node) and \
        (n.args[1], getattr(n.args[0].target, "__name__", "")) in ((3, "solve_ex"), (1, "inv_ex"))


_SPELL_OUT = {aten.linalg_solve.default: S.linalg_solve,   # real: no ONNX op, no converter (rewrite/_solve)
              aten.inverse.default: S.inv, aten.linalg_inv.default: S.inv,   # real inverses: likewise
              aten.col2im.default: R.col2im,   # F.fold overlap-add: ONNX Col2Im is CPU-only, Core ML refuses it
              aten.diagonal.default: R.diagonal,   # a gather: coremltools converts only diagonal(0, 0, 1)
              aten.l1_loss.default: C.l1_loss, aten.fft_fftfreq.default: C.fftfreq,
              aten.fft_rfftfreq.default: C.rfftfreq, aten.mean.default: R.mean_all, aten.sum.default: R.sum_all,
              aten.var_mean.correction: R.var_mean, aten.std_mean.correction: R.std_mean,
              aten.var_mean.dim: R.var_mean_dim, aten.std_mean.dim: R.std_mean_dim,
              aten.var_mean.default: R.var_mean_all, aten.std_mean.default: R.std_mean_all,
              # coremltools has no converter, torch's decomposition is in prims: spelt out (rewrite/_real_ops)
              aten.hypot.default: M.hypot, aten.trunc.default: R.trunc, aten.fmod.Tensor: R.fmod,
              aten.fmod.Scalar: R.fmod, aten.log_sigmoid.default: R.log_sigmoid, aten.asinh.default: R.asinh,
              aten.acosh.default: R.acosh, aten.clamp.Tensor: R.clamp_tensor, aten.lerp.Scalar: R.lerp,
              aten.lerp.Tensor: R.lerp,
              aten.reciprocal.default: R.reciprocal,   # coremltools: 1 / (x + 1e-4)
              # uninitialised allocations: zeros (litert-torch cannot lower empty_permuted)
              aten.empty_like.default: R.empty_like, aten.new_empty.default: R.new_empty,
              aten.empty.memory_format: R.empty, aten.empty_strided.default: R.empty_strided,
              aten.empty_permuted.default: R.empty_permuted}
_PADS = {aten.pad.default, aten.constant_pad_nd.default}
_INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default}
_FFT_CIA = {"fft_fft", "fft_ifft", "fft_rfft", "fft_irfft", "fft_fft2", "fft_ifft2", "fft_rfft2", "fft_irfft2",
            "fft_fftn", "fft_ifftn", "fft_rfftn", "fft_irfftn", "fft_hfft", "fft_ihfft"}


_LEFT = ("_fft_r2c", "_fft_c2r", "_fft_c2c", "stft", "istft")


def _check_nothing_spectral_left(gm: fx.GraphModule) -> None:
    """The pass's own guarantee: no FFT op and no complex value anywhere in the result (nested graphs of
    higher-order ops such as torch.cond included). A leftover is an error, never a silent pass-through."""
    for mod in gm.modules():
        if not isinstance(mod, fx.GraphModule):
            continue
        for n in mod.graph.nodes:
            t = n.target
            name = getattr(t, "_opname", "") if isinstance(t, torch._ops.OpOverload) else ""
            if name in _LEFT or name.startswith("fft_") or (mod is not gm and _is_complex_node(n)):
                raise SpecRewriteError(f"{name or t} is still in the rewritten graph (inside a construct the pass "
                                       "cannot lower, such as torch.cond / a loop / a nested module call)",
                                       op=str(t), where=where_of(n),
                                       fix="move the spectral op out of the control-flow construct, or report it")


def _inplace(fn):
    """In-place op on a complex value: compute out of place, then copy into the (real-pair) destination, so
    views of it keep seeing the mutation exactly as in eager."""
    if fn is None:
        return None

    def rule(ctx, node, args, kwargs):
        dst = args[0]
        res = fn(ctx, node, args, kwargs)
        res_node = res.node if is_c(res) else ctx.call(C.from_real, res)
        if _unaliased(node.args[0]):
            # nothing else sees this tensor's memory: later uses take the new value, no copy_ into it (which
            # coremltools' TorchScript frontend cannot convert outside a slice write)
            ctx.env[node.args[0]] = Cx(res_node, dst.rank)
            return ctx.env[node.args[0]]
        want = _real_dtype(node.args[0])
        if want is None or any(_real_dtype(a) not in (None, want) for a in node.args[1:] if isinstance(a, fx.Node)):
            res_node = ctx.call(aten._to_copy.default, res_node, dtype=want or ctx.out_dtype(node).to_real())
        ctx.call(aten.copy_.default, dst.node, res_node)
        return Cx(dst.node, dst.rank)

    return rule


def _unaliased(base) -> bool:
    """A tensor computed in the graph (not an input, parameter or view of another tensor) of which no view is
    taken: an in-place write into it is seen only through the node itself."""
    from ._writes import _alias_kind

    if not isinstance(base, fx.Node) or base.op != "call_function" or _alias_kind(base.target) is not None:
        return False
    return not any(u.op == "call_function" and _alias_kind(u.target) == "view" for u in base.users)
