"""Rigid motions and meshes in NumPy: axis-angle rotations, normalising a target, the template sphere."""
import math

import numpy as np

from ..camera import Camera
from ..mesh import Mesh
from ..primitives import icosphere


def rotation_matrix(w):
    """Rodrigues: the 3×3 rotation of axis-angle w (radians), as project.rotate."""
    w = np.asarray(w, dtype=np.float64)
    t = np.linalg.norm(w)
    if t < 1e-12:
        return np.eye(3)
    k = w / t
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(t) * K + (1 - math.cos(t)) * K @ K


def axis_angle(R):
    """The axis-angle vector of a rotation matrix (inverse of rotation_matrix)."""
    c = np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)
    t = math.acos(c)
    if t < 1e-9:
        return np.zeros(3)
    if t > math.pi - 1e-6:  # 180°: the axis is the eigenvector of R with eigenvalue 1
        vals, vecs = np.linalg.eigh((R + R.T) / 2)
        return t * vecs[:, np.argmax(vals)]
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    return t * v / (2 * math.sin(t))


def rotation_error_deg(a, b):
    """The angle (degrees) of the rotation taking axis-angle b to axis-angle a."""
    R = rotation_matrix(a) @ rotation_matrix(b).T
    return math.degrees(math.acos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)))


def normalize(mesh, radius=0.9):
    """Centre `mesh` (its bounding box) at the origin and scale it so that its farthest
    vertex is at `radius`: a target of any size fits inside the unit sphere that the
    default camera (distance 2.732, half field of view 30°) sees whole."""
    v = mesh.vertices
    v = v - (v.min(axis=0) + v.max(axis=0)) / 2
    r = np.linalg.norm(v, axis=1).max()
    if r == 0:
        raise ValueError("the target mesh is a single point: all its vertices coincide")
    return Mesh(v * (radius / r), mesh.faces, mesh.colors)


def template(level=3, radius=0.5, seed=0):
    """The start of a reconstruction: an icosphere, turned by a fixed random rotation so
    that no vertex has a coordinate exactly 0 (the bounded parametrisation keeps every
    coordinate on its side of the centre, and a 0 would stay 0)."""
    sphere = icosphere(level, radius)
    rng = np.random.default_rng(seed)
    q = rng.normal(size=4)
    w = 2 * math.acos(abs(q[0]) / np.linalg.norm(q)) * q[1:] / np.linalg.norm(q[1:])
    return Mesh(sphere.vertices @ rotation_matrix(w).T, sphere.faces)


def posed(mesh, rotation, translation=(0.0, 0.0, 0.0)):
    """`mesh` moved by the rigid pose (as Scene.set_pose does it), as a new Mesh."""
    return Mesh(mesh.vertices @ rotation_matrix(rotation).T + np.asarray(translation), mesh.faces,
                mesh.colors)


def camera_angle_deg(a, b):
    """The angle (degrees) between the view directions of camera parameters
    a, b = (distance, elevation°, azimuth°)."""
    ea, eb = Camera.look_at(*a).eye()[0], Camera.look_at(*b).eye()[0]
    c = ea @ eb / (np.linalg.norm(ea) * np.linalg.norm(eb))
    return math.degrees(math.acos(np.clip(c, -1.0, 1.0)))
