"""The preconditioned parametrisation of Nicolet et al., "Large Steps in Inverse Rendering
of Geometry" (SIGGRAPH Asia 2021), in NumPy and SciPy.

Optimise u instead of the vertices x, with

    x = (I + λL)⁻¹ u,        L = D − A   the combinatorial Laplacian (degrees minus adjacency)

so that a gradient step on u moves x by (I + λL)⁻¹ times it: a smooth displacement
that spreads over a neighbourhood of about √λ rings, instead of the single vertex the
raw gradient pulls.  The gradient with respect to u is (I + λL)⁻¹ ∂L/∂x (the matrix is
symmetric), one sparse solve per step; the matrix depends only on the faces, so it is
factorised once per mesh.  Steps are taken by `UniformAdam`, Adam whose second moment
is the largest over all parameters, so every vertex moves with one step size and the
smooth direction is kept (largesteps/optimize.py's AdamUniform).

Why it keeps thin parts: with raw offsets, the steps that grow a leg out of a sphere
also fold the small triangles around it, and the regulariser that has to undo the
folds (L_g) then fights the silhouette (the "spikes" in the geometry term); here no
regulariser is needed and a region moves as a whole.
"""
import numpy as np
import scipy.sparse as sparse
from scipy.sparse.linalg import factorized

from .. import losses


def laplacian(faces, num_vertices):
    """The combinatorial Laplacian L = D − A of a triangle mesh, a sparse (V, V) matrix."""
    e = losses.edges(faces)
    i = np.concatenate([e[:, 0], e[:, 1]])
    j = np.concatenate([e[:, 1], e[:, 0]])
    A = sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(num_vertices, num_vertices)).tocsr()
    return sparse.diags(np.asarray(A.sum(axis=1)).ravel()) - A


class LargeSteps:
    """x = (I + λL)⁻¹ u over a mesh with fixed `faces`, starting at `vertices` (u = (I + λL) x)."""

    def __init__(self, vertices, faces, smoothing):
        if not smoothing >= 0:
            raise ValueError(f"smoothing λ must be >= 0, got {smoothing}")
        v = np.asarray(vertices, dtype=np.float64)
        self.smoothing = float(smoothing)
        self.M = (sparse.identity(len(v)) + self.smoothing * laplacian(faces, len(v))).tocsc()
        self._solve = factorized(self.M)
        self.u = self.M @ v

    def solve(self, b):
        """(I + λL)⁻¹ b for (V, 3) b, column by column."""
        return np.stack([self._solve(np.ascontiguousarray(b[:, k])) for k in range(b.shape[1])], axis=1)

    def vertices(self):
        return self.solve(self.u)

    def gradient(self, grad_vertices):
        """∂L/∂u from ∂L/∂x: (I + λL)⁻ᵀ = (I + λL)⁻¹."""
        return self.solve(np.asarray(grad_vertices, dtype=np.float64))


class UniformAdam:
    """Adam on a NumPy array whose step is divided by the largest √v̂ of all entries,
    not each entry's own: one step size for the whole mesh (`per="mesh"`, Nicolet et
    al.'s), or one per vertex (`per="vertex"`: the largest √v̂ of its three
    coordinates, so a vertex keeps its direction but a weakly pulled one, a leg's tip,
    still moves at the full rate).

        m ← β₁ m + (1 − β₁) g,  v ← β₂ v + (1 − β₂) g²,  p ← p − η m̂ / (max √v̂ + ε)
    """

    def __init__(self, shape, lr, betas=(0.9, 0.999), eps=1e-8, per="mesh"):
        if per not in ("mesh", "vertex"):
            raise ValueError(f"per must be 'mesh' or 'vertex', got {per!r}")
        self.m, self.v = np.zeros(shape), np.zeros(shape)
        self.lr, (self.beta1, self.beta2), self.eps, self.per = float(lr), betas, eps, per
        self.t, self.scale = 0, 1.0

    def step(self, p, g):
        """p updated in place from its gradient g."""
        self.t += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * g
        self.v = self.beta2 * self.v + (1 - self.beta2) * g * g
        m = self.m / (1 - self.beta1 ** self.t)
        v = self.v / (1 - self.beta2 ** self.t)
        rms = np.sqrt(v.max()) if self.per == "mesh" else np.sqrt(v.max(axis=1, keepdims=True))
        p -= self.scale * self.lr * m / (rms + self.eps)
