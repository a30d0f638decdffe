/* The op table: one descriptor per row of BT_OP_LIST (ops.h), in its order. */
#include <string.h>
#include "biotrain/ops.h"

#define BT_OP_DECLARE_(id, name) extern const bt_op_desc bt_op_##name;
BT_OP_LIST(BT_OP_DECLARE_)
#undef BT_OP_DECLARE_

static const bt_op_desc *const table[] = {
#define BT_OP_ROW_(id, name) &bt_op_##name,
    BT_OP_LIST(BT_OP_ROW_)
#undef BT_OP_ROW_
};

/* A table shorter or longer than the enum does not compile. */
typedef char bt_op_table_matches_enum[(sizeof table / sizeof table[0] == BT_OP_COUNT_) ? 1 : -1];

const bt_op_desc *bt_op_get(bt_op_kind kind)
{
    if ((int)kind < 0 || kind >= BT_OP_COUNT_) return NULL;
    return table[kind];
}

const char *bt_op_name(bt_op_kind kind)
{
    const bt_op_desc *d = bt_op_get(kind);
    return d ? d->name : "unknown";
}

bt_status bt_op_find(bt_op_kind *kind, const char *name)
{
    int k;
    if (!kind || !name) return BT_ERR_NULL_POINTER;
    for (k = 0; k < BT_OP_COUNT_; ++k)
        if (strcmp(table[k]->name, name) == 0) {
            *kind = (bt_op_kind)k;
            return BT_OK;
        }
    return BT_ERR_UNSUPPORTED;
}

const bt_opt_field *bt_op_option(const bt_op_desc *d, const char *name)
{
    int i;
    if (!d || !name) return NULL;
    for (i = 0; i < d->n_opts; ++i)
        if (strcmp(d->opts[i].name, name) == 0) return &d->opts[i];
    return NULL;
}
