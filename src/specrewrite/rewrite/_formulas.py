"""The formula of each elementwise complex op, by op name: the one table that the graph pass (``rules_math``)
and the Core ML plugin (``coreml/_complex``) both build their rules from, so no backend computes an op
differently. Each formula is a torch function on real pairs (..., 2) from ``_complex`` / ``_complex_math``; the
graph pass calls it from the rewritten graph, the plugin runs the same function on MIL values
(``coreml/_as_torch``)."""
from __future__ import annotations

from . import _complex as C
from . import _complex_math as M

#: complex -> complex
PAIR_TO_PAIR = {
    "exp": M.cexp, "log": M.clog, "log10": M.clog10, "log2": M.clog2, "log1p": M.clog1p, "expm1": M.cexpm1,
    "exp2": M.cexp2, "sqrt": M.csqrt, "rsqrt": M.crsqrt, "reciprocal": M.creciprocal, "sgn": M.csgn,
    "sin": M.csin, "cos": M.ccos, "tan": M.ctan, "sinh": M.csinh, "cosh": M.ccosh, "tanh": M.ctanh,
    "asin": M.casin, "acos": M.cacos, "atan": M.catan, "asinh": M.casinh, "acosh": M.cacosh, "atanh": M.catanh,
    "sigmoid": M.csigmoid, "conj": C.cconj, "_conj": C.cconj, "conj_physical": C.cconj,
    "_conj_physical": C.cconj, "neg": C.cneg,
}
#: complex -> real
PAIR_TO_REAL = {"abs": M.cabs, "angle": C.cangle, "isnan": M.cisnan, "isinf": M.cisinf, "isfinite": M.cisfinite}
#: numpy-style names of the same ops
ALIASES = {"arcsin": "asin", "arccos": "acos", "arctan": "atan", "arcsinh": "asinh", "arccosh": "acosh",
           "arctanh": "atanh", "absolute": "abs"}


# ------------------------------------------------------------------------------ binary arithmetic
# Which formula computes a binary op for each mix of operands: a complex tensor (``*_c`` True: a real pair),
# a real tensor, a Python complex or real number. Each returns (formula, args), or None where no operand is
# complex; the graph pass puts ``formula(*args)`` in the graph, the plugin runs it on MIL values.


def mul_plan(a, b, a_c: bool, b_c: bool):
    if b_c and not a_c:
        a, b, a_c, b_c = b, a, b_c, a_c
    if a_c and b_c:
        return C.cmul, (a, b)
    if a_c:
        return (C.cmul_scalar if isinstance(b, complex) else C.cmul_real), (a, b)
    if isinstance(b, complex):
        return C.real_mul_cscalar, (a, b)
    if isinstance(a, complex):
        return C.real_mul_cscalar, (b, a)
    return None


def div_plan(a, b, a_c: bool, b_c: bool):
    if a_c and b_c:
        return M.cdiv, (a, b)
    if a_c:
        return (C.cmul_scalar, (a, 1.0 / b)) if isinstance(b, complex) else (C.cdiv_real, (a, b))
    if b_c:
        if isinstance(a, complex):
            return _scaled_reciprocal, (b, a)
        return M.real_div_c, (a, b)
    if isinstance(b, complex):
        return C.real_mul_cscalar, (a, 1.0 / b)
    return None


def _scaled_reciprocal(z, value: complex):
    """value / z for a Python complex value."""
    return C.cmul_scalar(M.creciprocal(z), value)


def add_plan(a, b, a_c: bool, b_c: bool, alpha=1):
    """a + alpha * b (sub: alpha negated)."""
    scalar = (int, float, complex, bool)
    if isinstance(b, scalar):
        return C.cadd_cscalar, (a, complex(b) * alpha, a_c)
    if isinstance(a, scalar):
        return _scalar_plus, (b, complex(a), b_c, alpha)
    return C.cadd, (a, b, a_c, b_c, alpha)


def _scalar_plus(b, value: complex, b_c: bool, alpha=1):
    """value + alpha * b for a Python number value."""
    return C.cadd_cscalar(b * alpha if alpha != 1 else b, value, b_c)


def ccube(z):
    """z * z * z, in eager's order."""
    return C.cmul(C.cmul(z, z), z)


def cinv_square(z):
    """1 / (z * z)."""
    return M.creciprocal(C.cmul(z, z))


#: exponents eager's complex pow computes by another kernel (ATen's pow_tensor_scalar: sqrt, rsqrt, reciprocal,
#: z * z, z * z * z, 1 / (z * z)); the polar form there was up to 2.7x eager's float32 error (z ** 3) and 1.5x
#: (z ** 0.5), and followed another branch where eager's kernel has its own
_POW_KERNELS = {0.5: M.csqrt, -0.5: M.crsqrt, -1.0: M.creciprocal, 3.0: ccube, -2.0: cinv_square}


def pow_plan(base, p, base_c: bool, p_c: bool):
    """base ** p with a complex tensor on either side (None otherwise): a real Python exponent takes eager's own
    kernel where it has one (``_POW_KERNELS``), else the polar form of ``cpow_scalar`` (exact squares); anything
    else exp(p log base) with the other side as a pair."""
    if base_c and isinstance(p, (int, float)) and not isinstance(p, bool):
        if float(p) in _POW_KERNELS:
            return _POW_KERNELS[float(p)], (base,)
        return C.cpow_scalar, (base, p)
    if base_c or p_c:
        return _cpow_pairs, (base, p, base_c, p_c)
    return None


def _cpow_pairs(base, p, base_c: bool, p_c: bool):
    like = base if base_c else p
    return M.cpow(base if base_c else M.real_to_pair(base, like), p if p_c else M.real_to_pair(p, like))
