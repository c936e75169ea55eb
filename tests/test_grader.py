"""The grader, and the proof that it grades the course's notebooks.

In-process unit tests: the checks' messages and partial credit, feedback checks and
summary(), the data-only channel, the static "you called the library" detection, the
instructor's spec (hidden tests, points), the gradebook and the LMS exports, the plain
install.  Then the course: every solution notebook scores 100 %, every untouched exercise
0, blanking any one solution region lowers the score, plausible wrong answers lose points
— each graded the way an instructor does (a reference run of the solution, a sandboxed run
of the submission, compared here), on inputs drawn for this run.

Cost (CI has 2 cores): ~50 notebook runs in sandboxes, two at a time, ~3 min; they stay
cheap because the notebooks are tiny and the sandboxes start from the kernel cache that
the reference runs compile.
"""
import ast
import csv
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import nbformat
import numpy as np
import pytest

from grading import ENV, EXERCISES, NAMES, ROOT, SOLUTIONS, cli, notebook, read, write
from softras_taichi import exercises as gen
from softras_taichi.grader import Check, channel, check, feedback, spec, static
from softras_taichi.grader.gradebook import (Gradebook, export_lms, find_submissions, read_gradebook,
                                             read_roster, roster_match)
from softras_taichi.grader.grade import Reference, compare, grade_notebook
from softras_taichi.grader.sandbox import Limits, choose

WORKERS = 2


# =========================================================================== checks and their messages

def test_close_passes_within_tolerance():
    t = Check("c", 2)
    assert t.close([1.0, 2.0], np.array([1.0, 2.0 + 1e-7]))
    assert t.finish().points == 2 and t.message == "ok"


def test_close_reports_shape_first_index_nan_and_sign():
    t = Check("c", 4)
    assert not t.close(np.zeros(3), np.zeros(4), what="d2")
    assert not t.close(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 2.0], [3.0, 5.0]]), what="img")
    assert not t.close(np.array([1.0, np.nan]), np.array([1.0, 2.0]), what="w")
    assert not t.close(np.array([-1.0, 2.0]), np.array([1.0, -2.0]), what="sd")
    m = [p[2] for p in t.parts]
    assert "d2: shape (3,), expected (4,)" in m[0]
    assert "1 of 4 values differ" in m[1] and "index (1, 1)" in m[1] and "expected 5, got 4" in m[1]
    assert "NaN or inf" in m[2] and "overflow" in m[2]
    assert "sign flipped" in m[3]
    t.finish()
    assert t.points == 0 and "0 of 4 parts right" in t.message


def test_close_transposed_none_and_scalars():
    t = Check("c", 1)
    a = np.arange(6.0).reshape(2, 3)
    assert not t.close(a.T, a)
    assert "transposed" in t.parts[-1][2]
    sq = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert not t.close(sq.T, sq) and "rows and columns swapped" in t.parts[-1][2]
    assert not t.close(None, 1.0) and "forget to `return`" in t.parts[-1][2]
    assert t.close(np.array([3.0]), 3.0)  # one value, any shape
    assert not t.close(2.0, 3.0) and "expected 3, got 2" in t.parts[-1][2]


def test_equal_and_partial_credit_by_weight():
    t = Check("c", 3, hint="look again")
    assert t.equal(np.array([1, 0, 1]), np.array([1, 0, 1]))
    assert not t.equal(np.array([1, 1, 1]), np.array([1, 0, 1]), what="inside", weight=2)
    t.finish()
    assert t.points == 1.0
    assert "index [1]: expected 0, got 1" in t.message and "Hint: look again" in t.message


def test_feedback_check_prints_and_catches(capsys):
    c = check("the check", points=2)(lambda t: t.close(1.0, 1.0))
    assert c.points == 2 and "✔ the check: 2/2 points" in capsys.readouterr().out
    c = check("the check", points=2)(lambda t: t.close(1.0, 2.0))
    assert c.points == 0 and "✘ the check: 0/2 points — the result" in capsys.readouterr().out

    def not_done(t):
        raise NotImplementedError

    def buggy(t):
        return [][1]

    assert "not implemented yet" in check("x", points=3)(not_done).message
    c = check("x", points=3)(buggy)
    assert c.points == 0 and "IndexError" in c.message and "in buggy" in c.message


def test_endless_loop_times_out_even_through_except():
    def spin(t):
        while True:
            try:
                time.sleep(0.01)
            except Exception:  # noqa: BLE001 - a student's catch-all must not swallow the limit
                pass

    start = time.monotonic()
    c = check("spin", points=2, timeout=0.5)(spin)
    assert time.monotonic() - start < 5
    assert c.points == 0 and "timed out after 0.5 s" in c.message


