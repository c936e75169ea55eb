"""Recovering 3D from images by gradient descent through the soft rasterizer.

Two jobs, both the same loop:

    with ti.ad.Tape(loss):             (fit.py's _tape: the same, zeroing fewer gradients)
        parameters -> scene fields      (a parametrisation kernel, optim.py)
        scene.render()                  (the soft rasterizer)
        loss kernels                    (losses.py)
    optimiser.step()                    (Adam over the parameter fields)

Pose fitting (the paper's "image-based shape fitting" of a rigid object): find the
rotation ω (axis-angle) and translation t, or the camera's (distance, elevation,
azimuth), that make a coloured mesh look like one target image,

    L = L_s + λ L_c.

Every face has a non-zero probability at the pixels near it, so the silhouette pulls
on the pose even where the two silhouettes do not overlap, and the fit works from a
pose 30–45° away, also when the part that tells the poses apart (the red knob of
`knob_cube`) is hidden at the start.  The depth softmax gives a hidden face the weight
exp(−Δẑ/γ): nothing at γ = 1e-4, a real colour gradient at γ = 1e-2 (occlusion
awareness, checked in tests/test_fit.py).  The z-buffer rasterizer's silhouette has
no gradient at all, so the same loop on the silhouette with it does not move.  (Its
colour image does have one inside the faces, through the interpolated colours and
the lighting: with L_c the hard loop moves too, and on this example even converges.)

Multi-view reconstruction: deform a template sphere until its renders from N
cameras match N target images (silhouettes; colours too with `fit_color`),

    L = L_s + λ L_c + μ L_g,     L_g = L_lap + L_flat (+ w_edge L_edge)

with SoftRas's recipe: the bounded parametrisation, Adam with betas (0.5, 0.99), and
σ decaying geometrically from a blurry start (σ = 1e-3: every pixel within a few of
the mesh pulls on it) to a sharp end.  The end is σ = 1e-5, not the paper's 1e-4:
at 64 px the soft silhouette of a mesh with small faces is visibly larger than the
hard one (1 − Π(1 − D) adds up the tails of every face near an edge; the targets'
own soft and hard silhouettes agree only to IoU 0.87–0.94 at σ = 1e-4), so a fit
that ends at 1e-4 comes out thinner than its target.  `PAPER_SETTING` holds the loss
weights and view count of docs/math.md's "Reconstruction settings" (64 views, λ = 1, μ = 1e-3).  The quality measure is the IoU of hard silhouettes on
held-out cameras (views not used for fitting).

    import softras_taichi as sr
    from softras_taichi import fit
    sr.init("cpu")
    result = fit.fit_target(sr.TARGETS["blob"](), views=24, size=64)
    result.iou_heldout, result.mesh
"""
import dataclasses
import json
import math
import os
import time

import numpy as np
import taichi as ti

from . import losses, optim
from .camera import Camera
from .mesh import Mesh
from .primitives import TARGETS, cube, icosphere
from .renderer import HardRenderer, SoftRenderer

# The reference reconstruction setting (docs/math.md, "Reconstruction settings", says
# where each number comes from): fit.fit_target(mesh, **fit.PAPER_SETTING)
# (or `softras-taichi fit MESH --views 64 --lam 1 --mu 1e-3`).
PAPER_SETTING = {"views": 64, "lam": 1.0, "mu": 1e-3}


# --------------------------------------------------------------------------- geometry helpers

def rotation_matrix(w):
    """Rodrigues: the 3×3 rotation of axis-angle w (radians), as project.rotate."""
    w = np.asarray(w, dtype=np.float64)
    t = np.linalg.norm(w)
    if t < 1e-12:
        return np.eye(3)
    k = w / t
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(t) * K + (1 - math.cos(t)) * K @ K


