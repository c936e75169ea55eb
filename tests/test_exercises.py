"""exercises/ is generated from solutions/ and nothing else (no kernels run here: fast).

* exercises/ is byte for byte what `python -m softras_taichi.exercises` writes;
* every solution region became `# YOUR CODE HERE` + `raise NotImplementedError`, every answer
  line `x = None  # YOUR ANSWER`, and no line of any solution region or answer appears in any
  exercise notebook;
* every exercise (one per lecture, same number) links its lecture and asks two questions or more;
* hidden tests are gone from the exercises, which name their exercise in their metadata and
  whose summary() knows every feedback check and the hidden points;
* exercises hold no outputs; solutions are committed executed, without errors;
* the generator itself: indentation, several regions per cell, bad markers, --check.
"""
import os
import subprocess
import sys

import nbformat
import pytest

from softras_taichi import exercises as gen
from softras_taichi.grader import spec
from softras_taichi.grader.spec import scan_checks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOLUTIONS = os.path.join(ROOT, "solutions")
EXERCISES = os.path.join(ROOT, "exercises")
NAMES = sorted(n for n in os.listdir(SOLUTIONS) if n.endswith(".ipynb"))


def read(folder, name):
    return nbformat.read(os.path.join(folder, name), as_version=4)


LECTURES = sorted(n for n in os.listdir(os.path.join(ROOT, "notebooks")) if n.endswith(".ipynb"))


def test_one_exercise_per_lecture_with_its_number():
    assert [n[:2] for n in NAMES] == [n[:2] for n in LECTURES], (NAMES, LECTURES)


@pytest.mark.parametrize("name", NAMES)
def test_exercise_links_its_lecture(name):
    lecture = next(n for n in LECTURES if n[:2] == name[:2])
    first = read(SOLUTIONS, name).cells[0].source
    assert f"](../notebooks/{lecture})" in first, f"{name} should link its lecture ../notebooks/{lecture}"
    assert f"exercises/{name})" in first, f"{name}'s Colab badge should open exercises/{name}"


def test_exercises_are_exactly_what_the_tool_generates():
    stale = gen.stale(SOLUTIONS, EXERCISES)
    assert not stale, (f"exercises/ differs from what solutions/ generates: {stale}; "
                       "run `python -m softras_taichi.exercises` (never edit exercises/ by hand)")
    assert sorted(n for n in os.listdir(EXERCISES) if n.endswith(".ipynb")) == NAMES


