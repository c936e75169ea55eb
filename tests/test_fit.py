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
