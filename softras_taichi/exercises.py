"""Generate the student notebooks (exercises/) from the instructor notebooks (solutions/).

In a solution notebook, the code students must write sits between a line
`# BEGIN SOLUTION` and a line `# END SOLUTION` (the markers nbgrader and otter-grader
recognise too).  In the exercise each such region, markers included, becomes

    # YOUR CODE HERE
    raise NotImplementedError

at the indentation of its `# BEGIN SOLUTION` line; an answer line (a question's answer,
`band_px = 1.0  # ANSWER: the band's width in pixels`) becomes
`band_px = None  # YOUR ANSWER: the band's width in pixels`; every hidden-test region
(`### BEGIN HIDDEN TESTS` ... `### END HIDDEN TESTS`, the graded checks) disappears,
markers included, and a cell left empty goes with it; every code cell loses its outputs
and execution count; the `summary()` cell learns the feedback checks and the hidden
points (`summary(expected={...}, hidden=N)`); and the notebook's metadata says which
exercise it is (`"softras": {"exercise": "<name>"}`: the grader identifies submissions
by it, not by their file names).  Everything else (markdown, setup and feedback check
cells, cell ids, the kernelspec) is copied as it is.  The output is a pure function of
the input: exercises/ is never edited by hand, and `--check` (used by the tests) says
whether it is up to date.

    python -m softras_taichi.exercises                 # solutions/ -> exercises/
    python -m softras_taichi.exercises --check         # exit 1 if exercises/ is stale
    softras-taichi exercises --solutions DIR --out DIR
"""
import argparse
import copy
import os
import re
import sys

BEGIN = "# BEGIN SOLUTION"
END = "# END SOLUTION"
PLACEHOLDER = ("# YOUR CODE HERE", "raise NotImplementedError")
# notebook metadata that depends on who ran the notebook, not on what it says
VOLATILE_NB_METADATA = ("widgets", "execution", "papermill")
VOLATILE_CELL_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime", "papermill")


ANSWER = re.compile(r"^(\s*)([A-Za-z_]\w*)\s*=\s*(.+?)\s*#\s*ANSWER\b:?\s*(.*)$")


class MarkerError(ValueError):
    """Unbalanced or nested solution markers."""


def marked_regions(source, begin=BEGIN, end=END, what="solution region", error=MarkerError):
    """[(first, last)] line indices (0-based, markers included) of the regions between a
    line `begin` and a line `end` of a cell's source; raises `error` on a nested or
    unterminated region."""
    regions, start = [], None
    for i, line in enumerate(source.split("\n")):
        s = line.strip()
        if s == begin:
            if start is not None:
                raise error(f"line {i + 1}: '{begin}' inside another {what}")
            start = i
        elif s == end:
            if start is None:
                raise error(f"line {i + 1}: '{end}' without a '{begin}' before it")
            regions.append((start, i))
            start = None
    if start is not None:
        raise error(f"line {start + 1}: '{begin}' is never closed by '{end}'")
    return regions


def solution_regions(source):
    """[(first, last)] line indices (0-based, markers included) of the solution regions
    of a cell's source; raises MarkerError on a nested or unterminated region."""
    return marked_regions(source)


def answer_lines(source):
    """Line indices (0-based) of the answer lines of a cell, outside its solution regions."""
    inside = {i for first, last in solution_regions(source) for i in range(first, last + 1)}
    return [i for i, line in enumerate(source.split("\n")) if i not in inside and ANSWER.match(line)]


def blanks(source):
    """[(first, last, kind)] of everything a student fills in, in order: solution regions
    (kind "region", markers included) and answer lines (first == last, kind "answer")."""
    out = [(f, la, "region") for f, la in solution_regions(source)] + [(i, i, "answer") for i in answer_lines(source)]
    return sorted(out)


def strip_solutions(source, only=None):
    """The cell source with every solution region and answer line (or only the `only`-th,
    0-based, of `blanks`) blanked; other regions keep their code, without the markers."""
    lines = source.split("\n")
    found = blanks(source)
    if not found:
        return source
    out, pos = [], 0
    for k, (first, last, kind) in enumerate(found):
        out.extend(lines[pos:first])
        blank = only is None or k == only
        if kind == "answer":
            indent, name, value, what = ANSWER.match(lines[first]).groups()
            out.append(f"{indent}{name} = None  # YOUR ANSWER" + (f": {what}" if what else "") if blank
                       else f"{indent}{name} = {value}")
        elif blank:
            indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
            out.extend(indent + p for p in PLACEHOLDER)
        else:
            out.extend(lines[first + 1:last])
        pos = last + 1
    out.extend(lines[pos:])
    return "\n".join(out)


def answers_as_regions(source):
    """The cell source with each answer line inside a solution region of its own (for tools
    that know only solution regions: nbgrader, otter-grader)."""
    lines = source.split("\n")
    for i in reversed(answer_lines(source)):
        indent, name, value, _ = ANSWER.match(lines[i]).groups()
        lines[i:i + 1] = [indent + BEGIN, f"{indent}{name} = {value}", indent + END]
    return "\n".join(lines)


def regions(nb):
    """[(cell index, index in the cell)] of every solution region and answer line of a notebook."""
    return [(i, k) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for k in range(len(blanks(cell.source)))]


