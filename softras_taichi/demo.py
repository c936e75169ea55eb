"""`softras-taichi demo`: render a built-in mesh and write the Soft Rasterizer's figures.

    sigma_sweep.png   the hard (z-buffer) silhouette beside soft silhouettes at
                      sigma = 0.003, 0.01, 0.03: sigma blurs the edges, which is what
                      gives pixels outside a triangle a gradient (SoftRas, Fig. 3)
    gamma_sweep.png   colour renders "standard" (gamma = 1e-4), "larger gamma" (1e-2)
                      and "larger gamma and sigma" (1e-2, 3e-2): gamma makes the
                      occluded faces show through
    render.png        a 256 x 256 colour render at the SoftRenderer defaults
    pose_fit.png      pose fitting from one image: a cube with a red knob turned 45° from
                      its target pose, the knob hidden behind it at the start; the soft
                      rasterizer's fit (colour + silhouette, and silhouette alone)
                      beside the same loop with the hard rasterizer, which does not move
    pose_fit.gif      the soft fit, frame by frame, beside the target
    recon_*           a multi-view reconstruction of the painted "blob" from 24 views of
                      64 px (silhouettes and colours): recon_views.png (target vs fit,
                      training and held-out views), recon_loss.png, recon_progress.gif,
                      recon_mesh.obj, recon_metrics.json

    import softras_taichi as sr, softras_taichi.demo
    sr.init("cpu"); softras_taichi.demo.run("softras_demo")

Figures are drawn with matplotlib's Agg canvas directly, so calling `run` from a
notebook never changes the notebook's plotting backend.
"""
import os

import numpy as np

SIGMAS = (0.003, 0.01, 0.03)
GAMMA_PANELS = (  # (title, sigma, gamma): the paper's "standard / larger γ / larger γ and σ"
    ("standard\n$\\sigma$=1e-4, $\\gamma$=1e-4", 1e-4, 1e-4),
    ("larger $\\gamma$\n$\\sigma$=1e-4, $\\gamma$=1e-2", 1e-4, 1e-2),
    ("larger $\\gamma$ and $\\sigma$\n$\\sigma$=3e-2, $\\gamma$=1e-2", 3e-2, 1e-2),
)
ELEVATION, AZIMUTH = 30.0, 45.0


def demo_mesh():
    """The built-in target "blob" (an icosphere if the targets are unavailable); a white
    mesh is coloured by position so that blending between front and back faces is visible."""
    import softras_taichi as sr

    mesh = None
    targets = getattr(sr, "TARGETS", None)
    if targets is not None:
        try:
            mesh = targets["blob"]()
        except (KeyError, TypeError):
            mesh = None
    if mesh is None:
        mesh = sr.icosphere(3)
    if not np.all(mesh.colors == 1.0):
        return mesh  # the target comes painted
    v = mesh.vertices
    lo, hi = v.min(axis=0), v.max(axis=0)
    colors = 0.15 + 0.85 * (v - lo) / np.maximum(hi - lo, 1e-12)
    return mesh.with_colors(np.clip(colors, 0.0, 1.0))


def _figure(n, width=2.6, height=2.9):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def _save(fig, path, written):
    fig.savefig(path)
    written.append(path)
    print(f"  {path}")


def run(out_dir="softras_demo", image_size=128, fits=True, recon_iterations=300):
    """Write the figures above to `out_dir` and return their paths; `fits=False` skips
    the pose fit and the reconstruction (the rendering figures only).

    Uses the running Taichi backend (the CLI calls `sr.init(arch)` first).  About two
    minutes on a 2-core CPU, most of it the reconstruction.
    """
    import softras_taichi as sr

    os.makedirs(out_dir, exist_ok=True)
    print(f"softras-taichi demo: writing figures to {os.path.abspath(out_dir)}")
    mesh = demo_mesh()
    cam = sr.Camera.look_at(elevation=ELEVATION, azimuth=AZIMUTH)
    written = []

    # (a) sigma sweep of the silhouette
    hard = sr.HardRenderer(image_size=image_size).render(mesh, cam)[..., 3]
    soft = [sr.SoftRenderer(image_size=image_size, sigma=s).render(mesh, cam)[..., 3] for s in SIGMAS]
    fig, axes = _figure(1 + len(SIGMAS))
    for ax, img, title in zip(axes, [hard] + soft,
                              ["hard rasterizer"] + [f"soft, $\\sigma$ = {s:g}" for s in SIGMAS]):
        ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title)
    fig.suptitle("Silhouettes: larger $\\sigma$ spreads each triangle's influence further")
    _save(fig, os.path.join(out_dir, "sigma_sweep.png"), written)

    # (b) gamma sweep of the colour image
    fig, axes = _figure(len(GAMMA_PANELS), height=3.3)
    for ax, (title, sigma, gamma) in zip(axes, GAMMA_PANELS):
        rgb = sr.SoftRenderer(image_size=image_size, sigma=sigma, gamma=gamma).render(mesh, cam)[..., :3]
        ax.imshow(np.clip(rgb, 0.0, 1.0), interpolation="nearest")
        ax.set_title(title)
    fig.suptitle("Colour: larger $\\gamma$ lets occluded faces show through")
    _save(fig, os.path.join(out_dir, "gamma_sweep.png"), written)

    # (c) one plain 256 px render at the defaults
    from PIL import Image

    rgb = sr.SoftRenderer(image_size=256).render(mesh, cam)[..., :3]
    path = os.path.join(out_dir, "render.png")
    Image.fromarray(np.round(np.clip(np.nan_to_num(rgb), 0.0, 1.0) * 255).astype(np.uint8), "RGB").save(path)
    written.append(path)
    print(f"  {path}")
    if fits:
        written += pose_figures(out_dir)
        written += reconstruction_figures(out_dir, recon_iterations)
    return written


