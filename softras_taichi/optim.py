"""Optimisers over Taichi fields, and the parametrisations a fit optimises.

A fitting step (see fit.py) is

    with ti.ad.Tape(loss):
        shape.write(scene.vertices)      # parameters -> vertices (differentiable)
        scene.render()
        ... loss kernels ...
    opt.step()                            # reads p.grad of every parameter field p

`ti.ad.Tape` zeroes every gradient in the program when it starts; with
`ti.ad.Tape(loss, clear_gradients=False)` (cheaper when many fields exist) call the
optimiser's `zero_grad()` first, as in PyTorch.

Optimisers (PyTorch's update rules, so their hyper-parameters mean the same):

    SGD with momentum   b ← μ b + g;           p ← p − η b      (Nesterov: p ← p − η (g + μ b))
    Adam                m ← β₁ m + (1 − β₁) g;  v ← β₂ v + (1 − β₂) g²
                        p ← p − η √(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / (√v + ε √(1 − β₂ᵗ))
                        (= p − η m̂ / (√v̂ + ε) with the bias-corrected m̂, v̂)

SoftRas optimises its meshes with Adam, betas (0.5, 0.99): a short memory, which
follows a loss whose σ schedule keeps changing (`Adam.SOFTRAS_BETAS`).

A parameter is a field with `needs_grad=True`, or a pair (field, lr) whose own
learning rate overrides the optimiser's; for a vector field lr may be a vector, one
rate per component (e.g. camera distance in units but angles in degrees).

Parametrisations (parameters -> vertices, as kernels the tape differentiates):

    FreeOffsets     v = v₀ + Δ                 unconstrained: any shape, also any mess
    BoundedOffsets  SoftRas's deform model: per coordinate
                        u = sigmoid(logit|v₀| + Δ) · sign(v₀)          ∈ (−1, 1)
                        c = tanh(centre)
                        v = max(u, 0)(1 − c) − max(−u, 0)(1 + c) + c   ∈ (−1, 1)
                    every vertex stays in the box [−1, 1]³ (the camera sees all of it),
                    Δ moves a coordinate multiplicatively (a log-odds step), so small
                    features move slowly and nothing explodes; a coordinate keeps its
                    side of the centre c (it can't cross it), which is why the template
                    sphere should have no coordinate at 0 (`fit.template`).
    SigmoidColors   c = sigmoid(θ)             colours that always stay in (0, 1)
"""
import numbers

import numpy as np
import taichi as ti

from . import fields

LOGIT_CLAMP = 30.0  # docs/architecture.md, "Rules every kernel follows": sigmoid of a clamped logit never makes inf·0 in a gradient


# --------------------------------------------------------------------------- helpers

def _like(p):
    """A zero field of p's shape and element type, without a gradient."""
    if isinstance(p, ti.MatrixField):
        if p.m == 1:
            return fields.vector(p.n, p.dtype, p.shape)
        return ti.Matrix.field(p.n, p.m, p.dtype, shape=p.shape)
    return fields.scalar(p.dtype, p.shape)


def _rate(p, lr):
    """A 0-D field holding the learning rate: a scalar, or one per vector component."""
    r = fields.vector(p.n, p.dtype, ()) if isinstance(p, ti.MatrixField) else fields.scalar(p.dtype, ())
    _set_rate(r, lr)
    return r


def _set_rate(r, lr):
    if isinstance(r, ti.MatrixField):
        a = np.broadcast_to(np.asarray(lr, dtype=np.float64), (r.n,))
        r.from_numpy(a.astype(np.float64 if r.dtype == ti.f64 else np.float32))
    else:
        if not isinstance(lr, numbers.Real):
            raise TypeError(f"a scalar field needs a scalar learning rate, got {lr!r}")
        r[None] = float(lr)


def _groups(params, lr):
    out = []
    for item in params:
        p, rate = item if isinstance(item, tuple) else (item, lr)
        if not p.snode.ptr.has_adjoint():
            raise ValueError("every parameter must be a field created with needs_grad=True")
        out.append((p, rate))
    if not out:
        raise ValueError("no parameters to optimise")
    return out


# --------------------------------------------------------------------------- SGD

@ti.kernel
def _sgd(p: ti.template(), buf: ti.template(), rate: ti.template(), scale: float,
         momentum: float, nesterov: ti.i32):
    for I in ti.grouped(p):
        g = p.grad[I]
        b = momentum * buf[I] + g
        buf[I] = b
        step = b
        if nesterov:
            step = g + momentum * b
        p[I] -= scale * rate[None] * step


class SGD:
    """Gradient descent with (optionally Nesterov) momentum; momentum = 0 is plain SGD."""

    def __init__(self, params, lr=0.01, momentum=0.9, nesterov=False):
        self.groups = [(p, _rate(p, r), _like(p)) for p, r in _groups(params, lr)]
        self.momentum, self.nesterov, self.scale = float(momentum), bool(nesterov), 1.0

    def zero_grad(self):
        for p, *_ in self.groups:
            p.grad.fill(0)

    def step(self):
        for p, rate, buf in self.groups:
            _sgd(p, buf, rate, self.scale, self.momentum, int(self.nesterov))


# --------------------------------------------------------------------------- Adam

