/* groupnorm, q7: integer statistics, an integer reciprocal square root, and
 * the backward from the two saved int32 words per (sample, group).
 *
 * norm.h gives the formulas. Why they look the way they do:
 *  - Centering uses M*x - S instead of x - S/M, so no division (and no
 *    rounding) happens before the normalisation; its scale M cancels against
 *    v = M^2 (var + eps).
 *  - v spans many orders of magnitude, so 1/sqrt(v) is kept as a mantissa
 *    r (24-25 bits) and an exponent u; the square root is the exact integer
 *    floor of a normalised 62-bit value, then one rounded division.
 *  - The backward keeps gamma to BT_Q_GN_GAMMA_FRAC bits and x_hat to
 *    BT_Q_GN_XHAT_FRAC: both are far finer than the int8 data they meet, and
 *    they keep every int64 sum of a block of up to 2^22 values in range for
 *    any realistic gamma. The exact bound is checked up front. */
#include "biotrain/norm.h"
#include "../q7_internal.h"
#include "../kernel_checks.h"

#define XF BT_Q_GN_XHAT_FRAC
#define GF BT_Q_GN_GAMMA_FRAC
#define M_MAX ((int64_t)1 << 22)
#define R_MASK ((uint32_t)0x1ffffff) /* r takes 25 bits (it may reach 2^24) */

static bt_status check_shape(int n, int c, int hw, int groups)
{
    BT_REQUIRE(bt_sizes_ok(n, c, hw, 1), BT_ERR_BAD_SIZE);
    BT_REQUIRE(groups >= 1 && c % groups == 0, BT_ERR_GROUPS);
    BT_REQUIRE((int64_t)(c / groups) * hw <= M_MAX, BT_ERR_OVERFLOW);
    return BT_OK;
}

/* (M x - S) * 1/sqrt(v) with XF fractional bits. */
static inline int64_t xhat_of(int x, int64_t m, int64_t sum, int64_t r, int u)
{
    return q_shr((m * x - sum) * r, 54 - u - XF);
}

bt_status bt_groupnorm_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, int32_t *mean,
                                  int32_t *rstd, const int8_t *in, int in_frac,
                                  const int32_t *weight, int w_frac, const int32_t *bias,
                                  int b_frac, int n, int c, int hw, int groups, int32_t eps_mant,
                                  int eps_exp)
{
    int s, grp, ch, i;
    BT_TRY(check_shape(n, c, hw, groups));
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(mean);
    BT_REQUIRE_PTR(rstd);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(bt_q_frac_ok(out_frac) && bt_q_frac_ok(in_frac) && (!weight || bt_q_frac_ok(w_frac)) &&
                   (!bias || bt_q_frac_ok(b_frac)),
               BT_ERR_BAD_PARAM);
    BT_REQUIRE(eps_mant >= 0 && eps_exp >= -200 && eps_exp <= 200, BT_ERR_BAD_PARAM);
    {
        const int cpg = c / groups;
        const int64_t m = (int64_t)cpg * hw;
        const int gf = weight ? w_frac : 0;
        if (bias)
            for (ch = 0; ch < c; ++ch) {
                int64_t b = q_shr(bias[ch], b_frac - gf - XF);
                if ((b < 0 ? -b : b) >= ((int64_t)1 << 61)) return BT_ERR_OVERFLOW;
            }
        for (s = 0; s < n; ++s) {
            for (grp = 0; grp < groups; ++grp) {
                const size_t base = ((size_t)s * c + (size_t)grp * cpg) * (size_t)hw;
                const int8_t *x = in + base;
                int64_t sum = 0, sq = 0, d, e = 0, v, r;
                uint64_t vn, sroot;
                int u;
                size_t j;
                for (j = 0; j < (size_t)m; ++j) {
                    sum += x[j];
                    sq += (int64_t)x[j] * x[j];
                }
                d = m * sq - sum * sum;
                if (eps_mant > 0) {
                    int64_t e1 = q_shr((int64_t)eps_mant * m, eps_exp - 2 * in_frac);
                    e = e1 >= (((int64_t)1 << 61) / m) ? ((int64_t)1 << 61) : e1 * m;
                }
                v = d + e;
                if (v < 1) v = 1;
                u = (62 - bt_q_bitlen((uint64_t)v)) / 2;
                vn = (uint64_t)v << (2 * u);
                sroot = bt_q_isqrt64(vn);
                r = q_div((int64_t)1 << 54, (int64_t)sroot);
                mean[(size_t)s * groups + grp] = (int32_t)sum;
                rstd[(size_t)s * groups + grp] = (int32_t)((uint32_t)r | ((uint32_t)u << 25));
                for (ch = 0; ch < cpg; ++ch) {
                    const int cc = grp * cpg + ch;
                    const int64_t gq = weight ? weight[cc] : 1;
                    const int64_t b = bias ? q_shr(bias[cc], b_frac - gf - XF) : 0;
                    const int8_t *xc = x + (size_t)ch * hw;
                    int8_t *yc = out + base + (size_t)ch * hw;
                    for (i = 0; i < hw; ++i) {
                        const int64_t xh = xhat_of(xc[i], m, sum, r, u);
                        yc[i] = bt_q_narrow7(gq * xh + b, gf + XF - out_frac, st);
                    }
                }
            }
        }
    }
    return BT_OK;
}

