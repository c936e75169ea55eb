"""The `softras-taichi` command line (also `python -m softras_taichi`).

    softras-taichi render MESH.obj --elevation 30 --azimuth 45 --size 256 --out img.png
    softras-taichi fit TARGET.obj --views 24 --size 64 --out DIR
    softras-taichi fit --images IMAGES --cameras CAMERAS [--convention softras] [--heldout-every K] --out DIR
    softras-taichi demo [--out DIR]
    softras-taichi grade NOTEBOOK.ipynb --solutions DIR --json OUT.json   (or a FOLDER: --csv OUT.csv)
    softras-taichi export --nbgrader DIR | --otter DIR | --canvas OUT.csv --gradebook grades.csv
    softras-taichi exercises [--solutions DIR] [--out DIR] [--check]

render, fit and demo take `--arch {auto,cpu,cuda,vulkan,metal}` (default auto) and start
Taichi with `sr.init(arch)` before doing anything else; grade passes it on to each
notebook's sandboxed process (TI_ARCH, default cpu), and exercises needs no Taichi at all.  Bad input (a missing file, a
wrong value) prints one line `softras-taichi: error: ...` and exits with status 2.
"""
import argparse
import importlib
import os
import sys

PROG = "softras-taichi"
ARCH_CHOICES = ("auto", "cpu", "cuda", "vulkan", "metal")


class CLIError(Exception):
    """An error to report as `softras-taichi: error: <message>` with an exit status."""

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- parser

def _targets():
    from .primitives import TARGETS

    return list(TARGETS)


def _methods():
    from .fit.recipes import RECIPES

    return list(RECIPES)


def _default_method():
    from .fit.recipes import DEFAULT_METHOD

    return DEFAULT_METHOD


def _method_help():
    from .fit.recipes import METHOD_HELP

    return [f"{k}: {v}" for k, v in METHOD_HELP.items()]


