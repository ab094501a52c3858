"""Lowering rules for linear algebra on complex matrices (imported by ``rules_math``).

A complex n x n matrix A = Ar + i Ai acts like the real 2n x 2n block matrix [[Ar, -Ai], [Ai, Ar]]; that map
respects products and inverses, so solves, inverses and matrix functions run on the real block form and read
the complex result back from its first block column (``_complex_math.block`` / ``unblock``). The block form has
the singular values of A (each twice), so its float32 accuracy is that of the complex kernel.
Factorisations (LU, QR, Cholesky, eigen, SVD) have no such map and stay clear errors.
"""
from __future__ import annotations

import torch

from . import _complex_linalg as M
from ._solve import require_static
from .rules_core import Cx, aten, is_c, rule
from .rules_math import bind, in_val, pair_of


def _pair(ctx, x, like):
    return x.node if is_c(x) else pair_of(ctx, x, like)


def _like(*xs):
    for x in xs:
        if is_c(x):
            return x.node
    raise AssertionError("a complex rule without a complex argument")


@rule(aten.linalg_inv_ex)
def _inv_ex(ctx, node, args, kwargs):
    a = args[0]
    require_static(node)
    return (Cx(ctx.call(M.cinv, a.node), a.rank), ctx.call(M.info_zeros, a.node))


@rule(aten.linalg_inv, aten.inverse)
def _inv(ctx, node, args, kwargs):
    a = args[0]
    require_static(node)
    return Cx(ctx.call(M.cinv, a.node), a.rank)


def _needs_only(ctx, node, keep, what):
    """Multi-output ops: only the outputs in ``keep`` can be produced; any other that is read is a clear error."""
    for u in node.users:
        if getattr(u.target, "__name__", "") == "getitem" and u.args[1] not in keep and len(u.users) > 0:
            raise ctx.unsupported(node, f"the {what} of a complex matrix")


@rule(aten._linalg_solve_ex)
def _solve_ex(ctx, node, args, kwargs):
    b = bind(node, args, kwargs)
    a, rhs = b["A"], b["B"]
    _needs_only(ctx, node, (0, 3), "LU factors")
    require_static(node)
    av, bv = in_val(node, 0), in_val(node, 1)
    vector = bv.dim() == 1 or (bv.dim() == av.dim() - 1 and tuple(bv.shape) == tuple(av.shape[:-1]))
    like = _like(a, rhs)
    an, bn = _pair(ctx, a, like), _pair(ctx, rhs, like)
    x = Cx(ctx.call(M.csolve_side, an, bn, bool(b.get("left", True)), vector), node.meta["val"][0].dim())
    lu, piv = None, None
    return (x, lu, piv, ctx.call(M.info_zeros, an))


@rule(aten.linalg_solve_triangular)
def _solve_triangular(ctx, node, args, kwargs):
    b = bind(node, args, kwargs)
    a, rhs = b["self"], b["B"]
    like = _like(a, rhs)
    x = ctx.call(M.csolve_triangular, _pair(ctx, a, like), _pair(ctx, rhs, like), bool(b["upper"]),
                 bool(b.get("left", True)), bool(b.get("unitriangular", False)))
    return Cx(x, ctx.out_rank(node))


@rule(aten.triangular_solve)
def _triangular_solve(ctx, node, args, kwargs):
    """torch.triangular_solve(B, A, upper, transpose, unitriangular) -> (X, clone of A)."""
    b = bind(node, args, kwargs)
    rhs, a = b["self"], b["A"]
    like = _like(a, rhs)
    an, bn = _pair(ctx, a, like), _pair(ctx, rhs, like)
    upper = bool(b.get("upper", True))
    tri = ctx.call(M.ctriangular, an, upper, bool(b.get("unitriangular", False)))
    if b.get("transpose", False):
        tri, upper = ctx.call(M._mT, tri), not upper
    x = ctx.call(M.csolve_side, tri, bn, True, False)
    vals = node.meta["val"]
    return (Cx(x, vals[0].dim()), Cx(ctx.call(torch.clone, an), vals[1].dim()) if is_c(a) else a)


@rule(aten.linalg_matrix_exp, aten.matrix_exp)
def _matrix_exp(ctx, node, args, kwargs):
    a = args[0]
    return Cx(ctx.call(M.cmatrix_exp, a.node), a.rank)


@rule(aten.cholesky_solve)
def _cholesky_solve(ctx, node, args, kwargs):
    b = bind(node, args, kwargs)
    rhs, l = b["self"], b["input2"]
    like = _like(rhs, l)
    x = ctx.call(M.ccholesky_solve, _pair(ctx, rhs, like), _pair(ctx, l, like), bool(b.get("upper", False)))
    return Cx(x, ctx.out_rank(node))


@rule(aten.cholesky_inverse)
def _cholesky_inverse(ctx, node, args, kwargs):
    b = bind(node, args, kwargs)
    return Cx(ctx.call(M.ccholesky_inverse, b["self"].node, bool(b.get("upper", False))), ctx.out_rank(node))


@rule(aten.addbmm)
def _addbmm(ctx, node, args, kwargs):
    b = bind(node, args, kwargs)
    like = _like(b["self"], b["batch1"], b["batch2"])
    x, b1, b2 = (_pair(ctx, b[k], like) for k in ("self", "batch1", "batch2"))
    out = ctx.call(M.caddbmm, x, b1, b2, b.get("beta", 1), b.get("alpha", 1))
    return Cx(out, ctx.out_rank(node))


