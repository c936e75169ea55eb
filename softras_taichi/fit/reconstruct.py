"""Multi-view reconstruction: deform a template sphere until its renders from N
cameras match N target images (silhouettes; colours too with `fit_color`),

    L = L_s + λ L_c + μ L_g,     L_g = L_lap + L_flat (+ w_edge L_edge)

with SoftRas's recipe: the bounded parametrisation, Adam with betas (0.5, 0.99), and
σ decaying geometrically from a blurry start (σ = 1e-3: every pixel within a few of
the mesh pulls on it) to a sharp end.  The end is σ = 1e-5, not the paper's 1e-4:
at 64 px the soft silhouette of a mesh with small faces is visibly larger than the
hard one (1 − Π(1 − D) adds up the tails of every face near an edge; the targets'
own soft and hard silhouettes agree only to IoU 0.87–0.94 at σ = 1e-4), so a fit
that ends at 1e-4 comes out thinner than its target.  `COURSE_SETTING` holds this
course's loss weights and view count (64 views, λ = 1, μ = 1e-3; docs/math.md,
"Reconstruction settings"); the official examples/demo_deform.py fits 120 views with
L_s + 0.03 L_lap + 3e-4 L_flat instead.  The quality measure is the IoU of hard silhouettes on held-out cameras
(views not used for fitting).
"""
import dataclasses
import time

import numpy as np

from .. import fields, losses, optim
from ..camera import Camera
from ..mesh import Mesh
from ..primitives import TARGETS, _subdivide
from ..renderer import HardRenderer
from .cameras import heldout_cameras, training_cameras
from .geometry import normalize, template
from .figures import _frame
from .large_steps import LargeSteps, UniformAdam
from .recipes import DEFAULT_METHOD, RECIPES, Recipe
from .remesh import split_long_edges
from .schedules import fit_renderer, _renderer_for_scene, _tape, lr_schedule, per_view_iou, sigma_schedule, with_sigma

# This course's reconstruction setting, not the paper's (docs/math.md, "Reconstruction
# settings", says where each number comes from): fit.fit_target(mesh, **fit.COURSE_SETTING)
# (or `softras-taichi fit MESH --views 64 --lam 1 --mu 1e-3`).
COURSE_SETTING = {"views": 64, "lam": 1.0, "mu": 1e-3}


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
    checkpoints: list = None            # (steps done, training IoU) measured in the sharp phase

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


GEOMETRY_FACES = 1280  # faces of the level-3 template that μ is quoted for
BEST_EVERY = 10        # steps between two measurements of the training IoU in the sharp phase


def _recipe(method, overrides):
    if method not in RECIPES:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(RECIPES)}")
    names = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown setting(s) {', '.join(unknown)}; a Recipe has {', '.join(sorted(names))}")
    recipe = dataclasses.replace(RECIPES[method], **{k: v for k, v in overrides.items() if v is not None})
    if recipe.parametrisation not in ("bounded", "free", "large-steps"):
        raise ValueError(f"parametrisation must be 'bounded', 'free' or 'large-steps', "
                         f"got {recipe.parametrisation!r}")
    start = recipe.level if recipe.start_level is None else recipe.start_level
    if not 0 <= start <= recipe.level:
        raise ValueError(f"start_level must lie between 0 and level ({recipe.level}), got {start}")
    if recipe.iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {recipe.iterations}")
    return recipe


def stages(recipe):
    """[(what, first iteration, end)] of a run: "start", then "subdivide" for each level
    of a coarse-to-fine run (evenly over the first `refine_until` of the iterations),
    and "split" at each fraction of `split_at` (long edges split, remesh.py)."""
    first = recipe.level if recipe.start_level is None else recipe.start_level
    n, T = recipe.level - first + 1, recipe.iterations
    events = [(0, "start")]
    events += [(int(round(T * recipe.refine_until * s / (n - 1))), "subdivide") for s in range(1, n)]
    events += [(int(round(T * f)), "split") for f in recipe.split_at]
    events.sort(key=lambda e: e[0])
    out = []
    for (k, what), nxt in zip(events, [e[0] for e in events[1:]] + [T]):
        if nxt > k or what == "subdivide":
            out.append((what, k, max(k, nxt)))
    return out


