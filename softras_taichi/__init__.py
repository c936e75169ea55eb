"""softras-taichi: the Soft Rasterizer (Liu et al., ICCV 2019) in Taichi, as a course.

    import softras_taichi as sr
    sr.init("auto")
    img = sr.SoftRenderer(image_size=64).render(sr.icosphere(3), sr.Camera.look_at(elevation=30))
"""
import os

os.environ.setdefault("ENABLE_TAICHI_HEADER_PRINT", "0")

from .backend import init  # noqa: E402
from .camera import Camera  # noqa: E402
from .mesh import Mesh  # noqa: E402
from .obj import load_obj, save_obj  # noqa: E402
from .primitives import TARGETS, cube, icosphere, torus  # noqa: E402
from .renderer import HardRenderer, SilhouetteRenderer, SoftRenderer  # noqa: E402
from .scene import Scene  # noqa: E402
from .views import Views, load_views, save_views  # noqa: E402

__version__ = "0.1.0"
__all__ = ["init", "Camera", "Mesh", "load_obj", "save_obj", "TARGETS", "cube", "icosphere",
           "torus", "SoftRenderer", "SilhouetteRenderer", "HardRenderer", "Scene", "Views", "load_views",
           "save_views"]
