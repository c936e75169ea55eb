"""Per-face lighting of docs/math.md: ambient + directional · max(0, n · l).

n is the unit normal of (v2 − v1) × (v0 − v1) in world space.  A degenerate face
has no normal; it gets n = 0 (ambient light only) instead of a NaN.
"""
import taichi as ti


@ti.func
def face_light(world: ti.template(), faces: ti.template(), j, ambient, directional, l):
    """The light of face j: ambient + directional · max(0, n · l)."""
    f = faces[j]
    n = (world[f[2]] - world[f[1]]).cross(world[f[0]] - world[f[1]])
    nn = n.dot(n)
    n = n * ti.select(nn > 1e-24, 1.0 / ti.sqrt(ti.max(nn, 1e-24)), 0.0)
    return ambient + directional * ti.max(0.0, n.dot(l))
