"""New-subject calibration and cross-session adaptation, end to end.

For each held-out subject (leave-one-subject-out):

1. pretrain a subject-independent model on the other subjects, in the C runtime;
2. take the held-out subject's first ``k_per_class`` labelled windows of each
   class in session 1 (in time order: the first seconds of a new user's data)
   as the calibration set, and compare strategies: ``none`` (the pretrained
   model), ``last`` (only the final linear layer), ``full`` (every layer), and
   ``full-fixed`` (every layer in fixed point);
3. safe adaptation: the last ``holdout_per_class`` windows of each class of the
   calibration set are held out (and the ``holdout_gap`` windows before them,
   which overlap both sides, are left out); a strategy first trains on the
   rest, and if the adapted model is worse on the hold-out than the model
   before, the model before is kept (and the result says so); otherwise it is
   refit on the whole calibration set. A step that fails restores the model
   before: no half-updated model is left behind;
4. evaluate on the rest of session 1 and on session 2 (the next recording);
5. the longitudinal case: the calibrated model on session 2, before and after
   adapting on its first ``k_per_class`` windows per class of session 2,
   evaluated on the rest of session 2.

The windows first go through the device's preprocessing (``features``): by
default the log mean-square energy of each channel over 25 ms blocks
(:func:`biotrain_rt.data.log_energy`), the input of ``emgnet_logenergy``;
``features="raw"`` feeds the decimated, scaled samples to ``emgnet`` instead.

Everything is seeded: the same command gives the same numbers.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from . import models
from .data import Dataset, load_npz, load_uci_emg, log_energy
from .meta import MetaConfig, meta_train
from .optim import SGD, Adam
from . import _core
from .train import Trainer


@dataclass
class StrategyConfig:
    """How one strategy adapts: optimizer, learning rate, epochs, batch."""
    lr: float
    epochs: int
    batch_size: int = 8
    optimizer: str = "adam"
    momentum: float = 0.9
    # Linear probing before fine-tuning: train the final layer alone first for
    # head_epochs (at head_lr), then every layer. It keeps a random-ish head's
    # large early gradients out of the pretrained features.
    head_epochs: int = 0
    head_lr: float = 1e-2


FEATURES = ("log_energy", "raw")
#: the model each input kind was designed for (used when ``model`` is not given)
DEFAULT_MODEL = {"log_energy": "emgnet_logenergy", "raw": "emgnet"}


@dataclass
class CalibrationConfig:
    """Everything that decides a calibration run's numbers.

    The defaults are those of the calibration study on the UCI EMG data
    (docs/calibration_findings.md): log-energy input, the 982-parameter
    ``emgnet_logenergy``, Adam for pretraining, last-layer and full
    fine-tuning. Fixed point has no Adam, so ``full-fixed`` runs SGD with
    momentum."""
    features: str = "log_energy"      # "log_energy" (default) or "raw"
    model: Optional[str] = None       # default: DEFAULT_MODEL[features]
    block: int = 25                   # log_energy: samples per block (25 ms at 1 kHz = 5 samples of the ~200 Hz stream)
    decimate: int = 5                 # raw: 1 kHz sample-and-hold of a ~200 Hz stream, keep every 5th sample
    scale: float = 32.0               # raw: MYO counts (int8 range) to about unit range
    k_per_class: int = 10             # calibration windows per class (10 x 6 = 60 windows, ~6 s)
    holdout_per_class: int = 2        # of those, the last ones are held out to decide whether to keep the adaptation
    holdout_gap: int = 1              # windows before the hold-out left out of both (windows overlap by 50 %)
    pretrain: StrategyConfig = field(default_factory=lambda: StrategyConfig(lr=3e-3, epochs=20, batch_size=64))
    # after pretraining: first-order MAML over the training subjects (meta.py); each episode
    # calibrates a copy on one subject's first k_per_class windows per class of session 1 and
    # learns from its loss on that subject's session 2
    meta: MetaConfig = field(default_factory=MetaConfig)
    adapt: Dict[str, StrategyConfig] = field(default_factory=lambda: {
        "last": StrategyConfig(lr=1e-2, epochs=30, batch_size=10),
        "full": StrategyConfig(lr=2e-3, epochs=50, batch_size=10),
        # fixed point runs SGD only; momentum 0.9, lr 3e-3..1e-2 at 100 epochs tied on a 10-subject
        # screen (2 seeds), 50 epochs was worse: the middle of that range
        "full-fixed": StrategyConfig(lr=5e-3, epochs=100, batch_size=10, optimizer="sgd", momentum=0.9),
        # LoRA adapters (rank lora_rank) on every layer that takes one of that rank; "lora+last" also
        # trains the head whole
        "lora": StrategyConfig(lr=1e-2, epochs=50, batch_size=10),
        "lora+last": StrategyConfig(lr=1e-2, epochs=50, batch_size=10),
    })
    lora_rank: int = 4
    lora_alpha: float = 8.0
    strategies: Sequence[str] = ("none", "last", "full", "full-fixed")
    sweep: Sequence[int] = (4, 7, 10)  # calibration windows per class for the accuracy-vs-samples plot
    longitudinal: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {self.features!r}")
        if self.model is None:
            self.model = DEFAULT_MODEL[self.features]
        if self.holdout_per_class < 0 or self.holdout_gap < 0:
            raise ValueError("holdout_per_class and holdout_gap must be >= 0")
        if isinstance(self.lora_rank, bool) or not isinstance(self.lora_rank, int) or self.lora_rank < 1:
            raise ValueError(f"lora_rank must be a positive integer, got {self.lora_rank!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- data
def prepare(ds: Dataset, cfg: CalibrationConfig) -> Dataset:
    """The device's preprocessing of each window: log-energy of ``block``-sample
    blocks (``features="log_energy"``), or decimated and scaled samples (``"raw"``)."""
    if cfg.features == "log_energy":
        if not 1 <= cfg.block <= ds.n_times:
            raise ValueError(f"block={cfg.block} must be in 1..{ds.n_times} (the window length)")
        X = log_energy(ds.X, cfg.block)
        return dataclasses.replace(ds, X=np.ascontiguousarray(X), fs=ds.fs / cfg.block)
    if cfg.features != "raw":
        raise ValueError(f"features must be one of {FEATURES}, got {cfg.features!r}")
    X = ds.X
    if cfg.decimate > 1:
        X = X[..., ::cfg.decimate]
    X = (X / np.float32(cfg.scale)).astype(np.float32)
    return dataclasses.replace(ds, X=np.ascontiguousarray(X), fs=ds.fs / cfg.decimate)


def _time_order(ds: Dataset, idx: np.ndarray) -> np.ndarray:
    t = ds.meta.get("t_start_ms")
    if t is None:
        return idx  # file order is time order
    return idx[np.argsort(np.asarray(t)[idx], kind="stable")]


def first_k_per_class(ds: Dataset, subject: int, session: int, k: int) -> np.ndarray:
    """Indices of the first k windows (in time) of each class of one recording."""
    base = np.flatnonzero((ds.subject == subject) & (ds.session == session))
    out = []
    for c in range(ds.n_classes):
        idx = _time_order(ds, base[ds.y[base] == c])
        if len(idx) < k:
            raise ValueError(f"subject {subject} session {session} has {len(idx)} windows of class "
                             f"'{ds.class_names[c]}', fewer than k_per_class={k}; lower k_per_class")
        out.append(idx[:k])
    return np.concatenate(out)


def split_holdout(ds: Dataset, idx: np.ndarray, per_class: int, gap: int = 0):
    """The last `per_class` windows (in time) of each class are the hold-out;
    the `gap` windows before them are in neither part (a window overlapping
    both would leak the hold-out into training)."""
    train, hold = [], []
    for c in range(ds.n_classes):
        i = _time_order(ds, idx[ds.y[idx] == c])
        cut = len(i) - per_class
        if cut - gap < 1:
            raise ValueError(f"{len(i)} calibration windows of class '{ds.class_names[c]}' leave none to train on "
                             f"after a hold-out of {per_class} and a gap of {gap}")
        train.append(i[:cut - gap])
        hold.append(i[cut:])
    return np.concatenate(train), np.concatenate(hold)


def check_dataset(ds: Dataset, net_channels: Optional[int] = None) -> None:
    classes = np.unique(ds.y)
    if len(classes) < 2:
        raise ValueError(f"the dataset has a single class ({ds.class_names[int(classes[0])]!r}); "
                         "calibration needs at least two")
    if net_channels is not None and ds.n_channels != net_channels:
        raise ValueError(f"the data has {ds.n_channels} channels but the model takes {net_channels}")


def make_model(cfg: CalibrationConfig, ds: Dataset, seed: int):
    if cfg.model not in models.ZOO:
        raise ValueError(f"unknown model '{cfg.model}'; choose from {sorted(models.ZOO)}")
    return models.ZOO[cfg.model](channels=ds.n_channels, samples=ds.n_times, classes=ds.n_classes, seed=seed)


def _optimizer(sc: StrategyConfig):
    if sc.optimizer == "adam":
        return Adam(lr=sc.lr)
    if sc.optimizer == "sgd":
        return SGD(lr=sc.lr, momentum=sc.momentum)
    raise ValueError(f"unknown optimizer {sc.optimizer!r}")


# ---------------------------------------------------------------- adaptation

def adapt(net, strategy: str, sc: StrategyConfig, X, y, seed: int):
    """Trains `net` in place with a strategy; returns (trainer figures).
    On any failure the network's parameters are restored."""
    before = net.state_dict()
    dtype = "fixed" if strategy.endswith("-fixed") else "float32"
    base = strategy.replace("-fixed", "")
    try:
        t0 = time.perf_counter()
        n_samples = sc.epochs * len(X)
        if base == "full" and sc.head_epochs > 0:
            head = Trainer(net, optimizer=_optimizer(dataclasses.replace(sc, lr=sc.head_lr)), strategy="last",
                           batch_size=min(sc.batch_size, len(X)), seed=seed, dtype=dtype)
            head.fit(X, y, epochs=sc.head_epochs, progress=False)
            head.release()
            n_samples += sc.head_epochs * len(X)
        tr = Trainer(net, optimizer=_optimizer(sc), strategy=base, batch_size=min(sc.batch_size, len(X)),
                     seed=seed, dtype=dtype)
        tr.fit(X, y, epochs=sc.epochs, progress=False)
        dt = time.perf_counter() - t0
        figures = {"trainable_params": tr.n_trainable, "peak_bytes": tr.plan.peak_bytes,
                   "samples_per_s": n_samples / dt if dt > 0 else float("inf")}
        tr.release()
        return figures
    except Exception:
        net.load_state_dict(before)
        raise


