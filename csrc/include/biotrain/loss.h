/* Losses: softmax cross-entropy (float32 and fixed point) and mean squared
 * error (float32). */
#ifndef BIOTRAIN_LOSS_H
#define BIOTRAIN_LOSS_H

#include <stddef.h>
#include <stdint.h>
#include "biotrain/status.h"
#include "biotrain/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- float32 */
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

/* ---- fixed point (q7 activations, int32 masters and gradients; qmath.h states the rules) */
/* Integer softmax cross-entropy over n rows of `classes` logits (int8,
 * logit_frac). Per row, with m the row maximum (the running maximum makes
 * every exponent <= 0):
 *   e_j = bt_q_exp_neg_q30(z_j - m, logit_frac), S = sum e_j
 *   probs_j = round(e_j * 2^14 / S)                       (int16, BT_Q_PROB_FRAC)
 *   loss_row = round(log2(S * 2^-30) [Q16] * ln 2 [Q30] * 2^-30)
 *              - round((z_y - m) * 2^(16 - logit_frac))   (Q16 nats)
 * *loss = round(sum loss_row / n) (Q16, the mean over the rows). */
bt_status bt_cross_entropy_forward_q7(int32_t *loss, int16_t *probs, const int8_t *logits,
                                      int logit_frac, const int32_t *labels, int n, int classes);
/* d_logits = clamp8(round((probs - 2^14 onehot) * 2^(d_frac - 14) / den)):
 * den is the number of samples the loss is averaged over (the batch of the
 * optimizer step; a micro-batch of m rows passes the whole batch size).
 * d_logits may alias probs (each int8 lands on bytes already read). */
bt_status bt_cross_entropy_backward_q7(int8_t *d_logits, int d_frac, bt_q_stats *st,
                                       const int16_t *probs, const int32_t *labels, int den, int n,
                                       int classes);

#ifdef __cplusplus
}
#endif
#endif