/* Unpacks a saved rstd word. */
static void unpack(int32_t word, int64_t *r, int *u)
{
    uint32_t w = (uint32_t)word;
    *r = (int64_t)(w & R_MASK);
    *u = (int)(w >> 25);
}

bt_status bt_groupnorm_backward_input_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st,
                                         const int8_t *d_out, int d_out_frac, const int8_t *in,
                                         int in_frac, const int32_t *mean, const int32_t *rstd,
                                         const int32_t *weight, int w_frac, int n, int c, int hw,
                                         int groups)
{
    int s, grp, ch, i;
    BT_TRY(check_shape(n, c, hw, groups));
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(mean);
    BT_REQUIRE_PTR(rstd);
    BT_REQUIRE(bt_q_frac_ok(d_in_frac) && bt_q_frac_ok(d_out_frac) && bt_q_frac_ok(in_frac) &&
                   (!weight || bt_q_frac_ok(w_frac)),
               BT_ERR_BAD_PARAM);
    {
        const int cpg = c / groups;
        const int64_t m = (int64_t)cpg * hw;
        int64_t gmax = 0, hmax, xmax;
        int bm, bh, bx;
        /* Bounds: |h| <= hmax, |x_hat| <= xmax (the normalised values have
         * mean square <= 1), so |A| <= M hmax, |B| <= M hmax (2^XF + 1) by
         * Cauchy-Schwarz, |t| <= 2 hmax + xmax (hmax (2^XF + 1) + 1) 2^-2XF + 2,
         * and t is multiplied by k_m <= 2^20. */
        for (ch = 0; ch < c; ++ch) {
            int64_t g = weight ? q_shr(weight[ch], w_frac - GF) : ((int64_t)1 << GF);
            if (g < 0) g = -g;
            if (g > gmax) gmax = g;
        }
        if (gmax >= ((int64_t)1 << 40)) return BT_ERR_OVERFLOW;
        hmax = gmax * BT_Q7_ABS;
        xmax = (((int64_t)bt_q_isqrt64((uint64_t)m) + 1) << XF) + 1;
        bm = bt_q_bitlen((uint64_t)m);
        bh = bt_q_bitlen((uint64_t)hmax);
        bx = bt_q_bitlen((uint64_t)xmax);
        if (bm + bh + XF + 2 > 62 || bx + bh + XF + 3 > 62 || bx + bh + 3 + 21 > 62) return BT_ERR_OVERFLOW;
        for (s = 0; s < n; ++s) {
            for (grp = 0; grp < groups; ++grp) {
                const size_t base = ((size_t)s * c + (size_t)grp * cpg) * (size_t)hw;
                const int64_t sum = mean[(size_t)s * groups + grp];
                int64_t r, a_sum = 0, b_sum = 0, a, b, k, km;
                int u, ke, shift;
                unpack(rstd[(size_t)s * groups + grp], &r, &u);
                for (ch = 0; ch < cpg; ++ch) {
                    const int cc = grp * cpg + ch;
                    const int64_t g = weight ? q_shr(weight[cc], w_frac - GF) : ((int64_t)1 << GF);
                    const int8_t *xc = in + base + (size_t)ch * hw;
                    const int8_t *dc = d_out + base + (size_t)ch * hw;
                    for (i = 0; i < hw; ++i) {
                        const int64_t h = dc[i] * g;
                        a_sum += h;
                        b_sum += h * xhat_of(xc[i], m, sum, r, u);
                    }
                }
                a = q_div(a_sum, m);
                b = q_div(b_sum, m);
                k = m * r;
                ke = bt_q_bitlen((uint64_t)k) > 20 ? bt_q_bitlen((uint64_t)k) - 20 : 0;
                km = q_shr(k, ke);
                shift = 54 + d_out_frac + GF - in_frac - d_in_frac - u - ke;
                for (ch = 0; ch < cpg; ++ch) {
                    const int cc = grp * cpg + ch;
                    const int64_t g = weight ? q_shr(weight[cc], w_frac - GF) : ((int64_t)1 << GF);
                    const int8_t *xc = in + base + (size_t)ch * hw;
                    const int8_t *dc = d_out + base + (size_t)ch * hw;
                    int8_t *oc = d_in + base + (size_t)ch * hw;
                    for (i = 0; i < hw; ++i) {
                        const int64_t xh = xhat_of(xc[i], m, sum, r, u);
                        const int64_t t = dc[i] * g - a - q_shr(xh * b, 2 * XF);
                        oc[i] = bt_q_narrow7(t * km, shift, st);
                    }
                }
            }
        }
    }
    return BT_OK;
}

