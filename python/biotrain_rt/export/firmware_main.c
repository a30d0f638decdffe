/* The firmware application (copied by biotrain_rt.export.firmware next to
 * the generated bt_fw_model.h/.c and bt_fw_data.c; compiled with the core
 * under -std=c99 -pedantic -Wall -Wextra -Werror).
 *
 * It plans the training step with the same C planner as the host (at boot,
 * and fails unless it gets the host's peak), initialises a session over a
 * static arena of exactly that size, loads the exported session state (the
 * portable blob of bt_session_save_state: parameters, optimizer state, and in
 * fixed point every scale and adaptation window), calibrates when the host
 * trainer had not yet (fixed point), runs BT_FW_STEPS training steps and
 * prints, one line each:
 *   plan peak_bytes=... exported_bytes=... arena_bytes=... instret=...
 *   init checksum=0x........ state=0x........
 *   calibrate rounds=<r> checksum=0x........ state=0x........ instret=...   (fixed point, when needed)
 *   step <s> loss=0x........ checksum=0x........ state=0x........ instret=...
 *   test correct=<k> total=<n> logits=0x........ [logits_frac=<f>] instret=...
 *   total train_instret=... instret=...
 *   done status=0
 * loss: the loss's bits (float32, or the Q16 integer in fixed point);
 * checksum: bt_session_checksum (parameters, and in fixed point their
 * scales); state: bt_session_state_checksum (everything else the next step
 * reads). The number format changes only the sample type, the loss and
 * logits conversions and the calibration. A failure prints "FAIL ..." and
 * exits non-zero (semihosting exit status). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "biotrain/exec.h"
#include "biotrain/graph.h"
#include "biotrain/plan.h"
#include "biotrain/port.h"
#include "bt_fw_model.h"

#ifndef BT_FW_TARGET_NAME
#define BT_FW_TARGET_NAME "unknown"
#endif

#if defined(__GNUC__)
#define BT_FW_ALIGNED __attribute__((aligned(BT_ARENA_ALIGN)))
#else
#define BT_FW_ALIGNED
#endif

#if BT_FW_FIXED
typedef int8_t bt_fw_logit;
#define BT_FW_DTYPE_TAG " dtype=fixed"
#else
typedef float bt_fw_logit;
#define BT_FW_DTYPE_TAG ""
#endif

static bt_graph graph;
static bt_plan plan;
static bt_session session;
/* The arena, exactly the planned size, aligned as bt_session_init requires. */
static uint8_t arena[BT_FW_ARENA_BYTES] BT_FW_ALIGNED;
static bt_fw_logit logits[BT_FW_N_TEST_ALLOC * BT_FW_CLASSES];

/* The integer-only printf has no 64-bit conversion: format by hand. */
static const char *u64_str(uint64_t v, char buf[21])
{
    char tmp[21];
    int n = 0, i;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0u);
    for (i = 0; i < n; ++i) buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return buf;
}

static uint32_t fnv1a(const void *p, size_t n)
{
    const uint8_t *b = (const uint8_t *)p;
    uint32_t h = 2166136261u;
    size_t i;
    for (i = 0; i < n; ++i) {
        h ^= b[i];
        h *= 16777619u;
    }
    return h;
}

/* The loss as the line prints it: its bits. */
static uint32_t loss_bits(const bt_value *v)
{
#if BT_FW_FIXED
    return (uint32_t)v->q;
#else
    uint32_t u;
    memcpy(&u, &v->f32, sizeof u);
    return u;
#endif
}

static int fail(const char *what, bt_status st)
{
    printf("FAIL %s: %s (status %d, node %d)\n", what, bt_status_str(st), (int)st, session.error_node);
    return 1;
}

static void print_state(const char *head)
{
    printf("%s checksum=0x%08lx state=0x%08lx", head, (unsigned long)bt_session_checksum(&session),
           (unsigned long)bt_session_state_checksum(&session));
}

