"""The NumPy-facing renderers (the README's public API): SoftRenderer, SilhouetteRenderer
and HardRenderer.

Each call uploads the mesh and cameras into a shared Workspace and runs the pipeline
there (kernels compiled once for every size: docs/architecture.md, "Compile once"),
then runs it backwards for the gradients without a ti.ad.Tape.  A gradient call right
after `render` of exactly the same inputs reuses that render's forward pass (look at the
image, compute dL/dimage, ask for the gradient: the forward is paid once); every other
call runs the whole pipeline, so timing a call times all of its work.
`scene(mesh, cameras)` hands out a Scene with its own fields for ti.ad.Tape.
"""
import math
import numbers

import numpy as np

from . import pipeline, workspace
from .binning import Bins
from .camera import as_camera
from .mesh import Mesh
from .scene import Scene

_NUMPY_API = object()  # the owner of a workspace the NumPy API rendered in


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


class _Renderer:
    soft = True
    autodiff = False
    alpha_only = False

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

    # --- scenes ---------------------------------------------------------------
    def scene(self, mesh, cameras):
        """A fresh Scene (Taichi fields) for use under ti.ad.Tape."""
        return Scene(self, mesh, cameras)

    def _settings(self):
        return tuple(sorted((k, v) for k, v in vars(self).items() if not k.startswith("_")))

    def _run(self, mesh, cameras, reuse=False):
        """Render in a workspace and return it; with `reuse`, a workspace whose last job was
        `render` of exactly these inputs is returned as it is (its forward state is kept)."""
        if not isinstance(mesh, Mesh):
            raise TypeError(f"mesh must be an sr.Mesh, got {type(mesh).__name__}; "
                            "build one with sr.Mesh(vertices, faces) or sr.load_obj(path)")
        cam, batched = as_camera(cameras)
        V, F, N, S = mesh.num_vertices, mesh.num_faces, len(cam), self.image_size
        ws = workspace.acquire(_NUMPY_API)
        request = (type(self), self._settings(), Bins.MAX_ENTRIES, mesh.vertices, mesh.faces, mesh.colors,
                   cam.params, cam.viewing_angle)
        if not (reuse and ws.owner is _NUMPY_API and _same(ws.request, request)):
            ws.ensure(V, F, N, S, sums=self.soft and self.autodiff)
            ws.owner = _NUMPY_API
            ws.load(vertices=mesh.vertices, colors=mesh.colors, faces=mesh.faces, pose=np.zeros(6), cameras=cam)
            pipeline.forward(ws, self, V, F, N, S)
        ws.request = tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in request)
        ws.sizes, ws.batched = (V, F, N, S), batched
        return ws

    # --- the NumPy API -------------------------------------------------------
    def render(self, mesh, cameras):
        """(S, S, 4) float32 RGBA for one camera; (N, S, S, 4) for a list or batch."""
        ws = self._run(mesh, cameras)
        _, _, N, S = ws.sizes
        img = ws.image_numpy(N, S, alpha=self.alpha_only)
        return img if ws.batched else img[0]

    def grads(self, mesh, cameras, grad_image):
        """Gradients of sum(grad_image * render(mesh, cameras)) with respect to
        vertices (V,3), colors (V,3), pose rotation (3,), translation (3,) and
        camera (N,3) = d/d(distance, elevation°, azimuth°); "image" is the render itself."""
        g = np.asarray(grad_image)
        if g.dtype == object or not np.issubdtype(g.dtype, np.number):
            raise TypeError(f"grad_image must be a numeric array, got dtype {g.dtype}")
        cam, batched = as_camera(cameras)
        S = self.image_size
        shape = (len(cam), S, S) if self.alpha_only else (len(cam), S, S, 4)
        expected = shape if batched else shape[1:]
        if g.shape != expected:
            raise ValueError(f"grad_image must have the shape of the rendered image {expected}, got {g.shape}")
        if not np.all(np.isfinite(g)):
            raise ValueError("grad_image contains NaN or inf values")
        ws = self._run(mesh, cam if batched else cam[0], reuse=True)
        ws.request = None  # reused once: the gradient call after a render; a second one renders again
        V, F, N, S = ws.sizes
        ws.start_backward(V, F, N, S, g, alpha=self.alpha_only)
        ws.backward()
        out = ws.grads_numpy(V, N)
        img = ws.image_numpy(N, S, alpha=self.alpha_only)
        out["image"] = img if batched else img[0]
        return out

    def vertex_grad(self, mesh, cameras, grad_image):
        """(V, 3): d/dvertices of sum(grad_image * render(mesh, cameras))."""
        return self.grads(mesh, cameras, grad_image)["vertices"]

    def color_grad(self, mesh, cameras, grad_image):
        """(V, 3): d/dcolors of sum(grad_image * render(mesh, cameras))."""
        return self.grads(mesh, cameras, grad_image)["colors"]

    def pair_stats(self, mesh, cameras):
        """Render, then the binning statistics (tile side, list sizes) and the (pixel, face)
        pairs the fine pass visited (`listed`), tested (`in_rect`) and computed (`within`)."""
        ws = self._run(mesh, cameras)
        return ws.bins.stats(ws.proj, ws.faces, self.cull_d2)


def _same(a, b):
    if a is None or len(a) != len(b):
        return False
    return all(np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y for x, y in zip(a, b))


class SoftRenderer(_Renderer):
    """The Soft Rasterizer (docs/math.md).  Defaults: the official SoftRas renderer's, except
    σ = 1e-4 (its demos' and PyTorch3D's; its constructor has 1e-5) and 64 px (its
    constructor has 256): docs/math.md §10 gives each default's source."""

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


class SilhouetteRenderer(SoftRenderer):
    """SoftRenderer's silhouette A = 1 − Π(1 − D_j) alone: what fitting silhouettes needs.

    Same constructor and methods; `render` gives (S, S) or (N, S, S) float32 alpha,
    `grads`/`vertex_grad` take a gradient image of that shape, and `scene(...).image`
    is an (N, S, S) field.  No depth softmax, colour or lighting is computed, and a
    pixel stops visiting faces once its silhouette is 1 to rounding.  Colour-related
    settings (gamma, eps, background, lighting) are accepted and ignored; colour
    gradients are zero."""

    alpha_only = True

    def __repr__(self):
        return f"SilhouetteRenderer(image_size={self.image_size}, sigma={self.sigma:g}, dist_eps={self.dist_eps:g})"


class HardRenderer(_Renderer):
    """The z-buffer rasterizer with the same conventions: the σ, γ → 0 limit."""

    soft = False
    cull_d2 = 0.0
    cull_radius = 1e-6

    def __repr__(self):
        return f"HardRenderer(image_size={self.image_size})"
