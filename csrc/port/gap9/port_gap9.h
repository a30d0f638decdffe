/* GAP9 platform layer: what the portable port.h does not cover there, the
 * fork of a kernel's outer loop over the 8-core cluster.
 *
 * UNTESTED: written against the GAP SDK's PMSIS API (pi_cl_team_fork,
 * pi_core_id, pi_cl_team_nb_cores, pi_perf_*); no SDK or board was available.
 * The portable kernels in csrc/src do not call this: they run on one core
 * everywhere, which is what keeps their bits equal to the host's. A kernel
 * split with bt_gap9_parallel_for must give every output element to exactly
 * one core and keep each element's summation order, or the bits change. */
#ifndef BIOTRAIN_PORT_GAP9_H
#define BIOTRAIN_PORT_GAP9_H

#include "biotrain/port.h"
#include "biotrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BT_GAP9_CLUSTER_CORES 8

/* Body of a parallel loop: handles iterations [begin, end). */
typedef void (*bt_gap9_range_fn)(void *arg, int begin, int end);

/* Runs fn over [0, n) split into contiguous chunks, one per cluster core
 * (fork-join: returns when every core has finished). Call it from code that
 * runs on the cluster (inside a cluster task). cores = 0 uses all 8.
 * BT_ERR_BAD_SIZE for n < 0 or cores outside [0, 8]; BT_ERR_NULL_POINTER
 * for fn == NULL. */
bt_status bt_gap9_parallel_for(int n, int cores, bt_gap9_range_fn fn, void *arg);

#ifdef __cplusplus
}
#endif
#endif