def _batches(n, batch, iterations, first, snapshot_every, seed):
    """The views of each step: all of them, or `batch` at a time, each view once per
    round (a shuffled cycle), and the snapshot views `first` first on snapshot steps."""
    if batch >= n:
        return [np.arange(n)] * iterations
    rng = np.random.default_rng(seed)
    order, out = [], []
    for k in range(iterations):
        if len(order) < batch:
            order += list(rng.permutation(n))
        take, order = order[:batch], order[batch:]
        if snapshot_every and (k % snapshot_every == 0 or k == iterations - 1):
            take = list(first) + [v for v in take if v not in first]
            take = (take + [v for v in range(n) if v not in take])[:batch]
        out.append(np.array(take))
    return out


def _cameras(cameras, index):
    p = cameras.params[index]
    return Camera(p[:, 0], p[:, 1], p[:, 2], cameras.viewing_angle[index], batched=True)


def split(mesh, max_length, rounds=3, max_faces=None):
    """Edges longer than `max_length` split at their midpoints (`rounds` rounds of
    remesh.split_long_edges); returns (mesh, number of edges split)."""
    v, f, c, total = mesh.vertices, mesh.faces, mesh.colors, 0
    for _ in range(rounds):
        v, f, c, n = split_long_edges(v, f, max_length, max_faces=max_faces, attributes=c)
        total += n
        if not n:
            break
    return Mesh(v, f, c), total


def subdivide(mesh):
    """Every face split into 4 at its edge midpoints; positions and colours interpolated."""
    both, faces = _subdivide(np.concatenate([mesh.vertices, mesh.colors], axis=1), mesh.faces)
    return Mesh(both[:, :3], faces, both[:, 3:])


class _Stage:
    """The fields, parameters and losses of one level: a Scene of that mesh, its
    parametrisation, optimisers and geometry losses."""

    def __init__(self, recipe, mesh, renderer, cameras, n_views, fit_color):
        self.recipe, self.faces = recipe, mesh.faces
        self.scene = renderer.scene(mesh, cameras)
        params, self.large = [], None
        if recipe.parametrisation == "large-steps":
            self.large = LargeSteps(mesh.vertices, mesh.faces, recipe.smoothing)
            self.uniform = UniformAdam(self.large.u.shape, recipe.lr, recipe.betas, per=recipe.adam_per)
        else:
            kind = {"bounded": optim.BoundedOffsets, "free": optim.FreeOffsets}[recipe.parametrisation]
            self.shape = kind(mesh.vertices)
            params += [(p, recipe.lr) for p in self.shape.params]
        self.colors = None
        if fit_color:
            self.colors = optim.SigmoidColors(mesh.colors)
            params += [(p, recipe.color_lr) for p in self.colors.params]  # a colour step breaks no geometry
        self.opt = optim.Adam(params, betas=recipe.betas) if params else None
        self.lap = losses.Laplacian(mesh.faces, mesh.num_vertices)
        self.flat = losses.Flatten(mesh.faces)
        self.edges = losses.EdgeLength(mesh.faces) if recipe.edge else None

    def owners(self):
        return [o for o in (self.scene, self.opt, self.lap) if o is not None]

    def before_tape(self):
        if self.large is not None:
            self.scene.set_vertices(self.large.vertices())

    def write(self):
        """Parameters -> scene fields, under the tape."""
        if self.large is None:
            self.shape.write(self.scene.vertices)
        if self.colors is not None:
            self.colors.write(self.scene.colors)

    def geometry(self, loss):
        r = self.recipe
        # L_lap and L_flat are sums over vertices and edges: 4× the terms per level.
        # Weighed per face of a level-3 sphere, μ means the same at any level (at
        # level 3, exactly SoftRas's sums), so a finer template is not held back harder.
        mu = r.mu * (GEOMETRY_FACES / len(self.faces) if r.mu_per_face else 1.0)
        if mu:
            self.lap(self.scene.vertices, loss, weight=mu)
            if r.flatten:
                self.flat(self.scene.vertices, loss, weight=mu * r.flatten)
            if self.edges is not None:
                self.edges(self.scene.vertices, loss, weight=mu * r.edge)

    def step(self, scale):
        if self.opt is not None:
            self.opt.scale = scale
            self.opt.step()
        if self.large is not None:
            self.uniform.scale = scale
            self.uniform.step(self.large.u, self.large.gradient(self.scene.vertices.grad.to_numpy()))

    def mesh(self):
        v = self.large.vertices() if self.large is not None else self.shape.vertices()
        return Mesh(v, self.faces, self.colors.colors() if self.colors is not None else None)


