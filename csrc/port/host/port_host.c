/* Host platform layer: a monotonic nanosecond clock. */
#if !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 199309L
#endif
#include <time.h>
#include "biotrain/port.h"

uint64_t bt_port_counter(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *bt_port_counter_unit(void) { return "ns"; }

/* Workers run one after another on the calling thread: the split's result
 * can be checked against one worker's, bit for bit. */
static int n_workers = 1;
static int run_reverse;
static int only_worker = -1;

void bt_port_set_only_worker(int id) { only_worker = id; }

void bt_port_set_workers(int workers, int reverse)
{
    n_workers = workers < 1 ? 1 : workers > BT_PORT_MAX_WORKERS ? BT_PORT_MAX_WORKERS : workers;
    run_reverse = reverse != 0;
}

int bt_port_workers(void) { return n_workers; }

void bt_port_parallel_for(int n, bt_port_range_fn fn, void *arg)
{
    int k;
    if (n <= 0) return;
    for (k = 0; k < n_workers; ++k) {
        const int id = run_reverse ? n_workers - 1 - k : k;
        int b, e;
        if (only_worker >= 0 && id != only_worker) continue;
        bt_port_chunk(n, n_workers, id, &b, &e);
        if (b < e) fn(arg, b, e, id);
    }
}
