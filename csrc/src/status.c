#include "biotrain/status.h"

const char *bt_status_str(bt_status s)
{
    switch (s) {
    case BT_OK: return "ok";
    case BT_ERR_NULL_POINTER: return "null pointer";
    case BT_ERR_BAD_SIZE: return "zero or negative size";
    case BT_ERR_SHAPE_MISMATCH: return "shape mismatch";
    case BT_ERR_GROUPS: return "groups do not divide the channels";
    case BT_ERR_WORKSPACE: return "workspace too small";
    case BT_ERR_LABEL: return "label out of range";
    case BT_ERR_NONFINITE: return "NaN or Inf in input";
    case BT_ERR_ARENA_TOO_SMALL: return "arena smaller than the plan";
    case BT_ERR_UNSUPPORTED: return "unsupported";
    case BT_ERR_CORRUPT: return "corrupt data";
    case BT_ERR_BAD_PARAM: return "parameter out of range";
    case BT_ERR_CAPACITY: return "capacity exceeded";
    case BT_ERR_STATE: return "called out of order";
    case BT_ERR_OVERFLOW: return "fixed-point overflow";
    case BT_ERR_DIVERGED: return "non-finite gradient (training diverged; lower the learning rate)";
    }
    return "unknown status";
}