def axis_angle(R):
    """The axis-angle vector of a rotation matrix (inverse of rotation_matrix)."""
    c = np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)
    t = math.acos(c)
    if t < 1e-9:
        return np.zeros(3)
    if t > math.pi - 1e-6:  # 180°: the axis is the eigenvector of R with eigenvalue 1
        vals, vecs = np.linalg.eigh((R + R.T) / 2)
        return t * vecs[:, np.argmax(vals)]
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    return t * v / (2 * math.sin(t))


def rotation_error_deg(a, b):
    """The angle (degrees) of the rotation taking axis-angle b to axis-angle a."""
    R = rotation_matrix(a) @ rotation_matrix(b).T
    return math.degrees(math.acos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)))


def normalize(mesh, radius=0.9):
    """Centre `mesh` (its bounding box) at the origin and scale it so that its farthest
    vertex is at `radius`: a target of any size fits inside the unit sphere that the
    default camera (distance 2.732, half field of view 30°) sees whole."""
    v = mesh.vertices
    v = v - (v.min(axis=0) + v.max(axis=0)) / 2
    r = np.linalg.norm(v, axis=1).max()
    if r == 0:
        raise ValueError("the target mesh is a single point: all its vertices coincide")
    return Mesh(v * (radius / r), mesh.faces, mesh.colors)


def template(level=3, radius=0.5, seed=0):
    """The start of a reconstruction: an icosphere, turned by a fixed random rotation so
    that no vertex has a coordinate exactly 0 (the bounded parametrisation keeps every
    coordinate on its side of the centre, and a 0 would stay 0)."""
    sphere = icosphere(level, radius)
    rng = np.random.default_rng(seed)
    q = rng.normal(size=4)
    w = 2 * math.acos(abs(q[0]) / np.linalg.norm(q)) * q[1:] / np.linalg.norm(q[1:])
    return Mesh(sphere.vertices @ rotation_matrix(w).T, sphere.faces)


# --------------------------------------------------------------------------- cameras

def spiral_cameras(n, distance=2.732, azimuth_offset=0.0, max_elevation=75.0):
    """n cameras spread evenly over the sphere of directions (a Fibonacci spiral):
    elevation asin(1 − (2k + 1)/n) limited to ±max_elevation, azimuth k · 137.5°.
    Unlike `Camera.orbit`, which circles at one elevation, these see the top and the
    bottom too, which a 3D reconstruction needs."""
    k = np.arange(n)
    el = np.degrees(np.arcsin(1 - (2 * k + 1) / n))
    el = np.clip(el, -max_elevation, max_elevation)
    az = (azimuth_offset + k * 137.50776405003785) % 360.0
    return Camera.look_at(distance=distance, elevation=el, azimuth=az)


def training_cameras(n, distance=2.732):
    return spiral_cameras(n, distance)


def heldout_cameras(n=8, distance=2.732):
    """Cameras not used for fitting: another spiral (other elevations), turned by 61°."""
    return spiral_cameras(n, distance, azimuth_offset=61.0)


# --------------------------------------------------------------------------- small utilities

def with_sigma(renderer, sigma=None, gamma=None):
    """A SoftRenderer like `renderer` with another σ (and/or γ)."""
    return SoftRenderer(image_size=renderer.image_size,
                        sigma=renderer.sigma if sigma is None else sigma,
                        gamma=renderer.gamma if gamma is None else gamma,
                        eps=renderer.eps, near=renderer.near, far=renderer.far,
                        dist_eps=renderer.dist_eps, background=renderer.background,
                        ambient=renderer.ambient, directional=renderer.directional,
                        light_direction=renderer.light_direction, tile=renderer.tile,
                        autodiff=getattr(renderer, "autodiff", False))


def sigma_schedule(start, end, iterations, decay=0.7):
    """σ for each iteration: geometric from `start` to `end` over the first `decay`
    fraction of the iterations, then `end` (SoftRas anneals σ the same way: blurry
    silhouettes pull from far away, sharp ones fit the details)."""
    n = max(int(round(decay * iterations)), 1)
    t = np.minimum(np.arange(iterations) / n, 1.0)
    return start * (end / start) ** t


