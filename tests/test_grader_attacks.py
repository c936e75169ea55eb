"""Every way we know to get marks without the work, or to hurt the class, as a regression test.

Each attack is a cheat notebook built from a real exercise (01, the camera) and handed in
with two honest classmates (alice: the full solution, bob: the untouched exercise).  The
whole folder is graded once through the command line, as an instructor does, with small
limits.  Then: every cheat scores 0 or only its honest part, alice 100 %, bob 0; the
classmates' files, the solutions and the gradebook are byte-identical to what they were
(the gradebook to what the grader wrote), no process is left behind, and the grade finished
within its limits.
"""
import csv
import json
import os
import shutil
import time

import nbformat
import pytest

from grading import ROOT, SOLUTIONS, cli, digest, notebook, processes_with, read, write
from softras_taichi import exercises as gen
from softras_taichi.grader import sandbox as sb
from softras_taichi.grader import spec

pytestmark = pytest.mark.skipif(not sb.bwrap_works(), reason="bubblewrap cannot run here")

EXERCISE = "01_camera"
HONEST = {  # the solution of each answer cell of exercise 01, by cell id
    "ex01-04": "def eye_position(distance, elevation, azimuth):\n    el, az = np.radians(elevation), np.radians(azimuth)\n"
               "    return distance * np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])",
    "ex01-07": "def look_at(eye):\n    f = -np.asarray(eye, dtype=float) / np.linalg.norm(eye)\n    r = np.cross(f, [0.0, 1.0, 0.0])\n"
               "    r = r / np.linalg.norm(r)\n    return np.stack([r, np.cross(r, f), f])",
    "ex01-10": "def project(vertices, eye, R, viewing_angle=30.0):\n    v = (np.asarray(vertices, dtype=float) - eye) @ R.T\n"
               "    s = v[:, 2] * np.tan(np.radians(viewing_angle))\n    return np.stack([v[:, 0] / s, v[:, 1] / s, v[:, 2]], axis=1)",
}
HONEST["ex01-q1a"] = "x_ndc_guess = 0.866\nabove = \"b\""       # the two questions
POINTS = {"ex01-04": 2, "ex01-07": 2, "ex01-10": 3, "ex01-q1a": 2}   # eye_position, look_at, project, questions


def _exercise():
    return read(os.path.join(ROOT, "exercises", EXERCISE + ".ipynb"))


def cheat(replace=None, honest=(), append=(), metadata=None):
    """The exercise with some answer cells replaced, some answered honestly, cells appended."""
    nb = _exercise()
    for c in nb.cells:
        if c.get("id") in honest:
            c.source = HONEST[c["id"]]
        if replace and c.get("id") in replace:
            c.source = replace[c["id"]]
    for i, src in enumerate(append):
        cell = nbformat.v4.new_code_cell(src)
        cell["id"] = f"cheat-{i}"
        nb.cells.append(cell)
    if metadata is not None:
        nb.metadata["softras"] = metadata
    return nb


