"""Biosignal datasets as plain NumPy arrays.

A :class:`Dataset` is a set of fixed-length windows ``X`` (float32, ``[N, C, T]``)
with one integer label each, plus per-window ``subject`` and ``session``
indices, the sampling rate and the channel and class names. Everything here is
NumPy only; reading EDF/BDF/GDF goes through MNE, which is an optional extra.

Resampling is written here (windowed-sinc FIR, polyphase evaluation) rather
than taken from SciPy, so that what the host does is short enough to port to
the device as it is.
"""
from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import resources
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "Dataset",
    "Recording",
    "from_arrays",
    "load_npz",
    "load_uci_emg",
    "load_muse_erp",
    "read_recording",
    "fir_lowpass",
    "decimate",
    "resample_poly",
    "resample",
    "window_signal",
    "log_energy",
    "UCI_EMG_TINY",
]

#: File name of the UCI EMG subset shipped inside the package (subjects 1, 3, 4, 5).
UCI_EMG_TINY = "uci_emg_gestures_tiny.npz"


# --------------------------------------------------------------------------- #
# Dataset
# --------------------------------------------------------------------------- #
@dataclass
class Dataset:
    """Labelled windows of a multichannel biosignal.

    Attributes
    ----------
    X : float32 ``[N, C, T]`` (N windows, C channels, T samples per window)
    y : int64 ``[N]``, class indices in ``0 .. len(class_names) - 1``
    fs : sampling rate in Hz
    ch_names : C channel names
    class_names : K class names (K >= 2)
    subject, session : int64 ``[N]`` per-window subject and session (series) indices
    meta : extra per-window arrays of length N (e.g. window start time), kept in step
        by :meth:`subset`
    info : free-form per-dataset values (units, source, ...)
    """

    X: np.ndarray
    y: np.ndarray
    fs: float
    ch_names: list
    class_names: list
    subject: np.ndarray
    session: np.ndarray
    meta: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        X = np.asarray(self.X)
        if X.ndim != 3:
            raise ValueError(f"X must be [windows, channels, samples], got shape {X.shape}")
        if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
            raise ValueError(f"X must hold real numbers, got dtype {X.dtype}")
        X = np.ascontiguousarray(X, dtype=np.float32)
        n, c, t = X.shape
        if n == 0 or c == 0 or t == 0:
            raise ValueError(f"X is empty: shape {X.shape}")
        if not np.all(np.isfinite(X)):
            bad = int(np.count_nonzero(~np.isfinite(X)))
            raise ValueError(f"X holds {bad} non-finite values (NaN or inf)")
        self.X = X
        self.y = _index_array(self.y, n, "y")
        self.subject = _index_array(self.subject, n, "subject")
        self.session = _index_array(self.session, n, "session")
        fs = float(self.fs)
        if not (math.isfinite(fs) and fs > 0):
            raise ValueError(f"fs must be a positive number of Hz, got {self.fs!r}")
        self.fs = fs
        self.ch_names = [str(s) for s in self.ch_names]
        if len(self.ch_names) != c:
            raise ValueError(f"channels mismatch: X has {c} channels but {len(self.ch_names)} "
                             f"channel names were given ({self.ch_names})")
        if len(set(self.ch_names)) != c:
            raise ValueError(f"channel names are not unique: {self.ch_names}")
        self.class_names = [str(s) for s in self.class_names]
        present = np.unique(self.y)
        if present.size < 2:
            name = (f" = {self.class_names[int(present[0])]!r}"
                    if 0 <= int(present[0]) < len(self.class_names) else "")
            raise ValueError(f"only one class present in y (class {int(present[0])}{name}); "
                             f"training needs at least two")
        k = len(self.class_names)
        if k < 2:
            raise ValueError(f"a classification dataset needs at least 2 classes, got class_names "
                             f"{self.class_names}")
        if self.y.min() < 0 or self.y.max() >= k:
            raise ValueError(f"labels must lie in 0..{k - 1} (class_names {self.class_names}), "
                             f"got range {int(self.y.min())}..{int(self.y.max())}")
        meta = {}
        for key, v in dict(self.meta).items():
            v = np.asarray(v)
            if v.ndim < 1 or v.shape[0] != n:
                raise ValueError(f"meta[{key!r}] must have one entry per window ({n}), got shape {v.shape}")
            meta[str(key)] = v
        self.meta = meta
        self.info = dict(self.info)

    # -- sizes ------------------------------------------------------------- #
    def __len__(self) -> int:
        return self.X.shape[0]

    @property
    def n_channels(self) -> int:
        return self.X.shape[1]

    @property
    def n_times(self) -> int:
        return self.X.shape[2]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> np.ndarray:
        """Windows per class, length ``n_classes``."""
        return np.bincount(self.y, minlength=self.n_classes)

    def __repr__(self) -> str:
        return (f"Dataset(X={self.X.shape}, fs={self.fs:g} Hz, classes={self.class_names}, "
                f"counts={self.class_counts().tolist()}, subjects={np.unique(self.subject).tolist()}, "
                f"sessions={np.unique(self.session).tolist()})")

    # -- selection ---------------------------------------------------------- #
    def subset(self, index) -> "Dataset":
        """Windows selected by a boolean mask or an index array (order kept as given).

        The result must still hold at least two classes (a ValueError says so otherwise).
        """
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"boolean mask must have shape ({len(self)},), got {idx.shape}")
            idx = np.flatnonzero(idx)
        elif not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"index must be a boolean mask or integers, got dtype {idx.dtype}")
        idx = idx.reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise ValueError(f"index out of range for {len(self)} windows")
        return self._replace(X=self.X[idx], y=self.y[idx], subject=self.subject[idx],
                             session=self.session[idx], meta={k: v[idx] for k, v in self.meta.items()})

    def pick_channels(self, names: Sequence[str] | Sequence[int]) -> "Dataset":
        """Keep the given channels, in the given order (names or integer positions)."""
        idx = _channel_indices(self.ch_names, names)
        return self._replace(X=self.X[:, idx, :], ch_names=[self.ch_names[i] for i in idx])

    # -- resampling --------------------------------------------------------- #
    def decimate(self, q: int, num_taps: int | None = None, antialias: bool = True) -> "Dataset":
        """Keep every q-th sample after an anti-alias FIR (see :func:`decimate`)."""
        X = decimate(self.X, q, num_taps=num_taps, antialias=antialias)
        return self._replace(X=X, fs=self.fs / q)

    def resample(self, fs_new: float, max_denominator: int = 1000) -> "Dataset":
        """Resample every window to ``fs_new`` Hz (rational polyphase, see :func:`resample`)."""
        X = resample(self.X, self.fs, fs_new, max_denominator=max_denominator)
        return self._replace(X=X, fs=float(fs_new))

    def _replace(self, **kw) -> "Dataset":
        d = dict(X=self.X, y=self.y, fs=self.fs, ch_names=self.ch_names, class_names=self.class_names,
                 subject=self.subject, session=self.session, meta=self.meta, info=self.info)
        d.update(kw)
        return Dataset(**d)


