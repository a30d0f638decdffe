/* PCG32 (O'Neill 2014), XSH-RR output. 64-bit integer arithmetic is portable
 * C99 and exact on 32-bit targets too. */
#include "biotrain/rng.h"

void bt_rng_seed(bt_rng *rng, uint64_t seed, uint64_t stream)
{
    rng->state = 0u;
    rng->inc = (stream << 1u) | 1u;
    (void)bt_rng_next_u32(rng);
    rng->state += seed;
    (void)bt_rng_next_u32(rng);
}

uint32_t bt_rng_next_u32(bt_rng *rng)
{
    uint64_t old = rng->state;
    uint32_t xorshifted, rot;
    rng->state = old * 6364136223846793005ULL + rng->inc;
    xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((32u - rot) & 31u));
}

float bt_rng_uniform_f32(bt_rng *rng)
{
    /* 24 bits fit the float32 mantissa, so the conversion is exact. */
    return (float)(bt_rng_next_u32(rng) >> 8) * (1.0f / 16777216.0f);
}
