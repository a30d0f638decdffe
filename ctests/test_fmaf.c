/* bt_fmaf_soft (the exact fused multiply-add used where the core has no FMA
 * instruction) against the C library's fmaf, which IEEE 754 and C99 require
 * to be correctly rounded: bit for bit over random operands chosen to hit the
 * hard cases (cancellation, halfway results, subnormals, overflow). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "biotrain/bt_math.h"
#include "bt_test.h"

static uint64_t state = 0x853c49e6748fea9bULL;
static uint32_t next_u32(void)
{
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(state >> 32) ^ (uint32_t)(state >> 7);
}
static float bits_to_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* A float with a random sign and mantissa and an exponent field in [lo, hi]. */
static float rand_float(int lo, int hi)
{
    const uint32_t e = (uint32_t)(lo + (int)(next_u32() % (uint32_t)(hi - lo + 1)));
    return bits_to_f((next_u32() & 0x807fffffu) | (e << 23));
}

static void check(float a, float b, float c)
{
    const float want = fmaf(a, b, c), got = bt_fmaf_soft(a, b, c);
    const int same = f_to_bits(want) == f_to_bits(got) || (want != want && got != got);
    if (!bt_test_check(same, __FILE__, __LINE__, "bt_fmaf_soft(a, b, c) has the bits of fmaf(a, b, c)") &&
        bt_test_counts()->failures <= 10)
        printf("     fmaf(%a, %a, %a): libm %a, bt_fmaf_soft %a\n", (double)a, (double)b, (double)c, (double)want,
               (double)got);
}

int main(void)
{
    long i;
    for (i = 0; i < 400000; ++i) {
        const float a = rand_float(100, 154), b = rand_float(100, 154);
        float c = rand_float(100, 154);
        check(a, b, c);
        /* c near -a*b: massive cancellation, the result is the product's tail */
        c = -(a * b);
        check(a, b, c);
        check(a, b, bits_to_f(f_to_bits(c) ^ (next_u32() & 0xffu)));
        /* c tiny against the product: the product rounded, with c deciding ties */
        check(a, b, rand_float(1, 100));
        /* products of short mantissas land exactly between two floats */
        {
            const float h = bits_to_f((f_to_bits(a) & 0xff800000u) | 0x00400000u | (next_u32() & 0x7u));
            const float k = bits_to_f((f_to_bits(b) & 0xff800000u) | 0x00400001u);
            check(h, k, 0.0f);
            check(h, k, bits_to_f((f_to_bits(h * k) & 0xff800000u) >> 0) * 0x1p-30f);
        }
        /* A * B odd with 25 bits: the product lies exactly halfway between
         * two floats, and a c far below it decides the direction. Rounding
         * the sum to double first would land on the tie and round to even. */
        {
            const uint32_t A = 2049u + 2u * (next_u32() % 1024u), B = 4097u + 2u * (next_u32() % 2048u);
            if (A * B >= (1u << 24)) {
                const int e = (int)(next_u32() % 60u) - 30;
                const float h = ldexpf((float)A, e), k = ldexpf((float)B, -12);
                const float tiny = ldexpf(rand_float(127, 127), e - 30 - (int)(next_u32() % 40u));
                check(h, k, tiny);
                check(-h, k, tiny);
            }
        }
        /* subnormal results and operands */
        check(rand_float(40, 90), rand_float(40, 90), rand_float(0, 3));
        check(rand_float(0, 2), rand_float(110, 140), rand_float(0, 2));
        /* overflow */
        check(rand_float(200, 254), rand_float(200, 254), rand_float(0, 254));
    }
    check(1.0f, 1.0f, -1.0f);
    check(0.0f, -1.0f, 0.0f);
    check(-0.0f, 1.0f, -0.0f);
    check(bits_to_f(0x7f800000u), 0.0f, 1.0f);
    check(bits_to_f(0x7f800000u), 1.0f, bits_to_f(0xff800000u));
    check(bits_to_f(0x7fc00000u), 1.0f, 1.0f);
    check(bits_to_f(0x7f800000u), 2.0f, 1.0f);
    printf("bt_fmaf_soft: %ld operand triples, %ld differ from fmaf\n", bt_test_counts()->checks,
           bt_test_counts()->failures);
    return bt_test_report("test_fmaf");
}