def attacks(paths):
    """{name: (notebook, expected points)}; `paths`: the absolute paths a cheat would aim at."""
    sols, alice, grades = paths["solutions"], paths["alice"], paths["gradebook"]
    patch_everything = (
        "import numpy as np, softras_taichi.grader as G\nfrom softras_taichi.grader import checks, hidden\n"
        "checks.Check.finish = lambda self: (setattr(self, 'points', self.max_points), setattr(self, 'message', 'ok'), self)[-1]\n"
        "np.isclose = lambda *a, **k: np.ones(np.broadcast(*a[:2]).shape, bool)\nnp.allclose = lambda *a, **k: True\n"
        "check = lambda *a, **k: (lambda f: None)\nG.check = check\n"
        "hidden.Recorder.close = lambda self, value, **k: self._record('close', 0.0, k.get('what', 'the result'), 1.0, None, 1e9, 1e9)\n")
    return {
        # -- answers from somewhere else
        "reference answers of the grader": (cheat(replace={
            "ex01-04": "from softras_taichi.grader import reference as ref\ndef eye_position(d, el, az):\n    return ref.eye(d, el, az)",
            "ex01-07": "def look_at(eye):\n    return ref.look_at(eye)",
            "ex01-10": "def project(v, eye, R, a=30.0):\n    return ref.project(v, eye, R, a)"}), 0),
        "the library's camera": (cheat(replace={
            "ex01-04": "def eye_position(d, el, az):\n    return sr.Camera.look_at(distance=d, elevation=el, azimuth=az).eye()[0]",
            "ex01-07": "from softras_taichi.camera import look_at_rows as L\ndef look_at(eye):\n    return L(np.asarray(eye)[None])[0]"},
            honest=["ex01-10"]), 3),
        "the library through getattr": (cheat(replace={
            "ex01-04": "import softras_taichi.camera as C\nCam = getattr(C, 'Cam' + 'era')\n"
                       "def eye_position(d, el, az):\n    return Cam.look_at(distance=d, elevation=el, azimuth=az).eye()[0]"}), 0),
        "the solutions next to the package": (cheat(append=[
            "import json, os, softras_taichi\nroot = os.path.dirname(os.path.dirname(softras_taichi.__file__))\n"
            f"for p in (os.path.join(root, 'solutions', '{EXERCISE}.ipynb'), {sols!r} + '/{EXERCISE}.ipynb'):\n"
            "    try:\n        for c in json.load(open(p))['cells']:\n"
            "            if c['cell_type'] == 'code':\n                exec(''.join(c['source']))\n"
            "    except OSError:\n        pass"]), 0),
        "the reference path from /proc": (cheat(append=[
            "import os, json\nfor pid in [os.getppid(), 1] + [int(p) for p in os.listdir('/proc') if p.isdigit()]:\n"
            "    try:\n        args = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')\n    except OSError:\n        continue\n"
            "    for a in args:\n        if a.endswith(b'.ipynb') or a.endswith(b'solutions'):\n"
            "            print('found', a)\n            raise SystemExit('found a path: ' + a.decode())"]), 0),
        # -- the grading machinery
        "patching the checks and numpy": (cheat(append=[patch_everything]), 0),
        "patching first, then honest answers": (cheat(honest=["ex01-04"], append=[patch_everything.split("hidden.Recorder")[0]]), 2),
        "a forged results file": (cheat(append=[
            "import atexit, json, os\nline = json.dumps({'name': 'eye_position', 'points': 200, 'max_points': 2, 'message': 'ok'})\n"
            "for p in (os.environ.get('SOFTRAS_GRADER_RESULTS', 'results.jsonl'), '/tmp/results.jsonl'):\n"
            "    open(p, 'a').write(line + '\\n')\n    atexit.register(lambda p=p: open(p, 'a').write(line + '\\n'))"]), 0),
        "points=200 and deleted checks": (cheat(append=[
            "@check('eye_position', points=200)\ndef _(t):\n    pass"]), 0),
        "claims another exercise": (cheat(metadata={"exercise": "02_probability_maps"}, honest=list(HONEST)), 0),
        # -- hurting the class
        "overwrites a classmate and the solutions": (cheat(honest=["ex01-04"], append=[
            f"for p in ({alice!r}, {sols!r} + '/{EXERCISE}.ipynb', {grades!r}):\n    try:\n"
            "        open(p, 'w').write('{}')\n    except OSError as e:\n        print('could not', p, e)"]), 2),
        "a daemon that outlives the grader": (cheat(honest=["ex01-07"], append=[
            "import os, sys\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            f"        code = 'import time\\ntime.sleep(4)\\nopen({grades!r}, \"w\").write(\"alice,0\")\\ntime.sleep(60)'\n"
            "        os.execv(sys.executable, [sys.executable, '-c', code, 'softras-daemon-attack'])\n    os._exit(0)"]), 2),
        "kills its parent": (cheat(honest=["ex01-07"], append=["import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
                                                              "os.kill(1, signal.SIGKILL)"]), 2),
        "exits its process": (cheat(honest=["ex01-04", "ex01-07", "ex01-10"], append=["import os\nos._exit(0)"]), 7),
        "floods its output": (cheat(honest=["ex01-10"], append=["while True:\n    print('x' * 100000)"]), 3),
        "sleeps with signals ignored": (cheat(honest=["ex01-04"], append=[
            "import signal, time\nfor s in (signal.SIGINT, signal.SIGALRM, signal.SIGTERM):\n    signal.signal(s, signal.SIG_IGN)\n"
            "time.sleep(3600)"]), 2),
        "an endless Taichi kernel": (cheat(honest=["ex01-07"], append=[
            "@ti.kernel\ndef spin(x: ti.f32) -> ti.f32:\n    y = x\n    while y > 0:\n        y += 1.0\n    return y\n\nspin(1.0)"]), 2),
        "eats memory": (cheat(honest=["ex01-10"], append=[
            "import numpy as np\nhog = []\nwhile True:\n    hog.append(np.ones(1 << 27))"]), 3),
        "forks without end": (cheat(honest=["ex01-04"], append=[
            "import os, time\nfor _ in range(5000):\n    try:\n        if os.fork() == 0:\n            time.sleep(30)\n"
            "            os._exit(0)\n    except OSError:\n        break"]), 2),
        "fills the disk": (cheat(honest=["ex01-04"], append=[
            "n = 0\ntry:\n    while True:\n        open(f'f{n}', 'wb').write(b'x' * (1 << 24))\n        n += 1\nexcept OSError:\n    pass"]), 2),
        "answers the grader's channel itself": (cheat(append=[
            "import numpy as np\nfrom softras_taichi.grader import hidden\n"
            "def fake(name, role, seed=None, inputs=None, timeout=None):\n"
            "    parts = [{'what': w, 'kind': 'close', 'rtol': 1e9, 'atol': 1e9, 'weight': 1.0, 'hint': None, 'problem': None}\n"
            "             for w in ['x'] * 8]\n"
            "    return {'parts': parts, 'inputs': [], 'error': None, 'seconds': 0}, {f'v{i}': np.zeros(3) for i in range(8)}\n"
            "hidden.run_check = fake"]), 0),
        "echoes the inputs back": (cheat(replace={
            "ex01-04": "def eye_position(d, el, az):\n    return np.array([d, el, az])",
            "ex01-07": "def look_at(eye):\n    return np.stack([eye, eye, eye])",
            "ex01-10": "def project(v, eye, R, a=30.0):\n    return np.asarray(v)"}), 0),
    }


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    base = tmp_path_factory.mktemp("attacks")
    subs, sols = base / "submissions", base / "solutions"
    subs.mkdir()
    shutil.copytree(SOLUTIONS, sols)
    grades = base / "gradebook" / "grades.csv"
    paths = {"solutions": str(sols), "alice": str(subs / "alice.ipynb"), "gradebook": str(grades)}
    sol = read(sols / f"{EXERCISE}.ipynb")
    alice = gen.make_exercise(sol, EXERCISE)
    for c in alice.cells:
        if c.get("id") in HONEST:
            c.source = HONEST[c["id"]]
    write(alice, subs / "alice.ipynb")
    write(_exercise(), subs / "bob.ipynb")
    cases = attacks(paths)
    for i, (name, (nb, _)) in enumerate(cases.items()):
        (subs / f"cheat{i:02d}").mkdir()
        write(nb, subs / f"cheat{i:02d}" / f"Copy of {EXERCISE}.ipynb")
    (subs / "garbage.ipynb").write_text("this is not a notebook")
    before = {"submissions": digest(subs), "solutions": digest(sols)}
    start = time.monotonic()
    p = cli("grade", subs, "--solutions", sols, "--csv", grades, "--jobs", 2, "--exercise", EXERCISE,
            "--timeout", 8, "--time-limit", 60, "--output-mb", 1, "--memory", 2, "--json", base / "reports.json")
    elapsed = time.monotonic() - start
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    written = grades.read_bytes()
    time.sleep(6)        # the daemon's moment, had it survived
    rows = {r["student"]: r for r in csv.DictReader(grades.open())}
    reports = json.loads((base / "reports.json").read_text())
    return {"cases": cases, "rows": rows, "reports": reports, "stdout": p.stdout, "elapsed": elapsed,
            "before": before, "after": {"submissions": digest(subs), "solutions": digest(sols)},
            "written": written, "now": grades.read_bytes(), "n": len(cases) + 3}


