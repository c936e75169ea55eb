"""The NumPy-facing renderers (the README's public API): SoftRenderer and HardRenderer.

Each call reuses a cached Scene of the right size (Taichi fields are never freed,
so allocating per call would leak), uploads the mesh and cameras, and runs the
pipeline.  `scene(mesh, cameras)` hands out a private Scene for ti.ad.Tape.
"""
import math
import numbers

import numpy as np
import taichi as ti

from . import backend
from .camera import as_camera
from .mesh import Mesh
from .scene import Scene

_scenes = {}


def _number(name, value, positive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def _triple(name, value):
    try:
        t = tuple(float(x) for x in value)
    except TypeError:
        raise TypeError(f"{name} must be three numbers like (0, 0, 0), got {value!r}") from None
    if len(t) != 3 or not all(math.isfinite(x) for x in t):
        raise ValueError(f"{name} must be three finite numbers like (0, 0, 0), got {value!r}")
    return t


@ti.kernel
def _weighted_sum(image: ti.template(), weights: ti.template(), loss: ti.template()):
    for I in ti.grouped(image):
        loss[None] += weights[I] * image[I]


class _Renderer:
    soft = True
    autodiff = False

    def __init__(self, image_size=64, near=1.0, far=100.0, eps=1e-3, background=(0, 0, 0),
                 ambient=0.5, directional=0.5, light_direction=(0, 1, 0), tile="auto"):
        if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral):
            raise TypeError(f"image_size must be an int (pixels per side), got {image_size!r}")
        if not 0 < image_size <= 4096:
            raise ValueError(f"image_size must be between 1 and 4096 pixels, got {image_size}")
        self.image_size = int(image_size)
        self.near = _number("near", near, positive=True)
        self.far = _number("far", far, positive=True)
        if self.near >= self.far:
            raise ValueError(f"near ({near}) must be smaller than far ({far})")
        self.eps = _number("eps", eps)
        self.background = _triple("background", background)
        self.ambient = _number("ambient", ambient)
        self.directional = _number("directional", directional)
        l = np.array(_triple("light_direction", light_direction))
        if np.linalg.norm(l) == 0:
            raise ValueError("light_direction must not be the zero vector, e.g. (0, 1, 0) lights from above")
        self.light_direction = tuple(l / np.linalg.norm(l))
        if tile != "auto" and (isinstance(tile, bool) or not isinstance(tile, numbers.Integral) or tile < 1):
            raise ValueError(f"tile must be 'auto' or a positive int (pixels per tile side), got {tile!r}")
        self.tile = tile if tile == "auto" else int(tile)

    # --- scenes --------------------------------------------------------------
    def scene(self, mesh, cameras):
        """A fresh Scene (Taichi fields) for use under ti.ad.Tape."""
        return Scene(self, mesh, cameras, tile=self.tile)

    def _cached_scene(self, mesh, cameras):
        if not isinstance(mesh, Mesh):
            raise TypeError(f"mesh must be an sr.Mesh, got {type(mesh).__name__}; "
                            "build one with sr.Mesh(vertices, faces) or sr.load_obj(path)")
        backend.ensure_init()
        cam, batched = as_camera(cameras)
        key = (backend.generation(), self.soft, self.autodiff, mesh.num_vertices, mesh.num_faces, len(cam),
               self.image_size, self.tile)
        if key[0] != next(iter(_scenes), key)[0]:
            _scenes.clear()  # fields of an older ti.init are gone
        scene = _scenes.get(key)
        if scene is None:
            scene = _scenes[key] = Scene(self, mesh, cam, tile=self.tile)
        else:
            scene.renderer = self
            scene.faces.from_numpy(mesh.faces.astype(np.int32))
            scene.set_vertices(mesh.vertices)
            scene.set_colors(mesh.colors)
            scene.set_pose(np.zeros(3), np.zeros(3))
            scene.set_camera(cam)
        scene.batched = batched
        return scene

    # --- the NumPy API -------------------------------------------------------
    def render(self, mesh, cameras):
        """(S, S, 4) float32 RGBA for one camera; (N, S, S, 4) for a list or batch."""
        scene = self._cached_scene(mesh, cameras)
        scene.render()
        return scene.image_numpy()

    def grads(self, mesh, cameras, grad_image):
        """Gradients of sum(grad_image * render(mesh, cameras)) with respect to
        vertices (V,3), colors (V,3), pose rotation (3,), translation (3,) and
        camera (N,3) = d/d(distance, elevation°, azimuth°)."""
        scene = self._cached_scene(mesh, cameras)
        shape = (scene.N, scene.S, scene.S, 4)
        g = np.asarray(grad_image)
        if g.dtype == object or not np.issubdtype(g.dtype, np.number):
            raise TypeError(f"grad_image must be a numeric array, got dtype {g.dtype}")
        expected = shape if scene.batched else shape[1:]
        if g.shape != expected:
            raise ValueError(f"grad_image must have the shape of the rendered image {expected}, got {g.shape}")
        if not np.all(np.isfinite(g)):
            raise ValueError("grad_image contains NaN or inf values")
        if not hasattr(scene, "loss"):
            scene.loss = ti.field(float, shape=(), needs_grad=True)
            scene.weights = ti.field(float, shape=shape)
        scene.weights.from_numpy(g.reshape(shape).astype(scene.image_numpy_dtype()))
        scene.clear_grads()  # only this scene's: Tape's default clears every field ever made
        with ti.ad.Tape(scene.loss, clear_gradients=False):
            scene.render()
            _weighted_sum(scene.image, scene.weights, scene.loss)
        return {"vertices": scene.vertices.grad.to_numpy(), "colors": scene.colors.grad.to_numpy(),
                "rotation": scene.rotation.grad.to_numpy(), "translation": scene.translation.grad.to_numpy(),
                "camera": scene.camera.grad.to_numpy()}

    def vertex_grad(self, mesh, cameras, grad_image):
        """(V, 3): d/dvertices of sum(grad_image * render(mesh, cameras))."""
        return self.grads(mesh, cameras, grad_image)["vertices"]

    def color_grad(self, mesh, cameras, grad_image):
        """(V, 3): d/dcolors of sum(grad_image * render(mesh, cameras))."""
        return self.grads(mesh, cameras, grad_image)["colors"]


