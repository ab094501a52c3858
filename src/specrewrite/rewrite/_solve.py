"""Real linear solves and inverses that every exporter can write.

The complex solve and inverse run on the real block system (``_complex_linalg``) with ``torch.linalg.solve`` /
``inv``, which ONNX has no operator for (torch.onnx: "No ONNX function found for aten._linalg_solve_ex") and
coremltools no converter: every torchaudio MVDR beamformer stopped there. In eager these stay LAPACK's LU; inside
an exporter's trace (torch.export / torch.onnx / torch.jit.trace) a matrix of static size n <= ``MAX_N``
becomes LU elimination with partial pivoting and back substitution, unrolled over the n columns: argmax, gather, where and
arithmetic, which every runtime has. Partial pivoting makes it backward stable in practice like LU; the
exported error is measured against float64 in ``tests/test_solve_export.py``.
"""
from __future__ import annotations

import torch

from .._torch.bases import tracing

MAX_N = 64   # unrolled: n steps of O(n (n + k)) each (fast-bss-eval: 64); larger systems keep the aten op


def _static(n) -> bool:
    n = _sizes((n,))[0]   # (torch.jit.trace gives sizes as 0-d tensors)
    return isinstance(n, int) and 1 <= n <= MAX_N


def solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.linalg.solve(a, b)`` for a (..., n, n) and b (..., n, k) or (..., n)."""
    n = a.shape[-1]
    if not tracing() or not _static(n):
        return torch.linalg.solve(a, b)
    return unrolled_solve(a, b)


def unrolled_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.linalg.solve`` as elimination unrolled over a static n: what exporters get, and what the Core ML
    plugin builds on MIL values (``coreml/_as_torch``)."""
    vector = b.dim() == a.dim() - 1
    x = gauss_jordan(a, b.unsqueeze(-1) if vector else b)
    return x.squeeze(-1) if vector else x


def inv(a: torch.Tensor) -> torch.Tensor:
    """``torch.linalg.inv(a)``."""
    n = a.shape[-1]
    if not tracing() or not _static(n):
        return torch.linalg.inv(a)
    return unrolled_inv(a)


