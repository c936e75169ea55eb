"""Stage 4, the fast way: a set-up pass, one forward kernel and a hand-written backward.

`aggregate.py` is the readable version that Taichi differentiates for us.  This is
the same mathematics (docs/math.md) arranged for speed, checked against it in
tests/test_soft_backward.py:

setup    (view, face)    once per face: 2-D corners, 1/det, 1/|edge|², 1/z' and the
         pixel rectangle, so the pixel loop does no divisions and no gathers
         through faces[] until a pair is known to count.
forward  (pixel-major)   one pass over the tile's faces with an *online* max-shift:
         when a nearer face raises m, the running sums are rescaled by
         exp((m_old − m_new)/γ).  Locals carry the sums, so nothing is atomic.
         1 − D = 1/(1 + eˢ) gives D and the silhouette product from one exp.
         A thread owns a row of LANES = 8 pixels of one tile.
backward (face-major)    one thread per (view, face) walks the pixels its culling
         rectangle covers, 8 at a time, adds up dL/d(corners), dL/d(colours),
         dL/d(light) in registers and writes them once.  With image gradients
         g = (g_rgb, g_A):

    A = 1 − P,  P = Π(1 − D_j)          ∂L/∂s_j += g_A · P · D_j
    I = (Σ e_j C_j + e_b C_b) / Δ        ∂L/∂e_j  = g_rgb · (C_j − I) / Δ
    e_j = D_j exp((ẑ_j − m)/γ)           ∂L/∂s_j += ∂L/∂e_j · e_j (1 − D_j)
                                         ∂L/∂ẑ_j  = ∂L/∂e_j · e_j / γ
    C_j = light_j Σ_k w̃_k c_k            ∂L/∂C_j  = g_rgb · e_j / Δ

then through s = δ d²/σ, d² (closest edge), w̃ (clamped barycentrics) and
z = 1/Σ w̃_k/z'_k to the projected corners.  A custom backward is not
differentiated by Taichi, so its loops may carry locals freely (docs/architecture.md, "Rules every kernel follows").

The per-pair steps (add_pair, pair_grad) have no branches: whether a pair counts is a
mask applied with ti.select, and `exp` is plain arithmetic, so LLVM's loop vectoriser
turns each loop over a thread's 8 pixels into AVX2 code (docs/architecture.md, "The CPU
soft pass"); the GPU layout (soft_tiles.py) runs the same steps one pixel per thread.

Pairs that cannot change the result at this precision are skipped (`cutoffs`): the
colour of a face far behind the pixel's nearest one, and the silhouette term of a pixel
whose P already fell below rounding (inside a closed mesh, the back faces cost
almost nothing).
"""
import math

import taichi as ti
from taichi.lang import impl

from .binning import auto_tile, corners, in_rect, tile_range
from .probability import (LOGIT_CLAMP, clamped_det, clip_barycentric, cross2, is_inside, logit,
                          pixel_centre)

# Pixels per thread on the CPU: one tile row of 8 (an AVX2 register of float32).
LANES = 8


# The per-(view, face) set-up record: corners a, b, c (2-D), 1/det, 1/|edge|² (ab, bc, ca),
# 1/z' of the corners.  An ndarray of 13 floats per (view, face), so it compiles once.
SETUP = 13


def cutoffs(gamma, dist_eps, precision):
    """(depth_cut, p_floor): where a pair stops mattering at this precision (u = unit roundoff).

    Colour: the nearest counted face has D > dist_eps, so the softmax denominator Δ
    exceeds dist_eps, and a face Δẑ behind it moves the colour by at most
    e^{−Δẑ/γ}/dist_eps, relative.  Beyond depth_cut = γ ln(10⁴ / (u · dist_eps)) even
    10⁴ such faces together stay below one rounding step, so their colour terms are
    skipped.
    Silhouette: once P = Π(1 − D_j) < p_floor = u · dist_eps, A = 1 − P is 1 to
    rounding and every g_A · P · D_j is as small; the forward stops multiplying P and
    the backward treats the pixel's silhouette gradient as 0."""
    u = 2.0 ** -53 if precision == "f64" else 2.0 ** -24
    return gamma * math.log(1e4 / (u * dist_eps)), u * dist_eps