POSE_RUNS = (  # (label, soft?, colour weight): the same loop, three ways
    ("soft, $L_s + L_c$", True, 1.0),
    ("soft, $L_s$ only", True, 0.0),
    ("hard, $L_s$ only", False, 0.0),
)


def pose_figures(out_dir, size=64, iterations=100):
    """pose_fit.png and pose_fit.gif (see the module docstring)."""
    import softras_taichi as sr
    from softras_taichi import fit

    ex = fit.POSE_EXAMPLE
    mesh, cam = fit.knob_cube(), sr.Camera.look_at(**ex["camera"])
    hard = sr.HardRenderer(image_size=size)
    target = hard.render(fit.posed(mesh, ex["true_rotation"]), cam)
    runs = []
    for label, soft, weight in POSE_RUNS:
        res = fit.fit_pose(mesh, target, cam, rotation=ex["start_rotation"], iterations=iterations,
                           renderer=None if soft else sr.HardRenderer(image_size=size),
                           color_weight=weight, snapshot_every=5 if not runs else 0)
        errors = [fit.rotation_error_deg(w, ex["true_rotation"]) for w in res.rotations]
        runs.append((label, res, [fit.rotation_error_deg(ex["start_rotation"], ex["true_rotation"])] + errors))
    best = runs[0][1]
    steps = [0, 10, 20, 40, iterations - 1]
    pics = [hard.render(fit.posed(mesh, best.rotations[k], np.zeros(3)), cam) for k in steps]

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    written = []
    fig = Figure(figsize=(2.0 * (len(steps) + 1) + 4.0, 2.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, len(steps) + 3)
    for i, (k, img) in enumerate(zip(steps, pics)):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(np.clip(img[..., :3], 0, 1), interpolation="nearest")
        err = runs[0][2][k + 1] if k else runs[0][2][0]
        name = "start" if k == 0 else f"step {k + 1}"
        ax.set_title(f"{name}\n{err:.1f}°", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = fig.add_subplot(grid[0, len(steps)])
    ax.imshow(np.clip(target[..., :3], 0, 1), interpolation="nearest")
    ax.set_title("target", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax = fig.add_subplot(grid[0, len(steps) + 1:])
    for label, _, errors in runs:
        ax.plot(errors, label=label)
    ax.axhline(3.0, color="gray", linestyle=":", linewidth=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("rotation error (°)")
    ax.legend(fontsize=8)
    fig.suptitle("Pose fitting from one image; the red knob is hidden at the start")
    _save(fig, os.path.join(out_dir, "pose_fit.png"), written)

    from softras_taichi.fit import save_gif, _to_u8

    tgt = _to_u8(target[..., :3])
    path = save_gif([np.concatenate([f, tgt], 1) for f in best.frames],
                    os.path.join(out_dir, "pose_fit.gif"), scale=3, ms=100)
    written.append(path)
    print(f"  {path}")
    return written


def reconstruction_figures(out_dir, iterations=300, target="blob"):
    """recon_* (see the module docstring): the painted target from 24 views of 64 px."""
    from softras_taichi import fit

    result = fit.fit_target(target, views=24, size=64, fit_color=True, iterations=iterations,
                            snapshot_every=max(iterations // 40, 1), progress=True)
    result.settings["target"] = target
    paths = fit.save_outputs(result, out_dir, prefix="recon_")
    paths.pop("target", None)
    os.remove(os.path.join(out_dir, "recon_target.obj"))
    print(f"  reconstruction of {target!r}: IoU train {result.iou_train:.3f}, "
          f"held-out {result.iou_heldout:.3f}, {result.seconds:.0f} s")
    for p in paths.values():
        print(f"  {p}")
    return list(paths.values())
