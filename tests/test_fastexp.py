"""fastexp.exp, the soft pass's exp, against NumPy's in float64 over every argument the
soft pass can give it: the logits δ d²/σ in [−30, 30] and the softmax weights
(ẑ − m)/γ ≤ 0, down to −1/γ and beyond.  The bound: at most 2 units in the last place
(relative error 2⁻²² in float32, 2⁻⁵¹ in float64) wherever the result is a normal
number, exactly 0 below that.  Merging the two-part subtraction of k·ln2 (what
fast-math does without fastexp._opaque) makes it 34 ulp at x = −87, so this fails.
"""
import numpy as np
import pytest
import taichi as ti

import softras_taichi as sr
from softras_taichi import fastexp

CUTOFF = {"f32": -87.0, "f64": -708.0}


@ti.kernel
def _exp(x: ti.types.ndarray(), y: ti.types.ndarray()):
    for i in x:
        y[i] = fastexp.exp(x[i])


def _arguments(precision):
    rng = np.random.default_rng(0)
    ln2 = np.log(2.0)
    k = np.arange(-1030, 50)
    edges = np.concatenate([k * ln2, (k + 0.5) * ln2])  # r = 0 and r at ±ln2/2, where rounding k flips
    return np.concatenate([
        rng.uniform(-30.0, 30.0, 1 << 21),             # logits
        rng.uniform(CUTOFF[precision] - 1.0, 0.0, 1 << 21),  # softmax weights, down to the cut-off
        -np.exp(rng.uniform(np.log(1e-8), np.log(1e4), 1 << 20)),  # tiny to −10⁴ (γ = 1e-4)
        rng.uniform(-0.35, 0.35, 1 << 20),             # the reduced range itself
        edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf),
        [0.0, -0.0, 30.0, -1e30, CUTOFF[precision]],
    ])


@pytest.mark.parametrize("precision", ["f32", "f64"])
def test_fastexp_within_two_ulp_over_the_range_used(precision):
    sr.init("cpu", precision=precision)
    dtype = np.float64 if precision == "f64" else np.float32
    x = _arguments(precision).astype(dtype)
    x = x[x <= 30.0]
    y = np.empty_like(x)
    _exp(x, y)
    ref = np.exp(x.astype(np.float64))
    normal = x >= CUTOFF[precision]
    assert np.finfo(dtype).tiny <= ref[normal].min(), "the cut-off must leave only normal results"
    rel = np.abs(y[normal] - ref[normal]) / ref[normal]
    ulp = rel.max() / np.finfo(dtype).eps
    worst = x[normal][np.argmax(rel)]
    assert ulp <= 2.0, f"fastexp.exp({worst!r}) is {ulp:.2f} ulp from exp ({precision}); the bound is 2"
    assert (y[~normal] == 0.0).all(), "below the cut-off fastexp.exp must return 0"
    assert ref[~normal].max() < 2.0 * np.finfo(dtype).tiny, "returning 0 must cost less than the smallest normal"
