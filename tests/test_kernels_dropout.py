"""Inverted dropout and the PCG32 generator behind its masks.

(a) C vs the NumPy reference (reference/dropout.py, which carries its own
    PCG32): the generator's outputs and the masks are equal bit for bit, the
    values within rel_err <= 1e-5 (max abs difference / max |reference|);
(b) the reference vs PyTorch float64 F.dropout, given PyTorch's own mask
    (scaling convention and autograd gradient);
(c) the reference backward vs central finite differences (fixed mask);
(d) bad input: ValueError naming the kernel and the shapes; on a bad status
    nothing is written and the generator does not advance;
(e) the keep rate is close to 1 - p statistically."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from biotrain_rt import _core as C
from biotrain_rt.reference import dropout as R
from kernel_accuracy import check_close, worst_error_summary  # noqa: F401 (autouse fixture)

torch.set_num_threads(1)

SEEDS = [(0, 0), (1, 0), (42, 54), (2**40 + 3, 7), (2**64 - 1, 2**63 + 5), (123456789, 987654321)]
PS = [0.0, 0.1, 0.25, 1.0 / 3.0, 0.5, 0.9, 0.999]


def test_reference_pcg32_known_answer():
    """The published demo stream of PCG32 (seed 42, stream 54)."""
    rng = R.PCG32(42, 54)
    assert [rng.next_u32() for _ in range(6)] == [
        0xA15C02B7, 0x7B47F409, 0xBA1D3330, 0x83D2F293, 0xBFA4784B, 0xCBED606E]


@pytest.mark.parametrize("seed,stream", SEEDS)
def test_rng_c_vs_reference(seed, stream):
    expect = R.PCG32(seed, stream).next_u32_array(1000)
    np.testing.assert_array_equal(C.rng_u32(seed, stream, 1000), expect)
    r = C.Rng(seed, stream)
    np.testing.assert_array_equal(np.concatenate([r.next_u32(1), r.next_u32(999)]), expect)
    u = C.Rng(seed, stream).uniform_f32(1000)
    np.testing.assert_array_equal(u, (expect >> 8).astype(np.float64) / 2**24)


@pytest.mark.parametrize("seed,stream", SEEDS)
def test_dropout_mask_c_vs_reference(seed, stream, rng):
    for p in PS:
        for shape in ((1,), (17,), (3, 5, 7), (1000,)):
            x = rng.standard_normal(shape).astype(np.float32)
            crng, prng = C.Rng(seed, stream), R.PCG32(seed, stream)
            y, mask = C.dropout_forward_f32(x, p, crng)
            rmask = R.dropout_mask(x.size, p, prng).reshape(shape)
            assert mask.dtype == np.uint8 and mask.shape == shape
            np.testing.assert_array_equal(mask, rmask)
            assert (crng.state, crng.inc) == (prng.state, prng.inc)  # one draw per element
            check_close("dropout_forward", y, R.dropout_forward(x, rmask, p))
            dy = rng.standard_normal(shape).astype(np.float32)
            check_close("dropout_backward", C.dropout_backward_f32(dy, mask, p), R.dropout_backward(dy, rmask, p))


def test_dropout_consecutive_calls_continue_the_stream(rng):
    x = np.ones(300, np.float32)
    crng, prng = C.Rng(9, 9), R.PCG32(9, 9)
    for _ in range(3):
        _, mask = C.dropout_forward_f32(x, 0.4, crng)
        np.testing.assert_array_equal(mask, R.dropout_mask(300, 0.4, prng))


def test_threshold_is_integer_and_p0_keeps_all():
    assert R.threshold(0.5) == 2**23
    assert R.threshold(0.0) == 0
    assert R.threshold(1e-9) == 0  # below 2^-24: nothing is dropped
    x = np.arange(1, 1001, dtype=np.float32)
    for p in (0.0, 1e-9):
        y, mask = C.dropout_forward_f32(x, p, C.Rng(3, 1))
        assert np.all(mask == 1)
        np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_keep_rate(p):
    n = 200_000
    x = np.ones(n, np.float32)
    y, mask = C.dropout_forward_f32(x, p, C.Rng(2024, 11))
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(mask.mean() - (1 - p)) < 5 * sigma
    assert abs(y.astype(np.float64).mean() - 1.0) < 5 * sigma / (1 - p)  # inverted: E[y] = x
    # No long-range structure: each quarter of the mask keeps about 1 - p too.
    for part in np.split(mask, 4):
        assert abs(part.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / part.size)


def test_reference_vs_torch(rng):
    torch.manual_seed(0)
    x = rng.standard_normal((4, 50)) + 3.0  # no exact zeros, so the mask is y != 0
    dy = rng.standard_normal(x.shape)
    for p in (0.2, 0.5):
        xt = torch.tensor(x, requires_grad=True)
        yt = F.dropout(xt, p, training=True)
        yt.backward(torch.tensor(dy))
        mask = (yt.detach().numpy() != 0).astype(np.uint8)
        np.testing.assert_allclose(R.dropout_forward(x, mask, p), yt.detach().numpy(), rtol=1e-7)
        np.testing.assert_allclose(R.dropout_backward(dy, mask, p), xt.grad.numpy(), rtol=1e-7)


def test_reference_backward_vs_finite_differences(rng):
    x = rng.standard_normal(12)
    r = rng.standard_normal(12)
    mask = R.dropout_mask(12, 0.5, R.PCG32(1, 2))
    h = 1e-6
    fd = np.zeros_like(x)
    for i in range(x.size):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        fd[i] = ((R.dropout_forward(xp, mask, 0.5) - R.dropout_forward(xm, mask, 0.5)) * r).sum() / (2 * h)
    np.testing.assert_allclose(R.dropout_backward(r, mask, 0.5), fd, rtol=1e-7, atol=1e-9)


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
    x = np.ones((3, 4), np.float32)
    r = C.Rng(5, 6)
    state = (r.state, r.inc)
    for p in (-0.1, 1.0, 1.5, float("nan"), float("inf")):
        raises("dropout_forward_f32", lambda: C.dropout_forward_f32(x, p, r), (3, 4), status="parameter out of range")
        raises("dropout_backward_f32", lambda: C.dropout_backward_f32(x, np.ones((3, 4), np.uint8), p), (3, 4),
               status="parameter out of range")
    empty = np.zeros((0, 4), np.float32)
    raises("dropout_forward_f32", lambda: C.dropout_forward_f32(empty, 0.5, r), (0, 4), status="zero or negative size")
    assert (r.state, r.inc) == state  # the generator did not advance
    raises("dropout_backward_f32", lambda: C.dropout_backward_f32(x, np.ones(12, np.uint8), 0.5), (3, 4), (12,),
           status="shape mismatch")
    raises("dropout_backward_f32", lambda: C.dropout_backward_f32(empty, np.ones((0, 4), np.uint8), 0.5), (0, 4),
           status="zero or negative size")
    with pytest.raises(ValueError):
        r.next_u32(-1)
