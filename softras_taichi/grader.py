"""Auto-grading of the course's exercise notebooks.

Two halves, one module:

**Checks (inside a notebook).**  A check cell grades what the student wrote above it:

    from softras_taichi.grader import check, run_func, reference as ref

    @check("segment_d2", points=2, hint="clamp t to [0, 1] before taking the closest point")
    def _(t):
        p, a, b = ref.random_points(50, seed=1), ref.random_points(50, seed=2), ref.random_points(50, seed=3)
        t.close(run_func(segment_d2, p, a, b), ref.segment_d2(p, a, b), what="segment_d2(p, a, b)")

`@check` runs the function *at once*, under a time limit, and catches everything it
raises: a wrong answer, an exception or an endless loop in the student's code costs
that check's points and nothing else.  Inside, `t.close` (floats, with tolerances),
`t.equal` (exact) and `t.true` are the parts of the check: the check earns
`points × (weight of the parts that passed) / (weight of all parts)` (partial
credit), and its message says what was expected and what came out (shapes, the
first wrong index, NaNs, a flipped sign...) plus the hint.  A bare `assert` works
too.  The student sees one line per check (✔ / ◐ / ✘) and `summary()` prints the
table; the grading runner collects the same results from the file named by the
environment variable SOFTRAS_GRADER_RESULTS (one JSON line per check).  With
SOFTRAS_GRADER_RAISE=1 a check that is short of full points also raises
AssertionError, which is how nbgrader and otter-grader see a failed test cell.

`run_func(f, *arrays)` evaluates a student's `@ti.func` on every row of NumPy arrays
in one Taichi kernel; `reference` holds the float64 NumPy formulas of docs/math.md that
the checks compare against.

**The runner (outside).**  `grade_notebook(path)` executes a notebook top to bottom
in a fresh Jupyter kernel (nbclient, errors allowed, a time limit per cell), then
reads the check results.  The checks a notebook *should* run are read from its
source (every `check("name", points=...)` call), so a check whose cell never ran,
raised or hung scores 0 with the reason instead of vanishing from the total.  A cell
that runs past its limit is interrupted; if the kernel does not come back (a Taichi
kernel in an endless loop cannot be interrupted) or dies, the notebook is run again
in a new kernel without that cell.

    softras-taichi grade NOTEBOOK.ipynb --json OUT.json      # one notebook: table + JSON
    softras-taichi grade SUBMISSIONS/ --csv grades.csv       # a folder: one CSV row per student

JSON: {"score", "max_score", "checks": [{"name", "points", "max_points", "message"}]}.
"""
import ast
import contextlib
import copy
import csv
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

RESULTS_ENV = "SOFTRAS_GRADER_RESULTS"        # file the checks append their JSON lines to
CHECK_TIMEOUT_ENV = "SOFTRAS_GRADER_CHECK_TIMEOUT"
RAISE_ENV = "SOFTRAS_GRADER_RAISE"            # "1": a check short of full points raises AssertionError
                                              # after recording (for nbgrader / otter-grader test cells)
DEFAULT_CHECK_TIMEOUT = 60.0                  # seconds per check (compiles included)
DEFAULT_CELL_TIMEOUT = 180                    # seconds per cell when grading
MAX_RESTARTS = 3                              # new kernels after a hung or dead one
PROBE_TIMEOUT = 15                            # seconds for an interrupted kernel to answer

__all__ = ["check", "Check", "CheckTimeout", "run_func", "summary", "reference",
           "grade_notebook", "grade_folder", "scan_checks", "format_table", "cli_grade"]


# =========================================================================== checks

class CheckTimeout(BaseException):
    """Raised inside a check that runs past its time limit (a BaseException, so that a
    student's `except Exception:` cannot swallow it)."""


_session = []  # results of the checks run in this Python process, for summary()


def _fmt(x):
    """A short, readable number."""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    try:
        x = float(x)
    except (TypeError, ValueError):
        return repr(x)
    if math.isnan(x) or math.isinf(x):
        return str(x)
    return f"{x:.6g}"


def _as_array(x, what):
    """NumPy array from a number, list, NumPy array, Taichi field or ndarray.
    Returns (array, None) or (None, message)."""
    if x is None:
        return None, f"{what}: got None (did you forget to `return` the result?)"
    if hasattr(x, "to_numpy") and callable(x.to_numpy):
        try:
            x = x.to_numpy()
        except Exception as exc:  # noqa: BLE001 - report, don't crash the check
            return None, f"{what}: could not read the Taichi value ({type(exc).__name__}: {exc})"
    try:
        a = np.asarray(x)
    except Exception as exc:  # noqa: BLE001
        return None, f"{what}: got a {type(x).__name__}, which is not an array ({exc})"
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        return None, f"{what}: got a {type(x).__name__} of {a.dtype}, expected numbers"
    return a, None


def _index(idx):
    return "(" + ", ".join(str(int(i)) for i in idx) + ")" if len(idx) != 1 else f"[{int(idx[0])}]"


