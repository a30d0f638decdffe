/* Inverted dropout, float32.
 *
 * The keep decision uses integers only, so a seed gives the same mask on
 * every platform (no float comparison of a random number against p):
 *   threshold = (uint32_t)(p * 2^24)   (p * 2^24 is exact in float32; the
 *                                       conversion truncates, as C defines)
 *   keep element i  iff  (bt_rng_next_u32(rng) >> 8) >= threshold
 * so an element is dropped with probability threshold / 2^24, which is p
 * rounded down to a multiple of 2^-24. Exactly one number is drawn per
 * element, in element order, whatever p is, so the stream position after a
 * call depends only on count. Kept elements are scaled by 1 / (1 - p).
 *
 * out may alias in and d_in may alias d_out (elementwise).
 *
 * Checks, in this order: NULL pointers -> BT_ERR_NULL_POINTER; count not
 * positive -> BT_ERR_BAD_SIZE; p outside [0, 1) -> BT_ERR_BAD_PARAM. On a bad
 * status nothing is written and the generator does not advance. */
#include <stddef.h>
#include "biotrain/dropout.h"
#include "../kernel_checks.h"

static int p_ok(float p) { return p >= 0.0f && p < 1.0f; }

bt_status bt_dropout_forward_f32(float *out, uint8_t *mask, const float *in, int count,
                                 float p, bt_rng *rng)
{
    uint32_t threshold;
    float scale;
    size_t i;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(mask);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(rng);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(p_ok(p), BT_ERR_BAD_PARAM);

    threshold = (uint32_t)(p * 16777216.0f);
    scale = 1.0f / (1.0f - p);
    for (i = 0; i < (size_t)count; ++i) {
        const int keep = (bt_rng_next_u32(rng) >> 8) >= threshold;
        mask[i] = (uint8_t)keep;
        out[i] = keep ? in[i] * scale : 0.0f;
    }
    return BT_OK;
}

/* mask: nonzero = kept. */
bt_status bt_dropout_backward_f32(float *d_in, const float *d_out, const uint8_t *mask,
                                  int count, float p)
{
    float scale;
    size_t i;
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(mask);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(p_ok(p), BT_ERR_BAD_PARAM);

    scale = 1.0f / (1.0f - p);
    for (i = 0; i < (size_t)count; ++i) d_in[i] = mask[i] ? d_out[i] * scale : 0.0f;
    return BT_OK;
}
