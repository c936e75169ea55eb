"""The GPU layout of the soft pass (soft_tiles.py: one block per tile forward, one thread
per (tile, face) entry backward) on the CPU backend in float64, where it runs the same
loops without shared memory: it must equal Taichi's autodiff of aggregate.py (the oracle)
and the CPU layout (soft.py) to float64 rounding, images and every gradient, for tiles
of every shape the kernels handle (8 and 16 a side, tiles larger than a block, an image
smaller than a tile, image sides that are not multiples of the tile).

SOFTRAS_TEST_ARCH=cuda runs the same float64 checks on CUDA, where the forward stages
the set-up records in shared memory (benchmarks/gpu_check.sh; DEVELOPERS.md).

Also: sr.init's `layout` argument and "auto"'s choice of backend (monkeypatched, since
CI has no GPU); the Vulkan side of the GPU layout is tests/test_vulkan.py.
"""
import os

import numpy as np
import pytest

import softras_taichi as sr
from softras_taichi import backend, soft_tiles


def _meshes():
    rng = np.random.default_rng(5)
    ico = sr.icosphere(2, radius=0.7)
    ico = sr.Mesh(ico.vertices + 0.01 * rng.normal(size=ico.vertices.shape), ico.faces,
                  rng.uniform(size=ico.vertices.shape))
    # faces crossing the near plane and an edge-on face (as in test_soft_backward)
    awkward = sr.Mesh(
        np.array([[-0.5, -0.2, 0.0], [-0.5, 0.4, 0.0], [-0.5, 0.1, 0.5],
                  [-0.3, -0.3, 2.2], [0.4, -0.2, 0.5], [0.0, 0.5, 1.0],
                  [-0.6, -0.6, -0.5], [0.7, -0.5, -0.5], [0.0, 0.7, -0.5]]),
        np.arange(9).reshape(3, 3), rng.uniform(size=(9, 3)))
    return {"ico": ico, "spiky": sr.TARGETS["spiky"](), "awkward": awkward}


ARCH = os.environ.get("SOFTRAS_TEST_ARCH", "cpu")
MESHES = _meshes()
CAMS = sr.Camera.look_at(distance=[2.5, 2.0], elevation=[20, 90], azimuth=[30, 10])
KW = dict(sigma=3e-4, gamma=1e-3, background=(0.2, 0.3, 0.4))
# (mesh, image size, tile, renderer): tile "auto" is soft_tiles.gpu_tile's 8 here; 16 runs
# 256-thread blocks; 20 px leaves partial tiles; tile = size is dense (24 px: 576 pixels
# in three rounds of 256); 6 px is smaller than a tile
RUNS = [("ico", 20, "auto", "soft"), ("ico", 32, 16, "soft"), ("spiky", 24, 24, "soft"),
        ("awkward", 24, "auto", "soft"), ("ico", 6, 8, "soft"), ("ico", 20, "auto", "silhouette"),
        ("spiky", 24, 16, "silhouette")]
IDS = ["-".join(map(str, r)) for r in RUNS]


def _renderer(kind, size, tile, autodiff=False):
    if kind == "silhouette":
        return sr.SilhouetteRenderer(image_size=size, sigma=KW["sigma"], tile=tile)
    return sr.SoftRenderer(image_size=size, tile=tile, autodiff=autodiff, **KW)


def _run(r, mesh, g_seed=0):
    img = r.render(mesh, CAMS)
    g = np.random.default_rng(g_seed).normal(size=img.shape)
    return img, r.grads(mesh, CAMS, g), r.pair_stats(mesh, CAMS)["tile"]


@pytest.fixture(scope="module")
def runs():
    out = {}
    for layout in ("gpu", "cpu"):
        sr.init(ARCH, precision="f64", layout=layout)
        assert backend.layout() == layout
        for run, (mesh, size, tile, kind) in zip(IDS, RUNS):
            out[layout, run] = _run(_renderer(kind, size, tile), MESHES[mesh])
            if layout == "gpu":  # the oracle: Taichi differentiates aggregate.py (its alpha for silhouettes)
                auto = sr.SoftRenderer(image_size=size, tile=tile, autodiff=True, **KW)
                img = auto.render(MESHES[mesh], CAMS)
                g = np.random.default_rng(0).normal(size=out[layout, run][0].shape)
                if kind == "silhouette":
                    img, g = img[..., 3], np.concatenate([np.zeros(g.shape + (3,)), g[..., None]], -1)
                out["oracle", run] = (img, auto.grads(MESHES[mesh], CAMS, g), None)
    yield out
    sr.init("cpu")


def _assert_equal(got, want, what):
    err = np.abs(got[0] - want[0]).max()
    assert err < 1e-10, f"{what}: images differ by {err:.3g} (expected float64 rounding)"
    for k in (k for k in want[1] if k != "image"):  # the image is got[0]
        scale, diff = np.abs(want[1][k]).max(), np.abs(got[1][k] - want[1][k]).max()
        assert diff <= 1e-9 * max(scale, 1e-12), f"{what}: d/d{k} differs by {diff:.3g} (max |grad| {scale:.3g})"
    assert np.abs(got[1]["vertices"]).max() > 0, "a gradient of zero would pass trivially"


