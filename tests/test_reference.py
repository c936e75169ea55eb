"""Sanity tests of the NumPy reference itself (tests/reference.py): numpy only, fast.

These pin the reference to the formulas of docs/math.md with hand-checkable cases, so that when the
library and the reference disagree we know which one to believe.
"""
import numpy as np
import pytest

import reference as ref

D0 = 2.732
TAN30 = np.tan(np.deg2rad(30.0))


def disc_radius_ndc(rho, d, viewing_angle=30.0):
    """NDC radius of the perspective silhouette (a circle) of a sphere of radius rho at
    distance d from the eye: the tangent cone has half-angle asin(rho/d)."""
    return np.tan(np.arcsin(rho / d)) / np.tan(np.deg2rad(viewing_angle))


def point_in_triangle(px, py, tri):
    """Strict point-in-triangle by the signs of three edge functions (winding-free)."""
    s = []
    for k in range(3):
        (ax, ay), (bx, by) = tri[k], tri[(k + 1) % 3]
        s.append((bx - ax) * (py - ay) - (by - ay) * (px - ax))
    s = np.array(s)
    return np.all(s > 0, axis=0) | np.all(s < 0, axis=0)


# ------------------------------------------------------------------------ camera
@pytest.mark.parametrize("el", [-90.0, -45.0, 0.0, 30.0, 89.0, 90.0])
@pytest.mark.parametrize("az", [0.0, 45.0, 90.0, 180.0, -135.0])
def test_look_at_orthonormal_finite(el, az):
    eye, R = ref.look_at(D0, el, az)
    assert np.all(np.isfinite(eye)) and np.all(np.isfinite(R))
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    # rows r, u, f with u = r × f: camera coords are left-handed (x right, y up,
    # z forward), so det R = -1
    np.testing.assert_allclose(np.linalg.det(R), -1.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(eye), D0, rtol=1e-12)
    # f looks at the origin, r is horizontal, u has a non-negative y (camera upright)
    np.testing.assert_allclose(R[2], -eye / D0, atol=1e-12)
    assert abs(R[0, 1]) < 1e-12
    assert R[1, 1] >= -1e-12
    # the origin is straight ahead at depth d
    np.testing.assert_allclose(R @ (np.zeros(3) - eye), [0, 0, D0], atol=1e-12)


def test_look_at_default_view():
    eye, R = ref.look_at(D0, 0.0, 0.0)
    np.testing.assert_allclose(eye, [0, 0, D0], atol=1e-15)
    np.testing.assert_allclose(R, [[1, 0, 0], [0, 1, 0], [0, 0, -1]], atol=1e-15)


@pytest.mark.parametrize("az", [0.0, 30.0, 90.0, -120.0])
@pytest.mark.parametrize("pole", [90.0, -90.0])
def test_look_at_pole_is_limit_from_below(az, pole):
    _, R_pole = ref.look_at(D0, pole, az)
    _, R_near = ref.look_at(D0, pole - np.sign(pole) * 1e-6, az)
    np.testing.assert_allclose(R_pole, R_near, atol=1e-7)
    np.testing.assert_allclose(R_pole[0], [np.cos(np.deg2rad(az)), 0, -np.sin(np.deg2rad(az))],
                               atol=1e-12)


def test_plus_x_world_is_on_image_right_at_default_view():
    eye, R = ref.look_at(D0, 0.0, 0.0)
    p = ref.project(np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]), eye, R)
    assert p[0, 0] > 0 and abs(p[0, 1]) < 1e-15      # +x world -> right
    assert p[1, 1] > 0 and abs(p[1, 0]) < 1e-15      # +y world -> up
    np.testing.assert_allclose(p[0, 0], 0.5 / (D0 * TAN30), rtol=1e-12)


def test_azimuth_90_camera_on_plus_x():
    eye, R = ref.look_at(D0, 0.0, 90.0)
    np.testing.assert_allclose(eye, [D0, 0, 0], atol=1e-12)
    # looking along -x with up +y, the viewer's right is world -z
    p = ref.project(np.array([[0.0, 0.0, -0.5], [0.0, 0.0, 0.5], [0.5, 0.0, 0.0]]), eye, R)
    assert p[0, 0] > 0 and p[1, 0] < 0
    np.testing.assert_allclose(p[2, :2], [0, 0], atol=1e-12)
    np.testing.assert_allclose(p[2, 2], D0 - 0.5, rtol=1e-12)