def _add_arch(p):
    p.add_argument("--arch", default="auto", choices=ARCH_CHOICES,
                   help="Taichi backend; 'auto' prefers a GPU and falls back to the CPU (default: auto)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The Soft Rasterizer (Liu et al., ICCV 2019) in Taichi: render, fit, demo, grade.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("render", help="render an OBJ mesh with the soft rasterizer to a PNG or NPY image",
                       description="Render MESH.obj (as it is, not normalised) from a look-at camera. "
                                   ".png writes 8-bit RGBA, .npy writes the float32 (S,S,4) RGBA array.")
    p.add_argument("mesh", metavar="MESH.obj", help="Wavefront OBJ file")
    p.add_argument("--elevation", type=float, default=30.0, help="camera elevation in degrees (default: 30)")
    p.add_argument("--azimuth", type=float, default=0.0, help="camera azimuth in degrees (default: 0)")
    p.add_argument("--distance", type=float, default=2.732,
                   help="camera distance from the origin (default: 2.732)")
    p.add_argument("--viewing-angle", type=float, default=30.0,
                   help="half field of view in degrees (default: 30)")
    p.add_argument("--size", type=int, default=256, help="image size S in pixels, S x S (default: 256)")
    p.add_argument("--sigma", type=float, default=1e-4, help="sharpness sigma of the probability map (default: 1e-4)")
    p.add_argument("--gamma", type=float, default=1e-4, help="depth-blending temperature gamma (default: 1e-4)")
    p.add_argument("--out", default="render.png", metavar="IMG.png|IMG.npy",
                   help="output file; the extension picks the format (default: render.png)")
    _add_arch(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("fit", help="reconstruct a mesh from TARGET.obj's renders, or from your own images and cameras",
                       description="Deform a sphere by gradient descent through the soft rasterizer until its "
                                   "silhouettes (and colours, --color) match the views, and write DIR/mesh.obj, "
                                   "DIR/metrics.json, DIR/views.png (target vs fit), DIR/loss.png and "
                                   "DIR/progress.gif.  Either TARGET.obj (normalised into the unit sphere and "
                                   "rendered from VIEWS training and HELDOUT other cameras), or --images and "
                                   "--cameras (your own views; --heldout-every K holds out every K-th).  "
                                   "Loss: L_s + lam*L_c + mu*(Laplacian + flatten).")
    p.add_argument("target", metavar="TARGET.obj", nargs="?", default=None,
                   help="target OBJ file (any scale), or a built-in target: " + ", ".join(_targets()))
    p.add_argument("--images", default=None, metavar="IMAGES",
                   help="your views instead of a TARGET: a .npy of (N,S,S,4) or (N,4,S,S), uint8 0-255 or "
                        "float 0-1, or a folder of N PNGs sorted by name (RGBA: alpha is the silhouette; or "
                        "one-channel masks)")
    p.add_argument("--cameras", default=None, metavar="CAMERAS",
                   help="with --images: a .npy of (N,3) distance, elevation, azimuth in degrees, or a "
                        ".csv/.json with those columns and optionally viewing_angle")
    p.add_argument("--convention", default=None, choices=("softras-taichi", "softras", "pytorch3d"),
                   help="with --images: the cameras' and images' convention: softras-taichi or pytorch3d "
                        "(this package's, PyTorch3D's look-at), or softras (the official code's: its image at "
                        "(el, az) is the mirror of this package's at (el, 180-az)) (default: softras-taichi)")
    p.add_argument("--viewing-angle", type=float, default=None, metavar="DEG",
                   help="with --images: half field of view in degrees, overriding the cameras file "
                        "(default: the file's, else 30; the official demo_deform renders with 15)")
    p.add_argument("--heldout-every", type=int, default=None, metavar="K",
                   help="with --images: hold out every K-th view (not fitted; gives iou_heldout) (default: none)")
    p.add_argument("--views", type=int, default=24, help="TARGET: number of training views (default: 24)")
    p.add_argument("--heldout", type=int, default=8,
                   help="TARGET: number of held-out views, other cameras, for iou_heldout (default: 8)")
    p.add_argument("--size", type=int, default=64, help="TARGET: image size in pixels (default: 64)")
    p.add_argument("--out", default="softras_fit", metavar="DIR", help="output folder (default: softras_fit)")
    p.add_argument("--method", default=_default_method(), choices=_methods(),
                   help="the optimisation recipe: " + "; ".join(_method_help()) + f" (default: {_default_method()})")
    p.add_argument("--iterations", type=int, default=None, help="optimisation steps (default: the method's)")
    p.add_argument("--color", action="store_true",
                   help="fit vertex colours too, with the colour loss L_c (default: silhouettes only)")
    p.add_argument("--sigma", type=float, nargs="+", default=None, metavar="SIGMA",
                   help="sharpness sigma: one value, or START END for a geometric schedule "
                        "(default: 1e-3 1e-5)")
    p.add_argument("--gamma", type=float, default=None, help="depth-blending temperature gamma (default: 1e-4)")
    p.add_argument("--lam", type=float, default=None, help="weight lambda of the colour loss (default: 1)")
    p.add_argument("--mu", type=float, default=None,
                   help="weight mu of the geometry loss, Laplacian + flatten (default: the method's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the method's)")
    p.add_argument("--level", type=int, default=None,
                   help="subdivision level of the result: 20*4^level faces (default: the method's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    _add_arch(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("demo", help="the main job on a built-in target: renders and writes figures",
                       description="Render a built-in mesh and write the SoftRas figures "
                                   "(sigma sweep, gamma sweep, a 256 px render) to DIR.")
    p.add_argument("--out", default="softras_demo", metavar="DIR", help="output folder (default: softras_demo)")
    _add_arch(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("grade", help="grade an exercise notebook (or a folder of them) in a sandbox",
                       description="Run NOTEBOOK in a sandbox, call its functions on inputs drawn now, compare "
                                   "with the instructor's solution notebook (--solutions DIR), print a table and "
                                   "optionally write {score, max_score, checks: [...]} as JSON. Given a FOLDER of "
                                   "submissions, grade each in its own sandbox and write a gradebook CSV.")
    p.add_argument("notebook", metavar="NOTEBOOK.ipynb|FOLDER", help="the student notebook, or a folder of them")
    p.add_argument("--solutions", default=None, metavar="DIR",
                   help="the instructor's solution notebooks, with the hidden tests (default: ./solutions)")
    p.add_argument("--reference", default=None, metavar="SOLUTION.ipynb",
                   help="grade against this one solution notebook instead of --solutions")
    p.add_argument("--json", default=None, metavar="OUT.json",
                   help="write the grade report here (a folder: every student's reports)")
    p.add_argument("--csv", default=None, metavar="OUT.csv",
                   help="a folder: where to write the gradebook (default: ./grades.csv)")
    p.add_argument("--roster", default=None, metavar="ROSTER.csv",
                   help="a folder: map file names to student ids (columns file, id, name, email, sis_login, section)")
    p.add_argument("--exercise", default=None, metavar="NAME",
                   help="a folder: grade only this exercise; other notebooks are listed as not graded")
    p.add_argument("--pattern", default="*.ipynb", help="a folder: which notebooks to grade (default: *.ipynb)")
    p.add_argument("--jobs", type=int, default=1, help="a folder: notebooks graded at once (default: 1)")
    p.add_argument("--sandbox", default="auto", choices=("auto", "bwrap", "docker", "unsafe"),
                   help="isolation of each notebook (default: auto = bubblewrap, else docker)")
    p.add_argument("--unsafe", action="store_true",
                   help="allow grading WITHOUT isolation where no sandbox works (trusted notebooks only)")
    p.add_argument("--docker-image", default=None, metavar="IMAGE",
                   help="--sandbox docker: an image with softras-taichi installed (default: softras-taichi-grader)")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="seconds per cell (default: 120)")
    p.add_argument("--time-limit", type=float, default=None, metavar="S",
                   help="seconds per notebook, cells and checks together (default: 300)")
    p.add_argument("--memory", type=float, default=None, metavar="GB",
                   help="memory of a notebook's processes together (default: 4)")
    p.add_argument("--output-mb", type=float, default=None, metavar="MB",
                   help="output kept per notebook; the rest is dropped and reported (default: 10)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the grading inputs, to reproduce a grade (default: a new one per run, from os.urandom)")
    p.add_argument("--arch", default="cpu", choices=ARCH_CHOICES,
                   help="Taichi backend of the notebooks (default: cpu, reproducible)")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("export", help="nbgrader / otter-grader source notebooks, or a gradebook for an LMS",
                       description="--nbgrader DIR / --otter DIR: write source notebooks those tools grade "
                                   "(from --solutions). --canvas/--moodle/--gradescope OUT.csv: convert a "
                                   "gradebook (--gradebook grades.csv) into that system's import layout.")
    p.add_argument("--solutions", default=None, metavar="DIR", help="the solution notebooks (default: ./solutions)")
    p.add_argument("--reference", default=None, metavar="SOLUTION.ipynb", help="export only this solution notebook")
    p.add_argument("--nbgrader", default=None, metavar="DIR", help="write nbgrader source notebooks into DIR")
    p.add_argument("--otter", default=None, metavar="DIR", help="write otter-grader assign notebooks into DIR")
    p.add_argument("--gradebook", default=None, metavar="grades.csv", help="the gradebook to convert")
    p.add_argument("--roster", default=None, metavar="ROSTER.csv", help="names, emails, SIS ids for the LMS")
    p.add_argument("--assignment", default=None, metavar="NAME", help="the LMS assignment (column) name")
    p.add_argument("--canvas", default=None, metavar="OUT.csv", help="Canvas gradebook import layout")
    p.add_argument("--moodle", default=None, metavar="OUT.csv", help="Moodle grade import layout")
    p.add_argument("--gradescope", default=None, metavar="OUT.csv", help="Gradescope score upload layout")
    p.add_argument("--sandbox", default="auto", choices=("auto", "bwrap", "docker", "unsafe"),
                   help="where the solution runs to record the hidden tests' data (default: auto)")
    p.add_argument("--unsafe", action="store_true", help="allow --sandbox unsafe")
    p.add_argument("--seed", type=int, default=None, help="seed of the recorded hidden-test inputs")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("exercises", help="generate the student notebooks (exercises/) from the solutions",
                       description="Turn every SOLUTIONS/*.ipynb into OUT/*.ipynb: each region between "
                                   "'# BEGIN SOLUTION' and '# END SOLUTION' becomes '# YOUR CODE HERE' + "
                                   "'raise NotImplementedError', outputs are stripped.")
    p.add_argument("--solutions", default="solutions", metavar="DIR", help="instructor notebooks (default: solutions)")
    p.add_argument("--out", default="exercises", metavar="DIR", help="student notebooks (default: exercises)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when OUT differs from what would be generated")
    p.set_defaults(func=cmd_exercises)
    return parser


# --------------------------------------------------------------------------- helpers

def _require_file(path, what):
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what} is a directory, expected a file: {path}")


