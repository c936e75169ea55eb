"""Loading your own views (sr.load_views): every format and convention, round trips
(render with the package, write the files in that layout, load, same images and cameras
back), the official code's convention against its definition, and every bad input."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

sr = pytest.importorskip("softras_taichi")
from softras_taichi import fit, views  # noqa: E402

S = 32


@pytest.fixture(scope="module", autouse=True)
def cpu():
    sr.init("cpu")
    yield


@pytest.fixture(scope="module")
def rendered():
    """Hard renders of the painted peanut (asymmetric enough that a mirror shows) from
    6 cameras in this package's convention."""
    cams = sr.Camera.look_at(distance=[2.732, 2.5, 3.0, 2.732, 2.6, 2.9],
                             elevation=[10.0, -25.0, 40.0, 0.0, 60.0, -5.0],
                             azimuth=[0.0, 33.0, 100.0, 200.0, 271.0, 330.0])
    mesh = fit.normalize(sr.TARGETS["peanut"]())
    return sr.HardRenderer(S).render(mesh, cams), cams


def same_cameras(a, b):
    np.testing.assert_allclose(a.params[:, :2], b.params[:, :2], atol=1e-4)
    np.testing.assert_allclose((a.params[:, 2] - b.params[:, 2] + 180) % 360 - 180, 0, atol=1e-4)
    np.testing.assert_allclose(a.viewing_angle, b.viewing_angle)


def u8(images):
    return np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)


# --------------------------------------------------------------------------- the official convention

def official_ndc(points, distance, elevation, azimuth, viewing_angle=30.0):
    """The official SoftRas pipeline in NumPy, from its definition: the eye of
    get_points_from_angles, the axes of look_at (z = at − eye, x = up × z, y = z × x)
    and perspective (x / (z tan θ))."""
    el, az = math.radians(elevation), math.radians(azimuth)
    eye = distance * np.array([math.cos(el) * math.sin(az), math.sin(el), -math.cos(el) * math.cos(az)])
    z = -eye / np.linalg.norm(eye)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    q = (points - eye) @ np.stack([x, y, z]).T
    t = math.tan(math.radians(viewing_angle))
    return q[:, 0] / (q[:, 2] * t), q[:, 1] / (q[:, 2] * t)


def package_ndc(points, camera):
    q = (points - camera.eye()[0]) @ camera.rotation()[0].T
    t = math.tan(math.radians(camera.viewing_angle[0]))
    return q[:, 0] / (q[:, 2] * t), q[:, 1] / (q[:, 2] * t)


def test_softras_image_is_the_mirror_of_ours_at_180_minus_azimuth():
    """The official camera at (el, az) sees x_ndc = −x, y_ndc = y of this package's camera
    at (el, 180° − az); both put pixel (r, c) at x = (2c + 1 − S)/S, y = (S − 1 − 2r)/S
    (soft_rasterize_cuda_kernel.cu), so column c there is column S − 1 − c here."""
    rng = np.random.default_rng(1)
    points = rng.uniform(-0.8, 0.8, size=(50, 3))
    for d, el, az in [(2.732, 30.0, 0.0), (2.5, -40.0, 77.0), (3.1, 10.0, 200.0), (2.732, 75.0, 300.0)]:
        xs, ys = official_ndc(points, d, el, az)
        xo, yo = package_ndc(points, sr.Camera.look_at(distance=d, elevation=el, azimuth=180.0 - az))
        np.testing.assert_allclose(xs, -xo, atol=1e-12)
        np.testing.assert_allclose(ys, yo, atol=1e-12)
    c = np.arange(S)
    np.testing.assert_allclose((2 * (S - 1 - c) + 1 - S) / S, -(2 * c + 1 - S) / S)


