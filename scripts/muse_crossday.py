#!/usr/bin/env python
"""Cross-day adaptation on real consumer EEG (Muse P300, subject 1, three days).

Trains EEGNet (GroupNorm) in the C runtime on day 1, then for each later day:
evaluates it as it is, adapts it (full fine-tuning, and last layer only) on
the first K epochs of that day, and evaluates on the rest of the day.
The P300 signal of a 4-channel headband is weak (a simple LDA reaches AUC
0.70-0.75 within a session): reported as ROC AUC and balanced accuracy.

    python scripts/muse_crossday.py --data ../shared/data/eegnb_muse_p300.npz
"""
import argparse
import json

import numpy as np

import biotrain_rt as brt
from biotrain_rt.data import load_muse_erp


def auc(scores, y):
    """ROC AUC by ranks (ties averaged)."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    s = scores[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = y == 1
    n1, n0 = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def balanced_accuracy(pred, y):
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def balance(X, y, rng):
    """Oversamples the minority class so both classes weigh the same."""
    idx = [np.flatnonzero(y == c) for c in (0, 1)]
    n = max(len(i) for i in idx)
    sel = np.concatenate([rng.choice(i, n, replace=len(i) < n) for i in idx])
    return X[sel], y[sel]


def score(tr, X, y):
    p = tr.predict(X)[:, 1]
    return {"auc": auc(p, y), "balanced_accuracy": balanced_accuracy((p > 0.5).astype(int), y)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/eegnb_muse_p300.npz")
    ap.add_argument("--subject", type=int, default=1)
    ap.add_argument("--k", type=int, default=100, help="epochs of the new day used to adapt")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    ds = load_muse_erp(args.data, subjects=[args.subject])
    X = ds.X - ds.X[..., :26].mean(axis=-1, keepdims=True)    # baseline: the 0.1 s before the stimulus
    X = np.clip(X[..., ::2] / 20.0, -5, 5).astype(np.float32)   # 128 Hz, about unit scale
    y = ds.y
    days = sorted(np.unique(ds.session).tolist())

    def make():
        return brt.models.eegnet(channels=X.shape[1], samples=X.shape[2], classes=2, norm="group", dropout=0.25,
                                 seed=args.seed)

    d1 = ds.session == days[0]
    net = make()
    tr = brt.Trainer(net, optimizer=brt.Adam(lr=1e-3), batch_size=16, seed=args.seed)
    tr.fit(*balance(X[d1], y[d1], rng), epochs=args.epochs, progress=False)
    tr.release()
    w_day1 = net.state_dict()
    out = {"subject": args.subject, "days": {}}
    for d in days[1:]:
        idx = np.flatnonzero(ds.session == d)
        cal, rest = idx[:args.k], idx[args.k:]
        row = {}
        for strategy in ("none", "last", "full"):
            n = make()
            n.load_state_dict(w_day1)
            if strategy != "none":
                t = brt.Trainer(n, optimizer=brt.Adam(lr=1e-3 if strategy == "full" else 3e-3), strategy=strategy,
                                batch_size=16, seed=args.seed)
                t.fit(*balance(X[cal], y[cal], rng), epochs=args.epochs, progress=False)
                t.release()
            t = brt.Trainer(n, strategy="none", batch_size=16)
            row[strategy] = score(t, X[rest], y[rest])
            t.release()
        out["days"][str(d)] = row
        print(f"day {d} ({ds.meta['date'][idx[0]] if 'date' in ds.meta else ''}): " + ", ".join(
            f"{s} AUC {r['auc']:.3f} bal.acc {r['balanced_accuracy']:.3f}" for s, r in row.items()))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
