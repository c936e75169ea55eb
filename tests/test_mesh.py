"""Mesh validation and the procedural primitives/targets (pure numpy, fast)."""
import numpy as np
import pytest

from softras_taichi.mesh import Mesh
from softras_taichi.primitives import PIXEL_AT_64, TARGETS, THIN_TARGETS, cube, icosphere, torus

V = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
F = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]


# ---------------------------------------------------------------- Mesh basics

def test_mesh_copies_and_converts():
    v, f = np.array(V, dtype=np.float32), np.array(F, dtype=np.int32)
    m = Mesh(v, f)
    assert m.vertices.dtype == np.float64 and m.vertices.shape == (4, 3)
    assert m.faces.dtype == np.int64 and m.faces.shape == (4, 3)
    assert m.colors.dtype == np.float64 and np.all(m.colors == 1)  # default white
    assert m.num_vertices == 4 and m.num_faces == 4
    v[0, 0] = 9  # the mesh owns copies
    assert m.vertices[0, 0] == 0
    assert "V=4" in repr(m) and "F=4" in repr(m)


def test_integral_float_faces_and_single_color_are_accepted():
    m = Mesh(V, np.array(F, dtype=float), colors=[0.2, 0.4, 0.6])
    assert m.faces.dtype == np.int64 and m.colors.shape == (4, 3)
    assert np.allclose(m.colors, [0.2, 0.4, 0.6])


def test_copy_with_colors_normalized():
    m = Mesh(np.array(V) * 3 + 5, F)
    c = m.copy()
    c.vertices[0] = 100
    assert m.vertices[0, 0] == 5
    red = m.with_colors(np.tile([1.0, 0, 0], (4, 1)))
    assert np.all(red.colors[:, 0] == 1) and np.all(m.colors == 1)
    n = m.normalized(radius=0.5)
    assert np.isclose(np.linalg.norm(n.vertices, axis=1).max(), 0.5)
    assert np.allclose(n.vertices.min(0) + n.vertices.max(0), 0)  # bbox centred
    assert np.array_equal(n.faces, m.faces)


def test_save_obj_method(tmp_path):
    from softras_taichi.obj import load_obj
    m = Mesh(V, F, np.random.default_rng(0).random((4, 3)))
    m.save_obj(tmp_path / "m.obj")
    back = load_obj(tmp_path / "m.obj")
    assert np.array_equal(back.vertices, m.vertices) and np.array_equal(back.colors, m.colors)


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("vertices, faces, colors, error, words", [
    ("not an array", F, None, TypeError, ["vertices", "real numbers"]),
    ([[0, 0], [1, 0, 0]], F, None, TypeError, ["vertices", "array-like"]),
    (np.array([[0, 0, 0]] * 4, dtype=object), F, None, TypeError, ["vertices", "dtype=float"]),
    (np.ones((4, 3), dtype=bool), F, None, TypeError, ["vertices", "booleans"]),
    (np.zeros(12), F, None, ValueError, ["vertices", "(V, 3)", "(12,)", "reshape"]),
    (np.zeros((4, 2)), F, None, ValueError, ["vertices", "(V, 3)", "(4, 2)"]),
    (np.zeros((0, 3)), F, None, ValueError, ["no vertices"]),
    ([[0, 0, 0], [1, np.nan, 0], [0, 1, 0], [np.inf, 0, 1]], F, None, ValueError,
     ["vertices", "2 non-finite", "index 1"]),
    (V, "012", None, TypeError, ["faces", "real numbers"]),
    (V, [[0, 1, 2.5]], None, TypeError, ["faces", "integer", "fractional"]),
    (V, [[0, 1, np.nan]], None, TypeError, ["faces", "integer"]),
    (V, np.ones((2, 3), dtype=bool), None, TypeError, ["faces", "booleans"]),
    (V, np.zeros((5, 4), dtype=int), None, ValueError,
     ["faces must have shape (F, 3)", "three vertex indices", "(5, 4)", "triangulate"]),
    (V, [0, 1, 2], None, ValueError, ["faces", "(F, 3)", "(3,)"]),
    (V, np.zeros((0, 3), dtype=int), None, ValueError, ["the mesh has no faces"]),
    (V, [[0, 1, 2], [0, 1, 4]], None, ValueError, ["face row 1", "bad index 4", "0..3"]),
    (V, [[0, 1, 2], [2, -1, 3]], None, ValueError, ["face row 1", "bad index -1", "0..3"]),
    (V, F, np.ones((3, 3)), ValueError, ["colors", "(4, 3)", "(3, 3)", "one RGB row per vertex"]),
    (V, F, np.ones((4, 4)), ValueError, ["colors", "(4, 3)"]),
    (V, F, [["r", "g", "b"]] * 4, TypeError, ["colors", "real numbers"]),
    (V, F, [[1, 1, 1]] * 3 + [[np.nan, 0, 0]], ValueError, ["colors", "non-finite", "index 3"]),
    (V, F, np.full((4, 3), 255.0), ValueError, ["colors", "[0, 1]", "255"]),
    (V, F, np.full((4, 3), -0.1), ValueError, ["colors", "[0, 1]", "clip"]),
])
def test_bad_input_says_what_and_how_to_fix(vertices, faces, colors, error, words):
    with pytest.raises(error) as info:
        Mesh(vertices, faces, colors)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


# ---------------------------------------------------------------- primitives

def face_normals(mesh):
    v, f = mesh.vertices, mesh.faces
    return np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])


def edge_counts(mesh):
    """Number of faces on each undirected edge, and whether directed edges are unique."""
    f = mesh.faces
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    _, counts = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    consistent = len(np.unique(directed, axis=0)) == len(directed)
    return counts, consistent


