"""Helpers of the grading tests: small notebooks, solution folders, the command line."""
import hashlib
import os
import subprocess
import sys

import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOLUTIONS = os.path.join(ROOT, "solutions")
EXERCISES = os.path.join(ROOT, "exercises")
NAMES = sorted(n for n in os.listdir(SOLUTIONS) if n.endswith(".ipynb"))
ENV = dict(os.environ, TI_ARCH="x64", ENABLE_TAICHI_HEADER_PRINT="0")


def notebook(cells, exercise=None):
    """A notebook of code cells (strings) or (kind, source) pairs, with stable cell ids."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if exercise:
        nb.metadata["softras"] = {"exercise": exercise}
    out = []
    for i, c in enumerate(cells):
        kind, src = ("code", c) if isinstance(c, str) else c
        cell = nbformat.v4.new_code_cell(src) if kind == "code" else nbformat.v4.new_markdown_cell(src)
        cell["id"] = f"cell-{i:02d}"
        out.append(cell)
    nb.cells = out
    return nb


def write(nb, path):
    nbformat.write(nb, str(path))
    return str(path)


def read(path):
    return nbformat.read(str(path), as_version=4)


def cli(*args, cwd=None, timeout=900, env=None):
    return subprocess.run([sys.executable, "-m", "softras_taichi", *map(str, args)], capture_output=True,
                          text=True, env=env or ENV, cwd=cwd, timeout=timeout)


def digest(folder):
    """{relative path: sha256} of every file under `folder`."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def processes_with(marker):
    """pids whose command line contains `marker` (processes left behind)."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as fh:
                    if marker.encode() in fh.read():
                        found.append(int(d))
            except OSError:
                pass
    return found
