"""Taichi fields a job borrows and gives back, so that the next job of the same sizes compiles nothing.

Taichi compiles a kernel once for every field it is handed as a `ti.template()`
argument (its `from_numpy`, `fill` and `to_numpy` too), and frees no field before
`ti.reset()`.  A fit that built its scene, optimiser and losses from fresh fields
therefore compiled ~50 small kernels again each time it ran and left ~17 MB behind:
a 50-step fit of 12 views × 48 px took 4.3 s in a warm process, 1.35 s with borrowed
fields (docs/architecture.md, "Compile once").  Inside

    with fields.borrowed():
        ...  # every field made with fields.scalar / fields.vector

fields come from a pool of earlier fields of the same kind, shape and gradient flag,
zeroed (values and gradients) as a new field is, and go back to the pool when the
block ends.  Outside a block these functions make a fresh field, so a user's own
`Scene` or optimiser owns its fields.  Only code that keeps no field after the block
may borrow: `fit.reconstruct` and `fit.fit_pose`, whose results are NumPy arrays.
"""
import collections
import contextlib
import functools

import taichi as ti

from . import backend

_free = collections.defaultdict(list)  # key -> fields not in use
_open = []                             # one list of (key, field) per open `borrowed()` block


def _key(n, dtype, shape, needs_grad):
    cfg = ti.lang.impl.current_cfg()
    if dtype is float:
        dtype = cfg.default_fp
    elif dtype is int:
        dtype = cfg.default_ip
    shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    return n, dtype, shape, bool(needs_grad)


def _make(key):
    n, dtype, shape, needs_grad = key
    if n is None:
        return ti.field(dtype, shape=shape, needs_grad=needs_grad)
    return ti.Vector.field(n, dtype, shape=shape, needs_grad=needs_grad)


def _get(key):
    if not _open:
        return _make(key)
    if _free[key]:
        f = _free[key].pop()
        f.fill(0)
        if key[3]:
            f.grad.fill(0)
    else:
        f = _make(key)
    _open[-1].append((key, f))
    return f


def scalar(dtype, shape, needs_grad=False):
    """`ti.field(dtype, shape, needs_grad)`, from the pool inside a `borrowed()` block."""
    return _get(_key(None, dtype, shape, needs_grad))


def vector(n, dtype, shape, needs_grad=False):
    """`ti.Vector.field(n, dtype, shape, needs_grad)`, from the pool inside a `borrowed()` block."""
    return _get(_key(int(n), dtype, shape, needs_grad))


@contextlib.contextmanager
def borrowed():
    """Fields made in this block come from the pool and return to it when the block ends."""
    backend.ensure_init()
    _open.append([])
    try:
        yield
    finally:
        # (sr.init() in the block emptied the list of what the old program lent: _release_all)
        for key, f in reversed(_open.pop()):  # so the next job pops them in the order this one
            _free[key].append(f)              # made them, and each kernel meets the same fields


def borrowing(fn):
    """Decorator: `fn` runs inside `borrowed()` (it must return no field)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with borrowed():
            return fn(*args, **kwargs)
    return run


def pooled():
    """How many fields wait in the pool (for tests)."""
    return sum(len(v) for v in _free.values())


def _release_all():  # before ti.reset frees every field
    _free.clear()
    for lent in _open:
        lent.clear()


backend._before_reset.append(_release_all)
