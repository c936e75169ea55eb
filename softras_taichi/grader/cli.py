"""`softras-taichi grade` and `softras-taichi export` (the parsers live in softras_taichi/cli.py)."""
import json
import os
import sys
import time

from .checks import fmt
from .report import format_table
from .sandbox import Limits, SandboxUnavailable, choose


def _require(module, extra=None):
    try:
        return __import__(module)
    except ModuleNotFoundError:
        how = f'pip install "softras-taichi[{extra}]"' if extra else f"pip install {module}"
        raise RuntimeError(f"grading needs the Python package {module!r}, which is not installed: {how}") from None


def _limits(args):
    lim = Limits()
    for attr, name in (("memory", "memory_gb"), ("time_limit", "notebook_s"), ("timeout", "cell_s"),
                       ("output_mb", "output_mb")):
        v = getattr(args, attr, None)
        if v is not None:
            if not v > 0:
                raise ValueError(f"--{attr.replace('_', '-')} must be > 0, got {v}")
            setattr(lim, name, float(v))
    lim.check_s = min(lim.check_s, lim.cell_s)
    return lim


def _exercises(args):
    from .spec import load_exercise, load_solutions

    if getattr(args, "reference", None):
        if not os.path.isfile(args.reference):
            raise FileNotFoundError(f"reference notebook not found: {args.reference}")
        ex = load_exercise(args.reference)
        return {ex.name: ex}
    folder = getattr(args, "solutions", None) or "solutions"
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"solutions folder not found: {folder} (the instructor's solution notebooks: "
                                "--solutions DIR, or --reference SOLUTION.ipynb)")
    return load_solutions(folder)


def _write_json(path, data):
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


def cli_grade(args):
    """`softras-taichi grade NOTEBOOK.ipynb|FOLDER --solutions DIR [--json OUT] [--csv OUT] ...`."""
    _require("nbformat")
    from .grade import Reference, grade_notebook
    from .spec import identify, read_notebook

    limits = _limits(args)
    exercises = _exercises(args)
    try:
        sandbox = choose(getattr(args, "sandbox", "auto") or "auto", unsafe=bool(getattr(args, "unsafe", False)),
                         docker_image=getattr(args, "docker_image", None) or "softras-taichi-grader")
    except SandboxUnavailable as exc:
        raise RuntimeError(str(exc)) from None
    seed = getattr(args, "seed", None)
    arch = getattr(args, "arch", None) or "cpu"
    refs = {n: Reference(ex, sandbox, limits, seed=seed, arch=arch) for n, ex in exercises.items()}
    print(f"sandbox: {sandbox.describe()}")
    print(f"limits: {limits.describe()}")
    target = args.notebook
    if os.path.isdir(target):
        from .gradebook import grade_folder, print_books, read_roster

        roster = read_roster(args.roster) if getattr(args, "roster", None) else None
        exercise = getattr(args, "exercise", None)
        if exercise and exercise not in exercises:
            raise ValueError(f"--exercise {exercise!r} is not one of {', '.join(exercises)}")
        csv_path = getattr(args, "csv", None) or "grades.csv"
        reports = {} if getattr(args, "json", None) else None
        start = time.monotonic()
        books, unmatched = grade_folder(target, exercises, refs, csv_path,
                                        pattern=getattr(args, "pattern", None) or "*.ipynb",
                                        jobs=max(1, int(getattr(args, "jobs", 1) or 1)), roster=roster,
                                        exercise=exercise, json_reports=reports)
        print_books(books, unmatched)
        n = sum(len(b.rows) for b in books.values())
        print(f"graded {n} students in {time.monotonic() - start:.1f} s; wrote "
              + ", ".join(b.path for b in books.values()))
        if reports is not None:
            _write_json(args.json, reports)
            print(f"wrote {args.json}")
        return 0
    nb = read_notebook(target)
    name = identify(nb, exercises)
    if name is None:
        raise ValueError(f"{target} is none of the exercises in {', '.join(exercises)} (no exercise metadata, "
                         "and its cell ids match none): pass --reference SOLUTION.ipynb")
    start = time.monotonic()
    report = grade_notebook(target, refs[name], nb=nb)
    print(format_table(report))
    print(f"graded {target} ({name}) in {time.monotonic() - start:.1f} s")
    if getattr(args, "json", None):
        _write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


def cli_export(args):
    """`softras-taichi export --nbgrader DIR | --otter DIR | --canvas/--moodle/--gradescope OUT.csv`."""
    did = False
    if getattr(args, "nbgrader", None) or getattr(args, "otter", None):
        from .export import export_nbgrader, export_otter

        exercises = _exercises(args)
        sandbox = choose(getattr(args, "sandbox", "auto") or "auto", unsafe=bool(getattr(args, "unsafe", False)))
        for name, ex in exercises.items():
            if args.nbgrader:
                path = export_nbgrader(ex, args.nbgrader, sandbox, seed=getattr(args, "seed", None))
                print(f"nbgrader source notebook: {path}")
            if args.otter:
                path = export_otter(ex, args.otter, sandbox, seed=getattr(args, "seed", None))
                print(f"otter-grader assign notebook: {path}")
        did = True
    for lms in ("canvas", "moodle", "gradescope"):
        out = getattr(args, lms, None)
        if out:
            from .gradebook import export_lms, read_gradebook, read_roster

            if not getattr(args, "gradebook", None):
                raise ValueError(f"--{lms} needs --gradebook grades.csv (written by softras-taichi grade)")
            rows = read_gradebook(args.gradebook)
            roster = read_roster(args.roster) if getattr(args, "roster", None) else None
            assignment = getattr(args, "assignment", None) or os.path.splitext(os.path.basename(args.gradebook))[0]
            n = export_lms(rows, lms, out, assignment, roster)
            print(f"wrote {out} ({lms}, {n} rows)")
            did = True
    if not did:
        raise ValueError("nothing to export: give --nbgrader DIR, --otter DIR, or --canvas/--moodle/--gradescope "
                         "OUT.csv with --gradebook grades.csv")
    return 0


def main():  # pragma: no cover - `python -m softras_taichi grade` is the entry point
    from ..cli import main as cli_main
    return cli_main(["grade"] + sys.argv[1:])


__all__ = ["cli_grade", "cli_export", "fmt"]
