"""Fitting (softras_taichi.fit): pose fitting, multi-view reconstruction and `softras-taichi fit`.

Small, fast settings (64 px single-view poses, 32 px reconstructions of a level-2
sphere): the quality runs of the README use 24 views at 64 px and a level-3 sphere.
"""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

sr = pytest.importorskip("softras_taichi")
from softras_taichi import fit  # noqa: E402

EX = fit.POSE_EXAMPLE
KNOB = 26  # vertices of the knob, the last ones of fit.knob_cube()


@pytest.fixture(scope="module", autouse=True)
def cpu():
    sr.init("cpu")
    yield


@pytest.fixture(scope="module")
def pose_case():
    mesh = fit.knob_cube()
    cam = sr.Camera.look_at(**EX["camera"])
    target = sr.HardRenderer(64).render(fit.posed(mesh, EX["true_rotation"]), cam)
    return mesh, cam, target


# --------------------------------------------------------------------------- helpers

def test_rotation_helpers():
    rng = np.random.default_rng(0)
    for _ in range(5):
        w = rng.normal(size=3)
        w *= rng.uniform(0.1, 3.0) / np.linalg.norm(w)
        R = fit.rotation_matrix(w)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(fit.axis_angle(R), w, atol=1e-9)
        assert fit.rotation_error_deg(w, w) == pytest.approx(0.0, abs=1e-5)
    assert fit.rotation_error_deg([0, 0.5, 0], [0, 0, 0]) == pytest.approx(math.degrees(0.5))
    # posed() moves vertices exactly as the renderer's pose stage does
    mesh = fit.knob_cube()
    w, t = np.array([0.3, -0.2, 0.5]), np.array([0.1, 0.0, -0.2])
    cam = sr.Camera.look_at(elevation=20)
    r = sr.SoftRenderer(32)
    scene = r.scene(mesh, cam)
    scene.set_pose(w, t)
    scene.render()
    np.testing.assert_allclose(scene.image_numpy(), r.render(fit.posed(mesh, w, t), cam), atol=1e-4)


def test_normalize_any_scale_into_the_unit_sphere():
    m = sr.TARGETS["peanut"]()
    big = sr.Mesh(250.0 * m.vertices + [1000.0, -40.0, 7.0], m.faces, m.colors)
    n = fit.normalize(big)
    assert np.linalg.norm(n.vertices, axis=1).max() == pytest.approx(0.9)
    np.testing.assert_allclose((n.vertices.min(0) + n.vertices.max(0)) / 2, 0, atol=1e-12)
    np.testing.assert_allclose(n.colors, m.colors)


def test_cameras_and_schedules():
    train, held = fit.training_cameras(24), fit.heldout_cameras(8)
    assert len(train) == 24 and len(held) == 8
    el = train.params[:, 1]
    assert el.min() < -45 and el.max() > 45, "training views see the top and the bottom"
    # held-out cameras are other cameras: no view direction within 5° of a training one
    eyes = lambda c: c.eye() / np.linalg.norm(c.eye(), axis=1, keepdims=True)  # noqa: E731
    cos = eyes(held) @ eyes(train).T
    assert np.degrees(np.arccos(cos.max())) > 5
    s = fit.sigma_schedule(1e-3, 1e-5, 100)
    assert s[0] == pytest.approx(1e-3) and s[-1] == pytest.approx(1e-5) and np.all(np.diff(s) <= 0)
    lr = fit.lr_schedule(100, 0.1)
    assert lr[0] == 1.0 and lr[69] == 1.0 and lr[-1] == pytest.approx(0.1)
    t = fit.template(2)
    assert np.abs(t.vertices).min() > 1e-3, "the template has no coordinate at 0"
    assert np.linalg.norm(t.vertices, axis=1) == pytest.approx(0.5)


# --------------------------------------------------------------------------- pose fitting

def _red(img):
    return ((img[..., 0] > 0.3) & (img[..., 0] > 3 * img[..., 1]) & (img[..., 0] > 3 * img[..., 2])
            & (img[..., 3] > 0.5)).sum()


def test_pose_example_hides_the_knob_at_the_start(pose_case):
    mesh, cam, target = pose_case
    start = sr.HardRenderer(64).render(fit.posed(mesh, EX["start_rotation"]), cam)
    assert _red(start) == 0, "the knob is occluded at the start"
    assert _red(target) > 10, "and visible in the target"
    assert fit.rotation_error_deg(EX["start_rotation"], EX["true_rotation"]) == pytest.approx(45.0)


