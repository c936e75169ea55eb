"""Graded checks: what the grader runs, written by the instructor in hidden-test cells.

In a solution notebook, between `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS`
(stripped from the exercise by the generator):

    @graded("segment_d2", points=2, hint="clamp t to [0, 1]", forbid=["softras_taichi.probability.segment_d2"])
    def _(t, rng):
        p = t.input("p", rng.uniform(-1, 1, (200, 2)))      # drawn by the grader, per grading run
        a, b = t.input("a", ...), t.input("b", ...)
        t.close(run_func(segment_d2, p, a, b), rtol=1e-4, atol=1e-6, what="segment_d2 of 200 points")

The body runs twice per grading run, in two separate sandboxed processes: once in the
instructor's solution notebook (the *reference*: `rng` is seeded by the grader, `t.input`
records the inputs, `t.close` / `t.equal` / `t.true` record the expected values, the
tolerances and the weights), then in the student's notebook, where `t.input` returns the
reference's inputs (sent as data; `rng` is a dummy) and the parts record what the
student's code computed.  The grader compares the two itself.  So a graded check never
writes an expected value: the solution computes it.  `forbid` names the library's own
implementation of what is graded; calling it scores 0 (read from the source, before
anything runs).  `needs` names the checks upstream of this one: when one of them lost
points too, this check's message starts "fix `signed_d2` first".

A check tests one student function: everything upstream of it is the instructor's,

    with upstream(globals(), signed_d2=_ref_signed_d2):
        t.close(run_func(probability, p, a, b, c, sigma), ...)

so a wrong `signed_d2` costs only the `signed_d2` check.

Questions are parts too: `t.number(band_px, rtol=0.3)` (a number, predicted before the
cell that measures it), `t.choice(answer, "abcd")` (multiple choice: the letter is
compared, the right one is never shown), `t.text(answer)` (free text: collected for the
instructor, scored by nobody; such a check has `points=0`).
"""
import contextlib
import time

import numpy as np

from .checks import DEFAULT_CHECK_TIMEOUT, Check, as_array, run_guarded

REFERENCE, STUDENT = "reference", "student"

_registry = {}      # name -> (fn, points, hint, timeout), filled while the grader defines the checks
_defining = [False]


class Recorder:
    """The `t` of a graded check: records inputs and parts instead of comparing."""

    def __init__(self, role, inputs=None):
        self.role = role
        self.given = dict(inputs or {})
        self.inputs = {}
        self.parts = []      # dicts: what, kind, rtol, atol, weight, hint, problem
        self.values = []     # arrays (or None where the value could not be read)

    def input(self, name, value):
        name = str(name)
        if self.role == REFERENCE:
            a, msg = as_array(value, f"input {name}")
            if msg:
                raise TypeError(msg)
            self.inputs[name] = a
            return a.copy()
        if name not in self.given:
            raise KeyError(f"the grader sent no input named {name!r}")
        return np.array(self.given[name])

    def _record(self, kind, value, what, weight, hint, rtol=0.0, atol=0.0):
        a, msg = as_array(value, what)
        self.parts.append({"what": str(what), "kind": kind, "rtol": float(rtol), "atol": float(atol),
                           "weight": float(weight), "hint": hint, "problem": msg})
        self.values.append(a)

    def close(self, value, rtol=1e-5, atol=1e-6, what="the result", weight=1.0, hint=None):
        self._record("close", value, what, weight, hint, rtol, atol)

    def equal(self, value, what="the result", weight=1.0, hint=None):
        self._record("equal", value, what, weight, hint)

    def true(self, condition, what="condition", weight=1.0, hint=None):
        self._record("equal", np.bool_(bool(condition)), what, weight, hint)

    def number(self, answer, rtol=0.1, atol=0.0, what="your answer", weight=1.0, hint=None):
        """A numeric answer, compared with the solution's within the tolerance."""
        self._record("close", answer, what, weight, hint, rtol, atol)
        if answer is None:
            self.parts[-1]["problem"] = f"{what}: not answered yet (replace None in its cell)"

    def choice(self, answer, options, what="the answer", weight=1.0, hint=None):
        """A multiple-choice answer: which of `options` (a string of letters, or a list)
        `answer` is; None (not answered) and anything else are recorded as such."""
        options = [str(o) for o in options]
        key = str(answer).strip().lower() if answer is not None else None
        index = -2 if key is None else next((i for i, o in enumerate(options) if o.lower() == key), -1)
        self._record("choice", np.int64(index), what, weight, hint)
        self.parts[-1]["options"] = options

    def text(self, answer, what="your answer"):
        """A free-text answer, collected for the instructor (never scored)."""
        self._record("text", np.int64(0), what, 0.0, None)
        self.parts[-1]["text"] = "" if answer is None else str(answer)[:2000]


def _clear_compiled(namespace):
    """Forget every compiled kernel of `namespace` and of run_func, so that the next call
    compiles again with the functions the namespace holds now."""
    from .run_func import _kernels

    _kernels.clear()
    for value in list(namespace.values()):
        for kernel in (getattr(value, "_primal", None), getattr(value, "_adjoint", None)):
            if isinstance(getattr(kernel, "compiled_kernels", None), dict):
                kernel.compiled_kernels.clear()


@contextlib.contextmanager
def upstream(namespace, **functions):
    """Within the block, `namespace` (the notebook's globals) holds the given functions
    under the given names: a student's `probability` then calls the instructor's
    `signed_d2`.  Kernels and run_func recompile on the way in and on the way out."""
    missing = object()
    saved = {name: namespace.get(name, missing) for name in functions}
    namespace.update(functions)
    _clear_compiled(namespace)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value
        _clear_compiled(namespace)


def graded(name, points=1, hint=None, timeout=None, forbid=(), needs=()):
    """Decorator of a graded check `fn(t, rng)` (see the module docstring).  Outside the
    grader (the instructor running the solution notebook) it runs the body once as a
    smoke test and says how many parts it recorded."""
    def register(fn):
        _registry[str(name)] = (fn, float(points), hint, timeout)
        if not _defining[0]:
            meta, _ = run_check(str(name), REFERENCE, seed=0)
            if meta["error"]:
                print(f"✘ graded check {name!r}: {meta['error']}")
            else:
                print(f"✔ graded check {name!r} ({points:g} points): {len(meta['parts'])} parts recorded "
                      f"on inputs {', '.join(meta['inputs']) or '(none)'}")
        return fn
    return register


def run_check(name, role, seed=None, inputs=None, timeout=None):
    """Run the registered check `name` as `role`; returns (header, arrays) for the channel:
    header {"parts", "inputs", "error", "seconds"}, arrays {"v<i>": part value, "in:<name>": input}."""
    if name not in _registry:
        return {"parts": [], "inputs": [], "error": f"no graded check named {name!r} is defined",
                "seconds": 0.0}, {}
    fn, points, hint, limit = _registry[name]
    rng = np.random.default_rng(seed if role == REFERENCE else 0)
    t = Recorder(role, inputs)
    holder = Check(name, points, hint)
    start = time.perf_counter()
    limit = limit if limit is not None else (timeout if timeout is not None else DEFAULT_CHECK_TIMEOUT)
    run_guarded(holder, lambda: fn(t, rng), float(limit))
    arrays = {f"v{i}": v for i, v in enumerate(t.values) if v is not None}
    arrays.update({f"in:{k}": v for k, v in t.inputs.items()})
    header = {"parts": t.parts, "inputs": sorted(t.inputs), "error": holder.error,
              "seconds": round(time.perf_counter() - start, 3)}
    return header, arrays
