"""The Taichi renderer (float32, CPU) against the float64 NumPy reference of docs/math.md.

Tolerances (what is honest for float32 against float64):

* alpha: 1e-4 absolute. D = sigmoid(±d²/σ) has slope ≤ 1/(4σ) in d²; d² is computed
  from float32 NDC coordinates (error ~1e-7·d), which keeps alpha within ~1e-5.
* RGB: 1e-4 + the error float32 puts into the depth softmax. ẑ = (far - z)/(far - near)
  is stored with an absolute error of about ulp32(far)/(far - near) (~8e-8 for
  far = 100), and the weights use exp(ẑ/γ), so a relative weight error of
  ~ulp32(far)/((far - near)·γ) — 8e-4 at γ = 1e-4 — appears wherever two faces of
  different colour compete. We allow 1e-4 + 2·that.
* Pixels where float32 rounding legitimately flips a *discrete* decision are left out
  and counted: within 1e-3 (relative) of the culling threshold d² = σ ln(1/dist_eps - 1)
  (D jumps by dist_eps there and, for small γ, the colour by O(1)), and pixels touched
  by a (numerically) degenerate face.
"""
import numpy as np
import pytest

import reference as ref

sr = pytest.importorskip("softras_taichi")

D0 = 2.732
ULP32_FAR = float(np.spacing(np.float32(100.0)))


@pytest.fixture(scope="module", autouse=True)
def cpu_f32():
    sr.init("cpu")
    yield


# ----------------------------------------------------------------------- meshes
def _meshes():
    rng = np.random.default_rng(42)
    out = {}
    out["tris4"] = ref.random_triangles(4, seed=3)
    v, f = ref.icosphere(1, 0.9)
    out["ico1"] = (v, f, rng.uniform(0, 1, v.shape))
    v, f = ref.icosphere(2, 1.0)
    out["ico2"] = (v, f, rng.uniform(0, 1, v.shape))
    out["overlap"] = ref.overlapping_triangles()
    v, f = ref.cube(1.1)
    out["cube"] = (v, f, rng.uniform(0, 1, v.shape))
    return out


MESHES = _meshes()
VIEWS = [(0.0, 0.0), (30.0, 45.0), (-20.0, 200.0), (90.0, 0.0), (-90.0, 60.0)]
SIGMAS = [1e-4, 1e-3, 3e-2]
GAMMAS = [1e-4, 1e-2, 1.0]
SIZES = [16, 24, 32, 48, 64]