static int fw_run(void)
{
    bt_status st;
    bt_plan_opts po;
    bt_optim_cfg oc;
    uint64_t t_start, t0, t1, t_train = 0;
    char b1[21], b2[21];
    int s;

    t_start = bt_port_counter();
    printf("biotrain-rt firmware model=%s target=%s counter=%s steps=%d batch=%d%s\n", BT_FW_MODEL_NAME,
           BT_FW_TARGET_NAME, bt_port_counter_unit(), BT_FW_STEPS, BT_FW_BATCH, BT_FW_DTYPE_TAG);
    if ((st = bt_fw_build_graph(&graph)) != BT_OK) return fail("graph", st);
    bt_fw_plan_opts(&po);
    t0 = bt_port_counter();
    if ((st = bt_plan_build(&plan, &graph, &po)) != BT_OK) return fail("plan", st);
    t1 = bt_port_counter();
    printf("plan peak_bytes=%lu exported_bytes=%lu arena_bytes=%lu instret=%s\n", (unsigned long)plan.peak_bytes,
           (unsigned long)BT_FW_PEAK_BYTES, (unsigned long)sizeof arena, u64_str(t1 - t0, b1));
    if (plan.peak_bytes != (size_t)BT_FW_PEAK_BYTES) {
        printf("FAIL plan: the planner here needs %lu bytes, the host planned %lu\n", (unsigned long)plan.peak_bytes,
               (unsigned long)BT_FW_PEAK_BYTES);
        return 2;
    }
    bt_fw_optim_cfg(&oc);
    st = bt_session_init(&session, &graph, &plan, arena, sizeof arena, &oc, BT_FW_SEED);
    if (st != BT_OK) return fail("session", st);
    if ((st = bt_session_load_state(&session, bt_fw_state, BT_FW_STATE_BYTES)) != BT_OK) return fail("state", st);
    print_state("init");
    printf("\n");

    if (BT_FW_CAL_ROUNDS > 0) {
        t0 = bt_port_counter();
        st = bt_calibrate(&session, bt_fw_x_cal, BT_FW_X_FRAC, bt_fw_y_cal, BT_FW_N_CAL, BT_FW_CAL_ROUNDS);
        t1 = bt_port_counter();
        if (st != BT_OK) return fail("calibrate", st);
        printf("calibrate rounds=%d", BT_FW_CAL_ROUNDS);
        print_state("");
        printf(" instret=%s\n", u64_str(t1 - t0, b1));
    }

    for (s = 0; s < BT_FW_STEPS; ++s) {
        bt_value loss;
        const bt_fw_sample *x = bt_fw_x_train + (size_t)s * BT_FW_BATCH * BT_FW_IN_NUMEL;
        const int32_t *y = bt_fw_y_train + (size_t)s * BT_FW_BATCH;
        memset(&loss, 0, sizeof loss);
        t0 = bt_port_counter();
        st = bt_train_step(&session, &loss, x, BT_FW_X_FRAC, y, BT_FW_BATCH);
        t1 = bt_port_counter();
        if (st != BT_OK) return fail("train_step", st);
        t_train += t1 - t0;
        printf("step %d loss=0x%08lx", s, (unsigned long)loss_bits(&loss));
        print_state("");
        printf(" instret=%s\n", u64_str(t1 - t0, b1));
    }

    if (BT_FW_N_TEST > 0) {
        int i, c, correct = 0, frac = 0;
        t0 = bt_port_counter();
        st = bt_forward(&session, logits, &frac, bt_fw_x_test, BT_FW_X_FRAC, BT_FW_N_TEST);
        t1 = bt_port_counter();
        if (st != BT_OK) return fail("forward", st);
        for (i = 0; i < BT_FW_N_TEST; ++i) {
            const bt_fw_logit *row = logits + (size_t)i * BT_FW_CLASSES;
            int best = 0;
            for (c = 1; c < BT_FW_CLASSES; ++c)
                if (row[c] > row[best]) best = c; /* the first maximum wins, as numpy's argmax */
            correct += best == bt_fw_y_test[i];
        }
        printf("test correct=%d total=%d logits=0x%08lx", correct, BT_FW_N_TEST,
               (unsigned long)fnv1a(logits, sizeof(bt_fw_logit) * (size_t)BT_FW_N_TEST * BT_FW_CLASSES));
#if BT_FW_FIXED
        printf(" logits_frac=%d", frac);
#else
        (void)frac;
#endif
        printf(" instret=%s\n", u64_str(t1 - t0, b1));
    }
    t1 = bt_port_counter();
    printf("total train_instret=%s instret=%s\n", u64_str(t_train, b1), u64_str(t1 - t_start, b2));
    printf("done status=0\n");
    return 0;
}

#if defined(BT_FW_GAP9)
/* GAP9 (untested): the fabric controller opens the cluster and runs the
 * training there, on the cluster controller core. */
#include "pmsis.h"

static int fw_status = -1;

static void cluster_entry(void *arg)
{
    (void)arg;
    fw_status = fw_run();
}

static void fabric_entry(void)
{
    struct pi_device cluster;
    struct pi_cluster_conf conf;
    struct pi_cluster_task task;
    pi_cluster_conf_init(&conf);
    pi_open_from_conf(&cluster, &conf);
    if (pi_cluster_open(&cluster)) pmsis_exit(-1);
    pi_cluster_task(&task, cluster_entry, NULL);
    task.stack_size = 8192;
    pi_cluster_send_task_to_cl(&cluster, &task);
    pi_cluster_close(&cluster);
    pmsis_exit(fw_status);
}

int main(void) { return pmsis_kickoff((void *)fabric_entry); }
#else
int main(void) { return fw_run(); }
#endif
