"""An independent, dense float64 NumPy reference of docs/math.md (the Soft Rasterizer).

Written straight from docs/math.md, *not* from the Taichi code, so that the tests
comparing the two are a real check. Clarity over speed: vectorised over the pixels,
a plain Python loop over the faces, no binning, no autodiff.

Symbols follow docs/math.md: σ (sigma), γ (gamma), ε (eps), θ (viewing_angle, the half
field of view in degrees), near/far, dist_eps, C_b (background).

Decisions the formulas leave open (the library follows the same ones, so results are
comparable):

* A face with any vertex at z' <= Z_MIN (1e-5: at or behind the camera plane) is not
  drawn at all (neither silhouette nor colour).
* A face whose projected signed area ``det`` has |det| < DET_MIN (1e-10) uses
  det = ±DET_MIN (sign kept, + when exactly 0) in its barycentrics; such a face is
  treated as never strictly containing a pixel centre.
* A zero-length face normal gives n = 0 (the face gets ambient light only).
* Logits δ d²/σ are clamped to [-LOGIT_MAX, LOGIT_MAX] = [-30, 30] before the
  sigmoid (D never reaches exactly 0 or 1; the change is < 1e-13).
* Clamped barycentrics are renormalised by max(sum, 1e-5).
* Faces whose perspective-correct depth lies outside [near, far] are skipped for
  colour (they are absent from the softmax's numerator *and* denominator) but still
  count in the silhouette.
"""
from __future__ import annotations

import numpy as np

Z_MIN = 1e-5
DET_MIN = 1e-10
LOGIT_MAX = 30.0
BARY_SUM_MIN = 1e-5

__all__ = [
    "look_at", "project", "pixel_centres", "face_normals", "face_lighting",
    "barycentrics", "edge_distance2", "render", "hard_render", "icosphere", "cube",
    "Z_MIN", "DET_MIN", "LOGIT_MAX",
]


# --------------------------------------------------------------------------- camera
def look_at(distance=2.732, elevation=0.0, azimuth=0.0):
    """Eye (3,) and rotation R (3,3) with rows r, u, f (docs/math.md 'Camera').

    eye = (d cos(el) sin(az), d sin(el), d cos(el) cos(az)); f = normalize(0 - eye);
    r = normalize(f × up), up = (0, 1, 0); u = r × f.  At el = ±90° (f ∥ up) r is the
    limit from just below the pole at the same azimuth, r = (cos az, 0, -sin az).
    """
    d = float(distance)
    el = np.deg2rad(float(elevation))
    az = np.deg2rad(float(azimuth))
    eye = d * np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
    # forward from the angles directly (avoids dividing by d; identical to -eye/|eye|)
    f = -np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
    f /= np.linalg.norm(f)
    up = np.array([0.0, 1.0, 0.0])
    r = np.cross(f, up)
    n = np.linalg.norm(r)
    if n > 1e-9:
        r = r / n
    else:  # the pole: limit from the equator side (cos(el) -> 0+) at the same azimuth
        r = np.array([np.cos(az), 0.0, -np.sin(az)])
    u = np.cross(r, f)
    R = np.stack([r, u, f])
    return eye, R


def project(vertices, eye, R, viewing_angle=30.0):
    """World vertices (V,3) -> (V,3) of (x_ndc, y_ndc, z') (docs/math.md 'Projection')."""
    v = np.asarray(vertices, dtype=np.float64)
    vc = (v - np.asarray(eye, dtype=np.float64)) @ np.asarray(R, dtype=np.float64).T
    t = np.tan(np.deg2rad(float(viewing_angle)))
    z = vc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = vc[:, 0] / (z * t)
        y = vc[:, 1] / (z * t)
    return np.stack([x, y, z], axis=1)


def pixel_centres(image_size):
    """(S,S) arrays X, Y of NDC pixel centres: x = (2c+1-S)/S, y = (S-1-2r)/S."""
    S = int(image_size)
    idx = np.arange(S, dtype=np.float64)
    xs = (2.0 * idx + 1.0 - S) / S          # by column
    ys = (S - 1.0 - 2.0 * idx) / S          # by row
    X, Y = np.meshgrid(xs, ys)              # X[r, c] = xs[c], Y[r, c] = ys[r]
    return X, Y


