"""Limits and geometry of the soft rasterizer (library, float32 CPU).

* σ, γ -> 0: the soft image tends to the hard (z-buffer) image away from edges.
* A sphere's silhouette (icosphere level 4) has the area of the analytic projected
  disc: under perspective the silhouette of a sphere of radius ρ at distance d is a
  circle of NDC radius tan(asin(ρ/d)) / tan(θ).
* Pushing a silhouette vertex outward raises the alpha sum, and vertex_grad agrees.
"""
import numpy as np
import pytest

import reference as ref

sr = pytest.importorskip("softras_taichi")

D0 = 2.732


@pytest.fixture(scope="module", autouse=True)
def cpu_f32():
    sr.init("cpu")
    yield


def disc_area_px(rho, d, size, viewing_angle=30.0):
    r_ndc = np.tan(np.arcsin(rho / d)) / np.tan(np.deg2rad(viewing_angle))
    return np.pi * (r_ndc * size / 2) ** 2


@pytest.fixture(scope="module")
def ico4():
    return ref.icosphere(4, 1.0)


@pytest.mark.parametrize("name,view", [("ico2", (25.0, -40.0)), ("overlap", (10.0, 20.0)),
                                       ("cube", (35.0, 40.0)), ("ico2", (90.0, 0.0))],
                         ids=["ico2-el25-az-40", "overlap-el10-az20", "cube-el35-az40",
                              "ico2-el90-az0"])
def test_soft_tends_to_hard_away_from_edges(name, view):
    rng = np.random.default_rng(2)
    if name == "ico2":
        v, f = ref.icosphere(2, 0.9)
        c = rng.uniform(0, 1, v.shape)
    elif name == "cube":
        v, f = ref.cube(1.1)
        c = rng.uniform(0, 1, v.shape)
    else:
        v, f, c = ref.overlapping_triangles()
    el, az = view
    S = 32
    mesh, cam = sr.Mesh(v, f, c), sr.Camera.look_at(D0, el, az)
    soft = sr.SoftRenderer(image_size=S, sigma=1e-7, gamma=1e-5).render(mesh, cam)
    hard = sr.HardRenderer(image_size=S).render(mesh, cam)
    eye, R = ref.look_at(D0, el, az)
    _, aux = ref.hard_render(v, f, c, eye, R, S, return_aux=True)
    # pixels farther than 1.5 px from every projected edge (hidden edges included)
    away = aux["edge_d2"] > (1.5 * 2.0 / S) ** 2
    assert away.sum() > 0.3 * S * S
    err = np.abs(soft.astype(np.float64) - hard)[away]
    assert err.max() < 1e-4, (f"soft (σ=1e-7, γ=1e-5) vs hard away from edges: max |err| "
                              f"{err.max():.3g} (alpha {err[:, 3].max():.3g}, rgb "
                              f"{err[:, :3].max():.3g}) over {away.sum()} pixels")


@pytest.mark.parametrize("rho,d,view,size", [(1.0, D0, (20.0, 30.0), 64),
                                             (0.6, 3.5, (-45.0, 100.0), 96)],
                         ids=["rho1-d2.732", "rho0.6-d3.5"])
def test_sphere_silhouette_area(ico4, rho, d, view, size):
    v, f = ico4
    mesh = sr.Mesh(v * rho, f)
    cam = sr.Camera.look_at(d, *view)
    want = disc_area_px(rho, d, size)
    soft = sr.SoftRenderer(image_size=size, sigma=1e-5).render(mesh, cam)[..., 3].sum()
    hard = sr.HardRenderer(image_size=size).render(mesh, cam)[..., 3].sum()
    # level 4 is inscribed in the sphere (silhouette ~0.1 % smaller); the soft edge of
    # σ = 1e-5 adds ~0.5 % per layer of faces at the rim; the pixel count ± a few px
    for label, got in [("soft σ=1e-5", soft), ("hard", hard)]:
        assert abs(got / want - 1) < 0.02, \
            f"{label}: alpha sum {got:.1f} px vs analytic disc {want:.1f} px ({got / want - 1:+.2%})"


def test_pushing_silhouette_vertex_outward_grows_alpha():
    v, f = ref.icosphere(2, 1.0)
    el, az, S = 15.0, 25.0, 64
    eye, R = ref.look_at(D0, el, az)
    p = ref.project(v, eye, R)
    radial = np.hypot(p[:, 0], p[:, 1])
    k = int(np.argmax(radial))                      # a vertex on the silhouette rim
    u2 = p[k, :2] / radial[k]                       # outward, in the image plane
    direction = u2[0] * R[0] + u2[1] * R[1]         # the same direction in the world
    r = sr.SoftRenderer(image_size=S, sigma=1e-3)
    cam = sr.Camera.look_at(D0, el, az)
    base = r.render(sr.Mesh(v, f), cam)[..., 3].sum()
    moved = v.copy()
    moved[k] += 0.05 * direction
    pushed = r.render(sr.Mesh(moved, f), cam)[..., 3].sum()
    assert pushed > base + 1.0, f"alpha sum {base:.3f} -> {pushed:.3f} px"

    g = np.zeros((S, S, 4))
    g[..., 3] = 1.0
    grad = np.asarray(r.vertex_grad(sr.Mesh(v, f), cam, g))
    slope = float(grad[k] @ direction)
    assert slope > 0, f"d(alpha sum)/d(outward) = {slope:.4g}, should be > 0"
    # and it is the right size: a small step agrees with the slope to first order
    small = v.copy()
    small[k] += 1e-3 * direction
    fd = (r.render(sr.Mesh(small, f), cam)[..., 3].sum() - base) / 1e-3
    assert abs(fd - slope) < 0.05 * abs(slope) + 0.5, f"slope {slope:.4g} vs FD {fd:.4g}"
    # pushing it inward lowers the alpha sum
    inward = v.copy()
    inward[k] -= 0.05 * direction
    assert r.render(sr.Mesh(inward, f), cam)[..., 3].sum() < base - 1.0
