"""Stage 4 for a GPU: soft.py's mathematics in tile-major / entry-major order.

soft.py is laid out for a CPU: one thread per pixel forward, one per (view, face)
backward.  On a GPU a 32-thread warp of that forward spans several tiles with
different face lists, and the backward's threads do very uneven work.  Here:

forward   one thread block per binning tile (B = 64 threads for tiles up to 8×8, 256
          for 16×16; bigger tiles loop over their pixels in rounds of B).  The block
          walks its tile's face list in chunks of B: each thread stages one face's
          set-up record (soft.setup), pixel rectangle and index in shared memory
          (ti.simt.block.SharedArray), the block synchronises, then every thread runs
          the chunk against its pixel.  Backends without shared memory (the CPU) run
          the same loops reading the records from global memory.
backward  one thread per (tile, face) entry of binning's lists: the pixels of the tile
          that the face's culling rectangle covers, reduced in registers, then one
          atomic add per vertex component (and per colour, light).

The per-pixel and per-pair formulas are soft.py's (docs/math.md; soft.py's docstring
has the backward's chain rule): the online max-shift forward, the cut-offs below
rounding (soft.cutoffs) and the face order of each list are the same, so both
layouts give the same images and gradients (tests/test_tiles.py, tests/test_vulkan.py).
"""
import taichi as ti

from . import soft
from .binning import in_rect
from .probability import LOGIT_CLAMP, cross2, logit, pixel_centre


def gpu_tile(mean_extent):
    """Tile side on a GPU: 8×8 (one 64-thread block) unless faces reach 16 pixels or
    more on average, where lists are long anyway and a 256-thread block shares each
    staged face among four times the pixels."""
    return 16 if mean_extent >= 16 else 8


def block_dim(T):
    """Threads per block for tiles of side T (T² pixels in ⌈T²/B⌉ rounds)."""
    return 64 if T <= 8 else 256


def staging(arch, precision):
    """(shared, fp) for forward: ti.simt.block.SharedArray and block.sync exist on CUDA and
    the SPIR-V backends (Vulkan, Metal), not on the CPU; fp is the records' float type."""
    return arch in ("cuda", "vulkan", "metal"), ti.f64 if precision == "f64" else ti.f32


@ti.func
def add_pair(x, y, p, rec, rr, j, faces, colors, light, m, ws, cs, P, sigma, thr, near, far, cut,
             p_floor, inv_gamma, inv_range, rgb: ti.template()):
    """One (pixel, face) pair into the running (m, Δ − e_b, Σ e C, P) of soft.forward.
    (soft.forward and soft.backward inline this step and pair_grad's; they could call
    these two once their CPU loops settle, leaving one copy of each.)"""
    if in_rect(x, y, rr):
        a, b, c, inv_det, inv_len2, inv_z = soft.unpack(rec)
        w, inside, _, _, d2 = soft.pair(p, a, b, c, inv_det, inv_len2)
        if inside | (d2 < thr):
            if ti.static(rgb):
                wc, z, zn = soft.pair_depth(w, inv_z, far, inv_range)
                colour = (z >= near) & (z <= far) & (zn > m - cut)
                silhouette = P >= p_floor
                if colour | silhouette:
                    t = ti.exp(logit(d2, inside, sigma))
                    q = 1.0 / (1.0 + t)  # 1 − D, with D = sigmoid(s) = t q
                    if silhouette:
                        P *= q
                    if colour:
                        if zn > m:  # a nearer face: move the shift, rescale what we have
                            scale = ti.exp((m - zn) * inv_gamma)
                            ws *= scale
                            cs *= scale
                            m = zn
                        e = t * q * ti.exp((zn - m) * inv_gamma)
                        f = faces[j]
                        ws += e
                        cs += e * light[j] * (wc[0] * colors[f[0]] + wc[1] * colors[f[1]]
                                              + wc[2] * colors[f[2]])
            elif P >= p_floor:  # below it A = 1 to rounding (soft.cutoffs); no break: the block syncs
                P *= 1.0 / (1.0 + ti.exp(logit(d2, inside, sigma)))
    return m, ws, cs, P