def lr_schedule(iterations, final=0.1, decay=0.7):
    """Learning-rate multiplier per iteration: 1 while σ anneals (the first `decay`
    fraction), then geometric down to `final`: once σ is sharp, Adam's steps of about
    lr make the silhouette flicker by a pixel, and smaller steps let it settle."""
    n = int(round(decay * iterations))
    t = np.clip((np.arange(iterations) - n) / max(iterations - 1 - n, 1), 0.0, 1.0)
    return final ** t


def per_view_iou(a, b):
    """Mean over views of the IoU of two stacks of binary silhouettes (N, S, S)."""
    return float(np.mean([losses.iou(x, y) for x, y in zip(a, b)]))


def _tape(loss, *owners):
    """`ti.ad.Tape(loss)` that zeroes only the gradients of `owners` (scenes, losses,
    optimisers) instead of every field in the program: the default clear visits every
    field ever made, which costs more than a small render once a session has built a few
    scenes."""
    for o in owners:
        (o.zero_grad if hasattr(o, "zero_grad") else o.clear_grads)()
    return ti.ad.Tape(loss, clear_gradients=False)


def _renderer_for_scene(scene, renderer):
    # Scene.render reads its renderer's σ, γ on every call, so a σ schedule only needs
    # the scene to point at a renderer with the current σ (renderer.py's cache does
    # the same when it reuses a scene).
    scene.renderer = renderer


# --------------------------------------------------------------------------- pose fitting

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


def posed(mesh, rotation, translation=(0.0, 0.0, 0.0)):
    """`mesh` moved by the rigid pose (as Scene.set_pose does it), as a new Mesh."""
    return Mesh(mesh.vertices @ rotation_matrix(rotation).T + np.asarray(translation), mesh.faces,
                mesh.colors)


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


def camera_angle_deg(a, b):
    """The angle (degrees) between the view directions of camera parameters
    a, b = (distance, elevation°, azimuth°)."""
    ea, eb = Camera.look_at(*a).eye()[0], Camera.look_at(*b).eye()[0]
    c = ea @ eb / (np.linalg.norm(ea) * np.linalg.norm(eb))
    return math.degrees(math.acos(np.clip(c, -1.0, 1.0)))


def _to_u8(rgb):
    return np.round(np.clip(np.nan_to_num(rgb), 0.0, 1.0) * 255).astype(np.uint8)


# --------------------------------------------------------------------------- reconstruction

@dataclasses.dataclass
class Reconstruction:
    """The result of `reconstruct` (and `fit_target`, which adds the targets)."""
    mesh: Mesh
    history: dict               # per step: "loss", "silhouette", "color", "geometry", "sigma"
    iou_train: float            # mean per-view IoU of hard silhouettes, training cameras
    iou_heldout: float          # the same on held-out cameras (None without them)
    seconds: float              # optimisation time (not counting the final evaluation)
    iterations: int
    frames: list                # (S, k·S, 3) uint8 snapshots of a few training views
    frame_steps: list           # the step of each frame
    settings: dict
    color_l1_heldout: float = None  # mean |ΔRGB| inside the target silhouettes (fit_color)
    target: Mesh = None
    images: np.ndarray = None           # the training targets (N, S, S, 4)
    cameras: Camera = None
    heldout_images: np.ndarray = None
    heldout_cameras: Camera = None

    def metrics(self):
        """What `softras-taichi fit` writes to metrics.json."""
        m = {"iou_train": self.iou_train, "iou_heldout": self.iou_heldout,
             "seconds": round(self.seconds, 2), "iterations": self.iterations,
             "faces": int(self.mesh.num_faces), "vertices": int(self.mesh.num_vertices),
             "final_loss": self.history["loss"][-1] if self.history["loss"] else None}
        if self.color_l1_heldout is not None:
            m["color_l1_heldout"] = self.color_l1_heldout
        m.update(self.settings)
        return m


