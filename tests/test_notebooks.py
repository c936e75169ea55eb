"""The committed notebooks, checked without running them (nbval runs notebooks/ itself).

A reader on GitHub sees the committed outputs, so every notebook under notebooks/,
solutions/ and exercises/ must

* hold no error output (a traceback on GitHub is a bug report, not a lecture);
* be executed: every code cell has an execution_count, in increasing order (run top to
  bottom) -- except exercises/, which students receive with their gaps unrun;
* keep any saved widget state in the form GitHub renders ("state" under
  metadata.widgets; without it GitHub refuses to show the whole notebook).

Lectures in notebooks/ also open the same way (notebooks/README.md, "Conventions"):
cell 1 is markdown with the "Open in Colab" badge pointing at this very file, then the
lecture's prerequisites, study time, run time, objectives and links to its exercise and to
docs/math.md; cell 2 is the code cell that installs the pinned package only when running in
Colab; each lecture asks at least two "Think!" questions with folded answers, and is listed
in notebooks/README.md.

And the project's own text cites only what a reader can see: docs/math.md exists, states
the library's defaults and the sections others cite, and no tracked file mentions an
internal contract ("SPEC") or "the seed's" setting.
"""
import ast
import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = ("notebooks", "solutions", "exercises")
COLAB_URL = "https://colab.research.google.com/github/softras-taichi/softras-taichi/blob/main/"
BADGE_IMG = "https://colab.research.google.com/assets/colab-badge.svg"


