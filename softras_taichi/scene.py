"""A Scene: one mesh seen by N cameras as Taichi fields with gradients, for ti.ad.Tape.

    scene = renderer.scene(mesh, cameras)
    with ti.ad.Tape(loss):
        scene.render()
        my_loss(scene.image, loss)
    scene.vertices.grad.to_numpy()

`render()` copies the scene's fields into a shared Workspace (one small kernel), runs
the pipeline there (pipeline.py: kernels compiled once for every size) and copies the
image back (another small kernel).  Both copies are differentiated by the tape, so
gradients land in the scene's own fields.  Only these copy kernels, the upload and
the gradient reset are compiled for each new scene (docs/architecture.md, "Compile once").
"""
import numpy as np
import taichi as ti

from . import backend, fields, pipeline, workspace
from .camera import as_camera
from .mesh import Mesh


@ti.kernel
def _set(vertices: ti.template(), colors: ti.template(), rotation: ti.template(),
         translation: ti.template(), camera: ti.template(), v: ti.types.ndarray(), c: ti.types.ndarray(),
         pose: ti.types.ndarray(), cam: ti.types.ndarray(), which: ti.i32, V: ti.i32, N: ti.i32):
    """Upload the inputs flagged in `which` (1 vertices, 2 colours, 4 pose, 8 cameras)."""
    for i in range(ti.max(V, N, 1)):
        if ((which & 1) != 0) & (i < V):
            vertices[i] = ti.Vector([v[i, 0], v[i, 1], v[i, 2]])
        if ((which & 2) != 0) & (i < V):
            colors[i] = ti.Vector([c[i, 0], c[i, 1], c[i, 2]])
        if ((which & 4) != 0) & (i == 0):
            rotation[None] = ti.Vector([pose[0], pose[1], pose[2]])
            translation[None] = ti.Vector([pose[3], pose[4], pose[5]])
        if ((which & 8) != 0) & (i < N):
            camera[i] = ti.Vector([cam[i, 0], cam[i, 1], cam[i, 2]])


@ti.kernel
def _gather(vertices: ti.template(), colors: ti.template(), rotation: ti.template(),
            translation: ti.template(), camera: ti.template(), ws_vertices: ti.template(),
            ws_colors: ti.template(), ws_rotation: ti.template(), ws_translation: ti.template(),
            ws_camera: ti.template(), V: ti.i32, N: ti.i32):
    """The scene's inputs into the workspace (its reverse adds the workspace's gradients to the scene's)."""
    for i in range(ti.max(V, N)):
        if i < V:
            ws_vertices[i] = vertices[i]
            ws_colors[i] = colors[i]
        if i < N:
            ws_camera[i] = camera[i]
        if i == 0:
            ws_rotation[None] = rotation[None]
            ws_translation[None] = translation[None]


@ti.kernel
def _scatter(ws_image: ti.template(), image: ti.template(), N: ti.i32, S: ti.i32):
    """The workspace's flat image into the scene's (N, S, S, 4) RGBA or (N, S, S) alpha field."""
    for n, y, x in ti.ndrange(N, S, S):
        i = (n * S + y) * S + x
        if ti.static(len(image.shape) == 4):
            for c in ti.static(range(4)):
                image[n, y, x, c] = ws_image[i][c]
        else:
            image[n, y, x] = ws_image[i][3]


@ti.kernel
def _clear(vertices: ti.template(), colors: ti.template(), rotation: ti.template(),
           translation: ti.template(), camera: ti.template(), image: ti.template(), V: ti.i32, N: ti.i32):
    z3 = ti.Vector([0.0, 0.0, 0.0])
    for i in range(ti.max(V, N, 1)):
        if i < V:
            vertices.grad[i], colors.grad[i] = z3, z3
        if i < N:
            camera.grad[i] = z3
        if i == 0:
            rotation.grad[None], translation.grad[None] = z3, z3
    for I in ti.grouped(image):
        image.grad[I] = 0.0


class _Readout:
    """`.to_numpy()` of a workspace array as of this scene's last render (e.g. scene.proj)."""

    def __init__(self, fn):
        self.to_numpy = fn


