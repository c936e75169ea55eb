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


# --------------------------------------------------------------------------- thin parts
# At 64 px the default camera (distance 2.732, half field of view 30°) sees one pixel
# as 2/64 · 2.732 · tan 30° = 0.049 scene units at the origin: a part 0.05 thick is one
# pixel wide.  These targets are unions of closed convex parts that overlap (like most
# real models: a body, legs, wings), so each part is a closed, outward mesh of its own.

PIXEL_AT_64 = 2 / 64 * 2.732 * np.tan(np.radians(30.0))


def _union(*parts):
    """One Mesh of several closed parts (faces renumbered; the parts may overlap)."""
    v, f, n = [], [], 0
    for m in parts:
        v.append(m.vertices)
        f.append(m.faces + n)
        n += m.num_vertices
    return Mesh(np.concatenate(v), np.concatenate(f))


def _outward(vertices, faces):
    """Faces of a convex part turned to face away from its centroid."""
    c = vertices[faces].mean(axis=1)
    n = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    inward = np.sum(n * (c - vertices.mean(axis=0)), axis=1) < 0
    faces = faces.copy()
    faces[inward] = faces[inward][:, ::-1]
    return Mesh(vertices, faces)


def ellipsoid(centre, radii, level=2):
    """An icosphere stretched to semi-axes `radii` (x, y, z) around `centre`."""
    s = icosphere(level)
    return Mesh(s.vertices * np.asarray(radii, dtype=np.float64) + np.asarray(centre, dtype=np.float64), s.faces)


def rod(a, b, radius, sides=6):
    """A closed prism of `sides` sides and circumradius `radius` from point a to point b."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    axis = (b - a) / np.linalg.norm(b - a)
    u = np.cross(axis, [0.0, 0.0, 1.0] if abs(axis[2]) < 0.9 else [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    w = np.cross(axis, u)
    t = 2 * np.pi * np.arange(sides) / sides
    ring = radius * (np.cos(t)[:, None] * u + np.sin(t)[:, None] * w)
    v = np.concatenate([a + ring, b + ring, [a, b]])
    k = np.arange(sides)
    k1 = (k + 1) % sides
    f = np.concatenate([np.stack([k, k1, sides + k1], 1), np.stack([k, sides + k1, sides + k], 1),
                        np.stack([np.full(sides, 2 * sides), k1, k], 1),
                        np.stack([np.full(sides, 2 * sides + 1), sides + k, sides + k1], 1)])
    return _outward(v, f)


def box(centre, size, subdivisions=2):
    """An axis-aligned box of side lengths `size` around `centre`."""
    c = cube(1.0, subdivisions)
    return Mesh(c.vertices * np.asarray(size, dtype=np.float64) + np.asarray(centre, dtype=np.float64), c.faces)


def insect(leg_width=PIXEL_AT_64):
    """An ant: head, thorax, petiole and abdomen along x, and six legs `leg_width` thick
    (one pixel at 64 px), each a femur up and out, then a tibia down to the ground."""
    body = [ellipsoid((0.56, 0.06, 0.0), (0.13, 0.10, 0.10)),
            ellipsoid((0.25, 0.03, 0.0), (0.20, 0.085, 0.085)),
            ellipsoid((0.01, 0.02, 0.0), (0.07, 0.05, 0.05)),
            ellipsoid((-0.33, 0.06, 0.0), (0.30, 0.17, 0.16))]
    legs = []
    for x, reach in ((0.36, 0.22), (0.25, 0.0), (0.14, -0.24)):   # front legs forward, hind legs back
        for side in (1.0, -1.0):
            hip = np.array([x, 0.0, 0.05 * side])
            knee = np.array([x + 0.5 * reach, 0.16, 0.38 * side])
            foot = np.array([x + reach, -0.32, 0.62 * side])
            legs += [rod(hip, knee, leg_width / 2), rod(knee - 0.01 * (knee - hip), foot, leg_width / 2)]
    return _paint(_union(*body, *legs), (0.35, 0.15, 0.05), (0.9, 0.4, 0.1), axis=(1.0, 0.3, 0.0))


def aircraft(thickness=0.03):
    """A plane along x: a fuselage, thin swept-free wings (span 1.6, `thickness` thick),
    a horizontal tail and a vertical fin."""
    parts = [ellipsoid((0.0, 0.0, 0.0), (0.85, 0.09, 0.09), level=3),
             box((0.05, 0.0, 0.0), (0.30, thickness, 1.60)),
             box((-0.68, 0.02, 0.0), (0.16, 0.6 * thickness, 0.60)),
             box((-0.70, 0.17, 0.0), (0.18, 0.30, 0.6 * thickness))]
    return _paint(_union(*parts), (0.8, 0.8, 0.85), (0.2, 0.3, 0.8), axis=(1.0, 0.0, 0.3))



TARGETS = {"blob": blob, "spiky": spiky, "bowl": bowl, "peanut": peanut,
           "cube": cube_target, "torus": torus_target,
           "insect": insect, "aircraft": aircraft}
THIN_TARGETS = ("insect", "aircraft")  # unions of parts, with parts about a pixel thick at 64 px