@fields.borrowing
def reconstruct(images, cameras, heldout_images=None, heldout_cameras=None, fit_color=False,
                method=DEFAULT_METHOD, seed=0, snapshot_every=10, snapshot_views=(0, 1, 2, 3),
                progress=False, callback=None, **settings):
    """Deform a template sphere to match `images` (N, S, S, 4) seen from `cameras` (N).

        L = L_s + lam · L_c + mu · (L_lap + flatten · L_flat + edge · L_edge)

    `method` picks a `Recipe` from RECIPES ("softras": SoftRas's bounded
    parametrisation; "large-steps": Nicolet et al.'s); keyword `settings` override
    its fields (level=, iterations=, lr=, sigma=, mu=, ...; see `Recipe`; None keeps
    the recipe's value).  L_c (and vertex
    colours, through a sigmoid) only when `fit_color`.  σ's default end is 1e-5, not
    the paper's 1e-4, because at 64 px the soft silhouette of a mesh with small faces
    is visibly larger than its hard one (1 − Π(1 − D) adds up the tails of all the
    faces near an edge), so a fit at σ = 1e-4 comes out thinner than its target.
    `heldout_*` (targets from cameras not used for fitting) give `iou_heldout`.
    `progress` shows a tqdm bar; `callback(step, loss)` runs after every step.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 4:
        raise ValueError(f"images must be (N, S, S, 4) RGBA, got shape {images.shape}")
    N, S = images.shape[0], images.shape[1]
    if len(cameras) != N:
        raise ValueError(f"{N} images but {len(cameras)} cameras")
    recipe = _recipe(method, settings)
    r, T = recipe, recipe.iterations
    plan = stages(recipe)
    start = r.level if r.start_level is None else r.start_level
    mesh = template(start, r.radius, seed).with_colors(np.full(3, 0.5))
    pixel = 2 * cameras.params[:, 0].mean() * np.tan(np.radians(cameras.viewing_angle.mean())) / S
    base = fit_renderer(S, r.gamma, color=fit_color)
    B = N if not r.batch or r.batch >= N else int(r.batch)
    batches = _batches(N, B, T, [v for v in snapshot_views if v < N], snapshot_every, seed)
    tgt = losses.image_field(images[:B])
    stack = images.astype(losses._np_float()) if B < N else None
    sil, col = losses.SilhouetteIoU(B), losses.ColorL1()
    loss, aux = losses.scalar_field(), losses.scalar_field()
    sigmas = (np.full(T, float(r.sigma)) if np.isscalar(r.sigma) else sigma_schedule(r.sigma[0], r.sigma[1], T))
    rates = lr_schedule(T, r.lr_final)
    history = {k: [] for k in ("loss", "silhouette", "color", "geometry", "sigma", "faces")}
    snapshot_views = [v for v in snapshot_views if v < N]
    frames, frame_steps = [], []
    bar = _progress(T, progress)
    t0 = time.perf_counter()
    stage = None
    # Keep the best: once σ has reached its end (the last 30 % of the run), the hard
    # training IoU of the mesh is measured every BEST_EVERY steps and the best mesh is
    # the result, so a silhouette that flickers by a pixel in the long sharp phase (the
    # insect's one-pixel legs at 800 steps) cannot end the fit on a bad step.  Only
    # training views are used: held-out views stay unseen.
    hard = HardRenderer(image_size=S)
    masks = images[..., 3] > 0.5
    settle = int(round(0.7 * T))
    best, checks = (-1.0, None, None), []
    for what, first, end in plan:
        if what == "subdivide":
            mesh = subdivide(stage.mesh())
        elif what == "split":
            mesh, n = split(stage.mesh(), r.max_edge * pixel, max_faces=r.max_faces)
            if not n:
                continue  # nothing grew long: keep the stage (and its optimiser state)
        if what != "split" or stage is None or first < end:
            stage = _Stage(recipe, mesh, base, _cameras(cameras, batches[first]), B, fit_color)
        scene = stage.scene
        for k in range(first, end):
            _renderer_for_scene(scene, with_sigma(base, sigmas[k]))
            if B < N:  # this step's views
                scene.set_camera(_cameras(cameras, batches[k]))
                tgt.from_numpy(stack[batches[k]])
            stage.before_tape()
            with _tape(loss, *stage.owners(), sil):
                stage.write()
                scene.render()
                sil(scene.image, tgt, loss)
                if fit_color and r.lam:
                    col(scene.image, tgt, loss, weight=r.lam)
                stage.geometry(loss)
            # the terms of the loss, for the record: L_s from the IoU sums the tape kept,
            # L_c recomputed outside the tape (cheap, and nothing is differentiated)
            total, ls = float(loss[None]), 1.0 - float(np.mean(sil.ious()))
            lc = 0.0
            if fit_color:
                aux[None] = 0.0
                col(scene.image, tgt, aux)
                lc = float(aux[None])
            if snapshot_every and (k % snapshot_every == 0 or k == T - 1):
                img = scene.image.to_numpy()
                frames.append(np.concatenate([_frame(img[i], fit_color) for i in range(len(snapshot_views))], 1))
                frame_steps.append(k)
            stage.step(rates[k])
            if k >= settle and ((k - settle) % BEST_EVERY == 0 or k == T - 1):
                m = stage.mesh()
                score = per_view_iou(hard.render(Mesh(m.vertices, m.faces), cameras)[..., 3] > 0.5, masks)
                checks.append((k + 1, score))
                if score > best[0]:
                    best = (score, m, k + 1)
            history["loss"].append(total)
            history["silhouette"].append(ls)
            history["color"].append(lc)
            history["geometry"].append((total - ls - r.lam * lc) / r.mu if r.mu else 0.0)
            history["sigma"].append(float(sigmas[k]))
            history["faces"].append(int(len(stage.faces)))
            if callback is not None:
                callback(k, total)
            if bar is not None:
                bar.set_postfix(loss=f"{total:.4f}", iou=f"{1 - ls:.3f}", sigma=f"{sigmas[k]:.1e}", refresh=False)
                bar.update(1)
        _renderer_for_scene(scene, base)
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    fitted = best[1] if best[1] is not None else stage.mesh()
    if not fit_color:
        fitted = Mesh(fitted.vertices, fitted.faces)
    iou_train = per_view_iou(hard.render(fitted, cameras)[..., 3] > 0.5, masks)
    iou_heldout = color_heldout = None
    if heldout_images is not None:
        held = np.asarray(heldout_images)
        pred = hard.render(fitted, heldout_cameras)
        iou_heldout = per_view_iou(pred[..., 3] > 0.5, held[..., 3] > 0.5)
        if fit_color:
            inside = held[..., 3] > 0.5
            color_heldout = float(np.abs(pred[..., :3] - held[..., :3])[inside].mean())
    settings = dict(dataclasses.asdict(recipe), method=method, views=N, size=S,
                    fit_color=bool(fit_color), seed=seed, stages=[list(p) for p in plan], faces_final=int(fitted.num_faces),
                    best_step=best[2])
    settings["betas"] = list(recipe.betas)
    settings["sigma"] = recipe.sigma if np.isscalar(recipe.sigma) else list(recipe.sigma)
    return Reconstruction(mesh=fitted, history=history, iou_train=iou_train, iou_heldout=iou_heldout,
                          seconds=seconds, iterations=T, frames=frames,
                          frame_steps=frame_steps, settings=settings, color_l1_heldout=color_heldout,
                          images=images, cameras=cameras, heldout_images=heldout_images,
                          heldout_cameras=heldout_cameras, checkpoints=checks)


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


def fit_views(views, heldout_every=None, **kwargs):
    """Reconstruct from loaded `views` (sr.load_views): every `heldout_every`-th view is
    held out (not fitted; it gives `iou_heldout`), the others are fitted; keyword
    arguments go to `reconstruct`."""
    train, held = views.split(heldout_every)
    result = reconstruct(train.images, train.cameras, None if held is None else held.images,
                         None if held is None else held.cameras, **kwargs)
    result.settings.update(convention=views.convention, heldout_every=heldout_every or 0,
                           viewing_angle=sorted(set(float(a) for a in views.viewing_angle)))
    return result


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
