/* Fixed point: the rounding and saturation rules, the integer elementary
 * functions (exp, log2, isqrt) and scale choice. qmath.h states the rules; everything here is integer C99. */
#include <string.h>
#include "biotrain/qmath.h"
#include "kernels/q7_internal.h"
#include "kernels/kernel_checks.h"

int bt_q_bitlen(uint64_t v)
{
    int n = 0;
    while (v) { ++n; v >>= 1; }
    return n;
}

int64_t bt_q_shift_round(int64_t x, int shift) { return q_shr(x, shift); }

int64_t bt_q_div_round(int64_t num, int64_t den) { return q_div(num, den); }

int64_t bt_q_clamp(int64_t v, int64_t lim, bt_q_stats *st) { return q_clamp(v, lim, st); }

uint64_t bt_q_isqrt64(uint64_t v)
{
    /* digit-by-digit, two bits at a time: the exact floor */
    uint64_t res = 0, bit = (uint64_t)1 << 62;
    while (bit > v) bit >>= 2;
    while (bit) {
        if (v >= res + bit) {
            v -= res + bit;
            res = (res >> 1) + bit;
        } else {
            res >>= 1;
        }
        bit >>= 2;
    }
    return res;
}

/* round(2^30 * 2^(-2^-k)) for k = 1..16 */
static const int32_t exp2_neg_q30[16] = {
    759250125, 902905651, 984625594, 1028218693, 1050733751, 1062175491, 1067942999, 1070838486,
    1072289173, 1073015252, 1073378477, 1073560135, 1073650976, 1073696399, 1073719111, 1073730468};

int32_t bt_q_exp_neg_q30(int32_t x, int frac)
{
    int64_t t, a;
    int64_t acc = (int64_t)1 << 30;
    int k, n;
    if (x >= 0) return (int32_t)acc;
    /* t = x * log2(e) with 16 fractional bits (<= 0) */
    t = q_shr((int64_t)x * LOG2E_Q30, frac + 30 - 16);
    a = -t;
    if (a >= ((int64_t)40 << 16)) return 0; /* below 2^-40: rounds to 0 in Q30 */
    n = (int)(a >> 16);
    for (k = 1; k <= 16; ++k)
        if ((a >> (16 - k)) & 1) acc = q_shr(acc * exp2_neg_q30[k - 1], 30);
    return (int32_t)q_shr(acc, n);
}

int64_t bt_q_log2_q16(uint64_t v, int frac)
{
    int L = bt_q_bitlen(v), i;
    int64_t m, ip = (int64_t)(L - 1) - frac, fp = 0;
    if (v == 0) return 0;
    /* the mantissa in Q30, [2^30, 2^31] (v < 2^62 by contract) */
    if (L - 1 <= 30) m = (int64_t)(v << (30 - (L - 1)));
    else m = q_shr((int64_t)v, L - 1 - 30);
    if (m >= ((int64_t)1 << 31)) { m >>= 1; ++ip; } /* rounded up to 2^31 exactly */
    for (i = 0; i < 16; ++i) {
        m = q_shr(m * m, 30);
        fp <<= 1;
        if (m >= ((int64_t)1 << 31)) {
            fp |= 1;
            m = q_shr(m, 1);
        }
    }
    return ip * 65536 + fp;
}

bt_status bt_q_decode_f32(int32_t *mant, int *exp, const float *value)
{
    uint32_t bits;
    int e;
    int32_t m;
    BT_REQUIRE_PTR(mant);
    BT_REQUIRE_PTR(exp);
    BT_REQUIRE_PTR(value);
    memcpy(&bits, value, sizeof bits);
    e = (int)((bits >> 23) & 0xffu);
    if (e == 0xff) return BT_ERR_NONFINITE;
    m = (int32_t)(bits & 0x7fffffu);
    if (e == 0) {
        e = 1;          /* subnormal: no implicit bit */
    } else {
        m |= 0x800000;
    }
    if (m == 0) {
        *mant = 0;
        *exp = 0;
        return BT_OK;
    }
    /* value = m * 2^(e - 150) */
    *mant = (bits >> 31) ? -m : m;
    *exp = 150 - e;
    return BT_OK;
}

int bt_q_frac_adapt(int frac, uint32_t absmax, int top)
{
    int f = absmax == 0 ? frac + 4 : frac + top - bt_q_bitlen(absmax);
    if (f < BT_Q_FRAC_MIN) f = BT_Q_FRAC_MIN;
    if (f > BT_Q_FRAC_MAX) f = BT_Q_FRAC_MAX;
    return f;
}

uint32_t bt_q31_absmax(const int32_t *v, size_t count)
{
    uint32_t m = 0;
    size_t i;
    if (!v) return 0;
    for (i = 0; i < count; ++i) {
        uint32_t a = v[i] < 0 ? (uint32_t)(-(int64_t)v[i]) : (uint32_t)v[i];
        if (a > m) m = a;
    }
    return m;
}
