"""How the DFT constants are held (Mode) and how the transform is factored (Strategy)."""
from __future__ import annotations

import enum


class Mode(str, enum.Enum):
    """Where the DFT bases live in the exported model.

    STORE: constant buffers in the model (fastest, largest file).
    INPUT: fed as extra model inputs (small file; the caller feeds the tensors from ``bases()``).
    ON_THE_FLY: computed inside the graph from arange/cos/sin (small file, a little set-up work per call).
    """

    STORE = "store"
    INPUT = "input"
    ON_THE_FLY = "on_the_fly"

    @classmethod
    def parse(cls, mode: "Mode | str") -> "Mode":
        from .errors import SpecRewriteError

        if isinstance(mode, Mode):
            return mode
        try:
            return cls(str(mode).lower().replace("-", "_"))
        except ValueError:
            raise SpecRewriteError(
                f"unknown mode {mode!r}", fix="use one of " + ", ".join(repr(m.value) for m in cls)
            ) from None


class Strategy(str, enum.Enum):
    """How a length-N DFT is computed.

    DENSE: one (2F x N) basis, applied as a strided conv1d / matmul.
    FACTORED: Cooley-Tukey N = N1*N2: a small DFT per phase (grouped strided conv), twiddles folded into
    the first stage, then a second small DFT (matmul). Exact to float rounding.
    AUTO: FACTORED where it is faster and the sizes allow it, DENSE otherwise.
    """

    AUTO = "auto"
    DENSE = "dense"
    FACTORED = "factored"

    @classmethod
    def parse(cls, s: "Strategy | str") -> "Strategy":
        from .errors import SpecRewriteError

        if isinstance(s, Strategy):
            return s
        try:
            return cls(str(s).lower())
        except ValueError:
            raise SpecRewriteError(
                f"unknown strategy {s!r}", fix="use one of " + ", ".join(repr(m.value) for m in cls)
            ) from None