def test_summary_counts_the_checks_that_did_not_run(capsys):
    feedback._session.clear()
    check("a", points=2)(lambda t: t.close(1.0, 1.0))
    capsys.readouterr()
    feedback.summary(expected={"a": 2, "b": 3, "c": 5}, hidden=4)
    out = capsys.readouterr().out
    assert "2 / 10" in out and "(20.0 %)" in out and "not run yet" in out and "4 points of checks" in out
    assert "100.0 %" not in out


def test_run_func_evaluates_a_ti_func():
    import taichi as ti

    import softras_taichi as sr
    from softras_taichi.grader import run_func

    sr.init("cpu", verbose=False)

    @ti.func
    def mix(p, s):
        return p * s + 1.0

    p = np.array([[1.0, 2.0], [3.0, 4.0]])
    run = run_func(mix, p, np.array([2.0, 3.0]), out_dim=2)
    np.testing.assert_allclose(run, [[3.0, 5.0], [10.0, 13.0]])
    assert run.dtype == np.float32
    np.testing.assert_allclose(run_func(mix, p[:, 0], 0.5), [1.5, 2.5])
    with pytest.raises(TypeError, match="@ti.func"):
        run_func(lambda x: x, p)


# =========================================================================== the channel

def test_channel_carries_data_and_refuses_everything_else(tmp_path):
    r, w = os.pipe()
    arrays = {"a": np.arange(6.0).reshape(2, 3), "b": np.array([True, False])}
    channel.send(w, {"op": "check", "n": 1}, channel.pack_arrays(arrays))
    header, payload = channel.recv(r)
    got = channel.unpack_arrays(payload)
    assert header == {"op": "check", "n": 1} and np.array_equal(got["a"], arrays["a"]) and got["b"].dtype == bool
    with pytest.raises(channel.ChannelError, match="pickle|not an array|dtype"):
        channel.unpack_arrays(channel.pack_arrays({"o": np.array([{"x": 1}], dtype=object)}))
    with pytest.raises(channel.ChannelError):
        channel.unpack_arrays(b"\x80\x04garbage that is no npz")
    os.write(w, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")       # a frame too large to be one
    with pytest.raises(channel.ChannelError, match="too large"):
        channel.recv(r)
    os.close(w)
    with pytest.raises(channel.ChannelError, match="closed"):
        channel.recv(r)


# =========================================================================== "you called the library"

FORBID = [spec.GradedCheck("segment_d2", 2, forbid=["softras_taichi.probability.segment_d2"]),
          spec.GradedCheck("vertex_gradient", 2, forbid=[".vertex_grad"]),
          spec.GradedCheck("free", 1)]


@pytest.mark.parametrize("source", [
    "from softras_taichi.probability import segment_d2\n",
    "from softras_taichi.probability import segment_d2 as mine\n",
    "import softras_taichi.probability as P\nx = P.segment_d2\n",
    "import softras_taichi as sr\ny = sr.probability.segment_d2\n",
    "import softras_taichi\nz = softras_taichi.probability.segment_d2\n",
    "from softras_taichi import probability\nq = probability.segment_d2\n",
    "from softras_taichi.probability import *\n",
    "import softras_taichi as sr\nmodule = sr.probability\nf = module.segment_d2\n",
    "import softras_taichi.probability as P\nf = getattr(P, 'segment_d2')\n",
])
def test_calling_the_library_is_found(source):
    out = static.scan([(3, source)], FORBID)
    assert out["segment_d2"].startswith("you called `softras_taichi.probability.segment_d2` (cell 3")
    assert out["segment_d2"].endswith("write it yourself") and "free" not in out


@pytest.mark.parametrize("source, what", [
    ("import softras_taichi.probability as P\nf = getattr(P, 'segment' + '_d2')\n", "getattr with a computed name"),
    ("m = __import__('softras_taichi.probability')\n", "__import__"),
    ("import importlib\nm = importlib.import_module('softras_taichi.probability')\n", "import importlib"),
    ("exec(open('x.py').read())\n", "exec"),
    ("f = eval('1')\n", "eval"),
    ("c = compile('1', 'f', 'eval')\n", "compile"),
    ("import sys\nm = sys.modules['softras_taichi.probability']\n", "sys.modules"),
    ("import softras_taichi\nsrc = open(softras_taichi.__file__).read()\n", "__file__"),
    ("text = open('/work/softras_taichi/probability.py').read()\n", "package's files"),
    ("g = globals()['segment_d2']\n", "globals()"),
    ("get_ipython().run_cell('x = 1')\n", "get_ipython()"),
])
def test_evasions_score_zero_for_checks_with_a_forbid_list(source, what):
    out = static.scan([(1, source)], FORBID)
    assert what in out["segment_d2"] and what in out["vertex_gradient"] and "free" not in out


def test_methods_and_honest_code():
    assert "the library's vertex_grad" in static.scan([(0, "g = renderer.vertex_grad(m, c, w)")], FORBID)["vertex_gradient"]
    honest = ("import numpy as np\nimport taichi as ti\nimport softras_taichi as sr\n"
              "from softras_taichi.probability import pixel_centre, edge_d2\n"
              "@ti.func\ndef segment_d2(p, a, b):\n    ab = b - a\n    return (p - a).dot(ab)\n"
              "x = segment_d2\nr = sr.SoftRenderer(image_size=8)\n")
    assert static.scan([(0, honest)], FORBID) == {}
    # imports in the exercise's own cells count for aliases, not as the student's use
    cells = [(0, "import softras_taichi.probability as P"), (1, "f = P.segment_d2")]
    assert static.scan(cells, FORBID, student={0}) == {}
    assert "segment_d2" in static.scan(cells, FORBID, student={1})


# =========================================================================== Taichi traps

TRAPS = """
import numpy as np
@ti.func
def segment_d2(p, a, b):
    ab = b - a
    t = np.clip((p - a).dot(ab) / ti.max(ab.dot(ab), 1e-12), 0.0, 1.0)
    return (p - a - t * ab).dot(p - a - t * ab)
@ti.func
def both(p, q):
    v = ti.Vector([p, q])
    r = 0
    if v > 0 and p < 1:
        r = 1
    return r
@ti.func
def half(x):
    return x // 2.0
@ti.kernel
def silhouette():
    for i in A:
        uncovered = 1
        for j in range(F):
            uncovered *= 1.0 - D[i, j]
        A[i] = 1.0 - uncovered
@ti.kernel
def iou_sums():
    for y, x in pred:
        s = 0.0
        for k in range(3):
            s += pred[y, x]
        inter[None] += s
def run():
    with ti.ad.Tape(loss):
        iou_sums()
"""


def test_taichi_traps_are_found_with_their_line():
    cells = [(4, TRAPS)]
    found = {(fn, line): msg for _, line, fn, msg in static.taichi_traps(cells, differentiated=static.differentiated(cells))}
    assert found[("segment_d2", 6)] == "np.clip does nothing inside a Taichi function: use ti.math.clamp"
    assert "Python `and` on a Taichi vector (`v`)" in found[("both", 12)]
    assert "`//` is integer (floor) division" in found[("half", 17)]
    assert found[("silhouette", 23)].startswith("`uncovered` starts as the integer 1") and "write 1.0" in found[("silhouette", 23)]
    assert "adstack" in found[("iou_sums", 30)] and len(found) == 5
    assert static.taichi_traps(cells, student=set()) == []


def test_honest_taichi_code_has_no_traps():
    honest = ("@ti.func\ndef inside(p, a, b, c):\n    w0 = cross2(b - p, c - p)\n    w1 = cross2(c - p, a - p)\n"
              "    r = 0\n    if (w0 > 0 and w1 > 0) or (w0 < 0 and w1 < 0):\n        r = 1\n    return r\n"
              "@ti.kernel\ndef count():\n    for i, j in ti.ndrange(4, 4):\n        if p[0] > 0 and p[1] > 0:\n"
              "            n[None] += 1\n@ti.kernel\ndef weights():\n    for i in range(P):\n        total = 0.0\n"
              "        for j in range(F):\n            total += w[i, j]\n        wb[i] = total\n")
    assert static.taichi_traps([(0, honest)]) == []


def test_a_feedback_check_names_the_trap():
    import taichi as ti

    import softras_taichi as sr
    from softras_taichi.grader import run_func

    sr.init("cpu", verbose=False)
    ns = {"ti": ti, "np": np, "run_func": run_func, "check": check}
    exec(compile("@ti.func\ndef clamp01(x):\n    return np.clip(x, 0.0, 1.0)\n", "<cell>", "exec"), ns)
    import linecache
    linecache.cache["<cell>"] = (0, None, ["@ti.func\n", "def clamp01(x):\n", "    return np.clip(x, 0.0, 1.0)\n"], "<cell>")
    exec("c = check('clamp', points=1)(lambda t: t.close(run_func(clamp01, np.array([2.0])), [1.0]))", ns)
    assert ns["c"].points == 0
    assert ns["c"].message.startswith("np.clip does nothing inside a Taichi function: use ti.math.clamp (`clamp01`, line 3)")


# =========================================================================== questions

def test_questions_are_compared_by_the_grader():
    from softras_taichi.grader.hidden import REFERENCE, STUDENT, Recorder

    def answers(role, number, letter, text):
        t = Recorder(role)
        t.number(number, rtol=0.1, what="n")
        t.choice(letter, "abcd", what="mc")
        t.text(text, what="why")
        return ({"parts": t.parts}, {f"v{i}": v for i, v in enumerate(t.values) if v is not None})

    ref = answers(REFERENCE, 2.0, "b", "the instructor's text")
    num = spec.GradedCheck("q", 2)
    assert compare(num, ref, answers(STUDENT, 2.1, "B", "mine")).points == 2
    wrong = compare(num, ref, answers(STUDENT, 3.0, "c", "mine"))
    assert wrong.points == 0 and "c is not the right answer" in wrong.message and "b" not in wrong.message.split("answer")[-1]
    none = compare(num, ref, answers(STUDENT, None, None, None))
    assert none.points == 0 and none.message.count("not answered yet") == 2
    assert "none of a, b, c, d" in compare(num, ref, answers(STUDENT, 2.0, "z", "")).message
    free = compare(spec.GradedCheck("why", 0), answers(REFERENCE, 1, "a", "x"), answers(STUDENT, 1, "a", "because"))
    assert free.points == 0 and free.answer == "because" and free.message == "for the instructor: because"


def test_free_text_goes_to_the_gradebook_for_the_instructor(tmp_path):
    ex = spec.Exercise("demo", notebook(["### BEGIN HIDDEN TESTS\n@graded('a', points=2)\ndef _(t, rng): pass\n"
                                         "@graded('why', points=0)\ndef _(t, rng): pass\n### END HIDDEN TESTS"]))
    book = Gradebook(str(tmp_path / "g.csv"), ex)
    book.add("alice", {"score": 2.0, "checks": [{"name": "a", "points": 2.0, "max_points": 2.0},
                                                {"name": "why", "points": 0.0, "max_points": 0.0, "answer": "because"}]})
    rows = list(csv.DictReader((tmp_path / "g.csv").open()))
    assert rows[0]["why (for the instructor)"] == "because" and rows[0]["max_score"] == "2.0"


def test_upstream_swaps_what_a_function_calls_and_puts_it_back():
    from softras_taichi.grader import upstream

    ns = {}
    exec("def square(x):\n    return x * x\ndef area(x):\n    return square(x) * 3", ns)
    with upstream(ns, square=lambda x: x ** 2 + 1):
        assert ns["area"](2) == 15
    assert ns["area"](2) == 12


def test_a_failed_upstream_check_is_named_first():
    from softras_taichi.grader.grade import upstream_first

    checks = [{"name": "signed_d2", "points": 0.0, "max_points": 3.0, "message": "wrong"},
              {"name": "probability", "points": 1.0, "max_points": 3.0, "message": "also wrong"},
              {"name": "other", "points": 0.0, "max_points": 1.0, "message": "x"}]
    upstream_first(checks, {"probability": ("signed_d2",), "other": ()})
    assert checks[1]["message"].startswith("fix `signed_d2` first") and checks[2]["message"] == "x"


# =========================================================================== the instructor's spec

def test_spec_reads_hidden_checks_and_points():
    nb = notebook(["x = 1",
                   "@check('a', points=2)\ndef _(t): pass",
                   "### BEGIN HIDDEN TESTS\n@graded('a', points=2, forbid=['m.f'])\ndef _(t, rng): pass\n"
                   "@graded('h', 3)\ndef _(t, rng): pass\n### END HIDDEN TESTS",
                   "y = 2\n### BEGIN HIDDEN TESTS\nsecret = 1\n### END HIDDEN TESTS\nz = 3",
                   "summary()"])
    ex = spec.Exercise("demo", nb)
    assert [(c.name, c.points, c.forbid) for c in ex.checks] == [("a", 2.0, ("m.f",)), ("h", 3.0, ())]
    assert ex.max_score == 5 and ex.feedback == {"a": 2.0}
    assert [i for i, _ in ex.run_cells] == [0, 3] and ex.run_cells[1][1] == "y = 2\nz = 3"
    out = gen.make_exercise(nb, "demo")
    assert out.metadata["softras"] == {"exercise": "demo"}
    assert [c.source for c in out.cells] == ["x = 1", "@check('a', points=2)\ndef _(t): pass", "y = 2\nz = 3",
                                             "summary(expected={'a': 2}, hidden=3)"]
    for bad in ("### BEGIN HIDDEN TESTS\nx = 1", "### END HIDDEN TESTS"):
        with pytest.raises(spec.SpecError):
            spec.Exercise("bad", notebook([bad, "### BEGIN HIDDEN TESTS\n@graded('a')\ndef _(t, rng): pass\n"
                                                "### END HIDDEN TESTS"]))
    with pytest.raises(spec.SpecError, match="no graded checks"):
        spec.Exercise("none", notebook(["x = 1"]))


def test_exercise_is_identified_from_the_notebook_not_its_name():
    exercises = spec.load_solutions(SOLUTIONS)
    ex = read(os.path.join(EXERCISES, "02_probability_maps.ipynb"))
    assert spec.identify(ex, exercises) == "02_probability_maps"
    ex.metadata.pop("softras")                      # metadata lost on the way: the cell ids still say it
    assert spec.identify(ex, exercises) == "02_probability_maps"
    assert spec.identify(notebook(["print('hello')"]), exercises) is None


# =========================================================================== gradebook, roster, exports

def test_gradebook_is_written_row_by_row_with_fixed_columns(tmp_path):
    ex = spec.Exercise("demo", notebook(["### BEGIN HIDDEN TESTS\n@graded('a', points=2)\ndef _(t, rng): pass\n"
                                         "@graded('b', points=3)\ndef _(t, rng): pass\n### END HIDDEN TESTS"]))
    path = tmp_path / "out" / "grades.csv"
    book = Gradebook(str(path), ex)
    book.add("alice", {"score": 5.0, "checks": [{"name": "a", "points": 2.0}, {"name": "b", "points": 3.0}]})
    rows = list(csv.DictReader(path.open()))
    assert rows == [{"student": "alice", "score": "5.0", "max_score": "5.0", "percent": "100.0", "a": "2.0",
                     "b": "3.0", "error": ""}]
    book.add("bob", None, "not graded: it is exercise 03, not demo")
    book.add("carol", {"score": 2.0, "checks": [{"name": "a", "points": 2.0}]})    # b never reported: 0
    rows = {r["student"]: r for r in csv.DictReader(path.open())}
    assert list(rows["bob"]) == ["student", "score", "max_score", "percent", "a", "b", "error"]
    assert rows["bob"]["max_score"] == rows["carol"]["max_score"] == "5.0" and rows["carol"]["b"] == "0.0"
    assert sorted(os.listdir(path.parent)) == ["grades.csv"]          # no temporary file left behind


def test_roster_matches_file_names_and_lms_prefixes(tmp_path):
    (tmp_path / "roster.csv").write_text("file,id,name,email,sis_login,section\n"
                                         "alice,1001,Alice A,alice@uni.edu,aa1,S1\n"
                                         "smithbob_12345,1002,Bob Smith,bob@uni.edu,bs2,S2\n")
    roster = read_roster(tmp_path / "roster.csv")
    assert roster_match(roster, "alice", "subs/alice.ipynb")["id"] == "1001"
    assert roster_match(roster, "smithbob_12345_998_Copy of 02.ipynb"[:-6],
                        "subs/smithbob_12345_998_Copy of 02.ipynb")["id"] == "1002"
    assert roster_match(roster, "mallory", "subs/mallory.ipynb") is None
    (tmp_path / "bad.csv").write_text("name,email\nx,y\n")
    with pytest.raises(ValueError, match="'file' and 'id'"):
        read_roster(tmp_path / "bad.csv")


def test_lms_exports_have_their_import_layouts(tmp_path):
    (tmp_path / "grades.csv").write_text("student,score,max_score,percent,a,error\n1001,7.5,10.0,75.0,7.5,\n"
                                         "1002,0.0,10.0,0.0,0.0,not graded\n")
    (tmp_path / "roster.csv").write_text("file,id,name,email,sis_login,section\nalice,1001,Alice A,alice@uni.edu,aa1,S1\n")
    rows, roster = read_gradebook(tmp_path / "grades.csv"), read_roster(tmp_path / "roster.csv")
    export_lms(rows, "canvas", tmp_path / "canvas.csv", "Exercise 02", roster)
    lines = (tmp_path / "canvas.csv").read_text().splitlines()
    assert lines[0] == "Student,ID,SIS User ID,SIS Login ID,Section,Exercise 02"
    assert lines[1] == "Points Possible,,,,,10.0" and lines[2] == "Alice A,1001,1001,aa1,S1,7.5"
    export_lms(rows, "moodle", tmp_path / "moodle.csv", "Exercise 02", roster)
    assert (tmp_path / "moodle.csv").read_text().splitlines()[:2] == ["Email address,ID number,Exercise 02",
                                                                       "alice@uni.edu,1001,7.5"]
    export_lms(rows, "gradescope", tmp_path / "gs.csv", "Exercise 02", roster)
    assert (tmp_path / "gs.csv").read_text().splitlines()[:2] == ["Name,SID,Email,Total Score",
                                                                   "Alice A,1001,alice@uni.edu,7.5"]
    p = cli("export", "--gradebook", tmp_path / "grades.csv", "--canvas", tmp_path / "c2.csv")
    assert p.returncode == 0 and (tmp_path / "c2.csv").exists(), p.stderr


def test_find_submissions_flat_nested_and_lms_names(tmp_path):
    (tmp_path / "bob" / "week3").mkdir(parents=True)
    for p in ("alice.ipynb", "bob/week3/Copy of 03_aggregation.ipynb", "notes.txt", ".ipynb_checkpoints/x.ipynb"):
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_text("{}")
    assert [k for k, _ in find_submissions(str(tmp_path))] == ["alice", "bob"]


# =========================================================================== plain install

def test_grading_needs_only_the_core_dependencies():
    import re

    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as fh:
        deps = re.search(r"^dependencies = \[(.*?)^\]", fh.read(), re.S | re.M).group(1).lower()
    for module in ("nbformat", "ipython", "numpy"):       # the trusted side and the sandboxed harness
        assert module in deps, f"{module} must be a core dependency: `pip install softras-taichi` grades"


def test_a_missing_package_is_one_line_naming_it(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'nbformat':\n            raise ModuleNotFoundError(\"No module named 'nbformat'\", name='nbformat')\n"
        "sys.meta_path.insert(0, Block())\n")
    env = dict(ENV, PYTHONPATH=str(tmp_path))
    p = cli("grade", os.path.join(EXERCISES, NAMES[0]), "--solutions", SOLUTIONS, env=env, timeout=120)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "nbformat" in p.stderr and "pip install" in p.stderr and "Traceback" not in p.stderr


def test_cli_errors_are_one_line(tmp_path):
    p = cli("grade", tmp_path / "nope.ipynb")
    assert p.returncode == 2 and "not found" in p.stderr
    (tmp_path / "x.ipynb").write_text("{}")
    p = cli("grade", tmp_path / "x.ipynb", "--solutions", tmp_path / "nothing")
    assert p.returncode == 2 and "solutions folder not found" in p.stderr and "Traceback" not in p.stderr


# =========================================================================== the course's notebooks

# Plausible single mistakes: (notebook, the checks that may lose points — the first must —,
# [(solution text, bug)]).  Each costs points only in its own check: the checks give every
# function the instructor's versions of what it calls.  An integration check that needs an
# upstream one (exercise 04's gradient check) may lose points too, and then says "fix ... first".
WRONG = {
    "flipped sign of δ": ("02_probability_maps", ["signed_d2"],
                          [("delta = 1.0 if inside(p, a, b, c) == 1 else -1.0",
                            "delta = -1.0 if inside(p, a, b, c) == 1 else 1.0")]),
    "σ applied to d instead of d²": ("02_probability_maps", ["probability"],
                                     [("x = ti.math.clamp(s / sigma, -30.0, 30.0)",
                                       "x = ti.math.clamp(ti.math.sign(s) * ti.sqrt(ti.abs(s)) / sigma, -30.0, 30.0)")]),
    "d instead of d² in δ·d²": ("02_probability_maps", ["signed_d2"],
                                [("return delta * d2", "return delta * ti.sqrt(d2)")]),
    "no clamp in segment_d2": ("02_probability_maps", ["segment_d2"],
                               [("t = ti.math.clamp((p - a).dot(ab) / ti.max(ab.dot(ab), 1e-12), 0.0, 1.0)",
                                 "t = (p - a).dot(ab) / ti.max(ab.dot(ab), 1e-12)")]),
    "np.clip inside a ti.func": ("02_probability_maps", ["segment_d2"],
                                 [("t = ti.math.clamp((p - a).dot(ab) / ti.max(ab.dot(ab), 1e-12), 0.0, 1.0)",
                                   "t = np.clip((p - a).dot(ab) / ti.max(ab.dot(ab), 1e-12), 0.0, 1.0)")]),
    "inside accepts counter-clockwise only": ("02_probability_maps", ["inside"],
                                              [("if (w0 > 0 and w1 > 0 and w2 > 0) or (w0 < 0 and w1 < 0 and w2 < 0):",
                                                "if w0 > 0 and w1 > 0 and w2 > 0:")]),
    "pixel corner instead of centre": ("00_taichi_warmup", ["pixel_centre (ti.func)"],
                                       [("return ti.Vector([(2.0 * col + 1.0 - S) / S, (S - 1.0 - 2.0 * row) / S])",
                                         "return ti.Vector([(2.0 * col - S) / S, (S - 2.0 * row) / S])")]),
    "integer product in the silhouette": ("03_aggregation", ["silhouette"], [("uncovered = 1.0", "uncovered = 1")]),
    "missing max-shift": ("03_aggregation", ["weights"],
                          [("        m = eps / gamma\n", "        m = 0.0\n"),
                           ("m = ti.max(m, z[i, j] / gamma)", "m = 0.0")]),
    "background term exp(ε) instead of exp(ε/γ)": ("03_aggregation", ["weights"],
                                                   [("e_b = ti.exp(eps / gamma - m)", "e_b = ti.exp(eps - m)")]),
    "background left out of the denominator": ("03_aggregation", ["weights"],
                                               [("total = e_b", "total = 0.0")]),
    "background colour forgotten": ("03_aggregation", ["blend"],
                                    [("colour = wb[i] * background[None]", "colour = ti.Vector([0.0, 0.0, 0.0])")]),
    "silhouette as a sum of D": ("03_aggregation", ["silhouette"],
                                 [("uncovered *= 1.0 - library_probability(q, tris[j, 0], tris[j, 1], tris[j, 2], sigma)",
                                   "uncovered -= library_probability(q, tris[j, 0], tris[j, 1], tris[j, 2], sigma)")]),
    "one-sided finite difference": ("04_gradients", ["numerical_gradient", "gradient check: autodiff = finite differences"],
                                    [("grad[k] = (f_plus - f_minus) / (2 * h)", "grad[k] = (f_plus - f(x)) / h")]),
    "gradient ascent": ("05_pose_fitting", ["fit"],
                        [("scene.translation[None] - lr * scene.translation.grad[None]",
                          "scene.translation[None] + lr * scene.translation.grad[None]")]),
    "IoU union without the − I·Î": ("06_mesh_reconstruction", ["iou_loss value"],
                                    [("union[None] += pred[y, x] + target[y, x] - pred[y, x] * target[y, x]",
                                      "union[None] += pred[y, x] + target[y, x]")]),
    "Adam without bias correction": ("06_mesh_reconstruction", ["adam_step"],
                                     [("m_hat = m_new / (1 - beta1 ** t)", "m_hat = m_new"),
                                      ("v_hat = v_new / (1 - beta2 ** t)", "v_hat = v_new")]),
    "count_pairs without the band": ("07_under_the_hood", ["count_pairs"],
                                     [("total += int(np.sum(inside | (d2 < r2)))", "total += int(np.sum(inside))")]),
}

# What the static reading of the source must say, with the line (the check it costs keeps the message).
TRAP_MESSAGES = {"np.clip inside a ti.func": "np.clip does nothing inside a Taichi function: use ti.math.clamp",
                 "integer product in the silhouette": "`uncovered` starts as the integer 1"}


def _inject(nb, replacements):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for old, new in replacements:
        hits = sum(c.source.count(old) for c in nb.cells if c.cell_type == "code")
        assert hits >= 1, f"the solution no longer contains {old!r}: update WRONG in tests/test_grader.py"
        for c in nb.cells:
            if c.cell_type == "code":
                c.source = c.source.replace(old, new)
    return nb


def _without_hidden(nb, name):
    """What a student hands in: the solution's visible cells (no hidden tests)."""
    out = nbformat.from_dict(json.loads(json.dumps(nb)))
    cells = []
    for c in out.cells:
        if c.cell_type == "code":
            visible, hidden = spec.split_hidden(c.source)
            if hidden and not visible.strip():
                continue
            c.source = visible
        cells.append(c)
    out.cells = cells
    out.metadata["softras"] = {"exercise": name}
    return out


def _jobs(folder):
    """{key: (exercise, notebook path)}: solutions, exercises, blanked regions, wrong answers."""
    jobs = {}

    def variant(key, name, nb):
        path = os.path.join(folder, f"v{len(jobs):03d}.ipynb")
        nbformat.write(_without_hidden(nb, name), path)
        jobs[key] = (name, path)

    for n in NAMES:
        name = n[:-6]
        jobs[f"solution/{n}"] = (name, os.path.join(SOLUTIONS, n))
        jobs[f"exercise/{n}"] = (name, os.path.join(EXERCISES, n))
        sol = nbformat.read(os.path.join(SOLUTIONS, n), as_version=4)
        for cell, k in _code_regions(sol):
            variant(f"blank/{n}/{cell}/{k}", name, gen.blank_region(sol, cell, k))
        unanswered = nbformat.from_dict(json.loads(json.dumps(sol)))
        for c in unanswered.cells:
            if c.cell_type == "code" and gen.answer_lines(c.source):
                c.source = "\n".join(ln if i not in gen.answer_lines(c.source) else gen.strip_solutions(ln)
                                      for i, ln in enumerate(c.source.split("\n")))
        variant(f"unanswered/{n}", name, unanswered)
    for label, (stem, _, reps) in WRONG.items():
        sol = nbformat.read(os.path.join(SOLUTIONS, stem + ".ipynb"), as_version=4)
        variant(f"wrong/{label}", stem, _inject(sol, reps))
    return jobs


@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    """{key: report} of every notebook and variant, two sandboxes at a time."""
    jobs = _jobs(str(tmp_path_factory.mktemp("variants")))
    sandbox = choose("auto")
    exercises = spec.load_solutions(SOLUTIONS)
    refs = {name: Reference(ex, sandbox, Limits()) for name, ex in exercises.items()}
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {key: pool.submit(grade_notebook, path, refs[name]) for key, (name, path) in jobs.items()}
        out = {key: f.result() for key, f in futures.items()}
    lines = [f"\ngraded {len(jobs)} notebooks in {time.monotonic() - start:.0f} s on {WORKERS} workers "
             f"({sandbox.name})"]
    for n in NAMES:
        r = out[f"solution/{n}"]
        lines.append(f"  {n}: {len(r['checks'])} checks, {r['score']:g}/{r['max_score']:g} points, {r['seconds']:.1f} s")
    print("\n".join(lines))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_solution_scores_full_marks(graded, name):
    report = graded[f"solution/{name}"]
    assert report["max_score"] > 0
    wrong = [c for c in report["checks"] if c["points"] != c["max_points"]]
    assert report["score"] == report["max_score"] and not wrong and not report["notes"], (wrong, report["notes"])


@pytest.mark.parametrize("name", NAMES)
def test_untouched_exercise_scores_zero(graded, name):
    report, sol = graded[f"exercise/{name}"], graded[f"solution/{name}"]
    assert report["score"] == 0 and report["max_score"] == sol["max_score"], report
    for c in report["checks"]:
        assert any(w in c["message"] for w in ("not implemented yet", "NotImplementedError", "not answered")), c


def _code_regions(nb):
    """[(cell, index of the blank in the cell)] of the solution regions (answer lines left out)."""
    return [(i, k) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for k, (_, _, kind) in enumerate(gen.blanks(c.source)) if kind == "region"]


def _region_ids():
    ids = []
    for n in NAMES:
        sol = nbformat.read(os.path.join(SOLUTIONS, n), as_version=4)
        ids += [f"{n}/{cell}/{k}" for cell, k in _code_regions(sol)]
    return ids


@pytest.mark.parametrize("region", _region_ids())
def test_blanking_any_region_lowers_the_score(graded, region):
    name = region.split("/")[0]
    full, report = graded[f"solution/{name}"], graded[f"blank/{region}"]
    assert report["max_score"] == full["max_score"]
    assert report["score"] < full["score"], f"blanking region {region} did not cost any points: {report}"


@pytest.mark.parametrize("name", NAMES)
def test_every_question_needs_its_answer(graded, name):
    """All answers back to None: every question scores 0 ("not answered yet"), and every
    free-text answer is "not answered"; the code checks keep their points."""
    report, sol = graded[f"unanswered/{name}"], spec.load_exercise(os.path.join(SOLUTIONS, name))
    answers = {v for _, v in gen.answers(sol.nb)}
    questions = set()
    for src in sol.hidden:
        for chunk in src.split("@graded(")[1:]:
            if any(re.search(rf"(t\.(number|choice|text)\(|_gamma\(t, ){v}\b", chunk) for v in answers):
                questions.add(ast.literal_eval(chunk.split(",")[0]))
    assert len(questions) >= 2, name
    for c in report["checks"]:
        if c["name"] in questions:
            assert c["points"] == 0 and "not answered" in c["message"], c
        else:
            assert c["points"] == c["max_points"], c


@pytest.mark.parametrize("label", list(WRONG))
def test_a_single_mistake_costs_points_only_in_its_own_check(graded, label):
    stem, allowed, _ = WRONG[label]
    full, report = graded[f"solution/{stem}.ipynb"], graded[f"wrong/{label}"]
    assert report["score"] < full["score"], f"{label}: {report}"
    lost = {c["name"]: c for c in report["checks"] if c["points"] < c["max_points"]}
    assert allowed[0] in lost and lost[allowed[0]]["message"] != "ok", report
    assert set(lost) <= set(allowed), f"{label} also cost points in {sorted(set(lost) - set(allowed))}"
    for name in allowed[1:]:
        if name in lost:
            assert lost[name]["message"].startswith(f"fix `{allowed[0]}`"), lost[name]
    if label in TRAP_MESSAGES:
        assert TRAP_MESSAGES[label] in lost[allowed[0]]["message"], lost[allowed[0]]
        assert any(TRAP_MESSAGES[label] in n for n in report["notes"]), report["notes"]


def test_wrong_answer_messages_help(graded):
    """The messages name the symptom: the flipped sign, the NaNs of an overflow."""
    flipped = graded["wrong/flipped sign of δ"]
    assert flipped["score"] == flipped["max_score"] - 3
    assert "sign flipped" in next(c for c in flipped["checks"] if c["name"] == "signed_d2")["message"]
    overflow = graded["wrong/missing max-shift"]
    weights = next(c for c in overflow["checks"] if c["name"] == "weights")
    assert "NaN or inf" in weights["message"] and 0 < weights["points"] < weights["max_points"]


def test_compare_takes_tolerances_and_weights_from_the_reference_only():
    chk = spec.GradedCheck("c", 4)
    ref = ({"parts": [{"what": "x", "kind": "close", "rtol": 1e-6, "atol": 0.0, "weight": 3.0},
                      {"what": "n", "kind": "equal", "rtol": 0, "atol": 0, "weight": 1.0}]},
           {"v0": np.array([1.0, 2.0]), "v1": np.array(7)})
    # the student's process claims huge tolerances and weights: ignored
    mine = ({"parts": [{"what": "x", "kind": "close", "rtol": 1e9, "atol": 1e9, "weight": 1e9},
                       {"what": "n", "kind": "equal", "weight": 0}]},
            {"v0": np.array([1.0, 2.1]), "v1": np.array(7)})
    c = compare(chk, ref, mine)
    assert c.points == 1.0 and "1 of 2 parts right" in c.message
    assert compare(chk, ref, "it died").points == 0
    assert compare(chk, ref, ({"parts": [], "error": "boom\x1b[31m"}, {})).message.startswith("boom")
