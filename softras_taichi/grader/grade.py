"""Grading one notebook: the reference's values against the student's, compared here.

    reference = Reference(exercise, sandbox, limits, seed)   # once per exercise and grading run
    report = grade_notebook("alice.ipynb", reference)

The reference run executes the instructor's solution notebook in its own sandbox, defines
the hidden checks and runs each as the *reference*: with a seed drawn from os.urandom per
grading run (never sent to a student's process), it records the inputs, the expected
values, the tolerances and the weights.  A student's run executes the submission in a
fresh sandbox, defines the same hidden checks (the grader sends their source) and runs
each as the *student*: with the reference's inputs, as data, it records what the student's
code computes.  This process compares the two with `Check` — the tolerances and weights
are the reference's, the student's process only ever contributes values — and adds the
points up out of the instructor's total.
"""
import hashlib
import os
import re
import tempfile
import threading
import time

from . import channel, spec, static
from .checks import Check
from .sandbox import Limits
from .spec import is_feedback_cell, read_notebook
from .supervisor import run_notebook


class GraderError(RuntimeError):
    """The instructor's material is broken (the reference run failed): nobody can be graded."""


def _clean(text, n=400):
    """An untrusted string (from the student's process) made safe to print: no control
    characters, no terminal escapes, bounded length."""
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", " ", str(text))
    return text if len(text) <= n else text[: n - 1] + "…"


def check_seed(run_seed, name):
    """The seed of one check: derived from the run's secret seed, so that no check's seed
    says anything about another's."""
    h = hashlib.sha256(f"{run_seed}:{name}".encode()).digest()
    return int.from_bytes(h[:8], "big") >> 1


def new_run_seed():
    return int.from_bytes(os.urandom(8), "big") >> 1


def _merge_cache(src, dest):
    """Copy the reference run's compiled-kernel cache into the grader's (file by file,
    atomically), so the next sandboxes start warm."""
    for root, _, files in os.walk(src):
        rel = os.path.relpath(root, src)
        os.makedirs(os.path.join(dest, rel), exist_ok=True)
        for f in files:
            target = os.path.join(dest, rel, f)
            try:
                with open(os.path.join(root, f), "rb") as fh:
                    data = fh.read()
                tmp = f"{target}.{os.getpid()}.tmp"
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, target)
            except OSError:
                pass


def default_cache_dir():
    import taichi

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "softras-taichi", f"grader-cache-taichi-{taichi.__version__}")


class Reference:
    """The reference values of one exercise for one grading run (computed once, lazily,
    in a background thread; `get()` waits for them)."""

    def __init__(self, exercise, sandbox, limits=None, seed=None, cache_dir=None, arch="cpu"):
        self.exercise, self.sandbox = exercise, sandbox
        self.limits = limits or Limits()
        self.seed = new_run_seed() if seed is None else int(seed)
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
        self.env = _arch_env(arch)
        self._done = threading.Event()
        self._values, self._error = None, None
        self._thread = None
        self.seconds = 0.0

    def start(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self):
        ex = self.exercise
        try:
            os.makedirs(self.cache_dir, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="softras-refcache-") as fresh:
                _merge_cache(self.cache_dir, fresh)
                names = [c.name for c in ex.checks]
                res = run_notebook(
                    self.sandbox, _bytes_of(ex.path), ex.run_cells, ex.hidden, names, self.limits,
                    lambda n: ({"op": "check", "name": n, "role": "reference",
                                "seed": check_seed(self.seed, n)}, b""),
                    env=self.env, write_cache=fresh)
                _merge_cache(fresh, self.cache_dir)
            self.seconds = res["seconds"]
            problems = [f"cell {i}: {e}" for i, e in res["cell_errors"].items()]
            problems += [f"cell {i}: {why}" for i, why in res["skipped"].items()] + res["notes"]
            values = {}
            for name in names:
                r = res["results"].get(name)
                if isinstance(r, str) or r is None:
                    problems.append(f"check {name!r}: {r}")
                    continue
                header, arrays = r
                if header.get("error"):
                    problems.append(f"check {name!r} raised on the solution: {header['error']}")
                    continue
                values[name] = (header, arrays)
            if problems:
                raise GraderError(f"the solution notebook {ex.path} does not run cleanly in the grader's "
                                  f"sandbox ({self.sandbox.name}): " + "; ".join(problems[:5]))
            self._values = values
        except Exception as exc:  # noqa: BLE001 - reported to every get()
            self._error = exc if isinstance(exc, GraderError) else GraderError(f"{type(exc).__name__}: {exc}")
        finally:
            self._done.set()

    def get(self):
        self.start()
        self._done.wait()
        if self._error:
            raise self._error
        return self._values

    def request_for(self, name):
        header, arrays = self.get()[name]
        inputs = {k[3:]: v for k, v in arrays.items() if k.startswith("in:")}
        return {"op": "check", "name": name, "role": "student"}, channel.pack_arrays(inputs)