class Check:
    """One graded check: a list of parts (each with a weight) and, maybe, an error.

    Parts are recorded by `close`, `equal`, `true` and `fail`; each returns whether it
    passed, so a check can stop early (`if not t.close(...): return`)."""

    def __init__(self, name, points, hint=None):
        self.name = str(name)
        self.max_points = float(points)
        self.hint = hint
        self.parts = []        # (passed, weight, message)
        self.error = None      # message when the check raised or timed out
        self.points = 0.0
        self.message = ""
        self.seconds = 0.0

    # --- parts ---------------------------------------------------------------
    def _part(self, passed, weight, message, hint=None):
        if not passed and hint:
            message = f"{message}. Hint: {hint}"
        self.parts.append((bool(passed), float(weight), message))
        return bool(passed)

    def true(self, condition, message="condition failed", weight=1.0, hint=None):
        """A part that passes when `condition` is true; `message` says what was wrong."""
        return self._part(bool(condition), weight, message, hint)

    def fail(self, message, weight=1.0, hint=None):
        return self._part(False, weight, message, hint)

    def close(self, got, expected, rtol=1e-5, atol=1e-6, what="the result", weight=1.0, hint=None):
        """A part that passes when `got` matches `expected` elementwise within
        |got − expected| ≤ atol + rtol·|expected| (same shape; NaN only where expected is NaN)."""
        e, msg = _as_array(expected, "expected")
        if msg:
            raise TypeError(msg)  # a bug of the check itself
        g, msg = _as_array(got, what)
        if msg:
            return self._part(False, weight, msg, hint)
        e = e.astype(np.float64)
        g = g.astype(np.float64)
        if g.shape != e.shape:
            if g.size == e.size == 1:
                g = g.reshape(e.shape)
            else:
                extra = " (transposed?)" if g.shape == e.shape[::-1] else ""
                return self._part(False, weight, f"{what}: shape {g.shape}, expected {e.shape}{extra}", hint)
        bad = ~np.isclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
        if not bad.any():
            return self._part(True, weight, f"{what}: ok")
        n, size = int(bad.sum()), bad.size
        first = tuple(np.argwhere(bad)[0]) if e.ndim else ()
        gi, ei = (g[first], e[first]) if e.ndim else (g[()], e[()])
        where = f" first at index {_index(first)}:" if e.ndim else ""
        msg = (f"{what}: {n} of {size} values differ;{where} expected {_fmt(ei)}, got {_fmt(gi)} "
               f"(tolerance {_fmt(atol)} + {_fmt(rtol)}·|expected|)")
        if not np.all(np.isfinite(g[bad])) and np.all(np.isfinite(e[bad])):
            k = int(np.sum(~np.isfinite(g)))
            msg += (f"; {k} value{'s are' if k > 1 else ' is'} NaN or inf: an overflow "
                    "(exp of a large number?) or a division by zero")
        elif np.allclose(g, -e, rtol=rtol, atol=atol) and np.any(np.abs(e) > atol):
            msg += "; every value has the opposite sign: is a sign flipped?"
        elif e.ndim == 2 and e.shape[0] == e.shape[1] and np.allclose(g.T, e, rtol=rtol, atol=atol):
            msg += "; the transpose would be right: rows and columns swapped?"
        return self._part(False, weight, msg, hint)

    def equal(self, got, expected, what="the result", weight=1.0, hint=None):
        """A part that passes when `got` equals `expected` exactly (integers, booleans)."""
        e, msg = _as_array(expected, "expected")
        if msg:
            raise TypeError(msg)
        g, msg = _as_array(got, what)
        if msg:
            return self._part(False, weight, msg, hint)
        if g.shape != e.shape and not (g.size == e.size == 1):
            return self._part(False, weight, f"{what}: shape {g.shape}, expected {e.shape}", hint)
        g = g.reshape(e.shape)
        bad = g != e
        if not np.any(bad):
            return self._part(True, weight, f"{what}: ok")
        if e.ndim == 0:
            return self._part(False, weight, f"{what}: expected {_fmt(e[()])}, got {_fmt(g[()])}", hint)
        first = tuple(np.argwhere(bad)[0])
        return self._part(False, weight, f"{what}: {int(bad.sum())} of {bad.size} values differ; first at "
                          f"index {_index(first)}: expected {_fmt(e[first])}, got {_fmt(g[first])}", hint)

    # --- result ----------------------------------------------------------------
    def finish(self):
        if self.error is not None:
            self.points = 0.0
            self.message = self.error + (f". Hint: {self.hint}" if self.hint else "")
        elif not self.parts:
            self.points, self.message = self.max_points, "ok"
        else:
            total = sum(w for _, w, _ in self.parts)
            passed = sum(w for ok, w, _ in self.parts if ok)
            self.points = round(self.max_points * passed / total, 2) if total > 0 else self.max_points
            failed = [m for ok, _, m in self.parts if not ok]
            if not failed:
                self.message = "ok"
            else:
                self.message = "; ".join(failed)
                if self.hint and "Hint:" not in self.message:
                    self.message += f". Hint: {self.hint}"
                if len(self.parts) > 1:
                    self.message = f"{len(self.parts) - len(failed)} of {len(self.parts)} parts right. " \
                                   + self.message
        return self

    def as_dict(self):
        return {"name": self.name, "points": self.points, "max_points": self.max_points,
                "message": self.message, "seconds": round(self.seconds, 3)}

    def __repr__(self):
        return f"<check {self.name!r}: {_fmt(self.points)}/{_fmt(self.max_points)} points>"


