"""OBJ reading and writing (pure numpy, fast)."""
from pathlib import Path

import numpy as np
import pytest

from softras_taichi.mesh import Mesh
from softras_taichi.obj import load_obj, save_obj
from softras_taichi.primitives import TARGETS, icosphere

DATA = Path(__file__).parent / "data"


def write(tmp_path, text, name="m.obj"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_round_trip_with_colours_is_exact(tmp_path):
    m = TARGETS["blob"]()
    save_obj(m, tmp_path / "blob.obj")
    back = load_obj(tmp_path / "blob.obj")
    assert np.array_equal(back.vertices, m.vertices)
    assert np.array_equal(back.faces, m.faces)
    assert np.array_equal(back.colors, m.colors)


def test_white_mesh_is_written_without_colours(tmp_path):
    m = icosphere(1)
    save_obj(m, tmp_path / "s.obj")
    v_lines = [l for l in (tmp_path / "s.obj").read_text().splitlines() if l.startswith("v ")]
    assert len(v_lines) == 42 and all(len(l.split()) == 4 for l in v_lines)
    f_lines = [l for l in (tmp_path / "s.obj").read_text().splitlines() if l.startswith("f ")]
    assert f_lines[0] == "f " + " ".join(str(i + 1) for i in m.faces[0])  # 1-based
    back = load_obj(str(tmp_path / "s.obj"))  # str paths work too
    assert np.array_equal(back.vertices, m.vertices) and np.all(back.colors == 1)


def test_polygons_corner_forms_and_relative_indices():
    m = load_obj(DATA / "polygons.obj")
    assert m.num_vertices == 9
    # quad -> 2 triangles, pentagon -> 3, fanned from the first corner
    assert m.faces.tolist() == [[0, 1, 2], [0, 2, 3],
                                [4, 5, 6], [4, 6, 7], [4, 7, 8]]
    assert np.all(m.colors == 1)
    assert np.allclose(m.vertices[3], [0, 1, 0])


def test_vertex_colours():
    m = load_obj(DATA / "colored.obj")
    assert (m.num_vertices, m.num_faces) == (4, 4)
    assert np.allclose(m.colors[:3], np.eye(3)) and np.allclose(m.colors[3], 0.5)


def test_colours_ignored_unless_every_vertex_has_them(tmp_path):
    m = load_obj(write(tmp_path, "v 0 0 0 1 0 0\nv 1 0 0\nv 0 1 0 0 0 1\nf 1 2 3\n"))
    assert np.all(m.colors == 1)


@pytest.mark.parametrize("face", ["f 1 2 3", "f 1/1 2/2 3/3", "f 1//1 2//1 3//1",
                                  "f 1/1/1 2/2/1 3/3/1", "f -3 -2 -1", "f -3/1/1 -2//1 -1/3"])
def test_every_face_form(tmp_path, face):
    text = "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nvn 0 0 1\n" + face + "\n"
    assert load_obj(write(tmp_path, text)).faces.tolist() == [[0, 1, 2]]


def test_relative_indices_count_from_the_vertices_so_far(tmp_path):
    text = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf -3 -2 -1\nv 0 0 1\nf -4 -2 -1\n"
    assert load_obj(write(tmp_path, text)).faces.tolist() == [[0, 1, 2], [0, 2, 3]]


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.obj"):
        load_obj(tmp_path / "nowhere.obj")


def test_malformed_fixture_names_file_line_and_text():
    with pytest.raises(ValueError) as info:
        load_obj(DATA / "malformed.obj")
    message = str(info.value)
    for word in ["malformed.obj", "line 5", "vertex needs 3 coordinates", "'v 1.0 2.0'"]:
        assert word in message, message


@pytest.mark.parametrize("text, words", [
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\n", ["no faces", "3 vertices"]),
    ("# nothing\n\n", ["no faces"]),
    ("v 0 0 0\nv 1 x 0\n", ["line 2", "could not read numbers", "'v 1 x 0'"]),
    ("v 0 0 0\nv 1 0 0 0 1\n", ["line 2", "vertex needs 3 coordinates"]),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", ["line 4", "at least 3 vertices", "'f 1 2'"]),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 a\n", ["line 4", "vertex index", "'a'"]),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", ["line 4", "start at 1"]),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\n\nf 1 2 4\n", ["line 5", "out of range", "1..3"]),
    ("v 0 0 0\nv 1 0 0\nf -3 -2 -1\nv 0 1 0\n", ["line 3", "before the first vertex"]),
    ("v 0 0 0 255 0 0\nv 1 0 0 0 255 0\nv 0 1 0 0 0 255\nf 1 2 3\n", ["colors", "[0, 1]", "255"]),
])
def test_errors_name_the_file_and_line(tmp_path, text, words):
    path = write(tmp_path, text, "bunny.obj")
    with pytest.raises(ValueError) as info:
        load_obj(path)
    message = str(info.value)
    assert "bunny.obj" in message, message
    for word in words:
        assert word in message, message


def test_mesh_save_obj_delegates(tmp_path):
    m = Mesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], [[0.1, 0.2, 0.3]] * 3)
    m.save_obj(tmp_path / "t.obj")
    assert "v 0.0 0.0 0.0 0.1 0.2 0.3" in (tmp_path / "t.obj").read_text()