def _arch_env(arch):
    if arch and arch != "auto":
        return {"TI_ARCH": {"cpu": "x64"}.get(arch, arch)}
    return {}


def _bytes_of(path):
    with open(path, "rb") as fh:
        return fh.read()


def compare(check, ref, got):
    """The Check of one graded check: the reference (header, arrays) against the student's
    (header, arrays), or a reason string when the student's run gave nothing."""
    c = Check(check.name, check.points, check.hint)
    if isinstance(got, str):
        c.error = _clean(got)
        return c.finish()
    rh, ra = ref
    sh, sa = got
    sparts = sh.get("parts") if isinstance(sh.get("parts"), list) else []
    error = _clean(sh["error"]) if sh.get("error") else None
    answers = []
    for i, part in enumerate(rh["parts"]):
        what, weight = part["what"], part["weight"]
        mine = sparts[i] if i < len(sparts) and isinstance(sparts[i], dict) else None
        if mine is None or mine.get("what") != what:
            c.fail(f"{what}: not computed" + (f": {error}" if error else ""), weight)
            continue
        if f"v{i}" not in sa:
            c.fail(_clean(mine.get("problem") or f"{what}: no value came back"), weight)
            continue
        expected, value = ra[f"v{i}"], sa[f"v{i}"]
        if part["kind"] == "text":
            answers.append(_clean(mine.get("text") or "", 2000))
        elif part["kind"] == "choice":
            _choice(c, part, value, expected)
        elif part["kind"] == "close":
            c.close(value, expected, rtol=part["rtol"], atol=part["atol"], what=what, weight=weight,
                    hint=part.get("hint"))
        else:
            c.equal(value, expected, what=what, weight=weight, hint=part.get("hint"))
    if error and not any(ok for ok, _, _ in c.parts):
        c.parts, c.error = [], error
    c.finish()
    if check.points == 0 and any(p["kind"] == "text" for p in rh["parts"]) and c.error is None:
        c.answer = " / ".join(a for a in answers if a) or ""
        c.message = f"for the instructor: {c.answer}" if c.answer else "for the instructor: not answered"
    return c


def _choice(c, part, value, expected):
    """A multiple-choice part: the letters compared; the right one is not shown."""
    options, what, weight = part.get("options") or [], part["what"], part["weight"]
    try:
        got = int(value)
    except (TypeError, ValueError):
        return c.fail(f"{what}: no answer came back", weight)
    if got == int(expected):
        return c._part(True, weight, f"{what}: ok")
    if got == -2:
        return c._part(False, weight, f"{what}: not answered yet", part.get("hint"))
    if not 0 <= got < len(options):
        return c._part(False, weight, f"{what}: your answer is none of {', '.join(options)}", part.get("hint"))
    return c._part(False, weight, f"{what}: {options[got]} is not the right answer", part.get("hint"))


