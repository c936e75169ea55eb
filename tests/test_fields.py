"""Borrowed fields (softras_taichi/fields.py, docs/architecture.md "Compile once"): a fit
takes its fields from a pool, zeroed as new ones are, and gives them back, so that a
second fit of the same sizes compiles nothing and computes what a fresh one computes."""
import numpy as np
import pytest
import taichi as ti
import softras_taichi as sr
from softras_taichi import fields, fit
from test_compile_once import compiled  # noqa: F401  (the fixture counting new kernels)


def test_a_borrowed_field_comes_back_zeroed_and_outside_a_block_fields_are_fresh():
    sr.init("cpu", verbose=False)
    with fields.borrowed():
        a = fields.vector(3, float, 7, needs_grad=True)
        b = fields.scalar(ti.i32, (2, 3))
        a.from_numpy(np.ones((7, 3), np.float32))
        a.grad.from_numpy(np.full((7, 3), 2, np.float32))
        b.from_numpy(np.full((2, 3), 5, np.int32))
    assert fields.pooled() == 2
    with fields.borrowed():
        a2 = fields.vector(3, float, (7,), needs_grad=True)
        c = fields.vector(3, float, 7, needs_grad=False)  # another key: a new field
        b2 = fields.scalar(ti.i32, (2, 3))
        assert a2 is a and b2 is b and c is not a
        assert not a2.to_numpy().any() and not a2.grad.to_numpy().any() and not b2.to_numpy().any()
        with fields.borrowed():  # a nested block cannot take what the outer one holds
            assert fields.vector(3, float, 7, needs_grad=True) is not a
    outside = fields.vector(3, float, 7, needs_grad=True)
    assert outside is not a and fields.pooled() == 4   # a, b, c, and the nested block's field
    assert fields.vector(3, float, 7, needs_grad=True) is not outside


def test_init_in_a_block_returns_nothing_stale():
    sr.init("cpu", verbose=False)
    with fields.borrowed():
        fields.scalar(float, 5)
        sr.init("cpu", verbose=False)   # frees every field of the old program
    assert fields.pooled() == 0
    with fields.borrowed():
        f = fields.scalar(float, 5)
        f[0] = 1.0
        assert f[0] == 1.0


def _blob_views():
    target = fit.normalize(sr.TARGETS["blob"]())
    return fit.target_views(target, views=4, size=24, heldout=2)


def test_a_second_reconstruction_compiles_nothing_and_matches_a_fresh_one(compiled):
    sr.init("cpu", verbose=False)
    images, cams, held, held_cams = _blob_views()
    kw = dict(method="softras", fit_color=True, level=2, iterations=8, snapshot_every=0)
    first = fit.reconstruct(images, cams, held, held_cams, **kw)      # fresh fields: compiles everything
    fit.reconstruct(images, cams, held, held_cams, mu=0.0, **kw)      # the pool's zeroing, once per field
    compiled.clear()
    third = fit.reconstruct(images, cams, held, held_cams, **kw)
    assert not compiled, f"a repeated fit compiled {compiled}"
    # the same result up to the order of float32 atomic sums (~2e-5 here after 8 steps):
    # stale optimiser moments or offsets from the fit before move vertices by ~1e-2
    moved = np.abs(third.mesh.vertices - first.mesh.vertices).max()
    assert moved < 5e-4, f"a borrowed-field fit differs from a fresh one by {moved:.1e}"
    assert np.abs(third.mesh.colors - first.mesh.colors).max() < 5e-4
    assert np.allclose(third.history["loss"], first.history["loss"], rtol=1e-3)


def test_a_second_pose_fit_compiles_nothing_and_matches_a_fresh_one(compiled):
    sr.init("cpu", verbose=False)
    mesh, cam = fit.knob_cube(), sr.Camera.look_at(elevation=20.0)
    target = sr.HardRenderer(image_size=32).render(fit.posed(mesh, (0.0, 0.5, 0.0)), cam)
    first = fit.fit_pose(mesh, target, cam, iterations=8)
    fit.fit_pose(mesh, target, cam, iterations=8)
    compiled.clear()
    third = fit.fit_pose(mesh, target, cam, iterations=8)
    assert not compiled, f"a repeated pose fit compiled {compiled}"
    turned = np.abs(third.rotation - first.rotation).max()
    assert turned < 1e-4, f"a borrowed-field pose fit differs from a fresh one by {turned:.1e} rad"
    assert np.allclose(third.loss, first.loss, rtol=1e-3)
