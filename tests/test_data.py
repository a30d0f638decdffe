"""biotrain_rt.data: loading, validation, resampling, windowing, EDF through MNE.

Reference values come from the analytic signals the tests build (a sine, a
constant, a step) or from the shipped file's documented counts, not from the
code under test.
"""
import builtins
import hashlib
import os
import sys
from importlib import resources

import numpy as np
import pytest

from biotrain_rt import data as btd

MUSE_TINY = "/work/shared/data/eegnb_muse_p300_tiny.npz"
TINY_SHA256 = "dca8eaa0477c014d3ddda1d09f083a6713f79feda31570921b28c189d937cd75"


def _shipped_path():
    return resources.files("biotrain_rt.data").joinpath(btd.UCI_EMG_TINY)


# --------------------------------------------------------------------------- #
# shipped file
# --------------------------------------------------------------------------- #
def test_shipped_file_is_the_documented_one():
    with resources.as_file(_shipped_path()) as p:
        assert hashlib.sha256(open(p, "rb").read()).hexdigest() == TINY_SHA256
    attribution = resources.files("biotrain_rt.data").joinpath("ATTRIBUTION.md").read_text()
    for needed in ("10.24432/C5ZP5C", "18(4):1122", "CC BY 4.0", "int16"):
        assert needed in attribution


def test_load_uci_emg_default():
    ds = btd.load_uci_emg()
    assert ds.X.shape == (1529, 8, 200) and ds.X.dtype == np.float32
    assert ds.fs == 1000.0
    assert ds.ch_names == [f"channel{i}" for i in range(1, 9)]
    assert ds.class_names == ["rest", "fist", "wrist_flexion", "wrist_extension",
                              "radial_deviation", "ulnar_deviation"]
    assert sorted(np.unique(ds.subject).tolist()) == [1, 3, 4, 5]
    assert sorted(np.unique(ds.session).tolist()) == [1, 2]
    # per-subject counts documented with the data (subjects 1, 3, 4, 5 = 405, 356, 398, 370)
    assert [int((ds.subject == s).sum()) for s in (1, 3, 4, 5)] == [405, 356, 398, 370]
    # subject 1 series 1 per-class counts [36, 34, 36, 32, 35, 36]
    m = (ds.subject == 1) & (ds.session == 1)
    assert np.bincount(ds.y[m], minlength=6).tolist() == [36, 34, 36, 32, 35, 36]
    # MYO int8 counts, exactly integral
    assert ds.X.min() >= -128 and ds.X.max() <= 127
    assert np.array_equal(ds.X, np.round(ds.X))
    assert set(ds.meta) == {"t_start_ms", "segment", "rep"}
    # windows of one labelled run start 100 ms apart (hop 100 at 1 kHz)
    run = (ds.subject == 1) & (ds.session == 1) & (ds.meta["segment"] == 1)
    assert np.all(np.diff(np.sort(ds.meta["t_start_ms"][run])) == 100)


def test_load_uci_emg_scale_and_selection():
    ds = btd.load_uci_emg(scale=128.0, subjects=[3], series=[2])
    ref = btd.load_uci_emg()
    m = (ref.subject == 3) & (ref.session == 2)
    assert len(ds) == 179
    np.testing.assert_array_equal(ds.X * 128.0, ref.X[m])
    with pytest.raises(ValueError, match="no windows"):
        btd.load_uci_emg(subjects=[2])


@pytest.mark.skipif(not os.path.exists(MUSE_TINY), reason="Muse data folder not present on this machine")
def test_load_muse_erp():
    ds = btd.load_muse_erp(MUSE_TINY)
    assert ds.X.shape == (2331, 4, 230)
    assert ds.fs == 256.0 and ds.ch_names == ["TP9", "AF7", "AF8", "TP10"]
    assert ds.class_counts().tolist() == [1950, 381]
    raw = np.load(MUSE_TINY)["X"]
    np.testing.assert_allclose(ds.X, raw / 10.0, rtol=0, atol=1e-4)  # microvolts
    s1 = btd.load_muse_erp(MUSE_TINY, subjects=[1], sessions=[2])
    assert set(s1.subject.tolist()) == {1} and set(s1.session.tolist()) == {2}