def test_softras_layout_round_trip(tmp_path, rendered):
    """Written as the official demo's files ((N, 4, S, S) uint8 of mirrored images, (N, 3)
    distance, elevation, azimuth in its convention), loaded back as ours."""
    images, cams = rendered
    official = np.ascontiguousarray(np.moveaxis(u8(images)[:, :, ::-1], -1, 1))
    angles = cams.params.copy()
    angles[:, 2] = 180.0 - angles[:, 2]
    np.save(tmp_path / "source.npy", official)
    np.save(tmp_path / "camera.npy", angles.astype(np.float32))
    v = sr.load_views(tmp_path / "source.npy", tmp_path / "camera.npy", convention="softras")
    assert v.images.shape == (6, S, S, 4) and v.images.dtype == np.float32
    np.testing.assert_allclose(v.images, images, atol=0.5 / 255)
    same_cameras(v.cameras, cams)
    np.testing.assert_allclose(v.angles, angles, atol=1e-4)  # as the file gave them
    assert v.convention == "softras" and v.image_paths == [str(tmp_path / "source.npy")]
    # the package renders the loaded cameras into the loaded images (not their mirror)
    again = sr.HardRenderer(S).render(fit.normalize(sr.TARGETS["peanut"]()), v.cameras)
    assert np.mean((again[..., 3] > 0.5) == (v.images[..., 3] > 0.5)) > 0.999
    assert np.mean((again[..., 3] > 0.5) == (v.images[:, :, ::-1, 3] > 0.5)) < 0.99
    # and the library's writer writes that same layout
    views.save_views(tmp_path / "w.npy", tmp_path / "wc.npy", images, cams, convention="softras")
    assert np.array_equal(np.load(tmp_path / "w.npy"), official)
    np.testing.assert_allclose(np.load(tmp_path / "wc.npy")[:, 2] % 360, angles[:, 2] % 360, atol=1e-4)


@pytest.mark.parametrize("convention", ["softras-taichi", "pytorch3d"])
@pytest.mark.parametrize("layout", ["nhwc-float", "nhwc-uint8", "nchw-uint8", "masks"])
def test_npy_round_trip(tmp_path, rendered, convention, layout):
    images, cams = rendered
    a = {"nhwc-float": images.astype(np.float32), "nhwc-uint8": u8(images),
         "nchw-uint8": np.moveaxis(u8(images), -1, 1), "masks": u8(images[..., 3])}[layout]
    np.save(tmp_path / "images.npy", a)
    np.save(tmp_path / "cameras.npy", cams.params)
    v = sr.load_views(tmp_path / "images.npy", tmp_path / "cameras.npy", convention=convention)
    if layout == "masks":  # a white object on black
        np.testing.assert_allclose(v.images, np.repeat(images[..., 3:], 4, -1), atol=0.5 / 255)
    else:
        np.testing.assert_allclose(v.images, images, atol=0.5 / 255)
    same_cameras(v.cameras, cams)


@pytest.mark.parametrize("kind", ["rgba", "mask", "mask16"])
def test_png_folder_round_trip(tmp_path, rendered, kind):
    from PIL import Image

    images, cams = rendered
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(len(images)):  # names sort in view order (10 after 9)
        name = folder / f"view_{i:03d}.png"
        if kind == "rgba":
            Image.fromarray(u8(images[i]), "RGBA").save(name)
        elif kind == "mask":
            Image.fromarray(u8(images[i, ..., 3]), "L").save(name)
        else:
            Image.fromarray((images[i, ..., 3] * 65535).astype(np.uint16)).save(name)
    (folder / "notes.txt").write_text("not an image")
    np.save(tmp_path / "cameras.npy", cams.params)
    v = sr.load_views(folder, tmp_path / "cameras.npy")
    want = images if kind == "rgba" else np.repeat(images[..., 3:], 4, -1)
    np.testing.assert_allclose(v.images, want, atol=0.5 / 255)
    assert [os.path.basename(p) for p in v.image_paths] == [f"view_{i:03d}.png" for i in range(6)]
    same_cameras(v.cameras, cams)


@pytest.mark.parametrize("fmt", ["csv", "json-list", "json-columns"])
def test_camera_tables_with_viewing_angles(tmp_path, rendered, fmt):
    images, cams = rendered
    va = [30.0, 30.0, 25.0, 30.0, 20.0, 15.0]
    rows = [dict(distance=d, elevation=e, azimuth=a, viewing_angle=t) for (d, e, a), t in zip(cams.params, va)]
    if fmt == "csv":
        path = tmp_path / "cameras.csv"
        path.write_text("azimuth, elevation, distance, viewing_angle\n" +
                        "".join(f"{r['azimuth']},{r['elevation']},{r['distance']},{r['viewing_angle']}\n" for r in rows))
    elif fmt == "json-list":
        path = tmp_path / "cameras.json"
        path.write_text(json.dumps(rows))
    else:
        path = tmp_path / "cameras.json"
        path.write_text(json.dumps({k: [r[k] for r in rows] for k in rows[0]}))
    np.save(tmp_path / "images.npy", u8(images))
    v = sr.load_views(tmp_path / "images.npy", path)
    np.testing.assert_allclose(v.viewing_angle, va)
    np.testing.assert_allclose(v.cameras.viewing_angle, va)
    np.testing.assert_allclose(v.cameras.params, cams.params)
    assert np.all(sr.load_views(tmp_path / "images.npy", path, viewing_angle=15).cameras.viewing_angle == 15)