def cpu_tile(mean_extent):
    """(width, height) of the CPU's tiles: auto_tile's side, but at least LANES wide, so that
    a thread's row of pixels shares one face list."""
    h = auto_tile(mean_extent)
    return max(LANES, h), h


# e^x = 2^k e^r, x = k ln2 + r, |r| ≤ ln2/2, with ln2 in two parts (Cody and Waite) and e^r
# by Cephes' expf polynomial.
_LOG2E, _LN2_HI, _LN2_LO = 1.4426950408889634, 0.693359375, -2.12194440e-4
_EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
             5.0000001201e-1)


@ti.func
def exp(x):
    """e^x in plain arithmetic, so that a loop over pixels vectorises (ti.exp calls the C
    library's expf, which stops LLVM's vectoriser).  Float32: within 2 ulp of e^x for
    x ≥ −87 and 0 below (tests/test_soft_backward.py measures it); float64: ti.exp."""
    result = x
    if ti.static(impl.current_cfg().default_fp == ti.f64):
        result = ti.exp(x)
    else:
        xc = ti.math.clamp(x, -87.0, 88.0)
        k = ti.floor(xc * _LOG2E + 0.5)
        # x − k·ln2_hi is exact.  Taichi compiles with fast-math, whose reassociation would
        # fold the two subtractions into x − k·(ln2_hi + ln2_lo) and lose the point of the
        # split (68 ulp, measured); an OR with a flag that is 0 unless x is inf or NaN hides
        # the exact part from it.
        bits = ti.bit_cast(x, ti.i32)
        flag = ti.select((bits & 0x7F800000) == 0x7F800000, 1, 0)
        hi = ti.bit_cast(ti.bit_cast(xc - k * _LN2_HI, ti.i32) | flag, ti.f32)
        r = hi - k * _LN2_LO
        poly = _EXP_POLY[0]
        for i in ti.static(range(1, len(_EXP_POLY))):
            poly = poly * r + _EXP_POLY[i]
        er = poly * r * r + r + 1.0
        result = ti.select(x < -87.0, 0.0, er * ti.bit_cast((ti.cast(k, ti.i32) + 127) << 23, ti.f32))
    return result


@ti.func
def segment(p, a, e, inv_len2):
    """(d², t): squared distance from p to the segment a + t·e, t ∈ [0, 1], and that t."""
    t = ti.math.clamp((p - a).dot(e) * inv_len2, 0.0, 1.0)
    v = p - (a + t * e)
    return v.dot(v), t


@ti.func
def unpack(g):
    """The set-up record as (a, b, c, inv_det, inv_len2, inv_z)."""
    return (ti.Vector([g[0], g[1]]), ti.Vector([g[2], g[3]]), ti.Vector([g[4], g[5]]), g[6],
            ti.Vector([g[7], g[8], g[9]]), ti.Vector([g[10], g[11], g[12]]))


@ti.func
def barycentric(p, a, b, c, inv_det):
    return ti.Vector([cross2(b - p, c - p), cross2(c - p, a - p), cross2(a - p, b - p)]) * inv_det


@ti.func
def pair(p, a, b, c, inv_det, inv_len2):
    """Pixel centre p against a set-up face: barycentrics w, the inside flag, each edge's
    (d², t) for ab, bc, ca, and d² = their minimum."""
    w = barycentric(p, a, b, c, inv_det)
    d_ab, t_ab = segment(p, a, b - a, inv_len2[0])
    d_bc, t_bc = segment(p, b, c - b, inv_len2[1])
    d_ca, t_ca = segment(p, c, a - c, inv_len2[2])
    return (w, is_inside(w), ti.Vector([d_ab, d_bc, d_ca]), ti.Vector([t_ab, t_bc, t_ca]),
            ti.min(d_ab, d_bc, d_ca))


