"""The fast soft pass (soft.py: online max-shift forward, hand-written backward)
against the readable one that Taichi differentiates itself (aggregate.py).

Both must agree to float64 rounding on images and on every gradient the scene
exposes (vertices, colours, pose, camera), including the awkward cases: pole
views, degenerate and edge-on faces, faces crossing the near plane.
"""
import numpy as np
import pytest

import softras_taichi as sr


@pytest.fixture(scope="module", autouse=True)
def cpu_f64():
    sr.init("cpu", precision="f64")


def _meshes():
    rng = np.random.default_rng(3)
    ico = sr.icosphere(2, radius=0.6)
    jitter = sr.Mesh(ico.vertices + 0.01 * rng.normal(size=ico.vertices.shape), ico.faces,
                     rng.uniform(size=ico.vertices.shape))
    spiky = sr.TARGETS["spiky"]()
    # a face in the plane x = −0.5 (edge-on from the front camera), a face crossing the
    # near plane (z' from 0.5 to 2.2 seen from the front) and an ordinary one behind.
    # (A zero-area face is left to test_robustness: where its edges overlap, d² ties
    # between segments and any of them is a valid subgradient.)
    awkward = sr.Mesh(
        np.array([[-0.5, -0.2, 0.0], [-0.5, 0.4, 0.0], [-0.5, 0.1, 0.5],
                  [-0.3, -0.3, 2.2], [0.4, -0.2, 0.5], [0.0, 0.5, 1.0],
                  [-0.6, -0.6, -0.5], [0.7, -0.5, -0.5], [0.0, 0.7, -0.5]]),
        np.arange(9).reshape(3, 3), rng.uniform(size=(9, 3)))
    return {"ico": jitter, "spiky": spiky, "awkward": awkward}


MESHES = _meshes()
CAMS = {
    "two-views": sr.Camera.look_at(distance=[2.5, 2.0], elevation=[20, 90], azimuth=[30, 10]),
    "front": sr.Camera.look_at(distance=2.732, elevation=0, azimuth=0),
}
SETTINGS = [(1e-4, 1e-4), (3e-3, 1e-3), (1e-2, 1e-1)]


@pytest.mark.parametrize("sigma,gamma", SETTINGS, ids=lambda v: f"{v:g}")
@pytest.mark.parametrize("cam", list(CAMS))
@pytest.mark.parametrize("mesh", list(MESHES))
def test_fast_pass_equals_autodiff(mesh, cam, sigma, gamma):
    m, c = MESHES[mesh], CAMS[cam]
    kw = dict(image_size=24, sigma=sigma, gamma=gamma, background=(0.2, 0.3, 0.4))
    fast, auto = sr.SoftRenderer(**kw), sr.SoftRenderer(autodiff=True, **kw)
    img_f, img_a = fast.render(m, c), auto.render(m, c)
    err = np.abs(img_f - img_a).max()
    assert err < 1e-10, f"images differ by {err:.3g} (expected float64 rounding, < 1e-10)"
    g = np.random.default_rng(0).normal(size=img_f.shape)
    gf, ga = fast.grads(m, c, g), auto.grads(m, c, g)
    for name in ga:
        scale = np.abs(ga[name]).max()
        diff = np.abs(gf[name] - ga[name]).max()
        assert diff <= 1e-9 * max(scale, 1e-12), (
            f"d/d{name}: hand-written backward differs from autodiff by {diff:.3g} "
            f"(max |grad| {scale:.3g}); expected float64 rounding")
    assert np.abs(gf["vertices"]).max() > 0, "a gradient of zero would pass trivially"


def test_pairs_below_rounding_are_skipped_safely():
    """The fast pass skips what cannot change the result at this precision (soft.cutoffs):
    colour terms of faces far behind the nearest one, and silhouette terms once
    P = Π(1 − D) fell below rounding.  Three large triangles stacked 0.8 apart in depth
    trigger both (two of them cover the centre with D = sigmoid(30), so P ≈ e^-60); a
    fourth only 5γ (in ẑ) behind the first must keep its weight e^-5.  Images and every
    gradient must still equal autodiff's to float64 rounding."""
    from softras_taichi import soft
    rng = np.random.default_rng(7)
    tri = np.array([[-0.9, -0.8, 0.0], [0.9, -0.7, 0.0], [0.0, 0.9, 0.0]])
    verts = np.concatenate([tri * s + [0.05 * k, 0.03 * k, -0.8 * k] for k, s in enumerate((0.6, 0.8, 1.0))]
                           + [tri[::-1] * 0.5 + [0.1, -0.1, -5 * 99 * 1e-4]])
    mesh = sr.Mesh(verts, np.arange(12).reshape(4, 3), rng.uniform(size=(12, 3)))
    cam = sr.Camera.look_at(distance=3.0, elevation=0, azimuth=0)
    kw = dict(image_size=24, sigma=1e-4, gamma=1e-4, background=(0.2, 0.3, 0.4))
    fast, auto = sr.SoftRenderer(**kw), sr.SoftRenderer(autodiff=True, **kw)
    scene = fast.scene(mesh, cam)
    scene.render()
    cut, p_floor = soft.cutoffs(fast.gamma, fast.dist_eps, "f64")
    assert 0.8 / 99.0 > cut, "the triangles must lie beyond the depth cut of each other"
    assert (scene.uncovered() < p_floor).sum() > 20, "the silhouette must saturate somewhere"
    img_f, img_a = fast.render(mesh, cam), auto.render(mesh, cam)
    err = np.abs(img_f - img_a).max()
    assert err < 1e-10, f"images differ by {err:.3g} (expected float64 rounding, < 1e-10)"
    g = rng.normal(size=img_f.shape)
    gf, ga = fast.grads(mesh, cam, g), auto.grads(mesh, cam, g)
    for name in ga:
        scale = np.abs(ga[name]).max()
        diff = np.abs(gf[name] - ga[name]).max()
        assert diff <= 1e-9 * max(scale, 1e-12), (
            f"d/d{name}: fast pass differs from autodiff by {diff:.3g} (max |grad| {scale:.3g})")


@pytest.mark.parametrize("size,tile", [(30, "auto"), (33, 8), (33, 33), (7, "auto")])
def test_fast_pass_equals_autodiff_at_sizes_off_the_tiles(size, tile):
    """Image sides that are no multiple of the tile (30 and 33 px: partial tiles on the right
    and bottom), a tile that is the whole view (33 px) and an image smaller than any tile
    the auto choice could make (7 px) must match autodiff as well."""
    m, c = MESHES["ico"], CAMS["two-views"]
    kw = dict(image_size=size, sigma=3e-3, gamma=1e-3, background=(0.2, 0.3, 0.4), tile=tile)
    fast, auto = sr.SoftRenderer(**kw), sr.SoftRenderer(autodiff=True, **kw)
    img_f, img_a = fast.render(m, c), auto.render(m, c)
    assert np.abs(img_f - img_a).max() < 1e-10
    assert img_f[..., 3].min() < 0.01 < 0.99 < img_f[..., 3].max(), "the sphere must be in view, not fill it"
    g = np.random.default_rng(1).normal(size=img_f.shape)
    gf, ga = fast.grads(m, c, g), auto.grads(m, c, g)
    for name in ga:
        assert np.abs(gf[name] - ga[name]).max() <= 1e-9 * max(np.abs(ga[name]).max(), 1e-12), name