def _notebooks(*folders):
    found = []
    for folder in folders:
        found += sorted(p for p in (ROOT / folder).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    return found


def _id(path):
    return str(path.relative_to(ROOT))


def _load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _source(cell):
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _code_cells(nb):
    return [(i, c) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]


ALL = _notebooks(*FOLDERS)
EXECUTED = _notebooks("notebooks", "solutions")
LECTURES = _notebooks("notebooks")


def test_the_lectures_exist():
    assert LECTURES, "no notebooks under notebooks/: the course has no lectures"


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_no_error_outputs(path):
    nb = _load(path)
    bad = []
    for i, cell in _code_cells(nb):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                bad.append(f"cell {i + 1}: {out.get('ename')}: {out.get('evalue', '')[:200]}")
    assert not bad, (f"{_id(path)} was committed with error outputs (fix the cell, re-execute the "
                     "notebook top to bottom, commit the result):\n  " + "\n  ".join(bad))


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_code_cells_are_python(path):
    """Every code cell parses as Python (IPython's `!shell` and `%magic` lines aside).

    IPython 8 quietly dedented a cell whose first line was indented; IPython 9 raises
    IndentationError, so such a cell ran on one machine and failed on a fresh one."""
    bad = []
    for i, cell in _code_cells(_load(path)):
        lines = [re.sub(r"^(\s*)[!%].*", r"\1pass", line) for line in _source(cell).splitlines()]
        try:
            ast.parse("\n".join(lines))
        except SyntaxError as exc:
            bad.append(f"cell {i + 1}, line {exc.lineno}: {exc.msg}")
    assert not bad, f"{_id(path)} has code cells that are not valid Python:\n  " + "\n  ".join(bad)


@pytest.mark.parametrize("path", EXECUTED, ids=_id)
def test_committed_executed_top_to_bottom(path):
    nb = _load(path)
    counts, unrun = [], []
    for i, cell in _code_cells(nb):
        if not _source(cell).strip():
            continue  # an empty cell has nothing to run
        if cell.get("execution_count") is None:
            unrun.append(i + 1)
        else:
            counts.append((i + 1, cell["execution_count"]))
    assert not unrun, (f"{_id(path)} was committed unexecuted: code cells {unrun} have no "
                       "execution_count. Execute it top to bottom in a fresh kernel and commit the outputs.")
    order = [c for _, c in counts]
    assert order == sorted(order) and len(set(order)) == len(order), (
        f"{_id(path)}: execution counts {order} are out of order: the committed outputs do not come "
        "from one top-to-bottom run. Restart the kernel, run all, and commit.")


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_widget_state_renders_on_github(path):
    widgets = _load(path).get("metadata", {}).get("widgets")
    if widgets is None:
        return
    for mime, entry in widgets.items():
        assert isinstance(entry, dict) and "state" in entry, (
            f"{_id(path)}: metadata.widgets[{mime!r}] has no 'state' key, and GitHub refuses to render "
            "such a notebook. Re-execute it with nbclient (which saves the state) or drop metadata.widgets.")


@pytest.mark.parametrize("path", LECTURES, ids=_id)
def test_lecture_opens_with_colab_badge_and_install_cell(path):
    cells = _load(path)["cells"]
    assert len(cells) >= 3, f"{_id(path)} has fewer than three cells"
    first, second = cells[0], cells[1]
    assert first["cell_type"] == "markdown", f"{_id(path)}: cell 1 must be markdown (title + Colab badge)"
    md = _source(first)
    assert BADGE_IMG in md, f"{_id(path)}: cell 1 has no 'Open in Colab' badge image ({BADGE_IMG})"
    link = COLAB_URL + "notebooks/" + path.name
    assert f"]({link})" in md, f"{_id(path)}: the Colab badge must link to {link}"
    assert re.search(r"^#\s+\S", md, re.MULTILINE), f"{_id(path)}: cell 1 must start with a '# title'"

    assert second["cell_type"] == "code", f"{_id(path)}: cell 2 must be the Colab install code cell"
    src = _source(second)
    assert re.search(r"""if\s+["']google\.colab["']\s+in\s+sys\.modules\s*:""", src), (
        f"{_id(path)}: cell 2 must install only in Colab: `if \"google.colab\" in sys.modules:`")
    pip = [line for line in src.splitlines() if "pip install" in line]
    assert pip, f"{_id(path)}: cell 2 must pip install the package in Colab"
    assert pip[0].startswith((" ", "\t")), f"{_id(path)}: the pip install must sit inside the Colab `if`"
    assert '"taichi==1.7.4"' in pip[0], f"{_id(path)}: cell 2 must pin taichi==1.7.4"
    assert re.search(r"softras-taichi @ git\+https://github\.com/softras-taichi/softras-taichi@v\d+\.\d+\.\d+",
                     pip[0]), f"{_id(path)}: cell 2 must install softras-taichi pinned to a release tag"
    assert 'os.environ.setdefault("ENABLE_TAICHI_HEADER_PRINT", "0")' in src, (
        f"{_id(path)}: cell 2 must silence Taichi's banner with ENABLE_TAICHI_HEADER_PRINT=0")


@pytest.mark.parametrize("path", LECTURES, ids=_id)
def test_lecture_listed_in_course_index(path):
    index = (ROOT / "notebooks" / "README.md").read_text(encoding="utf-8")
    assert f"({path.name})" in index, f"notebooks/README.md does not link {path.name}"


# --------------------------------------------------------------------------- lecture scaffolding
#
# Every lecture opens with what a student needs to plan and start it (notebooks/README.md, "Course
# map"): prerequisites, study time, run time, objectives, its exercise and the math document; and it
# makes the student think: at least two "Think!" questions, each answered in a folded <details> block.

EXERCISES = {"00": "00_taichi_warmup", "01": "01_camera", "02": "02_probability_maps", "03": "03_aggregation",
             "04": "04_gradients", "05": "05_pose_fitting", "06": "06_mesh_reconstruction",
             "07": "07_under_the_hood"}
MATH = ROOT / "docs" / "math.md"
THINK = re.compile(r"^\s*(?:>\s*)?\*\*Think!\*\*", re.MULTILINE)
ANSWER = re.compile(r"<details>\s*<summary>\s*Answer\s*</summary>(.*?)</details>", re.DOTALL)


def _intro(path):
    return _source(_load(path)["cells"][0])


@pytest.mark.parametrize("path", LECTURES, ids=_id)
def test_lecture_states_prerequisites_study_time_and_objectives(path):
    md = _intro(path)
    missing = [what for what, pattern in (
        ("a '**Prerequisites:** ...' line", r"^\*\*Prerequisites:\*\*\s*\S"),
        ("a '**Study time:** about N minutes' line", r"^\*\*Study time:\*\*\s*about\s+\d+\s+minutes"),
        ("a '**Run time:** ...' line", r"^\*\*Run time:\*\*\s*\S"),
        ("an '## Objectives' section", r"^##\s+Objectives\s*$"),
    ) if not re.search(pattern, md, re.MULTILINE)]
    assert not missing, f"{_id(path)}: cell 1 lacks " + ", ".join(missing) + " (notebooks/README.md, 'Course map')"
    objectives = md.split("## Objectives", 1)[1]
    objectives = re.split(r"^#", objectives, maxsplit=1, flags=re.MULTILINE)[0]
    assert "After this lecture you can" in objectives, (
        f"{_id(path)}: the objectives must say what the student can do: 'After this lecture you can' + bullets")
    bullets = re.findall(r"^\s*[*-]\s+\S", objectives, re.MULTILINE)
    assert len(bullets) >= 3, f"{_id(path)}: '## Objectives' has {len(bullets)} bullets; list at least three"


@pytest.mark.parametrize("path", LECTURES, ids=_id)
def test_lecture_links_its_exercise_and_the_math_document(path):
    md = _intro(path)
    number = path.name[:2]
    assert number in EXERCISES, f"{_id(path)}: no exercise is assigned to lecture {number} (tests/test_notebooks.py)"
    exercise = f"../exercises/{EXERCISES[number]}.ipynb"
    assert f"]({exercise})" in md, f"{_id(path)}: cell 1 must link its exercise: [Exercise {number}]({exercise})"
    assert (ROOT / "exercises" / f"{EXERCISES[number]}.ipynb").is_file(), (
        f"{_id(path)} links {exercise}, which does not exist")
    assert re.search(r"\]\(\.\./docs/math\.md[)#]", md), f"{_id(path)}: cell 1 must link ../docs/math.md"


@pytest.mark.parametrize("path", LECTURES, ids=_id)
def test_lecture_asks_questions_with_answers(path):
    questions, unanswered = 0, []
    for i, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        text = _source(cell)
        for q in THINK.finditer(text):  # a question may close a cell of text; its answer follows it
            questions += 1
            answer = ANSWER.search(text, q.end())
            if not answer or len(re.sub(r"\s", "", answer.group(1))) < 20:
                unanswered.append(i + 1)
    assert not unanswered, (f"{_id(path)}: the Think! questions in cells {unanswered} have no answer in a "
                            "'<details><summary>Answer</summary> ... </details>' block in the same cell")
    assert questions >= 2, (f"{_id(path)} asks {questions} 'Think!' question(s); ask at least two (a markdown "
                            "cell starting '> **Think!**', the answer folded in <details>)")


# --------------------------------------------------------------------------- the math document

def test_math_document_exists_and_defines_the_symbols():
    assert MATH.is_file(), "docs/math.md is missing: lectures, README and docstrings cite it"
    text = MATH.read_text(encoding="utf-8")
    missing = [s for s in ("σ", "γ", "ε", "δ", "d²", "D_j", "ẑ", "w_j", "A^i", "I^i", "L_s", "L_c", "L_lap",
                           "L_flat", "λ", "μ", "dist_eps", "near", "far", "NDC") if s not in text]
    assert not missing, f"docs/math.md does not define {missing}"
    # the defaults it states are the library's
    import inspect

    import softras_taichi as sr
    defaults = {k: v.default for k, v in inspect.signature(sr.SoftRenderer).parameters.items()}
    table = text.split("## 10.", 1)[1].split("\n## ", 1)[0]
    for name in ("sigma", "gamma", "eps", "dist_eps"):
        row = next((line for line in table.splitlines() if f"`{name}`" in line), None)
        assert row is not None, f"docs/math.md §10 has no row for `{name}`"
        stated = float(row.split("|")[3])
        assert stated == defaults[name], f"docs/math.md §10 states {row!r}, the library's default is {defaults[name]:g}"


def test_math_document_is_linked_from_readme_and_lectures():
    unlinked = [_id(p) for p in LECTURES if "../docs/math.md" not in "".join(_source(c) for c in _load(p)["cells"])]
    assert not unlinked, f"these lectures never link ../docs/math.md: {unlinked}"
    assert "(docs/math.md)" in (ROOT / "README.md").read_text(encoding="utf-8"), "README.md must link docs/math.md"


def test_sections_of_the_math_document_that_others_cite_exist():
    """`docs/math.md, "Reconstruction settings"` in a docstring must name a heading or a bold lead there."""
    text = MATH.read_text(encoding="utf-8")
    cite = re.compile(r"docs/math\.md(?:'s|,)?\s*(?!'s\s)[\"'“]([^\"'”\n]{3,60})[\"'”]")
    missing = []
    for path in _product_files():
        if path.suffix not in (".py", ".md"):
            continue
        for name in cite.findall(path.read_text(encoding="utf-8", errors="replace")):
            if not re.search(rf"^(#+\s*(\d+\.\s*)?|\*\*){re.escape(name)}", text, re.MULTILINE | re.IGNORECASE):
                missing.append(f"{path.relative_to(ROOT)} cites docs/math.md {name!r}")
    assert not missing, "sections cited but not in docs/math.md:\n  " + "\n  ".join(missing)


# --------------------------------------------------------------------------- no internal references

# Words that point a reader at documents they cannot see: an internal contract ("SPEC") and "the
# seed's" setting. This file names them to look for them, so it is the one file left out.
FORBIDDEN = re.compile(r"SPEC|seed's|SEED_SETTING", re.IGNORECASE)
_CASE_SENSITIVE = re.compile(r"SPEC")


def _product_files():
    import subprocess
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        names = [n for n in out.decode("utf-8").split("\0") if n]
    except (OSError, subprocess.CalledProcessError):    # not a git checkout: every file but build output
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()
                 and not any(part.startswith(".") or part.endswith(".egg-info") or part == "__pycache__"
                             for part in p.relative_to(ROOT).parts)]
    here = pathlib.Path(__file__).resolve()
    return [ROOT / n for n in names if not n.startswith("shared/") and (ROOT / n).resolve() != here
            and (ROOT / n).is_file()]


