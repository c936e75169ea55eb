"""The losses of SoftRas's image-based 3D reasoning, as Taichi kernels and in NumPy.

Image losses compare a rendered (N, S, S, 4) RGBA `image` with a `target` of the
same shape (I = rendered, Î = target; s the silhouette = alpha, c the RGB channels):

    silhouette IoU   L_s = 1 − (1/N) Σ_n ‖I_s ⊗ Î_s‖₁ / ‖I_s ⊕ Î_s − I_s ⊗ Î_s‖₁
                     (⊗, ⊕ elementwise product and sum; one IoU per view, averaged,
                     as the official SoftRas `iou_loss` does)
    colour L1        L_c = ‖I_c − Î_c‖₁ / (N S²)
                     (the ℓ1 norm over pixels and RGB, divided by the number of pixels
                     so that λ = 1 weighs a whole wrong image like a whole wrong
                     silhouette, at any image size and view count)

Geometry losses regularise the mesh being fitted (v_i its vertices, E its edges):

    uniform Laplacian  L_lap  = Σ_i ‖v_i − (1/|N(i)|) Σ_{j ∈ N(i)} v_j‖²
    flatten            L_flat = Σ_{edges with two faces} (1 + cos θ_e)²
                       θ_e the angle between the two faces' "wings" (the heights from the
                       shared edge to the opposite vertices): −1 when the two triangles
                       lie flat, so a flat mesh costs nothing (SoftRas's FlattenLoss)
    edge length        L_edge = (1/|E|) Σ_{(i,j) ∈ E} (‖v_i − v_j‖ − ℓ)²   (ℓ = 0: mean ‖e‖²)

Each Taichi loss is an object that owns its scratch fields and, when called,
*adds* `weight × value` into a 0-D loss field, so a weighted sum of losses is a
sequence of calls under one tape:

    sil, lap = losses.SilhouetteIoU(N, S), losses.Laplacian(mesh.faces, mesh.num_vertices)
    loss = ti.field(float, shape=(), needs_grad=True)
    with ti.ad.Tape(loss):
        scene.render()
        sil(scene.image, target, loss)
        lap(scene.vertices, loss, weight=1e-3)

`ti.ad.Tape` zeroes the gradient of every field in the program when it starts, which
costs more with every field ever made; a fitting loop can instead zero only its own
(`Scene.clear_grads`, the optimiser's `zero_grad`, the losses' `clear_grads`) and
open `ti.ad.Tape(loss, clear_gradients=False)` — `fit.py` does.  Losses without
scratch gradients have a `clear_grads` that does nothing, so all can be treated alike.

Why the kernels look the way they do (docs/architecture.md, "Rules every kernel follows"): every kernel is a parallel loop that
`+=`s straight into *global* fields, never a serial loop into a local variable, so
Taichi's reverse mode never needs its adstack and the gradients are right on CPU,
CUDA, Vulkan and Metal.  A ratio such as the IoU is therefore two kernels: one that
sums intersection and union per view, and a tiny one that divides.  Scratch fields
are zeroed by `ti.ad.no_grad` kernels, which the tape replays as no-ops.

The NumPy functions of the same names (`silhouette_loss`, `color_loss`,
`laplacian_loss`, `flatten_loss`, `edge_loss`) compute the same values from arrays,
and `iou(a, b)` is the plain IoU metric of two silhouettes.
"""
import numpy as np
import taichi as ti

from . import fields

IOU_EPS = 1e-6  # keeps the ratio finite for two empty silhouettes (SoftRas uses 1e-6 too)
FLAT_EPS = 1e-6  # SoftRas FlattenLoss's eps: keeps lengths and angles of degenerate triangles finite


# --------------------------------------------------------------------------- topology (NumPy)

def edges(faces):
    """(E, 2) unique undirected edges (i < j) of a triangle mesh."""
    f = np.asarray(faces, dtype=np.int64)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    return np.unique(np.sort(e, axis=1), axis=0)


