"""Tile binning changes the cost, never the result: binned (T×T tiles) == dense (tile = S).

Dense rendering (one tile per view, every face of the view tested at every pixel) and
binned rendering evaluate the same (pixel, face) pairs with the same float32 code; only
the order of the sums differs.  So images agree to float32 rounding (1e-5 absolute) and
vertex / colour gradients to 1e-4 of their largest magnitude.

Cases that stress the binning: faces whose vertices and edges lie exactly on tile
borders (with a culling radius of exactly half a pixel, the distance from a border to
the next pixel centre), a face covering the whole screen, 3000 faces in one tile, views
where most faces are off screen or behind the camera, a mesh crossing the camera plane,
σ = 1 (culling radius larger than the screen), and the fallback to one tile per view
when the lists would exceed `Bins.MAX_ENTRIES`.  The last tests repeat the image
equality on Vulkan (skipped with the reason when it is unavailable).
"""
import math

import numpy as np
import pytest

from vulkan_required import no_vulkan  # noqa: E402

sr = pytest.importorskip("softras_taichi")

LN = math.log(1.0 / 1e-4 - 1.0)  # σ ln(1/dist_eps − 1) is the culling threshold on d²


@pytest.fixture(scope="module", autouse=True)
def cpu_f32():
    sr.init("cpu", verbose=False)
    yield


# ------------------------------------------------------------------ helpers
def _mesh(v, f, seed=0):
    v, f = np.asarray(v, np.float64), np.asarray(f, np.int64)
    c = np.random.default_rng(seed).uniform(0.05, 0.95, v.shape)
    return sr.Mesh(v, f, c)


def _merge(*meshes):
    vs, fs, cs, n = [], [], [], 0
    for m in meshes:
        vs.append(m.vertices)
        fs.append(m.faces + n)
        cs.append(m.colors)
        n += m.num_vertices
    return sr.Mesh(np.concatenate(vs), np.concatenate(fs), np.concatenate(cs))


def _bins(renderer, mesh, cam):
    """Binning stats of rendering mesh with cam (reusing the forward of an identical call)."""
    return renderer.pair_stats(mesh, cam)


def _close_grads(name, a, b, rtol=1e-4):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(b)), f"{name}: non-finite gradient"
    scale = float(np.abs(b).max())
    err = float(np.abs(a - b).max())
    assert err <= rtol * scale + 1e-12, (
        f"{name} gradient: binned vs dense max error {err:.3g} = {err / max(scale, 1e-30):.3g} "
        f"of max |grad| {scale:.3g} (allowed {rtol:g})")
    return err, scale


