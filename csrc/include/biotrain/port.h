/* What differs per platform: a cycle (or instruction) counter and the split of
 * a kernel's outer loop across cores. Implemented in csrc/port/<platform>/. */
#ifndef BIOTRAIN_PORT_H
#define BIOTRAIN_PORT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A monotonically increasing counter: cycles or retired instructions on an
 * MCU, nanoseconds on a host. */
uint64_t bt_port_counter(void);
/* Name of what bt_port_counter counts ("ns", "minstret", "cycles"). */
const char *bt_port_counter_unit(void);

/* ---------------------------------------------------------------- split
 * A kernel's outer loop (output channels, input channels, rows) split across
 * the cores of a cluster. bt_port_parallel_for(n, fn, arg) calls
 * fn(arg, begin, end, worker) for worker = 0 .. workers-1 on the contiguous
 * chunk bt_port_chunk gives it; the chunks cover [0, n) exactly once, and a
 * kernel hands each worker only outputs no other worker writes, each built
 * in the single-core order, so the bits do not depend on the worker count.
 * Anything a kernel reduces across workers (the fixed-point saturation
 * statistics) goes into a per-worker slot merged after the join.
 *  host:   the workers run one after another on the calling thread
 *          (bt_port_set_workers: 1 by default; a test runs 8 simulated
 *          workers, also in reverse order, and compares the bits);
 *  riscv:  one hart, one worker;
 *  gap9:   pi_cl_team_fork over the 8 cluster cores (untested). */
#define BT_PORT_MAX_WORKERS 8

typedef void (*bt_port_range_fn)(void *arg, int begin, int end, int worker);

/* Runs fn over [0, n) in bt_port_workers() chunks; returns when all are done.
 * n <= 0 runs nothing. */
void bt_port_parallel_for(int n, bt_port_range_fn fn, void *arg);
/* Workers a bt_port_parallel_for uses (1 .. BT_PORT_MAX_WORKERS). */
int bt_port_workers(void);
/* Host (and single-hart riscv) only: simulate `workers` workers (clamped to
 * 1 .. BT_PORT_MAX_WORKERS), run in descending worker order when `reverse`. */
void bt_port_set_workers(int workers, int reverse);
/* Host only: run only worker `id`'s chunk (-1: all). A test runs each worker
 * alone and checks it writes its own channels and nothing else. */
void bt_port_set_only_worker(int id);

/* Worker `id`'s chunk [*begin, *end) of [0, n) split into `workers` near-equal
 * contiguous parts (the first n % workers get one more). */
static inline void bt_port_chunk(int n, int workers, int id, int *begin, int *end)
{
    const int q = n / workers, r = n % workers;
    *begin = id * q + (id < r ? id : r);
    *end = *begin + q + (id < r ? 1 : 0);
}

#ifdef __cplusplus
}
#endif
#endif