def test_elevation_90_looks_down():
    eye, R = ref.look_at(D0, 90.0, 0.0)
    np.testing.assert_allclose(eye, [0, D0, 0], atol=1e-12)
    # limit from the +z side at az=0: right = +x, image up = -z (away from the camera)
    p = ref.project(np.array([[0.5, 0, 0], [0, 0, -0.5], [0, 0.5, 0]]), eye, R)
    assert p[0, 0] > 0 and abs(p[0, 1]) < 1e-12
    assert p[1, 1] > 0 and abs(p[1, 0]) < 1e-12
    np.testing.assert_allclose(p[2], [0, 0, D0 - 0.5], atol=1e-12)


@pytest.mark.parametrize("el,az", [(0, 0), (30, 45), (-60, 200), (90, 10)])
def test_camera_right_is_image_right(el, az):
    """Mirror convention: a triangle on the camera's right lands on the image's right."""
    eye, R = ref.look_at(D0, el, az)
    r, u, f = R
    centre = eye + 2.0 * f + 0.5 * r + 0.2 * u            # right of and above the axis
    tri = np.stack([centre, centre + 0.15 * r, centre + 0.15 * u])
    img = ref.hard_render(tri, [[0, 1, 2]], None, eye, R, image_size=32)
    rows, cols = np.nonzero(img[..., 3] > 0.5)
    assert len(cols) > 0
    assert cols.min() >= 16, "triangle on the camera's right must be on the image's right"
    assert rows.max() < 16, "triangle above the axis must be in the top half (row 0 on top)"


# ------------------------------------------------------------------- pixel grid
def test_pixel_centres():
    X, Y = ref.pixel_centres(4)
    np.testing.assert_allclose(X[0], [-0.75, -0.25, 0.25, 0.75])
    np.testing.assert_allclose(Y[:, 0], [0.75, 0.25, -0.25, -0.75])


# ---------------------------------------------------------------- single triangle
def _facing_triangle():
    # a triangle in the z = 0 plane, seen from the default camera at +z
    v = np.array([[-0.6, -0.5, 0.0], [0.7, -0.4, 0.0], [0.1, 0.6, 0.0]])
    return v, np.array([[0, 1, 2]])


def test_single_triangle_covers_expected_pixels():
    v, f = _facing_triangle()
    S = 32
    eye, R = ref.look_at(D0, 0, 0)
    X, Y = ref.pixel_centres(S)
    tri_ndc = v[:, :2] / (D0 * TAN30)                  # z' = d for the z = 0 plane
    expected = point_in_triangle(X, Y, tri_ndc)
    assert 50 < expected.sum() < S * S - 50

    hard = ref.hard_render(v, f, None, eye, R, S)
    np.testing.assert_array_equal(hard[..., 3] > 0.5, expected)
    soft = ref.render(v, f, None, eye, R, S, sigma=1e-6, gamma=1e-4)
    np.testing.assert_array_equal(soft[..., 3] > 0.5, expected)

    # the face normal is ±z, so n·l = 0 with l = +y: ambient only (0.5 of white)
    np.testing.assert_allclose(hard[expected, :3], 0.5, atol=1e-12)
    np.testing.assert_allclose(hard[~expected, :3], 0.0, atol=1e-12)


