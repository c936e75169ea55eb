"""CPU vs Vulkan (the SPIR-V code path that real GPUs run): images and gradients.

On a CPU-only machine Vulkan is lavapipe (mesa's software driver), which is slow:
the inputs are small (16-24 px, < 100 faces). The module is skipped, with the reason
printed, when ``sr.init("vulkan")`` raises or does not give Vulkan. Both sides are
float32 (f64 transcendentals do not compile on Vulkan, docs/architecture.md, "Rules every kernel follows").

Everything is computed once in a module fixture (CPU first, then Vulkan) and the
backend is put back to CPU at the end so the other test modules are unaffected.
"""
import numpy as np
import pytest

import reference as ref

from vulkan_required import no_vulkan  # noqa: E402

sr = pytest.importorskip("softras_taichi")

D0 = 2.732


def _cases():
    rng = np.random.default_rng(9)
    v, f = ref.icosphere(1, 0.9)
    ico = (v, f, rng.uniform(0.05, 0.95, v.shape))
    v, f, c = ref.overlapping_triangles()
    tris = (v + rng.normal(0, 0.02, v.shape), f, 0.05 + 0.9 * c)
    return [
        # name, mesh, elevation, azimuth, sigma, gamma, size
        ("ico1-el30-az45-s1e-3-g1e-2", ico, 30.0, 45.0, 1e-3, 1e-2, 24),
        ("ico1-el-60-az200-s3e-2-g1e-4", ico, -60.0, 200.0, 3e-2, 1e-4, 24),
        ("overlap-el10-az20-s1e-4-g1", tris, 10.0, 20.0, 1e-4, 1.0, 16),
    ]


CASES = _cases()
IDS = [c[0] for c in CASES]


def _compute():
    out = {}
    for name, (v, f, c), el, az, sigma, gamma, size in CASES:
        mesh, cam = sr.Mesh(v, f, c), sr.Camera.look_at(D0, el, az)
        r = sr.SoftRenderer(image_size=size, sigma=sigma, gamma=gamma)
        sil = sr.SilhouetteRenderer(image_size=size, sigma=sigma)
        g = np.random.default_rng(1).normal(size=(size, size, 4))
        out[name] = dict(
            soft=np.asarray(r.render(mesh, cam)),
            hard=np.asarray(sr.HardRenderer(image_size=size).render(mesh, cam)),
            gv=np.asarray(r.vertex_grad(mesh, cam, g), dtype=np.float64),
            gc=np.asarray(r.color_grad(mesh, cam, g), dtype=np.float64),
            sil=np.asarray(sil.render(mesh, cam)),
            gs=np.asarray(sil.vertex_grad(mesh, cam, g[..., 3]), dtype=np.float64),
        )
    return out


@pytest.fixture(scope="module")
def results():
    sr.init("cpu")
    cpu = _compute()
    try:
        arch = sr.init("vulkan")
    except Exception as exc:  # no Vulkan loader / device
        sr.init("cpu")
        reason = f"Vulkan unavailable: sr.init('vulkan') raised {type(exc).__name__}: {exc}"
        no_vulkan(reason)
    if arch != "vulkan":
        sr.init("cpu")
        reason = f"Vulkan unavailable: sr.init('vulkan') gave {arch!r}"
        no_vulkan(reason)
    try:
        vk = _compute()
    finally:
        sr.init("cpu")
    yield cpu, vk
    sr.init("cpu")


@pytest.mark.parametrize("name", IDS)
def test_soft_image_cpu_vs_vulkan(results, name):
    cpu, vk = (r[name]["soft"] for r in results)
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
    cpu, vk = (r[name]["hard"] for r in results)
    err = np.abs(vk.astype(np.float64) - cpu)
    n_bad = int((vk[..., 3] != cpu[..., 3]).sum())
    assert n_bad == 0, f"coverage differs at {n_bad} pixels"
    assert err.max() < 1e-5, f"max |vulkan - cpu| {err.max():.3g}"


@pytest.mark.parametrize("name", IDS)
def test_silhouette_cpu_vs_vulkan(results, name):
    cpu, vk = (r[name]["sil"] for r in results)
    assert vk.shape == cpu.shape == cpu.shape[:1] * 2 and vk.dtype == np.float32
    assert np.abs(vk.astype(np.float64) - cpu).max() < 1e-5
    soft_alpha = results[1][name]["soft"][..., 3]  # the same alpha as SoftRenderer's, on Vulkan too
    assert np.abs(vk - soft_alpha).max() < 1e-6


@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("which", ["gv", "gc", "gs"], ids=["vertex_grad", "color_grad", "silhouette_grad"])
def test_grads_cpu_vs_vulkan(results, name, which):
    cpu, vk = (r[name][which] for r in results)
    assert vk.shape == cpu.shape
    assert np.all(np.isfinite(vk))
    rel = np.linalg.norm(vk - cpu) / np.linalg.norm(cpu)
    i = np.unravel_index(np.argmax(np.abs(vk - cpu)), cpu.shape)
    # observed ~5e-6 when the images agree (atomic summation order differs)
    assert rel < 1e-4, (f"{which}: relative |vulkan - cpu| = {rel:.3g}; worst entry {i}: "
                        f"vulkan {vk[i]:.6g}, cpu {cpu[i]:.6g}")