# --------------------------------------------------------------------------- #
# validation
# --------------------------------------------------------------------------- #
def test_one_class_only_is_rejected(rng):
    X = rng.standard_normal((10, 2, 16))
    with pytest.raises(ValueError, match="only one class"):
        btd.from_arrays(X, np.zeros(10, dtype=int), 100.0)
    with pytest.raises(ValueError, match="only one class"):
        btd.from_arrays(X, np.ones(10, dtype=int), 100.0, class_names=["a", "b"])
    ds = btd.load_uci_emg()
    with pytest.raises(ValueError, match="only one class"):
        ds.subset(ds.y == 2)


def test_channel_mismatch_is_rejected(rng):
    X = rng.standard_normal((4, 3, 16))
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="channels mismatch"):
        btd.from_arrays(X, y, 100.0, ch_names=["a", "b"])
    ds = btd.from_arrays(X, y, 100.0, ch_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="channels mismatch.*'z'"):
        ds.pick_channels(["a", "z"])


def test_other_bad_inputs(rng):
    X = rng.standard_normal((4, 3, 16))
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="windows, channels, samples"):
        btd.from_arrays(X[0], y, 100.0)
    with pytest.raises(ValueError, match="one entry per window"):
        btd.from_arrays(X, y[:3], 100.0)
    with pytest.raises(ValueError, match="labels must lie"):
        btd.from_arrays(X, np.array([0, 1, 2, 1]), 100.0, class_names=["a", "b"])
    with pytest.raises(ValueError, match="fs"):
        btd.from_arrays(X, y, 0.0)
    Xn = X.copy()
    Xn[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        btd.from_arrays(Xn, y, 100.0)
    with pytest.raises(ValueError, match="integers"):
        btd.from_arrays(X, np.array([0, 1, 0.5, 1]), 100.0)


def test_corrupted_file_is_a_value_error(tmp_path):
    good = tmp_path / "good.npz"
    with resources.as_file(_shipped_path()) as p:
        raw = open(p, "rb").read()
    good.write_bytes(raw)
    assert len(btd.load_npz(good)) == 1529
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="corrupted"):
        btd.load_uci_emg(bad)
    with pytest.raises(ValueError, match="corrupted"):
        btd.load_npz(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip archive at all" * 10)
    with pytest.raises(ValueError, match="corrupted"):
        btd.load_npz(junk)
    # a valid archive without the expected members
    other = tmp_path / "other.npz"
    np.savez(other, A=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        btd.load_uci_emg(other)
    with pytest.raises(ValueError, match="missing"):
        btd.load_npz(other)
    with pytest.raises(FileNotFoundError):
        btd.load_npz(tmp_path / "absent.npz")


def test_uci_loader_checks_channels(tmp_path):
    with resources.as_file(_shipped_path()) as p:
        d = dict(np.load(p))
    d["X"] = d["X"][:, :6]
    f = tmp_path / "six.npz"
    np.savez(f, **d)
    with pytest.raises(ValueError, match="channels mismatch"):
        btd.load_uci_emg(f)


def test_pick_channels_and_subset():
    ds = btd.load_uci_emg()
    p = ds.pick_channels(["channel3", "channel1"])
    assert p.ch_names == ["channel3", "channel1"]
    np.testing.assert_array_equal(p.X[:, 0], ds.X[:, 2])
    np.testing.assert_array_equal(p.X[:, 1], ds.X[:, 0])
    np.testing.assert_array_equal(ds.pick_channels([7]).X[:, 0], ds.X[:, 7])
    with pytest.raises(ValueError, match="twice"):
        ds.pick_channels(["channel1", 0])
    s = ds.subset(ds.session == 2)
    assert len(s) == int((ds.session == 2).sum())
    assert np.all(s.session == 2)
    assert s.meta["t_start_ms"].shape == (len(s),)


# --------------------------------------------------------------------------- #
# resampling against analytic signals
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("fs_out", [250.0, 200.0, 256.0, 300.0, 1600.0])
def test_resample_sine(fs_out):
    fs_in, f0, phase = 1000.0, 7.0, 0.3
    t = np.arange(2000) / fs_in
    x = np.stack([np.sin(2 * np.pi * f0 * t + phase), 0.5 * np.cos(2 * np.pi * f0 * t)])
    y = btd.resample(x, fs_in, fs_out)
    n_out = int(np.ceil(2000 * fs_out / fs_in))
    assert y.shape == (2, n_out)
    to = np.arange(n_out) / fs_out
    ref = np.stack([np.sin(2 * np.pi * f0 * to + phase), 0.5 * np.cos(2 * np.pi * f0 * to)])
    # 7 Hz is deep in the passband: the windowed-sinc ripple is ~0.2 %
    assert np.max(np.abs(y - ref)) < 4e-3


def test_decimate_removes_alias_and_keeps_passband():
    fs = 1000.0
    t = np.arange(4000) / fs
    low = np.sin(2 * np.pi * 10 * t)
    high = np.sin(2 * np.pi * 400 * t)     # above the new Nyquist (125 Hz): must be removed
    y = btd.decimate(low + high, 4)
    assert y.shape == (1000,)
    ref = low[::4]
    inner = slice(10, -10)                 # the reflected edges are not exact for a 400 Hz tone
    assert np.max(np.abs(y[inner] - ref[inner])) < 5e-3
    # without the anti-alias FIR the 400 Hz tone folds onto 100 Hz at full amplitude
    naive = btd.decimate(low + high, 4, antialias=False)
    np.testing.assert_array_equal(naive, (low + high)[::4])
    assert np.max(np.abs(naive - ref)) > 0.5


def test_resample_constant_and_dtype():
    x = np.full((3, 7), 2.5, dtype=np.float32)
    for up, down in [(2, 1), (3, 2), (1, 3), (5, 4)]:
        y = btd.resample_poly(x, up, down)
        assert y.dtype == np.float32 and y.shape == (3, -(-7 * up // down))
        np.testing.assert_allclose(y, 2.5, rtol=1e-6)
    with pytest.raises(ValueError):
        btd.resample_poly(x, 0, 2)
    with pytest.raises(ValueError):
        btd.decimate(x, 0)
    with pytest.raises(ValueError):
        btd.fir_lowpass(10, 0.5)


def test_fir_lowpass_response():
    h = btd.fir_lowpass(101, 0.2)
    H = np.abs(np.fft.rfft(h, 8192))
    f = np.linspace(0, 1, H.size)          # fraction of Nyquist
    assert np.allclose(h, h[::-1])         # linear phase
    assert abs(H[0] - 1.0) < 1e-12
    # Hamming window: transition ~3.3/N cycles/sample = 0.065 of Nyquist either side of the edge
    assert np.max(np.abs(H[f < 0.13] - 1.0)) < 4e-3   # Hamming ripple ~0.3 %
    assert np.max(H[f > 0.27]) < 3e-3      # stop band (~ -53 dB)
    assert abs(H[np.argmin(np.abs(f - 0.2))] - 0.5) < 0.02   # -6 dB at the cutoff


def test_dataset_resample_and_decimate():
    ds = btd.load_uci_emg().subset(np.arange(0, 1529, 7))
    d5 = ds.decimate(5, antialias=False)
    assert d5.fs == 200.0 and d5.X.shape[1:] == (8, 40)
    np.testing.assert_array_equal(d5.X, ds.X[..., ::5])
    r = ds.resample(250.0)
    assert r.fs == 250.0 and r.X.shape[1:] == (8, 50) and r.X.dtype == np.float32
    np.testing.assert_array_equal(r.y, ds.y)


# --------------------------------------------------------------------------- #
# log-energy feature
# --------------------------------------------------------------------------- #
def test_log_energy_analytic():
    # a sine of amplitude A over whole periods has mean square A^2 / 2; a constant c has c^2
    n = np.arange(200)
    A, c = 40.0, 3.0
    x = np.stack([A * np.sin(2 * np.pi * n / 25.0), np.full(200, c), np.zeros(200)])[None]  # [1, 3, 200]
    f = btd.log_energy(x, 25)
    assert f.shape == (1, 3, 8) and f.dtype == np.float32
    np.testing.assert_allclose(f[0, 0], np.log(A * A / 2 + 1) / 4, rtol=1e-6)
    np.testing.assert_allclose(f[0, 1], np.log(c * c + 1) / 4, rtol=1e-6)
    np.testing.assert_array_equal(f[0, 2], 0.0)
    # trailing samples that do not fill a block are dropped; offset and scale as given
    g = btd.log_energy(x[..., :197], 25, offset=2.0, scale=1.0)     # 7 whole blocks
    assert g.shape == (1, 3, 7)
    np.testing.assert_allclose(g[0, 1], np.log(c * c + 2.0), rtol=1e-6)
    # a gain on one channel is an additive shift once the energy dominates the offset
    big = btd.log_energy(x * 1000.0, 25)
    np.testing.assert_allclose(big[0, 0] - btd.log_energy(x * 500.0, 25)[0, 0], np.log(4.0) / 4, rtol=1e-4)
    with pytest.raises(ValueError, match="block"):
        btd.log_energy(x, 0)
    with pytest.raises(ValueError, match="block"):
        btd.log_energy(x, 201)
    with pytest.raises(ValueError, match="offset"):
        btd.log_energy(x, 25, offset=0.0)


# --------------------------------------------------------------------------- #
# windowing
# --------------------------------------------------------------------------- #
def test_window_counts_and_content():
    c, t = 3, 1050
    data = np.arange(c * t, dtype=np.float64).reshape(c, t)
    X, y, starts = btd.window_signal(data, 200, 100)
    assert y is None
    assert X.shape == ((t - 200) // 100 + 1, c, 200) == (9, 3, 200)
    assert starts.tolist() == list(range(0, 801, 100))
    np.testing.assert_array_equal(X[4], data[:, 400:600])
    X0, _, s0 = btd.window_signal(data[:, :150], 200, 100)
    assert X0.shape == (0, 3, 200) and s0.size == 0


def test_window_labels():
    t = 1000
    labels = np.zeros(t, dtype=int)
    labels[300:700] = 2
    labels[700:] = 1
    data = np.zeros((2, t))
    X, y, st = btd.window_signal(data, 200, 100, labels=labels, mode="pure")
    # pure windows: [0,200) [100,300) -> 0; [300,500) [400,600) [500,700) -> 2; [700,900) [800,1000) -> 1
    assert st.tolist() == [0, 100, 300, 400, 500, 700, 800]
    assert y.tolist() == [0, 0, 2, 2, 2, 1, 1]
    X, y, st = btd.window_signal(data, 200, 100, labels=labels, mode="majority")
    # [200,400) holds 100 samples of 0 and of 2: a tie goes to the smaller label
    assert y.tolist() == [0, 0, 0, 2, 2, 2, 1, 1, 1]
    X, y, st = btd.window_signal(data, 200, 100, labels=labels, mode="center", ignore=(0,))
    assert st.tolist() == [200, 300, 400, 500, 600, 700, 800]
    assert y.tolist() == [2, 2, 2, 2, 1, 1, 1]
    with pytest.raises(ValueError, match="one entry per sample"):
        btd.window_signal(data, 200, 100, labels=labels[:-1])


# --------------------------------------------------------------------------- #
# EDF through MNE (optional extra)
# --------------------------------------------------------------------------- #
def _write_edf(path, data_uv, fs, ch_names, record_s=1):
    """A minimal EDF (not EDF+) file written from the format specification."""
    n_ch, n = data_uv.shape
    spr = int(fs * record_s)
    assert n % spr == 0
    n_rec = n // spr
    pmin, pmax, dmin, dmax = -3276.8, 3276.7, -32768, 32767
    dig = np.round((data_uv - pmin) / (pmax - pmin) * (dmax - dmin) + dmin).astype("<i2")

    def f(s, w):
        s = str(s)
        assert len(s) <= w
        return s.ljust(w).encode("ascii")

    hdr = (f("0", 8) + f("X X X X", 80) + f("Startdate X X X X", 80) + f("01.01.20", 8) + f("00.00.00", 8)
           + f(256 * (n_ch + 1), 8) + f("", 44) + f(n_rec, 8) + f(record_s, 8) + f(n_ch, 4))
    for field, w in [(ch_names, 16), (["AgAgCl"] * n_ch, 80), (["uV"] * n_ch, 8), ([pmin] * n_ch, 8),
                     ([pmax] * n_ch, 8), ([dmin] * n_ch, 8), ([dmax] * n_ch, 8), ([""] * n_ch, 80),
                     ([spr] * n_ch, 8), ([""] * n_ch, 32)]:
        hdr += b"".join(f(v, w) for v in field)
    body = b"".join(dig[:, r * spr:(r + 1) * spr].tobytes() for r in range(n_rec))
    path.write_bytes(hdr + body)
    # what the file holds after quantisation, in uV
    return (dig.astype(np.float64) - dmin) / (dmax - dmin) * (pmax - pmin) + pmin


def test_read_recording_without_mne_says_how_to_install(tmp_path, monkeypatch):
    f = tmp_path / "r.edf"
    _write_edf(f, np.zeros((1, 100)), 100, ["C3"])
    real_import = builtins.__import__

    def no_mne(name, *a, **k):
        if name == "mne" or name.startswith("mne."):
            raise ImportError("No module named 'mne'")
        return real_import(name, *a, **k)

    monkeypatch.delitem(sys.modules, "mne", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_mne)
    with pytest.raises(ImportError, match=r"pip install biotrain-rt\[mne\]"):
        btd.read_recording(f)


def test_read_recording_rejects_unknown_type(tmp_path):
    f = tmp_path / "r.txt"
    f.write_text("x")
    with pytest.raises(ValueError, match="unsupported file type"):
        btd.read_recording(f)


def test_read_edf_through_mne(tmp_path, rng):
    import mne  # noqa: F401  (the [mne] extra is part of the test extras, so this runs on CI)
    fs, n = 100, 400
    t = np.arange(n) / fs
    data = np.stack([50 * np.sin(2 * np.pi * 3 * t), 20 * np.cos(2 * np.pi * 5 * t),
                     rng.standard_normal(n) * 10])
    f = tmp_path / "r.edf"
    expect = _write_edf(f, data, fs, ["Fz", "Cz", "Pz"])
    rec = btd.read_recording(f)
    assert rec.fs == 100.0 and rec.ch_names == ["Fz", "Cz", "Pz"]
    np.testing.assert_allclose(rec.data, expect, atol=1e-3)
    rec2 = btd.read_recording(f, picks=["Pz", "Fz"])
    np.testing.assert_allclose(rec2.data, expect[[2, 0]], atol=1e-3)
    bad = tmp_path / "bad.edf"
    bad.write_bytes(f.read_bytes()[:300])
    with pytest.raises(ValueError, match="corrupted"):
        btd.read_recording(bad)


def test_recording_to_dataset():
    fs = 100.0
    data = np.arange(2 * 1000, dtype=np.float32).reshape(2, 1000)
    rec = btd.Recording(data=data, fs=fs, ch_names=["a", "b"],
                        annotations=[(1.0, 3.0, "left"), (5.0, 2.5, "right"), (8.0, 1.0, "blink")])
    ds = rec.to_dataset(1.0, 0.5, {"left": 0, "right": 1})
    # left covers samples 100..399: windows at 100, 150, ..., 300 (5); right 500..749: 500..650 (4)
    assert ds.class_names == ["left", "right"]
    assert ds.meta["start"].tolist() == [100, 150, 200, 250, 300, 500, 550, 600, 650]
    assert ds.y.tolist() == [0] * 5 + [1] * 4
    np.testing.assert_array_equal(ds.X[1], data[:, 150:250])
    with pytest.raises(ValueError, match="channels mismatch"):
        btd.Recording(data=data, fs=fs, ch_names=["a"])
