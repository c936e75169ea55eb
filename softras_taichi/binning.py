"""Stage 3: which faces can touch which pixels (no gradient).

A face only reaches pixels within its culling radius  r = sqrt(σ · ln(1/dist_eps − 1))
(beyond it D ≤ dist_eps and SPEC §2 drops the pair).  We cut every view into T×T
pixel tiles and list, per tile, the faces whose r-expanded bounding box overlaps
it: a count pass, a prefix sum, a fill pass.  The fine pass then visits only its
tile's list, so the cost follows the (pixel, face) pairs that matter, not
pixels × faces.

Nothing is ever dropped: the list buffer grows to whatever the count pass asks
for.  "Dense" rendering is the same code with one tile per view (T = S).
"""
import numpy as np
import taichi as ti

from .project import Z_MIN


@ti.func
def pixel_span(lo, hi, S):
    """Pixel indices whose centres (2i + 1 − S)/S lie in [lo, hi]; empty when i0 > i1."""
    i0 = ti.math.clamp(ti.ceil((lo * S + S - 1.0) * 0.5), 0.0, S * 1.0)
    i1 = ti.math.clamp(ti.floor((hi * S + S - 1.0) * 0.5), -1.0, S - 1.0)
    return ti.cast(i0, ti.i32), ti.cast(i1, ti.i32)


@ti.kernel
def face_tiles(proj: ti.template(), faces: ti.template(), rect: ti.template(),
               tile_count: ti.template(), radius: float, S: ti.i32, T: ti.i32,
               N: ti.i32, F: ti.i32):
    """rect[n, j] = tile range (tx0, ty0, tx1, ty1) of face j in view n; count faces per tile."""
    TX = (S + T - 1) // T
    for n, j in ti.ndrange(N, F):
        f = faces[j]
        a, b, c = proj[n, f[0]], proj[n, f[1]], proj[n, f[2]]
        r = ti.Vector([1, 1, 0, 0])  # empty
        if ti.min(a[2], ti.min(b[2], c[2])) > Z_MIN:
            c0, c1 = pixel_span(ti.min(a[0], b[0], c[0]) - radius, ti.max(a[0], b[0], c[0]) + radius, S)
            # rows run downwards: row i has y = (S − 1 − 2i)/S, i.e. the span of −y
            r0, r1 = pixel_span(-ti.max(a[1], b[1], c[1]) - radius, -ti.min(a[1], b[1], c[1]) + radius, S)
            if c0 <= c1 and r0 <= r1:
                r = ti.Vector([c0 // T, r0 // T, c1 // T, r1 // T])
        rect[n, j] = r
        for ty in range(r[1], r[3] + 1):
            for tx in range(r[0], r[2] + 1):
                ti.atomic_add(tile_count[(n * TX + ty) * TX + tx], 1)


@ti.kernel
def fill_tiles(rect: ti.template(), tile_offset: ti.template(), tile_fill: ti.template(),
               tile_faces: ti.template(), S: ti.i32, T: ti.i32, N: ti.i32, F: ti.i32):
    TX = (S + T - 1) // T
    for n, j in ti.ndrange(N, F):
        r = rect[n, j]
        for ty in range(r[1], r[3] + 1):
            for tx in range(r[0], r[2] + 1):
                t = (n * TX + ty) * TX + tx
                tile_faces[tile_offset[t] + ti.atomic_add(tile_fill[t], 1)] = j


class Bins:
    """Per-view tile lists: faces of tile t are tile_faces[tile_offset[t] : tile_offset[t] + tile_count[t]]."""

    # Above this many (tile, face) entries we fall back to one tile per view, whose
    # lists hold each face once: memory stays O(views × faces) whatever σ is.
    MAX_ENTRIES = 1 << 25

    def __init__(self, N, F, S, tile):
        self.N, self.F, self.S, self.tile = N, F, S, min(tile, S)
        tiles = N * (-(-S // self.tile)) ** 2
        self.rect = ti.Vector.field(4, ti.i32, shape=(N, F))
        self.tile_count = ti.field(ti.i32, shape=tiles)
        self.tile_offset = ti.field(ti.i32, shape=tiles)
        self.tile_faces = ti.field(ti.i32, shape=max(2 * N * F, 1024))
        self.T = self.tile  # tile size used by the last build (S after a fallback)
        self.entries = 0

    def build(self, proj, faces, radius):
        ti.ad.no_grad(self._build)(proj, faces, radius)

    def _build(self, proj, faces, radius):
        for T in (self.tile, self.S):
            self.T = T
            self.tile_count.fill(0)
            face_tiles(proj, faces, self.rect, self.tile_count, radius, self.S, T, self.N, self.F)
            counts = self.tile_count.to_numpy()
            self.entries = int(counts.sum(dtype=np.int64))
            if self.entries <= self.MAX_ENTRIES:
                break
        if self.entries > self.tile_faces.shape[0]:
            self.tile_faces = ti.field(ti.i32, shape=int(self.entries * 1.5))
        offsets = np.zeros_like(counts)
        np.cumsum(counts[:-1], out=offsets[1:])
        self.tile_offset.from_numpy(offsets)
        self.tile_count.fill(0)  # reused as the fill cursor; ends equal to the counts again
        fill_tiles(self.rect, self.tile_offset, self.tile_count, self.tile_faces, self.S, self.T, self.N, self.F)

    def stats(self):
        counts = self.tile_count.to_numpy()
        TX = -(-self.S // self.T)
        counts = counts[: self.N * TX * TX]
        return {"tile": self.T, "entries": self.entries, "max_per_tile": int(counts.max(initial=0)),
                "mean_per_tile": float(counts.mean()) if counts.size else 0.0}
