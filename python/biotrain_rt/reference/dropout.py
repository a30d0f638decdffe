"""Inverted dropout in NumPy, with its own PCG32 so masks can be checked bit
for bit.

PCG32 is the XSH-RR output function over a 64-bit LCG (O'Neill, "PCG: A Family
of Simple Fast Space-Efficient Statistically Good Algorithms for Random
Number Generation", 2014), seeded as in the reference pcg32_srandom_r:
state = 0, inc = 2 * stream + 1, one step, state += seed, one step.

Keep rule (integer only): threshold = floor(p * 2^24) with p taken as a
float32; element i is kept iff (u32_i >> 8) >= threshold, u32_i the i-th
output. Kept values are scaled by 1 / (1 - p)."""
import numpy as np

_MASK64 = (1 << 64) - 1
_MULT = 6364136223846793005


class PCG32:
    def __init__(self, seed, stream=0):
        self.state = 0
        self.inc = ((stream << 1) | 1) & _MASK64
        self.next_u32()
        self.state = (self.state + seed) & _MASK64
        self.next_u32()

    def next_u32(self):
        old = self.state
        self.state = (old * _MULT + self.inc) & _MASK64
        xorshifted = (((old >> 18) ^ old) >> 27) & 0xFFFFFFFF
        rot = old >> 59
        return ((xorshifted >> rot) | (xorshifted << ((-rot) & 31))) & 0xFFFFFFFF

    def next_u32_array(self, n):
        return np.array([self.next_u32() for _ in range(n)], dtype=np.uint32)


def threshold(p):
    """floor(p * 2^24) for p as a float32 (the product is exact in float64)."""
    return int(np.floor(float(np.float32(p)) * 2.0 ** 24))


def dropout_mask(count, p, rng):
    """uint8 mask [count] drawn from rng (a PCG32), 1 = kept."""
    u = rng.next_u32_array(count)
    return ((u >> np.uint32(8)) >= threshold(p)).astype(np.uint8)


def dropout_forward(x, mask, p):
    p = float(np.float32(p))
    return np.asarray(x, np.float64) * np.asarray(mask, np.float64).reshape(np.shape(x)) / (1.0 - p)


def dropout_backward(dy, mask, p):
    return dropout_forward(dy, mask, p)
