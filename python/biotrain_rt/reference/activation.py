"""Activations in float64 NumPy, from their definitions. Backwards take the
forward INPUT x (the derivative as a function of x), except softmax, whose
Jacobian-vector product is naturally written with its output y."""
import numpy as np

GELU_K0 = np.sqrt(2.0 / np.pi)
GELU_K1 = 0.044715


def relu(x):
    return np.maximum(np.asarray(x, np.float64), 0.0)


def relu_backward(dy, x):
    return np.where(np.asarray(x) > 0, np.asarray(dy, np.float64), 0.0)


def elu(x, alpha=1.0):
    x = np.asarray(x, np.float64)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def elu_backward(dy, x, alpha=1.0):
    x = np.asarray(x, np.float64)
    return np.asarray(dy, np.float64) * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0)))


def gelu_tanh(x):
    x = np.asarray(x, np.float64)
    return 0.5 * x * (1.0 + np.tanh(GELU_K0 * (x + GELU_K1 * x ** 3)))


def gelu_tanh_backward(dy, x):
    x = np.asarray(x, np.float64)
    t = np.tanh(GELU_K0 * (x + GELU_K1 * x ** 3))
    d = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_K0 * (1.0 + 3.0 * GELU_K1 * x * x)
    return np.asarray(dy, np.float64) * d


def softmax(x):
    """Over the last axis."""
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(dy, y):
    """J^T dy with J = diag(y) - y y^T, row by row over the last axis."""
    dy, y = np.asarray(dy, np.float64), np.asarray(y, np.float64)
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