def test_check_command_passes_and_is_deterministic(tmp_path):
    out = subprocess.run([sys.executable, "-m", "softras_taichi.exercises", "--solutions", SOLUTIONS,
                          "--out", EXERCISES, "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # generating twice into a fresh folder gives identical bytes
    first, second = tmp_path / "a", tmp_path / "b"
    gen.generate(SOLUTIONS, str(first))
    gen.generate(SOLUTIONS, str(second))
    for name in NAMES:
        assert (first / name).read_bytes() == (second / name).read_bytes() == \
            open(os.path.join(EXERCISES, name), "rb").read()


@pytest.mark.parametrize("name", NAMES)
def test_solution_shape(name):
    """2-4 code regions, at least as many checks, two questions or more (answers graded by
    a hidden check), executed without errors."""
    nb = read(SOLUTIONS, name)
    code_regions = [r for c in nb.cells if c.cell_type == "code" for r in gen.solution_regions(c.source)]
    assert 2 <= len(code_regions) <= 4, f"{name}: {len(code_regions)} solution regions"
    checks = scan_checks(nb)
    assert len(checks) >= 2, f"{name}: checks {checks}"
    answers = [v for _, v in gen.answers(nb)]
    hidden = "\n".join(spec.Exercise(name[:-6], nb).hidden)
    assert len(answers) >= 2, f"{name}: {len(answers)} questions"
    for v in answers:
        assert f"t.number({v}" in hidden or f"t.choice({v}" in hidden or f"t.text({v}" in hidden or \
            f"_gamma(t, {v})" in hidden, f"{name}: no graded check reads the answer {v}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), f"{name} is not executed: run it and save"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{name} has error outputs: {[e.ename for e in errors]}"
    text = "".join(o.get("text", "") for c in code for o in c.outputs if o.output_type == "stream")
    assert "✘" not in text and "◐" not in text, f"{name}: a check did not pass when it was executed"


@pytest.mark.parametrize("name", NAMES)
def test_exercise_placeholders(name):
    sol, ex = read(SOLUTIONS, name), read(EXERCISES, name)
    by_id = {c.get("id"): c for c in sol.cells}
    hidden_only = [c for c in sol.cells if c.cell_type == "code" and spec.hidden_regions(c.source)
                   and not spec.split_hidden(c.source)[0].strip()]
    assert len(ex.cells) == len(sol.cells) - len(hidden_only)
    n_regions = len(gen.regions(sol))
    placeholders = 0
    for e in ex.cells:
        s = by_id[e.get("id")]
        assert s.cell_type == e.cell_type
        if e.cell_type != "code":
            assert e.source == s.source
            continue
        assert e.outputs == [] and e.execution_count is None
        assert gen.BEGIN not in e.source and gen.END not in e.source
        lines = e.source.split("\n")
        for i, line in enumerate(lines):
            if line.strip() == "# YOUR CODE HERE":
                placeholders += 1
                indent = line[: len(line) - len(line.lstrip())]
                assert lines[i + 1] == indent + "raise NotImplementedError"
    answers = sum(1 for e in ex.cells if e.cell_type == "code" for ln in e.source.split("\n")
                  if "= None  # YOUR ANSWER" in ln)
    assert placeholders + answers == n_regions and answers == len(gen.answers(sol))
    # the feedback check cells are the instructor's, unchanged
    assert [c[:2] for c in scan_checks(sol)] == [c[:2] for c in scan_checks(ex)]


@pytest.mark.parametrize("name", NAMES)
def test_hidden_tests_stay_with_the_instructor(name):
    """The graded checks live only in the solution; the exercise says which exercise it is,
    and its summary() counts every feedback check (run or not) and the hidden points."""
    sol, ex = read(SOLUTIONS, name), read(EXERCISES, name)
    exercise = spec.Exercise(name[:-6], sol)
    assert exercise.checks and ex.metadata["softras"] == {"exercise": name[:-6]}
    text = "\n".join(c.source for c in ex.cells)
    assert spec.HIDDEN_BEGIN not in text and spec.HIDDEN_END not in text and "@graded" not in text
    assert "reference" not in text and "ref." not in text
    summary = [c.source for c in ex.cells if c.source.startswith("summary(")]
    feedback = {n: p for n, p, _ in scan_checks(ex)}
    hidden = sum(c.points for c in exercise.checks if c.name not in feedback)
    assert summary == [f"summary(expected={feedback!r}, hidden={hidden:g})".replace(".0,", ",").replace(".0}", "}")]
    # every graded check but the hidden ones has a feedback check of the same name and points
    assert {n: p for n, p in feedback.items()} == {c.name: c.points for c in exercise.checks if c.name in feedback}


def test_the_package_ships_no_reference_answers():
    import softras_taichi.grader as grader

    assert not hasattr(grader, "reference")
    pkg = os.path.join(ROOT, "softras_taichi")
    for root, _, files in os.walk(pkg):
        for f in files:
            if f.endswith(".py"):
                src = open(os.path.join(root, f), encoding="utf-8").read()
                assert "class reference" not in src, f


def test_no_solution_line_appears_in_any_exercise():
    """Every non-blank line of every solution region, stripped, is absent from every exercise
    (compared line by line, and as a substring for lines of 20 characters or more)."""
    exercise_lines, exercise_text = set(), []
    for name in NAMES:
        for cell in read(EXERCISES, name).cells:
            exercise_text.append(cell.source)
            exercise_lines.update(ln.strip() for ln in cell.source.split("\n"))
    everything = "\n".join(exercise_text)
    leaks = []
    for name in NAMES:
        for cell in read(SOLUTIONS, name).cells:
            if cell.cell_type != "code":
                continue
            for line in gen.solution_code(cell.source):
                s = line.strip()
                if s and (s in exercise_lines or (len(s) >= 20 and s in everything)):
                    leaks.append(f"{name}: {s}")
    assert not leaks, "solution lines found in exercises:\n" + "\n".join(leaks)


# --------------------------------------------------------------------------- the generator

def test_strip_keeps_indentation_and_everything_else():
    src = ("def f(x):\n    '''doc'''\n    # BEGIN SOLUTION\n    y = x + 1\n    return y\n    # END SOLUTION\n\n"
           "a = 1\n# BEGIN SOLUTION\nb = 2\n# END SOLUTION\nprint(a)")
    assert gen.strip_solutions(src) == ("def f(x):\n    '''doc'''\n    # YOUR CODE HERE\n    raise NotImplementedError\n\n"
                                        "a = 1\n# YOUR CODE HERE\nraise NotImplementedError\nprint(a)")
    assert gen.strip_solutions("no regions\n") == "no regions\n"
    # one region only: the other keeps its code, without markers
    assert gen.strip_solutions(src, only=1) == ("def f(x):\n    '''doc'''\n    y = x + 1\n    return y\n\n"
                                                "a = 1\n# YOUR CODE HERE\nraise NotImplementedError\nprint(a)")


@pytest.mark.parametrize("src, problem", [
    ("# BEGIN SOLUTION\nx = 1\n", "never closed"),
    ("x = 1\n# END SOLUTION\n", "without"),
    ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n# END SOLUTION\n", "inside another"),
])
def test_bad_markers_are_errors(src, problem):
    with pytest.raises(gen.MarkerError, match=problem):
        gen.strip_solutions(src)


def test_make_exercise_strips_outputs_and_volatile_metadata():
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"state": 1}
    cell = nbformat.v4.new_code_cell("# BEGIN SOLUTION\nx = 41 + 1\n# END SOLUTION\nprint(x)")
    cell.execution_count = 3
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    cell.metadata["execution"] = {"iopub.status.busy": "2024"}
    cell.metadata["tags"] = ["keep"]
    nb.cells = [nbformat.v4.new_markdown_cell("# BEGIN SOLUTION is only a marker in code"), cell]
    ex = gen.make_exercise(nb)
    assert ex.cells[0].source == nb.cells[0].source
    c = ex.cells[1]
    assert c.source == "# YOUR CODE HERE\nraise NotImplementedError\nprint(x)"
    assert c.outputs == [] and c.execution_count is None
    assert c.metadata == {"tags": ["keep"]} and "widgets" not in ex.metadata
    assert nb.cells[1].outputs, "the solution notebook itself is not modified"
    nbformat.validate(ex)


def test_check_mode_detects_stale_and_extra_files(tmp_path):
    sol, ex = tmp_path / "solutions", tmp_path / "exercises"
    sol.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("# BEGIN SOLUTION\nx = 1\n# END SOLUTION")]
    nbformat.write(nb, str(sol / "a.ipynb"))
    run = lambda *a: subprocess.run([sys.executable, "-m", "softras_taichi", "exercises", "--solutions", str(sol),  # noqa: E731
                                     "--out", str(ex), *a], capture_output=True, text=True)
    assert run("--check").returncode == 1                       # missing
    assert run().returncode == 0 and (ex / "a.ipynb").exists()
    assert run("--check").returncode == 0
    (ex / "a.ipynb").write_text((ex / "a.ipynb").read_text().replace("YOUR CODE HERE", "my answer"))
    assert run("--check").returncode == 1                       # edited by hand
    (ex / "stray.ipynb").write_text("{}")
    out = run("--check")
    assert out.returncode == 1 and "stray.ipynb" in out.stdout  # no solution for it
    assert run().returncode == 0
    assert sorted(p.name for p in ex.iterdir()) == ["a.ipynb"]
    assert gen.stale(str(sol), str(ex)) == []


def test_answer_lines_become_none_and_can_be_blanked_one_by_one():
    src = "a = 1\nband_px = 0.97  # ANSWER: in pixels\n# BEGIN SOLUTION\nb = 2\n# END SOLUTION\nq = 'b'  # ANSWER"
    assert gen.strip_solutions(src) == ("a = 1\nband_px = None  # YOUR ANSWER: in pixels\n# YOUR CODE HERE\n"
                                        "raise NotImplementedError\nq = None  # YOUR ANSWER")
    assert gen.strip_solutions(src, only=0) == "a = 1\nband_px = None  # YOUR ANSWER: in pixels\nb = 2\nq = 'b'"
    assert gen.strip_solutions(src, only=2) == "a = 1\nband_px = 0.97\nb = 2\nq = None  # YOUR ANSWER"
    assert gen.solution_code(src) == ["b = 2", "band_px = 0.97  # ANSWER: in pixels", "q = 'b'  # ANSWER"]
    assert gen.answers_as_regions(src).split("\n")[1:4] == ["# BEGIN SOLUTION", "band_px = 0.97", "# END SOLUTION"]