def evaluate(net, X, y) -> float:
    if len(X) == 0:
        return float("nan")
    tr = Trainer(net, strategy="none", batch_size=1)
    acc = tr.evaluate(X, y)
    tr.release()
    return acc


def safe_adapt(net, strategy: str, sc: StrategyConfig, ds: Dataset, calib: np.ndarray, holdout_per_class: int,
               seed: int, holdout_gap: int = 0) -> dict:
    """Adapts on the calibration set minus a hold-out; keeps the result only if
    it is no worse on the hold-out, then refits on the whole calibration set."""
    start = net.state_dict()
    fit_idx, hold_idx = (split_holdout(ds, calib, holdout_per_class, holdout_gap) if holdout_per_class > 0
                         else (calib, calib[:0]))
    acc_hold_before = evaluate(net, ds.X[hold_idx], ds.y[hold_idx]) if len(hold_idx) else float("nan")
    adapt(net, strategy, sc, ds.X[fit_idx], ds.y[fit_idx], seed)
    acc_hold_after = evaluate(net, ds.X[hold_idx], ds.y[hold_idx]) if len(hold_idx) else float("nan")
    net.load_state_dict(start)
    kept = not (acc_hold_after < acc_hold_before)
    info = {"holdout_before": acc_hold_before, "holdout_after": acc_hold_after, "kept": bool(kept)}
    if kept:
        info.update(adapt(net, strategy, sc, ds.X[calib], ds.y[calib], seed))
    else:
        # measure the plan and speed anyway, on a throwaway copy, then keep the model before
        info.update(adapt(net, strategy, dataclasses.replace(sc, epochs=1, head_epochs=min(sc.head_epochs, 1)),
                          ds.X[calib], ds.y[calib], seed))
        net.load_state_dict(start)
    return info


