"""nbgrader and otter-grader, for real (the versions pinned in the test extra).

`softras-taichi export` writes the source notebooks of exercise 01; the real tools turn
them into student notebooks and grade four submissions: alice (all right), bob (the
untouched exercise), carol (two of three answers) and dave (eye_position right only for
cameras above the equator: partial credit inside one check).  Both tools must give the
same points as our own grader would.
"""
import glob
import json
import os
import shutil
import subprocess
import sys

import nbformat
import numpy as np
import pytest

from grading import ENV, SOLUTIONS, cli, read, write
from softras_taichi.grader import sandbox as sb
from softras_taichi.grader.replay import decode

pytestmark = [pytest.mark.skipif(not sb.bwrap_works(), reason="bubblewrap cannot run here"),
              pytest.mark.skipif(not shutil.which("nbgrader") and not os.path.exists(
                  os.path.join(os.path.dirname(sys.executable), "nbgrader")), reason="nbgrader is not installed")]

EXERCISE = "01_camera"
SEED = 7
ANSWERS = {
    "eye_position": "def eye_position(distance, elevation, azimuth):\n    el, az = np.radians(elevation), np.radians(azimuth)\n"
                    "    return distance * np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])",
    "look_at": "def look_at(eye):\n    f = -np.asarray(eye, dtype=float) / np.linalg.norm(eye)\n    r = np.cross(f, [0.0, 1.0, 0.0])\n"
               "    r = r / np.linalg.norm(r)\n    return np.stack([r, np.cross(r, f), f])",
    "project": "def project(vertices, eye, R, viewing_angle=30.0):\n    v = (np.asarray(vertices, dtype=float) - eye) @ R.T\n"
               "    s = v[:, 2] * np.tan(np.radians(viewing_angle))\n    return np.stack([v[:, 0] / s, v[:, 1] / s, v[:, 2]], axis=1)",
}
HALF_RIGHT = ANSWERS["eye_position"].replace("np.radians(elevation)", "np.radians(abs(elevation))")
STUDENTS = {"alice": dict(ANSWERS), "bob": {}, "carol": {k: ANSWERS[k] for k in ("eye_position", "project")},
            "dave": {"eye_position": HALF_RIGHT}}


def tool(name, *args, cwd=None, timeout=900):
    exe = os.path.join(os.path.dirname(sys.executable), name)
    return subprocess.run([exe if os.path.exists(exe) else name, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=ENV, timeout=timeout)


def answered(nb, answers):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for c in nb.cells:
        for name, src in answers.items():
            if c.cell_type == "code" and c.source.startswith(f"def {name}("):
                c.source = src
    return nb


def expected_points(source_nb):
    """{student: points} — dave's eye_position earns the share of cameras at elevation >= 0."""
    data = {}
    for c in read(source_nb).cells:
        if "replay(globals(), 'eye_position'" in c.source:
            data = decode(c.source.split("'eye_position', '")[1].split("'")[0])[1]
    cams = data["in:cameras"]
    dave = round(2 * float(np.mean(cams[:, 1] >= 0)), 2)
    assert 0 < dave < 2, f"seed {SEED} draws no mixed elevations: {cams[:, 1]}"
    return {"alice": 7.0, "bob": 0.0, "carol": 5.0, "dave": dave}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    p = cli("export", "--reference", os.path.join(SOLUTIONS, EXERCISE + ".ipynb"), "--seed", SEED,
            "--nbgrader", base / "course" / "source", "--otter", base / "otter")
    assert p.returncode == 0, p.stdout + p.stderr
    return base


def test_nbgrader_generate_assignment_and_autograde(exported):
    course = exported / "course"
    (course / "nbgrader_config.py").write_text(f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\n"
                                               "c.CourseDirectory.course_id = 'softras'\nc.ExecutePreprocessor.timeout = 600\n")
    source = course / "source" / EXERCISE / f"{EXERCISE}.ipynb"
    want = expected_points(source)
    p = tool("nbgrader", "generate_assignment", EXERCISE, "--create", "--force", cwd=course)
    assert p.returncode == 0, p.stdout + p.stderr
    release = read(course / "release" / EXERCISE / f"{EXERCISE}.ipynb")
    text = "\n".join(c.source for c in release.cells)
    assert "BEGIN SOLUTION" not in text and "replay(" not in text and "HIDDEN TESTS" not in text
    for who, answers in STUDENTS.items():
        (course / "submitted" / who / EXERCISE).mkdir(parents=True)
        write(answered(release, answers), course / "submitted" / who / EXERCISE / f"{EXERCISE}.ipynb")
        assert tool("nbgrader", "db", "student", "add", who, cwd=course).returncode == 0
    p = tool("nbgrader", "autograde", EXERCISE, cwd=course)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        got = {who: gb.find_submission_notebook(EXERCISE, EXERCISE, who).score for who in STUDENTS}
        dave = {g.name: g.score for g in gb.find_submission_notebook(EXERCISE, EXERCISE, "dave").grades}
    assert got == pytest.approx(want), got
    assert dave["test-eye-position"] == pytest.approx(want["dave"]) and 0 < dave["test-eye-position"] < 2


def test_otter_assign_and_run(exported):
    otter = exported / "otter"
    master = otter / f"{EXERCISE}.ipynb"
    p = tool("otter", "assign", master, otter / "dist", cwd=otter)
    assert p.returncode == 0, p.stdout + p.stderr
    student = read(otter / "dist" / "student" / f"{EXERCISE}.ipynb")
    text = "\n".join(c.source for c in student.cells)
    assert "BEGIN SOLUTION" not in text and "replay(" not in text
    (zipfile,) = glob.glob(str(otter / "dist" / "autograder" / "*.zip"))
    # the points otter reads for dave come from the same recorded data as nbgrader's
    want = None
    for who, answers in STUDENTS.items():
        write(answered(student, answers), otter / f"{who}.ipynb")
        (otter / f"out-{who}").mkdir()
        p = tool("otter", "run", "-a", zipfile, "-o", otter / f"out-{who}", otter / f"{who}.ipynb", cwd=otter)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        results = json.loads((otter / f"out-{who}" / "results.json").read_text())
        scores = {t["name"]: t["score"] for t in results["tests"] if "score" in t}
        total = round(sum(scores.values()), 2)
        if who == "dave":
            assert 0 < scores["eye_position"] < 2, scores
            want = scores["eye_position"]
        else:
            assert total == {"alice": 7.0, "bob": 0.0, "carol": 5.0}[who], (who, scores)
    # dave's partial credit: the share of the parts (cameras) he got right, as in nbgrader
    source = exported / "course" / "source" / EXERCISE / f"{EXERCISE}.ipynb"
    assert want == pytest.approx(expected_points(source)["dave"], abs=0.01)
