"""Compile once: the fields every render runs on, shared by all scenes and sizes.

Taichi compiles a kernel once per distinct set of fields passed as `ti.template()`
arguments, so a pipeline over per-scene fields compiles ~50 kernels again for every
new image size, mesh or number of views.  Instead every stage runs on one Workspace:

* the arrays that carry gradients (vertices, colours, pose, cameras, world, projected
  vertices, face light, image, the autodiff path's sums) are flat fields with a
  capacity: view n's projected vertex i is proj[n·V + i], pixel (n, y, x) is
  image[(n·S + y)·S + x].  Capacities grow by doubling when a render needs more
  (the one thing that recompiles), and start large enough for the course;
* everything without a gradient whose size varies (tile lists, per-face set-up) is an
  ndarray, which Taichi compiles once per dtype and ndim whatever its shape.

Sizes reach the kernels as arguments.  Several workspaces exist only when several
scenes render under one unfinished `ti.ad.Tape`: the tape's backward reads what each
scene's forward left behind, so each needs its own (see `acquire`).
"""
import weakref

import numpy as np
import taichi as ti

from . import backend
from .binning import Bins

# Start capacities (elements): the fitting workload (24 views × 64 px, 2562 vertices),
# a 512 px image and an 80k-face mesh fit without growing.
START = {"V": 1 << 16, "F": 1 << 17, "N": 64, "NV": 1 << 18, "P": 1 << 18}


def _grow(cap, need):
    while cap < need:
        cap *= 2
    return cap


# One kernel per direction, not one per array: on the CPU every kernel costs about a
# tenth of a second to compile however small it is (docs/architecture.md, "Compile once").
VERTICES, COLORS, FACES, POSE, CAMERAS, TAN_HALF = 1, 2, 4, 8, 16, 32


@ti.kernel
def _load(vertices: ti.template(), colors: ti.template(), faces: ti.template(), rotation: ti.template(),
          translation: ti.template(), camera: ti.template(), tan_half: ti.template(), v: ti.types.ndarray(),
          c: ti.types.ndarray(), f: ti.types.ndarray(), pose: ti.types.ndarray(), cam: ti.types.ndarray(),
          which: ti.i32, V: ti.i32, F: ti.i32, N: ti.i32):
    """Upload the inputs flagged in `which`; cam holds (distance, elevation, azimuth, tan θ) rows."""
    for i in range(ti.max(V, F, N, 1)):
        if ((which & VERTICES) != 0) & (i < V):
            vertices[i] = ti.Vector([v[i, 0], v[i, 1], v[i, 2]])
        if ((which & COLORS) != 0) & (i < V):
            colors[i] = ti.Vector([c[i, 0], c[i, 1], c[i, 2]])
        if ((which & FACES) != 0) & (i < F):
            faces[i] = ti.Vector([f[i, 0], f[i, 1], f[i, 2]])
        if ((which & POSE) != 0) & (i == 0):
            rotation[None] = ti.Vector([pose[0], pose[1], pose[2]])
            translation[None] = ti.Vector([pose[3], pose[4], pose[5]])
        if ((which & CAMERAS) != 0) & (i < N):
            camera[i] = ti.Vector([cam[i, 0], cam[i, 1], cam[i, 2]])
        if ((which & TAN_HALF) != 0) & (i < N):
            tan_half[i] = cam[i, 3]