def _describe(exc):
    """One helpful line about an exception raised by student code."""
    name = type(exc).__name__
    text = str(exc).strip()
    if isinstance(exc, NotImplementedError) or 'Unsupported node "Raise"' in text:
        return ("not implemented yet: replace `raise NotImplementedError` (under # YOUR CODE HERE) "
                "with your code and run the cell again")
    if name in ("TaichiCompilationError", "TaichiSyntaxError", "TaichiTypeError", "TaichiNameError"):
        lines = [ln for ln in text.splitlines() if ln.strip()]
        where = [ln.strip() for ln in lines if ln.lstrip().startswith("File ")]  # innermost last
        where = where[-1].rstrip(":") if where else ""
        last = lines[-1].strip() if lines else ""
        text = f"{last} ({where})" if where else last
        return f"Taichi could not compile your code: {name}: {text}"[:600]
    where = ""
    skip = [os.path.dirname(os.path.abspath(__file__))]
    if "taichi" in sys.modules and getattr(sys.modules["taichi"], "__file__", None):
        skip.append(os.path.dirname(os.path.abspath(sys.modules["taichi"].__file__)))
    tb, frames = exc.__traceback__, []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    for fr in reversed(frames):  # the innermost frame of the student's code
        fn = os.path.abspath(fr.tb_frame.f_code.co_filename)
        if not any(fn.startswith(d) for d in skip):
            where = f" (in {fr.tb_frame.f_code.co_name}, line {fr.tb_lineno})"
            break
    if isinstance(exc, AssertionError):
        return f"assertion failed{where}" + (f": {text}" if text else "")
    return f"your code raised {name}{where}" + (f": {text}" if text else "")[:600]


@contextlib.contextmanager
def _time_limit(seconds):
    """Raise CheckTimeout in the main thread after `seconds` (POSIX; no limit elsewhere)."""
    if (not seconds or seconds <= 0 or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()):
        yield
        return

    def handler(signum, frame):
        raise CheckTimeout(seconds)

    try:
        old = signal.signal(signal.SIGALRM, handler)
    except ValueError:  # not allowed here
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _default_timeout():
    try:
        return float(os.environ.get(CHECK_TIMEOUT_ENV, DEFAULT_CHECK_TIMEOUT))
    except ValueError:
        return DEFAULT_CHECK_TIMEOUT


def _record(c):
    _session[:] = [r for r in _session if r.name != c.name] + [c]
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(c.as_dict()) + "\n")
    mark = "✔" if c.points >= c.max_points else ("◐" if c.points > 0 else "✘")
    line = f"{mark} {c.name}: {_fmt(c.points)}/{_fmt(c.max_points)} points"
    if c.message != "ok":
        line += f" — {c.message}"
    print(line, flush=True)


def check(name, points=1, timeout=None, hint=None):
    """Decorator that runs `fn(t)` at once as the graded check `name` worth `points`.

    `t` is a `Check`: call `t.close(got, expected, ...)`, `t.equal(...)`, `t.true(...)`
    for the parts (partial credit by weight), or just `assert`.  Any exception or a
    run past `timeout` seconds (default 60, or $SOFTRAS_GRADER_CHECK_TIMEOUT) scores 0
    with the reason.  The decorated name is bound to the finished `Check`."""
    limit = _default_timeout() if timeout is None else float(timeout)

    def run(fn):
        c = Check(name, points, hint)
        start = time.perf_counter()
        try:
            with _time_limit(limit):
                if fn(c) is False and not c.parts:
                    c.fail("the check returned False")
        except CheckTimeout:
            c.error = (f"timed out after {_fmt(limit)} s: does your code loop forever "
                       "(a `while` whose condition never changes?) or do far too much work?")
        except KeyboardInterrupt:
            c.error = "interrupted (it ran too long)"
        except Exception as exc:  # noqa: BLE001 - the whole point: student errors cost points only
            c.error = _describe(exc)
        c.seconds = time.perf_counter() - start
        c.finish()
        _record(c)
        if os.environ.get(RAISE_ENV, "") not in ("", "0") and c.points < c.max_points:
            raise AssertionError(f"{c.name}: {_fmt(c.points)}/{_fmt(c.max_points)} points: {c.message}")
        return c

    return run


def summary():
    """Print the table of the checks run so far in this Python session (the score a
    grader running the notebook from the top would give, if every check cell ran)."""
    print(format_table(_report([c.as_dict() for c in _session])))


# =========================================================================== run_func

_kernels = {}


def _is_ti_func(f):
    return bool(getattr(f, "_is_taichi_function", False)) or type(f).__name__ == "Func"


