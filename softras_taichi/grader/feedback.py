"""Instant feedback in the exercise notebook: `@check` on fixed examples, and `summary()`.

    @check("segment_d2", points=2, hint="clamp t to [0, 1] before taking the closest point")
    def _(t):
        t.close(run_func(segment_d2, P, A, B), [0.25, 0.0, 1.0], what="segment_d2 of three points")

`@check` runs the function at once, under a time limit, catches everything it raises, and
prints one line (✔ / ◐ / ✘ with what is wrong).  Its expected values are data written in
the cell: they say nothing about other inputs, and nothing here decides a grade — the
grader calls the student's functions itself, on inputs drawn when it grades.
"""
from .checks import DEFAULT_CHECK_TIMEOUT, Check, fmt, run_guarded

_session = []  # the feedback checks run in this Python process, for summary()


def _show(c):
    mark = "✔" if c.points >= c.max_points else ("◐" if c.points > 0 else "✘")
    line = f"{mark} {c.name}: {fmt(c.points)}/{fmt(c.max_points)} points"
    if c.message != "ok":
        line += f" — {c.message}"
    print(line, flush=True)


def check(name, points=1, timeout=None, hint=None):
    """Decorator that runs `fn(t)` at once as the feedback check `name` worth `points`.

    `t` is a `Check`: call `t.close(got, expected, ...)`, `t.equal(...)`, `t.true(...)`
    for the parts (partial credit by weight), or just `assert`.  Any exception or a
    run past `timeout` seconds (default 60) scores 0 with the reason.  The decorated
    name is bound to the finished `Check`."""
    limit = DEFAULT_CHECK_TIMEOUT if timeout is None else float(timeout)

    def run(fn):
        c = Check(name, points, hint)

        def body():
            if fn(c) is False and not c.parts:
                c.fail("the check returned False")

        run_guarded(c, body, limit).finish()
        traps = _traps(fn)
        if traps and c.points < c.max_points:
            c.message = "; ".join(traps) + ". " + c.message
        _session[:] = [r for r in _session if r.name != c.name] + [c]
        _show(c)
        return c

    return run


def _names(code, seen):
    """Global names a code object (and the code objects nested in it) uses."""
    out = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names") and const not in seen:
            seen.add(const)
            out |= _names(const, seen)
    return out


def _traps(fn):
    """The Taichi traps (static.function_traps) of the @ti.func and @ti.kernel objects the
    check `fn` uses, directly or through the Python functions it calls."""
    from .static import function_traps

    ns = getattr(fn, "__globals__", {})
    names, todo, seen = set(), [fn], set()
    while todo:
        f = todo.pop()
        code = getattr(f, "__code__", None)
        if code is None or code in seen:
            continue
        seen.add(code)
        for n in _names(code, seen) - names:
            names.add(n)
            v = ns.get(n)
            if callable(v) and not (getattr(v, "_is_taichi_function", False) or hasattr(v, "_primal")) \
                    and getattr(v, "__module__", None) == getattr(fn, "__module__", None):
                todo.append(v)
    taped = "Tape" in names
    out = []
    for n in sorted(names):
        v = ns.get(n)
        if getattr(v, "_is_taichi_function", False) or hasattr(v, "_primal"):
            out += [f"{msg} (`{n}`, line {line})" for line, msg in function_traps(v, taped and hasattr(v, "_primal"))]
    return out


def summary(expected=None, hidden=0):
    """Print the table of the feedback checks run so far in this session.

    expected: {check name: points} of every feedback check of the notebook (the exercise
    generator writes it in), so that a check that has not run counts 0 of its points;
    hidden: the points of the checks the grader adds when it grades (no feedback here)."""
    from .report import format_table

    ran = {c.name: c for c in _session}
    checks = [c.as_dict() for c in _session if expected is None or c.name in expected]
    for name, points in (expected or {}).items():
        if name not in ran:
            checks.append({"name": name, "points": 0.0, "max_points": float(points),
                           "message": "not run yet: run its cell"})
    order = list(expected or {})
    checks.sort(key=lambda c: order.index(c["name"]) if c["name"] in order else len(order))
    report = {"score": round(sum(c["points"] for c in checks), 2),
              "max_score": round(sum(c["max_points"] for c in checks), 2), "checks": checks}
    print(format_table(report))
    if hidden:
        print(f"\nThese are feedback checks on fixed examples. The grader runs its own checks on other "
              f"inputs, plus {fmt(hidden)} points of checks you do not see here.")
    else:
        print("\nThese are feedback checks on fixed examples; the grader runs its own checks on other inputs.")