class Scene:
    """Fields (all with gradients):

    vertices (V,) vec3   object-space vertices        colors (V,) vec3
    rotation () vec3     axis-angle pose, radians     translation () vec3
    camera (N,) vec3     (distance, elevation°, azimuth°) per view
    image (N, S, S, 4)   RGBA output of `render()`  ((N, S, S) alpha for SilhouetteRenderer)
    """

    def __init__(self, renderer, mesh, cameras):
        if not isinstance(mesh, Mesh):
            raise TypeError(f"mesh must be an sr.Mesh, got {type(mesh).__name__}; "
                            "build one with sr.Mesh(vertices, faces) or sr.load_obj(path)")
        backend.ensure_init()
        self.generation = backend.generation()
        self.renderer = renderer
        cam, self.batched = as_camera(cameras)
        self.V, self.F, self.N, self.S = mesh.num_vertices, mesh.num_faces, len(cam), renderer.image_size
        V, N, S = self.V, self.N, self.S
        vec3 = lambda shape: fields.vector(3, float, shape, needs_grad=True)  # noqa: E731
        self.vertices, self.colors = vec3(V), vec3(V)
        self.rotation, self.translation = vec3(()), vec3(())
        self.camera = vec3(N)
        # (one field each: ti.ad.Tape's default gradient reset compiles a small kernel per
        # block of fields it has not seen, 6 here, 9 if they shared one FieldsBuilder tree)
        self.image = fields.scalar(float, (N, S, S) if renderer.alpha_only else (N, S, S, 4), needs_grad=True)
        self.faces = mesh.faces.astype(np.int32)
        self._ws = None
        fp = self._fp()
        self._set(np.asarray(mesh.vertices, fp), np.asarray(mesh.colors, fp), np.zeros(6, fp),
                  self._cam(cam), which=15)

    # --- inputs -------------------------------------------------------------
    def _fp(self):
        return np.float64 if backend.current()[1] == "f64" else np.float32

    def _check(self, name, a, shape):
        a = np.asarray(a, dtype=np.float64)
        if a.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or inf values; pass finite numbers")
        return np.ascontiguousarray(a, dtype=self._fp())

    def _cam(self, cam):
        self.tan_half = np.tan(np.radians(cam.viewing_angle))
        return np.ascontiguousarray(cam.params, dtype=self._fp())

    def _set(self, v=None, c=None, pose=None, cam=None, which=0):
        fp = self._fp()
        dummy2, dummy1 = np.zeros((1, 3), fp), np.zeros(6, fp)
        _set(self.vertices, self.colors, self.rotation, self.translation, self.camera,
             dummy2 if v is None else v, dummy2 if c is None else c, dummy1 if pose is None else pose,
             dummy2 if cam is None else cam, which, self.V, self.N)

    def set_vertices(self, v):
        self._set(v=self._check("vertices", v, (self.V, 3)), which=1)

    def set_colors(self, c):
        self._set(c=self._check("colors", c, (self.V, 3)), which=2)

    def set_pose(self, rotation, translation):
        """Rigid pose: axis-angle `rotation` (radians) and `translation`, applied before the camera."""
        pose = np.concatenate([self._check("rotation", rotation, (3,)), self._check("translation", translation, (3,))])
        self._set(pose=pose, which=4)

    def set_camera(self, cameras):
        cam, _ = as_camera(cameras)
        if len(cam) != self.N:
            raise ValueError(f"this scene was built for {self.N} cameras, got {len(cam)}; "
                             "make a new scene with renderer.scene(mesh, cameras)")
        self._set(cam=self._cam(cam), which=8)

    # --- the pipeline --------------------------------------------------------
    def render(self):
        """Run every stage; the result is in `self.image` (usable under ti.ad.Tape).

        Render a scene once per Tape: the hand-written backward reads the per-pixel sums
        the forward left in the workspace, so a second render would overwrite the
        first one's (use a second scene for a second render)."""
        if backend.generation() != self.generation:
            raise RuntimeError("sr.init() was called after this scene was built, which frees its "
                               "Taichi fields; build a new one with renderer.scene(mesh, cameras)")
        r, V, F, N, S = self.renderer, self.V, self.F, self.N, self.S
        ws = self._ws = workspace.acquire(self)
        ws.ensure(V, F, N, S, sums=r.soft and r.autodiff)
        ws.owner, ws.request = self, None
        ws.load(faces=self.faces, tan_half=self.tan_half)
        ti.ad.no_grad(ws.start_backward)(V, F, N, S)
        _gather(self.vertices, self.colors, self.rotation, self.translation, self.camera, ws.vertices,
                ws.colors, ws.rotation, ws.translation, ws.camera, V, N)
        pipeline.forward(ws, r, V, F, N, S)
        _scatter(ws.image, self.image, N, S)
        return self.image

    def _rendered(self):
        """The workspace holding this scene's last render (rendered again, without a tape, if
        another scene has used it since)."""
        if self._ws is None or self._ws.owner is not self:
            self.render()
        return self._ws

    @property
    def bins(self):
        """The tile lists of the last render (binning.Bins)."""
        return self._rendered().bins

    @property
    def proj(self):
        """Projected vertices of the last render: `.to_numpy()` gives (N, V, 3) (x_ndc, y_ndc, z')."""
        return _Readout(lambda: self._rendered().proj_numpy(self.N, self.V))

    def uncovered(self):
        """P = Π(1 − D_j) per pixel of the last soft render, (N, S, S)."""
        ws = self._rendered()
        return ws.uncovered.to_numpy()[: self.N * self.S * self.S].reshape(self.N, self.S, self.S)

    def pair_stats(self):
        """Binning statistics of the last render, with the (pixel, face) pairs the fine pass
        visited (`listed`), tested (`in_rect`) and computed (`within` the culling radius)."""
        ws = self._rendered()
        return ws.bins.stats(ws.proj, ws.faces, self.renderer.cull_d2)

    def clear_grads(self):
        """Zero the gradients of this scene's fields (what ti.ad.Tape does for all fields)."""
        _clear(self.vertices, self.colors, self.rotation, self.translation, self.camera, self.image,
               self.V, self.N)

    def image_numpy_dtype(self):
        return self._fp()

    def image_numpy(self):
        """The image as float32 (float64 after sr.init(precision="f64"), for gradient checks)."""
        if self._ws is not None and self._ws.owner is self:
            img = self._ws.image_numpy(self.N, self.S, alpha=self.renderer.alpha_only)
        else:
            img = self.image.to_numpy()
        return img if self.batched else img[0]