def test_heldout_every_k(tmp_path, rendered):
    images, cams = rendered
    np.save(tmp_path / "i.npy", u8(images))
    np.save(tmp_path / "c.npy", cams.params)
    v = sr.load_views(tmp_path / "i.npy", tmp_path / "c.npy")
    train, held = v.split(3)  # views 2 and 5 (the 3rd and the 6th) are held out
    assert len(train) == 4 and len(held) == 2
    np.testing.assert_allclose(held.cameras.params, cams.params[[2, 5]])
    np.testing.assert_allclose(train.images, v.images[[0, 1, 3, 4]])
    assert v.split(None) == (v, None)
    with pytest.raises(ValueError, match="heldout-every"):
        v.split(1)


# --------------------------------------------------------------------------- bad input

def bad_cases(tmp_path, images, cams):
    """(images path, cameras path, kwargs, the file the message must name, words it must contain)."""
    good_i, good_c = tmp_path / "good.npy", tmp_path / "good_c.npy"
    np.save(good_i, u8(images))
    np.save(good_c, cams.params)
    cases = []

    def npy(name, a):
        np.save(tmp_path / name, a)
        return tmp_path / name

    cases.append((good_i, npy("five.npy", cams.params[:5]), {}, "five.npy", "6 images but"))
    cases.append((npy("wide.npy", u8(np.concatenate([images, images[:, :, :4]], 2))), good_c, {}, "wide.npy", "not square"))
    empty = u8(images)
    empty[3, ..., 3] = 0
    cases.append((npy("empty.npy", empty), good_c, {}, "empty.npy", "empty"))
    full = u8(images)
    full[1, ..., 3] = 255
    cases.append((npy("full.npy", full), good_c, {}, "full.npy", "whole image"))
    nan = cams.params.copy()
    nan[2, 1] = np.nan
    cases.append((good_i, npy("nan.npy", nan), {}, "nan.npy", "NaN"))
    inside = cams.params.copy()
    inside[4, 0] = 0.5
    cases.append((good_i, npy("inside.npy", inside), {}, "inside.npy", "inside the object"))
    cases.append((good_i, good_c, {"convention": "opengl"}, "opengl", "convention"))
    cases.append((npy("float255.npy", images.astype(np.float32) * 255), good_c, {}, "float255.npy", "divide"))
    cases.append((npy("flat.npy", u8(images).reshape(6, -1)), good_c, {}, "flat.npy", "(N, S, S, 4)"))
    (tmp_path / "cams.csv").write_text("distance,elevation\n2.7,0\n")
    cases.append((good_i, tmp_path / "cams.csv", {}, "cams.csv", "azimuth"))
    cases.append((tmp_path / "missing.npy", good_c, {}, "missing.npy", "not found"))

    from PIL import Image

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(u8(images[0]), "RGBA").save(mixed / "a.png")
    Image.fromarray(u8(np.zeros((S + 2, S + 2, 4)) + images[1, :1, :1]), "RGBA").resize((S + 2, S + 2)).save(mixed / "b.png")
    cases.append((mixed, good_c, {}, "b.png", "resize"))
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    for i in range(6):
        Image.fromarray(u8(images[i, ..., :3]), "RGB").save(rgb / f"{i}.png")
    cases.append((rgb, good_c, {}, "0.png", "alpha"))
    return cases


def test_every_bad_input_gets_a_one_line_message_naming_the_file(tmp_path, rendered):
    for images, cameras, kw, name, words in bad_cases(tmp_path, *rendered):
        with pytest.raises(ValueError) as info:
            sr.load_views(images, cameras, **kw)
        message = str(info.value)
        assert name in message and words in message, message
        assert "\n" not in message


