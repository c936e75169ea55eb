"""Wavefront OBJ input/output: just the parts a renderer of coloured triangles needs.

Read:  `v x y z [w]` and `v x y z r g b` (the common vertex-colour extension),
       `f a b c ...` with `i`, `i/j`, `i//k`, `i/j/k` corners, 1-based or negative
       (relative) indices; polygons are fan-triangulated (a, b, c), (a, c, d), ...
       Comments (#), blank lines and every other statement (vn, vt, o, g, s,
       usemtl, mtllib, l, ...) are ignored.
Write: `v x y z` (plus `r g b` unless the mesh is all white) and 1-based `f a b c`.
"""
import os

import numpy as np

from .mesh import Mesh


def _parse_numbers(tokens, where, line):
    try:
        return [float(t) for t in tokens]
    except ValueError:
        raise ValueError(f"{where}: could not read numbers in {line!r}") from None


def _parse_face(tokens, num_vertices, where, line):
    """The 0-based vertex indices of one polygon's corners (texture/normal indices dropped)."""
    if len(tokens) < 3:
        raise ValueError(f"{where}: face needs at least 3 vertices, got {line!r}")
    corners = []
    for t in tokens:
        try:
            i = int(t.split("/")[0])
        except ValueError:
            raise ValueError(f"{where}: could not read a vertex index in {t!r} "
                             f"of {line!r}") from None
        if i == 0:
            raise ValueError(f"{where}: OBJ indices start at 1, got 0 in {line!r}")
        # Negative indices count back from the last vertex defined so far.
        i = i - 1 if i > 0 else num_vertices + i
        if i < 0:
            raise ValueError(f"{where}: relative index in {line!r} points before the first "
                             f"vertex (only {num_vertices} vertices are defined so far)")
        corners.append(i)
    return corners


def load_obj(path):
    """Read an OBJ file into a Mesh (vertex colours kept when every `v` line has them)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such OBJ file: '{path}'")
    name = os.fspath(path)
    vertices, colors, faces, face_lines = [], [], [], []
    with open(path, encoding="utf-8", errors="replace") as file:
        for number, raw in enumerate(file, start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            keyword, *tokens = line.split()
            where = f"{name} line {number}"
            if keyword == "v":
                xyz = _parse_numbers(tokens, where, line)
                if len(xyz) not in (3, 4, 6):
                    raise ValueError(f"{where}: vertex needs 3 coordinates (optionally "
                                     f"followed by r g b), got {line!r}")
                vertices.append(xyz[:3])
                colors.append(xyz[3:] if len(xyz) == 6 else None)
            elif keyword == "f":
                corners = _parse_face(tokens, len(vertices), where, line)
                for b, c in zip(corners[1:-1], corners[2:]):  # fan triangulation
                    faces.append([corners[0], b, c])
                    face_lines.append((number, line))
    if not faces:
        raise ValueError(f"{name}: no faces found ({len(vertices)} vertices); "
                         f"a mesh needs 'f' lines to be rendered")
    faces = np.array(faces, dtype=np.int64)
    bad = (faces >= len(vertices)).any(axis=1)  # forward references checked at the end
    if bad.any():
        number, line = face_lines[np.flatnonzero(bad)[0]]
        raise ValueError(f"{name} line {number}: vertex index out of range in {line!r} "
                         f"(the file has {len(vertices)} vertices, indices are 1..{len(vertices)})")
    has_colors = all(c is not None for c in colors)
    try:
        return Mesh(vertices, faces, colors if has_colors else None)
    except (TypeError, ValueError) as e:  # e.g. colours in 0..255: say which file
        raise type(e)(f"{name}: {e}") from None


def save_obj(mesh, path):
    """Write `mesh` as OBJ; floats in shortest round-trip form, so loading is exact."""
    painted = not np.all(mesh.colors == 1)
    rows = np.hstack([mesh.vertices, mesh.colors]) if painted else mesh.vertices
    with open(path, "w", encoding="utf-8") as file:
        file.write(f"# softras-taichi: {mesh.num_vertices} vertices, {mesh.num_faces} faces\n")
        for row in rows.tolist():  # tolist: Python floats, whose repr round-trips exactly
            file.write("v " + " ".join(repr(x) for x in row) + "\n")
        for a, b, c in (mesh.faces + 1).tolist():
            file.write(f"f {a} {b} {c}\n")
