/* Types shared by every op family and both number formats: the number
 * formats, the shapes the conv and pool kernels take, and the statistics a
 * fixed-point kernel records. */
#ifndef BIOTRAIN_TYPES_H
#define BIOTRAIN_TYPES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The number formats a plan, a session and a kernel run in. Fixed point:
 * int8 activations and gradients, int32 masters, one power-of-two scale per
 * tensor (qmath.h). */
typedef enum {
    BT_DTYPE_F32 = 0,
    BT_DTYPE_FIXED = 1,
    BT_DTYPE_COUNT_
} bt_dtype;

/* ---- conv2d */
/* Shapes: in [n, c_in, h_in, w_in], weight [c_out, c_in/groups, k_h, k_w],
 * bias [c_out] (may be NULL), out [n, c_out, h_out, w_out] with
 * h_out = (h_in + 2*pad_h - dil_h*(k_h-1) - 1) / stride_h + 1 (same for w). */
typedef struct {
    int n, c_in, h_in, w_in;
    int c_out, k_h, k_w;
    int stride_h, stride_w;
    int pad_h, pad_w;
    int dil_h, dil_w;
    int groups;
} bt_conv2d_shape;

/* ---- pool2d */
/* in [n, c, h_in, w_in], out [n, c, h_out, w_out], h_out = (h_in + 2*pad_h -
 * k_h) / stride_h + 1. Average pooling counts padded zeros in the divisor
 * (PyTorch's count_include_pad=True); max pooling ignores padding. */
typedef struct {
    int n, c, h_in, w_in;
    int k_h, k_w;
    int stride_h, stride_w;
    int pad_h, pad_w;
} bt_pool2d_shape;

/* ---- fixed point: value ranges and the statistics every narrowing kernel records */
#define BT_Q7_MAX 127
#define BT_Q15_MAX 32767
#define BT_Q31_MAX 2147483647L
#define BT_Q_FRAC_MIN (-32)
#define BT_Q_FRAC_MAX 48
/* Magnitude at which bt_q_shift_round's left shifts saturate. */
#define BT_Q_BIG ((int64_t)1 << 62)
/* Softmax probabilities: 1.0 is 2^14, exactly representable in int16. */
#define BT_Q_PROB_FRAC 14
/* Loss values (nats). */
#define BT_Q_LOSS_FRAC 16
/* Groupnorm: the normalised value x_hat carries this many fractional bits,
 * and its backward reads the scale (gamma) rounded to this many. */
#define BT_Q_GN_XHAT_FRAC 10
#define BT_Q_GN_GAMMA_FRAC 10

typedef struct {
    uint32_t saturated;  /* values clamped to their type's range (added to) */
    uint32_t absmax;     /* largest |value| before clamping, output units (max-ed into) */
} bt_q_stats;

#ifdef __cplusplus
}
#endif
#endif
