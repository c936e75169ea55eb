"""soft.exp, the plain-arithmetic e^x of the CPU soft pass, against float64 exp.

The soft pass calls it where ti.exp would call the C library's expf (which keeps LLVM from
vectorising the pixel loop).  Its error has three parts: the reduction x = k ln2 + r (exact
high part, so only ln2_lo's rounding), Cephes' polynomial for e^r on |r| ≤ ln2/2, and the
scaling by 2^k (exact).  This measures the whole on a dense sample of float32 arguments
(random over the range the soft pass uses, every float32 near 0, and the reduction's edges
where r reaches ±ln2/2) and asserts at most 2 ulp; the float32 exp of NumPy, for scale,
reaches 2.4 ulp on the same points.
"""
import numpy as np
import pytest
import taichi as ti

import softras_taichi as sr
from softras_taichi import soft


@pytest.fixture(scope="module", autouse=True)
def cpu_f32():
    sr.init("cpu", precision="f32", verbose=False)


@ti.kernel
def _exp(x: ti.types.ndarray(), out: ti.types.ndarray()):
    for i in x:
        out[i] = soft.exp(x[i])


def _run(xs):
    x = ti.ndarray(float, xs.shape)
    x.from_numpy(xs)
    out = ti.ndarray(float, xs.shape)
    _exp(x, out)
    return out.to_numpy()


def _arguments():
    rng = np.random.default_rng(0)
    edges = (np.arange(-126, 128) + 0.5) * np.log(2.0)  # where the rounding of x/ln2 flips
    near_edges = (edges[:, None] * (1.0 + np.linspace(-1e-6, 1e-6, 41)[None, :])).ravel()
    near_zero = np.linspace(-1e-3, 1e-3, 200_001)
    xs = np.concatenate([rng.uniform(-87.0, 88.0, 2_000_000), rng.uniform(-40.0, 40.0, 1_000_000),
                         near_edges, near_zero, [-87.0, 0.0, 88.0]])
    return xs[(xs >= -87.0) & (xs <= 88.0)].astype(np.float32)


def test_float32_exp_within_two_ulp():
    xs = _arguments()
    got = _run(xs).astype(np.float64)
    ref = np.exp(xs.astype(np.float64))
    # ulp of the float32 result, computed in float64 (Taichi may flush float32 subnormals)
    ulp = 2.0 ** (np.floor(np.log2(ref)) - 23)
    err = np.abs(got - ref) / ulp
    worst = int(err.argmax())
    assert err.max() <= 2.0, f"soft.exp({xs[worst]!r}) = {got[worst]!r}, e^x = {ref[worst]!r}: {err.max():.2f} ulp"
    assert np.median(err) < 0.5


def test_float32_exp_exact_points_and_underflow():
    got = _run(np.array([0.0, -87.5, -100.0, -1e4, -np.inf], dtype=np.float32))
    # e^0 must be exactly 1: the forward rescales its sums by exp(m − m_new), which is 0 − 0
    # when no nearer face came, and must leave them bit for bit as they were
    assert got[0] == 1.0
    assert np.all(got[1:] == 0.0), f"below −87 soft.exp returns 0, got {got[1:]}"