@ti.func
def pair_depth(w, inv_z, far, inv_range):
    """Clamped barycentrics w̃, the perspective-correct z and ẑ = (far − z)/(far − near)."""
    wc = clip_barycentric(w)
    z = 1.0 / wc.dot(inv_z)
    return wc, z, (far - z) * inv_range


@ti.func
def setup_face(proj: ti.template(), faces: ti.template(), rect: ti.template(), face: ti.template(), n, j, V):
    """face[n, j] = the set-up record of face j in view n."""
    _, a, b, c = corners(proj, faces, n, j, V)
    r = rect[n, j]
    inv_len2 = ti.Vector([0.0, 0.0, 0.0])
    inv_z = ti.Vector([0.0, 0.0, 0.0])
    inv_det = 0.0
    if r[0] <= r[2]:  # drawn, so every z' > Z_MIN
        inv_det = 1.0 / clamped_det(a.xy, b.xy, c.xy)
        inv_len2 = 1.0 / ti.max(ti.Vector([(b - a).xy.norm_sqr(), (c - b).xy.norm_sqr(),
                                           (a - c).xy.norm_sqr()]), 1e-30)
        inv_z = 1.0 / ti.Vector([a[2], b[2], c[2]])
    face[n, j] = ti.Vector([a[0], a[1], b[0], b[1], c[0], c[1], inv_det, inv_len2[0], inv_len2[1],
                            inv_len2[2], inv_z[0], inv_z[1], inv_z[2]])


@ti.kernel
def setup(proj: ti.template(), faces: ti.template(), rect: ti.types.ndarray(), face: ti.types.ndarray(),
          N: ti.i32, F: ti.i32, V: ti.i32):
    """The set-up pass on its own (the GPU layout's; the CPU's forward runs it first)."""
    for n, j in ti.ndrange(N, F):
        setup_face(proj, faces, rect, face, n, j, V)


@ti.func
def add_pair(x, y, p, rec, rr, j, faces, colors, light, m, ws, cs, P, sigma, thr, near, far, cut,
             p_floor, inv_gamma, inv_range, rgb: ti.template()):
    """One (pixel, face) pair into a pixel's running (m, Δ − e_b, Σ e C, P): the step of
    both forward layouts (this file's and soft_tiles.py's).  No branches: a pair that does
    not count changes nothing through ti.select, so that a loop over a row of pixels
    vectorises (what is computed and discarded stays finite or is selected away)."""
    a, b, c, inv_det, inv_len2, inv_z = unpack(rec)
    w, inside, _, _, d2 = pair(p, a, b, c, inv_det, inv_len2)
    hit = in_rect(x, y, rr) & (inside | (d2 < thr))
    t = exp(logit(d2, inside, sigma))
    q = 1.0 / (1.0 + t)  # 1 − D, with D = sigmoid(s) = t q
    P_out = ti.select(hit & (P >= p_floor), P * q, P)  # below p_floor A = 1 to rounding (cutoffs)
    if ti.static(rgb):
        wc, z, zn = pair_depth(w, inv_z, far, inv_range)
        colour = hit & (z >= near) & (z <= far) & (zn > m - cut)
        m_new = ti.select(colour & (zn > m), zn, m)  # a nearer face moves the shift:
        scale = exp((m - m_new) * inv_gamma)  # rescale what we have (1 when it stays)
        e = ti.select(colour, t * q * exp((zn - m_new) * inv_gamma), 0.0)
        f = faces[j]
        ws = ws * scale + e
        cs = cs * scale + e * light[j] * (wc[0] * colors[f[0]] + wc[1] * colors[f[1]] + wc[2] * colors[f[2]])
        m = m_new
    return m, ws, cs, P_out