def _index_array(v, n: int, name: str) -> np.ndarray:
    a = np.asarray(v)
    if a.ndim == 0:
        a = np.full(n, a)
    if a.shape != (n,):
        raise ValueError(f"{name} must have one entry per window ({n}), got shape {a.shape}")
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name} must hold integers, got non-integer values")
    return a.astype(np.int64)


def _channel_indices(ch_names: Sequence[str], picks) -> list:
    if isinstance(picks, (str, int, np.integer)):
        picks = [picks]
    picks = list(picks)
    if not picks:
        raise ValueError("no channels picked")
    out = []
    for p in picks:
        if isinstance(p, (int, np.integer)) and not isinstance(p, bool):
            if not -len(ch_names) <= p < len(ch_names):
                raise ValueError(f"channel index {p} out of range for {len(ch_names)} channels")
            out.append(int(p) % len(ch_names))
        else:
            if p not in ch_names:
                raise ValueError(f"channels mismatch: channel {p!r} not found; available: {list(ch_names)}")
            out.append(list(ch_names).index(p))
    if len(set(out)) != len(out):
        raise ValueError(f"channel picked twice in {picks}")
    return out


def from_arrays(X, y, fs: float, ch_names: Sequence[str] | None = None,
                class_names: Sequence[str] | None = None, subject=0, session=0,
                meta: dict | None = None, info: dict | None = None) -> Dataset:
    """Build a validated :class:`Dataset` from arrays.

    ``X`` is ``[N, C, T]`` (any real dtype, converted to float32). ``y`` holds
    class indices ``0..K-1``; without ``class_names`` K is ``max(y) + 1`` and the
    names are ``"0", "1", ...``. Without ``ch_names`` the channels are
    ``"ch0", "ch1", ...``. ``subject`` / ``session`` may be scalars.
    """
    X = np.asarray(X)
    if X.ndim != 3:
        raise ValueError(f"X must be [windows, channels, samples], got shape {X.shape}")
    y = np.asarray(y)
    if ch_names is None:
        ch_names = [f"ch{i}" for i in range(X.shape[1])]
    if class_names is None:
        yi = _index_array(y, y.shape[0] if y.ndim == 1 else -1, "y") if y.ndim == 1 else y
        k = int(np.max(yi)) + 1 if np.size(yi) else 0
        class_names = [str(i) for i in range(max(k, 1))]
    return Dataset(X=X, y=y, fs=fs, ch_names=list(ch_names), class_names=list(class_names),
                   subject=subject, session=session, meta=meta or {}, info=info or {})


