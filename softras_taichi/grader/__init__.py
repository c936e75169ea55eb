"""Auto-grading of the course's exercise notebooks.

The student-facing half (what an exercise notebook imports, light, no grading power):

    from softras_taichi.grader import check, run_func, summary

`@check` gives instant feedback on fixed examples (`feedback.py`), `run_func` evaluates a
`@ti.func` on rows of arrays (`run_func.py`), `summary()` prints the table.  None of it
decides a grade, and no reference answer ships here.

The trusted half (the instructor's machine, `softras-taichi grade`):

    spec.py        the instructor's solution notebook: graded checks, points, hidden tests
    hidden.py      `@graded` checks (hidden tests), run as the reference (solution) and as the student
    channel.py     the data-only channel to a notebook's process (JSON + .npz, no pickles)
    harness.py     the notebook side of that channel, inside the sandbox
    sandbox.py     bubblewrap / docker / unsafe, and the limits
    supervisor.py  one notebook's process: cells, checks, time and memory limits, restarts
    static.py      "you called the library's implementation" (from the source's AST)
    grade.py       reference vs student, compared here; the report
    gradebook.py   folders, roster, the gradebook CSV, Canvas / Moodle / Gradescope
    export.py      nbgrader and otter-grader source notebooks
    cli.py         `softras-taichi grade` and `softras-taichi export`
"""
from .checks import Check, CheckTimeout
from .feedback import check, summary
from .hidden import graded, upstream
from .run_func import run_func

__all__ = ["check", "Check", "CheckTimeout", "run_func", "summary", "graded", "upstream"]