def _cases():
    cases = []
    # the full σ × γ grid on two meshes at one oblique view
    for name, size in [("ico1", 32), ("overlap", 24)]:
        for s in SIGMAS:
            for g in GAMMAS:
                cases.append((name, 30.0, 45.0, s, g, size))
    # every mesh from every view, cycling σ, γ and the image size
    k = 0
    for name in MESHES:
        for el, az in VIEWS:
            cases.append((name, el, az, SIGMAS[k % 3], GAMMAS[(k // 3) % 3], SIZES[k % 5]))
            k += 1
    return cases


CASES = _cases()


def _id(c):
    name, el, az, s, g, size = c
    return f"{name}-el{el:g}-az{az:g}-s{s:g}-g{g:g}-{size}px"


def _ref_camera(el, az, distance=D0):
    return ref.look_at(distance, el, az)


def _lib_mesh(v, f, c):
    return sr.Mesh(v, f, c)


def _worst(err, mask):
    e = np.where(mask, err, 0.0)
    idx = np.unravel_index(np.argmax(e), e.shape)
    return float(e[idx]), idx


def compare_soft(img, want, aux, sigma, gamma, extra=""):
    """Assert img (lib, float32) ≈ want (reference) with the tolerances above."""
    assert img.shape == want.shape, (img.shape, want.shape)
    assert img.dtype == np.float32
    assert np.all(np.isfinite(img))
    keep = (aux["cull_margin"] > 1e-3) & ~aux["degenerate"]
    left_out = int((~keep).sum())
    assert keep.mean() > 0.9, f"too many ambiguous pixels ({left_out}) {extra}"
    err = np.abs(img.astype(np.float64) - want)
    tol_a = 1e-4
    tol_rgb = 1e-4 + 2.0 * ULP32_FAR / (99.0 * gamma)
    ea, ia = _worst(err[..., 3], keep)
    ec, ic = _worst(err[..., :3].max(-1), keep)
    msg = (f"{extra} max |alpha err| {ea:.3g} at {ia} (tol {tol_a:.1g}), "
           f"max |rgb err| {ec:.3g} at {ic} (tol {tol_rgb:.2g}); "
           f"{left_out} ambiguous pixels left out")
    assert ea <= tol_a and ec <= tol_rgb, msg
    return ea, ec


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_soft_matches_reference(case):
    name, el, az, sigma, gamma, size = case
    v, f, c = MESHES[name]
    eye, R = _ref_camera(el, az)
    want, aux = ref.render(v, f, c, eye, R, size, sigma=sigma, gamma=gamma,
                           return_aux=True)
    r = sr.SoftRenderer(image_size=size, sigma=sigma, gamma=gamma)
    img = r.render(_lib_mesh(v, f, c), sr.Camera.look_at(D0, el, az))
    compare_soft(img, want, aux, sigma, gamma, _id(case))


NONDEFAULT = dict(eps=1e-2, near=2.0, far=3.5, dist_eps=1e-3, background=(0.2, 0.4, 0.9),
                  ambient=0.3, directional=0.6, light_direction=(1.0, 2.0, -0.5))


@pytest.mark.parametrize("name", ["ico2", "overlap", "cube"])
def test_soft_nondefault_parameters(name):
    """eps, near/far (so that some faces are skipped for colour), dist_eps, background,
    lighting and viewing angle all reach the pixels the way docs/math.md says."""
    v, f, c = MESHES[name]
    el, az, size, sigma, gamma = 20.0, -35.0, 32, 1e-3, 1e-2
    eye, R = _ref_camera(el, az, 2.9)
    want, aux = ref.render(v, f, c, eye, R, size, sigma=sigma, gamma=gamma,
                           viewing_angle=25.0, return_aux=True, **NONDEFAULT)
    r = sr.SoftRenderer(image_size=size, sigma=sigma, gamma=gamma, **NONDEFAULT)
    img = r.render(_lib_mesh(v, f, c), sr.Camera.look_at(2.9, el, az, viewing_angle=25.0))
    # far is only 3.5 here, so the float32 ẑ error is ulp32(z)/(far - near), far smaller
    compare_soft(img, want, aux, sigma, gamma, name)


@pytest.mark.parametrize("name", ["tris4", "ico2", "overlap", "cube"])
@pytest.mark.parametrize("view", [(0.0, 0.0), (30.0, 45.0), (90.0, 0.0)],
                         ids=lambda v: f"el{v[0]:g}-az{v[1]:g}")
def test_hard_matches_reference(name, view):
    v, f, c = MESHES[name]
    el, az = view
    size = 32
    eye, R = _ref_camera(el, az)
    want, aux = ref.hard_render(v, f, c, eye, R, size, return_aux=True)
    img = sr.HardRenderer(image_size=size).render(_lib_mesh(v, f, c),
                                                  sr.Camera.look_at(D0, el, az))
    assert img.shape == (size, size, 4) and img.dtype == np.float32
    # leave out centres within 1e-4 NDC of an edge (float32 may flip the inside test)
    # and depth near-ties between the two nearest covering faces
    keep = (aux["edge_d2"] > 1e-8) & (aux["z_gap"] > 1e-5)
    err = np.abs(img - want)
    ea, ia = _worst(err[..., 3], keep)
    ec, ic = _worst(err[..., :3].max(-1), keep)
    assert ea == 0 and ec < 1e-5, (f"max |alpha err| {ea:.3g} at {ia}, max |rgb err| "
                                   f"{ec:.3g} at {ic}; {(~keep).sum()} pixels left out")


def test_batched_cameras_equal_single_calls():
    v, f, c = MESHES["ico1"]
    mesh = _lib_mesh(v, f, c)
    views = [(0.0, 0.0), (30.0, 45.0), (90.0, 10.0)]
    r = sr.SoftRenderer(image_size=24, sigma=1e-3, gamma=1e-2)
    singles = np.stack([r.render(mesh, sr.Camera.look_at(D0, el, az)) for el, az in views])
    listed = r.render(mesh, [sr.Camera.look_at(D0, el, az) for el, az in views])
    batched = r.render(mesh, sr.Camera.look_at(D0, [e for e, _ in views],
                                               [a for _, a in views]))
    assert listed.shape == batched.shape == (3, 24, 24, 4)
    np.testing.assert_allclose(listed, singles, atol=1e-6, err_msg="list of cameras")
    np.testing.assert_allclose(batched, singles, atol=1e-6, err_msg="batched Camera")
    hr = sr.HardRenderer(image_size=24)
    hs = np.stack([hr.render(mesh, sr.Camera.look_at(D0, el, az)) for el, az in views])
    np.testing.assert_allclose(
        hr.render(mesh, [sr.Camera.look_at(D0, el, az) for el, az in views]), hs, atol=1e-6)


@pytest.mark.parametrize("view", [(0.0, 0.0), (30.0, 45.0), (90.0, 0.0), (-90.0, 60.0),
                                  (45.0, -170.0)], ids=lambda v: f"el{v[0]:g}-az{v[1]:g}")
def test_camera_matches_reference(view):
    el, az = view
    cam = sr.Camera.look_at(2.5, el, az)
    eye, R = ref.look_at(2.5, el, az)
    np.testing.assert_allclose(np.asarray(cam.eye()).reshape(3), eye, atol=1e-6)
    np.testing.assert_allclose(np.asarray(cam.rotation()).reshape(3, 3), R, atol=1e-6)


@pytest.mark.parametrize("el", [90.0, -90.0])
@pytest.mark.parametrize("renderer", ["soft", "hard"])
def test_pole_view_orientation(el, renderer):
    """At el = ±90° the camera is the limit from just below the pole at the same
    azimuth (docs/math.md): at az = 0 world +x is on the image's right and the image's up
    points away from the +z side, i.e. towards -z at el = 90 (towards +z at el = -90).
    (float32 gives cos(radians(90)) = -4.4e-8 < 0: a sign test on it flips the image.)"""
    up_world = -1.0 if el > 0 else 1.0
    # a marker on +x (should be right) and one on the up side (should be on top)
    v = np.array([[0.45, 0, 0], [0.75, 0, 0.12], [0.75, 0, -0.12],
                  [0, 0, 0.45 * up_world], [0.12, 0, 0.75 * up_world],
                  [-0.12, 0, 0.75 * up_world]])
    f = np.array([[0, 1, 2], [3, 4, 5]])
    c = np.array([[1.0, 0, 0]] * 3 + [[0, 1.0, 0]] * 3)
    S = 32
    cam = sr.Camera.look_at(D0, el, 0.0)
    if renderer == "soft":
        img = sr.SoftRenderer(image_size=S, sigma=1e-5).render(sr.Mesh(v, f, c), cam)
    else:
        img = sr.HardRenderer(image_size=S).render(sr.Mesh(v, f, c), cam)
    red = np.argwhere((img[..., 0] > 0.2) & (img[..., 3] > 0.5))
    green = np.argwhere((img[..., 1] > 0.2) & (img[..., 3] > 0.5))
    assert len(red) and len(green), "markers not drawn"
    assert red[:, 1].min() >= S // 2, f"+x marker should be on the right, columns {red[:, 1]}"
    assert green[:, 0].max() < S // 2, f"'up' marker should be on top, rows {green[:, 0]}"