@ti.kernel
def forward(face: ti.types.ndarray(), rect: ti.types.ndarray(), faces: ti.template(), colors: ti.template(),
            light: ti.template(), tile_offset: ti.types.ndarray(), tile_count: ti.types.ndarray(),
            tile_faces: ti.types.ndarray(), zmax: ti.template(), den: ti.template(),
            uncovered: ti.template(), image: ti.template(), sigma: float, gamma: float, thr: float,
            eps: float, near: float, far: float, cut: float, p_floor: float, br: float, bg: float,
            bb: float, N: ti.i32, S: ti.i32, T: ti.i32, rgb: ti.template(), B: ti.template(),
            shared: ti.template(), fp: ti.template()):
    """image = (Σ e_j C_j + e_b C_b) / Δ and A = 1 − P, as soft.forward, one block of B
    threads per tile; keeps m, Δ, P for the backward.  shared: stage the set-up
    records (float type fp) in shared memory; False where the backend has none."""
    inv_gamma, inv_range = 1.0 / gamma, 1.0 / (far - near)
    TX = (S + T - 1) // T
    rounds = (T * T + B - 1) // B
    ti.loop_config(block_dim=B)
    for g in range(N * TX * TX * B):
        t, tid = g // B, g % B  # block = tile: every thread of a block takes the same branches
        n, ty, tx = t // (TX * TX), (t // TX) % TX, t % TX
        start, count = tile_offset[t], tile_count[t]
        chunks = (count + B - 1) // B
        # declared either way (a static if would scope them), one element where unused
        rec_s = ti.simt.block.SharedArray((B * soft.SETUP if shared else 1,), fp)
        idx_s = ti.simt.block.SharedArray((B * 5 if shared else 1,), ti.i32)  # rectangle, face index
        for r in range(rounds):
            q = r * B + tid
            y, x = ty * T + q // T, tx * T + q % T
            live = (q < T * T) & (y < S) & (x < S)
            p = pixel_centre(x, y, S)
            m, ws, P = eps, 0.0, 1.0
            cs = ti.Vector([0.0, 0.0, 0.0])
            for c in range(chunks):
                k0 = c * B
                size = ti.min(B, count - k0)
                if ti.static(shared):
                    if tid < size:
                        j = tile_faces[start + k0 + tid]
                        rec, rr = face[n, j], rect[n, j]
                        for s in ti.static(range(soft.SETUP)):
                            rec_s[tid * soft.SETUP + s] = rec[s]
                        for s in ti.static(range(4)):
                            idx_s[tid * 5 + s] = rr[s]
                        idx_s[tid * 5 + 4] = j
                    ti.simt.block.sync()
                    if live:
                        for k in range(size):
                            rec = ti.Vector([rec_s[k * soft.SETUP + s] for s in ti.static(range(soft.SETUP))])
                            rr = ti.Vector([idx_s[k * 5 + s] for s in ti.static(range(4))])
                            m, ws, cs, P = add_pair(x, y, p, rec, rr, idx_s[k * 5 + 4], faces, colors, light,
                                                    m, ws, cs, P, sigma, thr, near, far, cut, p_floor,
                                                    inv_gamma, inv_range, rgb)
                    ti.simt.block.sync()  # the next chunk overwrites what others may still read
                else:
                    if live:
                        for k in range(size):
                            j = tile_faces[start + k0 + k]
                            m, ws, cs, P = add_pair(x, y, p, face[n, j], rect[n, j], j, faces, colors, light,
                                                    m, ws, cs, P, sigma, thr, near, far, cut, p_floor,
                                                    inv_gamma, inv_range, rgb)
            if live:
                i = (n * S + y) * S + x
                uncovered[i] = P
                if ti.static(rgb):
                    eb = ti.exp((eps - m) * inv_gamma)
                    d = ws + eb
                    zmax[i] = m
                    den[i] = d
                    image[i] = ti.Vector([(cs[0] + eb * br) / d, (cs[1] + eb * bg) / d,
                                          (cs[2] + eb * bb) / d, 1.0 - P])
                else:
                    image[i][3] = 1.0 - P