def test_pose_fit_from_an_occluded_start(pose_case):
    mesh, cam, target = pose_case
    res = fit.fit_pose(mesh, target, cam, rotation=EX["start_rotation"], iterations=60)
    err = fit.rotation_error_deg(res.rotation, EX["true_rotation"])
    assert err < 3.0, f"rotation error {err:.2f}° after 60 steps (start 45°)"
    assert np.abs(res.translation).max() < 0.05
    assert res.loss[-1] < 0.3 * res.loss[0]
    assert len(res.rotations) == 60


def test_pose_fit_from_another_start(pose_case):
    """35° about a tilted axis: rotation and translation both start wrong."""
    mesh, cam, target = pose_case
    axis = np.array([0.6, -0.3, 0.74])
    start = fit.axis_angle(fit.rotation_matrix(axis / np.linalg.norm(axis) * math.radians(35))
                           @ fit.rotation_matrix(EX["true_rotation"]))
    res = fit.fit_pose(mesh, target, cam, rotation=start, translation=(0.05, -0.05, 0.0),
                       iterations=60)
    assert fit.rotation_error_deg(start, EX["true_rotation"]) == pytest.approx(35.0, abs=1e-6)
    assert fit.rotation_error_deg(res.rotation, EX["true_rotation"]) < 3.0
    assert np.abs(res.translation).max() < 0.05


def test_same_loop_with_the_hard_rasterizer_does_not_move(pose_case):
    """Silhouette loss only: soft converges, the z-buffer's silhouette has no gradient."""
    mesh, cam, target = pose_case
    kw = dict(rotation=EX["start_rotation"], iterations=100, color_weight=0.0)
    soft = fit.fit_pose(mesh, target, cam, **kw)
    assert fit.rotation_error_deg(soft.rotation, EX["true_rotation"]) < 3.0
    hard = fit.fit_pose(mesh, target, cam, renderer=sr.HardRenderer(64), **kw)
    assert np.abs(hard.rotation - np.asarray(EX["start_rotation"])).max() < 1e-7
    assert np.abs(hard.translation).max() < 1e-7
    assert hard.loss[-1] == pytest.approx(hard.loss[0])


def test_hidden_part_gets_colour_gradient_through_the_depth_softmax(pose_case):
    """Occlusion awareness: the hidden knob's colour gradient is exp(−Δẑ/γ) small at
    γ = 1e-4, real at γ = 1e-2, and exactly zero with the z-buffer."""
    mesh, cam, _ = pose_case
    g = np.zeros((64, 64, 4))
    g[..., :3] = 1.0  # d(sum of RGB)/d(vertices)

    def knob_vs_body(r):
        grad = np.abs(r.vertex_grad(mesh, cam, g))
        return grad[-KNOB:].max(), grad[:-KNOB].max()

    knob, body = knob_vs_body(sr.SoftRenderer(64, gamma=1e-2))
    assert knob > 0.01 * body
    knob, body = knob_vs_body(sr.SoftRenderer(64, gamma=1e-4))
    assert knob < 1e-12 * body
    knob, body = knob_vs_body(sr.HardRenderer(64))
    assert knob == 0.0 and body > 0


def test_camera_fit(pose_case):
    """Mode "camera": recover (distance, elevation, azimuth) of the view."""
    mesh, _, _ = pose_case
    true = sr.Camera.look_at(distance=2.732, elevation=25.0, azimuth=-20.0)
    target = sr.HardRenderer(64).render(mesh, true)
    start = sr.Camera.look_at(distance=3.1, elevation=55.0, azimuth=0.0)
    assert 30 < fit.camera_angle_deg(start.params[0], true.params[0]) < 45
    res = fit.fit_pose(mesh, target, start, mode="camera", iterations=60)
    assert fit.camera_angle_deg(res.camera, true.params[0]) < 3.0
    assert abs(res.camera[0] - 2.732) < 0.1


def test_fit_pose_rejects_bad_input(pose_case):
    mesh, cam, target = pose_case
    with pytest.raises(ValueError, match="RGBA"):
        fit.fit_pose(mesh, target[..., :3], cam)
    with pytest.raises(ValueError, match="mode"):
        fit.fit_pose(mesh, target, cam, mode="shape")
    with pytest.raises(ValueError, match="one camera"):
        fit.fit_pose(mesh, target, sr.Camera.orbit(2))


# --------------------------------------------------------------------------- reconstruction