def upstream_first(checks, needs):
    """Prefix "fix `x` first" to the message of every check that lost points while a check
    it needs (`needs`: {name: (upstream names)}) lost points too."""
    lost = {c["name"] for c in checks if c["points"] < c["max_points"]}
    for c in checks:
        bad = [n for n in needs.get(c["name"], ()) if n in lost]
        if c["name"] in lost and bad:
            names = " and ".join(f"`{n}`" for n in bad)
            c["message"] = f"fix {names} first (this check uses it). {c['message']}"
    return checks


def _check_sources(ex):
    """[(GradedCheck, the hidden-test source that defines it)]."""
    out = []
    for src in ex.hidden:
        names = {args[0] for _, args, _ in spec._calls(src, "graded")}
        out += [(c, src) for c in ex.checks if c.name in names]
    return out


def _visible(source):
    """A cell's source without hidden-test regions: the grader defines the hidden tests
    itself, so what a notebook holds between their markers is neither run nor read."""
    try:
        return spec.split_hidden(source)[0]
    except spec.SpecError:
        return source


def code_cells(nb):
    """[(index, source)] of every code cell, hidden-test regions removed."""
    return [(i, _visible(c.source)) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def submission_cells(nb):
    """[(index, source)] of the code cells a submission runs when graded: everything but
    the feedback checks and the summary (they decide nothing and take time)."""
    return [(i, s) for i, s in code_cells(nb) if s.strip() and not is_feedback_cell(s)]


def student_cells(nb, exercise):
    """Indices of the cells whose code may be the student's: all but the exercise's own, unchanged."""
    from ..exercises import make_exercise

    given = {c.source for c in make_exercise(exercise.nb).cells
             if c.cell_type == "code" and "raise NotImplementedError" not in c.source}
    return {i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source not in given}


def grade_notebook(path, reference, nb=None):
    """Grade the notebook at `path` against `reference` (a Reference of its exercise).
    Returns {"score", "max_score", "checks": [{"name", "points", "max_points", "message"}],
    "exercise", "sandbox", "seconds", "notes"}."""
    start = time.monotonic()
    ex = reference.exercise
    nb = nb if nb is not None else read_notebook(path)
    cells = code_cells(nb)
    forbidden = static.scan(cells, ex.checks, student_cells(nb, ex))
    names = [c.name for c in ex.checks if c.name not in forbidden]
    res = run_notebook(reference.sandbox, _bytes_of(path), submission_cells(nb), ex.hidden, names,
                       reference.limits, reference.request_for, env=reference.env,
                       seed_cache=reference.cache_dir if os.path.isdir(reference.cache_dir) else None)
    ref = reference.get()
    checks = []
    for chk in ex.checks:
        if chk.name in forbidden:
            c = Check(chk.name, chk.points)
            c.error = forbidden[chk.name]
            checks.append(c.finish().as_dict())
            continue
        got = res["results"].get(chk.name, "the check did not run")
        c = compare(chk, ref[chk.name], got)
        checks.append(dict(c.as_dict(), **({"answer": c.answer} if hasattr(c, "answer") else {})))
    traps = static.taichi_traps(cells, student_cells(nb, ex), static.differentiated(cells))
    static.blame(checks, traps, {c.name: src for c, src in _check_sources(ex)})
    upstream_first(checks, {c.name: c.needs for c in ex.checks})
    notes = [f"cell {i}, line {line}: {msg}" for i, line, _, msg in traps] + list(res["notes"])
    for i, why in res["skipped"].items():
        notes.append(f"cell {i} was left out: {why}")
    for c in checks:
        c["points"] = min(c["points"], c["max_points"])
    score = round(sum(c["points"] for c in checks), 2)
    return {"score": score, "max_score": ex.max_score, "checks": checks, "exercise": ex.name,
            "sandbox": reference.sandbox.name, "seconds": round(time.monotonic() - start, 1),
            "notes": [_clean(n, 300) for n in notes]}