@ti.kernel
def _start_backward(vertices: ti.template(), colors: ti.template(), world: ti.template(),
                    rotation: ti.template(), translation: ti.template(), camera: ti.template(),
                    proj: ti.template(), light: ti.template(), image: ti.template(), g: ti.types.ndarray(),
                    has_g: ti.i32, V: ti.i32, F: ti.i32, N: ti.i32, P: ti.i32, alpha: ti.template()):
    """Zero the gradients a render's backward accumulates into (only the used range) and, with
    has_g, set image.grad[p] = g[p] (RGBA), or (0, 0, 0, g[p]) for an alpha-only image."""
    for i in range(ti.max(V, F, N * V, P, N)):
        z3 = ti.Vector([0.0, 0.0, 0.0])
        if i < V:
            vertices.grad[i], colors.grad[i], world.grad[i] = z3, z3, z3
        if i < F:
            light.grad[i] = 0.0
        if i < N * V:
            proj.grad[i] = z3
        if i < P:
            gi = ti.Vector([0.0, 0.0, 0.0, 0.0])
            if has_g != 0:
                if ti.static(alpha):
                    gi[3] = g[i]
                else:
                    gi = ti.Vector([g[i, 0], g[i, 1], g[i, 2], g[i, 3]])
            image.grad[i] = gi
        if i < N:
            camera.grad[i] = z3
        if i == 0:
            rotation.grad[None], translation.grad[None] = z3, z3


@ti.kernel
def _store_grads(vertices: ti.template(), colors: ti.template(), camera: ti.template(), rotation: ti.template(),
                 translation: ti.template(), dv: ti.types.ndarray(), dc: ti.types.ndarray(),
                 dcam: ti.types.ndarray(), dpose: ti.types.ndarray(), V: ti.i32, N: ti.i32):
    for i in range(ti.max(V, N)):
        for k in ti.static(range(3)):
            if i < V:
                dv[i, k] = vertices.grad[i][k]
                dc[i, k] = colors.grad[i][k]
            if i < N:
                dcam[i, k] = camera.grad[i][k]
            if i == 0:
                dpose[k] = rotation.grad[None][k]
                dpose[3 + k] = translation.grad[None][k]


@ti.kernel
def _store_image(image: ti.template(), dst: ti.types.ndarray(), n: ti.i32, alpha: ti.template()):
    for p in range(n):
        if ti.static(alpha):
            dst[p] = image[p][3]
        else:
            for c in ti.static(range(4)):
                dst[p, c] = image[p][c]


@ti.kernel
def _store_proj(proj: ti.template(), dst: ti.types.ndarray(), n: ti.i32):
    for i in range(n):
        for c in ti.static(range(3)):
            dst[i, c] = proj[i][c]


@ti.kernel
def _clear_sum_grads(wsum: ti.template(), csum: ti.template(), logsum: ti.template(), P: ti.i32):
    for p in range(P):
        wsum.grad[p], logsum.grad[p] = 0.0, 0.0
        csum.grad[p] = ti.Vector([0.0, 0.0, 0.0])