def test_reconstruction_with_colours_converges():
    r = fit.fit_target("blob", views=12, size=32, heldout=4, level=2, iterations=100,
                       fit_color=True, snapshot_every=33)
    assert r.iou_heldout > 0.9, r.metrics()
    assert r.iou_train > 0.9
    assert r.history["loss"][-1] < 0.2 * r.history["loss"][0]
    assert r.history["color"][-1] < 0.3 * r.history["color"][0]
    assert r.color_l1_heldout < 0.05
    assert r.mesh.num_faces == 320 and np.isfinite(r.mesh.vertices).all()
    assert np.all((r.mesh.colors > 0) & (r.mesh.colors < 1))
    assert len(r.frames) == 4 and r.frames[0].shape == (32, 4 * 32, 3)
    m = r.metrics()
    for key in ("iou_train", "iou_heldout", "seconds", "iterations"):
        assert key in m
    json.dumps(m)  # metrics are plain JSON


def test_reconstruction_free_parametrisation_and_fixed_sigma():
    images, cams, held, held_cams = fit.target_views(fit.normalize(sr.TARGETS["peanut"]()), 8, 32, 4)
    # 120 iterations, not fewer: at 80 this run is still climbing (held-out IoU 0.70 -> 0.83
    # between 70 and 90), so float32 rounding differences alone moved it across 0.8;
    # at 120 it sits at 0.87-0.91 for lr 0.0045-0.0055 (from 0.50 for the sphere).
    r = fit.reconstruct(images, cams, held, held_cams, level=2, iterations=120, sigma=3e-5,
                        parametrisation="free", lr=0.005, snapshot_every=0)
    assert r.iou_heldout > 0.8
    assert r.history["sigma"] == [3e-5] * 120
    with pytest.raises(ValueError, match="parametrisation"):
        fit.reconstruct(images, cams, parametrisation="nope")
    with pytest.raises(ValueError, match="cameras"):
        fit.reconstruct(images, cams[0])


# --------------------------------------------------------------------------- command line

ENV = dict(os.environ, TI_ARCH="x64", ENABLE_TAICHI_HEADER_PRINT="0")


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "softras_taichi", *map(str, args)],
                          capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600)


def test_cli_fit_writes_everything(tmp_path):
    from PIL import Image

    m = sr.TARGETS["peanut"]()
    big = sr.Mesh(40.0 * m.vertices + [5.0, 3.0, -2.0], m.faces, m.colors)  # any scale
    target = tmp_path / "peanut.obj"
    big.save_obj(str(target))
    out = tmp_path / "fit"
    p = cli("fit", target, "--views", 8, "--heldout", 4, "--size", 32, "--iterations", 40,
            "--level", 2, "--color", "--sigma", 1e-3, 3e-5, "--lam", 1, "--mu", 1e-3,
            "--gamma", 1e-4, "--seed", 1, "--arch", "cpu", "--out", out)
    assert p.returncode == 0, p.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("iou_train", "iou_heldout", "seconds", "iterations"):
        assert key in metrics
    assert metrics["iterations"] == 40 and metrics["views"] == 8 and metrics["fit_color"]
    assert 0.5 < metrics["iou_heldout"] <= 1.0
    fitted = sr.load_obj(str(out / "mesh.obj"))
    assert fitted.num_faces == 320 and not np.all(fitted.colors == 1)
    normalised = sr.load_obj(str(out / "target.obj"))
    assert np.linalg.norm(normalised.vertices, axis=1).max() == pytest.approx(0.9, abs=1e-4)
    for name in ("views.png", "loss.png"):
        Image.open(out / name).verify()
    gif = Image.open(out / "progress.gif")
    assert gif.n_frames > 5
    assert "fitting" in p.stderr  # the tqdm bar
    assert "IoU train" in p.stdout


@pytest.mark.parametrize("args, message", [
    (("no_such_target.obj",), "not found"),
    (("cube", "--views", 0), "--views"),
    (("cube", "--sigma", 1e-3, 1e-4, 1e-5), "--sigma"),
    (("cube", "--mu", -1), "--mu"),
])
def test_cli_fit_bad_input(tmp_path, args, message):
    p = cli("fit", *args, "--arch", "cpu", "--out", tmp_path / "x", cwd=tmp_path)
    assert p.returncode == 2, p
    assert "softras-taichi: error:" in p.stderr and message in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- large steps, refinement

