/* RISC-V platform layer (rv32imc, rv32imfc; rv64 too): the retired-instruction
 * counter.
 *
 * The firmware runs in machine mode (QEMU -bios none), where minstret is
 * readable without any mcounteren setup. Under QEMU with -icount shift=0 the
 * counter advances by exactly one per executed instruction, so the figures are
 * deterministic and do not depend on the host's speed. Without -icount QEMU
 * returns host ticks here instead: the runner always passes it.
 *
 * The kernels run on one hart: bt_port_parallel_for runs its workers one
 * after another (one by default). */
#include <stdint.h>
#include "biotrain/port.h"

/* csrr belongs to the Zicsr extension, which the current ISA spec no longer
 * folds into I: rv32imc alone would not assemble it. Enable it for these
 * instructions only, so the rest of the image keeps the -march it was asked for. */
#define BT_READ_CSR(var, csr)                                                              \
    __asm__ volatile(".option push\n\t.option arch, +zicsr\n\tcsrr %0, " #csr "\n\t.option pop" \
                     : "=r"(var))

uint64_t bt_port_counter(void)
{
#if defined(__riscv_xlen) && __riscv_xlen == 32
    /* Two 32-bit halves: re-read if the low half wrapped between the reads. */
    uint32_t hi, lo, hi2;
    do {
        BT_READ_CSR(hi, minstreth);
        BT_READ_CSR(lo, minstret);
        BT_READ_CSR(hi2, minstreth);
    } while (hi != hi2);
    return ((uint64_t)hi << 32) | lo;
#else
    uint64_t v;
    BT_READ_CSR(v, minstret);
    return v;
#endif
}

const char *bt_port_counter_unit(void) { return "minstret"; }

/* Workers run one after another on the calling thread: the split's result
 * can be checked against one worker's, bit for bit. */
static int n_workers = 1;
static int run_reverse;

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
        bt_port_chunk(n, n_workers, id, &b, &e);
        if (b < e) fn(arg, b, e, id);
    }
}
