"""A Scene: one mesh seen by N cameras, as Taichi fields, and the render pipeline.

    pose → project → lighting → binning → (soft: shift, accumulate, resolve)
                                         (hard: zbuffer, shade)

Every stage is a kernel over fields, so a user can differentiate any loss of
`scene.image` with `ti.ad.Tape`:

    scene = renderer.scene(mesh, cameras)
    with ti.ad.Tape(loss):
        scene.render()
        my_loss(scene.image, loss)
    scene.vertices.grad.to_numpy()
"""
import numpy as np
import taichi as ti

from . import aggregate, backend, hard, lighting, project, soft
from .binning import Bins
from .camera import as_camera
from .mesh import Mesh


class Scene:
    """Fields (all but `faces` with gradients):

    vertices (V,) vec3   object-space vertices        colors (V,) vec3
    rotation () vec3     axis-angle pose, radians     translation () vec3
    camera (N,) vec3     (distance, elevation°, azimuth°) per view
    image (N, S, S, 4)   RGBA output of `render()`
    """

    def __init__(self, renderer, mesh, cameras, tile="auto"):
        if not isinstance(mesh, Mesh):
            raise TypeError(f"mesh must be an sr.Mesh, got {type(mesh).__name__}; "
                            "build one with sr.Mesh(vertices, faces) or sr.load_obj(path)")
        backend.ensure_init()
        self.generation = backend.generation()
        self.renderer = renderer
        cam, self.batched = as_camera(cameras)
        self.V, self.F, self.N, self.S = mesh.num_vertices, mesh.num_faces, len(cam), renderer.image_size
        V, F, N, S = self.V, self.F, self.N, self.S
        vec3 = lambda shape, grad=True: ti.Vector.field(3, float, shape=shape, needs_grad=grad)  # noqa: E731
        self.vertices, self.colors = vec3(V), vec3(V)
        self.rotation, self.translation = vec3(()), vec3(())
        self.camera = vec3(N)
        self.tan_half = ti.field(float, shape=N)
        self.faces = ti.Vector.field(3, ti.i32, shape=F)
        self.world = vec3(V)
        self.proj = vec3((N, V))
        self.light = ti.field(float, shape=F, needs_grad=True)
        self.image = ti.field(float, shape=(N, S, S, 4), needs_grad=True)
        self.bins = Bins(N, F, S, tile)
        if renderer.soft:
            self.zmax = ti.field(float, shape=(N, S, S))
            if renderer.autodiff:
                self.logsum = ti.field(float, shape=(N, S, S), needs_grad=True)
                self.wsum = ti.field(float, shape=(N, S, S), needs_grad=True)
                self.csum = vec3((N, S, S))
            else:
                self.face = soft.face_setup_field(N, F)
                self.den = ti.field(float, shape=(N, S, S))
                self.uncovered = ti.field(float, shape=(N, S, S))
                self.adjoint = ti.Vector.field(6, float, shape=(N, S, S))
        else:
            self.nearest = ti.field(ti.i32, shape=(N, S, S))
            self.coverage = ti.field(ti.i32, shape=(N, S, S))
        self.faces.from_numpy(mesh.faces.astype(np.int32))
        self.set_vertices(mesh.vertices)
        self.set_colors(mesh.colors)
        self.set_pose(np.zeros(3), np.zeros(3))
        self.set_camera(cam)

    # --- inputs -------------------------------------------------------------
    def _check(self, name, a, shape):
        a = np.asarray(a, dtype=np.float64)
        if a.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or inf values; pass finite numbers")
        return a

    def set_vertices(self, v):
        self.vertices.from_numpy(self._check("vertices", v, (self.V, 3)))

    def set_colors(self, c):
        self.colors.from_numpy(self._check("colors", c, (self.V, 3)))

    def set_pose(self, rotation, translation):
        """Rigid pose: axis-angle `rotation` (radians) and `translation`, applied before the camera."""
        self.rotation.from_numpy(self._check("rotation", rotation, (3,)))
        self.translation.from_numpy(self._check("translation", translation, (3,)))

    def set_camera(self, cameras):
        cam, _ = as_camera(cameras)
        if len(cam) != self.N:
            raise ValueError(f"this scene was built for {self.N} cameras, got {len(cam)}; "
                             "make a new scene with renderer.scene(mesh, cameras)")
        self.camera.from_numpy(cam.params)
        self.tan_half.from_numpy(np.tan(np.radians(cam.viewing_angle)))

    # --- the pipeline --------------------------------------------------------
    def render(self):
        """Run every stage; the result is in `self.image` (usable under ti.ad.Tape).

        Render a scene once per Tape: the hand-written backward reads the per-pixel sums
        the forward left in this scene's fields, so a second render would overwrite the
        first one's (use a second scene for a second render)."""
        if backend.generation() != self.generation:
            raise RuntimeError("sr.init() was called after this scene was built, which frees its "
                               "Taichi fields; build a new one with renderer.scene(mesh, cameras)")
        r, N, S, F, V = self.renderer, self.N, self.S, self.F, self.V
        project.pose(self.vertices, self.rotation, self.translation, self.world, V)
        project.project(self.world, self.camera, self.tan_half, self.proj, N, V)
        lighting.face_light(self.world, self.faces, self.light, r.ambient, r.directional,
                            *r.light_direction, F)
        b = self.bins
        b.build(self.proj, self.faces, r.cull_radius)
        bins = (b.tile_offset, b.tile_count, b.tile_faces)
        if r.soft and not r.autodiff:
            _soft(self)
        elif r.soft:
            sums = (self.zmax, self.wsum, self.csum, self.logsum)
            ti.ad.no_grad(aggregate.shift)(self.proj, self.faces, *bins, *sums, r.cull_d2, r.eps,
                                           r.near, r.far, N, S, b.T)
            aggregate.accumulate(self.proj, self.faces, self.colors, self.light, *bins, *sums,
                                 r.sigma, r.gamma, r.cull_d2, r.near, r.far, N, S, b.T)
            aggregate.resolve(*sums, self.image, r.gamma, r.eps, *r.background, N, S)
        else:
            ti.ad.no_grad(hard.zbuffer)(self.proj, self.faces, *bins, self.nearest, self.coverage,
                                        r.eps, r.near, r.far, N, S, b.T)
            hard.shade(self.proj, self.faces, self.colors, self.light, self.nearest, self.coverage,
                       self.image, *r.background, N, S)
        return self.image

    def pair_stats(self):
        """Binning statistics of the last render, with the (pixel, face) pairs the fine pass
        visited (`listed`), tested (`in_rect`) and computed (`within` the culling radius)."""
        return self.bins.stats(self.proj, self.faces, self.renderer.cull_d2)

    def clear_grads(self):
        """Zero the gradients of this scene's fields (what ti.ad.Tape does for all fields)."""
        sums = (self.wsum, self.csum, self.logsum) if self.renderer.soft and self.renderer.autodiff else ()
        for f in (self.vertices, self.colors, self.rotation, self.translation, self.camera,
                  self.world, self.proj, self.light, self.image, *sums):
            f.grad.fill(0)

    def image_numpy_dtype(self):
        return np.float64 if backend.current()[1] == "f64" else np.float32

    def image_numpy(self):
        """The image as float32 (float64 after sr.init(precision="f64"), for gradient checks)."""
        img = self.image.to_numpy()
        return img if self.batched else img[0]


