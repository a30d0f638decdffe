/* float32 forward and backward kernels.
 *
 * Conventions (every kernel in this header):
 *  - Names are bt_<op>_<pass>_f32. Arguments: outputs first, inputs next, sizes last.
 *  - Layout is NCHW, contiguous. A Conv1d is the H = 1 case of Conv2d.
 *  - Every entry point returns a bt_status; on any status but BT_OK nothing is written.
 *  - Backward comes split: _backward_input (gradient w.r.t. the input) and
 *    _backward_weight (gradient w.r.t. weight and bias), so a frozen layer skips
 *    the second and the first layer skips the first.
 *  - Weight gradients ACCUMULATE (+=): zeroing is the caller's job, and gradient
 *    accumulation over micro-batches comes for free.
 *  - Input gradients OVERWRITE (=): this lets the planner put an input gradient
 *    in the buffer of the activation it replaces. Where a kernel allows d_in to
 *    alias another argument, its comment says so. When an op needs both, call
 *    _backward_weight before _backward_input.
 *  - All memory comes from the caller; kernels never allocate. Where a kernel
 *    needs scratch, a _workspace_size companion says how many bytes.
 *  - No libm calls whose results may differ between C libraries: exp, log and
 *    tanh come from bt_math.h. Each multiply-accumulate of conv and linear is
 *    one fused multiply-add (bt_fmaf, correctly rounded). Compile with
 *    -ffp-contract=off so the compiler fuses nothing else: then host and MCU
 *    agree bit for bit.
 */
#ifndef BIOTRAIN_KERNELS_F32_H
#define BIOTRAIN_KERNELS_F32_H

#include <stddef.h>
#include <stdint.h>
#include "biotrain/status.h"
#include "biotrain/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- conv2d */
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

/* Validates the shape and gives the output size; h_out/w_out may be NULL. */
bt_status bt_conv2d_check(const bt_conv2d_shape *s, int *h_out, int *w_out);

bt_status bt_conv2d_forward_f32(float *out, const float *in, const float *weight,
                                const float *bias, const bt_conv2d_shape *s);
/* d_in [n, c_in, h_in, w_in] = conv_transpose(d_out, weight). */
bt_status bt_conv2d_backward_input_f32(float *d_in, const float *d_out, const float *weight,
                                       const bt_conv2d_shape *s);
/* d_weight += corr(in, d_out); d_bias (may be NULL) += sum of d_out. */
bt_status bt_conv2d_backward_weight_f32(float *d_weight, float *d_bias, const float *d_out,
                                        const float *in, const bt_conv2d_shape *s);

/* ---------------------------------------------------------------- linear */
/* in [n, in_f], weight [out_f, in_f] (PyTorch layout), bias [out_f] (may be NULL),
 * out [n, out_f]. */
bt_status bt_linear_forward_f32(float *out, const float *in, const float *weight,
                                const float *bias, int n, int in_f, int out_f);
bt_status bt_linear_backward_input_f32(float *d_in, const float *d_out, const float *weight,
                                       int n, int in_f, int out_f);
bt_status bt_linear_backward_weight_f32(float *d_weight, float *d_bias, const float *d_out,
                                        const float *in, int n, int in_f, int out_f);

/* ------------------------------------------------------------- groupnorm */
/* in/out [n, c, hw]; groups divides c; weight, bias [c] (both may be NULL =
 * no affine); mean, rstd [n, groups] are the only statistics saved for the
 * backward. rstd = 1 / sqrt(var + eps), var the biased variance. */
bt_status bt_groupnorm_forward_f32(float *out, float *mean, float *rstd, const float *in,
                                   const float *weight, const float *bias,
                                   int n, int c, int hw, int groups, float eps);
/* d_in may alias in or d_out (each (sample, group) block is reduced first). */
bt_status bt_groupnorm_backward_input_f32(float *d_in, const float *d_out, const float *in,
                                          const float *mean, const float *rstd,
                                          const float *weight,
                                          int n, int c, int hw, int groups);
bt_status bt_groupnorm_backward_weight_f32(float *d_weight, float *d_bias, const float *d_out,
                                           const float *in, const float *mean,
                                           const float *rstd, int n, int c, int hw, int groups);

/* ------------------------------------------------------------- batchnorm */
/* Training mode: batch statistics over (n, hw) per channel; saves mean, rstd
 * [c]; updates running_mean/running_var (may be NULL) with
 * r = (1 - momentum) * r + momentum * batch_stat, the variance unbiased
 * (n*hw/(n*hw-1)) as PyTorch does. */
bt_status bt_batchnorm_forward_train_f32(float *out, float *mean, float *rstd,
                                         float *running_mean, float *running_var,
                                         const float *in, const float *weight,
                                         const float *bias, int n, int c, int hw,
                                         float momentum, float eps);
/* Eval mode: normalises with the running statistics. */
bt_status bt_batchnorm_forward_eval_f32(float *out, const float *in, const float *running_mean,
                                        const float *running_var, const float *weight,
                                        const float *bias, int n, int c, int hw, float eps);
/* Backward of training mode. d_in may alias in or d_out. */
bt_status bt_batchnorm_backward_input_f32(float *d_in, const float *d_out, const float *in,
                                          const float *mean, const float *rstd,
                                          const float *weight, int n, int c, int hw);
bt_status bt_batchnorm_backward_weight_f32(float *d_weight, float *d_bias, const float *d_out,
                                           const float *in, const float *mean,
                                           const float *rstd, int n, int c, int hw);

/* ------------------------------------------------------------ activation */
/* Elementwise over count values. out may alias in; d_in may alias d_out. */
bt_status bt_relu_forward_f32(float *out, const float *in, int count);
/* Uses the forward OUTPUT, so ReLU runs in place. */
bt_status bt_relu_backward_f32(float *d_in, const float *d_out, const float *out, int count);

