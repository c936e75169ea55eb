"""Procedural meshes: the sphere the fits start from, and targets to fit.

Every face is counter-clockwise seen from outside, i.e. its outward normal is
(v1 - v0) x (v2 - v0). Every target fits inside the unit sphere (the default
camera sees all of it) and carries smooth vertex colours for colour fitting.
"""
import numpy as np

from .mesh import Mesh

_T = (1 + 5 ** 0.5) / 2  # golden ratio: the icosahedron's vertices are (0, ±1, ±t) cycled
_ICOSAHEDRON_V = [(-1, _T, 0), (1, _T, 0), (-1, -_T, 0), (1, -_T, 0),
                  (0, -1, _T), (0, 1, _T), (0, -1, -_T), (0, 1, -_T),
                  (_T, 0, -1), (_T, 0, 1), (-_T, 0, -1), (-_T, 0, 1)]
_ICOSAHEDRON_F = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11),
                  (1, 5, 9), (5, 11, 4), (11, 10, 2), (10, 7, 6), (7, 1, 8),
                  (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9),
                  (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]


def _subdivide(vertices, faces):
    """Split every triangle into 4 at its edge midpoints (shared edges share a midpoint)."""
    a, b, c = faces.T
    edges = np.sort(np.stack([np.stack([a, b], 1), np.stack([b, c], 1),
                              np.stack([c, a], 1)]).reshape(-1, 2), axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    midpoints = (vertices[unique[:, 0]] + vertices[unique[:, 1]]) / 2
    ab, bc, ca = (len(vertices) + inverse.ravel()).reshape(3, -1)
    # Corner triangles keep the parent's orientation, and so does the middle one.
    faces = np.concatenate([np.stack(t, 1) for t in
                            [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]])
    return np.concatenate([vertices, midpoints]), faces


def icosphere(level=3, radius=1.0):
    """Subdivided icosahedron: 20 * 4**level faces, every vertex exactly at `radius`."""
    v = np.array(_ICOSAHEDRON_V, dtype=np.float64)
    f = np.array(_ICOSAHEDRON_F, dtype=np.int64)
    for _ in range(level):
        v, f = _subdivide(v, f)
    v *= radius / np.linalg.norm(v, axis=1, keepdims=True)  # project onto the sphere
    return Mesh(v, f)


def _weld(vertices, faces):
    """Merge coincident vertices (grid patches meet along shared edges)."""
    key = np.round(vertices, 9)
    unique, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return vertices[first], inverse.ravel()[faces]


def cube(size=1.0, subdivisions=0):
    """Axis-aligned cube of side `size` centred at 0; each side a grid of
    (subdivisions + 1)**2 squares, two triangles each (12 triangles when 0)."""
    n = subdivisions + 1
    s = np.linspace(-0.5, 0.5, n + 1) * size
    su, sv = [g.ravel() for g in np.meshgrid(s, s, indexing="ij")]  # grid point (i, j) -> i*(n+1)+j
    i, j = [g.ravel() for g in np.meshgrid(np.arange(n), np.arange(n), indexing="ij")]
    p00, p10, p01, p11 = i * (n + 1) + j, (i + 1) * (n + 1) + j, i * (n + 1) + j + 1, (i + 1) * (n + 1) + j + 1
    quad = np.concatenate([np.stack([p00, p10, p11], 1), np.stack([p00, p11, p01], 1)])
    vertices, faces = [], []
    for normal in np.vstack([np.eye(3), -np.eye(3)]):
        u = np.roll(normal, 1)  # u, v span the side and u x v = normal: CCW from outside
        v = np.cross(normal, u)
        faces.append(quad + len(vertices) * len(su))
        vertices.append(normal * size / 2 + su[:, None] * u + sv[:, None] * v)
    return Mesh(*_weld(np.concatenate(vertices), np.concatenate(faces)))


def torus(major=0.6, minor=0.25, n_major=32, n_minor=16):
    """Torus around the y axis: a tube of radius `minor` whose centre circle has radius `major`."""
    u = np.arange(n_major) * 2 * np.pi / n_major  # angle around the y axis
    w = np.arange(n_minor) * 2 * np.pi / n_minor  # angle around the tube
    U, W = [g.ravel() for g in np.meshgrid(u, w, indexing="ij")]
    ring = major + minor * np.cos(W)
    vertices = np.stack([ring * np.cos(U), minor * np.sin(W), ring * np.sin(U)], 1)
    i, j = [g.ravel() for g in np.meshgrid(np.arange(n_major), np.arange(n_minor), indexing="ij")]
    index = lambda i, j: (i % n_major) * n_minor + j % n_minor  # wrap around both circles
    a, b, c, d = index(i, j), index(i, j + 1), index(i + 1, j + 1), index(i + 1, j)
    # d/dw x d/du points out of the tube, so walk the tube angle first.
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return Mesh(vertices, faces)


def _radial(radius_of, level=4):
    """Star-shaped mesh: icosphere vertex direction d moved to radius_of(d).

    Radii stay positive, so no triangle flips: the orientation stays outward.
    """
    sphere = icosphere(level)
    d = sphere.vertices
    return Mesh(d * radius_of(d)[:, None], sphere.faces)


def _paint(mesh, low, high, axis=(0.3, 1.0, 0.2)):
    """Vertex colours blending `low` -> `high` along `axis`, plus a hue shift along x."""
    v = mesh.vertices
    t = v @ np.asarray(axis) / np.linalg.norm(axis)
    t = (t - t.min()) / (t.max() - t.min())
    c = (1 - t)[:, None] * np.asarray(low) + t[:, None] * np.asarray(high)
    c += 0.15 * np.sin(3 * v[:, :1] + np.array([0.0, 2.1, 4.2]))  # vary across, not just along
    return mesh.with_colors(np.clip(c, 0, 1))


def blob():
    """Smooth bumpy sphere: radius varied by a few low-frequency harmonics."""
    def r(d):
        x, y, z = d.T
        return (1 + 0.12 * np.sin(2.5 * x + 0.3) * np.cos(2 * y) + 0.10 * np.sin(3 * z + 1.0)
                + 0.08 * np.cos(2 * (x + y)) + 0.06 * x * y * z * 5)
    m = _radial(r)
    return _paint(Mesh(m.vertices * 0.9 / np.linalg.norm(m.vertices, axis=1).max(), m.faces),
                  (0.9, 0.3, 0.2), (0.2, 0.5, 0.9))


def spiky(radius=0.1, length=0.9):
    """A ball with six thin arms (capped cylinders): thin parts are hard to fit."""
    arms = np.array([(1, 0.1, 0), (-1, 0.2, 0.1), (0, 1, 0.2), (0.1, -1, -0.1),
                     (0.2, 0, 1), (-0.1, -0.2, -1)])
    arms /= np.linalg.norm(arms, axis=1, keepdims=True)

    def r(d, body=0.45, p=12):
        # Along a direction at angle θ to an arm, its capped cylinder ends at
        # min(length / cos θ, radius / sin θ); p-norms make min and max smooth.
        cos = np.clip(d @ arms.T, 1e-6, 1)
        sin = np.sqrt(1 - cos ** 2) + 1e-6
        arm = (np.minimum(length / cos, 10) ** -p + (radius / sin) ** -p) ** (-1 / p)
        return (body ** p + (arm ** p).sum(axis=1)) ** (1 / p)  # union with the body
    return _paint(_radial(r), (0.95, 0.8, 0.1), (0.6, 0.1, 0.6))


def bowl():
    """A sphere with a deep dent from above: a concavity silhouettes alone cannot see."""
    def r(d):
        dent = np.exp((d @ np.array([0.0, 1.0, 0.0]) - 1) / 0.15)  # 1 at the top, fades over ~30°
        return 0.9 * (1 - 0.6 * dent)
    return _paint(_radial(r), (0.1, 0.6, 0.3), (0.9, 0.9, 0.3))


def peanut():
    """Two lobes joined by a waist along x: a concavity that silhouettes do show."""
    return _paint(_radial(lambda d: 0.5 + 0.42 * d[:, 0] ** 2), (0.8, 0.5, 0.2),
                  (0.3, 0.2, 0.7), axis=(1.0, 0.2, 0.0))


def cube_target():
    """Subdivided cube (corners at radius 0.87) so vertex colours can vary over each side."""
    return _paint(cube(1.0, subdivisions=4), (0.2, 0.3, 0.9), (0.9, 0.6, 0.2))


def torus_target():
    """Genus-1 torus: no deformation of a sphere reaches it (outer radius 0.85)."""
    return _paint(torus(), (0.9, 0.2, 0.4), (0.2, 0.8, 0.8), axis=(1.0, 0.5, 0.0))


TARGETS = {"blob": blob, "spiky": spiky, "bowl": bowl, "peanut": peanut,
           "cube": cube_target, "torus": torus_target}
