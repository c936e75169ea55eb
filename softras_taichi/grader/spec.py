"""The instructor's side of an exercise, read from its solution notebook (trusted).

A solution notebook holds three kinds of code:

* solution regions (`# BEGIN SOLUTION` ... `# END SOLUTION`): what students write;
* feedback checks (`@check(...)` cells) and the `summary()` cell: copied to the exercise,
  for instant feedback; never run when grading;
* hidden tests (`### BEGIN HIDDEN TESTS` ... `### END HIDDEN TESTS`, nbgrader's markers):
  the graded checks (`@graded(...)`), stripped from the exercise, defined by the grader
  in both the reference run and the student's run, after the notebook's cells.

The checks that count, their points and their `forbid` lists are read from the hidden
tests' source (literal values), so the total never depends on what any notebook does.
"""
import ast
import os

HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_END = "### END HIDDEN TESTS"
METADATA_KEY = "softras"      # notebook metadata: {"exercise": "<name>"} written by the generator


class SpecError(ValueError):
    """A solution notebook the grader cannot use (the message says what to fix)."""


def code(source):
    """Python source of a cell with IPython syntax (magics, !shell) made parseable."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - fall back to blanking magic lines
        return "\n".join(("pass" if ln.lstrip().startswith(("%", "!")) else ln) for ln in source.splitlines())


def hidden_regions(source):
    """[(first, last)] line indices (markers included) of the hidden-test regions of a cell."""
    from ..exercises import marked_regions

    return marked_regions(source, HIDDEN_BEGIN, HIDDEN_END, "hidden-test region", SpecError)


def split_hidden(source):
    """(visible source, [hidden sources]) of a cell."""
    lines = source.split("\n")
    visible, hidden, pos = [], [], 0
    for first, last in hidden_regions(source):
        visible.extend(lines[pos:first])
        hidden.append("\n".join(lines[first + 1:last]))
        pos = last + 1
    visible.extend(lines[pos:])
    return "\n".join(visible), hidden


def _const(node):
    return node.value if isinstance(node, ast.Constant) else None


def _calls(source, fname):
    """[(lineno, args, {kw: value})] of the calls `fname("...", ...)` with literal arguments."""
    try:
        tree = ast.parse(code(source))
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else (f.attr if isinstance(f, ast.Attribute) else None)
        if name != fname or not node.args or not isinstance(_const(node.args[0]), str):
            continue
        kws = {}
        for kw in node.keywords:
            try:
                kws[kw.arg] = ast.literal_eval(kw.value)
            except ValueError:
                kws[kw.arg] = None
        args = []
        for a in node.args:
            try:
                args.append(ast.literal_eval(a))
            except ValueError:
                args.append(None)
        found.append((node.lineno, args, kws))
    return sorted(found, key=lambda x: x[0])


def _points(args, kws):
    p = kws.get("points", args[1] if len(args) > 1 else 1)
    if not isinstance(p, (int, float)) or isinstance(p, bool) or p < 0:
        raise SpecError(f"check {args[0]!r}: points must be a literal number, got {p!r}")
    return float(p)


def cell_checks(source):
    """[(name, points)] of the feedback `check("name", points=...)` calls of a cell."""
    return [(args[0], _points(args, kws)) for _, args, kws in _calls(source, "check")]


def scan_checks(nb):
    """[(name, max_points, cell_index)] of every feedback check a notebook declares, in order."""
    seen, out = set(), []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for name, points in cell_checks(cell.source):
            if name not in seen:
                seen.add(name)
                out.append((name, points, i))
    return out


NOT_GRADED = "# Not run when grading"     # first line of a cell that only shows something (slow)


def is_feedback_cell(source):
    """A feedback check cell, the summary cell, or a cell that starts with NOT_GRADED (a
    slow demonstration): run by students, skipped when grading."""
    s = source.strip()
    return bool(cell_checks(source)) or s.startswith("summary(") or s.startswith(NOT_GRADED)


class GradedCheck:
    """One graded check as the instructor wrote it.  `needs`: the checks upstream of it
    (their functions feed this one); a check worth 0 points is a free-text question,
    collected for the instructor."""

    def __init__(self, name, points, hint=None, forbid=(), needs=()):
        self.name, self.points, self.hint = name, points, hint
        self.forbid = tuple(forbid or ())
        self.needs = tuple(needs or ())

    @property
    def for_instructor(self):
        return self.points == 0

    def __repr__(self):
        return f"GradedCheck({self.name!r}, {self.points:g})"


class Exercise:
    """One exercise: its solution notebook, graded checks and the sources to skip."""

    def __init__(self, name, nb, path=None):
        self.name, self.nb, self.path = name, nb, path
        self.hidden = []          # hidden-test sources, in notebook order
        self.run_cells = []       # (cell index, visible source) the reference run executes
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                visible, hidden = split_hidden(cell.source)
            except SpecError as exc:
                raise SpecError(f"{path or name}, cell {i}: {exc}") from None
            self.hidden.extend(hidden)
            if visible.strip() and not is_feedback_cell(visible):
                self.run_cells.append((i, visible))
        self.checks = []
        seen = set()
        for src in self.hidden:
            for _, args, kws in _calls(src, "graded"):
                name = args[0]
                if name in seen:
                    raise SpecError(f"{path or name}: two graded checks are named {name!r}")
                seen.add(name)
                forbid, needs = kws.get("forbid") or (), kws.get("needs") or ()
                forbid = (forbid,) if isinstance(forbid, str) else forbid
                needs = (needs,) if isinstance(needs, str) else needs
                self.checks.append(GradedCheck(name, _points(args, kws), kws.get("hint"), forbid, needs))
        for c in self.checks:
            unknown = [n for n in c.needs if n not in seen]
            if unknown:
                raise SpecError(f"{path or name}: check {c.name!r} needs {unknown}, which no graded check is")
        if not self.checks:
            raise SpecError(f"{path or name} has no graded checks: add `@graded(...)` checks between "
                            f"'{HIDDEN_BEGIN}' and '{HIDDEN_END}'")
        self.max_score = round(sum(c.points for c in self.checks), 2)
        self.feedback = {n: p for n, p, _ in scan_checks(nb)}

    def __repr__(self):
        return f"Exercise({self.name!r}, {len(self.checks)} checks, {self.max_score:g} points)"


def read_notebook(path):
    import nbformat
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as exc:  # noqa: BLE001 - a broken upload is reported, not raised through
        raise ValueError(f"cannot read {path} as a notebook: {type(exc).__name__}: {exc}") from None


def exercise_name(nb, path=None):
    meta = nb.metadata.get(METADATA_KEY) or {}
    name = meta.get("exercise") if isinstance(meta, dict) else None
    if name:
        return str(name)
    return os.path.splitext(os.path.basename(str(path)))[0] if path else None


def load_exercise(path):
    nb = read_notebook(path)
    return Exercise(exercise_name(nb, path), nb, str(path))


def load_solutions(folder):
    """{exercise name: Exercise} of every solution notebook in `folder`."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"solutions folder not found: {folder}")
    out = {}
    for n in sorted(os.listdir(folder)):
        if n.endswith(".ipynb") and not n.startswith("."):
            ex = load_exercise(os.path.join(folder, n))
            out[ex.name] = ex
    if not out:
        raise FileNotFoundError(f"no solution notebooks (*.ipynb) in {folder}")
    return out


def identify(nb, exercises):
    """The exercise a submission is, from the metadata the generator writes (else from its
    cell ids), or None.  Never from the file name."""
    meta = nb.metadata.get(METADATA_KEY) or {}
    name = meta.get("exercise") if isinstance(meta, dict) else None
    if name in exercises:
        return name
    ids = {c.get("id") for c in nb.cells if c.get("id")}
    best, score = None, 0.0
    for ex_name, ex in exercises.items():
        theirs = {c.get("id") for c in ex.nb.cells if c.get("id")}
        if theirs:
            s = len(ids & theirs) / len(theirs)
            if s > score:
                best, score = ex_name, s
    return best if score >= 0.5 else None
