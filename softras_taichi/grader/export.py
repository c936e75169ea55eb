"""Source notebooks for nbgrader and otter-grader, from a solution notebook.

    softras-taichi export --nbgrader COURSE/source     # COURSE/source/<exercise>/<exercise>.ipynb
    softras-taichi export --otter DIR                  # DIR/<exercise>.ipynb, Otter Assign's format

Both start from one reference run of the solution (in the grader's sandbox, on inputs
drawn from os.urandom at export time): each graded check becomes hidden tests that carry
its source, inputs and expected values (`replay.py`), so the tools grade with the same
checks and the same comparison as `softras-taichi grade`, with partial credit:

* nbgrader: one autograder test cell per graded check, worth its points; its hidden part
  ends with `replay(...)`, whose value (the points) nbgrader reads as partial credit.
  Solution cells are "autograded answer" cells; `generate_assignment` strips the
  solutions and the hidden tests, `autograde` restores the tests by checksum.
* otter-grader: one question per hidden-test cell of the solution (its answer and
  feedback cells inside), one hidden OK-format test case per part of each check, worth
  the check's points × the part's weight (the solution's).  `otter assign` writes the
  student notebook and autograder.zip; `otter run` (or Gradescope) grades.
"""
import copy
import os
import re

import nbformat

from . import hidden
from .grade import Reference
from .replay import encode
from .sandbox import Limits
from .spec import GradedCheck, _calls, split_hidden


def _slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "check"


def recorded(ex, sandbox, seed=None, limits=None):
    """{check name: data text} of every graded check of `ex`, from one reference run."""
    values = Reference(ex, sandbox, limits or Limits(), seed=seed).get()
    source = "from softras_taichi.grader import graded\n\n" + "\n\n".join(ex.hidden)
    out = {}
    for c in ex.checks:
        header, arrays = values[c.name]
        meta = {"exercise": ex.name, "check": c.name, "points": c.points, "hint": c.hint, "source": source,
                "header": {"parts": header["parts"]}}
        out[c.name] = encode(meta, arrays)
    return out


def _hidden_checks(source):
    return [GradedCheck(args[0], float(kws.get("points", args[1] if len(args) > 1 else 1)))
            for _, args, kws in _calls(source, "graded")]


def _code(source, metadata=None):
    cell = nbformat.v4.new_code_cell(source)
    if metadata:
        cell.metadata.update(metadata)
    return cell


def _clean(nb):
    from ..exercises import _summary_call

    summary = _summary_call(nb)
    nb = copy.deepcopy(nb)
    for key in ("widgets", "execution", "papermill"):
        nb.metadata.pop(key, None)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
            if c.source.strip() == "summary()":
                c.source = summary
    return nb


def _cells(nb):
    """(cell or None, whether it holds solution regions, [hidden-test sources]) for each
    cell of a cleaned solution notebook: the cell without its hidden tests (None when
    nothing else was in it)."""
    from ..exercises import answers_as_regions, solution_regions

    for c in nb.cells:
        if c.cell_type != "code":
            yield c, False, []
            continue
        visible, hiddens = split_hidden(c.source)
        keep = None
        if visible.strip():
            c.source = answers_as_regions(visible.strip("\n") if hiddens else visible)
            keep = c
        yield keep, bool(keep is not None and solution_regions(keep.source)), hiddens


def nbgrader_notebook(ex, data):
    """The nbgrader source notebook of exercise `ex` with the recorded `data`."""
    cells = []
    nb = _clean(ex.nb)
    for c, answer, hiddens in _cells(nb):
        if answer:
            c.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False,
                                      "grade_id": f"answer-{c.get('id') or len(cells)}", "schema_version": 3}
        if c is not None:
            cells.append(c)
        for h in hiddens:
            for chk in _hidden_checks(h):
                src = (f"# graded check: {chk.name} ({chk.points:g} points), run when your notebook is graded\n"
                       "### BEGIN HIDDEN TESTS\nfrom softras_taichi.grader.replay import replay\n"
                       f"replay(globals(), {chk.name!r}, {data[chk.name]!r})\n### END HIDDEN TESTS")
                cells.append(_code(src, {"nbgrader": {"grade": True, "solution": False, "locked": True,
                                                      "points": chk.points, "grade_id": f"test-{_slug(chk.name)}",
                                                      "schema_version": 3}}))
    nb.cells = cells
    return nb


def _raw(text):
    return nbformat.v4.new_raw_cell(text)


def otter_notebook(ex, data, parts):
    """The Otter Assign master notebook of exercise `ex`; parts: {check: [weights]}."""
    nb = _clean(ex.nb)
    cells = [_raw("# ASSIGNMENT CONFIG\ninit_cell: false\ncheck_all_cell: false\nexport_cell: false\n"
                  "run_tests: false\nsave_environment: false\ntests:\n  files: false\n  ok_format: true")]
    pending = []
    for c, answer, hiddens in _cells(nb):
        if answer:      # Otter strips solutions inside its SOLUTION blocks
            pending += [_raw("# BEGIN SOLUTION"), c, _raw("# END SOLUTION")]
        elif c is not None:
            pending.append(c)
        for h in hiddens:
            checks = _hidden_checks(h)
            if not checks:
                continue
            name = _slug(checks[0].name).replace("-", "_")
            cells.append(_raw(f"# BEGIN QUESTION\nname: {name}\npoints: {sum(k.points for k in checks):g}"))
            cells.extend(pending)
            pending = []
            cells.append(_raw("# BEGIN TESTS"))
            for chk in checks:
                weights = parts[chk.name]
                total = sum(weights)
                for i, w in enumerate(weights):
                    src = (f'""" # BEGIN TEST CONFIG\npoints: {chk.points * w / total:.6g}\nhidden: true\n'
                           '""" # END TEST CONFIG\nfrom softras_taichi.grader.replay import replay\n'
                           f"replay(globals(), {chk.name!r}, {data[chk.name]!r}, part={i})")
                    cell = _code(src)
                    cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "True"},
                                                           execution_count=1)]
                    cells.append(cell)
            cells.append(_raw("# END TESTS"))
            cells.append(_raw("# END QUESTION"))
    cells.extend(pending)
    nb.cells = cells
    return nb


def _weights(data):
    from .replay import decode

    return {name: [p["weight"] for p in decode(text)[0]["header"]["parts"]] for name, text in data.items()}


def export_nbgrader(ex, folder, sandbox, seed=None):
    """Write FOLDER/<exercise>/<exercise>.ipynb (nbgrader's source/ layout); returns its path."""
    data = recorded(ex, sandbox, seed)
    path = os.path.join(folder, ex.name, ex.name + ".ipynb")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    nbformat.write(nbgrader_notebook(ex, data), path)
    return path


def export_otter(ex, folder, sandbox, seed=None):
    """Write FOLDER/<exercise>.ipynb in Otter Assign's format; returns its path."""
    data = recorded(ex, sandbox, seed)
    path = os.path.join(folder, ex.name + ".ipynb")
    os.makedirs(folder, exist_ok=True)
    nbformat.write(otter_notebook(ex, data, _weights(data)), path)
    return path


__all__ = ["export_nbgrader", "export_otter", "nbgrader_notebook", "otter_notebook", "recorded", "hidden"]
