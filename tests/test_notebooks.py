"""The committed notebooks, checked without running them (nbval runs notebooks/ itself).

A reader on GitHub sees the committed outputs, so every notebook under notebooks/,
solutions/ and exercises/ must

* hold no error output (a traceback on GitHub is a bug report, not a lecture);
* be executed: every code cell has an execution_count, in increasing order (run top to
  bottom) -- except exercises/, which students receive with their gaps unrun;
* keep any saved widget state in the form GitHub renders ("state" under
  metadata.widgets; without it GitHub refuses to show the whole notebook).

Lectures in notebooks/ also open the same way (notebooks/README.md, "Conventions"):
cell 1 is markdown with the "Open in Colab" badge pointing at this very file, cell 2 is
the code cell that installs the pinned package only when running in Colab; and each
lecture is listed in notebooks/README.md.
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