def _readable_text(path):
    """The text a reader sees: a notebook's sources and text outputs (not base64 images), else the file."""
    raw = path.read_bytes()
    if b"\0" in raw[:4096]:
        return ""
    text = raw.decode("utf-8", errors="replace")
    if path.suffix == ".ipynb":
        nb = json.loads(text)
        parts = []
        for cell in nb["cells"]:
            parts.append(_source(cell))
            for out in cell.get("outputs", []):
                parts.append("".join(out.get("text", "")))
                for mime, data in out.get("data", {}).items():
                    if mime.startswith("text/"):
                        parts.append("".join(data) if isinstance(data, list) else str(data))
        return "\n".join(parts)
    return text


def _hits(text):
    found = []
    for m in FORBIDDEN.finditer(text):
        word = m.group(0)
        if word.upper() == "SPEC" and not _CASE_SENSITIVE.fullmatch(word):
            continue            # "spec" (the grader's spec.py, kernelspec, gridspec) is fine; "SPEC" is not
        found.append(word)
    return found


def test_no_product_file_cites_internal_documents():
    bad = []
    for path in _product_files():
        text = _readable_text(path)
        for n, line in enumerate(text.splitlines(), 1):
            if _hits(line):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not bad, ("product files cite documents a reader cannot see (\"SPEC\", \"the seed's\"): cite "
                     "docs/math.md instead, or name the setting for what it is:\n  " + "\n  ".join(bad))


def test_the_internal_reference_check_finds_what_it_should():
    assert _hits("as SPEC §2 says") == ["SPEC"] and _hits("the seed's setting") == ["seed's"]
    assert _hits("fit.SEED_SETTING") == ["SEED_SETTING"]
    assert not _hits("a random seed, spec.py, kernelspec, perspective, gridspec_kw")
