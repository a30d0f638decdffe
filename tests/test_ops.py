"""The op test: one table, one row per op of the C op table, run through the
op's own descriptor (``_core.op_call``: the adapters the executor calls) in
every number format the op has.

* float32: forward, input gradient and weight gradient against the NumPy
  reference written from the math (``biotrain_rt.reference``), and both
  gradients against central finite differences of the C forward itself.
* fixed point: forward and both gradients bit for bit against the integer
  reference (``biotrain_rt.reference.fixed``), saturation counts included.

A new op is a row here: ``test_every_op_has_a_row`` fails until it has one.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import pytest

from biotrain_rt import _core
from biotrain_rt.reference import activation as ra
from biotrain_rt.reference import attention as rat
from biotrain_rt.reference import conv as rc
from biotrain_rt.reference import dropout as rd
from biotrain_rt.reference import elementwise as re_
from biotrain_rt.reference import fixed as q
from biotrain_rt.reference import linear as rl
from biotrain_rt.reference import norm as rn
from biotrain_rt.reference import pool as rp
from biotrain_rt.reference import sequence as rs

OPS = {o["name"]: o for o in _core.op_table()}


@dataclass
class Row:
    kind: str
    shapes: List[tuple]                  # input shapes (rows, c, h, w)
    opts: Dict = field(default_factory=dict)
    params: List[tuple] = field(default_factory=list)   # parameter shapes
    n_trainable: Optional[int] = None
    # float32 reference: (inputs, params, opts) -> out; (inputs, params, dout, opts) -> (dins, dparams)
    fwd: Optional[Callable] = None
    bwd: Optional[Callable] = None
    fd: bool = True                      # finite differences apply (deterministic and smooth enough)
    id: str = ""


def _conv_opts(c_out, k, stride=(1, 1), pad=(0, 0), dil=(1, 1), groups=1, bias=1):
    return dict(c_out=c_out, k_h=k[0], k_w=k[1], stride_h=stride[0], stride_w=stride[1], pad_h=pad[0],
                pad_w=pad[1], dil_h=dil[0], dil_w=dil[1], groups=groups, has_bias=bias)


def _conv_args(o):
    return dict(stride=(o["stride_h"], o["stride_w"]), padding=(o["pad_h"], o["pad_w"]),
                dilation=(o["dil_h"], o["dil_w"]), groups=o["groups"])


def _pool_opts(k, stride, pad=(0, 0)):
    return dict(k_h=k[0], k_w=k[1], stride_h=stride[0], stride_w=stride[1], pad_h=pad[0], pad_w=pad[1])


def _pool_args(o):
    return dict(kernel_size=(o["k_h"], o["k_w"]), stride=(o["stride_h"], o["stride_w"]),
                padding=(o["pad_h"], o["pad_w"]))


def _conv_fwd(x, p, o):
    return rc.conv2d_forward(x[0], p[0], p[1] if len(p) > 1 else None, **_conv_args(o))


def _conv_bwd(x, p, dy, o):
    dx = rc.conv2d_backward_input(dy, p[0], x[0].shape, **_conv_args(o))
    g = rc.conv2d_backward_weight(dy, x[0], p[0].shape, **_conv_args(o))
    g = list(g) if isinstance(g, tuple) else [g]
    return [dx], g[:len(p)]


def _flat(a):
    return a.reshape(a.shape[0], -1)


def _linear_fwd(x, p, o):
    return rl.linear_forward(_flat(x[0]), p[0], p[1] if len(p) > 1 else None)


def _linear_bwd(x, p, dy, o):
    dy = _flat(dy)
    g = rl.linear_backward_weight(dy, _flat(x[0]))
    g = list(g) if isinstance(g, tuple) else [g]
    return [rl.linear_backward_input(dy, p[0]).reshape(x[0].shape)], g[:len(p)]


def _gn_fwd(x, p, o):
    return rn.groupnorm_forward(x[0], p[0], p[1], o["groups"], o["eps"])[0]


def _gn_bwd(x, p, dy, o):
    _, mean, rstd = rn.groupnorm_forward(x[0], p[0], p[1], o["groups"], o["eps"])
    dx, dg, db = rn.groupnorm_backward(dy, x[0], mean, rstd, p[0], o["groups"])
    return [dx], [dg, db]


def _bn_fwd(x, p, o):
    return rn.batchnorm_forward_train(x[0], p[0], p[1], p[2], p[3], o["momentum"], o["eps"])[0]


def _bn_bwd(x, p, dy, o):
    _, mean, rstd, _, _ = rn.batchnorm_forward_train(x[0], p[0], p[1], p[2], p[3], o["momentum"], o["eps"])
    dx, dg, db = rn.batchnorm_backward(dy, x[0], mean, rstd, p[0])
    return [dx], [dg, db]


def _mhsa_params(p, o):
    """(w_qkv, b_qkv, w_o, b_o) from the slots present (biases may be absent)."""
    p = list(p)
    w_qkv = p.pop(0)
    b_qkv = p.pop(0) if o["qkv_bias"] else None
    w_o = p.pop(0)
    b_o = p.pop(0) if o["out_bias"] else None
    return w_qkv, b_qkv, w_o, b_o


def _mhsa_fwd(x, p, o):
    n, _, S, D = x[0].shape
    y, _ = rat.mhsa_forward(x[0].reshape(n, S, D), *_mhsa_params(p, o), o["heads"], bool(o["rope"]))
    return y.reshape(x[0].shape)


def _mhsa_bwd(x, p, dy, o):
    n, _, S, D = x[0].shape
    _, cache = rat.mhsa_forward(x[0].reshape(n, S, D), *_mhsa_params(p, o), o["heads"], bool(o["rope"]))
    dx, dwq, dbq, dwo, dbo = rat.mhsa_backward(dy.reshape(n, S, D), cache)
    return [dx.reshape(x[0].shape)], [g for g in (dwq, dbq, dwo, dbo) if g is not None]


def _mhsa_row(S, D, heads, qkv_bias=1, out_bias=1, rope=0, keep_probs=0, rows=2):
    params = [(3 * D, D)] + ([(3 * D,)] if qkv_bias else []) + [(D, D)] + ([(D,)] if out_bias else [])
    opts = dict(heads=heads, qkv_bias=qkv_bias, out_bias=out_bias, rope=rope, keep_probs=keep_probs)
    name = f"mhsa-S{S}-D{D}-H{heads}" + ("-rope" if rope else "") + ("-keep" if keep_probs else "") + \
        ("" if qkv_bias else "-noqkvb") + ("" if out_bias else "-noob")
    return Row("mhsa", [(rows, 1, S, D)], opts, params, None, _mhsa_fwd, _mhsa_bwd, id=name)


def _unary(f, b):
    return (lambda x, p, o: f(x[0], o)), (lambda x, p, dy, o: ([b(dy, x[0], o)], []))


ROWS = [
    Row("conv2d", [(2, 3, 5, 9)], _conv_opts(4, (3, 3), pad=(1, 1)), [(4, 3, 3, 3), (4,)], None, _conv_fwd, _conv_bwd,
        id="conv2d-dense"),
    Row("conv2d", [(2, 4, 3, 11)], _conv_opts(6, (1, 3), stride=(1, 2), pad=(0, 2), dil=(1, 2), groups=2, bias=0),
        [(6, 2, 1, 3)], None, _conv_fwd, _conv_bwd, id="conv2d-grouped-dilated-strided"),
    Row("conv2d", [(2, 4, 1, 7)], _conv_opts(4, (1, 3), pad=(0, 1), groups=4), [(4, 1, 1, 3), (4,)], None,
        _conv_fwd, _conv_bwd, id="conv2d-depthwise"),
    Row("linear", [(3, 2, 1, 6)], dict(out_f=5, has_bias=1), [(5, 12), (5,)], None, _linear_fwd, _linear_bwd),
    Row("groupnorm", [(2, 4, 1, 6)], dict(groups=2, affine=1, eps=1e-5), [(4,), (4,)], None, _gn_fwd, _gn_bwd),
    Row("batchnorm", [(4, 3, 1, 5)], dict(momentum=0.1, eps=1e-5, affine=1), [(3,), (3,), (3,), (3,)], 2,
        _bn_fwd, _bn_bwd),
    Row("relu", [(2, 3, 1, 8)], {}, [], None, *_unary(lambda x, o: ra.relu(x), lambda dy, x, o: ra.relu_backward(dy, x))),
    Row("elu", [(2, 3, 1, 8)], dict(alpha=0.7), [], None,
        *_unary(lambda x, o: ra.elu(x, o["alpha"]), lambda dy, x, o: ra.elu_backward(dy, x, o["alpha"]))),
    Row("gelu", [(2, 3, 1, 8)], dict(exact=0), [], None,
        *_unary(lambda x, o: ra.gelu_tanh(x), lambda dy, x, o: ra.gelu_tanh_backward(dy, x)), id="gelu-tanh"),
    Row("gelu", [(2, 3, 1, 40)], dict(exact=1), [], None,
        *_unary(lambda x, o: rs.gelu_erf(x), lambda dy, x, o: rs.gelu_erf_backward(dy, x)), id="gelu-erf"),
    Row("avgpool2d", [(2, 3, 4, 9)], _pool_opts((2, 3), (2, 2), (0, 1)), [], None,
        *_unary(lambda x, o: rp.avgpool2d_forward(x, **_pool_args(o)),
                lambda dy, x, o: rp.avgpool2d_backward(dy, x.shape, **_pool_args(o)))),
    Row("maxpool2d", [(2, 3, 4, 9)], _pool_opts((2, 3), (2, 3)), [], None,
        lambda x, p, o: rp.maxpool2d_forward(x[0], **_pool_args(o))[0],
        lambda x, p, dy, o: ([rp.maxpool2d_backward(dy, rp.maxpool2d_forward(x[0], **_pool_args(o))[1],
                                                    x[0].shape)], [])),
    Row("global_avgpool", [(2, 3, 2, 5)], {}, [], None,
        lambda x, p, o: rp.global_avgpool_forward(x[0]).reshape(x[0].shape[0], -1, 1, 1),
        lambda x, p, dy, o: ([rp.global_avgpool_backward(dy.reshape(dy.shape[:2]), x[0].shape)], [])),
    Row("add", [(2, 3, 1, 6), (2, 3, 1, 6)], {}, [], None, lambda x, p, o: re_.add(x[0], x[1]),
        lambda x, p, dy, o: ([dy, dy], [])),
    Row("flatten", [(2, 3, 2, 4)], {}, [], None, lambda x, p, o: x[0].reshape(x[0].shape[0], -1, 1, 1),
        lambda x, p, dy, o: ([dy.reshape(x[0].shape)], [])),
    Row("dropout", [(2, 3, 1, 40)], dict(p=0.3), [], None,
        lambda x, p, o: rd.dropout_forward(x[0], rd.dropout_mask(x[0].size, o["p"], rd.PCG32(5, 0x62696F7472)),
                                           o["p"]),
        lambda x, p, dy, o: ([rd.dropout_backward(dy, rd.dropout_mask(x[0].size, o["p"],
                                                                      rd.PCG32(5, 0x62696F7472)), o["p"])], [])),
]



def _ln_fwd(x, p, o):
    return rs.layernorm_forward(x[0], p[0], p[1], o["eps"])[0]


def _ln_bwd(x, p, dy, o):
    dx, dw, db = rs.layernorm_backward(dy, x[0], p[0], o["eps"])
    return [dx], [dw, db]


def _tl_fwd(x, p, o):
    return np.asarray(x[0], np.float64) @ np.asarray(p[0], np.float64).T + (p[1] if len(p) > 1 else 0.0)


def _tl_bwd(x, p, dy, o):
    x0 = np.asarray(x[0], np.float64)
    flat_dy, flat_x = dy.reshape(-1, dy.shape[-1]), x0.reshape(-1, x0.shape[-1])
    g = [flat_dy.T @ flat_x]
    if len(p) > 1:
        g.append(flat_dy.sum(axis=0))
    return [dy @ np.asarray(p[0], np.float64)], g


def _sp_bwd(x, p, dy, o):
    dx, dw, db = rs.seq_pool_backward(dy, x[0], p[0], p[1])
    return [dx], [dw, db]


def _dp_keep(x, o):
    return rs.drop_path_keep(x.shape[0], o["p"], rd.PCG32(5, 0x62696F7472))


ROWS += [
    Row("layernorm", [(2, 1, 5, 12)], dict(affine=1, eps=1e-5), [(12,), (12,)], None, _ln_fwd, _ln_bwd),
    Row("layernorm", [(3, 2, 3, 7)], dict(affine=1, eps=1e-6), [(7,), (7,)], None, _ln_fwd, _ln_bwd,
        id="layernorm-rows"),
    Row("softmax", [(2, 1, 4, 9)], {}, [], None,
        *_unary(lambda x, o: ra.softmax(x.reshape(-1, x.shape[-1])).reshape(x.shape),
                lambda dy, x, o: ra.softmax_backward(dy.reshape(-1, x.shape[-1]),
                                                     ra.softmax(x.reshape(-1, x.shape[-1]))).reshape(x.shape))),
    Row("token_linear", [(2, 1, 5, 6)], dict(out_f=4, has_bias=1), [(4, 6), (4,)], None, _tl_fwd, _tl_bwd),
    Row("token_linear", [(2, 1, 3, 6)], dict(out_f=7, has_bias=0), [(7, 6)], None, _tl_fwd, _tl_bwd,
        id="token_linear-nobias"),
    Row("tokens", [(2, 5, 3, 4)], {}, [], None, lambda x, p, o: rs.tokens_forward(x[0]),
        lambda x, p, dy, o: ([rs.tokens_backward(dy, x[0].shape)], [])),
    Row("pos_embed", [(3, 1, 4, 5)], {}, [(4, 5)], None, lambda x, p, o: np.asarray(x[0], np.float64) + p[0],
        lambda x, p, dy, o: ([dy], [dy.sum(axis=0)])),
    Row("token_mean", [(2, 1, 6, 5)], {}, [], None, lambda x, p, o: rs.token_mean_forward(x[0]),
        lambda x, p, dy, o: ([rs.token_mean_backward(dy, x[0].shape)], [])),
    Row("seq_pool", [(2, 1, 6, 5)], {}, [(1, 5), (1,)], None, lambda x, p, o: rs.seq_pool_forward(x[0], p[0], p[1])[0],
        _sp_bwd),
    Row("drop_path", [(8, 1, 3, 4)], dict(p=0.4), [], None,
        lambda x, p, o: rs.drop_path_forward(x[0], _dp_keep(x[0], o), o["p"]),
        lambda x, p, dy, o: ([rs.drop_path_forward(dy, _dp_keep(x[0], o), o["p"])], [])),
]
ROWS += [
    _mhsa_row(5, 8, 2),
    _mhsa_row(4, 6, 1, qkv_bias=0, out_bias=0),
    _mhsa_row(6, 8, 2, qkv_bias=0, out_bias=1, rope=1),
    _mhsa_row(7, 12, 3, rope=1, keep_probs=1),
    _mhsa_row(9, 8, 4, qkv_bias=1, out_bias=0, rope=1, rows=3),
]
ROW_IDS = [r.id or r.kind for r in ROWS]


def test_every_op_has_a_row():
    """Every op of the C op table (but the graph's input) has a row in this table."""
    assert set(OPS) - {"input"} <= {r.kind for r in ROWS}, set(OPS) - {r.kind for r in ROWS}


def _data(row, rng):
    # values away from relu's kink and from maxpool ties, so finite differences are clean
    xs = []
    for s in row.shapes:
        v = rng.uniform(0.2, 1.5, s) * rng.choice([-1.0, 1.0], s)
        xs.append(v.astype(np.float32))
    ps = [rng.standard_normal(s).astype(np.float32) * 0.5 for s in row.params]
    if row.kind == "batchnorm":
        ps[3] = np.abs(ps[3]) + 0.5   # a variance
    return xs, ps


def _call(row, xs, ps, phase, **kw):
    return _core.op_call(row.kind, xs, row.opts, "float32", phase, ps, seed=5, **kw)


# ------------------------------------------------------------ float32
@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_float32_against_reference(row):
    rng = np.random.default_rng(0)
    xs, ps = _data(row, rng)
    f = _call(row, xs, ps, "forward")
    out = f["out"]
    ref = np.asarray(row.fwd(xs, ps, row.opts), np.float64).reshape(out.shape)
    np.testing.assert_allclose(out, ref, rtol=2e-5, atol=2e-5)
    dy = rng.standard_normal(out.shape).astype(np.float32)
    dins, dps = row.bwd(xs, ps, dy.astype(np.float64), row.opts)
    for k in range(len(xs)):
        b = _call(row, xs, ps, "backward_input", out=out, dout=dy, saved=f["saved"], slot=k)
        np.testing.assert_allclose(b["din"], np.asarray(dins[k]).reshape(xs[k].shape), rtol=2e-4, atol=2e-5)
    if OPS[row.kind]["has_backward_weight"] and ps:
        w = _call(row, xs, ps, "backward_weight", out=out, dout=dy, saved=f["saved"])
        assert len(w["pgrad"]) == (row.n_trainable if row.n_trainable is not None else len(ps))
        for g, r in zip(w["pgrad"], dps):
            np.testing.assert_allclose(g, np.asarray(r).reshape(-1), rtol=2e-4, atol=2e-4)
        # backward accumulates with +=: a second call onto the first's result doubles it
        w2 = _call(row, xs, ps, "backward_weight", out=out, dout=dy, saved=f["saved"], pgrad=w["pgrad"])
        for g, g2 in zip(w["pgrad"], w2["pgrad"]):
            np.testing.assert_allclose(g2, 2 * g, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("row", [r for r in ROWS if r.fd], ids=[i for r, i in zip(ROWS, ROW_IDS) if r.fd])
def test_float32_gradients_against_finite_differences(row):
    """d/dv sum(forward * R) at a few coordinates of every input and trainable
    parameter, by central differences of the C forward, against the backward."""
    rng = np.random.default_rng(1)
    xs, ps = _data(row, rng)
    f = _call(row, xs, ps, "forward")
    R = rng.standard_normal(f["out"].shape).astype(np.float32)

    def loss(xs_, ps_):
        return float(np.sum(_call(row, xs_, ps_, "forward")["out"].astype(np.float64) * R))

    eps = 1e-2
    checks = []
    for k in range(len(xs)):
        g = _call(row, xs, ps, "backward_input", out=f["out"], dout=R, saved=f["saved"], slot=k)["din"]
        checks.append(("input", k, xs, g))
    if OPS[row.kind]["has_backward_weight"] and ps:
        pg = _call(row, xs, ps, "backward_weight", out=f["out"], dout=R, saved=f["saved"])["pgrad"]
        for k, g in enumerate(pg):
            checks.append(("param", k, ps, g))
    for what, k, arrs, g in checks:
        g = np.asarray(g).reshape(-1)
        for i in rng.choice(arrs[k].size, size=min(6, arrs[k].size), replace=False):
            plus = [a.copy() for a in arrs]
            minus = [a.copy() for a in arrs]
            plus[k].reshape(-1)[i] += eps
            minus[k].reshape(-1)[i] -= eps
            if what == "input":
                num = (loss(plus, ps) - loss(minus, ps)) / (2 * eps)
            else:
                num = (loss(xs, plus) - loss(xs, minus)) / (2 * eps)
            assert abs(num - g[i]) <= 2e-2 * max(1.0, abs(num)), (what, k, i, num, g[i])


# ------------------------------------------------------------ fixed point
FX = dict(x=6, w=6, b=10, out=5, dout=7, din=6, grad=12)


def _q8(rng, shape):
    return rng.integers(-100, 101, shape).astype(np.int8)


def _fixed_case(kind, rng):
    """(row opts, inputs int8, params int32, wq int8 or None, reference forward, backward_input, backward_weight)."""
    f = FX
    if kind in ("conv2d", "linear"):
        if kind == "conv2d":
            opts = _conv_opts(4, (1, 3), stride=(1, 2), pad=(0, 1), dil=(1, 1), groups=2)
            xs = [_q8(rng, (2, 4, 2, 9))]
            wshape = (4, 2, 1, 3)
            a = _conv_args(opts)
        else:
            opts = dict(out_f=5, has_bias=1)
            xs = [_q8(rng, (3, 12, 1, 1))]
            wshape = (5, 12)
        wq = _q8(rng, wshape)
        bias = rng.integers(-3000, 3000, wshape[0]).astype(np.int32)
        params = [rng.integers(-2 ** 20, 2 ** 20, wshape).astype(np.int32), bias]

        def fwd(st):
            if kind == "conv2d":
                return q.conv2d_forward(xs[0], f["x"], wq, f["w"], bias, f["b"], f["out"], st=st, **a)
            return q.linear_forward(_flat(xs[0]), f["x"], wq, f["w"], bias, f["b"], f["out"], st=st)

        def bwd_in(dy, st):
            if kind == "conv2d":
                return q.conv2d_backward_input(dy, f["dout"], wq, f["w"], xs[0].shape, f["din"], st=st, **a)
            return q.linear_backward_input(_flat(dy), f["dout"], wq, f["w"], f["din"], st=st)

        def bwd_w(dy, st):
            dw = np.zeros(wshape, np.int64)
            db = np.zeros(wshape[0], np.int64)
            if kind == "conv2d":
                return q.conv2d_backward_weight(dw, f["grad"], db, f["grad"], dy, f["dout"], xs[0], f["x"], wshape,
                                                st=st, **a)
            return q.linear_backward_weight(dw, f["grad"], db, f["grad"], _flat(dy), f["dout"], _flat(xs[0]), f["x"],
                                            st=st)
        return opts, xs, params, wq, fwd, bwd_in, bwd_w
    if kind == "groupnorm":
        opts = dict(groups=2, affine=1, eps=1e-5)
        xs = [_q8(rng, (2, 4, 1, 6))]
        params = [rng.integers(2 ** 9, 2 ** 11, 4).astype(np.int32), rng.integers(-500, 500, 4).astype(np.int32)]
        em, ee = q.decode_f32(1e-5)
        x3 = xs[0].reshape(2, 4, 6)

        def fwd(st):
            return q.groupnorm_forward(x3, f["x"], params[0], f["w"] + 4, params[1], f["b"], 2, f["out"], em, ee,
                                       st=st)[0]

        def bwd_in(dy, st):
            _, m, r = q.groupnorm_forward(x3, f["x"], params[0], f["w"] + 4, params[1], f["b"], 2, f["out"], em, ee)
            return q.groupnorm_backward_input(dy.reshape(2, 4, 6), f["dout"], x3, f["x"], m, r, params[0],
                                              f["w"] + 4, 2, f["din"], st=st)

        def bwd_w(dy, st):
            _, m, r = q.groupnorm_forward(x3, f["x"], params[0], f["w"] + 4, params[1], f["b"], 2, f["out"], em, ee)
            return q.groupnorm_backward_weight(np.zeros(4, np.int64), f["grad"], np.zeros(4, np.int64), f["grad"],
                                               dy.reshape(2, 4, 6), f["dout"], x3, f["x"], m, r, 2, st=st)
        return opts, xs, params, None, fwd, bwd_in, bwd_w
    xs = [_q8(rng, (2, 3, 4, 9))]
    if kind == "relu":
        return ({}, xs, [], None, lambda st: q.relu_forward_mask(xs[0], f["x"], f["out"], st)[0],
                lambda dy, st: q.relu_backward_mask(dy, f["dout"], q.relu_forward_mask(xs[0], f["x"], f["out"])[1],
                                                    f["din"], st), None)
    if kind == "elu":
        am, ae = q.decode_f32(0.7)
        y = q.elu_forward(xs[0], f["x"], f["out"], am, ae)
        return (dict(alpha=0.7), xs, [], None, lambda st: q.elu_forward(xs[0], f["x"], f["out"], am, ae, st),
                lambda dy, st: q.elu_backward(dy, f["dout"], y, f["out"], f["din"], am, ae, st), None)
    if kind in ("avgpool2d", "global_avgpool"):
        o = _pool_opts((2, 3), (2, 2), (0, 1)) if kind == "avgpool2d" else {}
        k, s, p = ((2, 3), (2, 2), (0, 1)) if kind == "avgpool2d" else ((4, 9), (4, 9), (0, 0))
        return (o, xs, [], None, lambda st: q.avgpool_forward(xs[0], f["x"], f["out"], k, s, p, st),
                lambda dy, st: q.avgpool_backward(dy, f["dout"], xs[0].shape, f["din"], k, s, p, st), None)
    if kind == "maxpool2d":
        o = _pool_opts((2, 3), (2, 3))
        arg = q.maxpool_forward(xs[0], f["x"], f["out"], (2, 3), (2, 3))[1]
        return (o, xs, [], None, lambda st: q.maxpool_forward(xs[0], f["x"], f["out"], (2, 3), (2, 3), 0, st)[0],
                lambda dy, st: q.maxpool_backward(dy, f["dout"], arg, xs[0].shape, f["din"], st), None)
    if kind == "add":
        xs = [_q8(rng, (2, 3, 1, 6)), _q8(rng, (2, 3, 1, 6))]
        return ({}, xs, [], None, lambda st: q.add_forward(xs[0], f["x"], xs[1], f["x"], f["out"], st),
                lambda dy, st: q.requant(dy, f["dout"], f["din"], st), None)
    if kind == "flatten":
        return ({}, xs, [], None, lambda st: xs[0].reshape(2, -1, 1, 1),
                lambda dy, st: dy.reshape(xs[0].shape), None)
    if kind == "dropout":
        pm, pe = q.decode_f32(0.3)
        y, mask = q.dropout_forward(xs[0], f["x"], f["out"], pm, pe, q.Pcg32(5))
        return (dict(p=0.3), xs, [], None, lambda st: q.dropout_forward(xs[0], f["x"], f["out"], pm, pe, q.Pcg32(5),
                                                                       st)[0],
                lambda dy, st: q.dropout_backward(dy, f["dout"], mask, f["din"], pm, pe, st), None)
    raise KeyError(kind)


FIXED_KINDS = [k for k, o in OPS.items() if "fixed" in o["formats"] and k != "input"]


def test_every_fixed_op_has_a_row():
    rng = np.random.default_rng(0)
    for k in FIXED_KINDS:
        _fixed_case(k, rng)


@pytest.mark.parametrize("kind", FIXED_KINDS)
def test_fixed_bit_exact_against_reference(kind):
    rng = np.random.default_rng(3)
    opts, xs, params, wq, fwd, bwd_in, bwd_w = _fixed_case(kind, rng)
    f = FX
    gfrac = f["w"] + 4 if kind == "groupnorm" else f["w"]
    fr = {"in": [f["x"]] * len(xs), "out": f["out"], "dout": f["dout"], "din": [f["din"]] * len(xs),
          "param": [gfrac, f["b"]], "grad": [f["grad"], f["grad"]]}
    if wq is not None:
        fr.update(wq=f["w"], wq_values=wq)
    res = _core.op_call(kind, xs, opts, "fixed", "forward", params, fracs=fr, seed=5)
    st = q.Stats()
    ref = np.asarray(fwd(st)).reshape(res["out"].shape)
    assert np.array_equal(res["out"], ref), kind
    assert res["out_stats"]["saturated"] == st.saturated, kind
    dy = _q8(rng, res["out"].shape)
    for k in range(len(xs)):
        b = _core.op_call(kind, xs, opts, "fixed", "backward_input", params, out=res["out"], dout=dy,
                          saved=res["saved"], slot=k, fracs=fr, seed=5)
        st = q.Stats()
        r = np.asarray(bwd_in(dy, st)).reshape(xs[k].shape)
        assert np.array_equal(b["din"], r), (kind, k)
        assert b["din_stats"]["saturated"] == st.saturated, (kind, k)
    if bwd_w is not None:
        w = _core.op_call(kind, xs, opts, "fixed", "backward_weight", params, out=res["out"], dout=dy,
                          saved=res["saved"], fracs=fr, seed=5)
        ref = bwd_w(dy, q.Stats())
        for g, r in zip(w["pgrad"], ref):
            assert np.array_equal(g, np.asarray(r).reshape(-1)), kind


def test_op_call_refuses_bad_input():
    x = np.zeros((2, 3, 1, 4), np.float32)
    with pytest.raises(ValueError, match="unknown op"):
        _core.op_call("softmax2", [x])
    with pytest.raises(ValueError, match="no fixed kernels"):
        _core.op_call("gelu", [x.astype(np.int8)], dtype="fixed")
    with pytest.raises(ValueError, match="int8"):
        _core.op_call("relu", [x], dtype="fixed")
    with pytest.raises(ValueError, match="parameter"):
        _core.op_call("linear", [x], dict(out_f=2, has_bias=1), params=[np.zeros((2, 12), np.float32)])
    with pytest.raises(ValueError, match="holds"):
        _core.op_call("linear", [x], dict(out_f=2, has_bias=0), params=[np.zeros((2, 11), np.float32)])
