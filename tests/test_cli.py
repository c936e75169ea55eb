"""The command line, run as a user would: `python -m softras_taichi ...` in a subprocess."""
import os
import subprocess
import sys

import numpy as np
import pytest

ENV = dict(os.environ, TI_ARCH="x64", ENABLE_TAICHI_HEADER_PRINT="0")


def cli(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "softras_taichi", *map(str, args)],
                          capture_output=True, text=True, env=ENV, cwd=cwd, timeout=timeout)


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def sphere_obj(tmp_path_factory):
    import softras_taichi as sr

    path = tmp_path_factory.mktemp("mesh") / "sphere.obj"
    sr.icosphere(1).save_obj(str(path))
    return path


def test_help_lists_subcommands():
    out = ok(cli("--help")).stdout
    for name in ("render", "fit", "demo", "grade"):
        assert name in out


def test_render_png(sphere_obj, tmp_path):
    from PIL import Image

    out = tmp_path / "img.png"
    ok(cli("render", sphere_obj, "--elevation", 30, "--azimuth", 45, "--size", 32,
           "--arch", "cpu", "--out", out))
    im = Image.open(out)
    assert im.mode == "RGBA" and im.size == (32, 32)
    a = np.asarray(im)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 4)
    assert a[..., 3].max() > 0, "the sphere should cover some pixels"
    assert a[..., 3].min() == 0, "the corners should be background"
    assert a[..., :3].max() > 0


def test_render_npy(sphere_obj, tmp_path):
    out = tmp_path / "img.npy"
    ok(cli("render", sphere_obj, "--size", 32, "--sigma", 1e-3, "--gamma", 1e-3,
           "--arch", "cpu", "--out", out))
    img = np.load(out)
    assert img.dtype == np.float32 and img.shape == (32, 32, 4)
    assert np.isfinite(img).all()
    assert (img[..., 3] > 0).any()
    assert img.min() >= 0.0 and img.max() <= 1.0 + 1e-6
    # the unit sphere at distance 2.732 is centred: the centre pixel is covered
    # (soft: sigma = 1e-3 lets pixels near internal edges fall a little below 1)
    assert img[16, 16, 3] > 0.9


def test_render_missing_file(tmp_path):
    missing = tmp_path / "no_such_mesh.obj"
    p = cli("render", missing, "--size", 32, "--arch", "cpu", "--out", tmp_path / "x.png")
    assert p.returncode == 2, p
    assert "softras-taichi: error:" in p.stderr
    assert str(missing) in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "x.png").exists()


def test_render_bad_extension(sphere_obj, tmp_path):
    p = cli("render", sphere_obj, "--size", 32, "--arch", "cpu", "--out", tmp_path / "x.jpg")
    assert p.returncode == 2 and "softras-taichi: error:" in p.stderr and "Traceback" not in p.stderr


def test_render_bad_obj(tmp_path):
    bad = tmp_path / "bad.obj"
    bad.write_text("this is not an obj file\nv 1 2\nf 1 2 3\n")
    p = cli("render", bad, "--size", 32, "--arch", "cpu", "--out", tmp_path / "x.png")
    assert p.returncode == 2, p
    assert "softras-taichi: error:" in p.stderr and "Traceback" not in p.stderr


def test_demo_writes_figures(tmp_path):
    out = tmp_path / "demo"
    p = ok(cli("demo", "--out", out, "--arch", "cpu"))
    from PIL import Image

    for name in ("sigma_sweep.png", "gamma_sweep.png", "render.png"):
        path = out / name
        assert path.exists() and path.stat().st_size > 0, name
        assert name in p.stdout
        Image.open(path).verify()
    assert Image.open(out / "render.png").size == (256, 256)
