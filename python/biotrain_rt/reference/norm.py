"""GroupNorm and BatchNorm in float64 NumPy, written from the definitions.

Arrays are (n, c, ...) with any number of trailing spatial dims. Statistics
use the biased variance; rstd = 1 / sqrt(var + eps). The backward formulas
are the closed forms of the normalisation's derivative:
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),   g = dy * weight,
the means taken over the normalised block ((sample, group) for GroupNorm,
channel over (n, spatial) for BatchNorm)."""
import numpy as np


def _f64(a):
    return None if a is None else np.asarray(a, np.float64)


def _per_channel(v, ndim):
    """A [c] vector shaped to broadcast against (n, c, ...)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _affine(xhat, weight, bias):
    y = xhat
    if weight is not None:
        y = y * _per_channel(weight, xhat.ndim)
    if bias is not None:
        y = y + _per_channel(bias, xhat.ndim)
    return y


# ------------------------------------------------------------------ groupnorm

def groupnorm_forward(x, weight, bias, groups, eps):
    """(y, mean [n, groups], rstd [n, groups])."""
    x = _f64(x)
    n, c = x.shape[:2]
    assert c % groups == 0
    xb = x.reshape(n, groups, -1)
    mean = xb.mean(axis=2)
    var = ((xb - mean[:, :, None]) ** 2).mean(axis=2)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = ((xb - mean[:, :, None]) * rstd[:, :, None]).reshape(x.shape)
    return _affine(xhat, _f64(weight), _f64(bias)), mean, rstd


def groupnorm_xhat(x, mean, rstd, groups):
    x = _f64(x)
    n = x.shape[0]
    xb = x.reshape(n, groups, -1)
    return ((xb - _f64(mean).reshape(n, groups, 1)) * _f64(rstd).reshape(n, groups, 1)).reshape(x.shape)


def groupnorm_backward(dy, x, mean, rstd, weight, groups):
    """(dx, dweight [c], dbias [c]) given the saved mean and rstd."""
    dy, x = _f64(dy), _f64(x)
    n = x.shape[0]
    xhat = groupnorm_xhat(x, mean, rstd, groups)
    g = dy if weight is None else dy * _per_channel(_f64(weight), x.ndim)
    gb, xb = g.reshape(n, groups, -1), xhat.reshape(n, groups, -1)
    r = _f64(rstd).reshape(n, groups, 1)
    dx = r * (gb - gb.mean(axis=2, keepdims=True) - xb * (gb * xb).mean(axis=2, keepdims=True))
    axes = (0,) + tuple(range(2, x.ndim))
    return dx.reshape(x.shape), (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


# ------------------------------------------------------------------ batchnorm

def _bn_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def batchnorm_forward_train(x, weight, bias, running_mean, running_var, momentum, eps):
    """(y, mean [c], rstd [c], new running_mean or None, new running_var or None).
    The running variance takes the unbiased batch variance (m / (m - 1))."""
    x = _f64(x)
    axes = _bn_axes(x)
    m = x.size // x.shape[1]
    mean = x.mean(axis=axes)
    var = ((x - _per_channel(mean, x.ndim)) ** 2).mean(axis=axes)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - _per_channel(mean, x.ndim)) * _per_channel(rstd, x.ndim)
    rm = None if running_mean is None else (1 - momentum) * _f64(running_mean) + momentum * mean
    rv = None if running_var is None else (1 - momentum) * _f64(running_var) + momentum * var * m / (m - 1)
    return _affine(xhat, _f64(weight), _f64(bias)), mean, rstd, rm, rv


def batchnorm_forward_eval(x, running_mean, running_var, weight, bias, eps):
    x = _f64(x)
    xhat = (x - _per_channel(_f64(running_mean), x.ndim)) / np.sqrt(_per_channel(_f64(running_var), x.ndim) + eps)
    return _affine(xhat, _f64(weight), _f64(bias))


def batchnorm_backward(dy, x, mean, rstd, weight):
    """(dx, dweight [c], dbias [c]) of training-mode BatchNorm."""
    dy, x = _f64(dy), _f64(x)
    axes = _bn_axes(x)
    r = _per_channel(_f64(rstd), x.ndim)
    xhat = (x - _per_channel(_f64(mean), x.ndim)) * r
    g = dy if weight is None else dy * _per_channel(_f64(weight), x.ndim)
    dx = r * (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    return dx, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)
