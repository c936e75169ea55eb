"""Gradients of the Taichi renderer (float64, CPU) against central finite differences.

``r.vertex_grad(mesh, cam, g)`` and ``r.color_grad(mesh, cam, g)`` are d/dvertices and
d/dcolors of L = sum(g * r.render(mesh, cam)). We check them against

* central differences of the library's own L (step 1e-6 in float64), and
* central differences of the NumPy reference's L (an independent check that the
  gradient is the gradient of docs/math.md's image, not only of the library's).

Choices that make the finite differences meaningful:

* σ (1e-2, 3e-3) keeps the image smooth at pixel scale: the sigmoid spans a few
  pixels, so every pixel near an edge moves measurably with the vertices.
* dist_eps = 1e-12: the culling rule makes D jump by dist_eps where d² crosses
  σ ln(1/dist_eps - 1). With the default 1e-4 a pixel crossing that threshold within
  ±h changes L by ~1e-4·|g| and the difference quotient by ~1e-4/(2h) = 50 — a
  spurious spike. With 1e-12 that spike is ~5e-7, below the FD noise. (The logit
  clamp at ±30 is then never reached outside a face: 30σ > σ ln(1e12) ≈ 27.6σ.)
* Remaining non-smooth points (a clamped barycentric crossing 0, n·l crossing 0) are
  met only when an edge passes within h of a pixel centre or a face is exactly
  vertical: the meshes are jittered so that neither happens.
"""
import numpy as np
import pytest

import reference as ref
from finite_differences import central_differences

sr = pytest.importorskip("softras_taichi")

D0 = 2.732
H = 1e-6
# observed relative errors are 1e-10 .. 2e-9 (FD truncation/rounding at h = 1e-6 in
# float64); 1e-6 leaves ample room and still catches a subtly wrong derivative
RTOL = 1e-6


@pytest.fixture(scope="module", autouse=True)
def cpu_f64():
    sr.init("cpu", precision="f64")
    yield


def _meshes():
    # colours kept inside (0, 1) so that the colour finite differences stay valid
    rng = np.random.default_rng(7)
    v, f, c = ref.random_triangles(2, seed=11, extent=0.7)
    out = {"tris2": (v, f, 0.05 + 0.9 * c)}
    v, f = ref.icosphere(0, 0.8)
    out["ico0"] = (v + rng.normal(0, 0.05, v.shape), f, rng.uniform(0.05, 0.95, v.shape))
    # overlap and cube are jittered: their faces are axis-aligned, so n·l = 0 exactly
    # for l = (0, 1, 0) — the kink of max(0, n·l), where central differences average
    # the two one-sided derivatives
    v, f, c = ref.overlapping_triangles()
    out["overlap"] = (v + rng.normal(0, 0.02, v.shape), f, 0.05 + 0.9 * c)
    v, f = ref.cube(1.0)
    out["cube"] = (v + rng.normal(0, 0.02, v.shape), f, rng.uniform(0.05, 0.95, v.shape))
    return out


MESHES = _meshes()
CASES = [
    # mesh, elevation, azimuth, sigma, gamma, size
    ("tris2", 20.0, 30.0, 1e-2, 1e-2, 16),
    ("ico0", 30.0, -50.0, 3e-3, 1e-2, 20),
    ("ico0", 90.0, 10.0, 1e-2, 1e-1, 16),
    ("overlap", 10.0, 20.0, 3e-3, 3e-3, 20),
    ("cube", 35.0, 40.0, 1e-2, 1e-2, 16),
]


def _id(c):
    return f"{c[0]}-el{c[1]:g}-az{c[2]:g}-s{c[3]:g}-g{c[4]:g}-{c[5]}px"


def _rel_err(got, want):
    return np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-300)


def _report(name, got, want):
    e = np.abs(got - want)
    i = np.unravel_index(np.argmax(e), e.shape)
    return (f"{name}: relative error {_rel_err(got, want):.3g} (tol {RTOL:g}); worst entry "
            f"{i}: got {got[i]:.6g}, finite differences {want[i]:.6g}; |FD grad| = "
            f"{np.linalg.norm(want):.4g}")


def _fd(fun, x):
    return central_differences(fun, x, H)


def _setup(case):
    name, el, az, sigma, gamma, size = case
    v, f, c = MESHES[name]
    params = dict(image_size=size, sigma=sigma, gamma=gamma, dist_eps=1e-12)
    r = sr.SoftRenderer(**params)
    cam = sr.Camera.look_at(D0, el, az)
    g = np.random.default_rng(5).normal(size=(size, size, 4))
    return v, f, c, params, r, cam, g


@pytest.fixture(scope="module")
def lib_grads():
    """Analytic gradients and library-FD gradients, computed once per case."""
    out = {}
    for case in CASES:
        v, f, c, params, r, cam, g = _setup(case)
        gv = np.asarray(r.vertex_grad(sr.Mesh(v, f, c), cam, g), dtype=np.float64)
        gc = np.asarray(r.color_grad(sr.Mesh(v, f, c), cam, g), dtype=np.float64)
        loss_v = lambda x: float(np.sum(g * r.render(sr.Mesh(x, f, c), cam)))  # noqa: E731
        loss_c = lambda x: float(np.sum(g * r.render(sr.Mesh(v, f, x), cam)))  # noqa: E731
        out[_id(case)] = dict(gv=gv, gc=gc, fd_v=_fd(loss_v, v), fd_c=_fd(loss_c, c))
    return out


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_render_is_float64(case):
    v, f, c, params, r, cam, g = _setup(case)
    img = r.render(sr.Mesh(v, f, c), cam)
    eye, R = ref.look_at(D0, case[1], case[2])
    want = ref.render(v, f, c, eye, R, **params)
    # in float64 the library and the reference agree to rounding
    assert np.abs(np.asarray(img, np.float64) - want).max() < 1e-9, \
        f"max |lib - ref| = {np.abs(img - want).max():.3g}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_vertex_grad_vs_library_fd(case, lib_grads):
    d = lib_grads[_id(case)]
    assert d["gv"].shape == d["fd_v"].shape
    assert np.linalg.norm(d["fd_v"]) > 1e-3, "degenerate test: the image does not depend on the vertices"
    assert _rel_err(d["gv"], d["fd_v"]) < RTOL, _report("vertex_grad", d["gv"], d["fd_v"])


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_color_grad_vs_library_fd(case, lib_grads):
    d = lib_grads[_id(case)]
    assert d["gc"].shape == d["fd_c"].shape
    assert np.linalg.norm(d["fd_c"]) > 1e-3
    assert _rel_err(d["gc"], d["fd_c"]) < RTOL, _report("color_grad", d["gc"], d["fd_c"])


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_grads_vs_reference_fd(case, lib_grads):
    """The independent check: FD of the NumPy reference's loss."""
    v, f, c, params, r, cam, g = _setup(case)
    eye, R = ref.look_at(D0, case[1], case[2])
    loss_v = lambda x: float(np.sum(g * ref.render(x, f, c, eye, R, **params)))  # noqa: E731
    loss_c = lambda x: float(np.sum(g * ref.render(v, f, x, eye, R, **params)))  # noqa: E731
    d = lib_grads[_id(case)]
    fd_v, fd_c = _fd(loss_v, v), _fd(loss_c, c)
    assert _rel_err(d["gv"], fd_v) < RTOL, _report("vertex_grad vs reference FD", d["gv"], fd_v)
    assert _rel_err(d["gc"], fd_c) < RTOL, _report("color_grad vs reference FD", d["gc"], fd_c)
