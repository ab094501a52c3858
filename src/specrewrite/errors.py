"""User-facing errors."""
from __future__ import annotations


class SpecRewriteError(Exception):
    """A spectral op (or its arguments) cannot be rewritten exactly.

    The message names the op, the user's source line when known, the reason and the fix.
    """

    def __init__(self, reason: str, *, op: str | None = None, where: str | None = None, fix: str | None = None):
        self.reason, self.op, self.where, self.fix = reason, op, where, fix
        parts = []
        if op:
            parts.append(f"{op}: ")
        parts.append(reason)
        if where:
            parts.append(f"\n  at {where}")
        if fix:
            parts.append(f"\n  fix: {fix}")
        super().__init__("".join(parts))


def missing_extra(extra: str, module: str) -> SpecRewriteError:
    return SpecRewriteError(
        f"this feature needs the optional dependency '{module}', which is not installed",
        fix=f"pip install 'specrewrite[{extra}]'",
    )