# ---------------------------------------------------------------- the run
def meta_tasks(ds: Dataset, subjects: Sequence[int], k: int) -> List[tuple]:
    """One meta-learning task per training subject: its calibration set
    (first k windows per class of session 1) as support, its session 2 (or,
    without one, the rest of its data) as query. Subjects too short for the
    calibration set are skipped."""
    tasks = []
    for s in subjects:
        try:
            sup = first_k_per_class(ds, s, 1, k)
        except ValueError:
            continue
        qry = np.flatnonzero((ds.subject == s) & (ds.session == 2))
        if len(qry) == 0:
            qry = np.setdiff1d(np.flatnonzero(ds.subject == s), sup)
        if len(qry):
            tasks.append((sup, qry))
    return tasks


def pretrain(cfg: CalibrationConfig, ds: Dataset, held_out: int, cache_dir: Optional[str]):
    """The subject-independent model for one fold: ordinary pretraining on
    every other subject, then (if ``cfg.meta.episodes``) meta-learning on
    them. The held-out subject is never seen."""
    train = np.flatnonzero(ds.subject != held_out)
    net = make_model(cfg, ds, seed=cfg.seed)
    key = None
    if cache_dir:
        import hashlib
        # only what decides the pretrained weights: not the adaptation settings
        pre = {k: cfg.to_dict()[k] for k in ("model", "features", "block", "decimate", "scale", "pretrain", "seed")}
        if cfg.meta.episodes:
            pre.update(meta=dataclasses.asdict(cfg.meta), k_per_class=cfg.k_per_class)
        h = hashlib.sha256(json.dumps(pre, sort_keys=True, default=str).encode())
        h.update(ds.X[train].tobytes())
        h.update(ds.y[train].tobytes())
        if cfg.meta.episodes:
            h.update(ds.session[train].tobytes())
            h.update(ds.subject[train].tobytes())
        key = os.path.join(cache_dir, f"pretrained_{cfg.model}_s{held_out}_{h.hexdigest()[:16]}.npz")
        cached = _read_cache(key)
        if cached is not None:
            net.load_state_dict(cached)
            return net
    tr = Trainer(net, optimizer=_optimizer(cfg.pretrain), strategy="full", batch_size=cfg.pretrain.batch_size,
                 seed=cfg.seed)
    tr.fit(ds.X[train], ds.y[train], epochs=cfg.pretrain.epochs, progress=False)
    tr.release()
    if cfg.meta.episodes:
        others = [int(s) for s in np.unique(ds.subject[train])]
        tasks = meta_tasks(ds, others, cfg.k_per_class)
        meta_train(net, ds.X, ds.y, tasks, cfg.meta, make_copy=lambda: make_model(cfg, ds, seed=cfg.seed),
                   seed=cfg.seed, pool=train)
    if key:
        _write_cache(key, net.state_dict())
    return net