def test_large_steps_parametrisation_and_its_gradient():
    from softras_taichi.fit import large_steps

    mesh = fit.template(1)
    L = large_steps.laplacian(mesh.faces, mesh.num_vertices).toarray()
    assert np.allclose(L.sum(axis=1), 0) and np.all(np.diag(L) >= 5)  # D − A: degrees 5 and 6
    ls = large_steps.LargeSteps(mesh.vertices, mesh.faces, smoothing=3.0)
    np.testing.assert_allclose(ls.vertices(), mesh.vertices, atol=1e-12)  # u = (I + λL) x, x back
    # ∂/∂u of Σ w·x(u), x = (I + λL)⁻¹ u: against central differences
    rng = np.random.default_rng(0)
    w = rng.normal(size=ls.u.shape)
    g = ls.gradient(w)
    for i, k in [(0, 0), (7, 2), (30, 1)]:
        e = np.zeros_like(ls.u)
        e[i, k] = 1e-4
        u0 = ls.u.copy()
        ls.u = u0 + e
        up = (w * ls.vertices()).sum()
        ls.u = u0 - e
        down = (w * ls.vertices()).sum()
        ls.u = u0
        assert g[i, k] == pytest.approx((up - down) / 2e-4, rel=1e-6)
    # a step on one vertex's u moves its neighbourhood smoothly, itself the most
    ls.u[0] += 1.0
    move = np.linalg.norm(ls.vertices() - mesh.vertices, axis=1)
    assert move.argmax() == 0 and (move > 0.01).sum() > 5
    # UniformAdam: the first step moves the entry with the largest gradient by lr exactly
    p = np.zeros((4, 3))
    grad = np.array([[1.0, 0, 0], [0, -4.0, 0], [0, 0, 0.5], [2.0, 0, 0]])
    large_steps.UniformAdam(p.shape, lr=0.1).step(p, grad)
    np.testing.assert_allclose(p, -0.1 * grad / 4.0, atol=1e-8)
    q = np.zeros((4, 3))
    large_steps.UniformAdam(q.shape, lr=0.1, per="vertex").step(q, grad)
    np.testing.assert_allclose(np.abs(q).max(axis=1), [0.1, 0.1, 0.1, 0.1], atol=1e-8)


def _closed(mesh):
    f = mesh.faces
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    _, counts = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    return np.all(counts == 2) and len(np.unique(directed, axis=0)) == len(directed), \
        mesh.num_vertices - len(counts) + mesh.num_faces


def test_split_long_edges_keeps_the_surface_closed_and_the_silhouette():
    from softras_taichi.fit import remesh

    m = fit.template(2)
    v = m.vertices.copy()
    v[np.argmax(v[:, 0])] *= 3.0  # pull one vertex out: a spike of long edges
    spike = sr.Mesh(v, m.faces)
    out, n = fit.split(spike, 0.2)
    assert n > 5 and out.num_faces == spike.num_faces + 2 * n
    closed, euler = _closed(out)
    assert closed and euler == 2
    np.testing.assert_array_equal(out.vertices[:spike.num_vertices], spike.vertices)  # old vertices stay
    e = np.sort(np.concatenate([out.faces[:, [0, 1]], out.faces[:, [1, 2]], out.faces[:, [2, 0]]]), axis=1)
    assert np.linalg.norm(out.vertices[e[:, 0]] - out.vertices[e[:, 1]], axis=1).max() < \
        np.linalg.norm(spike.vertices[spike.faces[:, 0]] - spike.vertices[spike.faces[:, 1]], axis=1).max()
    n0 = np.cross(spike.vertices[spike.faces[:, 1]] - spike.vertices[spike.faces[:, 0]],
                  spike.vertices[spike.faces[:, 2]] - spike.vertices[spike.faces[:, 0]])
    n1 = np.cross(out.vertices[out.faces[:, 1]] - out.vertices[out.faces[:, 0]],
                  out.vertices[out.faces[:, 2]] - out.vertices[out.faces[:, 0]])
    assert np.isclose(np.linalg.norm(n0, axis=1).sum(), np.linalg.norm(n1, axis=1).sum())  # same area
    cams = fit.training_cameras(6)
    hard = sr.HardRenderer(48)
    a, b = hard.render(spike, cams)[..., 3] > 0.5, hard.render(out, cams)[..., 3] > 0.5
    assert np.mean(a == b) > 0.999
    # a face budget is respected; nothing long means nothing split
    capped, _ = fit.split(spike, 0.2, max_faces=spike.num_faces + 4)
    assert capped.num_faces <= spike.num_faces + 4
    assert remesh.split_long_edges(m.vertices, m.faces, 10.0)[3] == 0
    sub = fit.subdivide(spike.with_colors(np.full(3, 0.25)))
    assert sub.num_faces == 4 * spike.num_faces and _closed(sub) == (True, 2)
    assert np.allclose(sub.colors, 0.25)


