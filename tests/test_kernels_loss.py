"""Softmax cross-entropy and MSE float32 kernels.

(a) C vs the float64 NumPy reference (reference/loss.py), rel_err <= 1e-5
    (max abs difference / max |reference|, see kernel_accuracy);
(b) the reference vs PyTorch float64 (F.cross_entropy, F.mse_loss), values and
    autograd gradients (with an upstream gradient d_loss);
(c) the reference backward vs central finite differences in float64;
(d) bad input: a label outside [0, classes) and the other statuses are a
    ValueError naming the kernel and the shapes."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from biotrain_rt import _core as C
from biotrain_rt.reference import loss as R
from kernel_accuracy import check_close, worst_error_summary  # noqa: F401 (autouse fixture)

torch.set_num_threads(1)

CE_SHAPES = [(1, 1), (1, 2), (4, 11), (7, 3), (32, 10), (3, 200), (500, 2)]
D_LOSS = [1.0, 0.25, -3.0]


@pytest.mark.parametrize("n,classes", CE_SHAPES)
def test_cross_entropy_c_vs_reference(n, classes, rng):
    for scale in (1.0, 20.0):
        logits = (rng.standard_normal((n, classes)) * scale).astype(np.float32)
        labels = rng.integers(0, classes, n).astype(np.int32)
        loss, probs = C.cross_entropy_forward_f32(logits, labels)
        rloss, rprobs = R.cross_entropy(logits, labels)
        check_close("cross_entropy_forward.loss", loss, rloss)
        check_close("cross_entropy_forward.probs", probs, rprobs)
        for d_loss in D_LOSS:
            d = C.cross_entropy_backward_f32(rprobs.astype(np.float32), labels, d_loss)
            check_close("cross_entropy_backward", d, R.cross_entropy_backward(rprobs.astype(np.float32), labels, d_loss))


def test_cross_entropy_extreme_logits():
    logits = np.array([[1000.0, -1000.0, 0.0], [-80.0, -80.0, -80.0], [5.0, 5.0, 60.0]], np.float32)
    labels = np.array([1, 2, 0], np.int64)  # any integer dtype
    loss, probs = C.cross_entropy_forward_f32(logits, labels)
    rloss, rprobs = R.cross_entropy(logits, labels)
    assert np.isfinite(loss)
    check_close("cross_entropy_forward.loss", loss, rloss)
    check_close("cross_entropy_forward.probs", probs, rprobs)


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 4, 5), (1, 8, 1, 1900)])
def test_mse_c_vs_reference(shape, rng):
    pred = (rng.standard_normal(shape) * 2).astype(np.float32)
    target = (rng.standard_normal(shape) + 0.5).astype(np.float32)
    check_close("mse_forward", C.mse_forward_f32(pred, target), R.mse(pred, target))
    for d_loss in D_LOSS:
        check_close("mse_backward", C.mse_backward_f32(pred, target, d_loss), R.mse_backward(pred, target, d_loss))


@pytest.mark.parametrize("n,classes", [(1, 2), (4, 11), (7, 3)])
def test_reference_vs_torch(n, classes, rng):
    x = rng.standard_normal((n, classes)) * 3
    labels = rng.integers(0, classes, n)
    for d_loss in D_LOSS:
        xt = torch.tensor(x, requires_grad=True)
        lt = F.cross_entropy(xt, torch.tensor(labels), reduction="mean")
        lt.backward(torch.tensor(d_loss, dtype=torch.float64))
        loss, probs = R.cross_entropy(x, labels)
        np.testing.assert_allclose(loss, lt.item(), rtol=1e-13)
        np.testing.assert_allclose(probs, torch.softmax(torch.tensor(x), 1).numpy(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(R.cross_entropy_backward(probs, labels, d_loss), xt.grad.numpy(),
                                   rtol=1e-12, atol=1e-15)
        p = rng.standard_normal((n, classes))
        t = rng.standard_normal((n, classes))
        pt = torch.tensor(p, requires_grad=True)
        mt = F.mse_loss(pt, torch.tensor(t))
        mt.backward(torch.tensor(d_loss, dtype=torch.float64))
        np.testing.assert_allclose(R.mse(p, t), mt.item(), rtol=1e-13)
        np.testing.assert_allclose(R.mse_backward(p, t, d_loss), pt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_reference_backward_vs_finite_differences(rng):
    x = rng.standard_normal((4, 5)) * 2
    labels = rng.integers(0, 5, 4)
    t = rng.standard_normal((4, 5))
    h = 1e-6
    for f, grad in ((lambda: R.cross_entropy(x, labels)[0], lambda: R.cross_entropy_backward(R.cross_entropy(x, labels)[1], labels, 1.0)),
                    (lambda: R.mse(x, t), lambda: R.mse_backward(x, t, 1.0))):
        fd = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            old = x[i]
            x[i] = old + h
            fp = f()
            x[i] = old - h
            fm = f()
            x[i] = old
            fd[i] = (fp - fm) / (2 * h)
        np.testing.assert_allclose(grad(), fd, rtol=1e-6, atol=1e-9)


def raises(kernel, fn, *shapes, status=None):
    with pytest.raises(ValueError) as e:
        fn()
    msg = str(e.value)
    assert msg.startswith(kernel + ":"), msg
    for s in shapes:
        assert str(tuple(s)) in msg, (s, msg)
    if status:
        assert status in msg, msg


def test_bad_input(rng):
    logits = rng.standard_normal((4, 3)).astype(np.float32)
    good = np.array([0, 1, 2, 0], np.int32)
    for name, fn in (("cross_entropy_forward_f32", lambda l: C.cross_entropy_forward_f32(logits, l)),
                     ("cross_entropy_backward_f32", lambda l: C.cross_entropy_backward_f32(logits, l, 1.0))):
        for bad in ([0, 1, 3, 0], [0, -1, 2, 0], [0, 1, 2, 2**31 - 1]):
            raises(name, lambda: fn(np.array(bad, np.int32)), (4, 3), (4,), status="label out of range")
        raises(name, lambda: fn(np.array([0, 1, 2**40, 0], np.int64)), (4, 3), status="label out of range")
        raises(name, lambda: fn(np.array([0, 1, 2**64 - 1, 0], np.uint64)), (4, 3), status="label out of range")
        raises(name, lambda: fn(good.astype(np.float32)), (4, 3), status="integer array")
        raises(name, lambda: fn(good[:3]), (4, 3), (3,), status="shape mismatch")
    raises("cross_entropy_forward_f32", lambda: C.cross_entropy_forward_f32(logits.ravel(), good), (12,),
           status="shape mismatch")
    empty = np.zeros((0, 3), np.float32)
    raises("cross_entropy_forward_f32", lambda: C.cross_entropy_forward_f32(empty, np.zeros(0, np.int32)),
           (0, 3), status="zero or negative size")
    raises("cross_entropy_backward_f32",
           lambda: C.cross_entropy_backward_f32(np.zeros((2, 0), np.float32), np.zeros(2, np.int32)),
           (2, 0), status="zero or negative size")
    raises("mse_forward_f32", lambda: C.mse_forward_f32(logits, logits.T), (4, 3), (3, 4), status="shape mismatch")
    raises("mse_forward_f32", lambda: C.mse_forward_f32(empty, empty), (0, 3), status="zero or negative size")
    raises("mse_backward_f32", lambda: C.mse_backward_f32(logits, logits[:2]), (4, 3), (2, 3), status="shape mismatch")
    raises("mse_backward_f32", lambda: C.mse_backward_f32(empty, empty), (0, 3), status="zero or negative size")