def _static_n(ctx, node, what):
    """The elimination helpers unroll over n when they run; a dynamic n is fine in eager (a later export of the
    rewritten model specialises it)."""
    return in_val(node).shape[-1]


@rule(aten._linalg_det)
def _det(ctx, node, args, kwargs):
    """det -> (det, LU, pivots): the determinant by unrolled elimination with partial pivoting."""
    a = args[0]
    _static_n(ctx, node, "det")
    _needs_only(ctx, node, (0,), "LU factors")
    return (Cx(ctx.call(M.cdet, a.node), a.rank - 2), None, None)


@rule(aten.linalg_det, aten.det)
def _det_direct(ctx, node, args, kwargs):
    a = args[0]
    _static_n(ctx, node, "det")
    return Cx(ctx.call(M.cdet, a.node), a.rank - 2)


@rule(aten._linalg_slogdet)
def _slogdet(ctx, node, args, kwargs):
    """-> (sign, logabsdet, LU, pivots)."""
    a = args[0]
    _static_n(ctx, node, "slogdet")
    _needs_only(ctx, node, (0, 1), "LU factors")
    out = ctx.call(M.cslogdet, a.node)
    return (Cx(ctx.call(_getitem, out, 0), a.rank - 2), ctx.call(_getitem, out, 1), None, None)


def _getitem(seq, i: int):
    return seq[i]


@rule(aten.linalg_cholesky_ex)
def _cholesky_ex(ctx, node, args, kwargs):
    b = bind(node, args, kwargs)
    a = b["self"]
    _static_n(ctx, node, "cholesky")
    return (Cx(ctx.call(M.ccholesky, a.node, bool(b.get("upper", False))), a.rank), ctx.call(M.info_zeros, a.node))


@rule(aten.cholesky)
def _cholesky(ctx, node, args, kwargs):
    b = bind(node, args, kwargs)
    a = b["self"]
    _static_n(ctx, node, "cholesky")
    return Cx(ctx.call(M.ccholesky, a.node, bool(b.get("upper", False))), a.rank)


@rule(aten.cov)
def _cov(ctx, node, args, kwargs):
    b = bind(node, args, kwargs)
    return Cx(ctx.call(M.ccov, b["self"].node, b.get("correction", 1), b.get("fweights"), b.get("aweights")),
              ctx.out_rank(node))


@rule(aten.corrcoef)
def _corrcoef(ctx, node, args, kwargs):
    return Cx(ctx.call(M.ccorrcoef, args[0].node), ctx.out_rank(node))


@rule(aten.linalg_lu_factor_ex)
def _lu_factor_ex(ctx, node, args, kwargs):
    """-> (LU, pivots, info): partial pivoting like LAPACK (pivot=False is a clear error)."""
    b = bind(node, args, kwargs)
    if not b.get("pivot", True):
        raise ctx.unsupported(node, "LU without pivoting")
    a = b["A"]
    out = ctx.call(M.clu_factor, a.node)
    return (Cx(ctx.call(_getitem, out, 0), a.rank), ctx.call(_getitem, out, 1), ctx.call(M.info_zeros, a.node))


@rule(aten.lu_unpack)
def _lu_unpack(ctx, node, args, kwargs):
    b = bind(node, args, kwargs)
    out = ctx.call(M.clu_unpack, b["LU_data"].node, b["LU_pivots"])
    vals = node.meta["val"]
    return tuple(Cx(ctx.call(_getitem, out, i), vals[i].dim()) for i in range(3))


@rule(aten.linalg_lu)
def _linalg_lu(ctx, node, args, kwargs):
    b = bind(node, args, kwargs)
    if not b.get("pivot", True):
        raise ctx.unsupported(node, "LU without pivoting")
    a = b["A"]
    f = ctx.call(M.clu_factor, a.node)
    out = ctx.call(M.clu_unpack, ctx.call(_getitem, f, 0), ctx.call(_getitem, f, 1))
    vals = node.meta["val"]
    return tuple(Cx(ctx.call(_getitem, out, i), vals[i].dim()) for i in range(3))


@rule(aten.linalg_lu_solve)
def _lu_solve(ctx, node, args, kwargs):
    b = bind(node, args, kwargs)
    lu, piv, rhs = b["LU"], b["pivots"], b["B"]
    like = _like(lu, rhs)
    x = ctx.call(M.clu_solve, _pair(ctx, lu, like), piv, _pair(ctx, rhs, like), bool(b.get("left", True)),
                 bool(b.get("adjoint", False)))
    return Cx(x, ctx.out_rank(node))


@rule(aten.einsum)
def _einsum(ctx, node, args, kwargs):
    equation, operands = args[0], list(args[1])
    flags = [is_c(x) for x in operands]
    if sum(flags) > M.EINSUM_MAX_COMPLEX or kwargs.get("path") is not None or len(args) > 2:
        return ctx._lower_decomposed(node, args, kwargs)
    xs = [x.node if is_c(x) else x for x in operands]
    return Cx(ctx.call(M.ceinsum, equation, xs, flags), ctx.out_rank(node))
