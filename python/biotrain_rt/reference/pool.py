"""2-D pooling and global average pooling in float64 NumPy, NCHW.

Output size uses floor (ceil_mode=False); padding is at most half the window.
Average pooling divides by KH*KW, counting padded zeros (count_include_pad=True).
Max pooling ignores padding; its argmax is the flat index ih * W + iw of the
window's first maximum in (kh, kw) scan order, inside the (sample, channel) plane.
"""
import numpy as np


def _pair(v):
    if np.isscalar(v):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def pool2d_output_size(x_shape, kernel_size, stride=None, padding=0):
    (kh, kw) = _pair(kernel_size)
    (sh, sw) = _pair(kernel_size if stride is None else stride)
    (ph, pw) = _pair(padding)
    _, _, h, w = x_shape
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError("pool2d: padding larger than half the window")
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if ho <= 0 or wo <= 0:
        raise ValueError("pool2d: empty output")
    return ho, wo


def _params(x_shape, kernel_size, stride, padding):
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    ho, wo = pool2d_output_size(x_shape, kernel_size, stride, padding)
    return kh, kw, sh, sw, ph, pw, ho, wo


def _tap(xp, kh, kw, sh, sw, ho, wo):
    return xp[:, :, kh:kh + sh * (ho - 1) + 1:sh, kw:kw + sw * (wo - 1) + 1:sw]


def avgpool2d_forward(x, kernel_size, stride=None, padding=0):
    x = np.asarray(x, np.float64)
    kh_n, kw_n, sh, sw, ph, pw, ho, wo = _params(x.shape, kernel_size, stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros(x.shape[:2] + (ho, wo))
    for kh in range(kh_n):
        for kw in range(kw_n):
            y += _tap(xp, kh, kw, sh, sw, ho, wo)
    return y / (kh_n * kw_n)


def avgpool2d_backward(dy, x_shape, kernel_size, stride=None, padding=0):
    dy = np.asarray(dy, np.float64)
    kh_n, kw_n, sh, sw, ph, pw, ho, wo = _params(x_shape, kernel_size, stride, padding)
    n, c, h, w = x_shape
    assert dy.shape == (n, c, ho, wo)
    dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    for kh in range(kh_n):
        for kw in range(kw_n):
            _tap(dxp, kh, kw, sh, sw, ho, wo)[...] += dy / (kh_n * kw_n)
    return dxp[:, :, ph:ph + h, pw:pw + w].copy()


def maxpool2d_forward(x, kernel_size, stride=None, padding=0):
    """(y [N, C, Ho, Wo], argmax [N, C, Ho, Wo] int64 flat indices ih * W + iw)."""
    x = np.asarray(x, np.float64)
    kh_n, kw_n, sh, sw, ph, pw, ho, wo = _params(x.shape, kernel_size, stride, padding)
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    y = np.full((n, c, ho, wo), -np.inf)
    arg = np.full((n, c, ho, wo), -1, np.int64)
    oh = np.arange(ho)[:, None]
    ow = np.arange(wo)[None, :]
    for kh in range(kh_n):
        for kw in range(kw_n):
            t = _tap(xp, kh, kw, sh, sw, ho, wo)
            ih = oh * sh - ph + kh
            iw = ow * sw - pw + kw
            inside = (ih >= 0) & (ih < h) & (iw >= 0) & (iw < w)
            better = (t > y) & inside  # strict: the first maximum in scan order wins
            y = np.where(better, t, y)
            arg = np.where(better, ih * w + iw, arg)
    return y, arg


def maxpool2d_backward(dy, argmax, x_shape):
    """dx: each output gradient goes to its window's argmax (summed where windows overlap)."""
    dy = np.asarray(dy, np.float64)
    n, c, h, w = x_shape
    dx = np.zeros((n * c, h * w))
    planes = np.repeat(np.arange(n * c), dy[0, 0].size)
    np.add.at(dx, (planes, np.asarray(argmax).reshape(-1)), dy.reshape(-1))
    return dx.reshape(x_shape)


def global_avgpool_forward(x):
    """x [N, C, *spatial] -> y [N, C]: the mean over all spatial positions."""
    x = np.asarray(x, np.float64)
    return x.reshape(x.shape[0], x.shape[1], -1).mean(axis=2)


def global_avgpool_backward(dy, x_shape):
    dy = np.asarray(dy, np.float64)
    hw = int(np.prod(x_shape[2:]))
    return np.broadcast_to((dy / hw).reshape(dy.shape + (1,) * (len(x_shape) - 2)), x_shape).copy()