DEFAULTS = dict(level=3, iterations=400, lr=0.03, lr_final=0.1, betas=optim.Adam.SOFTRAS_BETAS,
                sigma=(1e-3, 1e-5), gamma=1e-4, lam=1.0, mu=1e-3, flatten=1.0, edge=0.0,
                radius=0.5, parametrisation="bounded")


def reconstruct(images, cameras, heldout_images=None, heldout_cameras=None, fit_color=False,
                level=DEFAULTS["level"], iterations=DEFAULTS["iterations"], lr=DEFAULTS["lr"],
                lr_final=DEFAULTS["lr_final"], betas=DEFAULTS["betas"], sigma=DEFAULTS["sigma"], gamma=DEFAULTS["gamma"],
                lam=DEFAULTS["lam"], mu=DEFAULTS["mu"], flatten=DEFAULTS["flatten"],
                edge=DEFAULTS["edge"], radius=DEFAULTS["radius"],
                parametrisation=DEFAULTS["parametrisation"], seed=0, snapshot_every=10,
                snapshot_views=(0, 1, 2, 3), progress=False, callback=None):
    """Deform a template sphere (icosphere `level`, `radius`) to match `images`
    (N, S, S, 4) seen from `cameras` (N of them).

        L = L_s + lam · L_c + mu · (L_lap + flatten · L_flat + edge · L_edge)

    L_c (and vertex colours, through a sigmoid) only when `fit_color`.  `sigma` is a
    float, or (start, end) for `sigma_schedule`: the default ends at 1e-5, not the
    paper's 1e-4, because at 64 px the soft silhouette of a mesh with small faces is
    visibly larger than its hard one (1 − Π(1 − D) adds up the tails of all the faces
    near an edge), so a fit at σ = 1e-4 comes out thinner than its target.
    Parametrisation "bounded" (SoftRas's) or "free" (optim.py); Adam with `lr`, `betas`,
    the rate decaying to `lr_final` × lr once σ has reached its end (`lr_schedule`).
    `heldout_*` (targets from cameras not used for fitting) give `iou_heldout`.
    `progress` shows a tqdm bar; `callback(step, loss)` runs after every step.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 4:
        raise ValueError(f"images must be (N, S, S, 4) RGBA, got shape {images.shape}")
    N, S = images.shape[0], images.shape[1]
    if len(cameras) != N:
        raise ValueError(f"{N} images but {len(cameras)} cameras")
    if parametrisation not in ("bounded", "free"):
        raise ValueError(f"parametrisation must be 'bounded' or 'free', got {parametrisation!r}")
    start = template(level, radius, seed)
    base = SoftRenderer(image_size=S, gamma=gamma)
    scene = base.scene(start, cameras)
    shape = {"bounded": optim.BoundedOffsets, "free": optim.FreeOffsets}[parametrisation](start.vertices)
    params = [(p, lr) for p in shape.params]
    colors = None
    if fit_color:
        colors = optim.SigmoidColors(np.full((start.num_vertices, 3), 0.5))
        params += [(p, 3 * lr) for p in colors.params]  # a colour step breaks no geometry
    opt = optim.Adam(params, betas=betas)
    tgt = losses.image_field(images)
    sil, col = losses.SilhouetteIoU(N), losses.ColorL1()
    lap, flat = losses.Laplacian(start.faces, start.num_vertices), losses.Flatten(start.faces)
    edges = losses.EdgeLength(start.faces) if edge else None
    loss, aux = losses.scalar_field(), losses.scalar_field()
    sigmas = (np.full(iterations, float(sigma)) if np.isscalar(sigma)
              else sigma_schedule(sigma[0], sigma[1], iterations))
    rates = lr_schedule(iterations, lr_final)
    history = {k: [] for k in ("loss", "silhouette", "color", "geometry", "sigma")}
    snapshot_views = [v for v in snapshot_views if v < N]
    frames, frame_steps = [], []
    bar = _progress(iterations, progress)
    t0 = time.perf_counter()
    for k in range(iterations):
        _renderer_for_scene(scene, with_sigma(base, sigmas[k]))
        with _tape(loss, scene, opt, sil, lap):
            shape.write(scene.vertices)
            if colors is not None:
                colors.write(scene.colors)
            scene.render()
            sil(scene.image, tgt, loss)
            if colors is not None and lam:
                col(scene.image, tgt, loss, weight=lam)
            if mu:
                lap(scene.vertices, loss, weight=mu)
                if flatten:
                    flat(scene.vertices, loss, weight=mu * flatten)
                if edges is not None:
                    edges(scene.vertices, loss, weight=mu * edge)
        # the terms of the loss, for the record: L_s from the IoU sums the tape kept,
        # L_c recomputed outside the tape (cheap, and nothing is differentiated)
        total, ls = float(loss[None]), 1.0 - float(np.mean(sil.ious()))
        lc = 0.0
        if colors is not None:
            aux[None] = 0.0
            col(scene.image, tgt, aux)
            lc = float(aux[None])
        if snapshot_every and (k % snapshot_every == 0 or k == iterations - 1):
            img = scene.image.to_numpy()
            frames.append(np.concatenate([_frame(img[v], colors is not None) for v in snapshot_views], 1))
            frame_steps.append(k)
        opt.scale = rates[k]
        opt.step()
        history["loss"].append(total)
        history["silhouette"].append(ls)
        history["color"].append(lc)
        history["geometry"].append((total - ls - lam * lc) / mu if mu else 0.0)
        history["sigma"].append(float(sigmas[k]))
        if callback is not None:
            callback(k, total)
        if bar is not None:
            bar.set_postfix(loss=f"{total:.4f}", iou=f"{1 - ls:.3f}", sigma=f"{sigmas[k]:.1e}", refresh=False)
            bar.update(1)
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    _renderer_for_scene(scene, base)
    fitted = Mesh(shape.vertices(), start.faces, colors.colors() if colors is not None else None)
    hard = HardRenderer(image_size=S)
    iou_train = per_view_iou(hard.render(fitted, cameras)[..., 3] > 0.5, images[..., 3] > 0.5)
    iou_heldout = color_heldout = None
    if heldout_images is not None:
        held = np.asarray(heldout_images)
        pred = hard.render(fitted, heldout_cameras)
        iou_heldout = per_view_iou(pred[..., 3] > 0.5, held[..., 3] > 0.5)
        if colors is not None:
            inside = held[..., 3] > 0.5
            color_heldout = float(np.abs(pred[..., :3] - held[..., :3])[inside].mean())
    settings = dict(views=N, size=S, level=level, lr=lr, lr_final=lr_final, betas=list(betas),
                    sigma=list(sigma) if not np.isscalar(sigma) else sigma, gamma=gamma, lam=lam,
                    mu=mu, flatten=flatten, edge=edge, parametrisation=parametrisation,
                    fit_color=bool(fit_color), seed=seed)
    return Reconstruction(mesh=fitted, history=history, iou_train=iou_train, iou_heldout=iou_heldout,
                          seconds=seconds, iterations=iterations, frames=frames,
                          frame_steps=frame_steps, settings=settings, color_l1_heldout=color_heldout,
                          images=images, cameras=cameras, heldout_images=heldout_images,
                          heldout_cameras=heldout_cameras)


def _frame(rgba, color):
    """One snapshot tile: the RGB render when fitting colours, else the silhouette."""
    return _to_u8(rgba[..., :3] if color else np.repeat(rgba[..., 3:], 3, axis=-1))


def _progress(total, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="fitting", unit="it", dynamic_ncols=True)


def target_views(mesh, views=24, size=64, heldout=8):
    """Hard (z-buffer) renders of `mesh`: the "photos" a reconstruction fits.
    Returns (train_images, train_cameras, heldout_images, heldout_cameras)."""
    hard = HardRenderer(image_size=size)
    cams, held = training_cameras(views), heldout_cameras(heldout)
    return hard.render(mesh, cams), cams, hard.render(mesh, held), held


def fit_target(mesh, views=24, size=64, heldout=8, normalise=True, **kwargs):
    """Normalise `mesh` (a Mesh or the name of a built-in target) into the unit sphere,
    render its target views (`views` training, `heldout` held-out cameras) and
    reconstruct it; keyword arguments go to `reconstruct`."""
    if isinstance(mesh, str):
        if mesh not in TARGETS:
            raise ValueError(f"unknown target {mesh!r}; built-in targets: {', '.join(TARGETS)}")
        mesh = TARGETS[mesh]()
    target = normalize(mesh) if normalise else mesh
    images, cams, held_images, held_cams = target_views(target, views, size, heldout)
    result = reconstruct(images, cams, held_images, held_cams, **kwargs)
    result.target = target
    return result


# --------------------------------------------------------------------------- pictures

def _figure(rows, cols, width, height):
    # matplotlib's Agg canvas directly: never touches a notebook's plotting backend
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def save_view_grid(result, path, views=4):
    """Target (top) against fit (bottom) on training and held-out views: silhouettes,
    or colours when the fit has them; each column titled with its IoU."""
    hard = HardRenderer(image_size=result.images.shape[1])
    color = result.settings.get("fit_color", False)
    cols = []
    for name, imgs, cams in (("train", result.images, result.cameras),
                             ("held-out", result.heldout_images, result.heldout_cameras)):
        if imgs is None:
            continue
        idx = np.linspace(0, len(imgs) - 1, min(views, len(imgs))).round().astype(int)
        pred = hard.render(result.mesh, cams)
        cols += [(f"{name} {i}", imgs[i], pred[i]) for i in idx]
    fig, axes = _figure(2, len(cols), 1.6 * len(cols), 3.6)
    for j, (title, tgt, pred) in enumerate(cols):
        for i, img in enumerate((tgt, pred)):
            ax = axes[i, j]
            ax.imshow(np.clip(img[..., :3], 0, 1) if color else img[..., 3], cmap="gray",
                      vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, j].set_title(f"{title}\nIoU {losses.iou(tgt[..., 3] > 0.5, pred[..., 3] > 0.5):.3f}",
                             fontsize=8)
    axes[0, 0].set_ylabel("target")
    axes[1, 0].set_ylabel("fit")
    fig.savefig(path)
    return path


def save_loss_curve(result, path):
    """The loss and its silhouette term per step (log scale), with σ on a second axis."""
    fig, axes = _figure(1, 1, 6.0, 3.4)
    ax = axes[0, 0]
    h = result.history
    steps = np.arange(1, len(h["loss"]) + 1)
    ax.semilogy(steps, h["loss"], label="L (total)")
    ax.semilogy(steps, h["silhouette"], label="$L_s$ = 1 − IoU (soft)")
    if result.settings.get("fit_color"):
        ax.semilogy(steps, h["color"], label="$L_c$")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right", fontsize=8)
    ax2 = ax.twinx()
    ax2.semilogy(steps, h["sigma"], color="gray", linestyle=":", label="σ")
    ax2.set_ylabel("σ (dotted)")
    ax.set_title(f"held-out IoU {result.iou_heldout:.3f}" if result.iou_heldout is not None else "")
    fig.savefig(path)
    return path


def save_gif(frames, path, top=None, scale=2, ms=80):
    """An animated GIF of `frames` (H, W, 3) uint8, each under the fixed row `top` (the
    targets), enlarged `scale` times with nearest-neighbour pixels."""
    from PIL import Image

    pics = []
    for f in frames:
        img = f if top is None else np.concatenate([top, f], 0)
        pics.append(Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale),
                                                Image.NEAREST))
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=ms, loop=0)
    return path


def save_outputs(result, out_dir, prefix=""):
    """mesh.obj, target.obj, metrics.json, views.png, loss.png, progress.gif in out_dir
    (each name preceded by `prefix`); returns {what: path}."""
    os.makedirs(out_dir, exist_ok=True)
    path = lambda name: os.path.join(out_dir, prefix + name)  # noqa: E731
    paths = {"mesh": path("mesh.obj")}
    result.mesh.save_obj(paths["mesh"])
    if result.target is not None:
        paths["target"] = path("target.obj")
        result.target.save_obj(paths["target"])
    paths["metrics"] = path("metrics.json")
    with open(paths["metrics"], "w") as fh:
        json.dump(result.metrics(), fh, indent=2)
    paths["views"] = save_view_grid(result, path("views.png"))
    paths["loss"] = save_loss_curve(result, path("loss.png"))
    if result.frames:
        # the snapshots show training views 0-3 (reconstruct's snapshot_views)
        views = [v for v in (0, 1, 2, 3) if v < len(result.images)]
        color = result.settings.get("fit_color", False)
        top = np.concatenate([_frame(result.images[v], color) for v in views], 1)
        paths["gif"] = save_gif(result.frames, path("progress.gif"), top=top)
    return paths


# --------------------------------------------------------------------------- command line

def _load_target(name):
    from .obj import load_obj

    if os.path.exists(name):
        if os.path.isdir(name):
            raise IsADirectoryError(f"target is a directory, expected an OBJ file: {name}")
        return load_obj(name), os.path.splitext(os.path.basename(name))[0]
    if name in TARGETS:
        return TARGETS[name](), name
    raise FileNotFoundError(f"target not found: {name} (not a file, nor a built-in target: "
                            f"{', '.join(TARGETS)})")


def cli_fit(args):
    """`softras-taichi fit TARGET.obj ...` (see cli.py for the flags)."""
    for name in ("views", "size", "heldout", "level"):
        if getattr(args, name) < (0 if name == "level" else 1):
            raise ValueError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.iterations is not None and args.iterations < 1:
        raise ValueError(f"--iterations must be >= 1, got {args.iterations}")
    sigma = args.sigma if args.sigma is not None else list(DEFAULTS["sigma"])
    if len(sigma) not in (1, 2) or not all(s > 0 for s in sigma):
        raise ValueError(f"--sigma takes one value or START END, all > 0; got {sigma}")
    for name in ("gamma", "lr"):
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name} must be > 0, got {getattr(args, name)}")
    for name in ("lam", "mu"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(args, name)}")
    mesh, label = _load_target(args.target)
    iterations = args.iterations or DEFAULTS["iterations"]
    print(f"softras-taichi fit: {label} ({mesh.num_faces} faces), {args.views} views of "
          f"{args.size} px, {iterations} iterations -> {os.path.abspath(args.out)}")
    result = fit_target(mesh, views=args.views, size=args.size, heldout=args.heldout,
                        fit_color=args.color, level=args.level, iterations=iterations,
                        lr=args.lr, sigma=sigma[0] if len(sigma) == 1 else tuple(sigma),
                        gamma=args.gamma, lam=args.lam, mu=args.mu, seed=args.seed,
                        snapshot_every=max(iterations // 40, 1), progress=True)
    result.settings["target"] = label
    paths = save_outputs(result, args.out)
    print(f"IoU train {result.iou_train:.4f}, held-out {result.iou_heldout:.4f}, "
          f"{result.seconds:.1f} s for {result.iterations} iterations")
    for p in paths.values():
        print(f"  {p}")
    return 0
