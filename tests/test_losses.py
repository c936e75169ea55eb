"""Losses (softras_taichi.losses): Taichi values against NumPy, Taichi gradients against
central finite differences of the NumPy functions (float64 on the CPU)."""
import numpy as np
import pytest
import taichi as ti

sr = pytest.importorskip("softras_taichi")
from finite_differences import central_differences  # noqa: E402
from softras_taichi import losses  # noqa: E402

H = 1e-6
RTOL = 1e-6


@pytest.fixture(scope="module", autouse=True)
def cpu_f64():
    sr.init("cpu", precision="f64")
    yield


fd_grad = central_differences


def assert_close(a, b, rtol=RTOL):
    scale = max(np.abs(b).max(), 1e-12)
    err = np.abs(a - b).max() / scale
    assert err < rtol, f"relative error {err:.3g} (max |ref| {scale:.3g})"


def random_images(seed, n=2, s=5):
    rng = np.random.default_rng(seed)
    image = rng.uniform(0.05, 0.95, (n, s, s, 4))
    target = rng.uniform(0.0, 1.0, (n, s, s, 4))
    target[..., 3] = (target[..., 3] > 0.5)  # a binary target mask, like a photo's
    return image, target


def image_loss_and_grad(make_loss, image, target):
    img = ti.field(float, shape=image.shape, needs_grad=True)
    img.from_numpy(image)
    tgt = losses.image_field(target)
    loss = losses.scalar_field()
    fn = make_loss()
    with ti.ad.Tape(loss):
        fn(img, tgt, loss, weight=0.7)
    return loss[None] / 0.7, img.grad.to_numpy() / 0.7


# --------------------------------------------------------------------------- NumPy metrics and topology

def test_iou_numpy():
    a = np.zeros((4, 4))
    a[:2] = 1
    assert losses.iou(a, a) == 1.0
    assert losses.iou(a, 1 - a) == 0.0
    b = np.zeros((4, 4))
    b[:1] = 1
    assert losses.iou(a, b) == pytest.approx(0.5)
    assert losses.iou(0.6 * a, b, threshold=0.5) == pytest.approx(0.5)
    assert losses.iou(np.zeros(3), np.zeros(3)) == 1.0
    with pytest.raises(ValueError):
        losses.iou(np.zeros(3), np.zeros(4))


def test_silhouette_loss_numpy_limits():
    image, target = random_images(0)
    assert losses.silhouette_loss(target, target) == pytest.approx(0.0, abs=1e-6)
    empty = target.copy()
    empty[..., 3] = 0
    assert losses.silhouette_loss(empty, target) == pytest.approx(1.0)


def test_topology_of_closed_and_open_meshes():
    m = sr.icosphere(1)
    e = losses.edges(m.faces)
    assert len(e) == 3 * m.num_faces // 2  # closed triangle mesh: every edge in two faces
    assert len(losses.edge_wings(m.faces)) == len(e)
    two = np.array([[0, 1, 2], [0, 2, 3]])  # a quad: one interior edge 0-2
    w = losses.edge_wings(two)
    assert w.shape == (1, 4) and sorted(w[0, :2]) == [0, 2] and sorted(w[0, 2:]) == [1, 3]
    directed, degree = losses.neighbours(two, 5)
    assert degree.tolist() == [3, 2, 3, 2, 0]


def test_flat_and_sphere_geometry_values():
    quad = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0.0]])
    two = np.array([[0, 1, 2], [0, 2, 3]])
    assert losses.flatten_loss(quad, two) == pytest.approx(0.0, abs=1e-5)
    folded = quad.copy()
    folded[3] = (0.5, 0.5, 0.7)  # wing straight up from the diagonal: θ = 90°, cost 1
    assert losses.flatten_loss(folded, two) == pytest.approx(1.0, abs=1e-4)
    m = sr.icosphere(2)
    assert losses.laplacian_loss(2 * m.vertices, m.faces) == pytest.approx(
        4 * losses.laplacian_loss(m.vertices, m.faces))
    assert losses.edge_loss(m.vertices, m.faces, 0.0) > 0


# --------------------------------------------------------------------------- Taichi vs NumPy vs FD

