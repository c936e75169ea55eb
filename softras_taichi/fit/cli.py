"""`softras-taichi fit`: a TARGET.obj (or built-in target), or your own images and cameras.

    softras-taichi fit TARGET.obj --views 24 --size 64 --out DIR
    softras-taichi fit --images IMAGES --cameras CAMERAS [--convention softras] --heldout-every 4 --out DIR

Both write DIR/mesh.obj, DIR/metrics.json, DIR/views.png, DIR/loss.png, DIR/progress.gif.
"""
import os

from ..primitives import TARGETS
from .figures import save_outputs
from .recipes import RECIPES
from .reconstruct import fit_target, fit_views


def _load_target(name):
    from ..obj import load_obj

    if os.path.exists(name):
        if os.path.isdir(name):
            raise IsADirectoryError(f"target is a directory, expected an OBJ file: {name}")
        return load_obj(name), os.path.splitext(os.path.basename(name))[0]
    if name in TARGETS:
        return TARGETS[name](), name
    raise FileNotFoundError(f"target not found: {name} (not a file, nor a built-in target: "
                            f"{', '.join(TARGETS)})")


def _check(args):
    """Every flag checked before anything is computed (one-line errors)."""
    if (args.target is None) == (args.images is None):
        raise ValueError("give either TARGET.obj or --images IMAGES --cameras CAMERAS (not both, not neither)")
    if args.images is not None and args.cameras is None:
        raise ValueError("--images needs --cameras CAMERAS (.npy of (N, 3) distance, elevation, azimuth, "
                         "or a .csv/.json with those columns)")
    if args.images is None:
        for name in ("cameras", "convention", "viewing_angle", "heldout_every"):
            if getattr(args, name) is not None:
                raise ValueError(f"--{name.replace('_', '-')} goes with --images; with TARGET.obj the "
                                 "cameras are made here (--views, --heldout)")
    for name in ("views", "size", "heldout"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.level is not None and not 0 <= args.level <= 6:
        raise ValueError(f"--level must lie between 0 and 6 (20*4^level faces), got {args.level}")
    if args.iterations is not None and args.iterations < 1:
        raise ValueError(f"--iterations must be >= 1, got {args.iterations}")
    if args.sigma is not None and (len(args.sigma) not in (1, 2) or not all(s > 0 for s in args.sigma)):
        raise ValueError(f"--sigma takes one value or START END, all > 0; got {args.sigma}")
    for name in ("gamma", "lr"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise ValueError(f"--{name} must be > 0, got {value}")
    for name in ("lam", "mu"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise ValueError(f"--{name} must be >= 0, got {value}")
    if args.method not in RECIPES:
        raise ValueError(f"--method must be one of {', '.join(RECIPES)}, got {args.method!r}")


def cli_fit(args):
    """`softras-taichi fit ...` (see cli.py for the flags)."""
    _check(args)
    recipe = RECIPES[args.method]
    iterations = args.iterations or recipe.iterations
    sigma = None if args.sigma is None else (args.sigma[0] if len(args.sigma) == 1 else tuple(args.sigma))
    kw = dict(method=args.method, fit_color=args.color, level=args.level, iterations=iterations,
              lr=args.lr, sigma=sigma, gamma=args.gamma, lam=args.lam, mu=args.mu, seed=args.seed,
              snapshot_every=max(iterations // 40, 1), progress=True)
    if args.images is not None:
        from ..views import load_views

        views = load_views(args.images, args.cameras, convention=args.convention or "softras-taichi",
                           viewing_angle=args.viewing_angle)
        S = views.images.shape[1]
        print(f"softras-taichi fit: {len(views)} views of {S} px from {args.images} "
              f"({views.convention} cameras from {args.cameras}), {args.method}, {iterations} iterations "
              f"-> {os.path.abspath(args.out)}")
        result = fit_views(views, heldout_every=args.heldout_every, **kw)
        result.settings.update(images=os.path.abspath(args.images), cameras=os.path.abspath(args.cameras))
    else:
        mesh, label = _load_target(args.target)
        print(f"softras-taichi fit: {label} ({mesh.num_faces} faces), {args.views} views of "
              f"{args.size} px, {args.method}, {iterations} iterations -> {os.path.abspath(args.out)}")
        result = fit_target(mesh, views=args.views, size=args.size, heldout=args.heldout, **kw)
        result.settings["target"] = label
    paths = save_outputs(result, args.out)
    held = "none held out" if result.iou_heldout is None else f"held-out {result.iou_heldout:.4f}"
    print(f"IoU train {result.iou_train:.4f}, {held}, {result.seconds:.1f} s for {result.iterations} iterations")
    for p in paths.values():
        print(f"  {p}")
    return 0