def test_run_plan_of_a_recipe():
    r = fit.RECIPES["softras"]
    assert fit.stages(r) == [("start", 0, 400)]
    c2f = dataclasses_replace(r, level=4, start_level=2, refine_until=0.5, iterations=100, split_at=(0.8,))
    assert fit.stages(c2f) == [("start", 0, 25), ("subdivide", 25, 50), ("subdivide", 50, 80), ("split", 80, 100)]
    with pytest.raises(TypeError, match="unknown setting"):
        fit.reconstruct(np.zeros((1, 8, 8, 4)), sr.Camera.look_at(), levle=3)
    with pytest.raises(ValueError, match="unknown method"):
        fit.reconstruct(np.zeros((1, 8, 8, 4)), sr.Camera.look_at(), method="magic")


def dataclasses_replace(recipe, **kw):
    import dataclasses

    return dataclasses.replace(recipe, **kw)


def test_batches_cycle_through_every_view():
    from softras_taichi.fit.reconstruct import _batches

    b = _batches(10, 4, 9, [0, 1], 4, seed=0)
    assert all(len(x) == 4 and len(set(x)) == 4 for x in b)
    assert list(b[0][:2]) == [0, 1] and list(b[4][:2]) == [0, 1] and list(b[8][:2]) == [0, 1]
    counts = np.bincount(np.concatenate(b[1:4]), minlength=10)
    assert counts.max() - counts.min() <= 2  # a shuffled cycle, not a random draw
    assert all(np.array_equal(x, np.arange(10)) for x in _batches(10, 10, 3, [0], 1, seed=0))


def test_the_result_is_the_best_mesh_of_the_sharp_phase():
    """The training IoU is measured every few steps once σ is sharp; the result is the
    best of those meshes, not whatever the last step left."""
    images, cams, held, held_cams = fit.target_views(fit.normalize(sr.TARGETS["peanut"]()), 8, 32, 2)
    r = fit.reconstruct(images, cams, held, held_cams, level=2, iterations=40, snapshot_every=0)
    steps, scores = zip(*r.checkpoints)
    assert steps[0] == 29 and steps[-1] == 40 and len(steps) == 3  # 28 = 0.7 · 40 steps, then every 10
    assert r.iou_train == pytest.approx(max(scores), abs=1e-12)
    assert r.settings["best_step"] == steps[int(np.argmax(scores))]


def test_reconstruction_in_batches_of_views():
    """32 views of which 8 are rendered per step (each step costs what 8 views cost)."""
    images, cams, held, held_cams = fit.target_views(fit.normalize(sr.TARGETS["peanut"]()), 32, 32, 4)
    r = fit.reconstruct(images, cams, held, held_cams, level=2, iterations=60, batch=8, snapshot_every=0)
    assert r.iou_heldout > 0.8 and r.settings["batch"] == 8


# --------------------------------------------------------------------------- quality (slow)

QUALITY = {}


def quality(target, **settings):
    """fit_target at the README's setting (24 views, 64 px, the default method), cached."""
    key = (target, tuple(sorted(settings.items())))
    if key not in QUALITY:
        QUALITY[key] = fit.fit_target(target, views=24, size=64, snapshot_every=0, **settings)
    return QUALITY[key]


@pytest.mark.slow
@pytest.mark.parametrize("target", list(sr.TARGETS))
def test_default_fit_quality(target):
    """Held-out IoU at the defaults: every genus-0 target >= 0.95, the thin-part targets
    >= 0.85 (the torus, genus 1, is out of a sphere's reach: >= 0.9)."""
    r = quality(target)
    bound = {"torus": 0.9, "insect": 0.85, "aircraft": 0.85}.get(target, 0.95)
    assert r.iou_heldout >= bound, r.metrics()
    assert r.iou_train >= r.iou_heldout - 0.1
    assert np.isfinite(r.mesh.vertices).all()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["insect", "spiky"])
def test_a_finer_template_never_makes_it_worse(target):
    """The issue's failure: a finer template made the ant worse (SoftRas's recipe at
    level 4: 0.46 against 0.68 at level 3).  With the default, level 4 is at least as
    good as level 3, within 0.01 (spiky: 0.965 against 0.968, insect: 0.858 against 0.759)."""
    default, coarse = quality(target), quality(target, level=3)
    assert default.iou_heldout >= coarse.iou_heldout - 0.01, (coarse.iou_heldout, default.iou_heldout)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["insect", "spiky"])
def test_more_iterations_never_make_it_worse(target):
    """800 steps against 400 (measured: insect 0.864 against 0.860, spiky 0.960 against
    0.963).  Before the fit kept its best mesh of the sharp phase, the insect's 800 steps
    ended at 0.848 (its one-pixel legs flicker at the sharpest σ)."""
    default, longer = quality(target), quality(target, iterations=800)
    assert longer.iou_heldout >= default.iou_heldout - 0.01, (default.iou_heldout, longer.iou_heldout)