# --------------------------------------------------------------------------- #
# .npz files
# --------------------------------------------------------------------------- #
def _read_npz(path) -> dict:
    """All arrays of an .npz, read eagerly so that a damaged member fails here."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such dataset file: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError("not an .npz archive (a single .npy array)")
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, zipfile.LargeZipFile) as e:
        raise ValueError(f"cannot read dataset file {path}: corrupted or not an .npz archive "
                         f"({type(e).__name__}: {e})") from e


def _scalar(d: dict, key: str, default=None):
    if key not in d:
        return default
    v = d[key]
    return v.item() if v.ndim == 0 else v


def load_npz(path, x_key: str = "X", y_key: str = "y", fs: float | None = None,
             scale: float | None = None, session_keys: Sequence[str] = ("session", "series"),
             meta_keys: Iterable[str] = ()) -> Dataset:
    """Load windows from an .npz holding ``X [N, C, T]`` and ``y [N]``.

    Recognised optional members: ``fs``, ``ch_names``, ``class_names``, ``subject``,
    ``session`` (or ``series``), ``scale`` (X is divided by it), any of ``meta_keys``.
    ``fs`` / ``scale`` given here override the file's. A damaged file, a missing
    member, a bad shape or a single class raises ``ValueError``.
    """
    d = _read_npz(path)
    for k in (x_key, y_key):
        if k not in d:
            raise ValueError(f"{path}: member {k!r} missing (members: {sorted(d)})")
    X = d[x_key]
    if X.ndim != 3:
        raise ValueError(f"{path}: {x_key} must be [windows, channels, samples], got shape {X.shape}")
    if fs is None:
        fs = _scalar(d, "fs")
        if fs is None:
            raise ValueError(f"{path}: no 'fs' member; pass fs= explicitly")
    if scale is None:
        scale = _scalar(d, "scale", 1.0)
    scale = float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{path}: scale must be positive, got {scale}")
    Xf = X.astype(np.float32)
    if scale != 1.0:
        Xf /= np.float32(scale)
    n = X.shape[0]
    session = 0
    for k in session_keys:
        if k in d:
            session = d[k]
            break
    ch = d["ch_names"].tolist() if "ch_names" in d else None
    cn = d["class_names"].tolist() if "class_names" in d else None
    meta = {}
    for k in meta_keys:
        if k not in d:
            raise ValueError(f"{path}: meta member {k!r} missing (members: {sorted(d)})")
        meta[k] = d[k]
    info = {k: _scalar(d, k) for k in ("units", "source", "preprocessing", "paradigm") if k in d}
    info["path"] = os.fspath(path)
    info["scale"] = scale
    try:
        return from_arrays(Xf, d[y_key], fs, ch_names=ch, class_names=cn,
                           subject=d.get("subject", 0), session=session, meta=meta, info=info)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def load_uci_emg(path=None, scale: float = 1.0, series: Sequence[int] | None = None,
                 subjects: Sequence[int] | None = None) -> Dataset:
    """UCI "EMG data for gestures" windows (MYO armband, 8 channels, 6 gestures).

    ``path=None`` loads the subset shipped with the package (subjects 1, 3, 4, 5,
    both series, 1529 windows of 200 samples at 1 kHz). Pass the full
    ``uci_emg_gestures.npz`` for all subjects.

    X is returned in MYO raw counts (int8 range -128..127) divided by ``scale``;
    ``session`` is the series (1 or 2). ``meta`` holds ``t_start_ms`` (window
    start in the recording), ``segment`` and ``rep``: split by series, rep,
    segment or subject, never by random window (windows overlap by 50 %).
    The 1 kHz grid is mostly a sample-and-hold of a ~200 Hz stream, so
    ``.decimate(5, antialias=False)`` loses little.
    """
    if path is None:
        path = resources.files(__package__).joinpath(UCI_EMG_TINY)
        with resources.as_file(path) as p:
            return load_uci_emg(p, scale=scale, series=series, subjects=subjects)
    d = _read_npz(path)
    need = ("X", "y", "subject", "series", "t_start_ms", "fs", "scale")
    missing = [k for k in need if k not in d]
    if missing:
        raise ValueError(f"{path}: not a UCI EMG gestures file, members {missing} missing")
    X = d["X"]
    if X.ndim != 3 or X.shape[1] != 8:
        raise ValueError(f"{path}: channels mismatch: expected X [N, 8, T] (MYO armband), got {X.shape}")
    # The file stores counts exactly (X / file scale = the text files' values);
    # counts are the natural unit of the MYO's int8 output.
    Xf = X.astype(np.float32)
    if scale != 1.0:
        Xf /= np.float32(scale)
    meta = {k: d[k] for k in ("t_start_ms", "segment", "rep") if k in d}
    info = {"units": f"MYO raw counts / {scale:g}", "source": _scalar(d, "source", ""),
            "preprocessing": _scalar(d, "preprocessing", ""), "path": os.fspath(path)}
    try:
        ds = from_arrays(Xf, d["y"], float(_scalar(d, "fs")), ch_names=d["ch_names"].tolist(),
                         class_names=d["class_names"].tolist(), subject=d["subject"],
                         session=d["series"], meta=meta, info=info)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    mask = np.ones(len(ds), dtype=bool)
    if series is not None:
        mask &= np.isin(ds.session, list(series))
    if subjects is not None:
        mask &= np.isin(ds.subject, list(subjects))
    if not mask.all():
        if not mask.any():
            raise ValueError(f"no windows for series={series} subjects={subjects}")
        ds = ds.subset(mask)
    return ds


def load_muse_erp(path, subjects: Sequence[int] | None = None,
                  sessions: Sequence[int] | None = None) -> Dataset:
    """Muse (4-channel EEG) event-related-potential epochs: P300 or N170 files.

    X is in microvolts (the file stores round(uV * 10) as int16), ``[N, 4, 230]``
    at 256 Hz from -0.1 s to +0.8 s around the stimulus. ``meta`` holds
    ``recording`` (one ~2 min run) and ``date``.
    """
    d = _read_npz(path)
    need = ("X", "y", "subject", "session", "fs", "scale", "ch_names", "class_names")
    missing = [k for k in need if k not in d]
    if missing:
        raise ValueError(f"{path}: not a Muse ERP file, members {missing} missing")
    if d["X"].ndim != 3 or d["X"].shape[1] != len(d["ch_names"]):
        raise ValueError(f"{path}: channels mismatch: X {d['X'].shape} vs ch_names {d['ch_names'].tolist()}")
    meta = {k: d[k] for k in ("recording", "date") if k in d}
    ds = load_npz(path, meta_keys=list(meta))
    ds.info.update({"units": "uV", "tmin": float(_scalar(d, "tmin", 0.0)), "tmax": float(_scalar(d, "tmax", 0.0))})
    mask = np.ones(len(ds), dtype=bool)
    if subjects is not None:
        mask &= np.isin(ds.subject, list(subjects))
    if sessions is not None:
        mask &= np.isin(ds.session, list(sessions))
    if not mask.all():
        if not mask.any():
            raise ValueError(f"no epochs for subjects={subjects} sessions={sessions}")
        ds = ds.subset(mask)
    return ds


# --------------------------------------------------------------------------- #
# Resampling
# --------------------------------------------------------------------------- #
def fir_lowpass(num_taps: int, cutoff: float, gain: float = 1.0) -> np.ndarray:
    """Linear-phase low-pass FIR (windowed sinc, Hamming window), float64.

    ``cutoff`` is the -6 dB edge as a fraction of the Nyquist frequency (0 < cutoff <= 1).
    ``num_taps`` must be odd (symmetric, integer group delay). DC gain = ``gain``.
    """
    num_taps = int(num_taps)
    if num_taps < 1 or num_taps % 2 == 0:
        raise ValueError(f"num_taps must be a positive odd integer, got {num_taps}")
    if not 0.0 < cutoff <= 1.0:
        raise ValueError(f"cutoff must be in (0, 1] (fraction of Nyquist), got {cutoff}")
    m = np.arange(num_taps) - (num_taps - 1) / 2.0
    h = cutoff * np.sinc(cutoff * m)
    if num_taps > 1:
        h *= 0.54 - 0.46 * np.cos(2.0 * np.pi * np.arange(num_taps) / (num_taps - 1))
    return h * (gain / h.sum())


def resample_poly(x, up: int, down: int, axis: int = -1, num_taps: int | None = None,
                  taps_per_phase: int = 10) -> np.ndarray:
    """Resample by the rational factor ``up / down`` along ``axis``.

    Equivalent to: insert ``up - 1`` zeros between samples, low-pass at
    ``min(1/up, 1/down)`` of the new Nyquist with a windowed-sinc FIR, keep every
    ``down``-th sample. It is evaluated polyphase (only the non-zero inputs are
    multiplied), with the FIR's delay removed and the signal edges reflected, so
    output sample k sits at input time ``k * down / up``. Output length is
    ``ceil(n * up / down)``. float32 in, float32 out (float64 otherwise).
    """
    up, down = int(up), int(down)
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be positive integers, got {up}, {down}")
    x = np.asarray(x)
    out_dtype = np.float32 if x.dtype == np.float32 else np.float64
    g = math.gcd(up, down)
    up, down = up // g, down // g
    if up == 1 and down == 1:
        return x.astype(out_dtype, copy=True)
    xm = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    n = xm.shape[-1]
    if n == 0:
        raise ValueError("cannot resample an empty signal")
    if num_taps is None:
        num_taps = 2 * taps_per_phase * max(up, down) + 1
    h = fir_lowpass(num_taps, 1.0 / max(up, down), gain=float(up))
    if up > 1:
        # each polyphase branch gets unit DC gain, so a constant stays exactly constant
        for r in range(up):
            h[r::up] /= h[r::up].sum()
    half = (num_taps - 1) // 2
    # reflect the edges so that the filter sees a continued signal, not zeros
    pad = half // up + 2
    if n > 1:
        # odd reflection (2 x[0] - x[k]) continues a smooth signal to first order
        xp = np.pad(xm, [(0, 0)] * (xm.ndim - 1) + [(pad, pad)], mode="reflect", reflect_type="odd")
    else:
        xp = np.repeat(xm, 2 * pad + 1, axis=-1)
    n_out = -(-n * up // down)
    # up-sampled index of output k (delay-compensated) is p = k*down + half, in the
    # padded frame shifted by pad*up: y[k] = sum_i xp[i] h[p + pad*up - i*up]
    p = np.arange(n_out) * down + pad * up
    i_hi = (p + half) // up          # newest input that reaches output k
    y = np.zeros(xm.shape[:-1] + (n_out,), dtype=np.float64)
    for j in range(num_taps // up + 2):
        i = i_hi - j
        tap = p + half - i * up
        ok = (tap >= 0) & (tap < num_taps) & (i >= 0) & (i < xp.shape[-1])
        if not ok.any():
            continue
        y[..., ok] += xp[..., i[ok]] * h[tap[ok]]
    return np.moveaxis(y, -1, axis).astype(out_dtype)


def decimate(x, q: int, axis: int = -1, num_taps: int | None = None, antialias: bool = True) -> np.ndarray:
    """Integer down-sampling by ``q`` along ``axis``: anti-alias FIR, then every q-th sample.

    The FIR (windowed sinc, cutoff at 1/q of Nyquist, ``20 q + 1`` taps by default) is
    applied centred (zero phase) with reflected edges, so output sample k is at input
    sample ``k * q``. ``antialias=False`` just keeps every q-th sample (right for
    data that is already a sample-and-hold of a slower stream). Output length is
    ``ceil(n / q)``.
    """
    q = int(q)
    if q < 1:
        raise ValueError(f"decimation factor must be a positive integer, got {q}")
    x = np.asarray(x)
    out_dtype = np.float32 if x.dtype == np.float32 else np.float64
    if q == 1:
        return x.astype(out_dtype, copy=True)
    if not antialias:
        sl = [slice(None)] * x.ndim
        sl[axis] = slice(None, None, q)
        return np.ascontiguousarray(x[tuple(sl)], dtype=out_dtype)
    if num_taps is None:
        num_taps = 20 * q + 1
    return resample_poly(x, 1, q, axis=axis, num_taps=num_taps)


def resample(x, fs_in: float, fs_out: float, axis: int = -1, max_denominator: int = 1000) -> np.ndarray:
    """Resample from ``fs_in`` to ``fs_out`` Hz: integer decimation when the ratio is an
    integer, otherwise rational polyphase (ratio approximated with denominators up to
    ``max_denominator``; a ValueError if that is off by more than 1e-6 relative)."""
    fs_in, fs_out = float(fs_in), float(fs_out)
    if not (fs_in > 0 and fs_out > 0 and math.isfinite(fs_in) and math.isfinite(fs_out)):
        raise ValueError(f"sampling rates must be positive, got {fs_in} -> {fs_out}")
    r = Fraction(fs_out / fs_in).limit_denominator(max_denominator)
    if r == 0 or abs(float(r) - fs_out / fs_in) > 1e-6 * fs_out / fs_in:
        raise ValueError(f"cannot express {fs_out:g}/{fs_in:g} Hz as a ratio with denominator <= "
                         f"{max_denominator}")
    up, down = r.numerator, r.denominator
    if up == 1:
        return decimate(x, down, axis=axis)
    return resample_poly(x, up, down, axis=axis)


# --------------------------------------------------------------------------- #
# Features
# --------------------------------------------------------------------------- #
def log_energy(X, block: int, offset: float = 1.0, scale: float = 0.25) -> np.ndarray:
    """Log mean-square energy per channel over consecutive blocks of ``block`` samples.

    ``X [..., T]`` -> float32 ``[..., T // block]`` with
    ``scale * ln(mean(x^2 over the block) + offset)``; trailing samples that do not
    fill a block are dropped. On a device it is a sum of squares, a multiply and one
    log per block. With MYO counts, ``block=25`` at 1 kHz (5 samples of the ~200 Hz
    stream) and the defaults give the 8 x 8 input of the EMG calibration model; the
    offset (one count squared) keeps silent blocks finite and a gain on a channel
    becomes an additive shift, which a following linear layer absorbs.
    """
    X = np.asarray(X)
    block = int(block)
    if X.ndim < 1 or X.shape[-1] == 0:
        raise ValueError(f"X must have a non-empty last (time) axis, got shape {X.shape}")
    if not 1 <= block <= X.shape[-1]:
        raise ValueError(f"block must be in 1..{X.shape[-1]} samples, got {block}")
    if not offset > 0:
        raise ValueError(f"offset must be positive (it keeps ln finite), got {offset}")
    nb = X.shape[-1] // block
    x = np.asarray(X[..., :nb * block], dtype=np.float64).reshape(X.shape[:-1] + (nb, block))
    return (scale * np.log((x * x).mean(-1) + offset)).astype(np.float32)


# --------------------------------------------------------------------------- #
# Continuous recordings
# --------------------------------------------------------------------------- #
def window_signal(data, win: int, hop: int, labels=None, mode: str = "pure",
                  ignore: Sequence[int] = ()) -> tuple:
    """Cut a continuous recording ``data [C, T]`` into windows ``[N, C, win]``.

    Windows start at 0, hop, 2 hop, ... and lie wholly inside the recording, so
    ``N = (T - win) // hop + 1`` (0 if T < win). With per-sample ``labels [T]``
    each window gets one label:

    - ``mode="pure"``: windows whose samples do not all share one label are dropped;
    - ``mode="majority"``: the most frequent label (ties: the smallest);
    - ``mode="center"``: the label of the middle sample (index ``win // 2``).

    Windows whose label is in ``ignore`` are dropped. Returns ``(X, y, starts)``;
    ``y`` is None without labels. ``starts`` are the first-sample indices.
    """
    data = np.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"data must be [channels, samples], got shape {data.shape}")
    win, hop = int(win), int(hop)
    if win < 1 or hop < 1:
        raise ValueError(f"win and hop must be positive, got win={win} hop={hop}")
    c, t = data.shape
    n = 0 if t < win else (t - win) // hop + 1
    starts = np.arange(n, dtype=np.int64) * hop
    if n:
        view = np.lib.stride_tricks.sliding_window_view(data, win, axis=1)[:, ::hop][:, :n]
        X = np.ascontiguousarray(np.transpose(view, (1, 0, 2)))
    else:
        X = np.zeros((0, c, win), dtype=data.dtype)
    if labels is None:
        return X, None, starts
    labels = np.asarray(labels)
    if labels.shape != (t,):
        raise ValueError(f"labels must have one entry per sample ({t}), got shape {labels.shape}")
    if mode not in ("pure", "majority", "center"):
        raise ValueError(f"mode must be 'pure', 'majority' or 'center', got {mode!r}")
    labels = labels.astype(np.int64)
    keep = np.ones(n, dtype=bool)
    y = np.zeros(n, dtype=np.int64)
    if n:
        lw = np.lib.stride_tricks.sliding_window_view(labels, win)[::hop][:n]
        if mode == "pure":
            keep = np.all(lw == lw[:, :1], axis=1)
            y = lw[:, 0].copy()
        elif mode == "center":
            y = lw[:, win // 2].copy()
        else:
            for k in range(n):
                vals, cnt = np.unique(lw[k], return_counts=True)
                y[k] = vals[np.argmax(cnt)]
    if len(ignore):
        keep &= ~np.isin(y, list(ignore))
    return X[keep], y[keep], starts[keep]


@dataclass
class Recording:
    """A continuous multichannel recording: ``data [C, T]`` at ``fs`` Hz.

    ``annotations`` is a list of ``(onset_s, duration_s, description)``.
    """

    data: np.ndarray
    fs: float
    ch_names: list
    annotations: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.float32)
        if self.data.ndim != 2:
            raise ValueError(f"data must be [channels, samples], got shape {self.data.shape}")
        if len(self.ch_names) != self.data.shape[0]:
            raise ValueError(f"channels mismatch: data has {self.data.shape[0]} channels, "
                             f"{len(self.ch_names)} names given")
        self.fs = float(self.fs)
        if not self.fs > 0:
            raise ValueError(f"fs must be positive, got {self.fs}")

    def sample_labels(self, mapping: dict, default: int = -1) -> np.ndarray:
        """Per-sample labels from the annotations: ``mapping[description]`` over each
        annotated span (unmapped descriptions ignored), ``default`` elsewhere."""
        lab = np.full(self.data.shape[1], default, dtype=np.int64)
        for onset, dur, desc in self.annotations:
            if desc not in mapping:
                continue
            a = int(round(onset * self.fs))
            b = int(round((onset + dur) * self.fs))
            lab[max(a, 0):max(min(b, lab.size), 0)] = mapping[desc]
        return lab

    def to_dataset(self, win_s: float, hop_s: float, mapping: dict, class_names: Sequence[str] | None = None,
                   subject: int = 0, session: int = 0) -> Dataset:
        """Windows of ``win_s`` seconds every ``hop_s`` seconds, labelled from the
        annotations (``mapping``: description -> class index); windows that are not
        wholly inside one mapped annotation are dropped."""
        win = int(round(win_s * self.fs))
        hop = int(round(hop_s * self.fs))
        X, y, starts = window_signal(self.data, win, hop, self.sample_labels(mapping), mode="pure", ignore=(-1,))
        if len(y) == 0:
            raise ValueError("no window lies wholly inside a mapped annotation")
        if class_names is None:
            class_names = [None] * (max(mapping.values()) + 1)
            for k, v in mapping.items():
                class_names[v] = str(k)
            class_names = [c if c is not None else str(i) for i, c in enumerate(class_names)]
        return from_arrays(X, y, self.fs, ch_names=self.ch_names, class_names=class_names,
                           subject=subject, session=session, meta={"start": starts})


_MNE_HINT = ("reading EDF/BDF/GDF files needs MNE, an optional dependency: "
             "pip install biotrain-rt[mne]")


def read_recording(path, picks: Sequence[str] | None = None, units: str = "uV") -> Recording:
    """Read an EDF, BDF or GDF file through MNE (optional extra).

    Returns a :class:`Recording` with ``data`` in ``units`` ("V", "mV" or "uV"),
    the file's channel names (or ``picks``, in that order) and its annotations.
    """
    scale = {"V": 1.0, "mV": 1e3, "uV": 1e6}.get(units)
    if scale is None:
        raise ValueError(f"units must be 'V', 'mV' or 'uV', got {units!r}")
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    readers = {".edf": "read_raw_edf", ".bdf": "read_raw_bdf", ".gdf": "read_raw_gdf"}
    if ext not in readers:
        raise ValueError(f"unsupported file type {ext!r} for {path}: expected .edf, .bdf or .gdf")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such recording: {path}")
    try:
        import mne  # noqa: PLC0415  (optional dependency)
    except ImportError as e:
        raise ImportError(_MNE_HINT) from e
    try:
        raw = getattr(mne.io, readers[ext])(path, preload=True, verbose="error")
    except Exception as e:  # MNE raises many types for a damaged file
        raise ValueError(f"cannot read {path}: corrupted or not a valid {ext[1:].upper()} file "
                         f"({type(e).__name__}: {e})") from e
    names = list(raw.ch_names)
    idx = _channel_indices(names, picks) if picks is not None else list(range(len(names)))
    data = raw.get_data(picks=idx) * scale
    ann = [(float(a["onset"]), float(a["duration"]), str(a["description"])) for a in raw.annotations]
    return Recording(data=data.astype(np.float32), fs=float(raw.info["sfreq"]),
                     ch_names=[names[i] for i in idx], annotations=ann)
