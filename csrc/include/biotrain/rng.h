/* A portable, seeded random number generator (PCG32, XSH-RR variant).
 * Integer arithmetic only, so a seed gives the same stream on every platform
 * (host x86-64, rv32imc, rv32imfc, GAP9). */
#ifndef BIOTRAIN_RNG_H
#define BIOTRAIN_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint64_t state;
    uint64_t inc; /* odd */
} bt_rng;

void bt_rng_seed(bt_rng *rng, uint64_t seed, uint64_t stream);
uint32_t bt_rng_next_u32(bt_rng *rng);
/* Uniform in [0, 1) with 24 random bits: exact in float32. */
float bt_rng_uniform_f32(bt_rng *rng);

#ifdef __cplusplus
}
#endif
#endif