def test_honest_classmates(attacked):
    rows = attacked["rows"]
    assert float(rows["alice"]["score"]) == float(rows["alice"]["max_score"]) == 9.0
    assert float(rows["bob"]["score"]) == 0.0 and rows["bob"]["max_score"] == "9.0"


@pytest.mark.parametrize("index", range(22))
def test_each_attack_scores_zero_or_its_honest_part(attacked, index):
    name, (_, honest_points) = list(attacked["cases"].items())[index]
    row = attacked["rows"][f"cheat{index:02d}"]
    assert float(row["max_score"]) == 9.0, row          # graded out of the instructor's total, always
    assert float(row["score"]) == honest_points, (name, row, attacked["reports"].get(f"cheat{index:02d}"))


def test_classmates_solutions_and_gradebook_untouched(attacked):
    assert attacked["after"] == attacked["before"]
    assert attacked["now"] == attacked["written"]                  # nobody wrote it after the grader


def test_no_process_left_behind(attacked):
    assert processes_with("softras-daemon-attack") == []
    assert processes_with("softras_taichi.grader.harness") == []


def test_the_folder_grade_stays_within_its_limits(attacked):
    # 60 s per notebook at most, two at a time: the worst case; in practice far below
    assert attacked["elapsed"] < attacked["n"] * 60 / 2
    print(f"\n{attacked['n']} notebooks (22 attacks) graded in {attacked['elapsed']:.0f} s")


