"""Optimisers (against NumPy transcriptions of PyTorch's update rules) and
parametrisations (values, bounds, gradients against finite differences)."""
import numpy as np
from finite_differences import central_differences
import pytest
import taichi as ti

sr = pytest.importorskip("softras_taichi")
from softras_taichi import losses, optim  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def cpu_f64():
    sr.init("cpu", precision="f64")
    yield


@ti.kernel
def _quadratic(x: ti.template(), a: ti.template(), loss: ti.template()):
    """loss = Σ a_i x_i² / 2 + Σ x_i³ / 10 (a curved, non-quadratic bowl near 0)."""
    for i in x:
        loss[None] += 0.5 * a[i] * x[i] ** 2 + 0.1 * x[i] ** 3


def grad_np(x, a):
    return a * x + 0.3 * x ** 2


def run(opt_factory, steps=25):
    x0 = np.array([1.0, -0.5, 0.3, 2.0])
    a = np.array([1.0, 3.0, 0.5, 0.2])
    x = ti.field(float, shape=4, needs_grad=True)
    x.from_numpy(x0)
    af = ti.field(float, shape=4)
    af.from_numpy(a)
    loss = losses.scalar_field()
    opt = opt_factory([x])
    for _ in range(steps):
        with ti.ad.Tape(loss):
            _quadratic(x, af, loss)
        opt.step()
    return x.to_numpy(), x0, a


def adam_np(x, a, steps, lr, b1, b2, eps):
    m = v = np.zeros_like(x)
    for t in range(1, steps + 1):
        g = grad_np(x, a)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return x


def sgd_np(x, a, steps, lr, mu, nesterov):
    b = np.zeros_like(x)
    for _ in range(steps):
        g = grad_np(x, a)
        b = mu * b + g
        x = x - lr * (g + mu * b if nesterov else b)
    return x


@pytest.mark.parametrize("betas", [(0.9, 0.999), optim.Adam.SOFTRAS_BETAS])
def test_adam_matches_pytorch_rule(betas):
    x, x0, a = run(lambda p: optim.Adam(p, lr=0.05, betas=betas, eps=1e-8))
    np.testing.assert_allclose(x, adam_np(x0, a, 25, 0.05, *betas, 1e-8), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_matches_pytorch_rule(momentum, nesterov):
    x, x0, a = run(lambda p: optim.SGD(p, lr=0.1, momentum=momentum, nesterov=nesterov))
    np.testing.assert_allclose(x, sgd_np(x0, a, 25, 0.1, momentum, nesterov), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make", [lambda p: optim.Adam(p, lr=0.05, betas=(0.5, 0.99)),
                                  lambda p: optim.SGD(p, lr=0.2, momentum=0.5)])
def test_optimisers_converge(make):
    x, _, _ = run(make, steps=400)
    assert np.abs(x).max() < 0.02


@ti.kernel
def _vec_loss(p: ti.template(), loss: ti.template()):
    loss[None] += (p[None] - ti.Vector([1.0, 2.0, 3.0])).norm_sqr()


def test_vector_field_with_per_component_rates():
    p = ti.Vector.field(3, float, shape=(), needs_grad=True)
    loss = losses.scalar_field()
    opt = optim.Adam([(p, (0.1, 0.0, 1.0))])  # the middle component is frozen
    with ti.ad.Tape(loss):
        _vec_loss(p, loss)
    opt.step()
    # Adam's first step moves each component by its rate (|m̂/√v̂| = 1)
    np.testing.assert_allclose(p.to_numpy(), [0.1, 0.0, 1.0], rtol=1e-6)
    opt.scale = 0.5
    with ti.ad.Tape(loss):
        _vec_loss(p, loss)
    opt.step()
    assert p.to_numpy()[1] == 0.0


def test_parameter_without_gradient_is_refused():
    with pytest.raises(ValueError, match="needs_grad"):
        optim.Adam([ti.field(float, shape=3)])
    with pytest.raises(ValueError):
        optim.SGD([])
    with pytest.raises(ValueError):
        optim.Adam([ti.field(float, shape=3, needs_grad=True)], betas=(1.0, 0.9))


# --------------------------------------------------------------------------- parametrisations

@ti.kernel
def _weighted(v: ti.template(), w: ti.template(), loss: ti.template()):
    for i in v:
        loss[None] += v[i].dot(w[i])