def edge_wings(faces):
    """(W, 4) rows (v0, v1, v2, v3): edge v0–v1 shared by exactly two faces whose third
    vertices are v2 and v3 (the pairs the flatten loss bends; boundary edges are skipped)."""
    f = np.asarray(faces, dtype=np.int64)
    # each face contributes its three edges with the opposite vertex
    e = np.concatenate([f[:, [0, 1, 2]], f[:, [1, 2, 0]], f[:, [2, 0, 1]]])
    key = np.sort(e[:, :2], axis=1)
    order = np.lexsort((key[:, 1], key[:, 0]))
    key, e = key[order], e[order]
    same = np.all(key[1:] == key[:-1], axis=1)
    # keep edges seen exactly twice: pair k with k+1 when they match and neither
    # matches its other neighbour (non-manifold edges with 3+ faces are skipped)
    before = np.concatenate([[False], same[:-1]])
    after = np.concatenate([same[1:], [False]])
    k = np.flatnonzero(same & ~before & ~after)
    return np.stack([key[k, 0], key[k, 1], e[k, 2], e[k + 1, 2]], axis=1)


def neighbours(faces, num_vertices):
    """Directed edge list (i, j) both ways and each vertex's degree |N(i)|."""
    e = edges(faces)
    directed = np.concatenate([e, e[:, ::-1]])
    degree = np.bincount(directed[:, 0], minlength=num_vertices)
    return directed, degree


# --------------------------------------------------------------------------- NumPy losses

