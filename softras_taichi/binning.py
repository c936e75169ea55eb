"""Stage 3: which faces can touch which pixels (no gradient).

A face only reaches pixels within its culling radius  r = sqrt(σ · ln(1/dist_eps − 1))
(beyond it D ≤ dist_eps and docs/math.md drops the pair).  We cut every view into T×T
pixel tiles and list, per tile, the faces whose r-expanded bounding box overlaps
it: a count pass, a prefix sum, a fill pass.  The fine pass then visits only its
tile's list, so the cost follows the (pixel, face) pairs that matter, not
pixels × faces.

Nothing is ever dropped: the list buffer grows to whatever the count pass asks
for.  "Dense" rendering is the same code with one tile per view (T = S).  Tiles may be wider
than high (T × H pixels): the CPU's soft pass wants rows of 8 pixels (soft.py).

Everything here is an ndarray of the workspace (compiled once whatever its size), and
the passes are three kernels (`measure`, `count_entries`, `make_lists`).  The prefix
sums run on the device in one thread (`scan_step`): on the CPU that costs less than a
round trip to NumPy; the host reads back only the sums that choose the tile side and
size the entry lists.

Integer atomics run one thread per list entry, never inside a loop: an integer
atomic inside a loop whose length differs between threads loses updates on
Vulkan (seen on lavapipe).
"""
import numpy as np
import taichi as ti

from .probability import face_at_pixel, pixel_centre
from .project import Z_MIN


@ti.func
def pixel_span(lo, hi, S):
    """Pixel indices whose centres (2i + 1 − S)/S lie in [lo, hi]; empty when i0 > i1."""
    i0 = ti.math.clamp(ti.ceil((lo * S + S - 1.0) * 0.5), 0.0, S * 1.0)
    i1 = ti.math.clamp(ti.floor((hi * S + S - 1.0) * 0.5), -1.0, S - 1.0)
    return ti.cast(i0, ti.i32), ti.cast(i1, ti.i32)


@ti.func
def corners(proj, faces, n, j, V):
    """Face j's vertex ids and projected corners (x_ndc, y_ndc, z') in view n."""
    f = faces[j]
    return f, proj[n * V + f[0]], proj[n * V + f[1]], proj[n * V + f[2]]


@ti.func
def face_rect(proj, faces, n, j, radius, S, V):
    """Pixel rectangle (c0, r0, c1, r1) reached by face j in view n; c0 > c1 when none.

    A face with a vertex at or behind the camera plane (z' ≤ Z_MIN) is not drawn."""
    _, a, b, c = corners(proj, faces, n, j, V)
    r = ti.Vector([1, 1, 0, 0])
    if ti.min(a[2], b[2], c[2]) > Z_MIN:
        c0, c1 = pixel_span(ti.min(a[0], b[0], c[0]) - radius, ti.max(a[0], b[0], c[0]) + radius, S)
        # rows run downwards: row i has y = (S − 1 − 2i)/S, i.e. the span of −y
        r0, r1 = pixel_span(-ti.max(a[1], b[1], c[1]) - radius, -ti.min(a[1], b[1], c[1]) + radius, S)
        if (c0 <= c1) & (r0 <= r1):
            r = ti.Vector([c0, r0, c1, r1])
    return r


