"""The classical rasterizer: a z-buffer, the σ, γ → 0 limit of the soft one.

Per pixel, the face that strictly contains the pixel centre and is nearest
(largest ẑ, i.e. smallest perspective-correct z in [near, far]) gives the colour;
alpha is 1 where any face contains the centre.  When even the nearest face has
ẑ < ε the background wins, exactly as in the soft aggregation's limit.

`zbuffer` picks the face (no gradient); `shade` interpolates its colour, which is
smooth inside a face, so shading gradients exist while the silhouette's is zero:
the point lecture 01 makes.
"""
import taichi as ti

from .binning import corners, tile_range
from .probability import barycentric, clip_barycentric, depth, is_inside, pixel_centre


@ti.kernel
def zbuffer(proj: ti.template(), faces: ti.template(), tile_offset: ti.types.ndarray(),
            tile_count: ti.types.ndarray(), tile_faces: ti.types.ndarray(), nearest: ti.template(),
            coverage: ti.template(), eps: float, near: float, far: float,
            N: ti.i32, S: ti.i32, T: ti.i32, H: ti.i32, V: ti.i32):
    for n, y, x in ti.ndrange(N, S, S):
        p = pixel_centre(x, y, S)
        start, count = tile_range(tile_offset, tile_count, n, y, x, S, T, H)
        best, best_z, covered = -1, eps, 0
        for k in range(count):
            j = tile_faces[start + k]
            _, a, b, c = corners(proj, faces, n, j, V)
            w = barycentric(p, a.xy, b.xy, c.xy)
            if is_inside(w):
                covered = 1
                z = depth(clip_barycentric(w), a, b, c)
                zn = (far - z) / (far - near)
                # ties go to the lower face index, so the result is deterministic
                if (z >= near) & (z <= far) & ((zn > best_z) | ((zn == best_z) & (j < best))):
                    best, best_z = j, zn
        nearest[(n * S + y) * S + x] = best
        coverage[(n * S + y) * S + x] = covered


@ti.kernel
def shade(proj: ti.template(), faces: ti.template(), colors: ti.template(), light: ti.template(),
          nearest: ti.template(), coverage: ti.template(), image: ti.template(),
          br: float, bg: float, bb: float, N: ti.i32, S: ti.i32, V: ti.i32):
    for n, y, x in ti.ndrange(N, S, S):
        i = (n * S + y) * S + x
        j = nearest[i]
        rgb = ti.Vector([br, bg, bb])
        if j >= 0:
            f, a, b, c = corners(proj, faces, n, j, V)
            wc = clip_barycentric(barycentric(pixel_centre(x, y, S), a.xy, b.xy, c.xy))
            rgb = light[j] * (wc[0] * colors[f[0]] + wc[1] * colors[f[1]] + wc[2] * colors[f[2]])
        image[i] = ti.Vector([rgb[0], rgb[1], rgb[2], ti.cast(coverage[i], float)])
