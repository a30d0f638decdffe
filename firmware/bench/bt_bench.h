/* The per-kernel instruction benchmark: the layer table a generator
 * (brt.firmware.mcu_bench) writes into bt_bench_layers.c/.h of an app
 * directory, read by bench_main.c. */
#ifndef BT_BENCH_H
#define BT_BENCH_H

#include "biotrain/kernels.h"

enum { BT_BENCH_CONV = 0, BT_BENCH_LINEAR = 1 };

typedef struct {
    const char *name;
    int kind;             /* BT_BENCH_CONV or BT_BENCH_LINEAR */
    bt_conv2d_shape conv; /* kind CONV */
    int n, in_f, out_f;   /* kind LINEAR */
    int bias;             /* the layer has a bias */
    int input_grad;       /* the training step runs its input gradient */
    int weight_grad;      /* the training step runs its weight gradient */
} bt_bench_layer;

extern const bt_bench_layer bt_bench_layers[];
extern const int bt_bench_n_layers;
extern const char bt_bench_model[];

#endif
