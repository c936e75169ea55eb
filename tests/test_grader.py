"""The grader, and the proof that it grades the course's notebooks.

Unit tests of the checks API run in-process.  Everything else runs notebooks the way an
instructor does, `grade_notebook` = a fresh Jupyter kernel per notebook:

* every solution notebook scores 100 %, every untouched exercise scores 0;
* blanking any one solution region lowers the score (every region of every notebook);
* plausible wrong answers lose points (flipped δ, σ on d, no max-shift, wrong background...);
* a student exception, an endless Python loop, an endless Taichi kernel or a crashed kernel
  costs only the checks that depend on it;
* `softras-taichi grade` writes the JSON and the table, and a folder gives a CSV.

Cost (CI has 2 cores): each grading is a full, fresh-kernel run of one notebook. That is the
honest test of "blanking a region lowers the score": a shared kernel session would let
values computed by the solved version leak into the blanked one. It stays cheap because the
notebooks are tiny (16-48 px images, a few kernels, ~3-6 s each with Taichi's offline
cache, which the first runs fill), and the independent runs are spread over two worker
processes, graded once per session and shared by the parametrized tests below.
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import nbformat
import numpy as np
import pytest

from softras_taichi import exercises as gen
from softras_taichi import grader
from softras_taichi.grader import Check, check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOLUTIONS = os.path.join(ROOT, "solutions")
EXERCISES = os.path.join(ROOT, "exercises")
NAMES = sorted(n for n in os.listdir(SOLUTIONS) if n.endswith(".ipynb"))
ENV = dict(os.environ, TI_ARCH="x64", ENABLE_TAICHI_HEADER_PRINT="0")
WORKERS = 2
CELL_TIMEOUT = 240


# =========================================================================== checks API (in-process)

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


def run_check(monkeypatch, tmp_path, body, **kw):
    results = tmp_path / "results.jsonl"
    monkeypatch.setenv(grader.RESULTS_ENV, str(results))
    c = check("the check", **kw)(body)
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    assert lines[-1]["name"] == "the check" and lines[-1]["points"] == c.points
    return c


def test_check_records_and_prints(monkeypatch, tmp_path, capsys):
    c = run_check(monkeypatch, tmp_path, lambda t: t.close(1.0, 1.0), points=2)
    assert c.points == 2 and "✔ the check: 2/2 points" in capsys.readouterr().out
    c = run_check(monkeypatch, tmp_path, lambda t: t.close(1.0, 2.0), points=2)
    assert c.points == 0 and "✘ the check: 0/2 points — the result" in capsys.readouterr().out


def test_student_exceptions_cost_the_check_only(monkeypatch, tmp_path):
    def not_done(t):
        raise NotImplementedError

    def buggy(t):
        return [][1]

    def wrong(t):
        assert 1 + 1 == 3, "arithmetic"

    assert "not implemented yet" in run_check(monkeypatch, tmp_path, not_done, points=3).message
    c = run_check(monkeypatch, tmp_path, buggy, points=3)
    assert c.points == 0 and "IndexError" in c.message and "in buggy" in c.message
    c = run_check(monkeypatch, tmp_path, wrong)
    assert c.points == 0 and "assertion failed" in c.message and "arithmetic" in c.message


def test_raise_mode_for_nbgrader_and_otter(monkeypatch, tmp_path):
    monkeypatch.setenv(grader.RAISE_ENV, "1")
    assert run_check(monkeypatch, tmp_path, lambda t: t.close(1.0, 1.0)).points == 1
    with pytest.raises(AssertionError, match="the check: 0/1 points"):
        run_check(monkeypatch, tmp_path, lambda t: t.close(1.0, 2.0))


def test_endless_loop_times_out_even_through_except(monkeypatch, tmp_path):
    def spin(t):
        while True:
            try:
                time.sleep(0.01)
            except Exception:  # noqa: BLE001 - a student's catch-all must not swallow the limit
                pass

    start = time.monotonic()
    c = run_check(monkeypatch, tmp_path, spin, points=2, timeout=0.5)
    assert time.monotonic() - start < 5
    assert c.points == 0 and "timed out after 0.5 s" in c.message


def test_scan_checks_reads_points_and_survives_magics():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%pip install foo\n!ls\n@check('a', points=2)\ndef _(t): pass"),
                nbformat.v4.new_markdown_cell("check('not code', points=9)"),
                nbformat.v4.new_code_cell("from softras_taichi import grader\n@grader.check('b', 1.5, hint='h')\n"
                                          "def _(t): pass\n@check('c')\ndef _(t): pass\n@check('a', points=7)\ndef _(t): pass"),
                nbformat.v4.new_code_cell("def broken(:\n    check('d', points=1)")]
    assert grader.scan_checks(nb) == [("a", 2.0, 0), ("b", 1.5, 2), ("c", 1.0, 2)]


def test_run_func_evaluates_a_ti_func():
    import taichi as ti

    import softras_taichi as sr

    sr.init("cpu", verbose=False)

    @ti.func
    def mix(p, s):
        return p * s + 1.0

    p = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(run := grader.run_func(mix, p, np.array([2.0, 3.0]), out_dim=2),
                               [[3.0, 5.0], [10.0, 13.0]])
    assert run.dtype == np.float32
    np.testing.assert_allclose(grader.run_func(mix, p[:, 0], 0.5), [1.5, 2.5])
    with pytest.raises(TypeError, match="@ti.func"):
        grader.run_func(lambda x: x, p)


# =========================================================================== the runner, hostile notebooks

HOSTILE = [
    ("code", "import softras_taichi as sr\nimport taichi as ti\nfrom softras_taichi.grader import check\n"
             "arch = sr.init('cpu')"),
    ("code", "def good():\n    return 1"),
    ("code", "raise ValueError('student bug')\ndef broken():\n    return 1"),
    ("code", "@check('uses broken', points=2)\ndef _(t):\n    t.equal(broken(), 1)"),
    ("code", "@check('good', points=1)\ndef _(t):\n    t.equal(good(), 1)"),
    ("code", "@check('python loop', points=1, timeout=1)\ndef _(t):\n    while True:\n        pass"),
    ("code", "while True:\n    pass"),
    ("code", "@check('after python loop', points=1)\ndef _(t):\n    t.equal(good(), 1)"),
    ("code", "@ti.kernel\ndef spin(x: ti.f32) -> ti.f32:\n    y = x\n    while y > 0:\n        y += 1.0\n    return y\n\n"
             "@check('taichi loop', points=1)\ndef _(t):\n    t.equal(spin(1.0), 0)"),
    ("code", "@check('after taichi loop', points=1)\ndef _(t):\n    t.equal(good(), 1)"),
    ("code", "import os\nos._exit(3)"),
    ("code", "@check('after crash', points=1)\ndef _(t):\n    t.equal(good(), 1)"),
]


def make_notebook(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) if kind == "code" else nbformat.v4.new_markdown_cell(src)
                for kind, src in cells]
    nbformat.write(nb, str(path))
    return path


def test_hostile_notebook_loses_only_the_broken_checks(tmp_path, monkeypatch):
    """An exception, an endless Python loop (in a check and in a cell), an endless Taichi
    kernel (which no interrupt stops: the kernel is restarted and the notebook replayed
    without that cell) and a crashed kernel: each costs only its own checks."""
    monkeypatch.setattr(grader, "PROBE_TIMEOUT", 3)
    path = make_notebook(tmp_path / "hostile.ipynb", HOSTILE)
    start = time.monotonic()
    report = grader.grade_notebook(path, timeout=6, arch="cpu")
    elapsed = time.monotonic() - start
    by = {c["name"]: c for c in report["checks"]}
    assert list(by) == ["uses broken", "good", "python loop", "after python loop", "taichi loop",
                        "after taichi loop", "after crash"]
    assert report["max_score"] == 8 and report["score"] == 4, report
    assert "NameError" in by["uses broken"]["message"] and "broken" in by["uses broken"]["message"]
    assert "timed out after 1 s" in by["python loop"]["message"]
    assert by["taichi loop"]["points"] == 0 and "did not finish within 6 s" in by["taichi loop"]["message"]
    for name in ("good", "after python loop", "after taichi loop", "after crash"):
        assert by[name]["points"] == by[name]["max_points"], by[name]
    assert elapsed < 120, f"grading the hostile notebook took {elapsed:.0f} s"


def test_reference_notebook_restores_the_check_cells(tmp_path):
    cells = [("code", "from softras_taichi.grader import check\nx = 2"),
             ("code", "@check('x is 2', points=3)\ndef _(t):\n    t.equal(x, 2)")]
    ref = make_notebook(tmp_path / "ref.ipynb", cells)
    nb = nbformat.read(str(ref), as_version=4)
    nb.cells[0].source = "from softras_taichi.grader import check\nx = 5"
    nb.cells[1].source = "@check('x is 2', points=30)\ndef _(t):\n    pass"   # "fixed" by the student
    nbformat.write(nb, str(tmp_path / "sub.ipynb"))
    assert grader.grade_notebook(tmp_path / "sub.ipynb", arch="cpu")["score"] == 30
    honest = grader.grade_notebook(tmp_path / "sub.ipynb", arch="cpu", reference_notebook=ref)
    assert honest["score"] == 0 and honest["max_score"] == 3


def test_reference_cells_match_by_id_else_by_check_name():
    ref = nbformat.v4.new_notebook()
    ref.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("@check('a', points=2)\ndef _(t): pass"),
                 nbformat.v4.new_code_cell("@check('b', points=3)\ndef _(t): pass")]
    sub = nbformat.from_dict(json.loads(json.dumps(ref)))
    sub.cells[1].source = "@check('a', points=20)\ndef _(t): pass"         # same id: replaced
    sub.cells[2]["id"] = "renamed"                                          # id lost: found by name
    sub.cells[2].source = "@check('b', points=30)\ndef _(t): pass"
    sub.cells.insert(0, nbformat.v4.new_markdown_cell("my notes"))
    out, declared = grader._apply_reference(sub, ref)
    assert declared == [("a", 2.0, 2), ("b", 3.0, 3)]
    assert out.cells[2].source == ref.cells[1].source and out.cells[3].source == ref.cells[2].source
    assert out.cells[3]["id"] == "renamed"
    del sub.cells[3]                                                        # a deleted check cell
    _, declared = grader._apply_reference(sub, ref)
    assert declared[1] == ("b", 3.0, -1)


# =========================================================================== the course's notebooks

# Plausible wrong answers: (notebook, the check that must lose points, [(solution text, bug)]).
WRONG = {
    "flipped sign of δ": ("02_probability_maps", "signed_d2",
                          [("delta = 1.0 if inside(p, a, b, c) == 1 else -1.0",
                            "delta = -1.0 if inside(p, a, b, c) == 1 else 1.0")]),
    "σ applied to d instead of d²": ("02_probability_maps", "probability",
                                     [("x = ti.math.clamp(s / sigma, -30.0, 30.0)",
                                       "x = ti.math.clamp(ti.math.sign(s) * ti.sqrt(ti.abs(s)) / sigma, -30.0, 30.0)")]),
    "d instead of d² in δ·d²": ("02_probability_maps", "signed_d2",
                                [("return delta * d2", "return delta * ti.sqrt(d2)")]),
    "missing max-shift": ("03_aggregation", "weights",
                          [("        m = eps / gamma\n", "        m = 0.0\n"),
                           ("m = ti.max(m, z[i, j] / gamma)", "m = 0.0")]),
    "background term exp(ε) instead of exp(ε/γ)": ("03_aggregation", "weights",
                                                   [("e_b = ti.exp(eps / gamma - m)", "e_b = ti.exp(eps - m)")]),
    "background left out of the denominator": ("03_aggregation", "weights",
                                               [("total = e_b", "total = 0.0")]),
    "background colour forgotten": ("03_aggregation", "blend",
                                    [("colour = wb[i] * background[None]", "colour = ti.Vector([0.0, 0.0, 0.0])")]),
    "silhouette as a sum of D": ("03_aggregation", "silhouette",
                                 [("uncovered *= 1.0 - library_probability(q, tris[j, 0], tris[j, 1], tris[j, 2], sigma)",
                                   "uncovered -= library_probability(q, tris[j, 0], tris[j, 1], tris[j, 2], sigma)")]),
    "one-sided finite difference": ("04_gradients", "numerical_gradient",
                                    [("grad[k] = (f_plus - f_minus) / (2 * h)", "grad[k] = (f_plus - f(x)) / h")]),
    "IoU union without the − I·Î": ("05_shape_fitting", "iou_loss value",
                                    [("union[None] += pred[y, x] + target[y, x] - pred[y, x] * target[y, x]",
                                      "union[None] += pred[y, x] + target[y, x]")]),
    "Adam without bias correction": ("05_shape_fitting", "adam_step",
                                     [("m_hat = m_new / (1 - beta1 ** t)", "m_hat = m_new"),
                                      ("v_hat = v_new / (1 - beta2 ** t)", "v_hat = v_new")]),
    "gradient ascent": ("06_pose_fitting", "fit",
                        [("scene.translation[None] - lr * scene.translation.grad[None]",
                          "scene.translation[None] + lr * scene.translation.grad[None]")]),
}


def _inject(nb, replacements):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for old, new in replacements:
        hits = sum(c.source.count(old) for c in nb.cells if c.cell_type == "code")
        assert hits >= 1, f"the solution no longer contains {old!r}: update WRONG in tests/test_grader.py"
        for c in nb.cells:
            if c.cell_type == "code":
                c.source = c.source.replace(old, new)
    return nb


def _jobs(folder):
    """{key: notebook path}: the solutions, the exercises, and the variants written to folder."""
    jobs = {}

    def variant(key, nb):
        path = os.path.join(folder, f"v{len(jobs):03d}.ipynb")
        nbformat.write(nb, path)
        jobs[key] = path

    for name in NAMES:
        jobs[f"solution/{name}"] = os.path.join(SOLUTIONS, name)
        jobs[f"exercise/{name}"] = os.path.join(EXERCISES, name)
        sol = nbformat.read(os.path.join(SOLUTIONS, name), as_version=4)
        for cell, k in gen.regions(sol):
            variant(f"blank/{name}/{cell}/{k}", gen.blank_region(sol, cell, k))
    for label, (stem, _, reps) in WRONG.items():
        sol = nbformat.read(os.path.join(SOLUTIONS, stem + ".ipynb"), as_version=4)
        variant(f"wrong/{label}", _inject(sol, reps))
    return jobs


@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    """{key: (report, seconds)} of every notebook and variant, graded on WORKERS processes."""
    jobs = _jobs(str(tmp_path_factory.mktemp("variants")))
    kwargs = {"timeout": CELL_TIMEOUT, "arch": "cpu"}
    start = time.monotonic()
    with ProcessPoolExecutor(max_workers=WORKERS) as pool:
        done = {path: (report, error, secs)
                for path, report, error, secs in pool.map(grader._grade_one, [(p, kwargs) for p in jobs.values()])}
    out = {}
    for key, path in jobs.items():
        report, error, secs = done[path]
        assert not error, f"{key}: the grader failed: {error}"
        out[key] = (report, secs)
    lines = [f"\ngraded {len(jobs)} notebooks in {time.monotonic() - start:.0f} s on {WORKERS} workers"]
    for name in NAMES:
        report, secs = out[f"solution/{name}"]
        lines.append(f"  {name}: {len(report['checks'])} checks, {report['score']:g}/{report['max_score']:g} "
                     f"points, {secs:.1f} s")
    print("\n".join(lines))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_solution_scores_full_marks(graded, name):
    report, _ = graded[f"solution/{name}"]
    assert report["max_score"] > 0
    wrong = [c for c in report["checks"] if c["points"] != c["max_points"]]
    assert report["score"] == report["max_score"] and not wrong, wrong


@pytest.mark.parametrize("name", NAMES)
def test_untouched_exercise_scores_zero(graded, name):
    report, _ = graded[f"exercise/{name}"]
    sol, _ = graded[f"solution/{name}"]
    assert report["score"] == 0 and report["max_score"] == sol["max_score"], report
    for c in report["checks"]:
        assert "not implemented yet" in c["message"] or "not run" in c["message"] \
            or "NotImplementedError" in c["message"], c


def _region_ids():
    ids = []
    for name in NAMES:
        sol = nbformat.read(os.path.join(SOLUTIONS, name), as_version=4)
        ids += [f"{name}/{cell}/{k}" for cell, k in gen.regions(sol)]
    return ids


@pytest.mark.parametrize("region", _region_ids())
def test_blanking_any_region_lowers_the_score(graded, region):
    name = region.split("/")[0]
    full, _ = graded[f"solution/{name}"]
    report, _ = graded[f"blank/{region}"]
    assert report["max_score"] == full["max_score"]
    assert report["score"] < full["score"], f"blanking region {region} did not cost any points: {report}"


@pytest.mark.parametrize("label", list(WRONG))
def test_plausible_wrong_answers_lose_points(graded, label):
    stem, check_name, _ = WRONG[label]
    full, _ = graded[f"solution/{stem}.ipynb"]
    report, _ = graded[f"wrong/{label}"]
    assert report["score"] < full["score"], f"{label}: {report}"
    c = next(c for c in report["checks"] if c["name"] == check_name)
    assert c["points"] < c["max_points"] and c["message"] != "ok", c


def test_wrong_answer_messages_help(graded):
    """The messages name the symptom: the flipped sign, the NaNs of an overflow."""
    flipped = graded["wrong/flipped sign of δ"][0]
    assert "sign flipped" in next(c for c in flipped["checks"] if c["name"] == "signed_d2")["message"]
    overflow = graded["wrong/missing max-shift"][0]
    weights = next(c for c in overflow["checks"] if c["name"] == "weights")
    assert "NaN or inf" in weights["message"] and 0 < weights["points"] < weights["max_points"]


# =========================================================================== the command line

def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "softras_taichi", *map(str, args)],
                          capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600)


def test_cli_grades_one_notebook_to_json(tmp_path):
    out = tmp_path / "report.json"
    p = cli("grade", os.path.join(SOLUTIONS, NAMES[0]), "--json", out, "--arch", "cpu")
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads(out.read_text())
    assert set(report) == {"score", "max_score", "checks"}
    assert report["score"] == report["max_score"] > 0
    for c in report["checks"]:
        assert set(c) == {"name", "points", "max_points", "message"}
        assert c["name"] in p.stdout
    assert "total" in p.stdout and "100.0 %" in p.stdout


def test_cli_grades_a_folder_to_csv(tmp_path):
    subs = tmp_path / "submissions"
    (subs / "bob").mkdir(parents=True)
    shutil.copy(os.path.join(SOLUTIONS, NAMES[0]), subs / "alice.ipynb")
    shutil.copy(os.path.join(EXERCISES, NAMES[0]), subs / "bob" / "my work.ipynb")
    (subs / "carol.ipynb").write_text("this is not a notebook")
    out = tmp_path / "grades.csv"
    p = cli("grade", subs, "--csv", out, "--jobs", 2, "--arch", "cpu")
    assert p.returncode == 0, p.stdout + p.stderr
    rows = {r["student"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"alice", "bob", "carol"}
    full = float(rows["alice"]["max_score"])
    assert full > 0 and float(rows["alice"]["score"]) == full and rows["alice"]["percent"] == "100.0"
    assert float(rows["bob"]["score"]) == 0 and float(rows["bob"]["max_score"]) == full
    assert float(rows["carol"]["score"]) == 0 and "cannot read" in rows["carol"]["error"]
    checks = [c for c in rows["alice"] if c not in ("student", "notebooks", "score", "max_score", "percent",
                                                     "seconds", "error")]
    assert len(checks) >= 2 and all(float(rows["alice"][c]) > 0 for c in checks)
    assert "alice" in p.stdout and "wrote" in p.stdout


def test_cli_grade_missing_notebook_is_an_error(tmp_path):
    p = cli("grade", tmp_path / "nope.ipynb")
    assert p.returncode == 2 and "not found" in p.stderr
