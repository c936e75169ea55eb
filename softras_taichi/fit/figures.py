"""The pictures of a fit: target against fit, the loss curve, the progress GIF, and the output folder."""
import json
import os

import numpy as np

from .. import losses
from ..renderer import HardRenderer
from .schedules import _to_u8


def _frame(rgba, color):
    """One snapshot tile: the RGB render when fitting colours, else the silhouette
    (the alpha channel of RGBA, or a silhouette renderer's (S, S) image)."""
    alpha = rgba[..., None] if rgba.ndim == 2 else rgba[..., 3:]
    return _to_u8(rgba[..., :3] if color else np.repeat(alpha, 3, axis=-1))


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