ENV = dict(os.environ, TI_ARCH="x64", ENABLE_TAICHI_HEADER_PRINT="0")


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "softras_taichi", *map(str, args)],
                          capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600)


def test_cli_bad_views_exit_2_with_one_line(tmp_path, rendered):
    images, cams = rendered
    np.save(tmp_path / "i.npy", u8(images))
    np.save(tmp_path / "c.npy", cams.params[:4])
    p = cli("fit", "--images", tmp_path / "i.npy", "--cameras", tmp_path / "c.npy", "--arch", "cpu",
            "--out", tmp_path / "out")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().count("\n") == 0 and "6 images but" in p.stderr and "c.npy" in p.stderr
    assert not (tmp_path / "out").exists()
    p = cli("fit", "blob", "--images", tmp_path / "i.npy", "--cameras", tmp_path / "c.npy", "--arch", "cpu")
    assert p.returncode == 2 and "either TARGET.obj or --images" in p.stderr
    p = cli("fit", "--images", tmp_path / "i.npy", "--arch", "cpu")
    assert p.returncode == 2 and "--cameras" in p.stderr


# --------------------------------------------------------------------------- fitting from images

def sphere_iou(v):
    """Held-out IoU of the template sphere: where a fit starts."""
    hard = sr.HardRenderer(v.images.shape[1])
    return fit.per_view_iou(hard.render(fit.template(2), v.cameras)[..., 3] > 0.5, v.images[..., 3] > 0.5)


def test_cli_fit_from_official_layout_improves_iou(tmp_path):
    """A small fit from an images .npy and a cameras .npy in the official demo's layout
    (8 + 4 views of 32 px, 60 iterations): its held-out IoU rises well above the sphere's."""
    target = fit.normalize(sr.TARGETS["peanut"]())
    cams = fit.spiral_cameras(12)
    images = sr.HardRenderer(S).render(target, cams)
    views.save_views(tmp_path / "source.npy", tmp_path / "camera.npy", images, cams, convention="softras")
    out = tmp_path / "fit"
    p = cli("fit", "--images", tmp_path / "source.npy", "--cameras", tmp_path / "camera.npy",
            "--convention", "softras", "--heldout-every", 3, "--iterations", 60, "--level", 2,
            "--arch", "cpu", "--out", out)
    assert p.returncode == 0, p.stderr
    m = json.loads((out / "metrics.json").read_text())
    loaded = sr.load_views(tmp_path / "source.npy", tmp_path / "camera.npy", convention="softras")
    start = sphere_iou(loaded.split(3)[1])
    assert m["views"] == 8 and m["convention"] == "softras" and m["heldout_every"] == 3
    assert m["iou_heldout"] > start + 0.1 and m["iou_heldout"] > 0.8, (start, m["iou_heldout"])
    for name in ("mesh.obj", "views.png", "loss.png", "progress.gif"):
        assert (out / name).exists(), name


def test_fit_from_official_files_matches_fit_target(tmp_path):
    """fit_target's own training and held-out views, written in the official layout
    (mirrored, 180° − az, uint8), loaded and split back: the same fit, the same IoU."""
    target = fit.normalize(sr.TARGETS["peanut"]())
    images, cams, held, held_cams = fit.target_views(target, views=9, size=S, heldout=3)
    order = [c for k in range(3) for c in (("t", 3 * k), ("t", 3 * k + 1), ("t", 3 * k + 2), ("h", k))]
    all_images = np.stack([images[i] if w == "t" else held[i] for w, i in order])
    all_cams = sr.Camera.concat([cams[i] if w == "t" else held_cams[i] for w, i in order])
    views.save_views(tmp_path / "i.npy", tmp_path / "c.npy", all_images, all_cams, convention="softras")
    kw = dict(level=2, iterations=60, snapshot_every=0)
    direct = fit.reconstruct(images, cams, held, held_cams, **kw)
    loaded = fit.fit_views(sr.load_views(tmp_path / "i.npy", tmp_path / "c.npy", convention="softras"),
                           heldout_every=4, **kw)
    assert abs(loaded.iou_heldout - direct.iou_heldout) < 0.01, (loaded.iou_heldout, direct.iou_heldout)
    assert abs(loaded.iou_train - direct.iou_train) < 0.01