def unrolled_inv(a: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(int(a.shape[-1]), dtype=a.dtype, device=a.device).expand(a.shape)
    return gauss_jordan(a, eye)


def _sizes(shape) -> tuple:
    """Sizes as Python ints under torch.jit.trace, which hands them out as 0-d tensors and records each use as
    size -> NumToTensor -> Int (coremltools reads some of those back as vectors and fails); symbolic sizes of an
    export are left as they are (a dynamic batch stays dynamic)."""
    return tuple(int(d) for d in shape) if torch.jit.is_tracing() else tuple(shape)


def _batch_shape(a: torch.Tensor, b: torch.Tensor) -> tuple:
    """The broadcast batch shape of a and b (torch.broadcast_shapes broadcasts tensors under a trace)."""
    if not torch.jit.is_tracing():
        return tuple(torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    sa, sb = _sizes(a.shape[:-2]), _sizes(b.shape[:-2])
    width = max(len(sa), len(sb))
    sa, sb = (1,) * (width - len(sa)) + sa, (1,) * (width - len(sb)) + sb
    return tuple(y if x == 1 else x for x, y in zip(sa, sb))


def gauss_jordan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """X with a X = b: LU elimination of [a | b] with partial pivoting (the pivot of column j the largest
    |entry| at row >= j), then back substitution. (Eliminating above the pivot too, Gauss-Jordan proper, was
    7x LAPACK's float32 error at condition number 1e4.)"""
    n = int(a.shape[-1])   # static (``_static``)
    shape = _batch_shape(a, b)
    k = _sizes(b.shape)[-1]
    m = torch.cat([a.expand(*shape, n, n), b.expand(*shape, n, k)], dim=-1)   # (..., n, n + k)
    rows = torch.arange(n, device=a.device)
    for j in range(n):
        col = m[..., :, j].abs()
        col = torch.where(rows >= j, col, torch.full_like(col, -1.0))   # rows above j are done
        p = col.argmax(dim=-1, keepdim=True)                            # (..., 1) the pivot row
        row_p = torch.gather(m, -2, p.unsqueeze(-1).expand(*shape, 1, n + k))   # (..., 1, n + k)
        row_j = m[..., j:j + 1, :]
        is_j = (rows == j).unsqueeze(-1)                                # (n, 1)
        is_p = (rows == p).unsqueeze(-1)                                # (..., n, 1)
        m = torch.where(is_j, row_p, torch.where(is_p, row_j, m))       # rows j and p swapped, exactly
        below = (rows > j).unsqueeze(-1)
        factor = torch.where(below, m[..., :, j:j + 1] / m[..., j:j + 1, j:j + 1], torch.zeros_like(m[..., :, :1]))
        m = m - factor * m[..., j:j + 1, :]
    u, y = m[..., :, :n], m[..., :, n:]
    x = (y[..., n - 1:, :] / u[..., n - 1:, n - 1:])
    for j in range(n - 2, -1, -1):   # back substitution, one row at a time
        xj = (y[..., j:j + 1, :] - u[..., j:j + 1, j + 1:] @ x) / u[..., j:j + 1, j:j + 1]
        x = torch.cat([xj, x], dim=-2)
    return x


def solve_ex(a: torch.Tensor, b: torch.Tensor, *, left: bool = True, check_errors: bool = False):
    """``aten._linalg_solve_ex`` of real matrices where only the solution and the info are read (the graph
    pass checks that): (x, a, 0, 0), the second and third standing in for LU factors nobody reads."""
    x = solve(a, b) if left else solve(a.mT, b.mT).mT
    zeros = torch.zeros(_sizes(a.shape[:-2]), dtype=torch.int32, device=a.device)
    return x, a, zeros, zeros


def inv_ex(a: torch.Tensor, *, check_errors: bool = False):
    """``aten.linalg_inv_ex`` of real matrices (``torch.inverse``; speechbrain's MVDR inverts the real block form
    of its complex covariance): (inverse, info zeros), unrolled inside an exporter's trace like a solve."""
    return inv(a), torch.zeros(_sizes(a.shape[:-2]), dtype=torch.int32, device=a.device)


def linalg_solve(a: torch.Tensor, b: torch.Tensor, *, left: bool = True) -> torch.Tensor:
    """``aten.linalg_solve`` of real matrices (fast-bss-eval's Toeplitz systems, diffsptk's mel-cepstrum)."""
    return solve(a, b) if left else solve(a.mT, b.mT).mT


def report_too_large(report, node) -> None:
    """A real solve larger than ``MAX_N`` stays ``linalg.solve``, which ONNX and Core ML cannot express: say so in
    the report (the exporter's own message names no line)."""
    from ._nodes import val, where_of

    v = val(node.args[0])
    n = v.shape[-1] if isinstance(v, torch.Tensor) and v.dim() >= 2 else None
    if isinstance(n, int) and n > MAX_N:
        report.add("torch.linalg.solve", where_of(node), {"n": n},
                   skipped=f"a {n} x {n} system is larger than the {MAX_N} x {MAX_N} that is unrolled for "
                   "exporters: eager runs it, but ONNX has no solve op and coremltools no converter")


def require_static(node) -> None:
    """A solve or inverse whose size n follows a dynamic input axis (nara-wpe's 8 D x 8 D covariance of D
    channels) cannot be unrolled for exporters, which is a loop over n in Python; ONNX has no solve op and
    coremltools no converter. The axes behind n are fixed instead (``NeedsStaticShapes``), with this reason."""
    from ._nodes import NeedsStaticShapes, val, where_of

    v = val(node.args[0])
    n = v.shape[-1] if isinstance(v, torch.Tensor) and v.dim() >= 2 else None
    if n is not None and not isinstance(n, int):
        raise NeedsStaticShapes(f"the linear solve or inverse at {where_of(node)} is {n} x {n}: exporters get it "
                                "unrolled, at a fixed size only", n)
