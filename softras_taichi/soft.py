"""Stage 4, the fast way: one forward kernel and a hand-written backward.

`aggregate.py` is the readable version that Taichi differentiates for us.  This is
the same mathematics (SPEC §2) arranged for speed, checked against it in
tests/test_soft_backward.py:

forward  (pixel-major)  one pass over the tile's faces with an *online* max-shift:
         when a nearer face raises m, the running sums are rescaled by
         exp((m_old − m_new)/γ).  Locals carry the sums, so nothing is atomic.
backward (face-major)   one thread per (view, face) walks the pixels its culling
         rectangle covers, adds up dL/d(corners), dL/d(colours), dL/d(light) in
         registers and writes them once.  With image gradients g = (g_rgb, g_A):

    A = 1 − P,  P = Π(1 − D_j)          ∂L/∂s_j += g_A · P · D_j
    I = (Σ e_j C_j + e_b C_b) / Δ        ∂L/∂e_j  = g_rgb · (C_j − I) / Δ
    e_j = D_j exp((ẑ_j − m)/γ)           ∂L/∂s_j += ∂L/∂e_j · e_j (1 − D_j)
                                         ∂L/∂ẑ_j  = ∂L/∂e_j · e_j / γ
    C_j = light_j Σ_k w̃_k c_k            ∂L/∂C_j  = g_rgb · e_j / Δ

then through s = δ d²/σ, d² (closest edge), w̃ (clamped barycentrics) and
z = 1/Σ w̃_k/z'_k to the projected corners.  A custom backward is not
differentiated by Taichi, so its loops may carry locals freely (SPEC §4).
"""
import taichi as ti

from .aggregate import tile_range
from .probability import (LOGIT_CLAMP, barycentric, clip_barycentric, cross2, depth, edge_d2,
                          face_at_pixel, is_inside, log1m_sigmoid, logit, pixel_centre,
                          segment_d2, sigmoid)


@ti.kernel
def forward(proj: ti.template(), faces: ti.template(), colors: ti.template(), light: ti.template(),
            tile_offset: ti.template(), tile_count: ti.template(), tile_faces: ti.template(),
            zmax: ti.template(), den: ti.template(), logsum: ti.template(), image: ti.template(),
            sigma: float, gamma: float, thr: float, eps: float, near: float, far: float,
            br: float, bg: float, bb: float, N: ti.i32, S: ti.i32, T: ti.i32):
    for n, y, x in ti.ndrange(N, S, S):
        p = pixel_centre(x, y, S)
        start, count = tile_range(tile_offset, tile_count, n, y, x, S, T)
        m, ws, ls = eps, 0.0, 0.0
        cs = ti.Vector([0.0, 0.0, 0.0])
        for k in range(count):
            j = tile_faces[start + k]
            f, a, b, c, w, inside, d2 = face_at_pixel(proj, faces, n, j, p)
            if inside | (d2 < thr):
                s = logit(d2, inside, sigma)
                ls += log1m_sigmoid(s)
                wc = clip_barycentric(w)
                z = depth(wc, a, b, c)
                if (z >= near) & (z <= far):
                    zn = (far - z) / (far - near)
                    if zn > m:  # a nearer face: move the shift, rescale what we have
                        scale = ti.exp((m - zn) / gamma)
                        ws *= scale
                        cs *= scale
                        m = zn
                    e = sigmoid(s) * ti.exp((zn - m) / gamma)
                    ws += e
                    cs += e * light[j] * (wc[0] * colors[f[0]] + wc[1] * colors[f[1]] + wc[2] * colors[f[2]])
        eb = ti.exp((eps - m) / gamma)
        d = ws + eb
        zmax[n, y, x] = m
        den[n, y, x] = d
        logsum[n, y, x] = ls
        image[n, y, x, 0] = (cs[0] + eb * br) / d
        image[n, y, x, 1] = (cs[1] + eb * bg) / d
        image[n, y, x, 2] = (cs[2] + eb * bb) / d
        image[n, y, x, 3] = 1.0 - ti.exp(ls)


@ti.func
def perp(v):
    """∂ cross2(u, v)/∂u = (v.y, −v.x)."""
    return ti.Vector([v[1], -v[0]])


@ti.func
def barycentric_grad(p, a, b, c, w, gw):
    """dL/d(a, b, c) (2-D) given dL/dw for w = barycentric(p, a, b, c)."""
    det = cross2(b - a, c - a)
    live = ti.abs(det) >= 1e-10  # else the det was clamped to ±1e-10: a constant
    det = ti.select(det >= 0.0, ti.max(det, 1e-10), ti.min(det, -1e-10))
    gN = gw / det
    gD = ti.select(live, -gw.dot(w) / det, 0.0)
    pa, pb, pc = a - p, b - p, c - p
    # w0 = cross2(pb, pc), w1 = cross2(pc, pa), w2 = cross2(pa, pb), det = their sum
    ga = gN[1] * -perp(pc) + gN[2] * perp(pb) + gD * (perp(c - a) - perp(b - a)) * -1.0
    gb = gN[0] * perp(pc) + gN[2] * -perp(pa) + gD * perp(c - a)
    gc = gN[0] * -perp(pb) + gN[1] * perp(pa) + gD * -perp(b - a)
    return ga, gb, gc


