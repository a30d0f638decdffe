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

#ifdef __cplusplus
}
#endif
#endif