/* ReLU that saves one bit per element for its backward instead of its
 * output: mask [ceil(count/32)] words, bit i%32 of word i/32 set where
 * in[i] > 0. 32x less memory than keeping the output. */
bt_status bt_relu_forward_mask_f32(float *out, uint32_t *mask, const float *in, int count);
bt_status bt_relu_backward_mask_f32(float *d_in, const float *d_out, const uint32_t *mask, int count);
/* Words of a ReLU mask for count elements. */
size_t bt_relu_mask_words(int count);

/* ELU(x) = x for x > 0, alpha * (exp(x) - 1) otherwise. */
bt_status bt_elu_forward_f32(float *out, const float *in, int count, float alpha);
/* Uses the forward OUTPUT (dy/dx = y + alpha for x <= 0), so ELU runs in place. */
bt_status bt_elu_backward_f32(float *d_in, const float *d_out, const float *out, int count,
                              float alpha);

/* GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
bt_status bt_gelu_forward_f32(float *out, const float *in, int count);
/* Uses the forward INPUT. */
bt_status bt_gelu_backward_f32(float *d_in, const float *d_out, const float *in, int count);

/* Softmax over the last axis: in/out [rows, cols]. */
bt_status bt_softmax_forward_f32(float *out, const float *in, int rows, int cols);
/* Uses the forward OUTPUT. d_in may alias d_out. */
bt_status bt_softmax_backward_f32(float *d_in, const float *d_out, const float *out, int rows,
                                  int cols);

/* ------------------------------------------------------------------ pool */
/* in [n, c, h_in, w_in], out [n, c, h_out, w_out], h_out = (h_in + 2*pad_h -
 * k_h) / stride_h + 1. Average pooling counts padded zeros in the divisor
 * (PyTorch's count_include_pad=True); max pooling ignores padding. */
typedef struct {
    int n, c, h_in, w_in;
    int k_h, k_w;
    int stride_h, stride_w;
    int pad_h, pad_w;
} bt_pool2d_shape;

bt_status bt_pool2d_check(const bt_pool2d_shape *s, int *h_out, int *w_out);

bt_status bt_avgpool2d_forward_f32(float *out, const float *in, const bt_pool2d_shape *s);
bt_status bt_avgpool2d_backward_f32(float *d_in, const float *d_out, const bt_pool2d_shape *s);

/* argmax [n, c, h_out, w_out] receives the flat index (h * w_in + w) of each
 * window's maximum inside its (sample, channel) plane; the first maximum wins.
 * Pass argmax = NULL to save nothing and recompute it in the backward. */
bt_status bt_maxpool2d_forward_f32(float *out, int32_t *argmax, const float *in,
                                   const bt_pool2d_shape *s);
bt_status bt_maxpool2d_backward_f32(float *d_in, const float *d_out, const int32_t *argmax,
                                    const bt_pool2d_shape *s);
/* Backward without saved indices: recomputes the argmax from the forward input. */
bt_status bt_maxpool2d_backward_recompute_f32(float *d_in, const float *d_out, const float *in,
                                              const bt_pool2d_shape *s);

/* in [n, c, hw] -> out [n, c]. */
bt_status bt_global_avgpool_forward_f32(float *out, const float *in, int n, int c, int hw);
bt_status bt_global_avgpool_backward_f32(float *d_in, const float *d_out, int n, int c, int hw);

/* ------------------------------------------------------------ elementwise */
/* out = a + b (residual). out may alias a or b. */
bt_status bt_add_forward_f32(float *out, const float *a, const float *b, int count);
/* d_a = d_out, d_b = d_out; either may be NULL (not needed) or alias d_out. */
bt_status bt_add_backward_f32(float *d_a, float *d_b, const float *d_out, int count);
/* acc += x: used to sum the gradients of a tensor read by several ops. */
bt_status bt_accumulate_f32(float *acc, const float *x, int count);

/* ---------------------------------------------------------------- dropout */
/* Inverted dropout: keep with probability 1 - p and scale by 1 / (1 - p).
 * mask [count] gets 1 for kept, 0 for dropped. The mask comes from bt_rng with
 * integer-only arithmetic, so the same seed gives the same mask on every
 * platform. 0 <= p < 1. */
bt_status bt_dropout_forward_f32(float *out, uint8_t *mask, const float *in, int count,
                                 float p, bt_rng *rng);
bt_status bt_dropout_backward_f32(float *d_in, const float *d_out, const uint8_t *mask,
                                  int count, float p);

/* ------------------------------------------------------------------- loss */
/* Softmax cross-entropy, mean over the n rows, integer labels in [0, classes).
 * logits, probs [n, classes]; probs (the softmax) is saved for the backward. */
bt_status bt_cross_entropy_forward_f32(float *loss, float *probs, const float *logits,
                                       const int32_t *labels, int n, int classes);
/* d_logits = d_loss * (probs - onehot(labels)) / n. d_loss is the upstream
 * gradient of the scalar loss (1 for a plain step; m/B for a micro-batch of m
 * rows in a batch of B). d_logits may alias probs. */
bt_status bt_cross_entropy_backward_f32(float *d_logits, const float *probs,
                                        const int32_t *labels, float d_loss, int n,
                                        int classes);

/* Mean squared error over count values: loss = mean((pred - target)^2). */
bt_status bt_mse_forward_f32(float *loss, const float *pred, const float *target, int count);
/* d_pred = d_loss * 2 (pred - target) / count. */
bt_status bt_mse_backward_f32(float *d_pred, const float *pred, const float *target,
                              float d_loss, int count);

#ifdef __cplusplus
}
#endif
#endif
