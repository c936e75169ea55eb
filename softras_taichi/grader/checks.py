"""Checks: one graded question, its parts, partial credit and the messages a student reads.

A `Check` is a list of parts, each with a weight; it earns
`points × (weight of the parts that passed) / (weight of all parts)`.  `close` compares
floats with a tolerance, `equal` compares exactly, `true` is a condition; a failing part
says what was expected and what came out (shapes, the first wrong index, NaNs, a flipped
sign, a transpose) plus the hint.

The same class scores both sides of the course: the *feedback* checks a student runs in
the exercise notebook (`@check`, fixed examples, instant ✔ / ◐ / ✘), and the grader's own
comparison of a submission's values with the instructor's reference values (trusted, in
the grading process: see `softras_taichi.grader.grade`).  A feedback check decides
nothing: the grade is computed outside the student's process.
"""
import contextlib
import math
import os
import signal
import sys
import threading
import time

import numpy as np

DEFAULT_CHECK_TIMEOUT = 60.0   # seconds per check (compiles included)


class CheckTimeout(BaseException):
    """Raised inside a check that runs past its time limit (a BaseException, so that a
    student's `except Exception:` cannot swallow it)."""


def fmt(x):
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


def as_array(x, what):
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
        e, msg = as_array(expected, "expected")
        if msg:
            raise TypeError(msg)  # a bug of the check itself
        g, msg = as_array(got, what)
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
        with np.errstate(all="ignore"):
            bad = ~np.isclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
        if not bad.any():
            return self._part(True, weight, f"{what}: ok")
        n, size = int(bad.sum()), bad.size
        first = tuple(np.argwhere(bad)[0]) if e.ndim else ()
        gi, ei = (g[first], e[first]) if e.ndim else (g[()], e[()])
        where = f" first at index {_index(first)}:" if e.ndim else ""
        msg = (f"{what}: {n} of {size} values differ;{where} expected {fmt(ei)}, got {fmt(gi)} "
               f"(tolerance {fmt(atol)} + {fmt(rtol)}·|expected|)")
        with np.errstate(all="ignore"):
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
        e, msg = as_array(expected, "expected")
        if msg:
            raise TypeError(msg)
        g, msg = as_array(got, what)
        if msg:
            return self._part(False, weight, msg, hint)
        if g.shape != e.shape and not (g.size == e.size == 1):
            return self._part(False, weight, f"{what}: shape {g.shape}, expected {e.shape}", hint)
        g = g.reshape(e.shape)
        bad = g != e
        if not np.any(bad):
            return self._part(True, weight, f"{what}: ok")
        if e.ndim == 0:
            return self._part(False, weight, f"{what}: expected {fmt(e[()])}, got {fmt(g[()])}", hint)
        first = tuple(np.argwhere(bad)[0])
        return self._part(False, weight, f"{what}: {int(bad.sum())} of {bad.size} values differ; first at "
                          f"index {_index(first)}: expected {fmt(e[first])}, got {fmt(g[first])}", hint)

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
                "message": self.message}

    def __repr__(self):
        return f"<check {self.name!r}: {fmt(self.points)}/{fmt(self.max_points)} points>"


def describe(exc):
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
    skip = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
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
def time_limit(seconds):
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


def run_guarded(c, body, limit):
    """Run `body()` for the check `c` under a time limit; whatever it raises becomes c.error."""
    start = time.perf_counter()
    try:
        with time_limit(limit):
            body()
    except CheckTimeout:
        c.error = (f"timed out after {fmt(limit)} s: does your code loop forever "
                   "(a `while` whose condition never changes?) or do far too much work?")
    except KeyboardInterrupt:
        c.error = "interrupted (it ran too long)"
    except Exception as exc:  # noqa: BLE001 - the whole point: student errors cost points only
        c.error = describe(exc)
    c.seconds = time.perf_counter() - start
    return c
