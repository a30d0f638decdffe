"""The conv2d blocks for cores without a vector unit (conv2d_f32_small.h,
used on RISC-V and Arm, BT_CONV_SMALL_BLOCKS=1) give, bit for bit, the
documented summation order, like the host blocks do. The core's conv file is
built here as a shared library with that switch and called through ctypes on
every conv case of test_kernels_conv.py and on the zoo's real layer shapes;
the reference is the float32 fused-multiply-add model of the order written
in conv2d_f32.c (test_kernels_conv.py), not the C code."""
import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest

from test_kernels_conv import (ALL_CASES, case_id, make, model_backward_input_f32, model_backward_weight_f32,
                               model_forward_f32)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CC = shutil.which("gcc") or shutil.which("cc")

# MI-BMInet and EpiDeNet layers at their real sizes (batch 1).
ZOO = [
    (1, 1, 8, 1900, 8, (8, 1), (1, 1), (0, 0), (1, 1), 1, False),      # MI-BMInet spatial 8x1
    (1, 8, 1, 1900, 8, (1, 64), (1, 1), (0, 32), (1, 1), 8, False),    # MI-BMInet temporal 1x64
    (1, 8, 1, 229, 8, (1, 16), (1, 1), (0, 8), (1, 1), 8, False),      # MI-BMInet depthwise 1x16
    (1, 8, 1, 214, 8, (1, 1), (1, 1), (0, 0), (1, 1), 1, False),       # MI-BMInet pointwise
    (1, 1, 2, 1000, 4, (1, 4), (1, 1), (0, 2), (1, 1), 1, False),      # EpiDeNet-like first conv
    (1, 4, 2, 250, 16, (1, 16), (1, 1), (0, 8), (1, 1), 1, False),     # dense 4 -> 16, 1x16
]


class Shape(ctypes.Structure):
    _fields_ = [(f, ctypes.c_int) for f in ("n", "c_in", "h_in", "w_in", "c_out", "k_h", "k_w", "stride_h",
                                            "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "groups")]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    assert CC, "a C compiler is required"
    lib = tmp_path_factory.mktemp("small") / "libconv_small.so"
    cmd = [CC, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", "-O2", "-fPIC",
           "-shared", "-DBT_CONV_SMALL_BLOCKS=1", "-I", os.path.join(ROOT, "csrc", "include"),
           os.path.join(ROOT, "csrc", "src", "kernels", "conv", "conv2d_f32.c"), os.path.join(ROOT, "csrc", "port", "host", "port_host.c"),
           "-o", str(lib)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return ctypes.CDLL(str(lib))


def _p(a):
    return None if a is None else a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def _shape(x_shape, w_shape, kw):
    n, c_in, h, w = x_shape
    return Shape(n, c_in, h, w, w_shape[0], w_shape[2], w_shape[3], *kw["stride"], *kw["padding"],
                 *kw["dilation"], kw["groups"])


@pytest.mark.parametrize("case", ALL_CASES + ZOO, ids=case_id)
def test_small_blocks_give_the_documented_order(small, case, rng):
    x, w, b, dy, kw = make(case, rng)
    s = _shape(x.shape, w.shape, kw)
    args = dict(stride=kw["stride"], padding=kw["padding"], dilation=kw["dilation"], groups=kw["groups"])
    y = np.full(dy.shape, np.nan, np.float32)
    assert small.bt_conv2d_forward_f32(_p(y), _p(x), _p(w), _p(b), ctypes.byref(s)) == 0
    np.testing.assert_array_equal(y, model_forward_f32(x, w, b, **args))
    dx = np.full(x.shape, np.nan, np.float32)
    assert small.bt_conv2d_backward_input_f32(_p(dx), _p(dy), _p(w), ctypes.byref(s)) == 0
    np.testing.assert_array_equal(dx, model_backward_input_f32(dy, w, x.shape, **args))
    dw0 = rng.standard_normal(w.shape).astype(np.float32)
    db0 = rng.standard_normal(w.shape[0]).astype(np.float32)
    dw, db = dw0.copy(), db0.copy()
    assert small.bt_conv2d_backward_weight_f32(_p(dw), _p(db), _p(dy), _p(x), ctypes.byref(s)) == 0
    mdw, mdb = model_backward_weight_f32(dw0, db0, dy, x, **args)
    np.testing.assert_array_equal(dw, mdw)
    np.testing.assert_array_equal(db, mdb)
