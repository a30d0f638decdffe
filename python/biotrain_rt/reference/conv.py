"""Conv2d in float64 NumPy, written from the definition

    y[n, co, oh, ow] = b[co] + sum_{ci in group(co), kh, kw}
                       w[co, ci - g*Cig, kh, kw] * xpad[n, ci, oh*sh + kh*dh, ow*sw + kw*dw]

with xpad the input zero-padded by (ph, pw) on each side. Each kernel tap
(kh, kw) is a strided slice of xpad, and the channel sum inside each group is
an einsum; the backward passes are the adjoints of the same slices.
Conv1d is the H = 1 case. Shapes are NCHW; weight [Cout, Cin/groups, KH, KW].
"""
import numpy as np


def _pair(v):
    if np.isscalar(v):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def conv2d_output_size(x_shape, w_shape, stride=1, padding=0, dilation=1):
    """(H_out, W_out) of a conv; raises ValueError when the output would be empty."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    _, _, h, w = x_shape
    _, _, kh, kw = w_shape
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if ho <= 0 or wo <= 0:
        raise ValueError("conv2d: empty output")
    return ho, wo


def _tap(xp, kh, kw, dh, dw, sh, sw, ho, wo):
    """View of the padded input seen by tap (kh, kw): [N, C, Ho, Wo]."""
    h0, w0 = kh * dh, kw * dw
    return xp[:, :, h0:h0 + sh * (ho - 1) + 1:sh, w0:w0 + sw * (wo - 1) + 1:sw]


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """y [N, Cout, Ho, Wo] from x [N, Cin, H, W], w [Cout, Cin/groups, KH, KW], b [Cout] or None."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, cin, _, _ = x.shape
    cout, cig, kh_n, kw_n = w.shape
    g = groups
    assert cin % g == 0 and cout % g == 0 and cig == cin // g
    ho, wo = conv2d_output_size(x.shape, w.shape, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    wg = w.reshape(g, cout // g, cig, kh_n, kw_n)
    y = np.zeros((n, g, cout // g, ho, wo))
    for kh in range(kh_n):
        for kw in range(kw_n):
            t = _tap(xp, kh, kw, dh, dw, sh, sw, ho, wo).reshape(n, g, cig, ho, wo)
            y += np.einsum("ngchw,goc->ngohw", t, wg[:, :, :, kh, kw])
    y = y.reshape(n, cout, ho, wo)
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def conv2d_backward_input(dy, w, x_shape, stride=1, padding=0, dilation=1, groups=1):
    """dx [N, Cin, H, W] = d(sum(y * dy)) / dx: each tap scatters dy back through w."""
    dy = np.asarray(dy, np.float64)
    w = np.asarray(w, np.float64)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, cin, h, wd = x_shape
    cout, cig, kh_n, kw_n = w.shape
    g = groups
    ho, wo = conv2d_output_size(x_shape, w.shape, stride, padding, dilation)
    assert dy.shape == (n, cout, ho, wo)
    dxp = np.zeros((n, cin, h + 2 * ph, wd + 2 * pw))
    dyg = dy.reshape(n, g, cout // g, ho, wo)
    wg = w.reshape(g, cout // g, cig, kh_n, kw_n)
    for kh in range(kh_n):
        for kw in range(kw_n):
            t = _tap(dxp, kh, kw, dh, dw, sh, sw, ho, wo)  # a view: += writes into dxp
            t += np.einsum("ngohw,goc->ngchw", dyg, wg[:, :, :, kh, kw]).reshape(n, cin, ho, wo)
    return dxp[:, :, ph:ph + h, pw:pw + wd].copy()


def conv2d_backward_weight(dy, x, w_shape, stride=1, padding=0, dilation=1, groups=1):
    """(dw [Cout, Cin/groups, KH, KW], db [Cout]) of sum(y * dy)."""
    dy = np.asarray(dy, np.float64)
    x = np.asarray(x, np.float64)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, cin, _, _ = x.shape
    cout, cig, kh_n, kw_n = w_shape
    g = groups
    ho, wo = conv2d_output_size(x.shape, w_shape, stride, padding, dilation)
    assert dy.shape == (n, cout, ho, wo)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dyg = dy.reshape(n, g, cout // g, ho, wo)
    dwg = np.zeros((g, cout // g, cig, kh_n, kw_n))
    for kh in range(kh_n):
        for kw in range(kw_n):
            t = _tap(xp, kh, kw, dh, dw, sh, sw, ho, wo).reshape(n, g, cig, ho, wo)
            dwg[:, :, :, kh, kw] = np.einsum("ngchw,ngohw->goc", t, dyg)
    return dwg.reshape(w_shape), dy.sum(axis=(0, 2, 3))
