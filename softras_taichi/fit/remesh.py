"""Refining the mesh while it is fitted: split the edges that have grown long.

A part grows out of the template by stretching its triangles: a leg pulled out of a
sphere is a strip of long, thin triangles, too coarse to bend or to grow further.
Continuous Remeshing (Palfinger 2022, Profactor/continuous-remeshing) keeps every
edge near a target length by splitting long edges, collapsing short ones and flipping
edges to even the valences, after every step.  Here only the first of the three is
kept, and only now and then: an edge longer than `max_length` is split at its midpoint
(both of its faces in two), so the mesh gets finer exactly where it stretches and
stays coarse elsewhere, and nothing is ever removed (a split changes neither the
surface nor its silhouette).  A face is split along at most one edge per round (a
matching of the long edges), so every round leaves a closed, consistently oriented
mesh; the longest edges go first.
"""
import numpy as np


def _face_edges(faces, num_vertices):
    """Per face and per corner k, the id of the undirected edge (f[k], f[k+1])."""
    a = faces
    b = np.roll(faces, -1, axis=1)
    key = np.minimum(a, b) * num_vertices + np.maximum(a, b)
    unique, inverse = np.unique(key.ravel(), return_inverse=True)
    return unique // num_vertices, unique % num_vertices, inverse.reshape(faces.shape)


def split_long_edges(vertices, faces, max_length, max_faces=None, attributes=None):
    """Split edges longer than `max_length` at their midpoints (one round: at most one
    edge per face, longest first, and no more than `max_faces` faces in the end).
    `attributes` (V, k), e.g. colours, are interpolated like the positions.
    Returns (vertices, faces, attributes, number of edges split)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    att = None if attributes is None else np.asarray(attributes, dtype=np.float64)
    i, j, edge_of = _face_edges(f, len(v))
    length = np.linalg.norm(v[i] - v[j], axis=1)
    order = np.argsort(-length)
    order = order[length[order] > max_length]
    budget = len(order) if max_faces is None else max(0, (int(max_faces) - len(f)) // 2)
    if not len(order) or not budget:
        return v, f, att, 0
    faces_of = [[] for _ in range(len(i))]  # the (two) faces of each edge
    for face, edges in enumerate(edge_of):
        for e in edges:
            faces_of[e].append(face)
    used = np.zeros(len(f), dtype=bool)
    chosen = []
    for e in order:
        fs = faces_of[e]
        if not used[fs].any():
            used[fs] = True
            chosen.append(e)
            if len(chosen) == budget:
                break
    chosen = np.array(chosen)
    midpoint = np.full(len(i), -1)
    midpoint[chosen] = len(v) + np.arange(len(chosen))
    v = np.concatenate([v, (v[i[chosen]] + v[j[chosen]]) / 2])
    if att is not None:
        att = np.concatenate([att, (att[i[chosen]] + att[j[chosen]]) / 2])
    m = midpoint[edge_of]                    # (F, 3): the new vertex on edge k, or -1
    split = (m >= 0).any(axis=1)
    k = np.argmax(m >= 0, axis=1)[split]     # which edge of each split face
    rows = np.arange(len(f))[split]
    g = np.stack([f[rows, k], f[rows, (k + 1) % 3], f[rows, (k + 2) % 3]], axis=1)
    mid = m[rows, k]
    # face (a, b, c) split on edge a-b at m: (a, m, c) and (m, b, c), same orientation
    new = np.concatenate([np.stack([g[:, 0], mid, g[:, 2]], 1), np.stack([mid, g[:, 1], g[:, 2]], 1)])
    return v, np.concatenate([f[~split], new]), att, len(chosen)
