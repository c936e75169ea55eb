"""How the CPU cuts its loops (softras_taichi/loops.py) changes the speed, never the result.

On the CPU backend the small (view, face) kernels (binning.measure, tiles_per_face,
expand, soft.setup) and soft.forward run C consecutive faces or pixels per parallel index
(loops.chunk), binning.tile_of divides by the tile side with a shift when it is a power of
two, and binning.expand also ranks the entries (its `ranks`: what `count` does
elsewhere).  Here C = 1 (what a GPU runs), 7 (a partial run at the end of every view and
row) and 32, each with the ranks from expand or from count, at tile sides 4 (a shift), 6
(a division, partial tiles) and auto.  The tile lists must be identical to C = 1 with
count's ranks, the images bitwise equal (every pixel sums the same list in the same
order) and the gradients equal to float32 rounding (the backward's atomics add in
another order).  The scenes are small, so without forcing C the default would be 1
(loops.chunk keeps at least MIN_INDICES indices) and nothing would be tested.
"""
import numpy as np
import pytest

sr = pytest.importorskip("softras_taichi")
from softras_taichi import binning, loops, workspace  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def cpu_f32():
    sr.init("cpu", verbose=False)
    yield


def _scene():
    m = sr.icosphere(3, 0.8)
    c = np.random.default_rng(3).uniform(0.1, 0.9, m.vertices.shape)
    # one view sees the sphere partly off screen
    cam = sr.Camera.look_at(distance=[2.7, 2.7, 1.9], elevation=[30.0, -10.0, 5.0], azimuth=[45.0, 160.0, 20.0])
    return sr.Mesh(m.vertices, m.faces, c), cam


def _run(monkeypatch, renderer, mesh, cam, C, ranks_in_expand):
    monkeypatch.setattr(loops, "chunk", lambda n: C)
    monkeypatch.setattr(loops, "on_cpu", lambda: ranks_in_expand)
    img = renderer.render(mesh, cam)
    b = workspace._pool[0].bins
    offset, count, faces = (a.to_numpy() for a in b.lists())
    lists = (b.T, offset.copy(), count.copy(), faces[:offset[-1]].copy())
    g = np.random.default_rng(5).normal(size=img.shape).astype(np.float32)
    grads = renderer.grads(mesh, cam, g)
    return img, lists, grads


@pytest.mark.parametrize("kind", ["soft", "silhouette"])
@pytest.mark.parametrize("tile", [4, 6, "auto"])
def test_loop_cuts_give_the_same_lists_images_and_gradients(monkeypatch, kind, tile):
    assert loops.chunk(1 << 20) == loops.MAX_RUN > 1  # the CPU backend does cut its loops
    mesh, cam = _scene()
    R = sr.SoftRenderer if kind == "soft" else sr.SilhouetteRenderer
    r = R(image_size=45, tile=tile)
    img0, lists0, grads0 = _run(monkeypatch, r, mesh, cam, 1, False)
    assert lists0[2].max() > 4 and lists0[0] < 45, lists0[0]
    for C in (1, 7, 32):
        for ranks_in_expand in (False, True):
            if (C, ranks_in_expand) == (1, False):
                continue
            img, lists, grads = _run(monkeypatch, r, mesh, cam, C, ranks_in_expand)
            what = f"C={C}, ranks {'in expand' if ranks_in_expand else 'by count'}"
            assert lists[0] == lists0[0], what
            for name, a, b in zip(("offset", "count", "faces"), lists[1:], lists0[1:]):
                assert np.array_equal(a, b), f"{what}: tile {name} differ"
            assert np.array_equal(img, img0), f"{what}: image differs by {np.abs(img - img0).max():.3g}"
            scale = np.abs(grads0["vertices"]).max()
            assert scale > 0
            err = np.abs(grads["vertices"] - grads0["vertices"]).max()
            assert err <= 1e-5 * scale, f"{what}: vertex gradient differs by {err / scale:.3g} of its max"


def test_tile_of_divides():
    """binning.tile_of: x // T by a shift for powers of two, by a division otherwise."""
    import taichi as ti

    xs = np.arange(0, 300, dtype=np.int32)
    out = ti.ndarray(ti.i32, (len(xs),))

    @ti.kernel
    def run(out: ti.types.ndarray(), T: ti.i32, L: ti.i32, n: ti.i32):
        for x in range(n):
            out[x] = binning.tile_of(x, T, L)

    for T in (1, 2, 3, 4, 6, 8, 16, 17, 256):
        L = binning.tile_shift(T)
        assert (L >= 0) == (T & (T - 1) == 0)
        run(out, T, L, len(xs))
        assert np.array_equal(out.to_numpy(), xs // T), T