def test_single_triangle_formula_at_one_pixel():
    """D, the culling and the aggregation at a few pixels, evaluated by hand."""
    v, f = _facing_triangle()
    S, sigma, gamma, eps = 16, 3e-3, 1e-2, 1e-3
    colors = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    eye, R = ref.look_at(D0, 0, 0)
    img = ref.render(v, f, colors, eye, R, S, sigma=sigma, gamma=gamma, eps=eps)
    X, Y = ref.pixel_centres(S)
    tri = v[:, :2] / (D0 * TAN30)
    thr = sigma * np.log(1 / 1e-4 - 1)
    checked = {"inside": 0, "outside": 0, "culled": 0}
    for (r, c) in [(8, 8), (2, 8), (12, 3), (15, 15), (0, 0), (13, 11), (9, 12)]:
        px, py = X[r, c], Y[r, c]
        # distance² to the three segments by brute force sampling-free formula
        d2 = min(np.min(np.sum((np.array([px, py]) - (a + t[:, None] * (b - a))) ** 2, 1))
                 for a, b in [(tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0])]
                 for t in [np.linspace(0, 1, 200001)])
        inside = point_in_triangle(px, py, tri)
        if not inside and d2 >= thr:
            D = 0.0
            checked["culled"] += 1
        else:
            D = 1 / (1 + np.exp(-(d2 if inside else -d2) / sigma))
            checked["inside" if inside else "outside"] += 1
        assert img[r, c, 3] == pytest.approx(D, abs=1e-7)
        # colour: clamped barycentrics of the pixel centre, lighting 0.5, z = d
        A = np.array([[tri[0, 0], tri[1, 0], tri[2, 0]], [tri[0, 1], tri[1, 1], tri[2, 1]],
                      [1, 1, 1]])
        w = np.linalg.solve(A, [px, py, 1])
        w = np.clip(w, 0, 1)
        w /= w.sum()
        C = 0.5 * (w @ colors)
        zhat = (100 - D0) / 99
        wj = D * np.exp(zhat / gamma) / (np.exp(eps / gamma) + D * np.exp(zhat / gamma))
        np.testing.assert_allclose(img[r, c, :3], wj * C, atol=1e-9)
    assert all(n > 0 for n in checked.values()), checked


def test_depth_is_perspective_correct():
    """1/Σ(w̃/z') at an inside pixel is the depth where the pixel's ray meets the plane."""
    eye, R = ref.look_at(D0, 20, 35)
    rng = np.random.default_rng(0)
    v = rng.uniform(-0.7, 0.7, (3, 3))
    p = ref.project(v, eye, R)
    vc = (v - eye) @ R.T
    n = np.cross(vc[1] - vc[0], vc[2] - vc[0])
    X, Y = ref.pixel_centres(48)
    w, _, _ = ref.barycentrics(p[:, :2], X, Y)
    inside = np.all(w > 0, axis=0)
    assert inside.sum() > 10
    z = ref._perspective_z(ref._clamped_bary(w), p[:, 2])
    # ray (x·tanθ, y·tanθ, 1)·t meets the plane n·(q - vc0) = 0 at depth t
    dirs = np.stack([X * TAN30, Y * TAN30, np.ones_like(X)], -1)
    t = (n @ vc[0]) / (dirs @ n)
    np.testing.assert_allclose(z[inside], t[inside], rtol=1e-12)


def test_lighting_up_and_down_faces():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1.0]])
    n = ref.face_normals(v, [[0, 1, 2], [0, 2, 1]])
    # (v2 - v1) × (v0 - v1) = (-1, 0, 1) × (-1, 0, 0) = (0, -1, 0) for the first face
    np.testing.assert_allclose(n, [[0, -1, 0], [0, 1, 0]], atol=1e-15)
    light = ref.face_lighting(v, [[0, 1, 2], [0, 2, 1]], 0.5, 0.5, (0, 3, 0))
    np.testing.assert_allclose(light, [0.5, 1.0])
    # a zero-area face gets ambient only
    vz = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0.0]])
    np.testing.assert_allclose(ref.face_lighting(vz, [[0, 1, 2]]), [0.5])


@pytest.mark.parametrize("level", [0, 1, 2])
def test_helper_meshes_wound_outward(level):
    v, f = ref.icosphere(level)
    n = ref.face_normals(v, f)
    assert np.all(np.sum(n * v[f].mean(1), 1) > 0)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-12)
    assert len(f) == 20 * 4 ** level
    vc, fc = ref.cube(1.0)
    n = ref.face_normals(vc, fc)
    np.testing.assert_allclose(np.sum(n * vc[fc].mean(1), 1), 0.5, atol=1e-12)


