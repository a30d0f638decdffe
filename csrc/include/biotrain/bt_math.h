/* The runtime's own elementary functions.
 * libm's expf/logf/tanhf differ in their last bits between C libraries
 * (glibc, picolibc, newlib), which would break bit-exact agreement between the
 * host and the MCU. These use only +, -, *, / and integer bit manipulation on
 * float32, each correctly rounded by IEEE 754, so with -ffp-contract=off they
 * give the same bits on every platform. Accuracy: a few ulp. */
#ifndef BIOTRAIN_BT_MATH_H
#define BIOTRAIN_BT_MATH_H

#ifdef __cplusplus
extern "C" {
#endif

float bt_expf(float x);
float bt_logf(float x);
float bt_tanhf(float x);
/* IEEE 754 requires sqrt to be correctly rounded, so this is portable. */
float bt_sqrtf(float x);
int bt_isfinitef(float x);

#ifdef __cplusplus
}
#endif
#endif
