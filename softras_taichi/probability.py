"""The geometry of one (pixel, face) pair, shared by the soft and the hard rasterizer.

For pixel centre p and a face with projected corners a, b, c (x_ndc, y_ndc, z'):

    w       barycentrics of p in the projected triangle (unclamped)
    inside  δ = +1 when p is strictly inside (all w > 0), else −1
    d²      squared distance from p to the closest point of the three edges
    D       sigmoid(δ · d² / σ)   (the probability map of docs/math.md)

Like the official SoftRas, a (near-)degenerate projected triangle keeps the sign
of its area but never less than 1e-10 in magnitude, so its barycentrics stay
finite; it is then never "inside" and only its edges draw it.
"""
import taichi as ti

LOGIT_CLAMP = 30.0  # sigmoid(±30) is 1 or 0 in float32; clamping keeps inf·0 out of gradients


@ti.func
def pixel_centre(x, y, S):
    """NDC centre of pixel (row y, column x) of an S×S image."""
    return ti.Vector([(2.0 * x + 1.0 - S) / S, (S - 1.0 - 2.0 * y) / S])


@ti.func
def cross2(a, b):
    return a[0] * b[1] - a[1] * b[0]


@ti.func
def clamped_det(a, b, c):
    """Twice the signed area of (a, b, c), at least 1e-10 in magnitude."""
    det = cross2(b - a, c - a)
    return ti.select(det >= 0.0, ti.max(det, 1e-10), ti.min(det, -1e-10))


@ti.func
def barycentric(p, a, b, c):
    det = clamped_det(a, b, c)
    return ti.Vector([cross2(b - p, c - p), cross2(c - p, a - p), cross2(a - p, b - p)]) / det


@ti.func
def segment_d2(p, a, b):
    """Squared distance from p to the segment [a, b]."""
    e = b - a
    t = ti.math.clamp((p - a).dot(e) / ti.max(e.dot(e), 1e-30), 0.0, 1.0)
    q = a + t * e
    return (p - q).dot(p - q)


@ti.func
def edge_d2(p, a, b, c):
    return ti.min(segment_d2(p, a, b), ti.min(segment_d2(p, b, c), segment_d2(p, c, a)))


@ti.func
def is_inside(w):
    return (w[0] > 0.0) & (w[1] > 0.0) & (w[2] > 0.0)


@ti.func
def face_at_pixel(proj, faces, n, j, p, V):
    """Face j's vertex ids and projected corners in view n (proj[n·V + i], V vertices), with
    pixel p's (unclamped) barycentrics, inside flag and squared edge distance: the start of
    every soft pass."""
    f = faces[j]
    a, b, c = proj[n * V + f[0]], proj[n * V + f[1]], proj[n * V + f[2]]
    w = barycentric(p, a.xy, b.xy, c.xy)
    return f, a, b, c, w, is_inside(w), edge_d2(p, a.xy, b.xy, c.xy)


@ti.func
def clip_barycentric(w):
    """docs/math.md: clamp to [0, 1] and renormalise (as the official SoftRas does)."""
    wc = ti.math.clamp(w, 0.0, 1.0)
    return wc / ti.max(wc.sum(), 1e-5)


@ti.func
def depth(wc, a, b, c):
    """Perspective-correct depth z = 1 / Σ w̃_k / z'_k."""
    return 1.0 / (wc[0] / a[2] + wc[1] / b[2] + wc[2] / c[2])


@ti.func
def logit(d2, inside, sigma):
    """δ · d² / σ, clamped."""
    return ti.math.clamp(ti.select(inside, d2, -d2) / sigma, -LOGIT_CLAMP, LOGIT_CLAMP)


@ti.func
def sigmoid(x):
    return 1.0 / (1.0 + ti.exp(-x))


@ti.func
def log1m_sigmoid(x):
    """log(1 − sigmoid(x)) = −log(1 + e^x), finite for |x| ≤ 30."""
    return -ti.log(1.0 + ti.exp(x))
