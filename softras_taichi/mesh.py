"""Mesh: a triangle mesh as three validated numpy arrays.

    vertices  (V, 3) float64   positions in object space
    faces     (F, 3) int64     vertex indices of each triangle, counter-clockwise
                               seen from outside: outward normal (v1 - v0) x (v2 - v0)
    colors    (V, 3) float64   per-vertex RGB in [0, 1] (default white)

Everything is checked once, here, so the renderer never has to: a bad array fails
now, with a message that says what is wrong and how to fix it, instead of as a
garbage image or a crash inside a Taichi kernel.
"""
import numpy as np


def _numeric_array(x, name):
    """`x` as a numpy array of numbers, or a TypeError that says why it is not one."""
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as e:  # ragged lists, objects numpy can't convert
        raise TypeError(f"{name} must be array-like of numbers (e.g. a numpy array "
                        f"or nested lists of equal length); could not convert: {e}") from None
    if a.dtype.kind not in "biuf":  # object, strings, complex, datetimes...
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}; "
                        f"convert it with np.asarray({name}, dtype=float)")
    return a


def _check_shape(a, name, letter, meaning, fix):
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"{name} must have shape ({letter}, 3) ({meaning}), "
                         f"got {a.shape}; {fix}")


def _check_finite(a, name):
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise ValueError(f"{name} contain {bad.sum()} non-finite (NaN or inf) row(s), "
                         f"the first at index {np.flatnonzero(bad)[0]}; "
                         f"fix or remove them before building the Mesh")


def _vertices(x):
    v = _numeric_array(x, "vertices")
    if v.dtype.kind == "b":
        raise TypeError("vertices must be numbers, got booleans; pass float coordinates")
    if v.size == 0:
        raise ValueError("the mesh has no vertices; pass a (V, 3) array with V >= 3")
    _check_shape(v, "vertices", "V", "one row of x, y, z per vertex",
                 "reshape with vertices.reshape(-1, 3)")
    v = v.astype(np.float64)  # astype copies: the caller's array is never shared
    _check_finite(v, "vertices")
    return v


def _faces(x, num_vertices):
    f = _numeric_array(x, "faces")
    if f.dtype.kind == "b":
        raise TypeError("faces must be integer vertex indices, got booleans; "
                        "pass an int array such as np.array([[0, 1, 2]])")
    if f.dtype.kind == "f":
        # Integral floats (e.g. from np.loadtxt) are fine; 0.5 is not an index.
        if not (np.isfinite(f).all() and (f == np.round(f)).all()):
            raise TypeError("faces must be integer vertex indices, got floats with a "
                            "fractional part (or NaN/inf); faces index the vertex array, "
                            "so round or fix them and cast with .astype(int)")
    if f.size == 0:
        raise ValueError("the mesh has no faces; pass a (F, 3) array of vertex indices "
                         "with F >= 1 (a point cloud cannot be rendered)")
    _check_shape(f, "faces", "F", "one row of three vertex indices per triangle",
                 "triangulate polygons first")
    f = f.astype(np.int64)
    bad = ((f < 0) | (f >= num_vertices)).any(axis=1)
    if bad.any():
        row = np.flatnonzero(bad)[0]
        value = f[row][(f[row] < 0) | (f[row] >= num_vertices)][0]
        raise ValueError(f"faces index vertices outside the valid range 0..{num_vertices - 1}: "
                         f"face row {row} is {f[row].tolist()} (bad index {value}); indices are "
                         f"0-based and must be < the number of vertices ({num_vertices})")
    return f


def _colors(x, num_vertices):
    if x is None:
        return np.ones((num_vertices, 3))  # white: the face's lighting shows through
    c = _numeric_array(x, "colors").astype(np.float64)
    if c.shape == (3,):  # one RGB for the whole mesh: convenient, so allow it
        c = np.tile(c, (num_vertices, 1))
    if c.shape != (num_vertices, 3):
        raise ValueError(f"colors must have shape ({num_vertices}, 3) (one RGB row per "
                         f"vertex, matching the {num_vertices} vertices), got {c.shape}; "
                         f"give one colour per vertex or a single (3,) RGB")
    _check_finite(c, "colors")
    if c.min() < 0 or c.max() > 1:
        raise ValueError(f"colors must lie in [0, 1], got values in [{c.min():g}, {c.max():g}]; "
                         f"divide 0-255 colours by 255 or use np.clip(colors, 0, 1)")
    return c


class Mesh:
    """A triangle mesh with per-vertex colours; the arrays are validated copies."""

    def __init__(self, vertices, faces, colors=None):
        self.vertices = _vertices(vertices)
        self.faces = _faces(faces, len(self.vertices))
        self.colors = _colors(colors, len(self.vertices))

    @property
    def num_vertices(self):
        return len(self.vertices)

    @property
    def num_faces(self):
        return len(self.faces)

    def copy(self):
        return Mesh(self.vertices, self.faces, self.colors)

    def with_colors(self, colors):
        """The same geometry with new per-vertex colours ((V, 3) or one (3,) RGB)."""
        return Mesh(self.vertices, self.faces, colors)

    def normalized(self, radius=1.0):
        """A new mesh centred at its bounding-box centre whose farthest vertex is at `radius`.

        Puts any model where the default camera (distance 2.732, 30° half field of
        view) sees all of it: the unit sphere just fits the picture.
        """
        centre = (self.vertices.min(axis=0) + self.vertices.max(axis=0)) / 2
        v = self.vertices - centre
        extent = np.linalg.norm(v, axis=1).max()
        if extent == 0:
            raise ValueError("cannot normalize a mesh whose vertices all coincide; "
                             "check the vertex array")
        return Mesh(v * (radius / extent), self.faces, self.colors)

    def save_obj(self, path):
        """Write the mesh as a Wavefront OBJ file (see obj.save_obj)."""
        from .obj import save_obj  # obj.py imports Mesh, so import lazily
        save_obj(self, path)

    def __repr__(self):
        lo, hi = self.vertices.min(axis=0), self.vertices.max(axis=0)
        painted = "" if np.all(self.colors == 1) else ", colored"
        return (f"Mesh(V={self.num_vertices}, F={self.num_faces}{painted}, "
                f"bbox=[{', '.join(f'{a:.3g}' for a in lo)}]..[{', '.join(f'{b:.3g}' for b in hi)}])")
