"""Stage 1: object -> world -> camera -> NDC.

    world = R(ω) v + t                      (rigid pose, ω axis-angle in radians)
    v'    = R_cam (world − eye)             (rows r, u, f of camera.look_at_rows)
    ndc   = (x' / (z' tan θ), y' / (z' tan θ), z')

Every quantity is differentiable, so gradients reach vertices, the pose and the
camera's (distance, elevation, azimuth).
"""
import taichi as ti

from .camera import look_at_rows

# Vertices closer to the camera plane than this are "behind the camera"; a face
# with one of them is not drawn (see binning.face_rect), and the division below
# stays finite.
Z_MIN = 1e-5


@ti.func
def rotate(w, v):
    """Rodrigues: R(w) v = v + a (w × v) + b (w × (w × v)), a = sin θ/θ, b = (1 − cos θ)/θ², θ = |w|.

    Written on vectors, not as a matrix product: Taichi's in-place matrix
    helpers would put locals on the autodiff stack (docs/architecture.md, "Rules every kernel follows")."""
    t2 = w.dot(w)
    t2c = ti.max(t2, 1e-12)
    t = ti.sqrt(t2c)
    a = ti.select(t2 > 1e-8, ti.sin(t) / t, 1.0 - t2 / 6.0)
    b = ti.select(t2 > 1e-8, (1.0 - ti.cos(t)) / t2c, 0.5 - t2 / 24.0)
    wv = w.cross(v)
    return v + a * wv + b * w.cross(wv)


@ti.func
def pose(vertices: ti.template(), rotation: ti.template(), translation: ti.template(), i):
    """world_i = R(ω) v_i + t."""
    return rotate(rotation[None], vertices[i]) + translation[None]


@ti.func
def project(world: ti.template(), camera: ti.template(), tan_half: ti.template(), n, i):
    """proj[n·V + i] = (x'/(z' tan θ_n), y'/(z' tan θ_n), z') for camera n."""
    eye, r, u, f = look_at_rows(camera[n])
    q = world[i] - eye
    z = f.dot(q)
    s = 1.0 / (ti.max(z, Z_MIN) * tan_half[n])
    return ti.Vector([r.dot(q) * s, u.dot(q) * s, z])
