/* Every kernel of the runtime, one header per op family (conv.h, linear.h,
 * norm.h, activation.h, pool.h, elementwise.h, dropout.h, loss.h, sequence.h,
 * attention.h), each with
 * its float32 and fixed-point prototypes side by side.
 *
 * Conventions (every kernel in this header):
 *  - Names are bt_<op>_<pass>_<format>, the format last: f32, or q7 for the
 *    fixed-point kernels (int8 activations; qmath.h states their rules). Arguments: outputs first, inputs next, sizes last.
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
#ifndef BIOTRAIN_KERNELS_H
#define BIOTRAIN_KERNELS_H

#include "biotrain/types.h"
#include "biotrain/qmath.h"
#include "biotrain/conv.h"
#include "biotrain/linear.h"
#include "biotrain/norm.h"
#include "biotrain/activation.h"
#include "biotrain/pool.h"
#include "biotrain/elementwise.h"
#include "biotrain/dropout.h"
#include "biotrain/loss.h"
#include "biotrain/sequence.h"
#include "biotrain/attention.h"

#endif
