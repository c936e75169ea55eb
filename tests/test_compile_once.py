"""Compile once (docs/architecture.md, "Compile once"): a new image size, mesh, number of
views or renderer setting reuses the compiled kernels.

Counted, not timed: every kernel Taichi instantiates goes through Kernel.materialize,
and a new instantiation is a new key in the kernel's `compiled_kernels`.  Also checked
here: several scenes under one tape (each gets its own workspace), workspace growth,
and the NumPy API's reuse of the forward of the render just before a gradient call.
"""
import numpy as np
import pytest
import taichi as ti
from taichi.lang import kernel_impl

import softras_taichi as sr
from softras_taichi import workspace


@pytest.fixture
def compiled(monkeypatch):
    """The names of the kernels instantiated while the test runs (reverse ones end in '.grad')."""
    names = []
    original = kernel_impl.Kernel.materialize

    def materialize(self, key=None, args=None, arg_features=None):
        new = key not in self.compiled_kernels
        original(self, key, args, arg_features)
        if new:
            names.append(self.func.__name__ + ("" if self.autodiff_mode.name == "NONE" else ".grad"))

    monkeypatch.setattr(kernel_impl.Kernel, "materialize", materialize)
    return names


def _all_renderers(size, **kw):
    return [sr.SoftRenderer(image_size=size, **kw), sr.SilhouetteRenderer(image_size=size, **kw),
            sr.SoftRenderer(image_size=size, autodiff=True, **kw),
            sr.HardRenderer(image_size=size, tile=kw.get("tile", "auto"))]


def _use(renderers, mesh, cam):
    for r in renderers:
        img = r.render(mesh, cam)
        r.grads(mesh, cam, np.random.default_rng(0).normal(size=img.shape))
        r.pair_stats(mesh, cam)


def test_new_configurations_compile_nothing(compiled):
    sr.init("cpu", verbose=False)
    _use(_all_renderers(24), sr.icosphere(1, 0.6), sr.Camera.look_at(elevation=30, azimuth=45))
    assert len(compiled) > 20, "the warm-up must have compiled the pipeline"
    compiled.clear()
    configs = [
        (_all_renderers(40), sr.icosphere(1, 0.6), sr.Camera.look_at(elevation=30, azimuth=45)),  # size
        (_all_renderers(40), sr.icosphere(3, 0.6), sr.Camera.look_at(elevation=30, azimuth=45)),  # mesh
        (_all_renderers(40), sr.TARGETS["spiky"](), sr.Camera.orbit(5)),                          # views
        (_all_renderers(33, sigma=3e-3, gamma=1e-2, tile=4) + [sr.SoftRenderer(image_size=33, background=(1, 0, 0))],
         sr.torus(), sr.Camera.orbit(2)),                                                           # settings
    ]
    for renderers, mesh, cam in configs:
        _use(renderers, mesh, cam)
        assert not compiled, f"a new configuration compiled {compiled}"


def test_a_first_image_compiles_few_kernels(compiled):
    """Every kernel costs about a tenth of a second to compile on the CPU however small it
    is, so the stages share kernels: one upload, one for pose + projection + light, three
    for binning, one soft pass (set-up included), one read-back; then one reset-and-load of
    the image gradient, the backward (pixel adjoints included), one reverse and one read-back."""
    sr.init("cpu", verbose=False)
    r, mesh, cam = sr.SoftRenderer(image_size=24), sr.icosphere(1, 0.6), sr.Camera.look_at(elevation=30)
    img = r.render(mesh, cam)
    assert sorted(compiled) == sorted(["_load", "geometry", "measure", "count_entries", "make_lists", "forward",
                                       "_store_image"])
    compiled.clear()
    r.vertex_grad(mesh, cam, np.ones_like(img))
    assert sorted(compiled) == sorted(["_start_backward", "backward", "geometry.grad", "_store_grads"])