def _read_cache(path: str) -> Optional[Dict[str, np.ndarray]]:
    """A cached model, or None if there is none (or a file that is not a whole one)."""
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except (FileNotFoundError, OSError, ValueError, EOFError):
        return None


def _write_cache(path: str, state: Dict[str, np.ndarray]) -> None:
    """Writes a cached model atomically (a private temporary file, then a rename), so that
    folds in other processes or on other machines sharing the directory read a whole file or
    none; two writers of one key write the same bytes."""
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **state)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_subject(cfg: CalibrationConfig, ds: Dataset, s: int, strategies: Sequence[str],
                cache_dir: Optional[str]) -> dict:
    net0 = pretrain(cfg, ds, s, cache_dir)
    w0 = net0.state_dict()
    calib = first_k_per_class(ds, s, 1, cfg.k_per_class)
    rest1 = np.setdiff1d(np.flatnonzero((ds.subject == s) & (ds.session == 1)), calib)
    sess2 = np.flatnonzero((ds.subject == s) & (ds.session == 2))
    res = {"subject": int(s), "n_calibration": int(len(calib)), "n_rest_session1": int(len(rest1)),
           "n_session2": int(len(sess2)), "strategies": {}}
    base1 = evaluate(net0, ds.X[rest1], ds.y[rest1])
    base2 = evaluate(net0, ds.X[sess2], ds.y[sess2])
    calibrated = {}

    def start(strat):
        """The pretrained model, with fresh adapters for a LoRA strategy."""
        net = make_model(cfg, ds, seed=cfg.seed)
        net.load_state_dict(w0)
        if strat.startswith("lora"):
            from .lora import max_rank
            net.add_lora([l.name for l in net.layers[1:] if max_rank(l) >= cfg.lora_rank], rank=cfg.lora_rank,
                         alpha=cfg.lora_alpha, seed=cfg.seed)
        return net

    for strat in strategies:
        net = start(strat)
        if strat == "none":
            r = {"trainable_params": 0, "peak_bytes": 0, "samples_per_s": None, "kept": True}
        else:
            r = safe_adapt(net, strat, cfg.adapt[strat], ds, calib, cfg.holdout_per_class, cfg.seed,
                           cfg.holdout_gap)
        r.update({"acc_before_session1": base1, "acc_after_session1": evaluate(net, ds.X[rest1], ds.y[rest1]),
                  "acc_before_session2": base2, "acc_after_session2": evaluate(net, ds.X[sess2], ds.y[sess2])})
        # the accuracy against the number of calibration windows (for the plot)
        sweep = {}
        if strat != "none":
            for k in cfg.sweep:
                if k == cfg.k_per_class or k - cfg.holdout_per_class - cfg.holdout_gap < 1:
                    continue
                net_k = start(strat)
                safe_adapt(net_k, strat, cfg.adapt[strat], ds, first_k_per_class(ds, s, 1, k),
                           cfg.holdout_per_class, cfg.seed, cfg.holdout_gap)
                sweep[str(k * ds.n_classes)] = evaluate(net_k, ds.X[sess2], ds.y[sess2])
        sweep[str(cfg.k_per_class * ds.n_classes)] = r["acc_after_session2"]
        r["sweep_session2"] = sweep
        res["strategies"][strat] = r
        calibrated[strat] = net
    if cfg.longitudinal and len(sess2) and "full" in calibrated:
        cal2 = first_k_per_class(ds, s, 2, cfg.k_per_class)
        rest2 = np.setdiff1d(sess2, cal2)
        lon = {}
        for strat in ("last", "full"):
            if strat not in strategies:
                continue
            net = make_model(cfg, ds, seed=cfg.seed)
            net.load_state_dict(calibrated["full"].state_dict())
            before = evaluate(net, ds.X[rest2], ds.y[rest2])
            info = safe_adapt(net, strat, cfg.adapt[strat], ds, cal2, cfg.holdout_per_class, cfg.seed,
                              cfg.holdout_gap)
            lon[strat] = {"acc_before": before, "acc_after": evaluate(net, ds.X[rest2], ds.y[rest2]),
                          "kept": info["kept"]}
        res["longitudinal_session2"] = lon
    return res