@ti.func
def pair_grad(p, a, b, c, inv_det, inv_len2, inv_z, live, ca, cb, cc, L, adj, sigma, thr, near, far,
              cut, inv_gamma, inv_range, rgb: ti.template()):
    """One pixel's share of dL/d(corners (x, y, z')), dL/d(colours), dL/d(light) for one face,
    the chain rule of soft.py's docstring; zero for a pair that adds nothing."""
    zero2, zero3 = ti.Vector([0.0, 0.0]), ti.Vector([0.0, 0.0, 0.0])
    ga, gb, gc, gca, gcb, gcc, gl = zero3, zero3, zero3, zero3, zero3, zero3, 0.0
    w, inside, de, te, d2 = soft.pair(p, a, b, c, inv_det, inv_len2)
    if inside | (d2 < thr):
        wc, z, zn, colour = zero3, 0.0, 0.0, False
        if ti.static(rgb):
            wc, z, zn = soft.pair_depth(w, inv_z, far, inv_range)
            colour = (z >= near) & (z <= far) & (zn > adj[5] - cut)
        if colour | (adj[4] != 0.0):
            t = ti.exp(logit(d2, inside, sigma))
            q = 1.0 / (1.0 + t)
            D = t * q
            gs = adj[4] * D
            gwc, gz = zero3, zero3
            if colour:
                e = D * ti.exp((zn - adj[5]) * inv_gamma)
                gD = ti.Vector([adj[0], adj[1], adj[2]])  # g_rgb / Δ
                Cbar = wc[0] * ca + wc[1] * cb + wc[2] * cc
                ge = L * gD.dot(Cbar) - adj[3]
                gs += ge * e * q
                gC = gD * e
                gl = gC.dot(Cbar)
                gca, gcb, gcc = gC * (L * wc[0]), gC * (L * wc[1]), gC * (L * wc[2])
                gzz = -ge * e * inv_gamma * inv_range  # dL/dz
                gwc = L * ti.Vector([gC.dot(ca), gC.dot(cb), gC.dot(cc)]) - gzz * z * z * inv_z
                gz = gzz * z * z * wc * inv_z * inv_z
            ba, bb_, bc = zero2, zero2, zero2
            if ti.static(rgb):
                # clamped, renormalised barycentrics -> raw barycentrics
                u = ti.math.clamp(w, 0.0, 1.0)
                total = u.sum()
                gu = ti.select(total > 1e-5, (gwc - gwc.dot(wc)) / total, gwc / 1e-5)
                gw = ti.select((w > 0.0) & (w < 1.0), gu, 0.0)
                ba, bb_, bc = soft.barycentric_grad(p, a, b, c, inv_det, live, w, gw)
            # s = clamp(δ d²/σ) -> d² -> the closest edge's end points
            raw = ti.select(inside, d2, -d2) / sigma
            gd2 = ti.select(ti.abs(raw) < LOGIT_CLAMP, gs * ti.select(inside, 1.0, -1.0) / sigma, 0.0)
            ea, eb_, ec = zero2, zero2, zero2
            if (de[0] <= de[1]) & (de[0] <= de[2]):
                ea, eb_ = soft.segment_grad(p, a, b - a, te[0], gd2)
            elif de[1] <= de[2]:
                eb_, ec = soft.segment_grad(p, b, c - b, te[1], gd2)
            else:
                ec, ea = soft.segment_grad(p, c, a - c, te[2], gd2)
            ga = ti.Vector([ba[0] + ea[0], ba[1] + ea[1], gz[0]])
            gb = ti.Vector([bb_[0] + eb_[0], bb_[1] + eb_[1], gz[1]])
            gc = ti.Vector([bc[0] + ec[0], bc[1] + ec[1], gz[2]])
    return ga, gb, gc, gca, gcb, gcc, gl


@ti.kernel
def backward(proj: ti.template(), faces: ti.template(), colors: ti.template(), light: ti.template(),
             face: ti.types.ndarray(), rect: ti.types.ndarray(), adjoint: ti.template(),
             entry_tile: ti.types.ndarray(), entry_face: ti.types.ndarray(), sigma: float, gamma: float,
             thr: float, near: float, far: float, cut: float, N: ti.i32, S: ti.i32, T: ti.i32, E: ti.i32,
             V: ti.i32, rgb: ti.template()):
    """dL/d(proj, colours, light) = Σ over the (tile, face) entries of Σ over the tile's pixels
    in the face's rectangle (pair_grad), one atomic add per component and entry."""
    inv_gamma, inv_range = 1.0 / gamma, 1.0 / (far - near)
    TX = (S + T - 1) // T
    for e in range(E):
        t, j = entry_tile[e], entry_face[e]
        n, ty, tx = t // (TX * TX), (t // TX) % TX, t % TX
        r = rect[n, j]  # an entry exists only for a drawn face
        f = faces[j]
        a, b, c, inv_det, inv_len2, inv_z = soft.unpack(face[n, j])
        live = ti.abs(cross2(b - a, c - a)) >= 1e-10
        ca, cb, cc = colors[f[0]], colors[f[1]], colors[f[2]]
        L = light[j]
        zero3 = ti.Vector([0.0, 0.0, 0.0])
        ga, gb, gc, gca, gcb, gcc, gl = zero3, zero3, zero3, zero3, zero3, zero3, 0.0
        for y in range(ti.max(r[1], ty * T), ti.min(r[3], ty * T + T - 1) + 1):
            for x in range(ti.max(r[0], tx * T), ti.min(r[2], tx * T + T - 1) + 1):
                adj = adjoint[(n * S + y) * S + x]
                wanted = True
                if ti.static(not rgb):  # silhouette: nothing where it saturated or g_A = 0
                    wanted = adj[4] != 0.0
                if wanted:
                    da, db, dc, dca, dcb, dcc, dl = pair_grad(pixel_centre(x, y, S), a, b, c, inv_det, inv_len2,
                                                              inv_z, live, ca, cb, cc, L, adj, sigma, thr,
                                                              near, far, cut, inv_gamma, inv_range, rgb)
                    ga += da
                    gb += db
                    gc += dc
                    if ti.static(rgb):
                        gca += dca
                        gcb += dcb
                        gcc += dcc
                        gl += dl
        proj.grad[n * V + f[0]] += ga
        proj.grad[n * V + f[1]] += gb
        proj.grad[n * V + f[2]] += gc
        if ti.static(rgb):
            colors.grad[f[0]] += gca
            colors.grad[f[1]] += gcb
            colors.grad[f[2]] += gcc
            light.grad[j] += gl
