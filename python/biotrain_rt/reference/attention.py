"""Multi-head self-attention in float64 NumPy, written from the math.

x [N, S, D] (N samples of S tokens of D features), H heads of hd = D / H:

    qkv = x @ w_qkv.T + b_qkv            w_qkv [3D, D]: rows q, then k, then v
    q, k = rope(q), rope(k)              optional, per head: pair (2i, 2i+1) of
                                         token t rotated by t * base^(-2i/hd)
    P_h = softmax(q_h @ k_h.T / sqrt(hd)) over the keys
    O = concat_h(P_h @ v_h)              [N, S, D]
    y = O @ w_o.T + b_o

The backward is the textbook one over the whole P (no recomputation): it is
what the C core's one-head-at-a-time backward must agree with.
"""
import numpy as np

ROPE_BASE = 10000.0


def rope_angles(S, hd, base=ROPE_BASE):
    """[S, hd/2] angles: token t, pair i -> t * base^(-2i/hd)."""
    i = np.arange(hd // 2, dtype=np.float64)
    theta = base ** (-2.0 * i / hd)
    return np.arange(S, dtype=np.float64)[:, None] * theta[None, :]


def rope(x, angles, inverse=False):
    """Rotates pairs (2i, 2i+1) of the last axis of x [..., S, hd] by
    angles [S, hd/2]; inverse: by minus the angles (the transpose, which is
    also the gradient through the rotation)."""
    c, s = np.cos(angles), np.sin(angles)
    if inverse:
        s = -s
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def _heads(t, H):
    """[N, S, D] -> [N, H, S, hd]."""
    N, S, D = t.shape
    return t.reshape(N, S, H, D // H).transpose(0, 2, 1, 3)


def _merge(t):
    """[N, H, S, hd] -> [N, S, D]."""
    N, H, S, hd = t.shape
    return t.transpose(0, 2, 1, 3).reshape(N, S, H * hd)


def mhsa_forward(x, w_qkv, b_qkv, w_o, b_o, heads, rope_on=False):
    """(y [N, S, D], cache for mhsa_backward)."""
    x = np.asarray(x, np.float64)
    N, S, D = x.shape
    H, hd = heads, D // heads
    qkv = x @ np.asarray(w_qkv, np.float64).T
    if b_qkv is not None:
        qkv = qkv + np.asarray(b_qkv, np.float64)
    q, k, v = (_heads(qkv[..., j * D:(j + 1) * D], H) for j in range(3))
    ang = rope_angles(S, hd)
    if rope_on:
        q, k = rope(q, ang), rope(k, ang)
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    p = e / e.sum(axis=-1, keepdims=True)
    o = _merge(p @ v)
    y = o @ np.asarray(w_o, np.float64).T
    if b_o is not None:
        y = y + np.asarray(b_o, np.float64)
    cache = dict(x=x, q=q, k=k, v=v, p=p, o=o, w_qkv=np.asarray(w_qkv, np.float64),
                 w_o=np.asarray(w_o, np.float64), H=H, hd=hd, ang=ang, rope=rope_on,
                 has_bqkv=b_qkv is not None, has_bo=b_o is not None)
    return y, cache


def mhsa_backward(dy, cache):
    """(dx, dw_qkv, db_qkv or None, dw_o, db_o or None) from dy [N, S, D]."""
    c = cache
    dy = np.asarray(dy, np.float64)
    N, S, D = dy.shape
    hd = c["hd"]
    dw_o = np.einsum("nse,nsd->ed", dy, c["o"])
    db_o = dy.sum(axis=(0, 1)) if c["has_bo"] else None
    do = _heads(dy @ c["w_o"], c["H"])                    # [N, H, S, hd]
    p, q, k, v = c["p"], c["q"], c["k"], c["v"]
    dv = p.transpose(0, 1, 3, 2) @ do
    dp = do @ v.transpose(0, 1, 3, 2)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) / np.sqrt(hd)   # softmax backward, then the scale
    dq = ds @ k
    dk = ds.transpose(0, 1, 3, 2) @ q
    if c["rope"]:
        dq, dk = rope(dq, c["ang"], inverse=True), rope(dk, c["ang"], inverse=True)
    dqkv = np.concatenate([_merge(dq), _merge(dk), _merge(dv)], axis=-1)  # [N, S, 3D]
    dx = dqkv @ c["w_qkv"]
    dw_qkv = np.einsum("nso,nsi->oi", dqkv, c["x"])
    db_qkv = dqkv.sum(axis=(0, 1)) if c["has_bqkv"] else None
    return dx, dw_qkv, db_qkv, dw_o, db_o