def summarise(subjects: List[dict], strategies: Sequence[str]) -> dict:
    out = {}
    for strat in strategies:
        rows = [r["strategies"][strat] for r in subjects]
        out[strat] = {
            "mean_acc_session2": float(np.mean([r["acc_after_session2"] for r in rows])),
            "mean_acc_before_session2": float(np.mean([r["acc_before_session2"] for r in rows])),
            "mean_acc_session1": float(np.nanmean([r["acc_after_session1"] for r in rows])),
            "mean_gain_session2": float(np.mean([r["acc_after_session2"] - r["acc_before_session2"] for r in rows])),
            "trainable_params": int(rows[0]["trainable_params"]),
            "peak_bytes": int(max(r["peak_bytes"] for r in rows)),
            "samples_per_s": (float(np.mean([r["samples_per_s"] for r in rows]))
                              if rows[0]["samples_per_s"] is not None else None),
            "kept": int(sum(bool(r["kept"]) for r in rows)),
        }
    lon = [r["longitudinal_session2"] for r in subjects if "longitudinal_session2" in r]
    if lon:
        out["longitudinal_session2"] = {
            s: {"mean_acc_before": float(np.mean([l[s]["acc_before"] for l in lon])),
                "mean_acc_after": float(np.mean([l[s]["acc_after"] for l in lon]))}
            for s in lon[0]}
    return out


