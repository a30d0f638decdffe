"""Residual add (forward, backward) and gradient accumulation, float32.

(a) C vs the float64 NumPy reference (reference/elementwise.py), rel_err <= 1e-5
    (max abs difference / max |reference|, see kernel_accuracy);
(b) the reference vs PyTorch float64 autograd of a + b;
(c) the reference backward vs central finite differences in float64;
(d) bad input: ValueError naming the kernel and the shapes; nothing written."""
import numpy as np
import pytest
import torch

from biotrain_rt import _core as C
from biotrain_rt.reference import elementwise as R
from kernel_accuracy import check_close, worst_error_summary  # noqa: F401 (autouse fixture)

torch.set_num_threads(1)

SHAPES = [(1,), (7,), (3, 5), (2, 3, 4, 5), (1, 8, 1, 1900)]


def make(rng, shape):
    return (rng.standard_normal(shape) * 3).astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES)
def test_c_vs_reference(shape, rng):
    a, b, dy = make(rng, shape), make(rng, shape), make(rng, shape)
    check_close("add_forward", C.add_forward_f32(a, b), R.add(a, b))
    da, db = C.add_backward_f32(dy)
    rda, rdb = R.add_backward(dy)
    check_close("add_backward.da", da, rda)
    check_close("add_backward.db", db, rdb)
    da, db = C.add_backward_f32(dy, True, False)
    assert db is None
    np.testing.assert_array_equal(da, dy)
    da, db = C.add_backward_f32(dy, False, True)
    assert da is None
    np.testing.assert_array_equal(db, dy)
    acc = make(rng, shape)
    expect = R.accumulate(acc, a)
    C.accumulate_f32(acc, a)
    check_close("accumulate", acc, expect)


def test_reference_vs_torch_and_finite_differences(rng):
    a, b, r = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    at = torch.tensor(a, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    yt = at + bt
    yt.backward(torch.tensor(r))
    np.testing.assert_allclose(R.add(a, b), yt.detach().numpy(), rtol=1e-15)
    da, db = R.add_backward(r)
    np.testing.assert_allclose(da, at.grad.numpy(), rtol=1e-15)
    np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-15)
    h = 1e-6
    for arr, grad in ((a, da), (b, db)):
        fd = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + h
            fp = (R.add(a, b) * r).sum()
            arr[i] = old - h
            fm = (R.add(a, b) * r).sum()
            arr[i] = old
            fd[i] = (fp - fm) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-9)


def raises(kernel, fn, *shapes, status=None):
    with pytest.raises(ValueError) as e:
        fn()
    msg = str(e.value)
    assert msg.startswith(kernel + ":"), msg
    for s in shapes:
        assert str(tuple(s)) in msg, (s, msg)
    if status:
        assert status in msg, msg


def test_bad_input():
    a = np.ones((2, 3), np.float32)
    empty = np.zeros((0, 3), np.float32)
    raises("add_forward_f32", lambda: C.add_forward_f32(a, a.T), (2, 3), (3, 2), status="shape mismatch")
    raises("add_forward_f32", lambda: C.add_forward_f32(empty, empty), (0, 3), status="zero or negative size")
    raises("add_backward_f32", lambda: C.add_backward_f32(a, False, False), (2, 3), status="null pointer")
    raises("add_backward_f32", lambda: C.add_backward_f32(empty), (0, 3), status="zero or negative size")
    acc = np.full((2, 3), 5.0, np.float32)
    raises("accumulate_f32", lambda: C.accumulate_f32(acc, a.T), (2, 3), (3, 2), status="shape mismatch")
    raises("accumulate_f32", lambda: C.accumulate_f32(acc.astype(np.float64), a), (2, 3),
           status="writeable C-contiguous float32")
    raises("accumulate_f32", lambda: C.accumulate_f32(acc.T, a.T), status="writeable C-contiguous float32")
    raises("accumulate_f32", lambda: C.accumulate_f32(np.zeros((0, 3), np.float32), empty), (0, 3),
           status="zero or negative size")
    assert np.all(acc == 5.0)