@ti.kernel
def forward(proj: ti.template(), face: ti.types.ndarray(), rect: ti.types.ndarray(), faces: ti.template(),
            colors: ti.template(),
            light: ti.template(), tile_offset: ti.types.ndarray(), tile_count: ti.types.ndarray(),
            tile_faces: ti.types.ndarray(), zmax: ti.template(), den: ti.template(),
            uncovered: ti.template(), image: ti.template(), sigma: float, gamma: float, thr: float,
            eps: float, near: float, far: float, cut: float, p_floor: float, br: float, bg: float,
            bb: float, N: ti.i32, S: ti.i32, T: ti.i32, F: ti.i32, V: ti.i32, H: ti.i32, rgb: ti.template(),
            L: ti.template()):
    """The set-up pass (`setup`: one kernel less to compile), then
    image = (Σ e_j C_j + e_b C_b) / Δ and A = 1 − P;  keeps m, Δ, P for the backward.
    rgb=False (the silhouette renderer): only A = 1 − Π(1 − D_j), stopping once P < p_floor.
    A thread owns L pixels of a tile row (x0 … x0 + L − 1, in one tile: T is a multiple of L
    or the whole view, binning's `row`), walks
    the tile's list once and runs add_pair for each of its pixels; the per-pixel sums are
    local vectors indexed by the lane, and LLVM turns that lane loop into SIMD."""
    for n, j in ti.ndrange(N, F):
        setup_face(proj, faces, rect, face, n, j, V)
    inv_gamma, inv_range = 1.0 / gamma, 1.0 / (far - near)
    for n, y, xq in ti.ndrange(N, S, (S + L - 1) // L):
        x0 = xq * L
        start, count = tile_range(tile_offset, tile_count, n, y, x0, S, T, H)
        m = ti.Vector([eps for _ in ti.static(range(L))])
        ws, c0, c1, c2 = ti.Vector([0.0] * L), ti.Vector([0.0] * L), ti.Vector([0.0] * L), ti.Vector([0.0] * L)
        P = ti.Vector([1.0] * L)
        for k in range(count):
            j = tile_faces[start + k]
            rr = rect[n, j]
            if (y >= rr[1]) & (y <= rr[3]) & (x0 + L > rr[0]) & (x0 <= rr[2]):
                rec = face[n, j]
                live = 0
                for l in range(L):
                    x = x0 + l
                    ml, wl, cl, Pl = add_pair(x, y, pixel_centre(x, y, S), rec, rr, j, faces, colors, light, m[l],
                                              ws[l], ti.Vector([c0[l], c1[l], c2[l]]), P[l], sigma, thr, near, far,
                                              cut, p_floor, inv_gamma, inv_range, rgb)
                    m[l], ws[l], c0[l], c1[l], c2[l], P[l] = ml, wl, cl[0], cl[1], cl[2], Pl
                    live += ti.select((Pl >= p_floor) & (x < S), 1, 0)
                if ti.static(not rgb):
                    if live == 0:  # A = 1 to rounding in every pixel: the other faces cannot change it
                        break
        for l in ti.static(range(L)):
            x = x0 + l
            if x < S:
                i = (n * S + y) * S + x
                uncovered[i] = P[l]
                if ti.static(rgb):
                    eb = ti.exp((eps - m[l]) * inv_gamma)
                    d = ws[l] + eb
                    zmax[i] = m[l]
                    den[i] = d
                    image[i] = ti.Vector([(c0[l] + eb * br) / d, (c1[l] + eb * bg) / d, (c2[l] + eb * bb) / d,
                                          1.0 - P[l]])
                else:
                    image[i][3] = 1.0 - P[l]


@ti.func
def pixel_adjoint_at(image: ti.template(), zmax: ti.template(), den: ti.template(), uncovered: ti.template(),
                     adjoint: ti.template(), p_floor, i, rgb: ti.template()):
    """What every face's backward needs of pixel i, in one place:
    (g_rgb/Δ, g_rgb·I/Δ, g_A·P, m), with g_A·P = 0 where the silhouette saturated (P < p_floor)."""
    u = uncovered[i]
    gP = ti.select(u >= p_floor, image.grad[i][3] * u, 0.0)
    if ti.static(rgb):
        inv = 1.0 / den[i]
        g = ti.Vector([image.grad[i][0], image.grad[i][1], image.grad[i][2]]) * inv
        I = ti.Vector([image[i][0], image[i][1], image[i][2]])
        adjoint[i] = ti.Vector([g[0], g[1], g[2], g.dot(I), gP, zmax[i]])
    else:
        adjoint[i][4] = gP


@ti.kernel
def pixel_adjoint(image: ti.template(), zmax: ti.template(), den: ti.template(),
                  uncovered: ti.template(), adjoint: ti.template(), p_floor: float, P: ti.i32,
                  rgb: ti.template()):
    """pixel_adjoint_at on its own (the GPU layout's; the CPU's backward runs it first)."""
    for i in range(P):
        pixel_adjoint_at(image, zmax, den, uncovered, adjoint, p_floor, i, rgb)


@ti.func
def perp(v):
    """∂ cross2(u, v)/∂u = (v.y, −v.x)."""
    return ti.Vector([v[1], -v[0]])


@ti.func
def barycentric_grad(p, a, b, c, inv_det, live, w, gw):
    """dL/d(a, b, c) (2-D) given dL/dw for w = barycentric(p, a, b, c).
    `live`: |det| ≥ 1e-10 (else it was clamped to a constant)."""
    gN = gw * inv_det
    gD = ti.select(live, -gw.dot(w) * inv_det, 0.0)
    pa, pb, pc = a - p, b - p, c - p
    # w0 = cross2(pb, pc), w1 = cross2(pc, pa), w2 = cross2(pa, pb), det = their sum
    ga = gN[1] * -perp(pc) + gN[2] * perp(pb) + gD * (perp(c - a) - perp(b - a)) * -1.0
    gb = gN[0] * perp(pc) + gN[2] * -perp(pa) + gD * perp(c - a)
    gc = gN[0] * -perp(pb) + gN[1] * perp(pa) + gD * -perp(b - a)
    return ga, gb, gc


@ti.func
def segment_grad(p, a, e, t, g):
    """dL/da, dL/db for d² = |p − q|², q = a + t e the closest point of [a, a + e]
    (t held fixed: at an interior minimum ∂d²/∂t = 0)."""
    gq = -2.0 * g * (p - (a + t * e))
    return gq * (1.0 - t), gq * t


@ti.func
def pair_grad(p, a, b, c, inv_det, inv_len2, inv_z, live, ca, cb, cc, Lj, adj, on, sigma, thr, near, far,
              cut, inv_gamma, inv_range, rgb: ti.template()):
    """One pixel's share of dL/d(corners (x, y, z')), dL/d(colours), dL/d(light) for one face,
    the chain rule of this file's docstring; zero for a pair that adds nothing (or `on` False).
    Branch-free like add_pair: masks go through ti.select, so a row of pixels vectorises."""
    zero3 = ti.Vector([0.0, 0.0, 0.0])
    w, inside, de, te, d2 = pair(p, a, b, c, inv_det, inv_len2)
    hit = on & (inside | (d2 < thr))
    t = exp(logit(d2, inside, sigma))
    q = 1.0 / (1.0 + t)
    D = t * q
    gs = ti.select(hit, adj[4] * D, 0.0)  # g_A · P · D (0 where the silhouette saturated)
    gca, gcb, gcc, gl = zero3, zero3, zero3, 0.0
    gz, ba, bb_, bc = zero3, ti.Vector([0.0, 0.0]), ti.Vector([0.0, 0.0]), ti.Vector([0.0, 0.0])
    if ti.static(rgb):
        wc, z, zn = pair_depth(w, inv_z, far, inv_range)
        colour = hit & (z >= near) & (z <= far) & (zn > adj[5] - cut)
        z = ti.select(colour, z, 0.0)  # z = 1/0 can happen where the colour does not count
        e = ti.select(colour, D * exp((zn - adj[5]) * inv_gamma), 0.0)
        gD = ti.Vector([adj[0], adj[1], adj[2]])  # g_rgb / Δ
        Cbar = wc[0] * ca + wc[1] * cb + wc[2] * cc
        ge = Lj * gD.dot(Cbar) - adj[3]
        gs += ge * e * q
        gC = gD * e
        gl = gC.dot(Cbar)
        gca, gcb, gcc = gC * (Lj * wc[0]), gC * (Lj * wc[1]), gC * (Lj * wc[2])
        gzz = -ge * e * inv_gamma * inv_range  # dL/dz
        gwc = Lj * ti.Vector([gC.dot(ca), gC.dot(cb), gC.dot(cc)]) - gzz * z * z * inv_z
        gz = gzz * z * z * wc * inv_z * inv_z
        # clamped, renormalised barycentrics -> raw barycentrics
        u = ti.math.clamp(w, 0.0, 1.0)
        total = u.sum()
        gu = ti.select(total > 1e-5, (gwc - gwc.dot(wc)) / total, gwc / 1e-5)
        gw = ti.select((w > 0.0) & (w < 1.0), gu, 0.0)
        ba, bb_, bc = barycentric_grad(p, a, b, c, inv_det, live, w, gw)
    # s = clamp(δ d²/σ) -> d² -> the closest edge's end points (ties as in min: ab, bc, ca)
    raw = ti.select(inside, d2, -d2) / sigma
    gd2 = ti.select(ti.abs(raw) < LOGIT_CLAMP, gs * ti.select(inside, 1.0, -1.0) / sigma, 0.0)
    on_ab = (de[0] <= de[1]) & (de[0] <= de[2])
    on_bc = (de[1] < de[0]) & (de[1] <= de[2])
    on_ca = (de[2] < de[0]) & (de[2] < de[1])
    ea_ab, eb_ab = segment_grad(p, a, b - a, te[0], ti.select(on_ab, gd2, 0.0))
    eb_bc, ec_bc = segment_grad(p, b, c - b, te[1], ti.select(on_bc, gd2, 0.0))
    ec_ca, ea_ca = segment_grad(p, c, a - c, te[2], ti.select(on_ca, gd2, 0.0))
    ga = ti.Vector([ba[0] + ea_ab[0] + ea_ca[0], ba[1] + ea_ab[1] + ea_ca[1], gz[0]])
    gb = ti.Vector([bb_[0] + eb_ab[0] + eb_bc[0], bb_[1] + eb_ab[1] + eb_bc[1], gz[1]])
    gc = ti.Vector([bc[0] + ec_bc[0] + ec_ca[0], bc[1] + ec_bc[1] + ec_ca[1], gz[2]])
    return ga, gb, gc, gca, gcb, gcc, gl



@ti.func
def rect_grads(n, j, x0, x1, y0, y1, face: ti.template(), faces: ti.template(), colors: ti.template(),
               light: ti.template(), adjoint: ti.template(), sigma, thr, near, far, cut, inv_gamma, inv_range, S,
               rgb: ti.template(), L: ti.template()):
    """Σ of pair_grad over the pixels x0..x1, y0..y1 of view n for face j: what one thread
    of either backward layout adds up before its atomics, L pixels at a time (the lanes of
    a SIMD register on the CPU; L = 1 on a GPU); the sums are plain
    scalars, which LLVM vectorises as reductions (docs/architecture.md, "The CPU soft pass")."""
    f = faces[j]
    a, b, c, inv_det, inv_len2, inv_z = unpack(face[n, j])
    live = ti.abs(cross2(b - a, c - a)) >= 1e-10
    ca, cb, cc = colors[f[0]], colors[f[1]], colors[f[2]]
    Lj = light[j]
    zero3 = ti.Vector([0.0, 0.0, 0.0])
    ga, gb, gc, gca, gcb, gcc, gl = zero3, zero3, zero3, zero3, zero3, zero3, 0.0
    # The rectangle's w·h pixels in reading order, L at a time: a face a few pixels wide
    # fills the lanes (rows of L would leave most of them idle).  Row and column come from a
    # float division, which vectorises where an integer one would not; the ±1 correction
    # makes them exact.
    w = x1 - x0 + 1
    count = w * (y1 - y0 + 1)
    inv_w = 1.0 / w
    for chunk in range((count + L - 1) // L):
        for l in range(L):
            k = chunk * L + l
            dy = ti.cast(ti.floor((k + 0.5) * inv_w), ti.i32)
            dy = ti.select(k - dy * w < 0, dy - 1, ti.select(k - dy * w >= w, dy + 1, dy))
            x, y = x0 + k - dy * w, ti.min(y0 + dy, y1)  # lanes past the end repeat the last row, off
            adj = adjoint[(n * S + y) * S + x]
            da, db, dc, dca, dcb, dcc, dl = pair_grad(pixel_centre(x, y, S), a, b, c, inv_det, inv_len2, inv_z,
                                                      live, ca, cb, cc, Lj, adj, k < count, sigma, thr, near,
                                                      far, cut, inv_gamma, inv_range, rgb)
            ga += da
            gb += db
            gc += dc
            if ti.static(rgb):
                gca += dca
                gcb += dcb
                gcc += dcc
                gl += dl
    return ga, gb, gc, gca, gcb, gcc, gl


@ti.func
def scatter(proj: ti.template(), colors: ti.template(), light: ti.template(), f, base, j, ga, gb, gc, gca, gcb,
            gcc, gl, rgb: ti.template()):
    """One atomic add per vertex component (and colour, light) of face j = (f0, f1, f2)."""
    proj.grad[base + f[0]] += ga
    proj.grad[base + f[1]] += gb
    proj.grad[base + f[2]] += gc
    if ti.static(rgb):
        colors.grad[f[0]] += gca
        colors.grad[f[1]] += gcb
        colors.grad[f[2]] += gcc
        light.grad[j] += gl


@ti.kernel
def backward(proj: ti.template(), faces: ti.template(), colors: ti.template(), light: ti.template(),
             face: ti.types.ndarray(), rect: ti.types.ndarray(), image: ti.template(), zmax: ti.template(),
             den: ti.template(), uncovered: ti.template(), adjoint: ti.template(), sigma: float,
             gamma: float, thr: float, near: float, far: float, cut: float, p_floor: float, N: ti.i32, S: ti.i32,
             F: ti.i32, V: ti.i32, rgb: ti.template(), L: ti.template()):
    """Every pixel's adjoint (`pixel_adjoint`: one kernel less to compile), then one thread per
    (view, face): rect_grads over the face's rectangle, L pixels at a time."""
    for i in range(N * S * S):
        pixel_adjoint_at(image, zmax, den, uncovered, adjoint, p_floor, i, rgb)
    inv_gamma, inv_range = 1.0 / gamma, 1.0 / (far - near)
    for n, j in ti.ndrange(N, F):
        r = rect[n, j]
        if r[0] <= r[2]:
            ga, gb, gc, gca, gcb, gcc, gl = rect_grads(n, j, r[0], r[2], r[1], r[3], face, faces, colors, light,
                                                       adjoint, sigma, thr, near, far, cut, inv_gamma, inv_range,
                                                       S, rgb, L)
            scatter(proj, colors, light, faces[j], n * V, j, ga, gb, gc, gca, gcb, gcc, gl, rgb)