def run_func(func, *args, out_dim=None):
    """Evaluate the `@ti.func` `func` once per row: `func(args[0][i], args[1][i], ...)`.

    Each argument is a NumPy array of shape (N,) (a scalar per row), (N, k) (a
    k-vector per row) or a Python number (the same for every row).  The result is
    (N,) or, with `out_dim=k`, (N, k); its dtype is the backend's float."""
    import taichi as ti

    from . import backend

    if not callable(func):
        raise TypeError(f"expected a @ti.func, got {type(func).__name__}")
    if not _is_ti_func(func):
        raise TypeError(f"{getattr(func, '__name__', 'this function')} must be decorated with @ti.func "
                        "(write @ti.func on the line above `def`)")
    backend.ensure_init()
    fp = ti.f64 if backend.current()[1] == "f64" else ti.f32
    npfp = np.float64 if fp == ti.f64 else np.float32
    if not 1 <= len(args) <= 5:
        raise ValueError("run_func takes 1 to 5 arguments after the function")
    n = None
    kinds, values = [], []
    arrays = [a for a in args if np.ndim(a) > 0]
    if not arrays:
        raise ValueError("run_func needs at least one array argument")
    rows = len(arrays[0])
    for a in args:
        if np.ndim(a) == 0:  # a number: the same for every row
            a = np.full(rows, float(a))
        a = np.ascontiguousarray(a, dtype=npfp)
        if a.ndim not in (1, 2):
            raise ValueError(f"run_func arguments must be (N,) or (N, k) arrays, got shape {a.shape}")
        if n is not None and a.shape[0] != n:
            raise ValueError(f"run_func arguments must have the same number of rows, got {n} and {a.shape[0]}")
        n = a.shape[0]
        kinds.append(a.shape[1] if a.ndim == 2 else 0)
        values.append(a)
    key = (id(func), tuple(kinds), out_dim, backend.generation(), fp)
    entry = _kernels.get(key)
    if entry is None or entry[0] is not func:
        entry = _kernels[key] = (func, _make_kernel(func, kinds, out_dim, fp))
    out = np.zeros((n, out_dim) if out_dim else (n,), dtype=npfp)
    entry[1](*values, out)
    return out


def _make_kernel(func, kinds, out_dim, fp):
    """A kernel `k(a0, ..., out)` with out[i] = func(a0[i], ...) (arities 1 to 5)."""
    import taichi as ti

    T = [ti.types.ndarray(dtype=ti.types.vector(k, fp) if k else fp, ndim=1) for k in kinds]
    O = ti.types.ndarray(dtype=ti.types.vector(out_dim, fp) if out_dim else fp, ndim=1)  # noqa: E741
    n = len(kinds)
    if n == 1:
        @ti.kernel
        def k1(a0: T[0], out: O):
            for i in range(out.shape[0]):
                out[i] = func(a0[i])
        return k1
    if n == 2:
        @ti.kernel
        def k2(a0: T[0], a1: T[1], out: O):
            for i in range(out.shape[0]):
                out[i] = func(a0[i], a1[i])
        return k2
    if n == 3:
        @ti.kernel
        def k3(a0: T[0], a1: T[1], a2: T[2], out: O):
            for i in range(out.shape[0]):
                out[i] = func(a0[i], a1[i], a2[i])
        return k3
    if n == 4:
        @ti.kernel
        def k4(a0: T[0], a1: T[1], a2: T[2], a3: T[3], out: O):
            for i in range(out.shape[0]):
                out[i] = func(a0[i], a1[i], a2[i], a3[i])
        return k4

    @ti.kernel
    def k5(a0: T[0], a1: T[1], a2: T[2], a3: T[3], a4: T[4], out: O):
        for i in range(out.shape[0]):
            out[i] = func(a0[i], a1[i], a2[i], a3[i], a4[i])
    return k5


# =========================================================================== reference

def _image_dot_kernel():
    import taichi as ti

    @ti.kernel
    def dot(image: ti.template(), weights: ti.template(), loss: ti.template()):
        for y, x, c in weights:
            loss[None] += weights[y, x, c] * image[0, y, x, c]
    return dot


def _image_dot(image, weights, loss):
    if "dot" not in _kernels:
        _kernels["dot"] = _image_dot_kernel()
    _kernels["dot"](image, weights, loss)