#: result fields that measure time, not the model: they differ between runs, everything else does not
TIMING_FIELDS = ("samples_per_s", "seconds")


def _fold_pool_init(ds):
    global _FOLD_DS
    _FOLD_DS = ds


def _fold_in_pool(cfg, s, strategies, cache_dir):
    return run_subject(cfg, _FOLD_DS, s, strategies, cache_dir)


_FOLD_DS = None


def _run_folds(cfg, ds, subjects, strategies, cache_dir, jobs: int, client, on_done):
    """Every held-out subject's fold, serially, in `jobs` processes or on a Dask cluster; the
    results in subject order. A fold depends only on (cfg, data, subject): the same numbers
    wherever it runs."""
    if client is not None:
        if isinstance(client, str):
            from dask.distributed import Client
            with Client(client) as c:
                return _run_folds(cfg, ds, subjects, strategies, cache_dir, 1, c, on_done)
        from dask.distributed import as_completed
        data = client.scatter(ds, broadcast=True)
        futures = {client.submit(run_subject, cfg, data, s, strategies, cache_dir, pure=False,
                                 key=f"calibrate-fold-{s}-{os.getpid()}-{time.monotonic_ns()}"): i
                   for i, s in enumerate(subjects)}
        out = [None] * len(subjects)
        for fut in as_completed(futures):
            out[futures[fut]] = fut.result()
            on_done(out[futures[fut]])
        return out
    if jobs is None or jobs <= 1 or len(subjects) <= 1:
        out = []
        for s in subjects:
            out.append(run_subject(cfg, ds, s, strategies, cache_dir))
            on_done(out[-1])
        return out
    import concurrent.futures as cf
    import multiprocessing as mp
    # spawn: a fresh interpreter per worker (no forked threads or locks); the data travels once per worker
    with cf.ProcessPoolExecutor(max_workers=min(int(jobs), len(subjects)), mp_context=mp.get_context("spawn"),
                                initializer=_fold_pool_init, initargs=(ds,)) as pool:
        futures = {pool.submit(_fold_in_pool, cfg, s, strategies, cache_dir): i for i, s in enumerate(subjects)}
        out = [None] * len(subjects)
        for fut in cf.as_completed(futures):
            out[futures[fut]] = fut.result()
            on_done(out[futures[fut]])
        return out


def calibrate(data: Optional[str] = None, cfg: Optional[CalibrationConfig] = None,
              subjects: Optional[Sequence[int]] = None, cache_dir: Optional[str] = None,
              progress: bool = True, jobs: int = 1, client=None) -> dict:
    """Runs the whole protocol; returns the results as a JSON-able dict.

    The folds (one per held-out subject) run serially (``jobs=1``), in ``jobs``
    processes on this machine, or on a Dask cluster (``client``: a
    ``dask.distributed.Client`` or a scheduler address); the results are the
    same for the same seed (only the figures in ``TIMING_FIELDS`` differ).
    On a cluster, ``cache_dir`` must be a directory every worker sees (writes
    are atomic, so workers may share it)."""
    if not isinstance(jobs, (int, np.integer)) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    cfg = cfg or CalibrationConfig()
    raw = load_uci_emg(data) if (data is None or _is_uci(data)) else load_npz(data)
    ds = prepare(raw, cfg)
    net = make_model(cfg, ds, seed=cfg.seed)
    check_dataset(ds, net.input_shape[1])
    strategies = list(cfg.strategies)
    unknown = [s for s in strategies if s != "none" and s not in cfg.adapt]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}: choose from {['none', *cfg.adapt]}")
    if any(s.startswith("lora") for s in strategies):
        from .lora import max_rank
        if not any(max_rank(l) >= cfg.lora_rank for l in net.layers[1:]):
            raise ValueError(f"model '{cfg.model}' has no layer that takes a LoRA adapter of rank {cfg.lora_rank}; "
                             f"lower lora_rank or leave the lora strategies out")
    fixed_ops = {o["name"] for o in _core.op_table() if "fixed" in o["formats"]}
    float_only = sorted({l.kind for l in net.layers[1:]} - fixed_ops)
    if "full-fixed" in strategies and float_only:
        # the model has layers without fixed-point kernels: that strategy cannot run, say so once
        strategies.remove("full-fixed")
        print(f"calibrate: strategy full-fixed skipped: model '{cfg.model}' has layers without fixed-point "
              f"kernels ({', '.join(float_only)})", file=sys.stderr)
    both = [int(s) for s in np.unique(ds.subject)
            if set(np.unique(ds.session[ds.subject == s]).tolist()) >= {1, 2}]
    if subjects:
        missing = [s for s in subjects if s not in both]
        if missing:
            raise ValueError(f"subjects {missing} are not in the data with two sessions (have {both})")
        both = [int(s) for s in subjects]
    if len(np.unique(ds.subject)) < 2:
        raise ValueError("leave-one-subject-out needs at least two subjects")
    for s in both:  # fail early, before any training, if a subject is too short
        split_holdout(ds, first_k_per_class(ds, s, 1, cfg.k_per_class), cfg.holdout_per_class, cfg.holdout_gap)
    per_subject = []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(both), desc="calibrate (leave one subject out)", unit="subject")
    t0 = time.perf_counter()

    def on_done(r):
        if bar is not None:
            bar.update(1)
            acc = r["strategies"].get("full", {}).get("acc_after_session2")
            if acc is not None:
                bar.set_postfix(subject=r["subject"], full=f"{acc:.3f}")

    if cache_dir:
        cache_dir = os.path.abspath(cache_dir)
    try:
        per_subject = _run_folds(cfg, ds, both, strategies, cache_dir, int(jobs), client, on_done)
    finally:
        if bar is not None:
            bar.close()
    return {"config": cfg.to_dict(), "data": raw.info.get("path", "embedded uci_emg_gestures_tiny.npz"),
            "model": {"name": cfg.model, "input_shape": list(net.input_shape), "params": net.n_params()},
            "subjects": per_subject, "summary": summarise(per_subject, strategies),
            "seconds": time.perf_counter() - t0}


