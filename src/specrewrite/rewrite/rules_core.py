"""The rule registry of the graph pass: ``RULES`` (op -> rule, a second registration an error), the complex
value types a rule returns (``Cx``: a real pair standing for a complex tensor of a given rank; ``CxList``), and
the small helpers every rule file shares. Rule files import this module, never each other's registrations
(``rules`` imports every rule file once, so no rule module imports back)."""
from __future__ import annotations

from typing import Callable, Dict

import torch

from ._nodes import bind as bound   # the call's arguments by schema name, defaults filled in  # noqa: F401

aten = torch.ops.aten
class _Registry(dict):
    """op (an OpOverload or an OpOverloadPacket) -> rule. Registering an op twice is an error (two rules for one
    op would silently shadow each other, depending on import order); ``replace`` is the explicit way."""

    def __setitem__(self, op, fn):
        if op in self and self[op] is not fn:
            raise RuntimeError(f"specrewrite: two rules for {op} ({self[op].__module__}.{self[op].__name__} and "
                               f"{fn.__module__}.{getattr(fn, '__name__', fn)})")
        super().__setitem__(op, fn)

    def replace(self, op, fn) -> None:
        super().__setitem__(op, fn)


RULES: Dict[object, Callable] = _Registry()


class Cx:
    __slots__ = ("node", "rank")

    def __init__(self, node, rank: int):
        self.node, self.rank = node, rank

    def __repr__(self):
        return f"Cx({self.node}, rank={self.rank})"


def is_c(x) -> bool:
    return isinstance(x, Cx)


def rule(*ops, replaces: bool = False):
    """Register ``fn`` as the rule of ``ops``. ``replaces=True``: a later module refines an earlier rule on
    purpose (it must exist; the refinement usually calls it); any other second registration is an error."""
    def deco(fn):
        for op in ops:
            if replaces:
                if op not in RULES:
                    raise RuntimeError(f"specrewrite: {fn.__name__} replaces a rule for {op} that does not exist")
                RULES.replace(op, fn)
            else:
                RULES[op] = fn
        return fn
    return deco


def nd(d: int, r: int) -> int:
    """A (possibly negative) dim of a rank-r complex tensor as a non-negative dim of its real pair."""
    return d + r if d < 0 else d


def _n(x):
    return x.node if is_c(x) else x


class CxList:
    """A list/tuple of complex values (output of split/unbind/chunk)."""

    __slots__ = ("node", "rank")

    def __init__(self, node, rank):
        self.node, self.rank = node, rank


def has_cx(x) -> bool:
    if isinstance(x, (Cx, CxList)):
        return True
    if isinstance(x, (list, tuple)):
        return any(has_cx(v) for v in x)
    if isinstance(x, dict):
        return any(has_cx(v) for v in x.values())
    return False


def strip_cx(x):
    if isinstance(x, (Cx, CxList)):
        return x.node
    if isinstance(x, tuple):
        return tuple(strip_cx(v) for v in x)
    if isinstance(x, list):
        return [strip_cx(v) for v in x]
    if isinstance(x, dict):
        return {k: strip_cx(v) for k, v in x.items()}
    return x
