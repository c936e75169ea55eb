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
def shift(proj: ti.template(), faces: ti.template(), tile_offset: ti.template(),
          tile_count: ti.template(), tile_faces: ti.template(), zmax: ti.template(),
          wsum: ti.template(), csum: ti.template(), logsum: ti.template(),
          thr: float, eps: float, near: float, far: float, N: ti.i32, S: ti.i32, T: ti.i32):
    """zmax = max(ε, max_j ẑ_j) over the faces that reach the pixel; zero the sums."""
    for n, y, x in ti.ndrange(N, S, S):
        p = pixel_centre(x, y, S)
        start, count = tile_range(tile_offset, tile_count, n, y, x, S, T)
        m = eps
        for k in range(count):
            _, a, b, c, w, inside, d2 = face_at_pixel(proj, faces, n, tile_faces[start + k], p)
            if inside | (d2 < thr):
                z = depth(clip_barycentric(w), a, b, c)
                if (z >= near) & (z <= far):
                    m = ti.max(m, (far - z) / (far - near))
        zmax[n, y, x] = m
        wsum[n, y, x] = 0.0
        csum[n, y, x] = ti.Vector([0.0, 0.0, 0.0])
        logsum[n, y, x] = 0.0


@ti.kernel
def accumulate(proj: ti.template(), faces: ti.template(), colors: ti.template(),
               light: ti.template(), tile_offset: ti.template(), tile_count: ti.template(),
               tile_faces: ti.template(), zmax: ti.template(), wsum: ti.template(),
               csum: ti.template(), logsum: ti.template(), sigma: float, gamma: float,
               thr: float, near: float, far: float, N: ti.i32, S: ti.i32, T: ti.i32):
    """logsum += log(1 − D_j);  wsum += D_j e_j;  csum += D_j e_j C_j."""
    for n, y, x in ti.ndrange(N, S, S):
        p = pixel_centre(x, y, S)
        start, count = tile_range(tile_offset, tile_count, n, y, x, S, T)
        m = zmax[n, y, x]
        for k in range(count):
            j = tile_faces[start + k]
            f, a, b, c, w, inside, d2 = face_at_pixel(proj, faces, n, j, p)
            if inside | (d2 < thr):
                s = logit(d2, inside, sigma)
                logsum[n, y, x] += log1m_sigmoid(s)
                wc = clip_barycentric(w)
                z = depth(wc, a, b, c)
                if (z >= near) & (z <= far):
                    e = sigmoid(s) * ti.exp(((far - z) / (far - near) - m) / gamma)
                    wsum[n, y, x] += e
                    csum[n, y, x] += e * light[j] * (wc[0] * colors[f[0]] + wc[1] * colors[f[1]]
                                                     + wc[2] * colors[f[2]])


@ti.kernel
def resolve(zmax: ti.template(), wsum: ti.template(), csum: ti.template(),
            logsum: ti.template(), image: ti.template(), gamma: float, eps: float,
            br: float, bg: float, bb: float, N: ti.i32, S: ti.i32):
    """RGB = (csum + e_b C_b) / (wsum + e_b);  A = 1 − exp(logsum)."""
    for n, y, x in ti.ndrange(N, S, S):
        eb = ti.exp((eps - zmax[n, y, x]) / gamma)
        inv = 1.0 / (wsum[n, y, x] + eb)
        image[n, y, x, 0] = (csum[n, y, x][0] + eb * br) * inv
        image[n, y, x, 1] = (csum[n, y, x][1] + eb * bg) * inv
        image[n, y, x, 2] = (csum[n, y, x][2] + eb * bb) * inv
        image[n, y, x, 3] = 1.0 - ti.exp(logsum[n, y, x])
