"""CPU vs Vulkan (the SPIR-V code path that real GPUs run): images and gradients, in both
layouts of the soft pass (sr.init(layout=...): "cpu" = soft.py, "gpu" = soft_tiles.py, the
tile-major forward with shared-memory staging and the entry-major backward).

On a CPU-only machine Vulkan is lavapipe (mesa's software driver), which is slow:
the inputs are small (16-24 px, ≤ 1280 faces). The module is skipped, with the reason
printed, when ``sr.init("vulkan")`` raises or does not give Vulkan. Both sides are
float32 (f64 transcendentals do not compile on Vulkan, docs/architecture.md, "Rules every kernel follows").

On Vulkan the GPU layout is also checked the way the CPU layout is on the CPU: binned
against dense (tile = image size), the fast pass against the autodiff one
(SoftRenderer(autodiff=True), Taichi's own gradients), and the images against the
float64 NumPy reference (tests/reference.py, test_render_vs_reference's tolerances).

Everything is computed once in a module fixture (CPU first, then Vulkan in each layout)
and the backend is put back to CPU at the end so the other test modules are unaffected.
"""
import numpy as np
import pytest

import reference as ref

from test_render_vs_reference import compare_soft
from vulkan_required import no_vulkan  # noqa: E402

sr = pytest.importorskip("softras_taichi")

D0 = 2.732


def _cases():
    rng = np.random.default_rng(9)
    v, f = ref.icosphere(1, 0.9)
    ico = (v, f, rng.uniform(0.05, 0.95, v.shape))
    v, f, c = ref.overlapping_triangles()
    tris = (v + rng.normal(0, 0.02, v.shape), f, 0.05 + 0.9 * c)
    v, f = ref.icosphere(3, 0.9)  # ~300 faces per 8×8 tile: the GPU layout stages them in 5 chunks
    ico3 = (v, f, rng.uniform(0.05, 0.95, v.shape))
    return [
        # name, mesh, elevation, azimuth, sigma, gamma, size
        ("ico1-el30-az45-s1e-3-g1e-2", ico, 30.0, 45.0, 1e-3, 1e-2, 24),
        ("ico1-el-60-az200-s3e-2-g1e-4", ico, -60.0, 200.0, 3e-2, 1e-4, 24),
        ("overlap-el10-az20-s1e-4-g1", tris, 10.0, 20.0, 1e-4, 1.0, 16),
        ("ico3-el20-az30-s1e-4-g1e-3", ico3, 20.0, 30.0, 1e-4, 1e-3, 16),
    ]


CASES = _cases()
IDS = [c[0] for c in CASES]


def _compute(checks=False):
    out = {}
    for name, (v, f, c), el, az, sigma, gamma, size in CASES:
        mesh, cam = sr.Mesh(v, f, c), sr.Camera.look_at(D0, el, az)
        r = sr.SoftRenderer(image_size=size, sigma=sigma, gamma=gamma)
        sil = sr.SilhouetteRenderer(image_size=size, sigma=sigma)
        g = np.random.default_rng(1).normal(size=(size, size, 4))
        out[name] = dict(
            soft=np.asarray(r.render(mesh, cam)),
            tile=r.pair_stats(mesh, cam)["tile"],
            hard=np.asarray(sr.HardRenderer(image_size=size).render(mesh, cam)),
            gv=np.asarray(r.vertex_grad(mesh, cam, g), dtype=np.float64),
            gc=np.asarray(r.color_grad(mesh, cam, g), dtype=np.float64),
            sil=np.asarray(sil.render(mesh, cam)),
            gs=np.asarray(sil.vertex_grad(mesh, cam, g[..., 3]), dtype=np.float64),
        )
        if checks:  # the same scene densely (one tile per view) and through Taichi's autodiff
            for key, other in (("dense", sr.SoftRenderer(image_size=size, sigma=sigma, gamma=gamma, tile=size)),
                               ("autodiff", sr.SoftRenderer(image_size=size, sigma=sigma, gamma=gamma,
                                                            autodiff=True))):
                out[name][key] = (np.asarray(other.render(mesh, cam)),
                                  {k: np.asarray(v, dtype=np.float64) for k, v in other.grads(mesh, cam, g).items()})
            out[name]["grads"] = {k: np.asarray(v, dtype=np.float64) for k, v in r.grads(mesh, cam, g).items()}
    return out


LAYOUTS = ["cpu", "gpu"]


@pytest.fixture(scope="module")
def results():
    sr.init("cpu")
    out = {"cpu": _compute()}
    for layout in LAYOUTS:
        try:
            arch = sr.init("vulkan", layout=layout)
        except Exception as exc:  # no Vulkan loader / device
            sr.init("cpu")
            reason = f"Vulkan unavailable: sr.init('vulkan') raised {type(exc).__name__}: {exc}"
            no_vulkan(reason)
        if arch != "vulkan":
            sr.init("cpu")
            reason = f"Vulkan unavailable: sr.init('vulkan') gave {arch!r}"
            no_vulkan(reason)
        try:
            out[layout] = _compute(checks=layout == "gpu")
        finally:
            sr.init("cpu")
    # tests index results[0] (CPU) against results[1] (Vulkan); one pair per layout
    yield {layout: (out["cpu"], out[layout]) for layout in LAYOUTS}
    sr.init("cpu")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", IDS)