def test_silhouette_iou_value_and_gradient():
    image, target = random_images(1)
    value, grad = image_loss_and_grad(lambda: losses.SilhouetteIoU(image.shape[0]), image, target)
    assert value == pytest.approx(losses.silhouette_loss(image, target), rel=1e-12)
    ref = fd_grad(lambda x: losses.silhouette_loss(x, target), image)
    assert_close(grad, ref)
    assert np.all(grad[..., :3] == 0)


def test_color_l1_value_and_gradient():
    image, target = random_images(2)
    value, grad = image_loss_and_grad(losses.ColorL1, image, target)
    assert value == pytest.approx(losses.color_loss(image, target), rel=1e-12)
    assert_close(grad, fd_grad(lambda x: losses.color_loss(x, target), image))
    assert np.all(grad[..., 3] == 0)


def jittered_meshes():
    rng = np.random.default_rng(3)
    m = sr.icosphere(1)
    out = {"ico1": (m.vertices + rng.normal(0, 0.05, m.vertices.shape), m.faces)}
    # an open strip with a boundary and an unused vertex (index 6)
    v = rng.normal(0, 0.5, (7, 3))
    f = np.array([[0, 1, 2], [1, 3, 2], [2, 3, 4], [3, 5, 4]])
    out["strip"] = (v, f)
    return out


GEOMETRY = {
    "laplacian": (lambda f, V: losses.Laplacian(f, V), losses.laplacian_loss),
    "flatten": (lambda f, V: losses.Flatten(f), losses.flatten_loss),
    "edge": (lambda f, V: losses.EdgeLength(f), losses.edge_loss),
    "edge_target": (lambda f, V: losses.EdgeLength(f, 0.3), lambda v, f: losses.edge_loss(v, f, 0.3)),
}


@pytest.mark.parametrize("mesh", list(jittered_meshes()))
@pytest.mark.parametrize("name", list(GEOMETRY))
def test_geometry_loss_value_and_gradient(name, mesh):
    v, f = jittered_meshes()[mesh]
    make, ref_fn = GEOMETRY[name]
    verts = ti.Vector.field(3, float, shape=len(v), needs_grad=True)
    verts.from_numpy(v)
    loss = losses.scalar_field()
    fn = make(f, len(v))
    with ti.ad.Tape(loss):
        fn(verts, loss, weight=2.0)
    assert loss[None] / 2 == pytest.approx(ref_fn(v, f), rel=1e-10)
    grad = verts.grad.to_numpy() / 2
    assert_close(grad, fd_grad(lambda x: ref_fn(x, f), v))


def test_losses_compose_through_the_renderer():
    """L_s + λ L_c + μ L_lap of a rendered image, differentiated end to end."""
    mesh = sr.icosphere(1, radius=0.7)
    rng = np.random.default_rng(4)
    v = mesh.vertices + rng.normal(0, 0.03, mesh.vertices.shape)
    colors = rng.uniform(0.1, 0.9, v.shape)
    cams = sr.Camera.look_at(elevation=[20.0, -35.0], azimuth=[10.0, 130.0])
    r = sr.SoftRenderer(image_size=12, sigma=1e-2, gamma=1e-2, dist_eps=1e-12)
    target = r.render(sr.Mesh(0.8 * mesh.vertices, mesh.faces, 1 - colors), cams)
    scene = r.scene(sr.Mesh(v, mesh.faces, colors), cams)
    tgt = losses.image_field(target)
    sil, col, lap = losses.SilhouetteIoU(2), losses.ColorL1(), losses.Laplacian(mesh.faces, len(v))
    loss = losses.scalar_field()
    with ti.ad.Tape(loss):
        scene.render()
        sil(scene.image, tgt, loss)
        col(scene.image, tgt, loss, weight=1.0)
        lap(scene.vertices, loss, weight=1e-2)
    grad = scene.vertices.grad.to_numpy()

    def total(x):
        img = r.render(sr.Mesh(x, mesh.faces, colors), cams)
        return (losses.silhouette_loss(img, target) + losses.color_loss(img, target)
                + 1e-2 * losses.laplacian_loss(x, mesh.faces))

    assert loss[None] == pytest.approx(total(v), rel=1e-10)
    idx = rng.choice(len(v), 6, replace=False)  # a few vertices keep the FD cheap

    def total_at(sub):
        x = v.copy()
        x[idx] = sub
        return total(x)

    assert_close(grad[idx], fd_grad(total_at, v[idx]), rtol=1e-5)