class SoftRenderer(_Renderer):
    """The Soft Rasterizer (docs/math.md) with the official SoftRas defaults."""

    soft = True

    def __init__(self, image_size=64, sigma=1e-4, gamma=1e-4, eps=1e-3, near=1.0, far=100.0,
                 dist_eps=1e-4, background=(0, 0, 0), ambient=0.5, directional=0.5,
                 light_direction=(0, 1, 0), tile="auto", autodiff=False):
        super().__init__(image_size, near, far, eps, background, ambient, directional,
                         light_direction, tile)
        # autodiff=True renders with aggregate.py's kernels, which Taichi differentiates
        # itself: the readable reference that soft.py's hand-written backward is tested against.
        self.autodiff = bool(autodiff)
        self.sigma = _number("sigma", sigma, positive=True)
        self.gamma = _number("gamma", gamma, positive=True)
        self.dist_eps = _number("dist_eps", dist_eps, positive=True)
        if self.dist_eps >= 0.5:
            raise ValueError(f"dist_eps must lie in (0, 0.5): faces are culled where D <= dist_eps, got {dist_eps}")
        # docs/math.md: a face is culled for a pixel outside it when d² ≥ σ ln(1/dist_eps − 1)
        self.cull_d2 = self.sigma * math.log(1.0 / self.dist_eps - 1.0)
        self.cull_radius = math.sqrt(self.cull_d2) * 1.001 + 1e-6  # binning margin for rounding

    def __repr__(self):
        return (f"SoftRenderer(image_size={self.image_size}, sigma={self.sigma:g}, gamma={self.gamma:g}, "
                f"eps={self.eps:g}, dist_eps={self.dist_eps:g})")


class HardRenderer(_Renderer):
    """The z-buffer rasterizer with the same conventions: the σ, γ → 0 limit."""

    soft = False
    cull_d2 = 0.0
    cull_radius = 1e-6

    def __repr__(self):
        return f"HardRenderer(image_size={self.image_size})"