# The fast soft pass (soft.py) brings its own backward: under ti.ad.Tape, Taichi
# calls _soft_grad where it would have differentiated _soft's kernels.
@ti.ad.grad_replaced
def _soft(scene):
    r, b = scene.renderer, scene.bins
    scene.cutoffs = soft.cutoffs(r.gamma, r.dist_eps, backend.current()[1])  # kept for the backward
    soft.setup(scene.proj, scene.faces, b.rect, scene.face, scene.N, scene.F)
    soft.forward(scene.face, scene.faces, scene.colors, scene.light, b.tile_offset, b.tile_count,
                 b.tile_faces, scene.zmax, scene.den, scene.uncovered, scene.image, r.sigma, r.gamma,
                 r.cull_d2, r.eps, r.near, r.far, *scene.cutoffs, *r.background, scene.N, scene.S, b.T)


@ti.ad.grad_for(_soft)
def _soft_grad(scene):
    r = scene.renderer
    cut, p_floor = scene.cutoffs
    soft.pixel_adjoint(scene.image, scene.zmax, scene.den, scene.uncovered, scene.adjoint, p_floor,
                       scene.N, scene.S)
    soft.backward(scene.proj, scene.faces, scene.colors, scene.light, scene.face, scene.adjoint,
                  r.sigma, r.gamma, r.cull_d2, r.near, r.far, cut, scene.N, scene.S,
                  scene.F)
