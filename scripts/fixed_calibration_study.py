#!/usr/bin/env python
"""New-subject calibration in fixed point against float32 (UCI EMG gestures, tiny file).

Leave-one-subject-out over the four subjects of uci_emg_gestures_tiny.npz:
a float32 EEGNet-8,2 (GroupNorm, no dropout; 8 channels x 40 samples after
decimating the 1 kHz sample-and-hold stream by 5) is pretrained on the other
three subjects (PyTorch, float), then fully fine-tuned on the held-out
subject's series 1 twice from the same weights, on the same batches:
biotrain-rt float32 (brt.Trainer) and biotrain-rt fixed point
(brt.Trainer(dtype="fixed")); both are scored on that subject's series 2
(fixed point scores with its own integer forward). Prints per-subject
accuracies and the mean difference, fixed - float32, in points.

    PYTHONPATH=python python scripts/fixed_calibration_study.py [--seeds 0,1,2]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import biotrain_rt as brt

DATA = "/work/shared/data/uci_emg_gestures_tiny.npz"


def load(dec=5, scale=32.0):
    d = np.load(DATA)
    X = d["X"][..., ::dec].astype(np.float32) / np.float32(scale)
    return X[:, None], d["y"].astype(np.int64), d["subject"].astype(np.int64), d["series"].astype(np.int64)


def model(seed):
    return brt.models.eegnet(channels=8, samples=40, classes=6, norm="group", dropout=0.0, seed=seed)


def pretrain(net, X, y, epochs, lr, seed):
    """Float pretraining on the other subjects, in PyTorch (it is only the starting point)."""
    tm = brt.to_torch(net)
    tm.train()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(tm.parameters(), lr=lr)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 32):
            b = perm[i:i + 32]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(tm(Xt[b]), yt[b]).backward()
            opt.step()
    net.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return net


def finetune(state, X, y, Xte, yte, dtype, lr, epochs, batch, seed):
    net = model(0)
    net.load_state_dict(state)
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=lr, momentum=0.9), strategy="full", batch_size=batch,
                     seed=seed, dtype=dtype)
    tr.fit(X, y, epochs=epochs, progress=False)
    acc = tr.evaluate(Xte, yte)
    tr.release()
    return acc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--pt-epochs", type=int, default=15)
    ap.add_argument("--pt-lr", type=float, default=3e-3)
    ap.add_argument("--lr", type=float, default=0.005)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    X, y, subj, ser = load()
    rows = []
    t0 = time.time()
    for seed in [int(s) for s in args.seeds.split(",")]:
        for s in np.unique(subj):
            torch.manual_seed(seed)
            base = pretrain(model(seed), X[subj != s], y[subj != s], args.pt_epochs, args.pt_lr, seed)
            state = base.state_dict()
            cal = (subj == s) & (ser == 1)
            te = (subj == s) & (ser == 2)
            tr = brt.Trainer(model(0), strategy="none", batch_size=8)
            tr.net.load_state_dict(state)
            none = tr.evaluate(X[te], y[te])
            tr.release()
            f32 = finetune(state, X[cal], y[cal], X[te], y[te], "float32", args.lr, args.epochs, args.batch, seed)
            fx = finetune(state, X[cal], y[cal], X[te], y[te], "fixed", args.lr, args.epochs, args.batch, seed)
            rows.append(dict(seed=seed, subject=int(s), none=none, float32=f32, fixed=fx))
            print(f"seed {seed} subject {s}: no calibration {none:.3f}  float32 full {f32:.3f}  fixed full {fx:.3f}",
                  flush=True)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("none", "float32", "fixed")}
    diff = 100 * (mean["fixed"] - mean["float32"])
    print(f"MEAN over {len(rows)} runs: no calibration {mean['none']:.4f}, float32 full {mean['float32']:.4f}, "
          f"fixed full {mean['fixed']:.4f}; fixed - float32 = {diff:+.2f} points ({time.time() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows, mean=mean, diff_points=diff, args=vars(args)), f, indent=1)


if __name__ == "__main__":
    main()
