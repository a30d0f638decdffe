"""linear float32 kernels: C against the NumPy reference, the reference against
PyTorch (float64, autograd) and against central finite differences, the C
summation order against a float32 model of the documented order (bit-exact),
accumulation of the weight gradient, and bad input.

Tolerance of C vs reference: max|c - ref| / max|ref| <= 1e-5 over each output
array (scale-aware relative error; the reference runs in float64 on the same
float32 inputs). The worst value per kernel is printed at the end of the module.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from biotrain_rt import _core as core
from biotrain_rt.reference import linear as ref
from fma32 import fma32
from kernel_accuracy import TOL, check_close, numeric_grad, rel_err, worst_error_summary  # noqa: F401 (autouse fixture)

torch.set_num_threads(1)

CASES = [
    (1, 1, 1, True), (1, 7, 3, False), (3, 5, 2, True), (4, 208, 2, True), (8, 16, 11, True),
    (2, 33, 17, False), (5, 128, 128, True), (16, 64, 10, False), (7, 1, 9, True), (1, 300, 1, True),
    (32, 1000, 4, False),
]


def case_id(c):
    return f"n{c[0]}-in{c[1]}-out{c[2]}-{'b' if c[3] else 'nb'}"


def make(case, rng, dtype=np.float32):
    n, in_f, out_f, has_b = case
    x = rng.standard_normal((n, in_f)).astype(dtype)
    w = rng.standard_normal((out_f, in_f)).astype(dtype)
    b = rng.standard_normal(out_f).astype(dtype) if has_b else None
    dy = rng.standard_normal((n, out_f)).astype(dtype)
    return x, w, b, dy


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_c_matches_reference(case, rng):
    x, w, b, dy = make(case, rng)
    y = core.linear_forward_f32(x, w, b)
    assert y.dtype == np.float32 and y.shape == (x.shape[0], w.shape[0])
    check_close("linear_forward_f32", y, ref.linear_forward(x, w, b))
    check_close("linear_backward_input_f32", core.linear_backward_input_f32(dy, w),
                ref.linear_backward_input(dy, w))
    dw, db = core.linear_backward_weight_f32(dy, x, b is not None)
    rdw, rdb = ref.linear_backward_weight(dy, x)
    check_close("linear_backward_weight_f32 (dw)", dw, rdw)
    if b is None:
        assert db is None
    else:
        check_close("linear_backward_weight_f32 (db)", db, rdb)


@pytest.mark.parametrize("case", CASES[1:8], ids=case_id)
def test_weight_gradient_accumulates(case, rng):
    """dw += ...: non-zero start + gradient, and per-sample calls give the same bits."""
    x, w, _, dy = make(case, rng)
    dw0 = rng.standard_normal(w.shape).astype(np.float32)
    db0 = rng.standard_normal(w.shape[0]).astype(np.float32)
    dw, db = dw0.copy(), db0.copy()
    assert core.linear_backward_weight_acc_f32(dw, db, dy, x) is None
    rdw, rdb = ref.linear_backward_weight(dy, x)
    check_close("linear_backward_weight_f32 (dw)", dw, dw0.astype(np.float64) + rdw)
    check_close("linear_backward_weight_f32 (db)", db, db0.astype(np.float64) + rdb)
    dw_mb, db_mb = dw0.copy(), db0.copy()
    for i in range(x.shape[0]):
        core.linear_backward_weight_acc_f32(dw_mb, db_mb, dy[i:i + 1], x[i:i + 1])
    np.testing.assert_array_equal(dw_mb, dw)
    np.testing.assert_array_equal(db_mb, db)
    dwz = np.zeros_like(dw0)
    core.linear_backward_weight_acc_f32(dwz, None, dy, x)
    np.testing.assert_array_equal(dwz, core.linear_backward_weight_f32(dy, x, False)[0])


@pytest.mark.parametrize("case", CASES[:9], ids=case_id)
def test_summation_order_is_the_documented_one(case, rng):
    """C equals, bit for bit, a float32 model of the order written in linear_f32.c."""
    x, w, b, dy = make(case, rng)
    n, in_f = x.shape
    out_f = w.shape[0]
    y = np.zeros((n, out_f), np.float32) if b is None else np.tile(b, (n, 1))
    for k in range(in_f):
        y = fma32(x[:, k:k + 1], w[None, :, k], y)
    np.testing.assert_array_equal(core.linear_forward_f32(x, w, b), y)
    dx = np.zeros((n, in_f), np.float32)
    for o in range(out_f):
        dx = fma32(dy[:, o:o + 1], w[None, o, :], dx)
    np.testing.assert_array_equal(core.linear_backward_input_f32(dy, w), dx)
    dw = rng.standard_normal(w.shape).astype(np.float32)
    db = rng.standard_normal(out_f).astype(np.float32)
    cdw, cdb = dw.copy(), db.copy()
    core.linear_backward_weight_acc_f32(cdw, cdb, dy, x)
    for i in range(n):
        dw = fma32(dy[i][:, None], x[i][None, :], dw)
        db = db + dy[i]
    np.testing.assert_array_equal(cdw, dw)
    np.testing.assert_array_equal(cdb, db)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_reference_matches_torch(case, rng):
    x, w, b, dy = make(case, rng, np.float64)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if b is not None else None
    ty = F.linear(tx, tw, tb)
    ty.backward(torch.tensor(dy))
    assert rel_err(ref.linear_forward(x, w, b), ty.detach().numpy()) < 1e-12
    assert rel_err(ref.linear_backward_input(dy, w), tx.grad.numpy()) < 1e-12
    rdw, rdb = ref.linear_backward_weight(dy, x)
    assert rel_err(rdw, tw.grad.numpy()) < 1e-12
    if b is not None:
        assert rel_err(rdb, tb.grad.numpy()) < 1e-12


@pytest.mark.parametrize("case", [(1, 3, 2, True), (3, 5, 4, True), (4, 7, 3, True)], ids=case_id)
def test_reference_backward_matches_finite_differences(case, rng):
    x, w, b, dy = make(case, rng, np.float64)

    def loss():
        return float((ref.linear_forward(x, w, b) * dy).sum())

    gx, gw, gb = numeric_grad(loss, x), numeric_grad(loss, w), numeric_grad(loss, b)
    assert rel_err(ref.linear_backward_input(dy, w), gx) < 1e-7
    rdw, rdb = ref.linear_backward_weight(dy, x)
    assert rel_err(rdw, gw) < 1e-7
    assert rel_err(rdb, gb) < 1e-7


def _x(*s):
    return np.zeros(s, np.float32)


BAD = [
    ("empty batch", lambda: core.linear_forward_f32(_x(0, 5), _x(3, 5), None), 2,
     ["linear_forward_f32", "x (0, 5)", "w (3, 5)"]),
    ("zero in features", lambda: core.linear_forward_f32(_x(2, 0), _x(3, 0), None), 2, ["linear_forward_f32"]),
    ("zero out features", lambda: core.linear_forward_f32(_x(2, 5), _x(0, 5), _x(0)), 2, ["linear_forward_f32"]),
    ("in features mismatch", lambda: core.linear_forward_f32(_x(2, 5), _x(3, 4), None), 3,
     ["linear_forward_f32", "x (2, 5)", "w (3, 4)"]),
    ("bias length", lambda: core.linear_forward_f32(_x(2, 5), _x(3, 5), _x(2)), 3, ["linear_forward_f32", "b (2,)"]),
    ("x not 2-D", lambda: core.linear_forward_f32(_x(5), _x(3, 5), None), 3, ["linear_forward_f32"]),
    ("bwd input: empty batch", lambda: core.linear_backward_input_f32(_x(0, 3), _x(3, 5)), 2,
     ["linear_backward_input_f32", "dy (0, 3)"]),
    ("bwd input: zero in features", lambda: core.linear_backward_input_f32(_x(2, 3), _x(3, 0)), 2,
     ["linear_backward_input_f32"]),
    ("bwd input: mismatch", lambda: core.linear_backward_input_f32(_x(2, 4), _x(3, 5)), 3,
     ["linear_backward_input_f32", "dy (2, 4)"]),
    ("bwd weight: empty batch", lambda: core.linear_backward_weight_f32(_x(0, 3), _x(0, 5), True), 2,
     ["linear_backward_weight_f32"]),
    ("bwd weight: batch mismatch", lambda: core.linear_backward_weight_f32(_x(2, 3), _x(3, 5), True), 3,
     ["linear_backward_weight_f32", "dy (2, 3)", "x (3, 5)"]),
    ("bwd weight acc: dw shape", lambda: core.linear_backward_weight_acc_f32(_x(3, 4), None, _x(2, 3), _x(2, 5)), 3,
     ["linear_backward_weight_f32", "dw (3, 4)"]),
    ("bwd weight acc: db length", lambda: core.linear_backward_weight_acc_f32(_x(3, 5), _x(4), _x(2, 3), _x(2, 5)), 3,
     ["linear_backward_weight_f32", "db (4,)"]),
    ("bwd weight acc: zero features", lambda: core.linear_backward_weight_acc_f32(_x(3, 0), None, _x(2, 3), _x(2, 0)), 2,
     ["linear_backward_weight_f32"]),
]


@pytest.mark.parametrize("name,call,status,words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_value_error(name, call, status, words):
    with pytest.raises(ValueError) as e:
        call()
    msg = str(e.value)
    assert f"(status {status})" in msg, msg
    for word in words:
        assert word in msg, msg


@pytest.mark.parametrize("dw,db", [
    (np.zeros((3, 5)), None),                        # float64: a conversion would be a copy
    (_x(3, 10)[:, ::2], None),                       # not contiguous
    (_x(3, 5), np.zeros(3, np.int32)),
], ids=["dw float64", "dw strided", "db int32"])
def test_accumulator_must_be_float32_contiguous(dw, db):
    with pytest.raises(ValueError, match="linear_backward_weight_f32: d[wb] must be a writeable"):
        core.linear_backward_weight_acc_f32(dw, db, _x(2, 3), _x(2, 5))


def test_failed_accumulation_leaves_arrays_untouched(rng):
    dw = rng.standard_normal((3, 5)).astype(np.float32)
    dw0 = dw.copy()
    with pytest.raises(ValueError):
        core.linear_backward_weight_acc_f32(dw, None, _x(2, 3), _x(1, 5))
    np.testing.assert_array_equal(dw, dw0)