def _is_uci(path: str) -> bool:
    try:
        with np.load(path) as f:
            return "series" in f.files and "t_start_ms" in f.files
    except Exception as e:
        raise ValueError(f"cannot read {path}: {e}") from None


# ---------------------------------------------------------------- output
def format_table(res: dict) -> str:
    s = res["summary"]
    lines = ["| strategy | accuracy before | accuracy after (session 2) | gain | session 1 rest | trainable params | "
             "peak bytes | training samples/s | kept |",
             "|---|---|---|---|---|---|---|---|---|"]
    n = len(res["subjects"])
    for strat, r in s.items():
        if strat == "longitudinal_session2":
            continue
        sps = f"{r['samples_per_s']:.0f}" if r["samples_per_s"] else "-"
        lines.append(f"| {strat} | {r['mean_acc_before_session2']:.3f} | {r['mean_acc_session2']:.3f} | "
                     f"{r['mean_gain_session2']:+.3f} | {r['mean_acc_session1']:.3f} | {r['trainable_params']} | "
                     f"{r['peak_bytes'] if r['peak_bytes'] else '-'} | {sps} | {r['kept']}/{n} |")
    if "longitudinal_session2" in s:
        lines.append("")
        lines.append("| longitudinal (session 2, after calibrating on session 1) | before | after |")
        lines.append("|---|---|---|")
        for strat, r in s["longitudinal_session2"].items():
            lines.append(f"| {strat} | {r['mean_acc_before']:.3f} | {r['mean_acc_after']:.3f} |")
    return "\n".join(lines)


def format_subjects(res: dict) -> str:
    strats = list(res["subjects"][0]["strategies"])
    lines = ["| subject | " + " | ".join(strats) + " |", "|---|" + "---|" * len(strats)]
    for r in res["subjects"]:
        lines.append(f"| {r['subject']} | " + " | ".join(
            f"{r['strategies'][s]['acc_after_session2']:.3f}" for s in strats) + " |")
    return "\n".join(lines)


