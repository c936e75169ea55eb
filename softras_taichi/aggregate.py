"""Stage 4: the soft rasterizer's fine pass (docs/math.md), three kernels per render.

For pixel i and the faces j of its tile:

    A^i = 1 − Π_j (1 − D_j^i)                        silhouette, summed as Σ log(1 − D)
    I^i = (Σ_j D_j e_j C_j + e_b C_b) / (Σ_j D_j e_j + e_b)
          e_j = exp((ẑ_j − m)/γ),  e_b = exp((ε − m)/γ),  m = max(ε, max_j ẑ_j)

`shift` finds m (no gradient: the softmax does not depend on it), `accumulate`
adds every face straight into global sums, and `resolve` divides.  Writing the
face loop as `+=` into global fields is what keeps Taichi's autodiff off the
adstack (docs/architecture.md, "Rules every kernel follows"), so the same gradients come out on CPU, CUDA, Vulkan and Metal.
"""
import taichi as ti

from .binning import tile_range
from .probability import (clip_barycentric, depth, face_at_pixel, log1m_sigmoid, logit,
                          pixel_centre, sigmoid)


@ti.kernel
def shift(proj: ti.template(), faces: ti.template(), tile_offset: ti.types.ndarray(),
          tile_count: ti.types.ndarray(), tile_faces: ti.types.ndarray(), zmax: ti.template(),
          wsum: ti.template(), csum: ti.template(), logsum: ti.template(),
          thr: float, eps: float, near: float, far: float, N: ti.i32, S: ti.i32, T: ti.i32, H: ti.i32, V: ti.i32):
    """zmax = max(ε, max_j ẑ_j) over the faces that reach the pixel; zero the sums.
    (Per-pixel arrays are flat: pixel (n, y, x) is entry (n·S + y)·S + x.)"""
    for n, y, x in ti.ndrange(N, S, S):
        p = pixel_centre(x, y, S)
        i = (n * S + y) * S + x
        start, count = tile_range(tile_offset, tile_count, n, y, x, S, T, H)
        m = eps
        for k in range(count):
            _, a, b, c, w, inside, d2 = face_at_pixel(proj, faces, n, tile_faces[start + k], p, V)
            if inside | (d2 < thr):
                z = depth(clip_barycentric(w), a, b, c)
                if (z >= near) & (z <= far):
                    m = ti.max(m, (far - z) / (far - near))
        zmax[i] = m
        wsum[i] = 0.0
        csum[i] = ti.Vector([0.0, 0.0, 0.0])
        logsum[i] = 0.0


@ti.kernel
def accumulate(proj: ti.template(), faces: ti.template(), colors: ti.template(),
               light: ti.template(), tile_offset: ti.types.ndarray(), tile_count: ti.types.ndarray(),
               tile_faces: ti.types.ndarray(), zmax: ti.template(), wsum: ti.template(),
               csum: ti.template(), logsum: ti.template(), sigma: float, gamma: float,
               thr: float, near: float, far: float, N: ti.i32, S: ti.i32, T: ti.i32, H: ti.i32, V: ti.i32):
    """logsum += log(1 − D_j);  wsum += D_j e_j;  csum += D_j e_j C_j."""
    for n, y, x in ti.ndrange(N, S, S):
        p = pixel_centre(x, y, S)
        i = (n * S + y) * S + x
        start, count = tile_range(tile_offset, tile_count, n, y, x, S, T, H)
        m = zmax[i]
        for k in range(count):
            j = tile_faces[start + k]
            f, a, b, c, w, inside, d2 = face_at_pixel(proj, faces, n, j, p, V)
            if inside | (d2 < thr):
                s = logit(d2, inside, sigma)
                logsum[i] += log1m_sigmoid(s)
                wc = clip_barycentric(w)
                z = depth(wc, a, b, c)
                if (z >= near) & (z <= far):
                    e = sigmoid(s) * ti.exp(((far - z) / (far - near) - m) / gamma)
                    wsum[i] += e
                    csum[i] += e * light[j] * (wc[0] * colors[f[0]] + wc[1] * colors[f[1]]
                                                     + wc[2] * colors[f[2]])


@ti.kernel
def resolve(zmax: ti.template(), wsum: ti.template(), csum: ti.template(),
            logsum: ti.template(), image: ti.template(), gamma: float, eps: float,
            br: float, bg: float, bb: float, P: ti.i32):
    """RGB = (csum + e_b C_b) / (wsum + e_b);  A = 1 − exp(logsum)."""
    for i in range(P):
        eb = ti.exp((eps - zmax[i]) / gamma)
        inv = 1.0 / (wsum[i] + eb)
        image[i] = ti.Vector([(csum[i][0] + eb * br) * inv, (csum[i][1] + eb * bg) * inv,
                              (csum[i][2] + eb * bb) * inv, 1.0 - ti.exp(logsum[i])])
