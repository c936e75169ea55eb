"""exp without a library call, so that LLVM can vectorise the loops that use it.

Taichi's CPU backend calls the C library's expf/exp for `ti.exp`: one scalar call per
value, which keeps a loop over several pixels from becoming SIMD code.  This is the
textbook range reduction written in arithmetic only:

    x = k ln2 + r,  k = round(x / ln2),  |r| ≤ ln2 / 2
    eˣ = 2ᵏ · eʳ,   eʳ by its Taylor polynomial (degree 7 in float32, 13 in float64),
                    2ᵏ by writing k into the exponent bits

k ln2 is subtracted in two parts (Cody and Waite: ln2 = LN2_HI + LN2_LO, LN2_HI with
few mantissa bits, so k · LN2_HI is exact), so r carries no more than rounding error.
The truncation error of the polynomial is below r⁸/8! < 5.3e-9 (float32; 4.2e-18 with
degree 13 in float64), far under one unit in the last place; what is left is the
rounding of the evaluation itself.  `tests/test_fastexp.py` measures the error against
NumPy's exp in float64 over the whole range the soft pass uses, [−10⁴, 30], and holds it
to 2 units in the last place (float32: relative 2⁻²², float64: 2⁻⁵¹; measured 0.84 and 1.0).

Below the smallest normal result (x < −87 in float32, −708 in float64) it returns 0:
an absolute error under 1.2e-38 (2.3e-308), where the soft pass only ever adds the
result to sums of at least ε-sized terms.
"""
import math

import taichi as ti

LOG2E = 1.4426950408889634
LN2_HI, LN2_LO = 0.693145751953125, 1.4286068203094172e-06  # float32: LN2_HI has 16 bits
LN2_HI64, LN2_LO64 = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # fdlibm's


# Taylor coefficients 1/i! of eʳ, highest first (Horner's rule)
TAYLOR = [1.0 / math.factorial(i) for i in range(14)]


@ti.func
def _poly(r, degree: ti.template()):
    """Σ_{i ≤ degree} rⁱ / i!."""
    p = ti.static(TAYLOR[degree]) + 0.0 * r
    for i in ti.static(range(degree - 1, -1, -1)):
        p = p * r + ti.static(TAYLOR[i])
    return p


@ti.func
def _opaque(v, x, itype: ti.template(), ftype: ti.template()):
    """v, in a form fast-math cannot merge with what follows.  Taichi compiles with
    reassociation allowed, which folds (x − k·LN2_HI) − k·LN2_LO into x − k·ln2 and so
    loses what the two-part subtraction is for (34 ulp at x = −87, measured).  An integer
    OR with a flag that is 0 for every finite x stops it."""
    return ti.bit_cast(ti.bit_cast(v, itype) | ti.cast(x > 1e38, itype), ftype)


@ti.func
def exp(x):
    """eˣ to 2 ulp in the default float type, 0 below the smallest normal result."""
    out = 0.0 * x
    if ti.static(ti.lang.impl.get_runtime().default_fp == ti.f64):
        xc = ti.math.clamp(x, -708.0, 709.0)
        k = ti.floor(xc * LOG2E + 0.5)
        r = _opaque(xc - k * LN2_HI64, x, ti.i64, ti.f64) - k * LN2_LO64
        two_k = ti.bit_cast((ti.cast(k, ti.i64) + 1023) << 52, ti.f64)
        out = ti.select(x < -708.0, 0.0, _poly(r, 13) * two_k)
    else:
        xc = ti.math.clamp(x, -87.0, 88.0)
        k = ti.floor(xc * LOG2E + 0.5)
        r = _opaque(xc - k * LN2_HI, x, ti.i32, ti.f32) - k * LN2_LO
        two_k = ti.bit_cast((ti.cast(k, ti.i32) + 127) << 23, ti.f32)
        out = ti.select(x < -87.0, 0.0, _poly(r, 7) * two_k)
    return out
