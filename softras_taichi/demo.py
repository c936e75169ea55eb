"""`softras-taichi demo`: render a built-in mesh and write the Soft Rasterizer's figures.

    sigma_sweep.png   the hard (z-buffer) silhouette beside soft silhouettes at
                      sigma = 0.003, 0.01, 0.03: sigma blurs the edges, which is what
                      gives pixels outside a triangle a gradient (SoftRas, Fig. 3)
    gamma_sweep.png   colour renders "standard" (gamma = 1e-4), "larger gamma" (1e-2)
                      and "larger gamma and sigma" (1e-2, 3e-2): gamma makes the
                      occluded faces show through
    render.png        a 256 x 256 colour render at the SoftRenderer defaults

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


def run(out_dir="softras_demo", image_size=128):
    """Write sigma_sweep.png, gamma_sweep.png and render.png to `out_dir`; return their paths.

    Uses the running Taichi backend (the CLI calls `sr.init(arch)` first).
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
    return written