# ------------------------------------------------------------------------- lighting
def face_normals(vertices, faces):
    """Unit normals of (v2 - v1) × (v0 - v1) in world space; 0 for a zero-length one."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    v0, v1, v2 = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    n = np.cross(v2 - v1, v0 - v1)
    ln = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(ln > 0, n / np.where(ln > 0, ln, 1.0), 0.0)


def face_lighting(vertices, faces, ambient=0.5, directional=0.5, light_direction=(0, 1, 0)):
    """Per-face factor ambient + directional · max(0, n · l), l normalised."""
    l = np.asarray(light_direction, dtype=np.float64)
    ll = np.linalg.norm(l)
    l = l / ll if ll > 0 else l
    n = face_normals(vertices, faces)
    return ambient + directional * np.maximum(0.0, n @ l)


# ------------------------------------------------------------------- per-face geometry
def barycentrics(p, X, Y):
    """Barycentrics (3, ...) of points (X, Y) w.r.t. the 2D triangle p (3,2).

    w_k = (signed area of the triangle with p_k replaced by the point) / det, with the
    DET_MIN rule for (near-)degenerate triangles. Also returns the det used.
    """
    (x0, y0), (x1, y1), (x2, y2) = p
    det = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    if abs(det) < DET_MIN:
        det = DET_MIN if det >= 0 else -DET_MIN
        degenerate = True
    else:
        degenerate = False
    w0 = ((x1 - X) * (y2 - Y) - (x2 - X) * (y1 - Y)) / det
    w1 = ((x2 - X) * (y0 - Y) - (x0 - X) * (y2 - Y)) / det
    w2 = ((x0 - X) * (y1 - Y) - (x1 - X) * (y0 - Y)) / det
    return np.stack([w0, w1, w2]), det, degenerate


def _segment_distance2(X, Y, a, b):
    ex, ey = b[0] - a[0], b[1] - a[1]
    l2 = ex * ex + ey * ey
    if l2 > 0:
        t = np.clip(((X - a[0]) * ex + (Y - a[1]) * ey) / l2, 0.0, 1.0)
    else:
        t = np.zeros_like(X)
    dx = X - (a[0] + t * ex)
    dy = Y - (a[1] + t * ey)
    return dx * dx + dy * dy


def edge_distance2(p, X, Y):
    """Squared distance from (X, Y) to the closest point of the three edges (segments)."""
    return np.minimum(np.minimum(_segment_distance2(X, Y, p[0], p[1]),
                                 _segment_distance2(X, Y, p[1], p[2])),
                      _segment_distance2(X, Y, p[2], p[0]))


def _clamped_bary(w):
    wt = np.clip(w, 0.0, 1.0)
    s = np.maximum(wt.sum(axis=0), BARY_SUM_MIN)
    return wt / s


def _perspective_z(wt, zf):
    with np.errstate(divide="ignore"):
        zinv = wt[0] / zf[0] + wt[1] / zf[1] + wt[2] / zf[2]
        return np.where(zinv > 0, 1.0 / np.where(zinv > 0, zinv, 1.0), np.inf)


def _prepare(vertices, faces, colors, eye, R, viewing_angle, ambient, directional,
             light_direction):
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if colors is None:
        c = np.ones_like(v)
    else:
        c = np.asarray(colors, dtype=np.float64).reshape(-1, 3)
    proj = project(v, eye, R, viewing_angle)
    light = face_lighting(v, f, ambient, directional, light_direction)
    return v, f, c, proj, light


# --------------------------------------------------------------------------- soft
def render(vertices, faces, colors, eye, R, image_size=64, sigma=1e-4, gamma=1e-4,
           eps=1e-3, near=1.0, far=100.0, dist_eps=1e-4, background=(0.0, 0.0, 0.0),
           ambient=0.5, directional=0.5, light_direction=(0.0, 1.0, 0.0),
           viewing_angle=30.0, return_aux=False):
    """The soft rasterizer of docs/math.md: (S,S,4) float64 RGBA.

    With ``return_aux=True`` also returns a dict of per-pixel diagnostics used by the
    tests to leave out pixels where float32 rounding legitimately flips a discrete
    decision:
      ``cull_margin``  min over drawn faces of |d² - threshold| / threshold
                       (the culling step makes D jump by ~dist_eps there, and the
                       colour by O(1) when γ is small),
      ``edge_d2``      min over drawn faces of d² (distance² to the nearest edge),
      ``degenerate``   pixels touched (not culled) by a face with |det| < 1e-10.
    """
    S = int(image_size)
    v, f, c, proj, light = _prepare(vertices, faces, colors, eye, R, viewing_angle,
                                    ambient, directional, light_direction)
    X, Y = pixel_centres(S)
    thr = sigma * np.log(1.0 / dist_eps - 1.0)
    inv_gamma = 1.0 / gamma
    bg = np.asarray(background, dtype=np.float64).reshape(3)

    one_minus = np.ones((S, S))                # Π (1 - D)
    # online max-shifted softmax: m is the running shift, starting at ε/γ
    m = np.full((S, S), eps * inv_gamma)
    den = np.ones((S, S))                      # background: exp(ε/γ - m) = 1
    num = np.ones((S, S, 3)) * bg              # its colour contribution
    cull_margin = np.full((S, S), np.inf)
    edge_d2 = np.full((S, S), np.inf)
    degenerate_px = np.zeros((S, S), dtype=bool)

    for j, face in enumerate(f):
        zf = proj[face, 2]
        if np.any(zf <= Z_MIN):
            continue                           # at or behind the camera plane: not drawn
        p = proj[face, :2]
        w, _, degenerate = barycentrics(p, X, Y)
        inside = np.all(w > 0, axis=0) & (not degenerate)
        d2 = edge_distance2(p, X, Y)
        culled = (~inside) & (d2 >= thr)
        logit = np.clip(np.where(inside, d2, -d2) / sigma, -LOGIT_MAX, LOGIT_MAX)
        D = np.where(culled, 0.0, 1.0 / (1.0 + np.exp(-logit)))
        one_minus *= 1.0 - D

        cull_margin = np.minimum(cull_margin, np.abs(d2 - thr) / thr)
        edge_d2 = np.minimum(edge_d2, d2)
        if degenerate:
            degenerate_px |= ~culled

        wt = _clamped_bary(w)
        z = _perspective_z(wt, zf)
        ok = (~culled) & (z >= near) & (z <= far)
        if not np.any(ok):
            continue
        zhat = np.where(ok, (far - z) / (far - near), 0.0)
        C = np.einsum("kij,kc->ijc", wt, c[face]) * light[j]

        m_new = np.where(ok, np.maximum(m, zhat * inv_gamma), m)
        scale = np.exp(m - m_new)
        e = np.where(ok, D * np.exp(np.where(ok, zhat * inv_gamma - m_new, 0.0)), 0.0)
        den = den * scale + e
        num = num * scale[..., None] + e[..., None] * C
        m = m_new

    out = np.empty((S, S, 4))
    out[..., :3] = num / den[..., None]
    out[..., 3] = 1.0 - one_minus
    if return_aux:
        return out, {"cull_margin": cull_margin, "edge_d2": edge_d2,
                     "degenerate": degenerate_px}
    return out


# --------------------------------------------------------------------------- hard
def hard_render(vertices, faces, colors, eye, R, image_size=64, near=1.0, far=100.0,
                background=(0.0, 0.0, 0.0), ambient=0.5, directional=0.5,
                light_direction=(0.0, 1.0, 0.0), viewing_angle=30.0, return_aux=False):
    """Z-buffer reference (the σ, γ -> 0 limit): (S,S,4) float64 RGBA.

    Per pixel: among faces strictly containing the centre, the one with the smallest
    perspective-correct z in [near, far] gives RGB (its lit, interpolated colour);
    alpha = 1 when any face strictly contains the centre (whatever its depth).
    With ``return_aux=True`` also returns ``edge_d2`` (min d² to any drawn face's
    edges) and ``z_gap`` (relative depth gap between the two nearest covering faces).
    """
    S = int(image_size)
    v, f, c, proj, light = _prepare(vertices, faces, colors, eye, R, viewing_angle,
                                    ambient, directional, light_direction)
    X, Y = pixel_centres(S)
    bg = np.asarray(background, dtype=np.float64).reshape(3)
    zbuf = np.full((S, S), np.inf)
    zbuf2 = np.full((S, S), np.inf)            # second nearest, for diagnostics
    rgb = np.ones((S, S, 3)) * bg
    covered = np.zeros((S, S), dtype=bool)
    edge_d2 = np.full((S, S), np.inf)

    for j, face in enumerate(f):
        zf = proj[face, 2]
        if np.any(zf <= Z_MIN):
            continue
        p = proj[face, :2]
        w, _, degenerate = barycentrics(p, X, Y)
        edge_d2 = np.minimum(edge_d2, edge_distance2(p, X, Y))
        if degenerate:
            continue
        inside = np.all(w > 0, axis=0)
        covered |= inside
        wt = _clamped_bary(w)
        z = _perspective_z(wt, zf)
        ok = inside & (z >= near) & (z <= far)
        closer = ok & (z < zbuf)
        zbuf2 = np.where(closer, zbuf, np.where(ok, np.minimum(zbuf2, z), zbuf2))
        zbuf = np.where(closer, z, zbuf)
        C = np.einsum("kij,kc->ijc", wt, c[face]) * light[j]
        rgb = np.where(closer[..., None], C, rgb)

    out = np.empty((S, S, 4))
    out[..., :3] = rgb
    out[..., 3] = covered.astype(np.float64)
    if return_aux:
        with np.errstate(invalid="ignore"):
            gap = np.where(np.isfinite(zbuf2), (zbuf2 - zbuf) / zbuf2, np.inf)
        return out, {"edge_d2": edge_d2, "z_gap": gap}
    return out


# ------------------------------------------------------------------------- meshes
def icosphere(level=1, radius=1.0):
    """A unit icosahedron subdivided ``level`` times, projected onto the sphere.

    Faces are wound counter-clockwise seen from outside, so the normal of docs/math.md
    (v2 - v1) × (v0 - v1) points outward (checked in ``test_reference.py``).
    """
    t = (1.0 + 5.0 ** 0.5) / 2.0
    verts = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0),
             (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
             (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11),
             (1, 5, 9), (5, 11, 4), (11, 10, 2), (10, 7, 6), (7, 1, 8),
             (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9),
             (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    verts = [np.array(p, dtype=np.float64) / np.linalg.norm(p) for p in verts]
    for _ in range(int(level)):
        cache = {}

        def mid(a, b):
            key = (min(a, b), max(a, b))
            if key not in cache:
                p = verts[a] + verts[b]
                verts.append(p / np.linalg.norm(p))
                cache[key] = len(verts) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return radius * np.array(verts), np.array(faces, dtype=np.int64)


def cube(size=1.0):
    """An axis-aligned cube of edge ``size`` centred at the origin, 12 triangles,
    wound so that the normal of docs/math.md points outward."""
    h = 0.5 * size
    v = np.array([[x, y, z] for x in (-h, h) for y in (-h, h) for z in (-h, h)],
                 dtype=np.float64)
    # vertex index = 4*ix + 2*iy + iz
    quads = [(0, 1, 3, 2), (4, 6, 7, 5),    # x = -h, x = +h
             (0, 4, 5, 1), (2, 3, 7, 6),    # y = -h, y = +h
             (0, 2, 6, 4), (1, 5, 7, 3)]    # z = -h, z = +h
    f = []
    for a, b, c, d in quads:
        f += [(a, b, c), (a, c, d)]
    return v, np.array(f, dtype=np.int64)


def random_triangles(n=4, seed=0, extent=0.8):
    """``n`` independent random triangles in [-extent, extent]³ with random colours."""
    rng = np.random.default_rng(seed)
    v = rng.uniform(-extent, extent, (3 * n, 3))
    f = np.arange(3 * n, dtype=np.int64).reshape(n, 3)
    return v, f, rng.uniform(0.0, 1.0, (3 * n, 3))


def overlapping_triangles():
    """Two overlapping triangles at different depths (red in front at z = +0.3, blue
    behind at z = -0.3, slightly larger), white-ish per-vertex variations."""
    v = np.array([[-0.5, -0.45, 0.3], [0.55, -0.5, 0.3], [0.05, 0.5, 0.3],
                  [-0.6, -0.35, -0.3], [0.6, -0.4, -0.3], [-0.05, 0.65, -0.3]])
    f = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.int64)
    c = np.array([[1.0, 0.1, 0.0], [0.9, 0.2, 0.1], [1.0, 0.0, 0.2],
                  [0.0, 0.1, 1.0], [0.1, 0.3, 0.9], [0.2, 0.0, 1.0]])
    return v, f, c