def test_a_new_scene_compiles_only_its_copy_kernels(compiled):
    sr.init("cpu", verbose=False)
    loss = ti.field(float, shape=(), needs_grad=True)

    @ti.kernel
    def alpha_sum(image: ti.template()):
        for I in ti.grouped(image):
            loss[None] += image[I]

    def tape(r, mesh, cam):
        scene = r.scene(mesh, cam)
        with ti.ad.Tape(loss):
            scene.render()
            alpha_sum(scene.image)
        scene.clear_grads()
        scene.set_pose((0.1, 0.0, 0.0), (0.0, 0.0, 0.1))
        return scene

    tape(sr.SoftRenderer(image_size=24), sr.icosphere(1, 0.6), sr.Camera.look_at(elevation=30))
    compiled.clear()
    tape(sr.SoftRenderer(image_size=48, sigma=1e-3), sr.icosphere(2, 0.6), sr.Camera.orbit(3))
    # the scene's own copies, the user's loss on its image, and ti.ad.Tape's reset of the
    # new scene's gradients (Taichi's clear_gradients, one per block of fields)
    per_scene = {"_set", "_gather", "_gather.grad", "_scatter", "_scatter.grad", "_clear",
                 "alpha_sum", "alpha_sum.grad", "clear_gradients"}
    assert {"_gather", "_scatter"} <= set(compiled)
    assert set(compiled) <= per_scene, f"a new scene recompiled pipeline kernels: {set(compiled) - per_scene}"


def test_two_scenes_under_one_tape():
    """The second scene must not overwrite the first one's forward state: it gets a second
    workspace, and the gradients equal those of two separate tapes."""
    sr.init("cpu", precision="f64", verbose=False)
    r = sr.SoftRenderer(image_size=20, sigma=1e-3)
    mesh = sr.icosphere(1, 0.6)
    loss = ti.field(float, shape=(), needs_grad=True)

    @ti.kernel
    def weighted(image: ti.template(), k: float):
        for n, y, x, c in image:
            loss[None] += k * (1.0 + 0.1 * c + 0.01 * x) * image[n, y, x, c]

    a, b = r.scene(mesh, sr.Camera.look_at(elevation=30)), r.scene(mesh, sr.Camera.orbit(2))
    b.set_pose((0.0, 0.3, 0.0), (0.1, 0.0, 0.0))
    with ti.ad.Tape(loss):
        a.render()
        b.render()
        weighted(a.image, 1.0)
        weighted(b.image, -2.0)
    together = [a.vertices.grad.to_numpy(), b.vertices.grad.to_numpy(), b.rotation.grad.to_numpy()]
    assert a._ws is not b._ws
    with ti.ad.Tape(loss):
        a.render()
        weighted(a.image, 1.0)
    alone_a = a.vertices.grad.to_numpy()
    with ti.ad.Tape(loss):
        b.render()
        weighted(b.image, -2.0)
    alone = [alone_a, b.vertices.grad.to_numpy(), b.rotation.grad.to_numpy()]
    for x, y in zip(together, alone):
        assert np.abs(y).max() > 0 and np.allclose(x, y, rtol=1e-12, atol=1e-14)


def test_workspace_growth(monkeypatch):
    """A render larger than the workspace's capacities grows them and gives the same image
    and gradients as a workspace that fitted from the start."""
    sr.init("cpu", precision="f64", verbose=False)
    mesh, cam = sr.icosphere(2, 0.6), sr.Camera.orbit(3)
    r = sr.SoftRenderer(image_size=24, sigma=1e-3)
    g = np.random.default_rng(3).normal(size=(3, 24, 24, 4))
    want = r.grads(mesh, cam, g)
    monkeypatch.setattr(workspace, "START", {"V": 8, "F": 8, "N": 1, "NV": 8, "P": 64})
    sr.init("cpu", precision="f64", verbose=False)  # a fresh pool with tiny capacities
    got = r.grads(mesh, cam, g)
    ws = workspace._pool[0]
    assert ws.cap["P"] >= 3 * 24 * 24 and ws.cap["V"] >= mesh.num_vertices
    for k in want:
        assert np.allclose(got[k], want[k], rtol=1e-12, atol=1e-14), k


