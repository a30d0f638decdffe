/* GAP9 platform layer: the cluster's cycle counter and a fork of a loop over
 * the 8 cluster cores. See port_gap9.h: UNTESTED, written against the GAP
 * SDK's documented PMSIS API. Built only when the SDK is present. */
#include <stdint.h>
#include "pmsis.h"
#include "port_gap9.h"

/* pi_perf_read gives a 32-bit count, which wraps after 2^32 cycles (about
 * 11 s at 370 MHz). Widen it to 64 bits by counting the wraps we observe:
 * correct as long as the counter is read at least once per wrap period, which
 * a training loop that reads it around every step does. Per core: each core
 * has its own counters. */
static int perf_on;
static uint32_t perf_last;
static uint32_t perf_high;

uint64_t bt_port_counter(void)
{
    uint32_t now;
    if (!perf_on) {
        pi_perf_conf(1 << PI_PERF_CYCLES);
        pi_perf_reset();
        pi_perf_start();
        perf_on = 1;
        perf_last = 0;
        perf_high = 0;
    }
    now = (uint32_t)pi_perf_read(PI_PERF_CYCLES);
    if (now < perf_last) perf_high++;
    perf_last = now;
    return ((uint64_t)perf_high << 32) | now;
}

const char *bt_port_counter_unit(void) { return "cycles"; }

typedef struct {
    bt_gap9_range_fn fn;
    void *arg;
    int n;
} fork_job;

/* Runs on every core of the team: core k takes the k-th contiguous chunk. */
static void fork_entry(void *p)
{
    const fork_job *job = (const fork_job *)p;
    int cores = pi_cl_team_nb_cores();
    int id = pi_core_id();
    int chunk = (job->n + cores - 1) / cores;
    int begin = id * chunk;
    int end = begin + chunk < job->n ? begin + chunk : job->n;
    if (begin < end) job->fn(job->arg, begin, end);
}

bt_status bt_gap9_parallel_for(int n, int cores, bt_gap9_range_fn fn, void *arg)
{
    fork_job job;
    if (!fn) return BT_ERR_NULL_POINTER;
    if (n < 0 || cores < 0 || cores > BT_GAP9_CLUSTER_CORES) return BT_ERR_BAD_SIZE;
    if (n == 0) return BT_OK;
    job.fn = fn;
    job.arg = arg;
    job.n = n;
    /* The fork returns once every core of the team has run fork_entry. */
    pi_cl_team_fork(cores ? cores : BT_GAP9_CLUSTER_CORES, fork_entry, &job);
    return BT_OK;
}

/* bt_port_parallel_for: the portable split, one chunk per cluster core. */
typedef struct {
    bt_port_range_fn fn;
    void *arg;
    int n;
} port_job;

static void port_entry(void *p)
{
    const port_job *job = (const port_job *)p;
    int b, e;
    bt_port_chunk(job->n, pi_cl_team_nb_cores(), pi_core_id(), &b, &e);
    if (b < e) job->fn(job->arg, b, e, pi_core_id());
}

static int gap9_workers = BT_GAP9_CLUSTER_CORES;

void bt_port_set_workers(int workers, int reverse)
{
    (void)reverse;
    gap9_workers = workers < 1 ? 1 : workers > BT_PORT_MAX_WORKERS ? BT_PORT_MAX_WORKERS : workers;
}

int bt_port_workers(void) { return gap9_workers; }

void bt_port_parallel_for(int n, bt_port_range_fn fn, void *arg)
{
    port_job job;
    if (n <= 0) return;
    job.fn = fn;
    job.arg = arg;
    job.n = n;
    if (gap9_workers == 1) {
        fn(arg, 0, n, 0);
        return;
    }
    /* Returns once every core of the team has run port_entry. */
    pi_cl_team_fork(gap9_workers, port_entry, &job);
}