def check_binned_equals_dense(mesh, cam, size, tile, grads=True, expect_tile=None, seed=1,
                              min_alpha=0.5, **kw):
    """Render with tiles and densely; compare images and vertex/colour gradients."""
    rb = sr.SoftRenderer(image_size=size, tile=tile, **kw)
    rd = sr.SoftRenderer(image_size=size, tile=size, **kw)
    ib, idn = rb.render(mesh, cam), rd.render(mesh, cam)
    assert np.all(np.isfinite(ib)) and np.all(np.isfinite(idn)), "non-finite pixels"
    assert idn[..., 3].max() >= min_alpha, "test scene is empty: nothing to compare"
    err = float(np.abs(ib.astype(np.float64) - idn).max())
    assert err <= 1e-5, f"image: binned (tile {tile}) vs dense max |diff| {err:.3g} > 1e-5"
    stats_b, stats_d = _bins(rb, mesh, cam), _bins(rd, mesh, cam)
    want = tile if expect_tile is None else expect_tile
    if want == "auto":
        assert stats_b["tile"] < size, f"tile='auto' chose one tile per view: {stats_b}"
    else:
        # a forced side is the tiles' height; on the CPU their width is rounded up to a multiple
        # of 8 (a thread's row of pixels shares one list)
        row = sr.soft.LANES if sr.backend.layout() == "cpu" else 1
        assert (stats_b["tile"], stats_b["tile_rows"]) == (min(-(-want // row) * row, size), want), (
            f"binned render used {stats_b['tile']} x {stats_b['tile_rows']} tiles, expected height {want}")
    assert stats_d["tile"] == size, f"dense render used tile {stats_d['tile']}, expected {size}"
    out = dict(image=ib, dense=idn, stats=stats_b, dense_stats=stats_d, rb=rb, rd=rd)
    if grads:
        g = np.random.default_rng(seed).normal(size=ib.shape).astype(np.float32)
        gb, gd = rb.grads(mesh, cam, g), rd.grads(mesh, cam, g)
        for k in ("vertices", "colors"):
            _close_grads(k, gb[k], gd[k])
        assert np.abs(gd["vertices"]).max() > 0, "vertex gradient is zero: nothing was compared"
        out.update(grads=gb, dense_grads=gd)
    return out


def _ico(level, radius, offset=(0, 0, 0), seed=0):
    m = sr.icosphere(level, radius)
    return _mesh(m.vertices + np.asarray(offset, np.float64), m.faces, seed)


# ------------------------------------------------------------------ the cases
SPHERE_CAMS = dict(distance=2.732, elevation=[30.0, -20.0, 90.0], azimuth=[45.0, 200.0, 0.0])


def _sphere():
    return _ico(2, 0.9, seed=1), sr.Camera.look_at(**SPHERE_CAMS)


@pytest.mark.parametrize("tile, autodiff", [(4, False), (8, False), ("auto", False), (4, True)],
                         ids=["tile4", "tile8", "auto", "tile4-autodiff"])
def test_sphere_three_views(tile, autodiff):
    """autodiff=True: aggregate.py's kernels differentiated by Taichi instead of soft.py's backward."""
    mesh, cam = _sphere()
    out = check_binned_equals_dense(mesh, cam, 32, tile, autodiff=autodiff)
    assert out["stats"]["entries"] > 0


def _border_lattice(S, T):
    """Triangles whose vertices and edges lie exactly on tile borders (NDC multiples of 2T/S − 1).

    Camera: distance 2, el = az = 0, viewing_angle 45° (tan = 1 in float32), so a vertex
    (x, y, z) projects to (x, y)/(2 − z) exactly for these dyadic numbers."""
    step = 2.0 * T / S
    ticks = np.arange(-1.0, 1.0 + 1e-9, step)
    v, f = [], []

    def tri(p, q, r, z):
        zc = 2.0 - z
        base = len(v)
        v.extend([(p[0] * zc, p[1] * zc, z), (q[0] * zc, q[1] * zc, z), (r[0] * zc, r[1] * zc, z)])
        f.append((base, base + 1, base + 2))

    n = len(ticks) - 1
    for i in range(n):
        for j in range(n):
            x0, x1, y0, y1 = ticks[i], ticks[i + 1], ticks[j], ticks[j + 1]
            if (i + j) % 2 == 0:  # checkerboard of tile-sized cells, two triangles each, z = 0
                tri((x0, y0), (x1, y0), (x1, y1), 0.0)
                tri((x0, y0), (x1, y1), (x0, y1), 0.0)
            else:  # the other cells: one triangle further back (z' = 4)
                tri((x0, y0), (x1, y0), (x0, y1), -2.0)
    # larger faces spanning several tiles, corners on tile corners, in front (z' = 1.5)
    tri((ticks[1], ticks[1]), (ticks[-2], ticks[1]), (ticks[n // 2], ticks[-2]), 0.5)
    # slivers lying along tile borders (one edge on the border, width a tenth of a pixel)
    w = 0.1 * 2.0 / S
    for b in ticks[1:-1]:
        tri((b, -0.9), (b, 0.9), (b + w, 0.0), 1.0)
        tri((-0.9, b), (0.9, b), (0.0, b - w), 1.0)
    return _mesh(v, f, seed=3)


@pytest.mark.parametrize("sigma_kind", ["default", "half-pixel", "just-over-half-pixel",
                                        "1.5x-half-pixel", "3e-3"])
def test_faces_on_tile_borders(sigma_kind):
    S, T = 32, 8
    half = (1.0 / S) ** 2  # d² from a tile border to the nearest pixel centre across it
    # "half-pixel": the culling distance is exactly border -> next pixel centre (culled, d² = thr);
    # "just-over": that pixel centre is 0.1% inside it, so the binning must reach across
    sigma = {"default": 1e-4, "half-pixel": half / LN, "just-over-half-pixel": 1.002 * half / LN,
             "1.5x-half-pixel": 1.5 * half / LN, "3e-3": 3e-3}[sigma_kind]
    mesh = _border_lattice(S, 4)  # 4-pixel lattice: its lines include every 8-pixel tile border
    cam = sr.Camera.look_at(2.0, 0.0, 0.0, viewing_angle=45.0)
    out = check_binned_equals_dense(mesh, cam, S, T, sigma=sigma, gamma=1e-3)
    # the vertices really land on the borders
    proj = out["rb"].scene(mesh, cam).proj.to_numpy()[0, :, :2].astype(np.float64)
    on_lattice = np.abs(proj * S / 8.0 - np.round(proj * S / 8.0)) < 1e-6
    assert on_lattice.mean() > 0.8, "lattice vertices do not project onto tile borders"


def test_face_covering_whole_screen():
    big = _mesh([(-40.0, -40.0, 0.0), (40.0, -40.0, 0.0), (0.0, 60.0, 0.0)], [(0, 1, 2)], seed=5)
    mesh = _merge(big, _ico(1, 0.5, offset=(0.1, 0.0, 0.8), seed=6))
    cam = sr.Camera.look_at(2.732, 0.0, 0.0)
    out = check_binned_equals_dense(mesh, cam, 32, 8, gamma=1e-2)
    assert out["dense"][..., 3].min() > 0.99, "the big triangle should cover every pixel"
    assert out["stats"]["max_per_tile"] >= 1 and out["stats"]["mean_per_tile"] >= 1.0


def test_thousands_of_faces_in_one_tile():
    """3000 tiny triangles within a few pixels of the centre of one 8×8 tile."""
    rng = np.random.default_rng(11)
    n, S = 3000, 32
    centre = np.array([-0.25, 0.25])  # middle of the tile of columns 8-15, rows 8-15
    c = centre + rng.uniform(-0.06, 0.06, (n, 2))  # about ±1 pixel (a pixel is 0.0625)
    off = rng.uniform(-0.025, 0.025, (n, 3, 2))
    z = rng.uniform(-0.3, 0.3, n)
    ndc = c[:, None, :] + off
    zc = (2.0 - z)[:, None]
    v = np.concatenate([ndc * zc[..., None], np.broadcast_to(z[:, None, None], (n, 3, 1))], axis=2)
    mesh = _mesh(v.reshape(-1, 3), np.arange(3 * n).reshape(n, 3), seed=12)
    cam = sr.Camera.look_at(2.0, 0.0, 0.0, viewing_angle=45.0)
    out = check_binned_equals_dense(mesh, cam, S, 8, gamma=1e-3, min_alpha=0.9)
    assert out["stats"]["max_per_tile"] >= n, f"expected all {n} faces in one tile: {out['stats']}"


def test_most_faces_culled():
    """A sphere mostly off screen, one around the camera, one behind it; four views."""
    mesh = _merge(_ico(3, 1.0, offset=(2.2, 0.0, 0.0), seed=7),   # eye of az=90 is inside it
                  _ico(2, 0.5, offset=(0.0, 0.0, 6.0), seed=8),   # behind the az=0 camera
                  _ico(1, 0.3, offset=(-1.0, 0.0, 0.0), seed=9))
    cam = sr.Camera.look_at(2.732, [0.0, 0.0, 0.0, 60.0, 90.0], [0.0, 90.0, 180.0, 30.0, 0.0])
    out = check_binned_equals_dense(mesh, cam, 32, 8, sigma=3e-4, gamma=1e-2)
    assert out["dense_stats"]["entries"] < 0.8 * mesh.num_faces * len(cam), "most faces should be culled"


def test_mesh_partly_behind_camera():
    """A floor crossing the camera plane (some vertices just in front of it) and a sphere."""
    xs, zs = np.linspace(-3.0, 3.0, 9), np.linspace(-6.0, 6.0, 17)
    zs = np.sort(np.concatenate([zs, [2.6, 2.69, 2.7, 2.8]]))  # rows next to the camera plane
    X, Z = np.meshgrid(xs, zs, indexing="ij")
    v = np.stack([X.ravel(), np.full(X.size, -0.6), Z.ravel()], 1)
    nz = len(zs)
    f = []
    for i in range(len(xs) - 1):
        for j in range(nz - 1):
            a, b, c, d = i * nz + j, (i + 1) * nz + j, (i + 1) * nz + j + 1, i * nz + j + 1
            f += [(a, b, c), (a, c, d)]
    mesh = _merge(_mesh(v, f, seed=10), _ico(2, 0.5, seed=11))
    cam = sr.Camera.look_at(2.732, [5.0, 25.0], [0.0, 10.0])
    check_binned_equals_dense(mesh, cam, 32, 4, sigma=3e-4, gamma=1e-2)


def test_sigma_one_covers_whole_screen():
    mesh, cam = _sphere()
    S, T = 32, 4
    assert math.sqrt(1.0 * LN) > 2.0 * math.sqrt(2.0)  # culling radius beyond the screen diagonal
    out = check_binned_equals_dense(mesh, cam, S, T, sigma=1.0, gamma=1e-2, min_alpha=0.1)
    st = out["stats"]
    tiles = len(cam) * (S // st["tile"]) * (S // st["tile_rows"])
    assert st["entries"] == mesh.num_faces * tiles, f"every face should be in every tile: {st}"
    assert st["max_per_tile"] == mesh.num_faces


# ------------------------------------------------------------------ the fallback
def test_fallback_to_one_tile_per_view(monkeypatch):
    mesh, cam = _sphere()
    S, T = 32, 4
    ref = check_binned_equals_dense(mesh, cam, S, T, gamma=1e-3)
    entries, dense_entries = ref["stats"]["entries"], ref["dense_stats"]["entries"]
    assert entries > dense_entries  # a face usually spans several tiles
    g = np.random.default_rng(1).normal(size=ref["image"].shape).astype(np.float32)
    Bins = sr.binning.Bins
    default_limit = Bins.MAX_ENTRIES

    # exactly at the limit: still binned
    monkeypatch.setattr(Bins, "MAX_ENTRIES", entries)
    rb = sr.SoftRenderer(image_size=S, tile=T, gamma=1e-3)
    img = rb.render(mesh, cam)
    assert _bins(rb, mesh, cam)["tile_rows"] == T
    assert np.abs(img - ref["image"]).max() <= 1e-5

    # one entry too many: coarser tiles (the tile side doubles until the lists fit, or
    # reaches one tile per view); the image must not change
    monkeypatch.setattr(Bins, "MAX_ENTRIES", entries - 1)
    rb = sr.SoftRenderer(image_size=S, tile=T, gamma=1e-3)
    img = rb.render(mesh, cam)
    st = _bins(rb, mesh, cam)
    assert st["tile_rows"] > T and (st["entries"] <= entries - 1 or st["tile_rows"] == S), (
        f"MAX_ENTRIES={entries - 1}: expected coarser tiles than {T} within the limit, got {st}")
    err = float(np.abs(img.astype(np.float64) - ref["image"]).max())
    assert err <= 1e-5, f"MAX_ENTRIES={entries - 1}: coarser-tile image differs by {err:.3g}"

    # a tiny limit no tiling can meet: one tile per view, and still nothing dropped
    for limit in (10, 0):
        monkeypatch.setattr(Bins, "MAX_ENTRIES", limit)
        rb = sr.SoftRenderer(image_size=S, tile=T, gamma=1e-3)
        img = rb.render(mesh, cam)
        st = _bins(rb, mesh, cam)
        assert st["tile"] == st["tile_rows"] == S, f"MAX_ENTRIES={limit}: expected the fallback to tile {S}, got {st}"
        # each visible face listed once per view, like the dense render
        assert st["entries"] == dense_entries, (
            f"MAX_ENTRIES={limit}: fallback lists {st['entries']} entries, dense lists {dense_entries}")
        assert st["max_per_tile"] == ref["dense_stats"]["max_per_tile"]
        err = float(np.abs(img.astype(np.float64) - ref["image"]).max())
        assert err <= 1e-5, f"MAX_ENTRIES={limit}: fallback image differs from the binned one by {err:.3g}"
        err = float(np.abs(img.astype(np.float64) - ref["dense"]).max())
        assert err <= 1e-5, f"MAX_ENTRIES={limit}: fallback image differs from the dense one by {err:.3g}"
    gr = rb.grads(mesh, cam, g)
    for k in ("vertices", "colors"):
        _close_grads(f"fallback {k}", gr[k], ref["dense_grads"][k])

    # limit restored: the same renderer bins again
    monkeypatch.setattr(Bins, "MAX_ENTRIES", default_limit)
    img = rb.render(mesh, cam)
    assert _bins(rb, mesh, cam)["tile_rows"] == T
    assert np.abs(img - ref["image"]).max() <= 1e-5


def test_hard_renderer_binned_equals_dense():
    """The z-buffer uses the same lists: its images must be identical too."""
    mesh = _merge(_border_lattice(32, 4), _ico(1, 0.3, offset=(0.2, 0.1, 0.5), seed=16))
    cam = sr.Camera.look_at(2.0, [0.0, 10.0], [0.0, -15.0], viewing_angle=45.0)
    a = sr.HardRenderer(image_size=32, tile=8).render(mesh, cam)
    b = sr.HardRenderer(image_size=32, tile=32).render(mesh, cam)
    assert b[..., 3].max() == 1.0
    err = float(np.abs(a.astype(np.float64) - b).max())
    assert err <= 1e-6, f"hard renderer: binned vs dense max |diff| {err:.3g}"


def test_pair_counts_match_numpy():
    """`pair_stats` counts the (pixel, face) pairs within the culling radius (the work the
    fine pass does, reported by the benchmark): it must agree with a NumPy count from
    tests/reference.py, binned and dense alike, and the tiles may only add visits."""
    import reference as ref
    mesh, S, sigma = _ico(2, 0.6, seed=5), 32, 3e-4
    eye, R = ref.look_at(2.5, 20.0, 30.0)
    proj = ref.project(mesh.vertices, eye, R)
    X, Y = ref.pixel_centres(S)
    thr = sigma * LN
    want, near_border = 0, 0
    for f in mesh.faces:
        p = proj[f, :2]
        w, _, _ = ref.barycentrics(p, X, Y)
        d2 = ref.edge_distance2(p, X, Y)
        want += int(np.count_nonzero((w > 0).all(axis=0) | (d2 < thr)))
        near_border += int(np.count_nonzero(np.abs(d2 - thr) < 1e-5 * thr))
    cam = sr.Camera.look_at(2.5, 20.0, 30.0)
    got = {}
    for tile in (4, S):
        scene = sr.SoftRenderer(image_size=S, sigma=sigma, tile=tile).scene(mesh, cam)
        scene.render()
        got[tile] = scene.pair_stats()
    assert got[4]["within"] == got[S]["within"] and got[4]["in_rect"] == got[S]["in_rect"], (
        f"binned and dense renders compute different pairs: {got}")
    st = got[4]
    assert st["within"] <= st["in_rect"] <= st["listed"] <= got[S]["listed"], st
    assert abs(st["within"] - want) <= near_border, (
        f"pairs within the culling radius: {st['within']} counted by the renderer, {want} by NumPy "
        f"(float32 may flip the {near_border} pairs within 1e-5 of the threshold)")


# ------------------------------------------------------------------ Vulkan (keep last)
@pytest.fixture(scope="module")
def vulkan():
    try:
        arch = sr.init("vulkan", verbose=False)
    except Exception as exc:  # no Vulkan loader / device
        sr.init("cpu", verbose=False)
        no_vulkan(f"Vulkan unavailable: sr.init('vulkan') raised {type(exc).__name__}: {exc}")
    if arch != "vulkan":
        sr.init("cpu", verbose=False)
        no_vulkan(f"Vulkan unavailable: sr.init('vulkan') gave {arch!r}")
    yield arch
    sr.init("cpu", verbose=False)


def _vulkan_cases():
    return {
        "sphere-2-views": (lambda: _ico(1, 0.8, seed=17),
                           lambda: sr.Camera.look_at(2.732, [30.0, -40.0], [45.0, 210.0]), 16, 4, {}),
        "tile-borders": (lambda: _border_lattice(16, 4),
                         lambda: sr.Camera.look_at(2.0, 0.0, 0.0, viewing_angle=45.0), 16, 4,
                         dict(sigma=1.5 * (1.0 / 16) ** 2 / LN, gamma=1e-3)),
    }


@pytest.mark.parametrize("case", list(_vulkan_cases()))
def test_vulkan_binned_equals_dense(vulkan, case):
    make_mesh, make_cam, S, T, kw = _vulkan_cases()[case]
    check_binned_equals_dense(make_mesh(), make_cam(), S, T, grads=False, min_alpha=0.3, **kw)


def test_every_list_is_in_face_order():
    """Binning's ranks come from atomics; `order` sorts each tile's list by face, so the
    lists (and the rounding of every sum over them) are the same on every run and backend."""
    mesh, cam = _ico(3, 0.9, seed=2), sr.Camera.look_at(**SPHERE_CAMS)
    scene = sr.SoftRenderer(image_size=48, sigma=3e-4, tile=4).scene(mesh, cam)
    scene.render()
    b = scene._rendered().bins
    offset, count, faces = (a.to_numpy() for a in b.lists())
    assert count.max() > 8  # long enough lists that unsorted atomics would show
    for t in np.flatnonzero(count):
        seg = faces[offset[t]:offset[t] + count[t]]
        assert np.all(np.diff(seg) > 0), (t, seg)
    first = faces[:offset[-1]].copy()
    scene.render()
    assert np.array_equal(scene._rendered().bins.lists()[2].to_numpy()[:offset[-1]], first)