def test_soft_image_cpu_vs_vulkan(results, name, layout):
    cpu, vk = (r[name]["soft"] for r in results[layout])
    assert vk.shape == cpu.shape and vk.dtype == np.float32
    err = np.abs(vk.astype(np.float64) - cpu)
    i = np.unravel_index(np.argmax(err), err.shape)
    # same float32 arithmetic; exp/log differ by a few ulp between LLVM and SPIR-V,
    # amplified by 1/γ in the depth softmax
    n_bad = int((err.max(-1) > 1e-4).sum())
    assert err.max() < 1e-4, (f"max |vulkan - cpu| {err.max():.3g} at {i}; {n_bad} of "
                              f"{err.shape[0] * err.shape[1]} pixels differ by > 1e-4")


@pytest.mark.parametrize("name", IDS)
def test_hard_image_cpu_vs_vulkan(results, name):
    cpu, vk = (r[name]["hard"] for r in results["gpu"])
    err = np.abs(vk.astype(np.float64) - cpu)
    n_bad = int((vk[..., 3] != cpu[..., 3]).sum())
    assert n_bad == 0, f"coverage differs at {n_bad} pixels"
    assert err.max() < 1e-5, f"max |vulkan - cpu| {err.max():.3g}"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", IDS)
def test_silhouette_cpu_vs_vulkan(results, name, layout):
    cpu, vk = (r[name]["sil"] for r in results[layout])
    assert vk.shape == cpu.shape == cpu.shape[:1] * 2 and vk.dtype == np.float32
    assert np.abs(vk.astype(np.float64) - cpu).max() < 1e-5
    soft_alpha = results[layout][1][name]["soft"][..., 3]  # the same alpha as SoftRenderer's, on Vulkan too
    assert np.abs(vk - soft_alpha).max() < 1e-6


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("which", ["gv", "gc", "gs"], ids=["vertex_grad", "color_grad", "silhouette_grad"])
def test_grads_cpu_vs_vulkan(results, name, which, layout):
    cpu, vk = (r[name][which] for r in results[layout])
    assert vk.shape == cpu.shape
    assert np.all(np.isfinite(vk))
    rel = np.linalg.norm(vk - cpu) / np.linalg.norm(cpu)
    i = np.unravel_index(np.argmax(np.abs(vk - cpu)), cpu.shape)
    # observed ~5e-6 when the images agree (atomic summation order differs)
    assert rel < 1e-4, (f"{which}: relative |vulkan - cpu| = {rel:.3g}; worst entry {i}: "
                        f"vulkan {vk[i]:.6g}, cpu {cpu[i]:.6g}")


@pytest.mark.parametrize("name", IDS)
def test_gpu_layout_tiles_on_vulkan(results, name):
    """The GPU layout bins into tiles of 8 or 16 pixels a side (one thread block each)."""
    vk = results["gpu"][1][name]["tile"]
    assert vk in (8, 16), f"GPU layout chose tile {vk}"


@pytest.mark.parametrize("against", ["dense", "autodiff"])
@pytest.mark.parametrize("name", IDS)
def test_gpu_layout_on_vulkan_equals_dense_and_autodiff(results, name, against):
    """On Vulkan itself: the GPU layout's image and every gradient equal one tile per view
    (binned == dense) and Taichi's autodiff of aggregate.py (the oracle), to float32 rounding."""
    vk = results["gpu"][1][name]
    img, grads = vk[against]
    err = np.abs(vk["soft"].astype(np.float64) - img).max()
    assert err < 1e-4, f"image: GPU layout vs {against} on Vulkan differ by {err:.3g}"
    for k, want in grads.items():
        got = vk["grads"][k]
        assert np.all(np.isfinite(got)), f"d/d{k}: not finite"
        rel = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)
        # pose and camera gradients sum every vertex's, with cancellation: float32 loses more
        tol = 1e-4 if k in ("vertices", "colors") else 1e-3
        assert rel < tol, f"d/d{k}: GPU layout vs {against} on Vulkan: relative difference {rel:.3g}"
    assert np.abs(vk["grads"]["vertices"]).max() > 0, "a gradient of zero would pass trivially"


@pytest.mark.parametrize("name", IDS)
def test_gpu_layout_on_vulkan_equals_reference(results, name):
    """The GPU layout's Vulkan image against the float64 NumPy reference of docs/math.md."""
    _, (v, f, c), el, az, sigma, gamma, size = CASES[IDS.index(name)]
    eye, R = ref.look_at(D0, el, az)
    want, aux = ref.render(v, f, c, eye, R, size, sigma=sigma, gamma=gamma, return_aux=True)
    compare_soft(results["gpu"][1][name]["soft"], want, aux, sigma, gamma, name)
