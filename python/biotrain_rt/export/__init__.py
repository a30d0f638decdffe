"""Exporters: turn a trained (or about to be trained) model into something
that runs elsewhere.

``firmware(trainer, out_dir, samples=(X_train, y_train, X_test, y_test), steps=10)``
writes the C sources of an MCU application that runs the same training steps
with the same C core, plus a manifest from which the host re-runs those steps
(:func:`biotrain_rt.firmware.build_and_run`, :func:`biotrain_rt.firmware.host_run`).
Both number formats export the same way: the session's state blob, one
application (``firmware_main.c``).
"""
from .firmware import TARGETS, FirmwareExport, TargetSpec, firmware, memory_budget

__all__ = ["firmware", "FirmwareExport", "TARGETS", "TargetSpec", "memory_budget"]