def assert_outward(mesh):
    centroids = mesh.vertices[mesh.faces].mean(axis=1)
    assert np.all(np.sum(face_normals(mesh) * centroids, axis=1) > 0)


GENUS0 = [name for name in TARGETS if name not in ("torus",) + THIN_TARGETS]
ALL = {"icosphere": lambda: icosphere(2), "cube": cube, "cube_sub": lambda: cube(2.0, 3),
       "torus": torus, **{f"target_{k}": f for k, f in TARGETS.items()}}


@pytest.mark.parametrize("level", range(5))
def test_icosphere_counts_radius_orientation(level):
    m = icosphere(level, radius=0.7)
    assert m.num_faces == 20 * 4 ** level  # level 4: 5120
    assert m.num_vertices == 10 * 4 ** level + 2
    assert np.allclose(np.linalg.norm(m.vertices, axis=1), 0.7, rtol=0, atol=1e-12)
    assert_outward(m)


def test_cube_shape_and_orientation():
    m = cube(2.0)
    assert (m.num_vertices, m.num_faces) == (8, 12)
    assert np.allclose(np.abs(m.vertices), 1.0)
    assert_outward(m)
    s = cube(1.0, subdivisions=2)
    assert s.num_faces == 12 * 9 and s.num_vertices == 6 * 9 + 2
    assert np.allclose(np.abs(s.vertices).max(axis=1), 0.5)  # every vertex on the surface
    assert_outward(s)


def test_torus_orientation_points_away_from_the_tube_centre():
    m = torus(major=0.6, minor=0.25, n_major=24, n_minor=12)
    assert m.num_faces == 2 * 24 * 12
    c = m.vertices[m.faces].mean(axis=1)
    core = c * [1, 0, 1]
    core *= 0.6 / np.linalg.norm(core, axis=1, keepdims=True)
    assert np.all(np.sum(face_normals(m) * (c - core), axis=1) > 0)


@pytest.mark.parametrize("name", ALL)
def test_closed_consistent_manifold(name):
    m = ALL[name]()
    counts, consistent = edge_counts(m)
    assert np.all(counts == 2), "every edge must be shared by exactly two faces"
    assert consistent, "neighbouring faces must traverse their shared edge in opposite directions"
    assert np.linalg.norm(face_normals(m), axis=1).min() > 0, "no degenerate triangles"


def parts(mesh):
    """The connected components of a mesh, each as a Mesh of its own."""
    label = np.arange(mesh.num_vertices)
    e = np.concatenate([mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]]])
    while True:  # label propagation: every vertex takes the smallest label it touches
        low = np.minimum(label[e[:, 0]], label[e[:, 1]])
        new = label.copy()
        np.minimum.at(new, e[:, 0], low)
        np.minimum.at(new, e[:, 1], low)
        if np.array_equal(new, label):
            break
        label = new
    out = []
    for k in np.unique(label):
        keep = np.flatnonzero(label == k)
        index = np.full(mesh.num_vertices, -1)
        index[keep] = np.arange(len(keep))
        faces = mesh.faces[np.all(label[mesh.faces] == k, axis=1)]
        out.append(Mesh(mesh.vertices[keep], index[faces]))
    return out


@pytest.mark.parametrize("name", TARGETS)
def test_targets_euler_bounds_colours(name):
    m = TARGETS[name]()
    assert isinstance(m, Mesh)
    if name in THIN_TARGETS:  # overlapping closed convex parts: each one a sphere
        for part in parts(m):
            counts, consistent = edge_counts(part)
            assert np.all(counts == 2) and consistent
            assert part.num_vertices - len(counts) + part.num_faces == 2
            c = part.vertices[part.faces].mean(axis=1)
            assert np.all(np.sum(face_normals(part) * (c - part.vertices.mean(axis=0)), axis=1) > 0)
    else:
        counts, _ = edge_counts(m)
        euler = m.num_vertices - len(counts) + m.num_faces
        assert euler == (0 if name == "torus" else 2)
    assert np.linalg.norm(m.vertices, axis=1).max() <= 1.0
    assert m.colors.std(axis=0).max() > 0.05, "targets need colours that vary"
    if name in GENUS0:
        assert_outward(m)


def test_targets_include_the_course_shapes():
    assert {"blob", "spiky", "bowl", "cube", "torus", "insect", "aircraft"} <= set(TARGETS)


def test_thin_targets_have_parts_one_pixel_thick_at_64px():
    """The insect's legs and the aircraft's wings are about one pixel (0.049 units) thick:
    in a 64 px render from above (insect) or from the front (aircraft), a leg or a wing
    is a line 1-2 pixels wide."""
    import softras_taichi as sr

    sr.init("cpu")
    legs = parts(TARGETS["insect"]())[4:]
    assert len(legs) == 12  # six legs, two rods each
    for leg in legs:  # a rod's circumradius is half the width
        axis = leg.vertices[-1] - leg.vertices[-2]
        radial = leg.vertices[:-2] - leg.vertices[-2]
        radial -= np.outer(radial @ axis / (axis @ axis), axis)
        assert np.linalg.norm(radial, axis=1).max() == pytest.approx(PIXEL_AT_64 / 2)
    hard = sr.HardRenderer(64)
    top = hard.render(TARGETS["insect"](), sr.Camera.look_at(elevation=89.0))[..., 3] > 0.5
    for row in (top[22], top[40]):  # rows across the three legs of each side, off the body
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, row, 0].astype(int))).reshape(-1, 2), axis=1)
        assert len(runs) == 3 and runs.max() == 1
    front = hard.render(TARGETS["aircraft"](), sr.Camera.look_at(elevation=4.0, azimuth=90.0))[..., 3] > 0.5
    for column in (front[:, 32 - 10], front[:, 32 + 10]):  # through a wing, off the fuselage
        assert 1 <= column.sum() <= 2