def test_gradient_call_reuses_the_render_just_before():
    """render then grads with the same inputs: the forward runs once.  Any other call
    (render again, grads again, other inputs) runs the whole pipeline."""
    sr.init("cpu", verbose=False)
    r = sr.SoftRenderer(image_size=24)
    mesh, cam = sr.icosphere(2, 0.6), sr.Camera.look_at(elevation=30)
    g = np.random.default_rng(4).normal(size=(24, 24, 4))
    img = r.render(mesh, cam)
    ws = workspace._pool[0]
    calls = ws.calls
    reused = r.grads(mesh, cam, g)
    assert ws.calls is calls, "the render just before was run again"
    assert np.array_equal(reused["image"], img)
    again = r.grads(mesh, cam, g)
    assert ws.calls is not calls, "a second gradient call must render again"
    r.render(mesh, cam)
    calls = ws.calls
    r.render(mesh, cam)
    assert ws.calls is not calls, "render must always render"
    moved = sr.Mesh(mesh.vertices + 0.01, mesh.faces)
    r.render(moved, cam)
    calls = ws.calls
    fresh = r.grads(mesh, cam, g)
    assert ws.calls is not calls, "other inputs must render again"
    assert not np.array_equal(r.render(moved, cam), img)
    for k in fresh:
        assert np.array_equal(fresh[k], reused[k]) and np.array_equal(again[k], reused[k]), k


def test_renders_reuse_their_ndarrays():
    """The same render again allocates no ndarray: a vector ndarray (the set-up record)
    once came back new on every render, ~8 MB a render at 24 views × 5120 faces, never
    given back, so a 400-step fit grew by 3 GB."""
    sr.init("cpu", verbose=False)
    mesh, cam = sr.icosphere(2, 0.6), sr.Camera.orbit(3)
    r = sr.SoftRenderer(image_size=16, sigma=1e-3)
    r.render(mesh, cam)
    ws = workspace._pool[0]
    before = {k: id(v[1]) for k, v in ws._nd.items()}
    r.render(mesh, cam)
    assert "setup" in before and {k: id(v[1]) for k, v in ws._nd.items()} == before
    vec = ti.types.vector(5, float)
    assert ws.ndarray("x", vec, (3,)) is ws.ndarray("x", ti.types.vector(5, float), (3,))
    assert ws.ndarray("x", ti.types.vector(6, float), (3,)) is not ws.ndarray("x", vec, (3,))


_BROKEN_KERNEL = '''
import sys
if sys.argv[1] == "with":
    import softras_taichi
import taichi as ti
ti.init(arch=ti.cpu, log_level=ti.ERROR)

@ti.func
def helper(x):
    return x * undefined_name

@ti.kernel
def broken(x: ti.f32) -> ti.f32:
    y = helper(x) + 1.0
    return helper(y)

try:
    broken(1.0)
except Exception as e:
    print(type(e).__name__, str(e))
'''


def test_remembered_source_positions_leave_taichi_errors_unchanged(tmp_path):
    """backend._remember_source_positions caches the position texts of Taichi's error
    messages: a user's broken kernel must get the message Taichi alone would give."""
    import subprocess
    import sys
    from taichi.lang.ast import ast_transformer_utils as utils

    assert getattr(utils.ASTTransformerContext.get_pos_info, "remembered", False)
    script = tmp_path / "broken.py"
    script.write_text(_BROKEN_KERNEL)
    out = [subprocess.run([sys.executable, str(script), which], capture_output=True, text=True, timeout=120).stdout
           for which in ("without", "with")]
    assert "TaichiNameError" in out[0] and "undefined_name" in out[0] and "^^^" in out[0], out[0]
    assert out[1] == out[0]
