"""Pose fitting: the rotation and translation of a rigid object, or the camera, from one image.

    L = L_s + λ L_c

Every face has a non-zero probability at the pixels near it, so the silhouette pulls
on the pose even where the two silhouettes do not overlap, and the fit works from a
pose 30–45° away, also when the part that tells the poses apart (the red knob of
`knob_cube`) is hidden at the start.  The depth softmax gives a hidden face the weight
exp(−Δẑ/γ): nothing at γ = 1e-4, a real colour gradient at γ = 1e-2 (occlusion
awareness, checked in tests/test_fit.py).  The z-buffer rasterizer's silhouette has
no gradient at all, so the same loop on the silhouette with it does not move.  (Its
colour image does have one inside the faces, through the interpolated colours and
the lighting: with L_c the hard loop moves too, and on this example even converges.)
"""
import dataclasses
import math
import time

import numpy as np

from .. import fields, losses, optim
from ..mesh import Mesh
from ..primitives import TARGETS, cube
from ..renderer import SoftRenderer
from .schedules import _renderer_for_scene, _tape, _to_u8, lr_schedule, sigma_schedule, with_sigma


def knob_cube(knob_azimuth=-140.0):
    """The pose-fitting object: the painted cube target (side 0.8) with a red knob (a cube
    of side 0.3) on one side, at `knob_azimuth` degrees around the y axis (0 = +z, the
    camera at azimuth 0; ±90 = the sides).  Turned by 45° about y the knob at −140° goes
    from behind the body (hidden) to the left side (visible): `POSE_EXAMPLE`."""
    body = TARGETS["cube"]()
    knob = cube(0.3, subdivisions=1)
    phi = math.radians(knob_azimuth)
    kv = knob.vertices + 0.55 * np.array([math.sin(phi), 0.0, math.cos(phi)])
    v = np.concatenate([0.8 * body.vertices, kv])
    f = np.concatenate([body.faces, knob.faces + body.num_vertices])
    c = np.concatenate([body.colors, np.tile([0.95, 0.1, 0.1], (knob.num_vertices, 1))])
    return Mesh(v, f, c)


# The occlusion case: at the start the knob is hidden behind the body; in the target
# (the true pose, 45° about y away) it shows on the left.  Camera at elevation 20°.
POSE_EXAMPLE = {"camera": dict(elevation=20.0, azimuth=0.0),
                "true_rotation": (0.0, math.radians(45.0), 0.0),
                "start_rotation": (0.0, 0.0, 0.0)}


@dataclasses.dataclass
class PoseFit:
    """The result of `fit_pose`: the final parameters, their history and the losses."""
    rotation: np.ndarray        # axis-angle (radians)
    translation: np.ndarray
    camera: np.ndarray          # (distance, elevation°, azimuth°)
    loss: list
    rotations: list             # axis-angle after every step
    cameras: list               # camera parameters after every step
    frames: list                # rendered RGB frames (uint8), every `snapshot_every` steps
    seconds: float


@fields.borrowing
def fit_pose(mesh, target, camera, rotation=(0.0, 0.0, 0.0), translation=(0.0, 0.0, 0.0),
             renderer=None, iterations=150, mode="pose", lr=None, color_weight=1.0,
             sigma=(1e-3, 1e-5), lr_final=0.1, snapshot_every=0, callback=None):
    """Fit the pose of a rigid, coloured `mesh` to one RGBA `target` image (S, S, 4).

    mode "pose": optimise the object's rotation ω (axis-angle, radians; start
    `rotation`) and translation t (start `translation`), seen by `camera`; mode
    "camera": optimise the camera's (distance, elevation°, azimuth°), starting from
    `camera`.  L = L_s + color_weight · L_c.

    `renderer` defaults to a SoftRenderer of the target's size.  With a SoftRenderer,
    σ follows `sigma_schedule(*sigma)` (None keeps the renderer's σ): from 1e-3, whose
    blur reaches a few pixels, down to 1e-5, whose silhouette is as sharp as the
    target's (with σ = 1e-4 the soft silhouette is a little larger than the hard one,
    and the fit pays for that by pushing the object away).  A HardRenderer is used as
    it is.  `lr` overrides Adam's rates: (rotation, translation) in mode "pose", one
    rate per camera parameter in mode "camera"; they decay to `lr_final` × lr over the
    last 30% of the iterations (`lr_schedule`).
    """
    target = np.asarray(target, dtype=np.float64)
    if target.ndim != 3 or target.shape[0] != target.shape[1] or target.shape[2] != 4:
        raise ValueError(f"target must be one (S, S, 4) RGBA image, got shape {target.shape}")
    if mode not in ("pose", "camera"):
        raise ValueError(f"mode must be 'pose' or 'camera', got {mode!r}")
    if len(camera) != 1:
        raise ValueError(f"fit_pose fits one view: pass one camera, got {len(camera)}")
    renderer = renderer or SoftRenderer(image_size=target.shape[0])
    if renderer.image_size != target.shape[0]:
        raise ValueError(f"the renderer draws {renderer.image_size} px images but the target "
                         f"is {target.shape[0]} px")
    scene = renderer.scene(mesh, camera)
    scene.set_pose(rotation, translation)
    tgt = losses.image_field(target)
    sil, col = losses.SilhouetteIoU(1), losses.ColorL1()
    loss = losses.scalar_field()
    # Adam's step is about lr per parameter, whatever the gradient's scale: so the rates
    # are in the parameters' units (radians, scene units, degrees) per step.
    if mode == "pose":
        lr = (0.03, 0.02) if lr is None else lr
        opt = optim.Adam([(scene.rotation, lr[0]), (scene.translation, lr[1])], betas=(0.9, 0.99))
    else:
        lr = (0.02, 1.5, 1.5) if lr is None else lr
        opt = optim.Adam([(scene.camera, lr)], betas=(0.9, 0.99))
    sigmas = (sigma_schedule(sigma[0], sigma[1], iterations) if renderer.soft and sigma is not None
              else None)
    rates = lr_schedule(iterations, lr_final)
    history, rotations, cameras, frames = [], [], [], []
    t0 = time.perf_counter()
    for k in range(iterations):
        if sigmas is not None:
            _renderer_for_scene(scene, with_sigma(renderer, sigmas[k]))
        with _tape(loss, scene, sil):
            scene.render()
            sil(scene.image, tgt, loss)
            if color_weight:
                col(scene.image, tgt, loss, weight=color_weight)
        if snapshot_every and k % snapshot_every == 0:
            frames.append(_to_u8(scene.image.to_numpy()[0, ..., :3]))
        opt.scale = rates[k]
        opt.step()
        history.append(float(loss[None]))
        rotations.append(scene.rotation.to_numpy().astype(np.float64))
        cameras.append(scene.camera.to_numpy()[0].astype(np.float64))
        if callback is not None:
            callback(k, history[-1])
    seconds = time.perf_counter() - t0
    if sigmas is not None:
        _renderer_for_scene(scene, renderer)
    return PoseFit(rotation=scene.rotation.to_numpy().astype(np.float64),
                   translation=scene.translation.to_numpy().astype(np.float64),
                   camera=scene.camera.to_numpy()[0].astype(np.float64), loss=history,
                   rotations=rotations, cameras=cameras, frames=frames, seconds=seconds)