def _check_positive(name, value):
    if not value > 0:
        raise ValueError(f"--{name} must be > 0, got {value}")


def save_image(img, path):
    """Write an (S,S,4) float RGBA image: .png as 8-bit RGBA, .npy as float32."""
    import numpy as np

    img = np.asarray(img, dtype=np.float32)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".png", ".npy"):
        raise ValueError(f"--out must end in .png or .npy, got {path!r}")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    if ext == ".npy":
        np.save(path, img)
    else:
        from PIL import Image

        u8 = np.round(np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0).astype(np.uint8)
        mode = "RGBA" if u8.shape[-1] == 4 else "RGB"
        Image.fromarray(u8, mode=mode).save(path)
    return path


def _init(args):
    import softras_taichi as sr

    try:
        return sr.init(args.arch)
    except RuntimeError as exc:
        raise CLIError(str(exc)) from None


def _lazy(module, func):
    """Import softras_taichi.<module>.<func>, or fail with 'not implemented yet'."""
    full = f"softras_taichi.{module}"
    try:
        mod = importlib.import_module(full)
    except ModuleNotFoundError as exc:
        if exc.name in (full, "softras_taichi"):
            raise CLIError(f"'{module}' is not implemented yet (module {full} is missing)") from None
        raise
    fn = getattr(mod, func, None)
    if fn is None:
        raise CLIError(f"'{module}' is not implemented yet ({full}.{func} is missing)")
    return fn


