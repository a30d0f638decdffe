"""The main job: leave-one-subject-out calibration on the embedded real EMG
data, safe adaptation, reproducibility, outputs, and what bad input gets."""
import json
import os

import numpy as np
import pytest

from biotrain_rt import cli
from biotrain_rt.calibrate import (CalibrationConfig, StrategyConfig, calibrate, first_k_per_class, prepare,
                                   safe_adapt, split_holdout, write_results)
from biotrain_rt.data import load_uci_emg, log_energy
import biotrain_rt as brt


def quick_cfg(**kw):
    cfg = CalibrationConfig(sweep=(4, 10), **kw)
    cfg.pretrain = StrategyConfig(lr=3e-3, epochs=6, batch_size=32)
    for s in cfg.adapt.values():
        s.epochs = 15
    return cfg


@pytest.fixture(scope="module")
def result():
    return calibrate(None, quick_cfg(), subjects=[3, 4], progress=False)


def test_defaults_are_the_studys_configuration():
    cfg = CalibrationConfig()
    assert (cfg.features, cfg.block, cfg.model) == ("log_energy", 25, "emgnet_logenergy")
    assert (cfg.pretrain.optimizer, cfg.pretrain.lr, cfg.pretrain.epochs, cfg.pretrain.batch_size) == ("adam", 3e-3, 20, 64)
    last, full, fixed = cfg.adapt["last"], cfg.adapt["full"], cfg.adapt["full-fixed"]
    assert (last.optimizer, last.lr, last.epochs, last.batch_size) == ("adam", 1e-2, 30, 10)
    assert (full.optimizer, full.lr, full.epochs, full.batch_size) == ("adam", 2e-3, 50, 10)
    assert fixed.optimizer == "sgd"  # the fixed-point trainer refuses Adam
    assert (cfg.holdout_per_class, cfg.holdout_gap) == (2, 1)
    assert CalibrationConfig(features="raw").model == "emgnet"
    with pytest.raises(ValueError, match="features"):
        CalibrationConfig(features="mfcc")


