"""Issue 2, points 7 and 8: extremes give finite images and gradients; bad input
gives a ValueError/TypeError whose message names the problem."""
import numpy as np
import pytest

import softras_taichi as sr


@pytest.fixture(scope="module", autouse=True)
def cpu():
    sr.init("cpu")


def _finite_everything(r, mesh, cam):
    img = r.render(mesh, cam)
    assert np.all(np.isfinite(img)), "image has NaN/inf"
    assert img.min() >= -1e-6 and img[..., 3].max() <= 1 + 1e-6
    g = np.random.default_rng(0).normal(size=img.shape)
    for name, grad in r.grads(mesh, cam, g).items():
        assert np.all(np.isfinite(grad)), f"d/d{name} has NaN/inf"
    return img


SPHERE = sr.icosphere(2, radius=0.6)
CAM = sr.Camera.look_at(elevation=25, azimuth=40)


@pytest.mark.parametrize("sigma", [1e-9, 1e-6, 1e-4, 1.0, 10.0])
@pytest.mark.parametrize("gamma", [1e-7, 1e-4, 10.0])
def test_sigma_gamma_extremes_stay_finite(sigma, gamma):
    img = _finite_everything(sr.SoftRenderer(image_size=24, sigma=sigma, gamma=gamma), SPHERE, CAM)
    assert img[..., 3].max() > 0.4, "the sphere vanished"


def test_degenerate_and_edge_on_faces():
    v = np.array([[0, 0, 0.2], [0.3, 0.3, 0.2], [0.6, 0.6, 0.2],      # collinear: zero area
                  [0.1, 0.1, 0.0], [0.1, 0.1, 0.0], [0.4, -0.2, 0.0],  # two equal vertices
                  [-0.5, -0.2, 0.0], [-0.5, 0.4, 0.0], [-0.5, 0.1, 0.5],  # edge-on from the front
                  [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # a point
    mesh = sr.Mesh(v, np.arange(12).reshape(4, 3))
    for sigma in (1e-9, 1e-4, 1e-2):
        _finite_everything(sr.SoftRenderer(image_size=32, sigma=sigma), mesh, sr.Camera.look_at())
    assert np.all(np.isfinite(sr.HardRenderer(image_size=32).render(mesh, sr.Camera.look_at())))


def test_faces_behind_or_across_the_camera():
    # distance 0.4 puts the camera inside a unit sphere: faces behind it, beside it
    # (crossing z' = 0) and in front; and a mesh that reaches behind the eye
    inside = sr.icosphere(2, radius=1.0)
    img = _finite_everything(sr.SoftRenderer(image_size=24), inside, sr.Camera.look_at(distance=0.4))
    assert img[..., 3].mean() > 0.9, "from inside a closed sphere every pixel should be covered"
    long = sr.Mesh(np.array([[-0.3, -0.3, 5.0], [0.3, -0.3, -1.0], [0.0, 0.4, -1.0]]), [[0, 1, 2]])
    _finite_everything(sr.SoftRenderer(image_size=24), long, sr.Camera.look_at())
    behind = sr.Mesh(np.array([[-0.3, -0.3, 4.0], [0.3, -0.3, 4.0], [0.0, 0.4, 4.0]]), [[0, 1, 2]])
    img = _finite_everything(sr.SoftRenderer(image_size=24), behind, sr.Camera.look_at())
    assert img[..., 3].max() == 0, "a face behind the camera must not be drawn"


def test_faces_crossing_the_near_plane_keep_silhouette_but_lose_colour():
    near_face = sr.Mesh(np.array([[-1, -1, 2.0], [1, -1, 2.0], [0, 1, 2.0]]), [[0, 1, 2]], colors=np.ones((3, 3)))
    img = _finite_everything(sr.SoftRenderer(image_size=16), near_face, sr.Camera.look_at())  # z' = 0.732 < near
    assert img[..., 3].max() > 0.99 and img[..., :3].max() == 0


@pytest.mark.parametrize("kwargs,words", [
    (dict(sigma=0), "sigma"), (dict(sigma=-1e-4), "sigma"), (dict(gamma=0), "gamma"),
    (dict(sigma=float("nan")), "sigma"), (dict(image_size=0), "image_size"),
    (dict(image_size=-5), "image_size"), (dict(near=10.0, far=5.0), "near"),
    (dict(near=1.0, far=1.0), "near"), (dict(dist_eps=0.7), "dist_eps"),
    (dict(background=(1, 2)), "background"), (dict(light_direction=(0, 0, 0)), "light_direction"),
])
def test_bad_renderer_settings(kwargs, words):
    with pytest.raises(ValueError, match=words):
        sr.SoftRenderer(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(image_size=32.5), dict(image_size="64"), dict(sigma="big"),
                                    dict(image_size=True)])
def test_bad_setting_types(kwargs):
    with pytest.raises(TypeError):
        sr.SoftRenderer(**kwargs)


def test_bad_render_arguments():
    r = sr.SoftRenderer(image_size=8)
    with pytest.raises(TypeError, match="sr.Mesh"):
        r.render(np.zeros((3, 3)), CAM)
    with pytest.raises(TypeError, match="Camera"):
        r.render(SPHERE, "front")
    with pytest.raises(ValueError, match=r"shape of the rendered image \(8, 8, 4\)"):
        r.vertex_grad(SPHERE, CAM, np.ones((8, 8, 3)))
    with pytest.raises(ValueError, match="NaN"):
        r.vertex_grad(SPHERE, CAM, np.full((8, 8, 4), np.nan))
    with pytest.raises(ValueError, match=r"\(2, 8, 8, 4\)"):
        r.vertex_grad(SPHERE, [CAM, CAM], np.ones((8, 8, 4)))
    with pytest.raises(ValueError, match="distance"):
        sr.Camera.look_at(distance=0)
    with pytest.raises(ValueError, match="viewing_angle"):
        sr.Camera.look_at(viewing_angle=95)
    with pytest.raises(ValueError, match="finite"):
        sr.Camera.look_at(elevation=np.inf)


def test_bad_backend_requests():
    with pytest.raises(ValueError, match="arch"):
        sr.init("tpu")
    with pytest.raises(ValueError, match="f64"):
        sr.init("vulkan", precision="f64")
    with pytest.raises(ValueError, match="precision"):
        sr.init("cpu", precision="f16")


def test_reinit_keeps_the_library_usable():
    r = sr.SoftRenderer(image_size=16)
    before = r.render(SPHERE, CAM)
    scene = r.scene(SPHERE, CAM)
    sr.init("cpu")
    after = r.render(SPHERE, CAM)
    np.testing.assert_allclose(after, before, atol=1e-6)
    with pytest.raises(RuntimeError, match="sr.init"):
        scene.render()
