"""Linear layer in float64 NumPy: y = x @ w.T + b with x [N, in], w [out, in]
(PyTorch layout), b [out] or None."""
import numpy as np


def linear_forward(x, w, b=None):
    y = np.asarray(x, np.float64) @ np.asarray(w, np.float64).T
    if b is not None:
        y = y + np.asarray(b, np.float64)
    return y


def linear_backward_input(dy, w):
    """dx [N, in] = dy @ w."""
    return np.asarray(dy, np.float64) @ np.asarray(w, np.float64)


def linear_backward_weight(dy, x):
    """(dw [out, in] = dy.T @ x, db [out] = sum of dy over the batch)."""
    dy = np.asarray(dy, np.float64)
    return dy.T @ np.asarray(x, np.float64), dy.sum(axis=0)