@ti.func
def tile_range(bins_offset: ti.template(), bins_count: ti.template(), n, y, x, S, T, H):
    """(start, length) of the face list of the tile holding pixel (row y, column x) of view n;
    tiles are T pixels wide and H high."""
    TX, TY = (S + T - 1) // T, (S + H - 1) // H
    t = (n * TY + y // H) * TX + x // T
    return bins_offset[t], bins_count[t]


@ti.func
def in_rect(x, y, r):
    """Pixel (row y, column x) lies in the rectangle r = (c0, r0, c1, r1) of face_rect."""
    return (x >= r[0]) & (x <= r[2]) & (y >= r[1]) & (y <= r[3])


@ti.kernel
def measure(proj: ti.template(), faces: ti.template(), rect: ti.types.ndarray(), extent_sum: ti.template(),
            drawn: ti.template(), sums: ti.types.ndarray(), radius: float, S: ti.i32, N: ti.i32, F: ti.i32,
            V: ti.i32):
    """rect[n, j] = face_rect;  sums = (Σ extent in pixels, the number of faces drawn)."""
    for n, j in ti.ndrange(N, F):
        r = face_rect(proj, faces, n, j, radius, S, V)
        rect[n, j] = r
        # unconditional sums into 0-D fields: Taichi keeps them per thread (one atomic each)
        visible = r[0] <= r[2]
        extent_sum[None] += ti.select(visible, ti.max(r[2] - r[0], r[3] - r[1]) + 1, 0)
        drawn[None] += ti.select(visible, 1, 0)
    for _ in range(1):
        sums[0], sums[1] = extent_sum[None], drawn[None]
        extent_sum[None], drawn[None] = 0, 0  # ready for the next measure


@ti.func
def scan_step(count: ti.template(), start: ti.template(), i, n, total: ti.template()):
    """One step of a serial exclusive prefix sum: start[i] = Σ_{k<i} count[k], total[0] = start[n]."""
    s = 0
    if i > 0:
        s = start[i - 1] + count[i - 1]
    start[i] = s
    if i == n:
        total[0] = s


# Binning is three kernels, each a few parallel loops (a serial one for each prefix sum, which
# on the CPU costs less than a round trip to NumPy), because on the CPU every kernel costs
# about a tenth of a second to compile however small it is (docs/architecture.md, "Compile
# once"); the host reads back only what it must decide on: the mean extent (the tile side)
# and the number of entries (the size of the lists).
@ti.kernel
def count_entries(rect: ti.types.ndarray(), ntiles: ti.types.ndarray(), face_start: ti.types.ndarray(),
                  total: ti.types.ndarray(), T: ti.i32, H: ti.i32, N: ti.i32, F: ti.i32):
    """ntiles[i] = the tiles face i = n·F + j overlaps; face_start = their exclusive prefix sum."""
    for n, j in ti.ndrange(N, F):
        r = rect[n, j]
        ntiles[n * F + j] = ti.select(r[0] <= r[2], (r[2] // T - r[0] // T + 1) * (r[3] // H - r[1] // H + 1), 0)
    ti.loop_config(serialize=True)
    for i in range(N * F + 1):
        scan_step(ntiles, face_start, i, N * F, total)


@ti.kernel
def make_lists(rect: ti.types.ndarray(), face_start: ti.types.ndarray(), entry_tile: ti.types.ndarray(),
               entry_face: ti.types.ndarray(), entry_rank: ti.types.ndarray(), tile_count: ti.types.ndarray(),
               tile_offset: ti.types.ndarray(), tile_faces: ti.types.ndarray(), total: ti.types.ndarray(),
               T: ti.i32, H: ti.i32, TX: ti.i32, TY: ti.i32, N: ti.i32, F: ti.i32, E: ti.i32):
    """The tile lists from face_start: expand, count, prefix sum, fill, order."""
    n_tiles = N * TX * TY
    for t in range(n_tiles):
        tile_count[t] = 0
    # expand: entries face_start[i] … face_start[i + 1] − 1 are the tiles of face i (plain stores)
    for n, j in ti.ndrange(N, F):
        e = face_start[n * F + j]
        if e < face_start[n * F + j + 1]:
            r = rect[n, j]
            for ty in range(r[1] // H, r[3] // H + 1):
                for tx in range(r[0] // T, r[2] // T + 1):
                    entry_tile[e] = (n * TY + ty) * TX + tx
                    entry_face[e] = j
                    e += 1
    # count: tile_count[t] = entries of tile t; entry_rank[e] = the place of entry e among them
    # (one thread per entry: see the module's note on integer atomics)
    for e in range(E):
        entry_rank[e] = ti.atomic_add(tile_count[entry_tile[e]], 1)
    ti.loop_config(serialize=True)
    for t in range(n_tiles + 1):
        scan_step(tile_count, tile_offset, t, n_tiles, total)
    for e in range(E):
        tile_faces[tile_offset[entry_tile[e]] + entry_rank[e]] = entry_face[e]
    # order: each tile's list in increasing face order (insertion sort of its segment).  The
    # ranks come from atomics, so without this the order of a list (and with it the rounding
    # of every sum over it) could change from one run to the next.
    for t in range(n_tiles):
        a = tile_offset[t]
        for i in range(1, tile_count[t]):
            f = tile_faces[a + i]
            k = i
            while k > 0:  # no `and`: Taichi evaluates both sides, and a + k - 1 may be -1
                g = tile_faces[a + k - 1]
                if g <= f:
                    break
                tile_faces[a + k] = g
                k -= 1
            tile_faces[a + k] = f


@ti.kernel
def count_pairs(proj: ti.template(), faces: ti.template(), rect: ti.types.ndarray(),
                tile_offset: ti.types.ndarray(), tile_count: ti.types.ndarray(),
                tile_faces: ti.types.ndarray(), counts: ti.types.ndarray(), thr: float,
                N: ti.i32, S: ti.i32, T: ti.i32, H: ti.i32, V: ti.i32):
    """counts = (pairs in the tile lists, pairs inside a face's rectangle, pairs within the
    culling radius): what the fine pass visits, tests and computes."""
    for n, y, x in ti.ndrange(N, S, S):
        start, listed = tile_range(tile_offset, tile_count, n, y, x, S, T, H)
        tested, within = 0, 0
        for k in range(listed):
            j = tile_faces[start + k]
            if in_rect(x, y, rect[n, j]):
                tested += 1
                _, _, _, _, _, inside, d2 = face_at_pixel(proj, faces, n, j, pixel_centre(x, y, S), V)
                within += ti.select(inside | (d2 < thr), 1, 0)
        ti.atomic_add(counts[0], ti.cast(listed, ti.i64))
        ti.atomic_add(counts[1], ti.cast(tested, ti.i64))
        ti.atomic_add(counts[2], ti.cast(within, ti.i64))


def auto_tile(mean_extent):
    """Tile side for faces whose reach spans `mean_extent` pixels on average.

    Smaller tiles mean fewer wasted (pixel, face) tests but longer lists; tiles
    about half a face across were fastest in benchmarks/benchmark.py."""
    t = 1
    while t * 4 <= mean_extent and t < 16:
        t *= 2
    return t


class Bins:
    """Per-view tile lists (ndarrays of the workspace): tiles are T pixels wide and H high,
    TX × TY per view, and the faces of tile t are
    tile_faces[tile_offset[t] : tile_offset[t] + tile_count[t]], t = (n·TY + ty)·TX + tx."""

    # Above this many (tile, face) entries we double the tile, up to one tile per view,
    # whose lists hold each face once: memory stays O(views × faces).
    MAX_ENTRIES = 1 << 25

    def __init__(self, ws):
        self.ws = ws
        self.N = self.F = self.S = 0
        self.T, self.H, self.TX, self.TY, self.entries = 1, 1, 1, 1, 0

    def build(self, proj, faces, radius, N, F, S, V, tile="auto", heuristic=auto_tile, row=1):
        """`tile`: "auto" asks `heuristic(mean extent)` for a side or a (width, height); an int
        forces tiles of that side.  Widths are rounded up to a multiple of `row` (the CPU's
        soft pass gives a thread a row of 8 pixels, which must share one list)."""
        ws = self.ws
        self.N, self.F, self.S, self.V = N, F, S, V
        self.rect = ws.ndarray("rect", ti.types.vector(4, ti.i32), (N, F))
        sums = np.zeros(2, dtype=np.int32)
        measure(proj, faces, self.rect, ws.extent_sum, ws.drawn, sums, radius, S, N, F, V)
        shape = tile if tile != "auto" else heuristic(sums[0] / max(sums[1], 1))
        T, H = (shape, shape) if np.isscalar(shape) else shape
        T, H = min(-(-int(T) // row) * row, S), min(int(H), S)
        ntiles = ws.ndarray("ntiles", ti.i32, (N * F,))
        self.face_start = ws.ndarray("face_start", ti.i32, (N * F + 1,))
        total = np.zeros(1, dtype=np.int32)
        while True:
            count_entries(self.rect, ntiles, self.face_start, total, T, H, N, F)
            E = int(total[0])
            if E <= self.MAX_ENTRIES or (T >= S and H >= S):
                break
            T, H = min(2 * T, S), min(2 * H, S)
        TX, TY = -(-S // T), -(-S // H)
        self.T, self.H, self.TX, self.TY, self.entries = T, H, TX, TY, E
        entry_tile, entry_rank, entry_face, self.tile_faces = ws.entries(E)
        self.tile_count = ws.ndarray("tile_count", ti.i32, (N * TX * TY,))
        self.tile_offset = ws.ndarray("tile_offset", ti.i32, (N * TX * TY + 1,))
        make_lists(self.rect, self.face_start, entry_tile, entry_face, entry_rank, self.tile_count,
                   self.tile_offset, self.tile_faces, total, T, H, TX, TY, N, F, E)

    def lists(self):
        """(tile_offset, tile_count, tile_faces): what every fine pass reads."""
        return self.tile_offset, self.tile_count, self.tile_faces

    def stats(self, proj=None, faces=None, thr=None):
        """Tile width ("tile"), height ("tile_rows") and list sizes; with the projected mesh and
        the culling d² also the (pixel, face) pairs: listed (visited), in_rect (tested), within
        (computed)."""
        counts = self.tile_count.to_numpy()
        out = {"tile": self.T, "tile_rows": self.H, "entries": self.entries,
               "max_per_tile": int(counts.max(initial=0)),
               "mean_per_tile": float(counts.mean()) if counts.size else 0.0}
        if proj is not None:
            pairs = np.zeros(3, dtype=np.int64)
            count_pairs(proj, faces, self.rect, self.tile_offset, self.tile_count, self.tile_faces,
                        pairs, thr, self.N, self.S, self.T, self.H, self.V)
            out.update(zip(("listed", "in_rect", "within"), (int(v) for v in pairs)))
        return out