def plot(res: dict, path: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    strats = list(res["subjects"][0]["strategies"])
    for strat in strats:
        if strat == "none":
            m = np.mean([r["strategies"]["none"]["acc_before_session2"] for r in res["subjects"]])
            a.axhline(m, color="gray", linestyle="--", label="none (pretrained only)")
            continue
        ks = sorted({int(k) for r in res["subjects"] for k in r["strategies"][strat]["sweep_session2"]})
        means = [np.mean([r["strategies"][strat]["sweep_session2"][str(k)] for r in res["subjects"]]) for k in ks]
        a.plot(ks, means, marker="o", label=strat)
    a.set_xlabel("calibration windows from session 1")
    a.set_ylabel("mean accuracy on session 2")
    a.set_title("new-subject calibration (leave one subject out)")
    a.legend()
    a.grid(alpha=0.3)
    s = res["summary"]
    names = [k for k in strats if k != "none"]
    b.bar(names, [s[k]["peak_bytes"] / 1024 for k in names], color=["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"][:len(names)])
    b.set_ylabel("peak arena of one training step (KiB)")
    b.set_title("memory per strategy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_results(res: dict, out_dir: str) -> Dict[str, str]:
    """Writes results.json (atomically: a complete file or none) and the plot."""
    os.makedirs(out_dir, exist_ok=True)
    js = os.path.join(out_dir, "results.json")
    png = os.path.join(out_dir, "calibration.png")
    plot(res, png)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".json.tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(res, f, indent=1, default=float)
    os.replace(tmp, js)
    return {"json": js, "png": png}


# ---------------------------------------------------------------- CLI
def _run_cli(args, demo: bool) -> int:
    cfg = CalibrationConfig(seed=args.seed, features=args.features, model=args.model)
    if args.k is not None:
        cfg.k_per_class = args.k
    if args.strategies:
        cfg.strategies = tuple(args.strategies.split(","))
    if args.lora_rank is not None:
        if args.lora_rank < 1:
            raise ValueError(f"--lora-rank must be a positive integer, got {args.lora_rank}")
        cfg.lora_rank = args.lora_rank
    if args.pretrain_epochs is not None:
        cfg.pretrain.epochs = args.pretrain_epochs
    if args.meta_episodes is not None:
        cfg.meta = dataclasses.replace(cfg.meta, episodes=args.meta_episodes)
    res = calibrate(None if demo else args.data, cfg, subjects=args.subjects, cache_dir=args.cache,
                    progress=not args.quiet, jobs=args.jobs, client=args.dask)
    paths = write_results(res, args.out)
    print(format_table(res))
    print()
    print(format_subjects(res))
    print(f"\nwrote {paths['json']} and {paths['png']} ({res['seconds']:.0f} s)")
    return 0


def add_calibrate_commands(sub) -> None:
    for name, demo in (("demo", True), ("calibrate", False)):
        help_ = ("new-subject calibration on the embedded EMG data (the README's main command)" if demo else
                 "leave-one-subject-out calibration on a dataset file")
        p = sub.add_parser(name, help=help_)
        if not demo:
            p.add_argument("--data", default=None, help="a .npz (UCI EMG gestures format); default: embedded data")
        p.add_argument("--subjects", type=int, nargs="*", default=None, help="held-out subjects (default: all)")
        p.add_argument("--k", type=int, default=None, help="calibration windows per class (default 10)")
        p.add_argument("--strategies", default=None,
                       help="comma-separated: none,last,full,full-fixed,lora,lora+last (default: the first four)")
        p.add_argument("--lora-rank", type=int, default=None, help="rank of the lora strategies' adapters (default 4)")
        p.add_argument("--features", choices=FEATURES, default="log_energy",
                       help="the device's preprocessing: log-energy of 25 ms blocks (default) or raw samples")
        p.add_argument("--model", default=None,
                       help="zoo model (default: emgnet_logenergy for log_energy, emgnet for raw)")
        p.add_argument("--pretrain-epochs", type=int, default=None)
        p.add_argument("--meta-episodes", type=int, default=None,
                       help="meta-learning episodes after pretraining (0 turns the phase off)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--cache", default=None, help="directory to keep pretrained models in")
        p.add_argument("--jobs", type=int, default=1,
                       help="folds (held-out subjects) in this many processes (same results as 1)")
        p.add_argument("--dask", default=None, metavar="ADDRESS",
                       help="run the folds on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786)")
        p.add_argument("--out", default=".", help="where results.json and calibration.png go")
        p.add_argument("--quiet", action="store_true")
        p.set_defaults(func=lambda a, d=demo: _run_cli(a, d))