def iou(a, b, threshold=None):
    """IoU Σ a·b / Σ (a + b − a·b) of two silhouettes (arrays of the same shape, any
    number of views: one number over all of them).  With `threshold`, both are
    binarised first (a > threshold), which is the usual metric for masks."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"silhouettes must have the same shape, got {a.shape} and {b.shape}")
    if threshold is not None:
        a, b = (a > threshold).astype(np.float64), (b > threshold).astype(np.float64)
    inter = (a * b).sum()
    union = (a + b - a * b).sum()
    return float(inter / union) if union > 0 else 1.0


def silhouette_loss(image, target):
    """L_s of (N, S, S, 4) or (S, S, 4) RGBA images: 1 − mean over views of the soft IoU."""
    a, b = _views(image)[..., 3], _views(target)[..., 3]
    inter = (a * b).sum(axis=(1, 2))
    union = (a + b - a * b).sum(axis=(1, 2))
    return float(1.0 - np.mean(inter / (union + IOU_EPS)))


def color_loss(image, target):
    """L_c = ‖I_c − Î_c‖₁ / (N S²) of (N, S, S, 4) or (S, S, 4) RGBA images."""
    a, b = _views(image), _views(target)
    return float(np.abs(a[..., :3] - b[..., :3]).sum() / (a.shape[0] * a.shape[1] * a.shape[2]))


def laplacian_loss(vertices, faces):
    """L_lap = Σ_i ‖v_i − mean of its neighbours‖²."""
    v = np.asarray(vertices, dtype=np.float64)
    directed, degree = neighbours(faces, len(v))
    mean = np.zeros_like(v)
    np.add.at(mean, directed[:, 0], v[directed[:, 1]])
    lap = v - mean / np.maximum(degree, 1)[:, None]
    lap[degree == 0] = 0.0  # an unused vertex has no neighbours to be smoothed towards
    return float((lap ** 2).sum())


def flatten_loss(vertices, faces):
    """L_flat = Σ (1 + cos θ)² over edges shared by two faces (SoftRas's FlattenLoss)."""
    v = np.asarray(vertices, dtype=np.float64)
    w = edge_wings(faces)
    v0, v1, v2, v3 = (v[w[:, k]] for k in range(4))
    cb1, l1 = _wing(v1 - v0, v2 - v0)
    cb2, l2 = _wing(v1 - v0, v3 - v0)
    cos = (cb1 * cb2).sum(1) / (l1 * l2 + FLAT_EPS)
    return float(((cos + 1.0) ** 2).sum())


def edge_loss(vertices, faces, target_length=0.0):
    """L_edge = mean over edges of (‖v_i − v_j‖ − ℓ)²."""
    v = np.asarray(vertices, dtype=np.float64)
    e = edges(faces)
    length = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
    if target_length == 0.0:
        return float((length ** 2).mean())
    return float(((length - target_length) ** 2).mean())


def _views(image):
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 4:
        raise ValueError(f"expected an (N, S, S, 4) or (S, S, 4) RGBA image, got shape {a.shape}")
    return a


def _wing(a, b):
    """The part of b perpendicular to the edge a, and its length, written as SoftRas
    writes it (|b| sin∠(a, b) with small epsilons) so both implementations agree."""
    al2, bl2 = (a * a).sum(-1), (b * b).sum(-1)
    al1, bl1 = np.sqrt(al2 + FLAT_EPS), np.sqrt(bl2 + FLAT_EPS)
    ab = (a * b).sum(-1)
    cos = ab / (al1 * bl1 + FLAT_EPS)
    sin = np.sqrt(1.0 - cos ** 2 + FLAT_EPS)
    return b - a * (ab / (al2 + FLAT_EPS))[..., None], bl1 * sin


# --------------------------------------------------------------------------- Taichi helpers

def scalar_field():
    """A 0-D field with a gradient: what `ti.ad.Tape(loss)` needs."""
    return fields.scalar(float, (), needs_grad=True)


def image_field(image):
    """An (N, S, S, 4) field (no gradient) holding a target image from NumPy."""
    a = _views(image)
    f = fields.scalar(float, a.shape)
    f.from_numpy(a.astype(_np_float()))
    return f


def _np_float():
    return np.float64 if ti.lang.impl.current_cfg().default_fp == ti.f64 else np.float32


@ti.kernel
def _zero(a: ti.template()):
    for I in ti.grouped(a):
        a[I] = ti.zero(a[I])


def zero(field):
    """Set a scratch field to 0 without recording a gradient step on the tape."""
    ti.ad.no_grad(_zero)(field)


# --------------------------------------------------------------------------- silhouette IoU

@ti.func
def _alpha(image: ti.template(), n, y, x):
    """The silhouette of pixel (y, x) of view n: RGBA's alpha, or a silhouette renderer's value."""
    a = 0.0
    if ti.static(len(image.shape) == 3):
        a = image[n, y, x]
    else:
        a = image[n, y, x, 3]
    return a


@ti.kernel
def _iou_sums(image: ti.template(), target: ti.template(), inter: ti.template(),
              union: ti.template()):
    """inter[n] += I_s Î_s,  union[n] += I_s + Î_s − I_s Î_s   over the pixels of view n.
    `image` is RGBA (N, S, S, 4) or a silhouette renderer's alpha (N, S, S)."""
    for n, y, x in ti.ndrange(image.shape[0], image.shape[1], image.shape[2]):
        a, b = _alpha(image, n, y, x), target[n, y, x, 3]
        inter[n] += a * b
        union[n] += a + b - a * b


@ti.kernel
def _iou_ratio(inter: ti.template(), union: ti.template(), loss: ti.template(), weight: float):
    """loss += weight · (1 − mean_n inter[n] / union[n])."""
    for n in inter:  # weight already holds the 1/N of the mean (no statements outside the loop)
        loss[None] += weight * (1.0 - inter[n] / (union[n] + IOU_EPS))


class SilhouetteIoU:
    """L_s for images of N views (see the module docstring); `value` holds the last IoU sums."""

    def __init__(self, n_views):
        self.inter = fields.scalar(float, n_views, needs_grad=True)
        self.union = fields.scalar(float, n_views, needs_grad=True)

    def __call__(self, image, target, loss, weight=1.0):
        zero(self.inter)
        zero(self.union)
        _iou_sums(image, target, self.inter, self.union)
        _iou_ratio(self.inter, self.union, loss, weight / self.inter.shape[0])

    def clear_grads(self):
        """Zero this loss's scratch gradients (for ti.ad.Tape(..., clear_gradients=False))."""
        self.inter.grad.fill(0)
        self.union.grad.fill(0)

    def ious(self):
        """Per-view soft IoU of the last call (NumPy)."""
        return self.inter.to_numpy() / (self.union.to_numpy() + IOU_EPS)


# --------------------------------------------------------------------------- colour L1

@ti.kernel
def _color_l1(image: ti.template(), target: ti.template(), loss: ti.template(), scale: float):
    """loss += scale · Σ |I_c − Î_c|,  scale = weight / (N S²)."""
    for n, y, x, c in ti.ndrange(image.shape[0], image.shape[1], image.shape[2], 3):
        loss[None] += scale * ti.abs(image[n, y, x, c] - target[n, y, x, c])


class ColorL1:
    """L_c (see the module docstring)."""

    def clear_grads(self):
        pass

    def __call__(self, image, target, loss, weight=1.0):
        N, S = image.shape[0], image.shape[1]
        _color_l1(image, target, loss, weight / (N * S * S))


# --------------------------------------------------------------------------- Laplacian

@ti.kernel
def _laplacian_self(vertices: ti.template(), active: ti.template(), lap: ti.template()):
    """lap[i] += v_i (active[i] = 0 for a vertex in no face: it has no neighbours to be
    smoothed towards, and would otherwise cost ‖v_i‖²)."""
    for i in vertices:
        lap[i] += active[i] * vertices[i]


@ti.kernel
def _laplacian_neighbours(vertices: ti.template(), pairs: ti.template(), inv_degree: ti.template(),
                          lap: ti.template()):
    """lap[i] −= v_j / |N(i)| for every directed edge (i, j)."""
    for k in pairs:
        i, j = pairs[k][0], pairs[k][1]
        lap[i] -= inv_degree[i] * vertices[j]


@ti.kernel
def _sum_squares(lap: ti.template(), loss: ti.template(), weight: float):
    for i in lap:
        loss[None] += weight * lap[i].dot(lap[i])


class Laplacian:
    """L_lap of a mesh with fixed `faces` (the uniform, "umbrella" Laplacian)."""

    def __init__(self, faces, num_vertices):
        directed, degree = neighbours(faces, num_vertices)
        self.pairs = fields.vector(2, ti.i32, len(directed))
        self.pairs.from_numpy(directed.astype(np.int32))
        self.inv_degree = fields.scalar(float, num_vertices)
        self.inv_degree.from_numpy((1.0 / np.maximum(degree, 1)).astype(_np_float()))
        self.lap = fields.vector(3, float, num_vertices, needs_grad=True)
        self.active = fields.scalar(float, num_vertices)
        self.active.from_numpy((degree > 0).astype(_np_float()))

    def clear_grads(self):
        self.lap.grad.fill(0)

    def __call__(self, vertices, loss, weight=1.0):
        zero(self.lap)
        _laplacian_self(vertices, self.active, self.lap)
        _laplacian_neighbours(vertices, self.pairs, self.inv_degree, self.lap)
        _sum_squares(self.lap, loss, weight)


# --------------------------------------------------------------------------- flatten

@ti.func
def _wing_ti(a, b, eps):
    al2, bl2 = a.dot(a), b.dot(b)
    al1, bl1 = ti.sqrt(al2 + eps), ti.sqrt(bl2 + eps)
    ab = a.dot(b)
    cos = ab / (al1 * bl1 + eps)
    sin = ti.sqrt(ti.max(1.0 - cos * cos + eps, eps))
    return b - a * (ab / (al2 + eps)), bl1 * sin


@ti.kernel
def _flatten(vertices: ti.template(), wings: ti.template(), loss: ti.template(), weight: float):
    for k in wings:
        w = wings[k]
        v0, v1, v2, v3 = vertices[w[0]], vertices[w[1]], vertices[w[2]], vertices[w[3]]
        cb1, l1 = _wing_ti(v1 - v0, v2 - v0, FLAT_EPS)
        cb2, l2 = _wing_ti(v1 - v0, v3 - v0, FLAT_EPS)
        cos = cb1.dot(cb2) / (l1 * l2 + FLAT_EPS)
        loss[None] += weight * (cos + 1.0) * (cos + 1.0)


class Flatten:
    """L_flat of a mesh with fixed `faces` (see the module docstring)."""

    def __init__(self, faces):
        w = edge_wings(faces)
        self.wings = fields.vector(4, ti.i32, max(len(w), 1))
        self.count = len(w)
        if len(w):
            self.wings.from_numpy(w.astype(np.int32))

    def clear_grads(self):
        pass

    def __call__(self, vertices, loss, weight=1.0):
        if self.count:
            _flatten(vertices, self.wings, loss, weight)


# --------------------------------------------------------------------------- edge length

@ti.kernel
def _edge_length(vertices: ti.template(), pairs: ti.template(), loss: ti.template(),
                 scale: float, target: float):
    """loss += scale · Σ_e (‖e‖ − ℓ)²,  scale = weight / |E|."""
    for k in pairs:
        d = vertices[pairs[k][0]] - vertices[pairs[k][1]]
        if target == 0.0:
            loss[None] += scale * d.dot(d)  # no sqrt: smooth even for a collapsed edge
        else:
            length = ti.sqrt(d.dot(d) + 1e-12)
            loss[None] += scale * (length - target) * (length - target)


class EdgeLength:
    """L_edge of a mesh with fixed `faces`; `target_length` ℓ (0: mean squared length)."""

    def __init__(self, faces, target_length=0.0):
        e = edges(faces)
        self.pairs = fields.vector(2, ti.i32, len(e))
        self.pairs.from_numpy(e.astype(np.int32))
        self.target_length = float(target_length)

    def clear_grads(self):
        pass

    def __call__(self, vertices, loss, weight=1.0):
        _edge_length(vertices, self.pairs, loss, weight / self.pairs.shape[0], self.target_length)
