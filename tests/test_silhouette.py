"""sr.SilhouetteRenderer: SoftRenderer's alpha channel alone, with its gradients.

It runs soft.py's kernels with rgb=False (no depth softmax, colour or lighting, and a
pixel stops visiting faces once its silhouette is 1 to rounding), so it must equal
SoftRenderer's alpha and alpha gradients: to float64 rounding against the autodiff
oracle, and to float32 rounding against SoftRenderer in float32.
"""
import numpy as np
import pytest
import taichi as ti

import softras_taichi as sr


def _cases():
    rng = np.random.default_rng(11)
    ico = sr.icosphere(2, radius=0.6)
    jitter = sr.Mesh(ico.vertices + 0.01 * rng.normal(size=ico.vertices.shape), ico.faces)
    return {"ico": jitter, "spiky": sr.TARGETS["spiky"]()}


MESHES = _cases()
CAMS = sr.Camera.look_at(distance=[2.5, 2.0, 2.732], elevation=[20, 90, -35], azimuth=[30, 10, 200])


@pytest.mark.parametrize("sigma", [1e-4, 3e-3])
@pytest.mark.parametrize("mesh", list(MESHES))
def test_silhouette_equals_autodiff_alpha_f64(mesh, sigma):
    sr.init("cpu", precision="f64", verbose=False)
    m = MESHES[mesh]
    sil = sr.SilhouetteRenderer(image_size=24, sigma=sigma)
    auto = sr.SoftRenderer(image_size=24, sigma=sigma, autodiff=True)
    a, rgba = sil.render(m, CAMS), auto.render(m, CAMS)
    assert a.shape == (3, 24, 24) and a.dtype == np.float64
    assert np.abs(a - rgba[..., 3]).max() < 1e-12
    assert 0.3 < a.max() <= 1.0 and a.min() >= 0.0
    g = np.random.default_rng(0).normal(size=a.shape)
    g4 = np.zeros(rgba.shape)
    g4[..., 3] = g
    gs, ga = sil.grads(m, CAMS, g), auto.grads(m, CAMS, g4)
    for name in ("vertices", "rotation", "translation", "camera"):
        scale = np.abs(ga[name]).max()
        assert np.abs(gs[name] - ga[name]).max() <= 1e-9 * max(scale, 1e-12), name
    assert np.abs(gs["vertices"]).max() > 0
    assert not gs["colors"].any(), "a silhouette does not depend on colours"


def test_silhouette_scene_under_tape():
    """scene.image is (N, S, S); its gradient under ti.ad.Tape equals SoftRenderer's alpha one."""
    sr.init("cpu", precision="f64", verbose=False)
    m = MESHES["spiky"]
    w = np.random.default_rng(2).normal(size=(3, 20, 20))
    loss = ti.field(float, shape=(), needs_grad=True)
    weights = ti.field(float, shape=(3, 20, 20))
    weights.from_numpy(w)

    @ti.kernel
    def weighted(image: ti.template()):
        for n, y, x in weights:
            if ti.static(len(image.shape) == 4):
                loss[None] += weights[n, y, x] * image[n, y, x, 3]
            else:
                loss[None] += weights[n, y, x] * image[n, y, x]

    grads = []
    for r in (sr.SilhouetteRenderer(image_size=20, sigma=1e-3), sr.SoftRenderer(image_size=20, sigma=1e-3)):
        scene = r.scene(m, CAMS)
        with ti.ad.Tape(loss):
            scene.render()
            weighted(scene.image)
        grads.append((scene.vertices.grad.to_numpy(), scene.camera.grad.to_numpy()))
    assert scene.image.shape == (3, 20, 20, 4)
    for a, b in zip(*grads):
        assert np.abs(a - b).max() <= 1e-9 * np.abs(b).max() and np.abs(b).max() > 0


def test_silhouette_equals_soft_alpha_f32():
    sr.init("cpu", verbose=False)
    m, cam = MESHES["ico"], CAMS
    sil, soft = sr.SilhouetteRenderer(image_size=32), sr.SoftRenderer(image_size=32)
    a, rgba = sil.render(m, cam), soft.render(m, cam)
    assert a.dtype == np.float32 and a.shape == (3, 32, 32)
    assert np.abs(a - rgba[..., 3]).max() <= 3e-7  # a few float32 roundings (2^-23 = 1.2e-7)
    g = np.random.default_rng(1).normal(size=a.shape).astype(np.float32)
    g4 = np.zeros(rgba.shape, np.float32)
    g4[..., 3] = g
    gv_s, gv_r = sil.vertex_grad(m, cam, g), soft.vertex_grad(m, cam, g4)
    scale = np.abs(gv_r).max()
    assert scale > 0 and np.abs(gv_s - gv_r).max() <= 1e-5 * scale
    # one camera: (S, S) in, (S, S) out
    one = sil.render(m, cam[0])
    assert one.shape == (32, 32) and np.array_equal(one, a[0])
    with pytest.raises(ValueError, match="shape of the rendered image"):
        sil.vertex_grad(m, cam[0], np.zeros((32, 32, 4)))


def test_silhouette_binned_equals_dense():
    sr.init("cpu", verbose=False)
    m, cam = MESHES["spiky"], CAMS
    binned, dense = sr.SilhouetteRenderer(image_size=32, tile=4), sr.SilhouetteRenderer(image_size=32, tile=32)
    a, b = binned.render(m, cam), dense.render(m, cam)
    st = binned.pair_stats(m, cam)
    # on the CPU a tile is a multiple of 8 pixels wide (a thread's row of pixels shares a list)
    assert (st["tile"], st["tile_rows"]) == (8, 4) and dense.pair_stats(m, cam)["tile"] == 32
    assert b.max() > 0.5 and np.abs(a - b).max() <= 1e-6
    g = np.random.default_rng(5).normal(size=a.shape).astype(np.float32)
    ga, gb = binned.vertex_grad(m, cam, g), dense.vertex_grad(m, cam, g)
    assert np.abs(gb).max() > 0 and np.abs(ga - gb).max() <= 1e-4 * np.abs(gb).max()