def param_grads(shape, offset, centre, weights):
    """Gradients of Σ w · vertices(offset, centre) with respect to the parameters."""
    shape.offset.from_numpy(offset)
    shape.centre.from_numpy(centre)
    out = ti.Vector.field(3, float, shape=len(weights), needs_grad=True)
    w = ti.Vector.field(3, float, shape=len(weights))
    w.from_numpy(weights)
    loss = losses.scalar_field()
    with ti.ad.Tape(loss):
        shape.write(out)
        _weighted(out, w, loss)
    np.testing.assert_allclose(out.to_numpy(), shape.vertices(), rtol=1e-12, atol=1e-12)
    return loss[None], shape.offset.grad.to_numpy(), shape.centre.grad.to_numpy()


fd = central_differences


@pytest.mark.parametrize("kind", [optim.FreeOffsets, optim.BoundedOffsets])
def test_parametrisation_start_and_gradient(kind):
    rng = np.random.default_rng(0)
    v0 = 0.5 * sr.icosphere(1).vertices + rng.normal(0, 0.02, (42, 3))
    shape = kind(v0)
    np.testing.assert_allclose(shape.vertices(), v0, atol=1e-12)  # zero parameters: the template
    offset, centre = rng.normal(0, 0.5, v0.shape), rng.normal(0, 0.3, 3)
    w = rng.normal(size=v0.shape)
    value, g_off, g_c = param_grads(shape, offset, centre, w)

    def f(o, c):
        shape.offset.from_numpy(o)
        shape.centre.from_numpy(c)
        return (shape.vertices() * w).sum()

    assert value == pytest.approx(f(offset, centre), rel=1e-12)
    np.testing.assert_allclose(g_off, fd(lambda o: f(o, centre), offset), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(g_c, fd(lambda c: f(offset, c), centre), rtol=1e-6, atol=1e-8)


def test_bounded_stays_in_the_box_and_keeps_sides():
    v0 = 0.5 * sr.icosphere(1).vertices
    shape = optim.BoundedOffsets(v0)
    shape.offset.from_numpy(np.full(v0.shape, 40.0))  # far beyond the logit clamp
    shape.centre.from_numpy(np.array([3.0, -3.0, 0.0]))
    v = shape.vertices()
    assert np.all(np.abs(v) <= 1.0) and np.all(np.isfinite(v))
    c = np.tanh([3.0, -3.0, 0.0])
    # coordinates keep their side of the centre: positive ones above it, negative below
    assert np.all((v - c)[v0 > 0] >= 0) and np.all((v - c)[v0 < 0] <= 0)
    with pytest.raises(ValueError, match="inside"):
        optim.BoundedOffsets(1.5 * sr.icosphere(1).vertices)


def test_sigmoid_colors():
    c0 = np.random.default_rng(1).uniform(0.05, 0.95, (10, 3))
    colors = optim.SigmoidColors(c0)
    out = ti.Vector.field(3, float, shape=10)
    colors.write(out)
    np.testing.assert_allclose(out.to_numpy(), c0, rtol=1e-12)
    np.testing.assert_allclose(colors.colors(), c0, rtol=1e-12)


def test_adam_fits_offsets_through_a_parametrisation():
    """Adam + BoundedOffsets reach target vertices under ti.ad.Tape."""
    rng = np.random.default_rng(2)
    v0 = 0.5 * sr.icosphere(1).vertices + 0.01
    target = np.clip(v0 * rng.uniform(0.6, 1.5, v0.shape), -0.9, 0.9)
    shape = optim.BoundedOffsets(v0)
    out = ti.Vector.field(3, float, shape=len(v0), needs_grad=True)
    t = ti.Vector.field(3, float, shape=len(v0))
    t.from_numpy(target)
    loss = losses.scalar_field()
    opt = optim.Adam(shape.params, lr=0.05, betas=optim.Adam.SOFTRAS_BETAS)
    for k in range(300):
        opt.scale = 1.0 if k < 200 else 0.1  # a step decay: Adam jitters by about lr at the end
        with ti.ad.Tape(loss):
            shape.write(out)
            _sq_dist(out, t, loss)
        opt.step()
    assert np.abs(shape.vertices() - target).max() < 1e-2


@ti.kernel
def _sq_dist(a: ti.template(), b: ti.template(), loss: ti.template()):
    for i in a:
        loss[None] += (a[i] - b[i]).norm_sqr()