def answers(nb):
    """[(cell index, variable name)] of the answer lines of a notebook."""
    return [(i, ANSWER.match(cell.source.split("\n")[j]).group(2)) for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" for j in answer_lines(cell.source)]


def blank_region(nb, cell_index, region_index):
    """A copy of the solution notebook `nb` with one region blanked (as in the exercise)
    and every other region left solved: what a student who solved all but one has."""
    out = copy.deepcopy(nb)
    cell = out.cells[cell_index]
    cell.source = strip_solutions(cell.source, only=region_index)
    return out


def solution_code(source):
    """The lines inside the solution regions of a cell (markers excluded) and its answer lines."""
    lines = source.split("\n")
    return ([ln for first, last in solution_regions(source) for ln in lines[first + 1:last]]
            + [lines[i] for i in answer_lines(source)])


def _summary_call(nb):
    """`summary(expected={...}, hidden=N)` for the exercise of the solution `nb`."""
    from .grader.spec import Exercise, scan_checks

    feedback = {name: points for name, points, _ in scan_checks(nb)}
    try:
        graded = {c.name: c.points for c in Exercise("?", nb).checks}
    except ValueError:
        graded = {}
    hidden = sum(p for n, p in graded.items() if n not in feedback)
    body = ", ".join(f"{n!r}: {p:g}" for n, p in feedback.items())
    return f"summary(expected={{{body}}}, hidden={hidden:g})"


def make_exercise(nb, name=None):
    """The exercise notebook (a new nbformat node) of a solution notebook; `name` (the
    exercise, e.g. the solution's file stem) goes into its metadata."""
    from .grader.spec import SpecError, split_hidden

    ex = copy.deepcopy(nb)
    for key in VOLATILE_NB_METADATA:
        ex.metadata.pop(key, None)
    if name:
        ex.metadata["softras"] = {"exercise": name}
    summary = _summary_call(nb)
    cells = []
    for index, cell in enumerate(ex.cells):
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            try:
                visible, hidden = split_hidden(cell.source)
                cell.source = strip_solutions(visible.strip("\n") if hidden else visible)
            except (MarkerError, SpecError) as exc:
                raise MarkerError(f"cell {index}: {exc}") from None
            if hidden and not cell.source.strip():
                continue  # a hidden-tests cell: nothing of it in the exercise
            if cell.source.strip() == "summary()":
                cell.source = summary
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    ex.cells = cells
    return ex


def render(nb):
    """The exact text written to disk (nbformat's JSON plus a final newline)."""
    import nbformat

    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def expected_exercises(solutions="solutions"):
    """{file name: text} of every exercise that `solutions` generates."""
    import nbformat

    out = {}
    for name in sorted(os.listdir(solutions)):
        if name.endswith(".ipynb") and not name.startswith("."):
            nb = nbformat.read(os.path.join(solutions, name), as_version=4)
            try:
                out[name] = render(make_exercise(nb, os.path.splitext(name)[0]))
            except MarkerError as exc:
                raise MarkerError(f"{os.path.join(solutions, name)}: {exc}") from None
    return out


def stale(solutions="solutions", exercises="exercises"):
    """Names of the files in `exercises` that differ from what `solutions` generates
    (missing, different, or .ipynb files with no solution)."""
    want = expected_exercises(solutions)
    have = {n for n in os.listdir(exercises) if n.endswith(".ipynb")} if os.path.isdir(exercises) else set()
    bad = []
    for name, text in want.items():
        path = os.path.join(exercises, name)
        if name not in have:
            bad.append(name)
            continue
        with open(path, encoding="utf-8", newline="") as fh:
            if fh.read() != text:
                bad.append(name)
    bad.extend(sorted(have - set(want)))
    return bad


def generate(solutions="solutions", exercises="exercises"):
    """Write exercises/ from solutions/; remove exercise notebooks with no solution.
    Returns the names written or removed."""
    want = expected_exercises(solutions)
    changed = stale(solutions, exercises)
    os.makedirs(exercises, exist_ok=True)
    for name in changed:
        path = os.path.join(exercises, name)
        if name in want:
            with open(path, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(want[name])
        else:
            os.remove(path)
    return changed


def cli_exercises(args):
    if not os.path.isdir(args.solutions):
        raise FileNotFoundError(f"solutions folder not found: {args.solutions}")
    if args.check:
        bad = stale(args.solutions, args.out)
        if bad:
            print(f"{args.out}/ is not what {args.solutions}/ generates: {', '.join(bad)}\n"
                  f"run: softras-taichi exercises --solutions {args.solutions} --out {args.out}")
            return 1
        print(f"{args.out}/ is up to date with {args.solutions}/")
        return 0
    changed = generate(args.solutions, args.out)
    n = len([x for x in os.listdir(args.out) if x.endswith('.ipynb')])
    print(f"{args.out}/: {n} notebooks, {len(changed)} written or removed"
          + (f" ({', '.join(changed)})" if changed else ""))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m softras_taichi.exercises", description=__doc__.split("\n\n")[0])
    p.add_argument("--solutions", default="solutions", metavar="DIR")
    p.add_argument("--out", default="exercises", metavar="DIR")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when OUT is stale")
    args = p.parse_args(argv)
    try:
        return cli_exercises(args)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
