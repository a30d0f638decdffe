"""Token sequences in NumPy, from the math (float64): LayerNorm over the last
axis, exact GELU, tokens from a feature map, positional embedding, mean and
sequence pooling over tokens, drop-path. A sequence is [n, 1, S, D] (or
[n, S, D])."""
import math

import numpy as np

from . import dropout as _dropout


def layernorm_forward(x, weight, bias, eps):
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    y = (x - mean) * rstd
    if weight is not None:
        y = y * np.asarray(weight, np.float64) + np.asarray(bias, np.float64)
    return y, mean[..., 0], rstd[..., 0]


def layernorm_backward(dy, x, weight, eps):
    """(dx, dweight, dbias) of y = xhat * weight + bias, xhat over the last axis."""
    dy, x = np.asarray(dy, np.float64), np.asarray(x, np.float64)
    _, mean, rstd = layernorm_forward(x, None, None, eps)
    xhat = (x - mean[..., None]) * rstd[..., None]
    g = dy * (np.asarray(weight, np.float64) if weight is not None else 1.0)
    d = x.shape[-1]
    dx = rstd[..., None] / d * (d * g - g.sum(-1, keepdims=True) - xhat * (g * xhat).sum(-1, keepdims=True))
    axes = tuple(range(dy.ndim - 1))
    return dx, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


_erf = np.vectorize(math.erf)


def gelu_erf(x):
    x = np.asarray(x, np.float64)
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def gelu_erf_backward(dy, x):
    x = np.asarray(x, np.float64)
    cdf = 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return np.asarray(dy, np.float64) * (cdf + x * pdf)


def tokens_forward(x):
    """[n, C, H, W] -> [n, 1, H*W, C]."""
    x = np.asarray(x, np.float64)
    n, c = x.shape[:2]
    return x.reshape(n, c, -1).transpose(0, 2, 1)[:, None]


def tokens_backward(dy, x_shape):
    dy = np.asarray(dy, np.float64).reshape(x_shape[0], -1, x_shape[1])
    return dy.transpose(0, 2, 1).reshape(x_shape)


def token_mean_forward(x):
    return np.asarray(x, np.float64).mean(axis=-2, keepdims=True)


def token_mean_backward(dy, x_shape):
    s = x_shape[-2]
    return np.broadcast_to(np.asarray(dy, np.float64) / s, x_shape).copy()


def seq_pool_forward(x, w, b):
    """x [n, 1, S, D], w [1, D], b [1] -> (y [n, 1, 1, D], a [n, S])."""
    x = np.asarray(x, np.float64)[:, 0]
    z = x @ np.asarray(w, np.float64).reshape(-1) + float(np.asarray(b).reshape(-1)[0])
    z = z - z.max(axis=1, keepdims=True)
    a = np.exp(z)
    a /= a.sum(axis=1, keepdims=True)
    y = np.einsum("ns,nsd->nd", a, x)
    return y[:, None, None, :], a


def seq_pool_backward(dy, x, w, b):
    """(dx, dw, db)."""
    y, a = seq_pool_forward(x, w, b)
    x = np.asarray(x, np.float64)[:, 0]
    dy = np.asarray(dy, np.float64).reshape(x.shape[0], -1)
    da = x @ dy[:, :, None]                     # [n, S, 1]
    da = da[..., 0]
    dz = a * (da - (a * da).sum(axis=1, keepdims=True))
    dx = a[:, :, None] * dy[:, None, :] + dz[:, :, None] * np.asarray(w, np.float64).reshape(1, 1, -1)
    dw = np.einsum("ns,nsd->d", dz, x)
    return dx[:, None], dw.reshape(1, -1), np.array([dz.sum()])


def drop_path_keep(n, p, rng):
    """uint8 [n]: one draw per sample, dropout's integer rule."""
    u = rng.next_u32_array(n)
    return ((u >> np.uint32(8)) >= _dropout.threshold(p)).astype(np.uint8)


def drop_path_forward(x, keep, p):
    p = float(np.float32(p))
    x = np.asarray(x, np.float64)
    return x * np.asarray(keep, np.float64).reshape((-1,) + (1,) * (x.ndim - 1)) / (1.0 - p)
