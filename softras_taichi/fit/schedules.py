"""σ and learning-rate schedules, and the small pieces every fitting loop shares."""
import numpy as np
import taichi as ti

from .. import losses
from ..renderer import SilhouetteRenderer, SoftRenderer


def with_sigma(renderer, sigma=None, gamma=None):
    """A renderer like `renderer` (of the same class) with another σ (and/or γ)."""
    return type(renderer)(image_size=renderer.image_size,
                        sigma=renderer.sigma if sigma is None else sigma,
                        gamma=renderer.gamma if gamma is None else gamma,
                        eps=renderer.eps, near=renderer.near, far=renderer.far,
                        dist_eps=renderer.dist_eps, background=renderer.background,
                        ambient=renderer.ambient, directional=renderer.directional,
                        light_direction=renderer.light_direction, tile=renderer.tile,
                        autodiff=getattr(renderer, "autodiff", False))


def fit_renderer(image_size, gamma=1e-4, color=True):
    """The soft renderer a fit draws with: the one place to choose it.  A fit of
    silhouettes alone (color=False) reads only the alpha channel, so it draws with the
    SilhouetteRenderer (same constructor, alpha only: the same silhouette and gradients,
    without the colour and depth work); a colour fit needs the SoftRenderer's RGBA."""
    return (SoftRenderer if color else SilhouetteRenderer)(image_size=image_size, gamma=gamma)


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


def _to_u8(rgb):
    return np.round(np.clip(np.nan_to_num(rgb), 0.0, 1.0) * 255).astype(np.uint8)
