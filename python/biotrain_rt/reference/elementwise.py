"""Residual add and gradient accumulation in float64 NumPy."""
import numpy as np


def add(a, b):
    return np.asarray(a, np.float64) + np.asarray(b, np.float64)


def add_backward(dy):
    """(da, db): the gradient reaches both summands unchanged."""
    dy = np.asarray(dy, np.float64)
    return dy.copy(), dy.copy()


def accumulate(acc, x):
    return np.asarray(acc, np.float64) + np.asarray(x, np.float64)