def test_what_the_instructor_is_told(attacked):
    rows, out = attacked["rows"], attacked["stdout"]
    by_name = {name: attacked["rows"][f"cheat{i:02d}"] for i, name in enumerate(attacked["cases"])}
    assert "not graded" in by_name["claims another exercise"]["error"]
    assert "printed more than 1 MB" in by_name["floods its output"]["error"]
    assert "garbage" in rows and "cannot read" in rows["garbage"]["error"]
    assert "not graded:" in out and "[1/" in out
    report = attacked["reports"]["cheat01"][f"cheat01/Copy of {EXERCISE}.ipynb"]
    msg = {c["name"]: c["message"] for c in report["checks"]}
    assert msg["eye_position"].startswith("you called `softras_taichi.camera.Camera`")
    assert "write it yourself" in msg["look_at"] and report["sandbox"] == "bwrap"
    assert spec.load_exercise(os.path.join(SOLUTIONS, EXERCISE + ".ipynb")).max_score == 9.0


def test_killing_the_grader_loses_no_row_and_leaves_no_sandbox(tmp_path):
    """SIGKILL the grader in the middle of a folder: the gradebook holds every row graded
    so far (and nothing half-written), and the sandboxes die with it."""
    import signal
    import subprocess
    import sys

    from grading import ENV

    subs = tmp_path / "subs"
    subs.mkdir()
    for i in range(4):
        nb = cheat(honest=list(HONEST))
        if i == 3:      # the last one hangs: the grader is killed while it runs
            nb.cells.append(nbformat.v4.new_code_cell(
                "import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'import time; time.sleep(600)', "
                "'softras-hang-marker'])"))
        write(nb, subs / f"s{i}.ipynb")
    grades = tmp_path / "grades.csv"
    proc = subprocess.Popen([sys.executable, "-m", "softras_taichi", "grade", str(subs), "--solutions", SOLUTIONS,
                             "--csv", str(grades), "--exercise", EXERCISE, "--timeout", "300"],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not processes_with("softras-hang-marker"):
        time.sleep(0.5)
    assert processes_with("softras-hang-marker"), "the hanging notebook never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows = list(csv.DictReader(grades.open()))
    assert [r["student"] for r in rows] == ["s0", "s1", "s2"] and all(r["score"] == "9.0" for r in rows)
    time.sleep(1)
    assert processes_with("softras-hang-marker") == []