@ti.kernel
def _adam(p: ti.template(), m: ti.template(), v: ti.template(), rate: ti.template(),
          scale: float, beta1: float, beta2: float, eps: float):
    """scale = lr multiplier · √(1 − β₂ᵗ)/(1 − β₁ᵗ), eps = ε √(1 − β₂ᵗ) (bias correction folded in)."""
    for I in ti.grouped(p):
        g = p.grad[I]
        m[I] = beta1 * m[I] + (1.0 - beta1) * g
        v[I] = beta2 * v[I] + (1.0 - beta2) * g * g
        p[I] -= scale * rate[None] * m[I] / (ti.sqrt(v[I]) + eps)


class Adam:
    """Adam (Kingma & Ba) over Taichi fields.  `scale` multiplies every learning rate
    (set it for a schedule); `t` counts the steps taken."""

    SOFTRAS_BETAS = (0.5, 0.99)

    def __init__(self, params, lr=0.01, betas=(0.9, 0.999), eps=1e-8):
        b1, b2 = (float(b) for b in betas)
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        self.groups = [(p, _rate(p, r), _like(p), _like(p)) for p, r in _groups(params, lr)]
        self.beta1, self.beta2, self.eps = b1, b2, float(eps)
        self.t, self.scale = 0, 1.0

    def zero_grad(self):
        for p, *_ in self.groups:
            p.grad.fill(0)

    def step(self):
        self.t += 1
        c2 = (1.0 - self.beta2 ** self.t) ** 0.5
        s = self.scale * c2 / (1.0 - self.beta1 ** self.t)
        for p, rate, m, v in self.groups:
            _adam(p, m, v, rate, s, self.beta1, self.beta2, self.eps * c2)


# --------------------------------------------------------------------------- parametrisations

@ti.kernel
def _free(base: ti.template(), offset: ti.template(), centre: ti.template(), out: ti.template()):
    for i in base:
        out[i] = base[i] + offset[i] + centre[None]


@ti.func
def _sigmoid(x):
    return 1.0 / (1.0 + ti.exp(-ti.math.clamp(x, -LOGIT_CLAMP, LOGIT_CLAMP)))


@ti.kernel
def _bounded(base: ti.template(), sign: ti.template(), offset: ti.template(),
             centre: ti.template(), out: ti.template()):
    for i in base:
        u = _sigmoid(base[i] + offset[i]) * sign[i]
        c = ti.tanh(centre[None])
        out[i] = ti.max(u, 0.0) * (1.0 - c) - ti.max(-u, 0.0) * (1.0 + c) + c


class FreeOffsets:
    """v = v₀ + Δ + centre: the plain parametrisation (`params`: offset, centre)."""

    def __init__(self, vertices):
        v = np.asarray(vertices, dtype=np.float64)
        self.base = fields.vector(3, float, len(v))
        self.base.from_numpy(v)
        self.offset = fields.vector(3, float, len(v), needs_grad=True)
        self.centre = fields.vector(3, float, (), needs_grad=True)
        self.params = [self.offset, self.centre]

    def write(self, vertices):
        _free(self.base, self.offset, self.centre, vertices)

    def vertices(self):
        return self.base.to_numpy() + self.offset.to_numpy() + self.centre.to_numpy()


class BoundedOffsets:
    """SoftRas's bounded deformation (see the module docstring; `params`: offset, centre).

    `vertices` must lie inside the open box (−1, 1)³ (SoftRas starts from a sphere of
    radius 0.5); |v₀| is clamped to [1e-4, 1 − 1e-4] so its logit is finite, and a
    coordinate that is exactly 0 is given the + side."""

    def __init__(self, vertices):
        v = np.asarray(vertices, dtype=np.float64)
        if np.abs(v).max() >= 1:
            raise ValueError("BoundedOffsets needs vertices inside (-1, 1)^3; scale the template "
                             f"down (its largest coordinate is {np.abs(v).max():.3g})")
        a = np.clip(np.abs(v), 1e-4, 1 - 1e-4)
        self.base = fields.vector(3, float, len(v))
        self.base.from_numpy(np.log(a / (1 - a)))
        self.sign = fields.vector(3, float, len(v))
        self.sign.from_numpy(np.where(v < 0, -1.0, 1.0))
        self.offset = fields.vector(3, float, len(v), needs_grad=True)
        self.centre = fields.vector(3, float, (), needs_grad=True)
        self.params = [self.offset, self.centre]

    def write(self, vertices):
        _bounded(self.base, self.sign, self.offset, self.centre, vertices)

    def vertices(self):
        u = 1 / (1 + np.exp(-np.clip(self.base.to_numpy() + self.offset.to_numpy(),
                                     -LOGIT_CLAMP, LOGIT_CLAMP))) * self.sign.to_numpy()
        c = np.tanh(self.centre.to_numpy())
        return np.maximum(u, 0) * (1 - c) - np.maximum(-u, 0) * (1 + c) + c


@ti.kernel
def _sigmoid_colors(theta: ti.template(), out: ti.template()):
    for i in theta:
        out[i] = _sigmoid(theta[i])


class SigmoidColors:
    """c = sigmoid(θ): vertex colours that stay in (0, 1) (`params`: theta)."""

    def __init__(self, colors):
        c = np.clip(np.asarray(colors, dtype=np.float64), 1e-3, 1 - 1e-3)
        self.theta = fields.vector(3, float, len(c), needs_grad=True)
        self.theta.from_numpy(np.log(c / (1 - c)))
        self.params = [self.theta]

    def write(self, colors):
        _sigmoid_colors(self.theta, colors)

    def colors(self):
        return 1 / (1 + np.exp(-np.clip(self.theta.to_numpy(), -LOGIT_CLAMP, LOGIT_CLAMP)))
