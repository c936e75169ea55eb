"""How the parallel loops over (view, face) of the small kernels are cut, per backend.

Measured with Taichi 1.7.4 on the 2-core CPU (docs/architecture.md, "Small kernels on the
CPU"): `ti.ndrange(N, F)` recovers (n, j) from the flat index with an integer division and
a remainder per index, which cost as much as the whole body of binning's small kernels;
an index that runs a serial loop over C consecutive faces pays that once per C.  But the
CPU backend runs a loop of fewer than about a thousand indices on one thread (the
backward at 256 px, 5120 faces, one view, cut in runs of 32 faces: 160 indices, 1.38×
slower), so C shrinks to keep at least MIN_INDICES.  A GPU wants one thread per face.
"""
import taichi as ti

MAX_RUN = 32
MIN_INDICES = 2048


def on_cpu():
    """Taichi runs on the CPU backend (x64 or arm64)."""
    return ti.lang.impl.current_cfg().arch in (ti.x64, ti.arm64)


def chunk(n):
    """Consecutive items (faces) per index of a parallel loop over n (view, face) items:
    1 on a GPU, on the CPU up to MAX_RUN while at least MIN_INDICES indices are left."""
    if not on_cpu():
        return 1
    return max(1, min(MAX_RUN, n // MIN_INDICES))
