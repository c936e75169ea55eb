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

The per-pair step (soft.add_pair) and the per-face sums of the backward (soft.rect_grads,
soft.scatter) are soft.py's own functions (docs/math.md; soft.py's docstring has the
backward's chain rule): the online max-shift forward, the cut-offs below rounding
(soft.cutoffs) and the face order of each list (binning.make_lists) are the same, so both
layouts give the same images and gradients (tests/test_tiles.py, tests/test_vulkan.py).
"""
import taichi as ti

from . import soft
from .probability import cross2, pixel_centre


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
                            m, ws, cs, P = soft.add_pair(x, y, p, rec, rr, idx_s[k * 5 + 4], faces, colors, light,
                                                    m, ws, cs, P, sigma, thr, near, far, cut, p_floor,
                                                    inv_gamma, inv_range, rgb)
                    ti.simt.block.sync()  # the next chunk overwrites what others may still read
                else:
                    if live:
                        for k in range(size):
                            j = tile_faces[start + k0 + k]
                            m, ws, cs, P = soft.add_pair(x, y, p, face[n, j], rect[n, j], j, faces, colors, light,
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


@ti.kernel
def backward(proj: ti.template(), faces: ti.template(), colors: ti.template(), light: ti.template(),
             face: ti.types.ndarray(), rect: ti.types.ndarray(), adjoint: ti.template(),
             entry_tile: ti.types.ndarray(), entry_face: ti.types.ndarray(), sigma: float, gamma: float,
             thr: float, near: float, far: float, cut: float, N: ti.i32, S: ti.i32, T: ti.i32, E: ti.i32,
             V: ti.i32, rgb: ti.template()):
    """dL/d(proj, colours, light) = Σ over the (tile, face) entries of Σ over the tile's pixels
    in the face's rectangle (soft.rect_grads), one atomic add per component and entry."""
    inv_gamma, inv_range = 1.0 / gamma, 1.0 / (far - near)
    TX = (S + T - 1) // T
    for e in range(E):
        t, j = entry_tile[e], entry_face[e]
        n, ty, tx = t // (TX * TX), (t // TX) % TX, t % TX
        r = rect[n, j]  # an entry exists only for a drawn face
        ga, gb, gc, gca, gcb, gcc, gl = soft.rect_grads(
            n, j, ti.max(r[0], tx * T), ti.min(r[2], tx * T + T - 1), ti.max(r[1], ty * T),
            ti.min(r[3], ty * T + T - 1), face, faces, colors, light, adjoint, sigma, thr, near, far, cut,
            inv_gamma, inv_range, S, rgb, 1)
        soft.scatter(proj, colors, light, faces[j], n * V, j, ga, gb, gc, gca, gcb, gcc, gl, rgb)
