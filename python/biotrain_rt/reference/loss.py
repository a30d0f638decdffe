"""Softmax cross-entropy (mean over rows, integer labels) and mean squared
error in float64 NumPy."""
import numpy as np


def cross_entropy(logits, labels):
    """(loss, probs): loss = mean over rows of logsumexp(x) - x[label]."""
    x = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    mx = x.max(axis=1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(x - mx).sum(axis=1))
    loss = (lse - x[np.arange(x.shape[0]), labels]).mean()
    probs = np.exp(x - lse[:, None])
    return loss, probs


def cross_entropy_backward(probs, labels, d_loss=1.0):
    """d_logits = d_loss * (probs - onehot(labels)) / n."""
    p = np.asarray(probs, np.float64)
    onehot = np.zeros_like(p)
    onehot[np.arange(p.shape[0]), np.asarray(labels, np.int64)] = 1.0
    return d_loss * (p - onehot) / p.shape[0]


def mse(pred, target):
    d = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
    return (d * d).mean()


def mse_backward(pred, target, d_loss=1.0):
    d = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
    return d_loss * 2.0 * d / d.size
