"""The planner's memory figures for the zoo models (the README's table).

All figures come from the C planner's own accounting (``plan.peak_bytes``);
the tests check that accounting against the bytes a run actually touches."""
from __future__ import annotations

from typing import Dict, List

from . import models
from .optim import SGD
from .train import Trainer

PAPER = {"mibminet": {"biotrain_full_bytes": 0.67e6, "bn_batch8_bytes": 5.4e6}}


def _peak(make, norm, strategy, batch, reuse=True, dtype="float32"):
    tr = Trainer(make(norm=norm), optimizer=SGD(lr=1e-3, momentum=0.9), strategy=strategy, batch_size=batch,
                 reuse=reuse, dtype=dtype)
    peak = tr.plan.peak_bytes
    tr.release()
    return peak


def memory_table(batch: int = 8) -> List[Dict]:
    rows = []
    for name in ("mibminet", "epidenet"):
        make = models.ZOO[name]
        rows.append({
            "model": name,
            "batch": batch,
            "full_groupnorm_accumulated": _peak(make, "group", "full", batch),
            "full_fixed_accumulated": _peak(make, "group", "full", batch, dtype="fixed"),
            "full_batchnorm_batch": _peak(make, "batch", "full", batch),
            "full_groupnorm_no_reuse": _peak(make, "group", "full", batch, reuse=False),
            "last_groupnorm": _peak(make, "group", "last", batch),
        })
    return rows


def format_memory_table(rows: List[Dict]) -> str:
    def mb(b):
        return f"{b / 1e6:.3f} MB"
    out = ["| model | full, GroupNorm, batch 8 accumulated | full, fixed point, batch 8 accumulated | "
           "full, BatchNorm, batch 8 | full, no buffer reuse | last layer only |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['model']} | {mb(r['full_groupnorm_accumulated'])} | {mb(r['full_fixed_accumulated'])} | "
                   f"{mb(r['full_batchnorm_batch'])} | "
                   f"{mb(r['full_groupnorm_no_reuse'])} | {mb(r['last_groupnorm'])} |")
    return "\n".join(out)
