"""register() / unregister(): install the lowerings into coremltools' torch op registry, reversibly."""
from __future__ import annotations

from ..errors import SpecRewriteError
from ..modes import Mode, Strategy
from . import _assign, _complex, _linalg, _real, _spectral, _views  # noqa: F401  (fill RULES)
from . import _ct_private as P
from ._pairs import CONFIG, PASSTHROUGH, RULES, node_has_pair, where

_installed = {"on": False}


def _guard(op_lookup, func):
    """Registry lookups: ops with a rule run as is; any other op that meets a complex value is an error
    naming the op (coremltools would otherwise treat the (re, im) pair as an ordinary real tensor)."""
    if func is None or getattr(func, "_specrewrite_rule", False) or op_lookup in PASSTHROUGH:
        return func

    def guarded(context, node):
        if node_has_pair(context, node):
            raise SpecRewriteError(
                f"coremltools op '{node.kind}' received a complex value and has no complex lowering",
                op=f"specrewrite.coreml ({node.kind})", where=where(node),
                fix="rewrite the model first (specrewrite.coreml.convert), or express this step with "
                    "real-valued ops (torch.view_as_real)")
        return func(context, node)

    return guarded


_WRAPPED = {}


def _wrapped(fn):
    """The registered form of a rule: its automatically named MIL ops get the prefix 'sr_'."""
    if fn not in _WRAPPED:
        def lowering(context, node):
            with P.op_name_prefix("sr_"):
                return fn(context, node)

        lowering._specrewrite_rule = True
        _WRAPPED[fn] = lowering
    return _WRAPPED[fn]


def _install():
    for name, fn in RULES.items():
        w = _wrapped(fn)
        for alias in P.registry_names_of(name):
            if alias != name and alias in RULES:   # an alias with a rule of its own keeps it
                continue
            w.__name__ = alias
            P.register_torch_op(_func=w, override=True)
    P.set_get_func_hook(_guard)
    P.install_frontend_patches()
    _installed["on"] = True


class Registration:
    """Returned by register(): the registration is already active; as a context manager, leaving the block
    restores coremltools' registry and the previous mode/strategy exactly as they were before the call."""

    def __init__(self, snapshot):
        self._snapshot = snapshot
        self.mode, self.strategy = CONFIG.mode, CONFIG.strategy

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        table, hooked, installed, config = self._snapshot
        P.registry_restore(table)
        P.set_get_func_hook(_guard if hooked else None)
        if not installed:
            P.remove_frontend_patches()
        _installed["on"] = installed
        CONFIG.mode, CONFIG.strategy = config.mode, config.strategy
        return False

    def __repr__(self):
        return f"<specrewrite.coreml registration mode={self.mode.value} strategy={self.strategy.value}>"


def register(*, mode: Mode | str = Mode.STORE, strategy: Strategy | str = Strategy.AUTO) -> Registration:
    """Install the specrewrite lowerings into coremltools' torch frontend (idempotent)."""
    mode, strategy = Mode.parse(mode), Strategy.parse(strategy)
    snapshot = (P.registry_snapshot(), P.get_func_hooked(), _installed["on"], CONFIG.copy())
    CONFIG.mode, CONFIG.strategy = mode, strategy
    if not _installed["on"] or not P.get_func_hooked():
        _install()
    return Registration(snapshot)


def unregister() -> None:
    """Restore coremltools' own registry (whatever register() calls were made)."""
    P.registry_restore(P.registry_pristine())
    P.set_get_func_hook(None)
    P.remove_frontend_patches()
    _installed["on"] = False
    CONFIG.mode, CONFIG.strategy = Mode.STORE, Strategy.AUTO


def is_registered() -> bool:
    return _installed["on"] and P.get_func_hooked()