# --------------------------------------------------------------------------- subcommands

def cmd_render(args):
    _require_file(args.mesh, "mesh file")
    if args.size < 1:
        raise ValueError(f"--size must be a positive integer, got {args.size}")
    for name in ("sigma", "gamma", "distance"):
        _check_positive(name, getattr(args, name))
    ext = os.path.splitext(args.out)[1].lower()
    if ext not in (".png", ".npy"):
        raise ValueError(f"--out must end in .png or .npy, got {args.out!r}")
    _init(args)
    import softras_taichi as sr

    mesh = sr.load_obj(args.mesh)
    cam = sr.Camera.look_at(distance=args.distance, elevation=args.elevation,
                            azimuth=args.azimuth, viewing_angle=args.viewing_angle)
    renderer = sr.SoftRenderer(image_size=args.size, sigma=args.sigma, gamma=args.gamma)
    img = renderer.render(mesh, cam)
    save_image(img, args.out)
    print(f"wrote {args.out} ({args.size}x{args.size} RGBA, {len(mesh.vertices)} vertices, "
          f"{len(mesh.faces)} faces)")
    return 0


def cmd_fit(args):
    fit = _lazy("fit", "cli_fit")
    _init(args)
    return fit(args)


def cmd_demo(args):
    run = _lazy("demo", "run")
    _init(args)
    run(args.out)
    return 0


def cmd_grade(args):
    grade = _lazy("grader.cli", "cli_grade")
    if not os.path.isdir(args.notebook):
        _require_file(args.notebook, "notebook")
    # no _init here: each notebook starts Taichi in its own sandboxed process (--arch is passed on as TI_ARCH)
    try:
        return grade(args)
    except RuntimeError as exc:
        raise CLIError(str(exc)) from None


def cmd_export(args):
    try:
        return _lazy("grader.cli", "cli_export")(args)
    except RuntimeError as exc:
        raise CLIError(str(exc)) from None


def cmd_exercises(args):
    return _lazy("exercises", "cli_exercises")(args)


# --------------------------------------------------------------------------- entry point

def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except CLIError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.status
    except (ValueError, TypeError, OSError) as exc:
        # FileNotFoundError and friends are OSErrors: bad input, not a bug
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