def test_prepare_log_energy_and_raw():
    raw = load_uci_emg(subjects=[3])
    ds = prepare(raw, CalibrationConfig())
    assert ds.X.shape == (raw.X.shape[0], 8, 8) and ds.fs == pytest.approx(40.0)
    # independent: ln(mean of x^2 over each 25-sample block + 1) / 4, in float64
    x = raw.X[5].astype(np.float64)
    expect = np.log((x.reshape(8, 8, 25) ** 2).mean(-1) + 1.0) / 4.0
    np.testing.assert_allclose(ds.X[5], expect, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(ds.X, log_energy(raw.X, 25))
    r = prepare(raw, CalibrationConfig(features="raw"))
    assert r.X.shape == (raw.X.shape[0], 8, 40)
    np.testing.assert_allclose(r.X[5], raw.X[5][:, ::5] / 32.0)


def test_emgnet_logenergy_is_the_studys_torch_model():
    """982 parameters; the same function as the study's PyTorch Sequential with the same weights."""
    import torch
    import torch.nn as nn
    torch.set_num_threads(1)
    net = brt.models.emgnet_logenergy(seed=3)
    assert net.n_params() == 982 and net.input_shape == (1, 8, 8)
    tm = nn.Sequential(nn.Conv2d(1, 16, (8, 1), bias=True), nn.GroupNorm(1, 16), nn.ReLU(),
                       nn.Conv2d(16, 32, (1, 1), bias=True), nn.GroupNorm(1, 32), nn.ReLU(),
                       nn.AvgPool2d((1, 8)), nn.Flatten(), nn.Linear(32, 6))
    assert sum(p.numel() for p in tm.parameters()) == 982
    sd = list(net.state_dict().values())
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for p, v in zip(tm.parameters(), sd):
            assert tuple(p.shape) == v.shape
            # move the norms away from identity so they are tested too
            p.copy_(torch.from_numpy(v + rng.normal(0, 0.1, v.shape).astype(np.float32)))
    net.load_state_dict({k: p.detach().numpy() for k, p in zip(net.state_dict(), tm.parameters())})
    x = rng.uniform(0, 2.5, (5, 1, 8, 8)).astype(np.float32)
    tr = brt.Trainer(net, strategy="none", batch_size=1)
    np.testing.assert_allclose(tr.predict_logits(x), tm(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
    tr.release()


def test_calibration_split_is_first_k_per_class_in_time():
    ds = prepare(load_uci_emg(), CalibrationConfig())
    idx = first_k_per_class(ds, 3, 1, 10)
    assert len(idx) == 60 and np.all(ds.subject[idx] == 3) and np.all(ds.session[idx] == 1)
    t = ds.meta["t_start_ms"]
    for c in range(6):
        mine = idx[ds.y[idx] == c]
        allc = np.flatnonzero((ds.subject == 3) & (ds.session == 1) & (ds.y == c))
        assert np.all(t[mine].max() <= np.sort(t[allc])[10 - 1])  # nothing later than the 10th window
    fit, hold = split_holdout(ds, idx, 2)
    assert len(fit) == 48 and len(hold) == 12 and not set(fit) & set(hold)
    assert all(t[hold[ds.y[hold] == c]].min() > t[fit[ds.y[fit] == c]].max() for c in range(6))
    # the default: windows 0-6 of each class train, 8-9 check, 7 (overlapping both by half) in neither
    fit, hold = split_holdout(ds, idx, 2, gap=1)
    assert len(fit) == 42 and len(hold) == 12
    for c in range(6):
        order = np.sort(t[idx[ds.y[idx] == c]])
        assert sorted(t[fit[ds.y[fit] == c]]) == list(order[:7])
        assert sorted(t[hold[ds.y[hold] == c]]) == list(order[8:])
    with pytest.raises(ValueError, match="none to train"):
        split_holdout(ds, first_k_per_class(ds, 3, 1, 3), 2, gap=1)


def test_result_structure_and_gains(result):
    assert [r["subject"] for r in result["subjects"]] == [3, 4]
    assert result["config"]["features"] == "log_energy" and result["config"]["block"] == 25
    assert result["model"] == {"name": "emgnet_logenergy", "input_shape": [1, 8, 8], "params": 982}
    for r in result["subjects"]:
        assert set(r["strategies"]) == {"none", "last", "full", "full-fixed"}
        assert r["strategies"]["full-fixed"]["trainable_params"] == r["strategies"]["full"]["trainable_params"]
        for name, s in r["strategies"].items():
            for k in ("acc_before_session2", "acc_after_session2", "acc_after_session1", "trainable_params"):
                assert k in s
            assert 0 <= s["acc_after_session2"] <= 1
        assert r["strategies"]["full"]["trainable_params"] > r["strategies"]["last"]["trainable_params"] > 0
        assert r["strategies"]["full"]["peak_bytes"] > r["strategies"]["last"]["peak_bytes"] > 0
        assert "longitudinal_session2" in r
    s = result["summary"]
    # calibrating on 60 windows of the new user helps on the next recording
    assert s["full"]["mean_acc_session2"] > s["none"]["mean_acc_session2"] + 0.05


def _without_timing(subjects):
    out = json.loads(json.dumps(subjects, default=float))
    for r in out:
        for s in r["strategies"].values():
            s.pop("samples_per_s", None)
    return out


def test_same_seed_same_numbers(result):
    """Everything but the measured speed is reproducible from the seed."""
    again = calibrate(None, quick_cfg(), subjects=[3, 4], progress=False)
    assert _without_timing(again["subjects"]) == _without_timing(result["subjects"])


def test_outputs_written(result, tmp_path):
    paths = write_results(result, str(tmp_path))
    data = json.load(open(paths["json"]))
    assert data["summary"]["full"]["mean_acc_session2"] == pytest.approx(result["summary"]["full"]["mean_acc_session2"])
    assert open(paths["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_safe_adaptation_keeps_the_model_before_when_worse():
    ds = prepare(load_uci_emg(subjects=[1, 3]), CalibrationConfig())
    net = brt.models.emgnet_logenergy(seed=0)
    tr = brt.Trainer(net, optimizer=brt.Adam(lr=3e-3), batch_size=32)
    tr.fit(ds.X[ds.subject == 1], ds.y[ds.subject == 1], epochs=5, progress=False)
    tr.release()
    before = net.state_dict()
    calib = first_k_per_class(ds, 3, 1, 10)
    # a learning rate that wrecks the model: the hold-out must veto it
    info = safe_adapt(net, "full", StrategyConfig(lr=50.0, epochs=20, batch_size=8, optimizer="sgd", momentum=0.9),
                      ds, calib, 2, seed=0, holdout_gap=1)
    after = net.state_dict()
    if not info["kept"]:
        for k in before:
            np.testing.assert_array_equal(before[k], after[k])
    assert info["holdout_after"] <= info["holdout_before"] or info["kept"]


def test_raw_features_stay_selectable():
    cfg = quick_cfg(features="raw", strategies=("none", "last", "full"), longitudinal=False)
    cfg.sweep = ()
    res = calibrate(None, cfg, subjects=[3], progress=False)
    assert res["model"] == {"name": "emgnet", "input_shape": [1, 8, 40], "params": 1606}
    assert res["config"]["features"] == "raw"
    assert res["summary"]["full"]["trainable_params"] == 1606


def test_demo_runs_with_its_defaults(tmp_path, capsys):
    """`biotrain-rt demo` exactly as the README runs it (a few seconds on the embedded data)."""
    assert cli.main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    for strat in ("none", "last", "full", "full-fixed"):
        assert f"| {strat} |" in out
    res = json.load(open(tmp_path / "results.json"))
    assert res["model"]["name"] == "emgnet_logenergy" and len(res["subjects"]) == 4
    assert (tmp_path / "calibration.png").exists()


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _uci_like(n_per=12, classes=6, subjects=(1, 2), channels=8, T=200):
    rng = np.random.default_rng(0)
    X, y, subj, ser, t = [], [], [], [], []
    for s in subjects:
        for se in (1, 2):
            for c in range(classes):
                for i in range(n_per):
                    X.append(rng.integers(-50, 50, (channels, T)))
                    y.append(c), subj.append(s), ser.append(se), t.append(i * 100)
    return dict(X=np.array(X, np.int16), y=np.array(y, np.uint8), subject=np.array(subj, np.uint8),
                series=np.array(ser, np.uint8), t_start_ms=np.array(t, np.int32), fs=1000.0, scale=1e5,
                ch_names=np.array([f"channel{i + 1}" for i in range(channels)]),
                class_names=np.array(["rest", "fist", "flex", "ext", "radial", "ulnar"][:classes]))


@pytest.mark.parametrize("case,message", [
    ("one_class", "one class|single class"),
    ("too_few", "fewer than k_per_class"),
    ("channels", "channels mismatch"),
    ("corrupt", "cannot read|not a"),
    ("missing", "No such file|cannot read|not found"),
])
def test_bad_input_exits_nonzero_and_writes_nothing(case, message, tmp_path, capsys):
    out = tmp_path / "out"
    if case == "one_class":
        a = _uci_like(classes=1)
        data = _write_npz(tmp_path / "d.npz", **a)
    elif case == "too_few":
        data = _write_npz(tmp_path / "d.npz", **_uci_like(n_per=4))
    elif case == "channels":
        data = _write_npz(tmp_path / "d.npz", **_uci_like(channels=4))
    elif case == "corrupt":
        p = tmp_path / "d.npz"
        p.write_bytes(b"PK\x03\x04 this is not a zip archive at all")
        data = str(p)
    else:
        data = str(tmp_path / "nope.npz")
    code = cli.main(["calibrate", "--data", data, "--out", str(out), "--quiet", "--pretrain-epochs", "1"])
    err = capsys.readouterr().err
    assert code != 0
    import re
    assert re.search(message, err), err
    assert not (out / "results.json").exists()


def test_cli_plan_command(capsys, tmp_path):
    png = tmp_path / "p.png"
    assert cli.main(["plan", "--model", "mibminet", "--plot", str(png)]) == 0
    assert "arena peak" in capsys.readouterr().out and png.exists()


def test_meta_pretraining_never_sees_the_held_out_subject(tmp_path):
    from biotrain_rt.calibrate import meta_tasks, pretrain
    from biotrain_rt.meta import MetaConfig
    ds = prepare(load_uci_emg(), CalibrationConfig())
    tasks = meta_tasks(ds, [1, 3, 4], 10)
    assert len(tasks) == 3
    for s, (sup, qry) in zip([1, 3, 4], tasks):
        np.testing.assert_array_equal(sup, first_k_per_class(ds, s, 1, 10))
        assert set(ds.subject[qry]) == {s} and set(ds.session[qry]) == {2}
    cfg = quick_cfg(meta=MetaConfig(episodes=3, inner_steps=2))
    a = pretrain(cfg, ds, 5, str(tmp_path)).state_dict()
    # the held-out subject's windows changed to garbage: the pretrained weights must not move
    X = ds.X.copy()
    X[ds.subject == 5] = 9.0
    import dataclasses
    b = pretrain(cfg, dataclasses.replace(ds, X=X), 5, None).state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    # the cache tells meta-learned from plain pretrained models apart
    plain = pretrain(quick_cfg(), ds, 5, str(tmp_path)).state_dict()
    assert not np.array_equal(plain["spatial.weight"], a["spatial.weight"])
    assert len(os.listdir(tmp_path)) == 2


def test_lora_strategies_calibrate_with_fewer_trainable_parameters():
    """LoRA next to last and full in the protocol: adapters on a copy of the pretrained model per
    subject, fewer trainable parameters and a smaller arena than full, the base untouched."""
    cfg = quick_cfg(features="raw", strategies=("none", "last", "full", "lora", "lora+last"), longitudinal=False)
    cfg.sweep = ()
    res = calibrate(None, cfg, subjects=[3], progress=False)
    s = res["summary"]
    assert 0 < s["lora"]["trainable_params"] < s["lora+last"]["trainable_params"] < s["full"]["trainable_params"]
    assert s["lora"]["peak_bytes"] < s["full"]["peak_bytes"]
    for strat in ("lora", "lora+last"):
        r = res["subjects"][0]["strategies"][strat]
        assert 0.0 <= r["acc_after_session2"] <= 1.0
    with pytest.raises(ValueError, match=r"unknown strategies \['lora2'\]"):
        calibrate(None, quick_cfg(strategies=("none", "lora2")), subjects=[3], progress=False)
    with pytest.raises(ValueError, match=r"no layer that takes a LoRA adapter of rank 99"):
        calibrate(None, quick_cfg(strategies=("lora",), lora_rank=99), subjects=[3], progress=False)
