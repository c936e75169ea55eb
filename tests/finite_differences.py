"""Central differences, shared by every gradient test."""
import numpy as np


def central_differences(f, x, h=1e-6):
    """∂f/∂x for a scalar function f of the array x (any shape), step h."""
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (f(xp) - f(xm)) / (2 * h)
    return g
