"""Graded checks inside another tool's kernel: nbgrader's autograde, otter-grader's run.

`softras-taichi export` runs the solution once (as the grader's reference run does) and
writes into the tool's hidden tests everything a graded check needs: its source, the
inputs drawn for it, the expected values, tolerances and weights the solution recorded.
In the tool's kernel, after the student's cells,

    replay(globals(), "segment_d2", DATA)          # nbgrader: returns the points (partial credit)
    replay(globals(), "segment_d2", DATA, part=0)  # otter: True when part 0 is right

runs the check on those inputs in the notebook's namespace and compares the values with
the recorded ones, the same comparison as `softras-taichi grade`.  The comparison runs in
the student's process here: these tools sandbox the whole run (otter's container,
nbgrader's restored test cells), not the comparison.
"""
import base64
import hashlib
import io
import json
import zlib

import numpy as np

_done = {}      # (name, digest of the data) -> Check, so that each part of a check runs it once


def encode(meta, arrays):
    """Text (base64) of a check's recorded data: `meta` (JSON) and `arrays` (.npz)."""
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return base64.b64encode(zlib.compress(buf.getvalue(), 9)).decode("ascii")


def decode(text):
    raw = zlib.decompress(base64.b64decode(text))
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "__meta__"}
        meta = json.loads(bytes(z["__meta__"]).decode())
    return meta, arrays


def replay(env, name, data, part=None):
    """Run the graded check `name` on its recorded inputs in the namespace `env` (the
    notebook's `globals()`) and compare with its recorded values.  Returns the points, or
    with `part=i` whether part i passed (and prints nothing)."""
    from . import hidden
    from .grade import compare
    from .spec import GradedCheck

    key = (name, hashlib.sha256(data.encode()).hexdigest())
    if key not in _done:
        meta, arrays = decode(data)
        # defined again in every namespace: a tool may hand each test a copy of the notebook's
        # globals and clear it afterwards (doctest does), so nothing may outlive its `env`
        hidden._defining[0] = True
        try:
            exec(compile(meta["source"], f"<hidden tests of {meta['exercise']}>", "exec"), env)  # noqa: S102
        finally:
            hidden._defining[0] = False
        inputs = {k[3:]: v for k, v in arrays.items() if k.startswith("in:")}
        got = hidden.run_check(name, hidden.STUDENT, inputs=inputs)
        chk = GradedCheck(name, meta["points"], meta.get("hint"))
        _done[key] = compare(chk, (meta["header"], {k: v for k, v in arrays.items() if k.startswith("v")}), got)
    c = _done[key]
    if part is not None:
        return bool(c.error is None and part < len(c.parts) and c.parts[part][0])
    from .feedback import _show
    _show(c)
    return c.points
