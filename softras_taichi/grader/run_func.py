"""`run_func(f, *arrays)`: evaluate a student's `@ti.func` on every row of NumPy arrays.

A `@ti.func` can only be called from a kernel; this builds (and caches) the one kernel
`out[i] = f(a0[i], a1[i], ...)` for the argument shapes at hand, so that a check, a
feedback cell or the grader can test a `@ti.func` from Python.
"""
import numpy as np

_kernels = {}


def _is_ti_func(f):
    return bool(getattr(f, "_is_taichi_function", False)) or type(f).__name__ == "Func"


def run_func(func, *args, out_dim=None):
    """Evaluate the `@ti.func` `func` once per row: `func(args[0][i], args[1][i], ...)`.

    Each argument is a NumPy array of shape (N,) (a scalar per row), (N, k) (a
    k-vector per row) or a Python number (the same for every row).  The result is
    (N,) or, with `out_dim=k`, (N, k); its dtype is the backend's float."""
    import taichi as ti

    from .. import backend

    if not callable(func):
        raise TypeError(f"expected a @ti.func, got {type(func).__name__}")
    if not _is_ti_func(func):
        raise TypeError(f"{getattr(func, '__name__', 'this function')} must be decorated with @ti.func "
                        "(write @ti.func on the line above `def`)")
    backend.ensure_init()
    fp = ti.f64 if backend.current()[1] == "f64" else ti.f32
    npfp = np.float64 if fp == ti.f64 else np.float32
    if not 1 <= len(args) <= 5:
        raise ValueError("run_func takes 1 to 5 arguments after the function")
    n = None
    kinds, values = [], []
    arrays = [a for a in args if np.ndim(a) > 0]
    if not arrays:
        raise ValueError("run_func needs at least one array argument")
    rows = len(arrays[0])
    for a in args:
        if np.ndim(a) == 0:  # a number: the same for every row
            a = np.full(rows, float(a))
        a = np.ascontiguousarray(a, dtype=npfp)
        if a.ndim not in (1, 2):
            raise ValueError(f"run_func arguments must be (N,) or (N, k) arrays, got shape {a.shape}")
        if n is not None and a.shape[0] != n:
            raise ValueError(f"run_func arguments must have the same number of rows, got {n} and {a.shape[0]}")
        n = a.shape[0]
        kinds.append(a.shape[1] if a.ndim == 2 else 0)
        values.append(a)
    key = (id(func), tuple(kinds), out_dim, backend.generation(), fp)
    entry = _kernels.get(key)
    if entry is None or entry[0] is not func:
        entry = _kernels[key] = (func, _make_kernel(func, kinds, out_dim, fp))
    out = np.zeros((n, out_dim) if out_dim else (n,), dtype=npfp)
    entry[1](*values, out)
    return out


def _make_kernel(func, kinds, out_dim, fp):
    """A kernel `k(a0, ..., out)` with out[i] = func(a0[i], ...) (arities 1 to 5)."""
    import taichi as ti

    T = [ti.types.ndarray(dtype=ti.types.vector(k, fp) if k else fp, ndim=1) for k in kinds]
    O = ti.types.ndarray(dtype=ti.types.vector(out_dim, fp) if out_dim else fp, ndim=1)  # noqa: E741
    n = len(kinds)
    if n == 1:
        @ti.kernel
        def k1(a0: T[0], out: O):
            for i in range(out.shape[0]):
                out[i] = func(a0[i])
        return k1
    if n == 2:
        @ti.kernel
        def k2(a0: T[0], a1: T[1], out: O):
            for i in range(out.shape[0]):
                out[i] = func(a0[i], a1[i])
        return k2
    if n == 3:
        @ti.kernel
        def k3(a0: T[0], a1: T[1], a2: T[2], out: O):
            for i in range(out.shape[0]):
                out[i] = func(a0[i], a1[i], a2[i])
        return k3
    if n == 4:
        @ti.kernel
        def k4(a0: T[0], a1: T[1], a2: T[2], a3: T[3], out: O):
            for i in range(out.shape[0]):
                out[i] = func(a0[i], a1[i], a2[i], a3[i])
        return k4

    @ti.kernel
    def k5(a0: T[0], a1: T[1], a2: T[2], a3: T[3], a4: T[4], out: O):
        for i in range(out.shape[0]):
            out[i] = func(a0[i], a1[i], a2[i], a3[i], a4[i])
    return k5