@ti.func
def segment_grad(p, a, b, g):
    """dL/da, dL/db for d² = |p − q|², q the closest point of [a, b] (t held fixed:
    at an interior minimum ∂d²/∂t = 0)."""
    e = b - a
    t = ti.math.clamp((p - a).dot(e) / ti.max(e.dot(e), 1e-30), 0.0, 1.0)
    gq = -2.0 * g * (p - (a + t * e))
    return gq * (1.0 - t), gq * t


@ti.func
def edge_d2_grad(p, a, b, c, g):
    """dL/d(a, b, c) for d² = min of the three segment distances (the argmin gets it all)."""
    d_ab, d_bc, d_ca = segment_d2(p, a, b), segment_d2(p, b, c), segment_d2(p, c, a)
    ga, gb, gc = ti.Vector([0.0, 0.0]), ti.Vector([0.0, 0.0]), ti.Vector([0.0, 0.0])
    if (d_ab <= d_bc) & (d_ab <= d_ca):
        ga, gb = segment_grad(p, a, b, g)
    elif d_bc <= d_ca:
        gb, gc = segment_grad(p, b, c, g)
    else:
        gc, ga = segment_grad(p, c, a, g)
    return ga, gb, gc


@ti.kernel
def backward(proj: ti.template(), faces: ti.template(), colors: ti.template(), light: ti.template(),
             rect: ti.template(), zmax: ti.template(), den: ti.template(), logsum: ti.template(),
             image: ti.template(), sigma: float, gamma: float, thr: float, near: float, far: float,
             N: ti.i32, S: ti.i32, F: ti.i32):
    for n, j in ti.ndrange(N, F):
        r = rect[n, j]
        f = faces[j]
        a, b, c = proj[n, f[0]], proj[n, f[1]], proj[n, f[2]]
        ca, cb, cc = colors[f[0]], colors[f[1]], colors[f[2]]
        L = light[j]
        zero3 = ti.Vector([0.0, 0.0, 0.0])
        ga, gb, gc, gca, gcb, gcc, gl = zero3, zero3, zero3, zero3, zero3, zero3, 0.0
        for y in range(r[1], r[3] + 1):
            for x in range(r[0], r[2] + 1):
                p = pixel_centre(x, y, S)
                w = barycentric(p, a.xy, b.xy, c.xy)
                inside = is_inside(w)
                d2 = edge_d2(p, a.xy, b.xy, c.xy)
                if inside | (d2 < thr):
                    s = logit(d2, inside, sigma)
                    D = sigmoid(s)
                    gs = image.grad[n, y, x, 3] * ti.exp(logsum[n, y, x]) * D
                    wc = clip_barycentric(w)
                    z = depth(wc, a, b, c)
                    gwc, gz = zero3, zero3
                    if (z >= near) & (z <= far):
                        e = D * ti.exp(((far - z) / (far - near) - zmax[n, y, x]) / gamma)
                        g = ti.Vector([image.grad[n, y, x, 0], image.grad[n, y, x, 1], image.grad[n, y, x, 2]])
                        I = ti.Vector([image[n, y, x, 0], image[n, y, x, 1], image[n, y, x, 2]])
                        Cbar = wc[0] * ca + wc[1] * cb + wc[2] * cc
                        ge = g.dot(L * Cbar - I) / den[n, y, x]
                        gs += ge * e * (1.0 - D)
                        gC = g * (e / den[n, y, x])
                        gl += gC.dot(Cbar)
                        gca += gC * (L * wc[0])
                        gcb += gC * (L * wc[1])
                        gcc += gC * (L * wc[2])
                        gzz = -ge * e / (gamma * (far - near))  # dL/dz
                        inv_z = ti.Vector([1.0 / a[2], 1.0 / b[2], 1.0 / c[2]])
                        gwc = L * ti.Vector([gC.dot(ca), gC.dot(cb), gC.dot(cc)]) - gzz * z * z * inv_z
                        gz = gzz * z * z * wc * inv_z * inv_z
                    # clamped, renormalised barycentrics -> raw barycentrics
                    u = ti.math.clamp(w, 0.0, 1.0)
                    total = u.sum()
                    gu = ti.select(total > 1e-5, (gwc - gwc.dot(wc)) / total, gwc / 1e-5)
                    gw = ti.select((w > 0.0) & (w < 1.0), gu, 0.0)
                    ba, bb_, bc = barycentric_grad(p, a.xy, b.xy, c.xy, w, gw)
                    # s = clamp(δ d²/σ) -> d²
                    raw = ti.select(inside, d2, -d2) / sigma
                    gd2 = ti.select(ti.abs(raw) < LOGIT_CLAMP, gs * ti.select(inside, 1.0, -1.0) / sigma, 0.0)
                    ea, eb_, ec = edge_d2_grad(p, a.xy, b.xy, c.xy, gd2)
                    ga += ti.Vector([ba[0] + ea[0], ba[1] + ea[1], gz[0]])
                    gb += ti.Vector([bb_[0] + eb_[0], bb_[1] + eb_[1], gz[1]])
                    gc += ti.Vector([bc[0] + ec[0], bc[1] + ec[1], gz[2]])
        if r[0] <= r[2]:
            proj.grad[n, f[0]] += ga
            proj.grad[n, f[1]] += gb
            proj.grad[n, f[2]] += gc
            colors.grad[f[0]] += gca
            colors.grad[f[1]] += gcb
            colors.grad[f[2]] += gcc
            light.grad[j] += gl