class Workspace:
    """The shared fields (capacities `cap`) and ndarrays of one pipeline run.

    `owner` is whatever rendered here last (a Scene, or the NumPy API's request key);
    `calls` the differentiable stages of that render, for `backward`."""

    def __init__(self):
        self.generation = backend.generation()
        self.cap = {}
        vec3 = lambda shape, grad=True: ti.Vector.field(3, float, shape=shape, needs_grad=grad)  # noqa: E731
        self.rotation, self.translation = vec3(()), vec3(())
        # binning's sums: 0-D fields, so that Taichi keeps one partial sum per thread
        self.extent_sum, self.drawn = ti.field(ti.i32, shape=()), ti.field(ti.i32, shape=())
        self._nd, self._entries = {}, None
        self.owner, self.request, self.calls, self.claim, self.setup = None, None, [], None, None
        self.sums = False  # the autodiff path's per-pixel sums, made on first use
        self.bins = Bins(self)
        for group, cap in START.items():
            self._alloc(group, cap)

    # --- capacities ------------------------------------------------------------
    def _alloc(self, group, cap):
        vec3 = lambda: ti.Vector.field(3, float, shape=cap, needs_grad=True)  # noqa: E731
        self.cap[group] = cap
        if group == "V":
            self.vertices, self.colors, self.world = vec3(), vec3(), vec3()
        elif group == "F":
            self.faces = ti.Vector.field(3, ti.i32, shape=cap)
            self.light = ti.field(float, shape=cap, needs_grad=True)
        elif group == "N":
            self.camera = vec3()
            self.tan_half = ti.field(float, shape=cap)
        elif group == "NV":
            self.proj = vec3()
        elif group == "P":
            self.image = ti.Vector.field(4, float, shape=cap, needs_grad=True)
            self.zmax = ti.field(float, shape=cap)
            self.den = ti.field(float, shape=cap)
            self.uncovered = ti.field(float, shape=cap)
            self.adjoint = ti.Vector.field(6, float, shape=cap)
            self.nearest = ti.field(ti.i32, shape=cap)
            self.coverage = ti.field(ti.i32, shape=cap)
            if self.sums:
                self._alloc_sums()

    def _alloc_sums(self):
        cap = self.cap["P"]
        self.wsum = ti.field(float, shape=cap, needs_grad=True)
        self.logsum = ti.field(float, shape=cap, needs_grad=True)
        self.csum = ti.Vector.field(3, float, shape=cap, needs_grad=True)
        self.sums = True

    def ensure(self, V, F, N, S, sums=False):
        """Grow what this render does not fit in (new fields: the kernels using them compile again)."""
        need = {"V": V, "F": F, "N": N, "NV": N * V, "P": N * S * S}
        for group, n in need.items():
            if n > self.cap[group]:
                self._alloc(group, _grow(self.cap[group], n))
        if sums and not self.sums:
            self._alloc_sums()

    def ndarray(self, name, dtype, shape):
        """A cached ndarray of this exact shape (ndarrays compile once whatever their shape)."""
        shape = tuple(int(s) for s in shape)
        # keyed by what was asked for: a vector ndarray reports only its element type as
        # .dtype (and vector types compare by identity), so comparing with either would
        # allocate a new ndarray on every render, and Taichi does not give them back
        key = (getattr(dtype, "n", None), getattr(dtype, "m", None), getattr(dtype, "dtype", dtype), shape)
        cached = self._nd.get(name)
        if cached is None or cached[0] != key:
            cached = self._nd[name] = (key, ti.ndarray(dtype, shape=shape))
        return cached[1]

    def entries(self, E):
        """Four int32 ndarrays of at least E entries (binning's lists), grown by half again
        so that a mesh moving a little does not reallocate them on every render."""
        if self._entries is None or self._entries[0].shape[0] < E:
            self._entries = [ti.ndarray(ti.i32, shape=max(int(E * 1.5), 1024)) for _ in range(4)]
        return self._entries

    # --- host <-> workspace ------------------------------------------------------
    def np_float(self):
        return np.float64 if backend.current()[1] == "f64" else np.float32

    def load(self, vertices=None, colors=None, faces=None, pose=None, cameras=None, tan_half=None):
        """Upload whichever of the inputs are given (NumPy arrays, validated by the caller;
        `cameras` a Camera, `tan_half` tan θ alone for cameras already in place)."""
        fp = self.np_float()

        def given(a, dtype, dummy):
            return np.zeros(dummy, dtype) if a is None else np.ascontiguousarray(a, dtype=dtype)

        which = ((vertices is not None) * VERTICES | (colors is not None) * COLORS | (faces is not None) * FACES
                 | (pose is not None) * POSE)
        cam = None
        if cameras is not None:
            which |= CAMERAS | TAN_HALF
            cam = np.concatenate([cameras.params, np.tan(np.radians(cameras.viewing_angle))[:, None]], 1)
        elif tan_half is not None:
            which |= TAN_HALF
            cam = np.column_stack([np.zeros((len(tan_half), 3)), tan_half])
        V = len(vertices if vertices is not None else colors if colors is not None else ())
        _load(self.vertices, self.colors, self.faces, self.rotation, self.translation, self.camera, self.tan_half,
              given(vertices, fp, (1, 3)), given(colors, fp, (1, 3)), given(faces, np.int32, (1, 3)),
              given(pose, fp, 6), given(cam, fp, (1, 4)), which, V, len(faces) if faces is not None else 0,
              len(cam) if cam is not None else 0)

    def image_numpy(self, N, S, alpha=False):
        """(N, S, S, 4) RGBA, or (N, S, S) with alpha=True."""
        out = np.empty((N * S * S,) if alpha else (N * S * S, 4), dtype=self.np_float())
        _store_image(self.image, out, N * S * S, alpha)
        return out.reshape((N, S, S) if alpha else (N, S, S, 4))

    def proj_numpy(self, N, V):
        out = np.empty((N * V, 3), dtype=self.np_float())
        _store_proj(self.proj, out, N * V)
        return out.reshape(N, V, 3)

    def start_backward(self, V, F, N, S, g=None, alpha=False):
        """Zero the gradients of the used range, the image's included, or set the image's to
        g (N, S, S[, 4]) when given."""
        has_g = g is not None
        if has_g:
            g = np.asarray(g).reshape((N * S * S,) if alpha else (N * S * S, 4))
        g = np.ascontiguousarray(g if has_g else np.zeros((1,) if alpha else (1, 4)), dtype=self.np_float())
        _start_backward(self.vertices, self.colors, self.world, self.rotation, self.translation, self.camera,
                        self.proj, self.light, self.image, g, int(has_g), V, F, N, N * S * S, alpha)
        if self.sums:
            _clear_sum_grads(self.wsum, self.csum, self.logsum, N * S * S)

    def grads_numpy(self, V, N):
        fp = self.np_float()
        out = {"vertices": np.empty((V, 3), fp), "colors": np.empty((V, 3), fp), "camera": np.empty((N, 3), fp)}
        pose = np.empty(6, fp)
        _store_grads(self.vertices, self.colors, self.camera, self.rotation, self.translation, out["vertices"],
                     out["colors"], out["camera"], pose, V, N)
        out["rotation"], out["translation"] = pose[:3].copy(), pose[3:].copy()
        return out

    def release(self):
        """Drop every ndarray (and the recorded calls that hold them)."""
        self._nd, self._entries, self.calls, self.setup, self.owner, self.request = {}, None, [], None, None, None
        self.bins = Bins(self)

    # --- the recorded forward, replayed backwards --------------------------------
    def backward(self):
        """Run the reverse of every differentiable stage of the last render, last first
        (what ti.ad.Tape does on exit; the NumPy API needs no Tape)."""
        for func, args in reversed(self.calls):
            func.grad(*args)


_pool = []


def _release_all():
    # An ndarray frees itself through whichever Taichi program runs when it is collected:
    # drop them while their own program is alive, before sr.init starts a new one.
    for ws in _pool:
        ws.release()
    _pool.clear()


backend._before_reset.append(_release_all)


def _busy(ws):
    """Claimed by a ti.ad.Tape that has not run its backward yet."""
    t = ws.claim() if ws.claim is not None else None
    return t is not None and not t.gradient_evaluated


def acquire(owner):
    """A workspace for `owner` to render in.  Under an open ti.ad.Tape the workspace is
    claimed until that tape has run its backward, so a second scene rendered under the
    same tape gets a second workspace instead of overwriting the first one's state."""
    backend.ensure_init()
    if _pool and _pool[0].generation != backend.generation():
        _pool.clear()  # fields of an older ti.init are gone
    tape = ti.lang.impl.get_runtime().target_tape
    ws = next((w for w in _pool if w.owner is owner and tape is not None and w.claim is not None
               and w.claim() is tape), None)
    if ws is None:
        ws = next((w for w in _pool if not _busy(w)), None)
    if ws is None:
        ws = Workspace()
        _pool.append(ws)
    ws.claim = weakref.ref(tape) if tape is not None else None
    return ws
