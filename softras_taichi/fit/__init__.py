"""Recovering 3D from images by gradient descent through the soft rasterizer.

Two jobs, both the same loop:

    with ti.ad.Tape(loss):             (schedules._tape: the same, zeroing fewer gradients)
        parameters -> scene fields      (a parametrisation kernel, optim.py)
        scene.render()                  (the soft rasterizer)
        loss kernels                    (losses.py)
    optimiser.step()                    (Adam over the parameters)

One module per idea:

    geometry.py     axis-angle rotations, normalising a target, the template sphere
    cameras.py      the training and held-out cameras (Fibonacci spirals)
    schedules.py    σ and learning-rate schedules, the shared tape
    recipes.py      Recipe: how a reconstruction optimises; RECIPES by name
    large_steps.py  Nicolet et al.'s preconditioned parametrisation, UniformAdam
    remesh.py       splitting the edges that grow long
    pose.py         pose fitting from one image (fit_pose)
    reconstruct.py  multi-view reconstruction (reconstruct, fit_target, fit_views)
    quality.py      the README's table (python -m softras_taichi.fit.quality)
    figures.py      views.png, loss.png, progress.gif, metrics.json (save_outputs)
    cli.py          `softras-taichi fit`

    import softras_taichi as sr
    from softras_taichi import fit
    sr.init("cpu")
    result = fit.fit_target(sr.TARGETS["blob"](), views=24, size=64)
    result.iou_heldout, result.mesh

    views = sr.load_views("source.npy", "camera.npy", convention="softras")   # your own views
    result = fit.fit_views(views, heldout_every=4)                            # every 4th held out
    result = fit.fit_views(views, method="softras")                           # SoftRas's recipe
"""
from .cameras import heldout_cameras, spiral_cameras, training_cameras
from .cli import cli_fit
from .figures import save_gif, save_loss_curve, save_outputs, save_view_grid
from .geometry import axis_angle, camera_angle_deg, normalize, posed, rotation_error_deg, rotation_matrix, template
from .pose import POSE_EXAMPLE, PoseFit, fit_pose, knob_cube
from .recipes import DEFAULT_METHOD, DEFAULTS, RECIPES, Recipe
from .reconstruct import COURSE_SETTING, Reconstruction, fit_target, fit_views, reconstruct, split, stages, subdivide, target_views
from .schedules import _tape, _to_u8, lr_schedule, per_view_iou, sigma_schedule, with_sigma