bt_status bt_groupnorm_backward_weight_q7(int32_t *d_weight, int dw_frac, int32_t *d_bias,
                                          int db_frac, bt_q_stats *st, const int8_t *d_out,
                                          int d_out_frac, const int8_t *in, int in_frac,
                                          const int32_t *mean, const int32_t *rstd, int n, int c,
                                          int hw, int groups)
{
    int s, ch, i;
    BT_TRY(check_shape(n, c, hw, groups));
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(mean);
    BT_REQUIRE_PTR(rstd);
    BT_REQUIRE(d_weight || d_bias, BT_ERR_NULL_POINTER);
    BT_REQUIRE(bt_q_frac_ok(d_out_frac) && bt_q_frac_ok(in_frac) && (!d_weight || bt_q_frac_ok(dw_frac)) &&
                   (!d_bias || bt_q_frac_ok(db_frac)),
               BT_ERR_BAD_PARAM);
    {
        const int cpg = c / groups;
        const int64_t m = (int64_t)cpg * hw;
        for (ch = 0; ch < c; ++ch) {
            const int grp = ch / cpg;
            int64_t sg = 0, sb = 0;
            for (s = 0; s < n; ++s) {
                const size_t base = ((size_t)s * c + (size_t)ch) * (size_t)hw;
                const int64_t sum = mean[(size_t)s * groups + grp];
                int64_t r;
                int u;
                unpack(rstd[(size_t)s * groups + grp], &r, &u);
                for (i = 0; i < hw; ++i) {
                    const int dy = d_out[base + (size_t)i];
                    sb += dy;
                    if (d_weight) sg += dy * xhat_of(in[base + (size_t)i], m, sum, r, u);
                }
            }
            if (d_weight) d_weight[ch] = bt_q_acc32(d_weight[ch], sg, d_out_frac + XF - dw_frac, st);
            if (d_bias) d_bias[ch] = bt_q_acc32(d_bias[ch], sb, d_out_frac - db_frac, st);
        }
    }
    return BT_OK;
}