class reference:  # noqa: N801 - used as a namespace: `from softras_taichi.grader import reference as ref`
    """Float64 NumPy versions of the formulas the exercises implement (docs/math.md)."""

    @staticmethod
    def random_points(n, seed, low=-1.0, high=1.0, dim=2):
        return np.random.default_rng(seed).uniform(low, high, size=(n, dim))

    @staticmethod
    def pixel_centres(S):
        """(S, S, 2): [r, c] = (x, y) = ((2c + 1 − S)/S, (S − 1 − 2r)/S)."""
        k = np.arange(S, dtype=np.float64)
        x = (2 * k + 1 - S) / S
        y = (S - 1 - 2 * k) / S
        return np.stack(np.broadcast_arrays(x[None, :], y[:, None]), axis=-1)

    @staticmethod
    def eye(distance, elevation, azimuth):
        el, az = np.radians(elevation), np.radians(azimuth)
        return distance * np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])

    @staticmethod
    def look_at(eye):
        """3×3 rotation with rows r, u, f (camera looking at the origin, up = +y)."""
        eye = np.asarray(eye, dtype=np.float64)
        f = -eye / np.linalg.norm(eye)
        r = np.cross(f, [0.0, 1.0, 0.0])
        r /= np.linalg.norm(r)
        return np.stack([r, np.cross(r, f), f])

    @staticmethod
    def project(vertices, eye, R, viewing_angle=30.0):
        """(V, 3): (x', y') / (z' tan θ) and z'."""
        v = (np.asarray(vertices, dtype=np.float64) - eye) @ np.asarray(R).T
        t = np.tan(np.radians(viewing_angle))
        return np.stack([v[:, 0] / (v[:, 2] * t), v[:, 1] / (v[:, 2] * t), v[:, 2]], axis=1)

    @staticmethod
    def segment_d2(p, a, b):
        e = b - a
        t = np.clip(((p - a) * e).sum(-1) / np.maximum((e * e).sum(-1), 1e-30), 0.0, 1.0)
        q = a + t[..., None] * e
        return ((p - q) ** 2).sum(-1)

    @staticmethod
    def inside(p, a, b, c):
        """1.0 where p is strictly inside the triangle abc (either orientation), else 0.0."""
        def cross(u, v):
            return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
        w = np.stack([cross(b - p, c - p), cross(c - p, a - p), cross(a - p, b - p)])
        return (np.all(w > 0, axis=0) | np.all(w < 0, axis=0)).astype(np.float64)

    @classmethod
    def edge_d2(cls, p, a, b, c):
        return np.minimum(cls.segment_d2(p, a, b), np.minimum(cls.segment_d2(p, b, c), cls.segment_d2(p, c, a)))

    @classmethod
    def signed_d2(cls, p, a, b, c):
        """δ · d²: + inside, − outside."""
        return np.where(cls.inside(p, a, b, c) > 0, 1.0, -1.0) * cls.edge_d2(p, a, b, c)

    @classmethod
    def probability_map(cls, S, tri, sigma):
        """(S, S): D = sigmoid(δ d² / σ) of the triangle tri (3, 2) at every pixel centre."""
        p = cls.pixel_centres(S).reshape(-1, 2)
        a, b, c = (np.broadcast_to(np.asarray(tri[k], dtype=np.float64), p.shape) for k in range(3))
        x = np.clip(cls.signed_d2(p, a, b, c) / sigma, -30.0, 30.0)
        return (1.0 / (1.0 + np.exp(-x))).reshape(S, S)

    @classmethod
    def silhouette(cls, S, tris, sigma):
        """(S, S): A = 1 − Π_j (1 − D_j)."""
        keep = np.ones((S, S))
        for tri in tris:
            keep *= 1.0 - cls.probability_map(S, tri, sigma)
        return 1.0 - keep

    @staticmethod
    def aggregate_weights(D, z, gamma, eps):
        """(w (P, F), w_b (P,)): the depth softmax of docs/math.md, shifted by
        m = max(ε/γ, max_{j: D_j > 0} ẑ_j/γ)."""
        D, z = np.asarray(D, dtype=np.float64), np.asarray(z, dtype=np.float64)
        with np.errstate(all="ignore"):
            # the shift is the max over the faces that reach the pixel (D > 0) and the background
            m = np.maximum(eps / gamma, np.where(D > 0, z / gamma, -np.inf).max(axis=1))
            e = np.where(D > 0, D * np.exp(z / gamma - m[:, None]), 0.0)
            eb = np.exp(eps / gamma - m)
            den = eb + e.sum(axis=1)
            return e / den[:, None], eb / den

    @classmethod
    def aggregate_colors(cls, D, z, C, background, gamma, eps):
        w, wb = cls.aggregate_weights(D, z, gamma, eps)
        return (w[..., None] * np.asarray(C, dtype=np.float64)).sum(1) + wb[:, None] * np.asarray(background)

    @staticmethod
    def iou_loss(pred, target):
        """1 − Σ a·b / Σ (a + b − a·b)."""
        a, b = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
        return 1.0 - (a * b).sum() / (a + b - a * b).sum()

    @staticmethod
    def iou_loss_grad(pred, target):
        a, b = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
        inter, union = (a * b).sum(), (a + b - a * b).sum()
        return -(b * union - inter * (1.0 - b)) / union ** 2

    @staticmethod
    def image_dot_grad(scene, weights):
        """∂(Σ weights · scene.image[0]) / ∂scene.vertices (V, 3), by ti.ad.Tape through the
        scene's own pipeline (no new scene: nothing is compiled again but one small kernel).
        `weights` is a Taichi field of shape (S, S, 4)."""
        import taichi as ti

        key = ("loss", id(scene))
        if key not in _kernels:
            _kernels[key] = (scene, ti.field(scene.image.dtype, shape=(), needs_grad=True))
        loss = _kernels[key][1]
        with ti.ad.Tape(loss):
            scene.render()
            _image_dot(scene.image, weights, loss)
        return scene.vertices.grad.to_numpy()

    @staticmethod
    def adam_step(p, g, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        """One Adam step (PyTorch's rule), t = 1 on the first step: returns (p, m, v)."""
        b1, b2 = betas
        m = b1 * np.asarray(m, dtype=np.float64) + (1 - b1) * g
        v = b2 * np.asarray(v, dtype=np.float64) + (1 - b2) * np.square(g)
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v

    @staticmethod
    def laplacian_loss(vertices, faces):
        from .losses import laplacian_loss
        return laplacian_loss(vertices, faces)


# =========================================================================== the runner

def _code(source):
    """Python source of a cell with IPython syntax (magics, !shell) made parseable."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - fall back to blanking magic lines
        return "\n".join(("pass" if ln.lstrip().startswith(("%", "!")) else ln) for ln in source.splitlines())


def _const(node):
    return node.value if isinstance(node, ast.Constant) else None


def _cell_checks(source):
    """[(name, points)] of the `check("name", points=...)` calls in one cell's source."""
    try:
        tree = ast.parse(_code(source))
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        fname = f.id if isinstance(f, ast.Name) else (f.attr if isinstance(f, ast.Attribute) else None)
        if fname != "check" or not node.args or not isinstance(_const(node.args[0]), str):
            continue
        points = 1.0
        if len(node.args) > 1 and isinstance(_const(node.args[1]), (int, float)):
            points = float(_const(node.args[1]))
        for kw in node.keywords:
            if kw.arg == "points" and isinstance(_const(kw.value), (int, float)):
                points = float(_const(kw.value))
        found.append((node.lineno, _const(node.args[0]), points))
    return [(name, points) for _, name, points in sorted(found)]


def scan_checks(nb):
    """[(name, max_points, cell_index)] of every check a notebook declares, in order."""
    seen, out = set(), []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for name, points in _cell_checks(cell.source):
            if name not in seen:
                seen.add(name)
                out.append((name, points, i))
    return out


def _read(path):
    import nbformat
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as exc:  # noqa: BLE001 - a broken upload is the student's problem, reported
        raise ValueError(f"cannot read {path} as a notebook: {type(exc).__name__}: {exc}") from None


def _cell_error(cell):
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".strip()
    return None


def _python_kernel_manager(kernel_name):
    """A kernel manager for `kernel_name`, or for this very interpreter (the default:
    the one that has softras_taichi installed)."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    if kernel_name:
        return AsyncKernelManager(kernel_name=kernel_name)
    km = AsyncKernelManager(kernel_name="python3")
    km._kernel_spec = KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                 display_name="Python 3 (softras-taichi grader)", language="python")
    return km


def _run_once(nb, skip, cwd, env, cell_timeout, kernel_name, interrupted):
    """Run the code cells of `nb` (in place) except `skip`, in one fresh kernel.
    Returns (None, None) when every cell ran, or (index, reason) for a cell after which
    the kernel was gone (dead, or stuck past an interrupt).  Cells that ran past the
    limit but were interrupted are added to `interrupted` (index -> reason)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    client = NotebookClient(
        nb, timeout=cell_timeout, allow_errors=True, record_timing=False, shutdown_kernel="graceful",
        interrupt_on_timeout=True, resources={"metadata": {"path": cwd}},
        error_on_timeout={"ename": "CellTimeoutError", "evalue": f"the cell ran longer than {cell_timeout} s",
                          "traceback": []},
        km=_python_kernel_manager(kernel_name))
    # cleanup_kc: shut the kernel down when done, although the client did not create its manager;
    # "graceful" lets Taichi write its offline cache of compiled kernels on the way out, so the
    # next notebook using the same kernels starts faster ("immediate" for a stuck or dead kernel)
    with client.setup_kernel(env=env, stderr=subprocess.DEVNULL, cleanup_kc=True):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or index in skip:
                continue
            start = time.monotonic()
            try:
                client.execute_cell(cell, index)
            except DeadKernelError:
                client.shutdown_kernel = "immediate"
                return index, "the kernel died (crashed) while running this cell"
            except CellTimeoutError:
                client.shutdown_kernel = "immediate"
                return index, f"the cell did not finish within {cell_timeout} s"
            if time.monotonic() - start >= cell_timeout:
                # interrupted: did the kernel come back? (Python loops do, Taichi kernels don't)
                probe = nbformat.v4.new_code_cell("pass")
                saved, client.timeout = client.timeout, PROBE_TIMEOUT
                t0 = time.monotonic()
                try:
                    client.execute_cell(probe, index)
                except (DeadKernelError, CellTimeoutError):
                    client.shutdown_kernel = "immediate"
                    return index, f"the cell did not finish within {cell_timeout} s"
                finally:
                    client.timeout = saved
                if time.monotonic() - t0 >= PROBE_TIMEOUT:
                    client.shutdown_kernel = "immediate"  # a stuck kernel cannot shut down by itself
                    return index, f"the cell did not finish within {cell_timeout} s and could not be interrupted"
                interrupted[index] = f"the cell ran longer than {cell_timeout} s and was interrupted"
                if not _cell_error(cell):
                    cell.outputs.append(nbformat.v4.new_output(
                        "error", ename="CellTimeoutError", evalue=f"the cell ran longer than {cell_timeout} s",
                        traceback=[]))
    return None, None


def _env(results, check_timeout, arch):
    env = dict(os.environ)
    env[RESULTS_ENV] = results
    env[CHECK_TIMEOUT_ENV] = str(check_timeout)
    env.setdefault("ENABLE_TAICHI_HEADER_PRINT", "0")
    if arch and arch != "auto":
        env["TI_ARCH"] = {"cpu": "x64"}.get(arch, arch)
    return env


def _report(results, declared=None, reasons=None):
    """The JSON report from recorded check results (last record of a name wins) and the
    declared checks (name, max_points, cell), which score 0 with a reason when missing."""
    by_name = {}
    for r in results:
        by_name[r["name"]] = r
    checks = []
    names = set()
    for name, points, cell in (declared or []):
        names.add(name)
        r = by_name.get(name)
        if r is None:
            why = (reasons or {}).get(cell) or "the check did not run"
            checks.append({"name": name, "points": 0.0, "max_points": points,
                           "message": f"not run: {why}"})
        else:
            got = min(float(r["points"]), points)
            checks.append({"name": name, "points": got, "max_points": points, "message": r["message"]})
    if declared is None:
        for name, r in by_name.items():
            checks.append({"name": name, "points": float(r["points"]), "max_points": float(r["max_points"]),
                           "message": r["message"]})
    score = round(sum(c["points"] for c in checks), 2)
    max_score = round(sum(c["max_points"] for c in checks), 2)
    return {"score": score, "max_score": max_score, "checks": checks}


def _apply_reference(nb, ref_nb):
    """Put the reference's check cells into the submission `nb`: each replaces the cell with
    the same id or, failing that (ids lost on the way), the code cell that declares one of
    the same check names.  Returns (nb, declared checks of the reference, with the cell
    index each has in nb; -1 when the submission has no such cell)."""
    ids = {c.get("id"): i for i, c in enumerate(nb.cells) if c.get("id")}
    names = {}
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            for name, _ in _cell_checks(c.source):
                names.setdefault(name, i)
    where, used = {}, set()
    for j, rc in enumerate(ref_nb.cells):
        checks = _cell_checks(rc.source) if rc.cell_type == "code" else []
        if not checks:
            continue
        i = ids.get(rc.get("id"))
        if i is None or i in used:
            i = next((names[n] for n, _ in checks if n in names and names[n] not in used), None)
        if i is None:
            continue
        used.add(i)
        nb.cells[i] = nbformat_code_cell(rc.source, nb.cells[i])
        where[j] = i
    declared = [(n, p, where.get(j, -1)) for n, p, j in scan_checks(ref_nb)]
    return nb, declared


def nbformat_code_cell(source, old):
    """A code cell with `source`, keeping the id of the cell it replaces."""
    import nbformat

    cell = nbformat.v4.new_code_cell(source)
    if old.get("id"):
        cell["id"] = old["id"]
    return cell


def grade_notebook(path, timeout=None, check_timeout=None, arch=None, reference_notebook=None,
                   kernel_name=None, executed=None):
    """Run the notebook at `path` in a fresh kernel and grade it.

    timeout: seconds per cell (default 180); check_timeout: seconds per check (default
    min(60, 0.8 × timeout)); arch: "cpu", "cuda", ... sets TI_ARCH for the kernel
    ("auto"/None: the notebook's own choice); reference_notebook: an instructor's
    notebook whose check cells replace the submission's (matched by cell id, else by
    check name) and whose checks and points are the ones counted; executed: write the
    executed notebook here.  Returns {"score", "max_score", "checks": [...]}."""
    import nbformat

    nb = _read(path)
    declared = scan_checks(nb)
    if reference_notebook is not None:
        nb, declared = _apply_reference(nb, _read(reference_notebook))
    cell_timeout = int(timeout or DEFAULT_CELL_TIMEOUT)
    if check_timeout is None:
        check_timeout = min(DEFAULT_CHECK_TIMEOUT, 0.8 * cell_timeout)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    cwd = os.path.dirname(os.path.abspath(str(path)))
    skip, interrupted = {}, {}
    with tempfile.TemporaryDirectory(prefix="softras-grade-") as tmp:
        results_path = os.path.join(tmp, "results.jsonl")
        env = _env(results_path, check_timeout, arch)
        for attempt in range(MAX_RESTARTS + 1):
            work = copy.deepcopy(nb)
            open(results_path, "w").close()
            index, reason = _run_once(work, skip, cwd, env, cell_timeout, kernel_name, interrupted)
            if index is None:
                break
            skip[index] = reason
            skip.update(interrupted)  # the replay does not wait for them again
            if attempt == MAX_RESTARTS:  # give up on the cells after this one too
                for j in range(index + 1, len(work.cells)):
                    skip.setdefault(j, f"the kernel had to be restarted {MAX_RESTARTS} times; "
                                       "the cells after that were not run")
        results = []
        with open(results_path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    results.append(json.loads(line))
                except ValueError:
                    pass
    reasons = {}
    for i, cell in enumerate(work.cells):
        if i in skip:
            reasons[i] = skip[i]
        elif cell.cell_type == "code":
            err = _cell_error(cell)
            if err:
                reasons[i] = f"its cell stopped with {err}"[:400]
    if executed:
        nbformat.write(work, str(executed))
    return _report(results, declared, reasons)


# =========================================================================== output

def _clip(text, n):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def format_table(report, width=100, details=True):
    """A plain-text table of a report: one line per check and the total, then (details)
    the full message of every check that is not fully right."""
    checks = report["checks"]
    w = max([len("check")] + [len(c["name"]) for c in checks])
    w = min(w, 40)
    lines = [f"{'check':<{w}}  {'points':>11}  message", f"{'-' * w}  {'-' * 11}  {'-' * 20}"]
    for c in checks:
        pts = f"{_fmt(c['points'])} / {_fmt(c['max_points'])}"
        lines.append(f"{_clip(c['name'], w):<{w}}  {pts:>11}  {_clip(c['message'], max(20, width - w - 15))}")
    pct = 100.0 * report["score"] / report["max_score"] if report["max_score"] else 0.0
    total = f"{_fmt(report['score'])} / {_fmt(report['max_score'])}"
    lines += [f"{'-' * w}  {'-' * 11}", f"{'total':<{w}}  {total:>11}  ({pct:.1f} %)"]
    wrong = [c for c in checks if c["message"] != "ok"]
    if details and wrong:
        lines.append("\nWhat to fix:")
        for c in wrong:
            lines.append(f"- {c['name']} ({_fmt(c['points'])}/{_fmt(c['max_points'])}): {c['message']}")
    return "\n".join(lines)


# =========================================================================== folders

def _skip_dir(name):
    return name.startswith(".") or name == "__pycache__"


def find_submissions(folder, pattern="*.ipynb"):
    """{student: [notebook paths]} of a folder: FOLDER/<student>.ipynb, or
    FOLDER/<student>/.../*.ipynb (student = the first folder under FOLDER)."""
    import fnmatch

    subs = {}
    for entry in sorted(os.listdir(folder)):
        full = os.path.join(folder, entry)
        if os.path.isfile(full) and fnmatch.fnmatch(entry, pattern):
            subs.setdefault(os.path.splitext(entry)[0], []).append(full)
        elif os.path.isdir(full) and not _skip_dir(entry):
            for root, dirs, files in os.walk(full):
                dirs[:] = sorted(d for d in dirs if not _skip_dir(d))
                for f in sorted(files):
                    if fnmatch.fnmatch(f, pattern):
                        subs.setdefault(entry, []).append(os.path.join(root, f))
    return subs


def _grade_one(job):
    path, kwargs = job
    start = time.monotonic()
    try:
        report, error = grade_notebook(path, **kwargs), ""
    except Exception as exc:  # noqa: BLE001 - one bad submission must not stop the class
        report, error = {"score": 0.0, "max_score": 0.0, "checks": []}, f"{type(exc).__name__}: {exc}"
    return path, report, error, time.monotonic() - start


def grade_folder(folder, csv_path=None, json_path=None, pattern="*.ipynb", jobs=1, verbose=True, **kwargs):
    """Grade every submission in `folder` (see `find_submissions`); write a CSV with one
    row per student: student, notebooks, score, max_score, percent, seconds, one column
    per check (its points), error.  Returns the rows (dicts)."""
    subs = find_submissions(folder, pattern)
    if not subs:
        raise ValueError(f"no notebooks matching {pattern!r} in {folder}")
    jobs_list = [(p, kwargs) for paths in subs.values() for p in paths]
    graded = {}
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for path, report, error, secs in pool.map(_grade_one, jobs_list):
                graded[path] = (report, error, secs)
    else:
        for job in jobs_list:
            path, report, error, secs = _grade_one(job)
            graded[path] = (report, error, secs)
            if verbose:
                print(f"graded {path}: {_fmt(report['score'])}/{_fmt(report['max_score'])}"
                      + (f"  ({error})" if error else ""), flush=True)
    many = any(len(p) > 1 for p in subs.values())
    rows, columns, reports = [], [], {}
    for student, paths in subs.items():
        row = {"student": student, "notebooks": ";".join(os.path.relpath(p, folder) for p in paths),
               "score": 0.0, "max_score": 0.0, "seconds": 0.0, "error": ""}
        errors = []
        for p in paths:
            report, error, secs = graded[p]
            reports.setdefault(student, {})[os.path.relpath(p, folder)] = report
            row["score"] += report["score"]
            row["max_score"] += report["max_score"]
            row["seconds"] += secs
            if error:
                errors.append(error)
            stem = os.path.splitext(os.path.basename(p))[0]
            for c in report["checks"]:
                col = f"{stem}: {c['name']}" if many else c["name"]
                if col not in columns:
                    columns.append(col)
                row[col] = c["points"]
        row["score"], row["max_score"] = round(row["score"], 2), round(row["max_score"], 2)
        row["percent"] = round(100.0 * row["score"] / row["max_score"], 1) if row["max_score"] else 0.0
        row["seconds"] = round(row["seconds"], 1)
        row["error"] = "; ".join(errors)
        rows.append(row)
    header = ["student", "notebooks", "score", "max_score", "percent", "seconds"] + columns + ["error"]
    if csv_path:
        os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
        with open(csv_path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=header, restval="")
            writer.writeheader()
            writer.writerows(rows)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump(reports, fh, indent=2)
    return rows


def format_rows(rows):
    w = max([len("student")] + [len(r["student"]) for r in rows])
    lines = [f"{'student':<{w}}  {'score':>13}  {'percent':>7}  error", f"{'-' * w}  {'-' * 13}  {'-' * 7}"]
    for r in rows:
        s = f"{_fmt(r['score'])} / {_fmt(r['max_score'])}"
        lines.append(f"{r['student']:<{w}}  {s:>13}  {r['percent']:>6.1f}%  {_clip(r['error'], 60)}")
    return "\n".join(lines)


# =========================================================================== command line

def cli_grade(args):
    """`softras-taichi grade NOTEBOOK.ipynb|FOLDER [--json OUT] [--csv OUT] [--timeout S] ...`."""
    target = args.notebook
    kwargs = {"timeout": getattr(args, "timeout", None), "arch": getattr(args, "arch", None)}
    ref = getattr(args, "reference", None)
    if ref:
        if not os.path.isfile(ref):
            raise FileNotFoundError(f"reference notebook not found: {ref}")
        kwargs["reference_notebook"] = ref
    if os.path.isdir(target):
        csv_path = getattr(args, "csv", None) or os.path.join(target, "grades.csv")
        rows = grade_folder(target, csv_path=csv_path, json_path=getattr(args, "json", None),
                            pattern=getattr(args, "pattern", None) or "*.ipynb",
                            jobs=max(1, int(getattr(args, "jobs", 1) or 1)), **kwargs)
        print(format_rows(rows))
        print(f"wrote {csv_path} ({len(rows)} students)")
        return 0
    start = time.monotonic()
    report = grade_notebook(target, executed=getattr(args, "executed", None), **kwargs)
    print(format_table(report))
    print(f"graded {target} in {time.monotonic() - start:.1f} s")
    if getattr(args, "json", None):
        parent = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(parent, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
        print(f"wrote {args.json}")
    return 0