@pytest.mark.parametrize("run", IDS)
def test_gpu_layout_equals_autodiff(runs, run):
    _assert_equal(runs["gpu", run], runs["oracle", run], "GPU layout vs autodiff")


@pytest.mark.parametrize("run", IDS)
def test_gpu_layout_equals_cpu_layout(runs, run):
    _assert_equal(runs["gpu", run], runs["cpu", run], "GPU layout vs CPU layout")


def test_gpu_layout_binned_equals_dense(runs):
    """Tiles of 8 (auto) and one tile per view give the same render and gradients."""
    sr.init(ARCH, precision="f64", layout="gpu")
    mesh = MESHES["ico"]
    binned, dense = _run(_renderer("soft", 20, "auto"), mesh), _run(_renderer("soft", 20, 20), mesh)
    assert (binned[2], dense[2]) == (8, 20)
    _assert_equal(binned, dense, "binned vs dense")


def test_tile_sides(runs):
    """What the GPU layout bins into: 8×8 tiles for small faces, 16×16 once faces reach
    16 pixels on average (a 64 or 256-thread block each), whatever the CPU layout picks."""
    assert runs["gpu", "ico-20-auto-soft"][2] == 8
    assert [soft_tiles.gpu_tile(e) for e in (0.5, 4, 15.9, 16, 300)] == [8, 8, 8, 16, 16]
    assert [soft_tiles.block_dim(t) for t in (1, 8, 16, 24)] == [64, 64, 256, 256]
    sr.init(ARCH, precision="f64", layout="gpu")
    big = sr.SoftRenderer(image_size=64, sigma=1e-4)
    assert big.pair_stats(sr.icosphere(0, 0.9), sr.Camera.look_at())["tile"] == 16  # 20 large faces


def test_tape_scene_gradients_in_gpu_layout():
    """A Scene under ti.ad.Tape runs the same backward (pipeline._soft_grad) in the GPU layout."""
    import taichi as ti
    grads = {}
    for layout in ("cpu", "gpu"):
        sr.init(ARCH, precision="f64", layout=layout)
        scene = sr.SoftRenderer(image_size=16, **KW).scene(MESHES["ico"], CAMS)
        loss = ti.field(float, shape=(), needs_grad=True)

        @ti.kernel
        def total(img: ti.template(), out: ti.template()):
            for n, y, x in ti.ndrange(2, 16, 16):
                out[None] += img[n, y, x, 0] * (x + 1) + img[n, y, x, 3] * (y + 1)

        with ti.ad.Tape(loss):
            scene.render()
            total(scene.image, loss)
        grads[layout] = scene.vertices.grad.to_numpy()
    scale = np.abs(grads["cpu"]).max()
    assert scale > 0
    assert np.abs(grads["gpu"] - grads["cpu"]).max() <= 1e-9 * scale
    sr.init("cpu")


def test_layout_argument():
    assert sr.init("cpu", verbose=False) == "cpu" and backend.layout() == "cpu"
    sr.init("cpu", verbose=False, layout="gpu")
    assert backend.layout() == "gpu"
    with pytest.raises(ValueError, match="layout must be one of 'auto', 'cpu', 'gpu'; got 'tiles'"):
        sr.init("cpu", layout="tiles")
    sr.init("cpu")


@pytest.mark.parametrize("cuda, platform, vulkan, want", [
    (True, "linux", [("NVIDIA H200", 2)], ["cuda", "vulkan", "cpu"]),
    (False, "linux", [("NVIDIA H200", 2)], ["vulkan", "cpu"]),
    (False, "linux", [("llvmpipe (LLVM 15.0.6, 256 bits)", 4)], ["cpu"]),
    (False, "linux", [("llvmpipe", 4), ("AMD Radeon RX 7900", 2)], ["vulkan", "cpu"]),
    (False, "linux", [], ["cpu"]),
    (False, "darwin", [], ["metal", "cpu"]),
], ids=["cuda", "vulkan-gpu", "lavapipe-skipped", "lavapipe-and-gpu", "none", "metal"])
def test_auto_order(monkeypatch, cuda, platform, vulkan, want):
    """"auto" tries CUDA, then a real Vulkan or Metal GPU, then the CPU; a software Vulkan
    device (lavapipe/llvmpipe: VK_PHYSICAL_DEVICE_TYPE_CPU) is never picked."""
    monkeypatch.delenv("TI_ARCH", raising=False)
    monkeypatch.setattr(backend, "_has_cuda", lambda: cuda)
    monkeypatch.setattr(backend, "_vulkan_devices", lambda: vulkan)
    monkeypatch.setattr(backend.sys, "platform", platform)
    assert backend._candidates("auto") == want


def test_vulkan_device_query_sees_software_device_as_cpu():
    """Where a Vulkan loader exists, the query answers; Mesa's llvmpipe is a CPU device."""
    found = backend._vulkan_devices()
    for name, kind in found:
        assert isinstance(name, str) and name and 0 <= kind <= 4
        if "llvmpipe" in name:
            assert kind == backend.VK_PHYSICAL_DEVICE_TYPE_CPU
    if any("llvmpipe" in name for name, _ in found) and len(found) == 1:
        assert not backend._has_real_vulkan_gpu()
