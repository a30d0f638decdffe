"""float32 fused multiply-add in NumPy, written from the definition: a * b + c
computed exactly and rounded once to float32 (round to nearest, ties to even).

The product of two float32 values is exact in float64. The float64 sum is
rounded to odd (TwoSum yields its exact error; an inexact sum with an even
last bit moves one ulp towards the exact value), and a float64 rounded to odd
then rounded to float32 is the correctly rounded result because 53 >= 24 + 2.
test_bt_math.py checks this model against exact rational arithmetic."""
import numpy as np


def fma32(a, b, c):
    a, b, c = np.broadcast_arrays(np.asarray(a, np.float32), np.asarray(b, np.float32), np.asarray(c, np.float32))
    p = a.astype(np.float64) * b.astype(np.float64)
    cd = c.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        s = p + cd
        bv = s - p
        err = (p - (s - bv)) + (cd - bv)
        u = np.array(s, np.float64).view(np.uint64)
        fix = np.isfinite(s) & np.isfinite(err) & (err != 0) & ((u & np.uint64(1)) == 0)
        up = fix & ((err > 0) == (s > 0))
        down = fix & ~((err > 0) == (s > 0))
        u = u + up.astype(np.uint64) - down.astype(np.uint64)
        return u.view(np.float64).astype(np.float32)