# ------------------------------------------------------------------ aggregation
def test_empty_pixels_are_background_and_alpha_zero():
    v, f = _facing_triangle()
    eye, R = ref.look_at(D0, 0, 0)
    img = ref.render(v * 0.1, f, None, eye, R, 16, background=(0.2, 0.3, 0.4))
    np.testing.assert_allclose(img[0, 0], [0.2, 0.3, 0.4, 0.0])


def test_max_shift_no_overflow_tiny_gamma():
    v, f = ref.icosphere(1)
    eye, R = ref.look_at(D0, 30, 40)
    img = ref.render(v, f, np.full_like(v, 0.7), eye, R, 16, sigma=1e-3, gamma=1e-7)
    assert np.all(np.isfinite(img))
    assert img.min() >= 0 and img[..., :3].max() <= 0.7 + 1e-12


def test_near_plane_skips_colour_but_keeps_silhouette():
    v, f = _facing_triangle()
    eye, R = ref.look_at(D0, 0, 0)
    a = ref.render(v, f, None, eye, R, 16, sigma=1e-4, near=1.0)
    b = ref.render(v, f, None, eye, R, 16, sigma=1e-4, near=3.0)   # z = 2.732 < near
    np.testing.assert_allclose(a[..., 3], b[..., 3])
    assert a[..., :3].max() > 0.4 and b[..., :3].max() == 0.0


def test_behind_camera_face_not_drawn():
    v, f = _facing_triangle()
    eye, R = ref.look_at(D0, 0, 0)
    img = ref.render(v + [0, 0, D0 + 0.5], f, None, eye, R, 16, sigma=1e-2)
    assert np.all(img == 0)


def test_two_overlapping_triangles_front_wins():
    v = np.array([[-0.5, -0.5, 0.3], [0.5, -0.5, 0.3], [0.0, 0.5, 0.3],
                  [-0.6, -0.4, -0.3], [0.6, -0.4, -0.3], [0.0, 0.6, -0.3]])
    f = np.array([[0, 1, 2], [3, 4, 5]])
    colors = np.array([[1, 0, 0]] * 3 + [[0, 0, 1]] * 3, dtype=float)
    eye, R = ref.look_at(D0, 0, 0)
    hard = ref.hard_render(v, f, colors, eye, R, 32)
    soft = ref.render(v, f, colors, eye, R, 32, sigma=1e-6, gamma=1e-5)
    c = hard[16, 16]
    np.testing.assert_allclose(c, [0.5, 0, 0, 1])                 # the front (red) face
    np.testing.assert_allclose(soft[16, 16], c, atol=1e-9)


# ---------------------------------------------------------------------- limits
def test_soft_tends_to_hard_away_from_edges():
    v, f = ref.icosphere(1)
    rng = np.random.default_rng(1)
    colors = rng.uniform(0, 1, v.shape)
    eye, R = ref.look_at(D0, 25, -40)
    S = 32
    hard, aux = ref.hard_render(v, f, colors, eye, R, S, return_aux=True)
    soft = ref.render(v, f, colors, eye, R, S, sigma=1e-7, gamma=1e-6)
    mask = aux["edge_d2"] > (1.5 * 2 / S) ** 2
    assert mask.sum() > 100
    np.testing.assert_allclose(soft[mask], hard[mask], atol=1e-6)


@pytest.mark.parametrize("sigma,tol", [(None, 0.01), (1e-5, 0.01), (1e-4, 0.02)])
def test_sphere_silhouette_area(sigma, tol):
    """Icosphere level 3 (inscribed: slightly smaller than the sphere) vs the disc."""
    v, f = ref.icosphere(3)
    eye, R = ref.look_at(D0, 20, 30)
    S = 64
    if sigma is None:
        img = ref.hard_render(v, f, None, eye, R, S)
    else:
        img = ref.render(v, f, None, eye, R, S, sigma=sigma)
    area = np.pi * (disc_radius_ndc(1.0, D0) * S / 2) ** 2
    got = img[..., 3].sum()
    assert abs(got / area - 1) < tol, f"alpha sum {got:.1f} px vs disc {area:.1f} px"
