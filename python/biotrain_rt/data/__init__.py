"""Biosignal data: loading, validation, channel picking, resampling, windowing.

``load_uci_emg()`` with no argument returns the small UCI EMG gesture subset
shipped in this package (see ATTRIBUTION.md); ``load_muse_erp(path)`` reads the
Muse P300/N170 epoch files; ``read_recording(path)`` reads EDF/BDF/GDF through
MNE (optional extra: ``pip install biotrain-rt[mne]``).
"""
from .loaders import (
    UCI_EMG_TINY,
    Dataset,
    Recording,
    decimate,
    fir_lowpass,
    from_arrays,
    load_muse_erp,
    load_npz,
    load_uci_emg,
    log_energy,
    read_recording,
    resample,
    resample_poly,
    window_signal,
)

__all__ = [
    "UCI_EMG_TINY",
    "Dataset",
    "Recording",
    "decimate",
    "fir_lowpass",
    "from_arrays",
    "load_muse_erp",
    "load_npz",
    "load_uci_emg",
    "log_energy",
    "read_recording",
    "resample",
    "resample_poly",
    "window_signal",
]
