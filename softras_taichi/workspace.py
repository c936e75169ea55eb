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


@ti.kernel
def _load_vec3(dst: ti.template(), src: ti.types.ndarray(), n: ti.i32):
    for i in range(n):
        dst[i] = ti.Vector([src[i, 0], src[i, 1], src[i, 2]])


@ti.kernel
def _load_pose(rotation: ti.template(), translation: ti.template(), src: ti.types.ndarray()):
    for _ in range(1):
        rotation[None] = ti.Vector([src[0], src[1], src[2]])
        translation[None] = ti.Vector([src[3], src[4], src[5]])


@ti.kernel
def _load_cameras(camera: ti.template(), tan_half: ti.template(), src: ti.types.ndarray(), n: ti.i32):
    for i in range(n):
        camera[i] = ti.Vector([src[i, 0], src[i, 1], src[i, 2]])
        tan_half[i] = src[i, 3]


@ti.kernel
def _load_scalars(dst: ti.template(), src: ti.types.ndarray(), n: ti.i32):
    for i in range(n):
        dst[i] = src[i]


@ti.kernel
def _load_image_grad(image: ti.template(), src: ti.types.ndarray(), n: ti.i32, alpha: ti.template()):
    """image.grad[p] = src[p] (RGBA), or (0, 0, 0, src[p]) for an alpha-only image."""
    for p in range(n):
        if ti.static(alpha):
            image.grad[p] = ti.Vector([0.0, 0.0, 0.0, src[p]])
        else:
            image.grad[p] = ti.Vector([src[p, 0], src[p, 1], src[p, 2], src[p, 3]])


@ti.kernel
def _store_image(image: ti.template(), dst: ti.types.ndarray(), n: ti.i32, alpha: ti.template()):
    for p in range(n):
        if ti.static(alpha):
            dst[p] = image[p][3]
        else:
            for c in ti.static(range(4)):
                dst[p, c] = image[p][c]


@ti.kernel
def _store_vec3_grad(src: ti.template(), dst: ti.types.ndarray(), n: ti.i32):
    for i in range(n):
        for c in ti.static(range(3)):
            dst[i, c] = src.grad[i][c]


@ti.kernel
def _store_pose_grad(rotation: ti.template(), translation: ti.template(), dst: ti.types.ndarray()):
    for _ in range(1):
        for c in ti.static(range(3)):
            dst[c] = rotation.grad[None][c]
            dst[3 + c] = translation.grad[None][c]


@ti.kernel
def _store_proj(proj: ti.template(), dst: ti.types.ndarray(), n: ti.i32):
    for i in range(n):
        for c in ti.static(range(3)):
            dst[i, c] = proj[i][c]


@ti.kernel
def _load_faces(faces: ti.template(), src: ti.types.ndarray(), n: ti.i32):
    for j in range(n):
        faces[j] = ti.Vector([src[j, 0], src[j, 1], src[j, 2]])


@ti.kernel
def _clear_grads(vertices: ti.template(), colors: ti.template(), world: ti.template(),
                 rotation: ti.template(), translation: ti.template(), camera: ti.template(),
                 proj: ti.template(), light: ti.template(), image: ti.template(),
                 V: ti.i32, F: ti.i32, N: ti.i32, P: ti.i32):
    """Zero the gradients a render's backward accumulates into (only the used range)."""
    for i in range(ti.max(V, F, N * V, P, N)):
        z3 = ti.Vector([0.0, 0.0, 0.0])
        if i < V:
            vertices.grad[i], colors.grad[i], world.grad[i] = z3, z3, z3
        if i < F:
            light.grad[i] = 0.0
        if i < N * V:
            proj.grad[i] = z3
        if i < P:
            image.grad[i] = ti.Vector([0.0, 0.0, 0.0, 0.0])
        if i < N:
            camera.grad[i] = z3
        if i == 0:
            rotation.grad[None], translation.grad[None] = z3, z3


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

    def load(self, vertices=None, colors=None, faces=None, pose=None, cameras=None):
        """Upload whichever of the inputs are given (NumPy arrays, validated by the caller)."""
        fp = self.np_float()
        if vertices is not None:
            _load_vec3(self.vertices, np.ascontiguousarray(vertices, dtype=fp), len(vertices))
        if colors is not None:
            _load_vec3(self.colors, np.ascontiguousarray(colors, dtype=fp), len(colors))
        if faces is not None:
            _load_faces(self.faces, np.ascontiguousarray(faces, dtype=np.int32), len(faces))
        if pose is not None:
            _load_pose(self.rotation, self.translation, np.ascontiguousarray(pose, dtype=fp))
        if cameras is not None:
            c = np.concatenate([cameras.params, np.tan(np.radians(cameras.viewing_angle))[:, None]], 1)
            _load_cameras(self.camera, self.tan_half, np.ascontiguousarray(c, dtype=fp), len(c))

    def load_tan_half(self, tan_half):
        _load_scalars(self.tan_half, np.ascontiguousarray(tan_half, dtype=self.np_float()), len(tan_half))

    def image_numpy(self, N, S, alpha=False):
        """(N, S, S, 4) RGBA, or (N, S, S) with alpha=True."""
        out = np.empty((N * S * S,) if alpha else (N * S * S, 4), dtype=self.np_float())
        _store_image(self.image, out, N * S * S, alpha)
        return out.reshape((N, S, S) if alpha else (N, S, S, 4))

    def proj_numpy(self, N, V):
        out = np.empty((N * V, 3), dtype=self.np_float())
        _store_proj(self.proj, out, N * V)
        return out.reshape(N, V, 3)

    def set_image_grad(self, g, N, S, alpha=False):
        g = np.asarray(g).reshape((N * S * S,) if alpha else (N * S * S, 4))
        _load_image_grad(self.image, np.ascontiguousarray(g, dtype=self.np_float()), N * S * S, alpha)

    def clear_grads(self, V, F, N, S):
        _clear_grads(self.vertices, self.colors, self.world, self.rotation, self.translation,
                     self.camera, self.proj, self.light, self.image, V, F, N, N * S * S)
        if self.sums:
            _clear_sum_grads(self.wsum, self.csum, self.logsum, N * S * S)

    def grads_numpy(self, V, N):
        fp = self.np_float()
        out = {"vertices": np.empty((V, 3), fp), "colors": np.empty((V, 3), fp), "camera": np.empty((N, 3), fp)}
        _store_vec3_grad(self.vertices, out["vertices"], V)
        _store_vec3_grad(self.colors, out["colors"], V)
        _store_vec3_grad(self.camera, out["camera"], N)
        pose = np.empty(6, fp)
        _store_pose_grad(self.rotation, self.translation, pose)
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
