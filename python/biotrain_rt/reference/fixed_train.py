"""Integer NumPy reference of the fixed-point training loop, written from the
rules of the fixed format of ``csrc/src/exec_fixed.c`` on top of the kernel
reference (:mod:`biotrain_rt.reference.fixed`). It keeps every tensor in a
dict (no arena, no planner) and never calls the C core, so a whole training
run of the C executor can be checked against it bit for bit: losses (Q16),
masters, every scale.

    ref = FixedReference(net, trainable_nodes, lr=(m, e), momentum=(m, e), weight_decay=(m, e),
                         micro_batch=1, params={(node, k): (int32 values, frac)})
    ref.calibrate(xq, x_frac, y, rounds)
    loss_q16 = ref.train_step(xq, x_frac, y)
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from . import fixed as R

ACT_TOP = 7
GRAD_TOP = 24
GROW_STEPS = 8
PARAM_NAMES = ("weight", "bias")


class FixedReference:
    def __init__(self, net, trainable_nodes, lr, momentum=(0, 0), weight_decay=(0, 0), micro_batch=1,
                 params: Dict[Tuple[int, int], Tuple[np.ndarray, int]] = None, seed: int = 0):
        self.layers = net.layers
        self.n = len(self.layers)
        self.classes = net.classes
        self.lr, self.mom, self.wd = tuple(lr), tuple(momentum), tuple(weight_decay)
        self.micro_batch = int(micro_batch)
        trainable = set(int(i) for i in trainable_nodes)
        # what runs: gradient flows through v iff something at or above v trains
        T = []
        self.weight_grad = []
        for v, l in enumerate(self.layers):
            trains = v in trainable and bool(l.params)
            t = trains or any(T[u] for u in l.inputs)
            T.append(t)
            self.weight_grad.append(trains)
        self.run_backward = [v > 0 and T[v] for v in range(self.n)]
        self.params = {}   # (v, k) -> int64 master
        self.pfrac = {}
        for v, l in enumerate(self.layers):
            for k, name in enumerate(PARAM_NAMES):
                if name in l.params:
                    q, f = params[(v, k)]
                    self.params[(v, k)] = np.asarray(q, dtype=np.int64).reshape(l.params[name].shape)
                    self.pfrac[(v, k)] = int(f)
        self.out_frac = [4] * self.n
        self.dout_frac = [8] * self.n
        self.out_win = [[0, 0] for _ in range(self.n)]    # largest value since the last change, steps
        self.dout_win = [[0, 0] for _ in range(self.n)]
        self.wq_frac = [7] * self.n
        self.grad_frac = {key: 24 for key in self.params}
        self.mom_frac = {key: 24 for key in self.params}
        self.buf = {key: np.zeros_like(q) for key, q in self.params.items()
                    if self.weight_grad[key[0]] and momentum[0] != 0}
        self.steps = 0
        self.saturated_last = 0
        self.rng = R.Pcg32(seed)

    # ------------------------------------------------------------ helpers
    def owner(self, v):
        while v > 0 and self.layers[v].kind == "flatten":
            v = self.layers[v].inputs[0]
        return v

    def trainable_keys(self):
        return [key for key in self.params if self.weight_grad[key[0]]]

    def refresh_weights(self):
        self.wq = {}
        for v, l in enumerate(self.layers):
            if l.kind in ("conv2d", "linear"):
                m = self.params[(v, 0)]
                absmax = int(np.max(np.abs(m))) if m.size else 0
                self.wq_frac[v] = R.frac_adapt(self.pfrac[(v, 0)], absmax, ACT_TOP)
                self.wq[v] = R.narrow7(m, self.pfrac[(v, 0)] - self.wq_frac[v], None)

    def reset_stats(self):
        self.out_st = [R.Stats() for _ in range(self.n)]
        self.dout_st = [R.Stats() for _ in range(self.n)]
        self.grad_st = {key: R.Stats() for key in self.params}
        self.param_st = {key: R.Stats() for key in self.params}
        self.out_seen = [False] * self.n
        self.dout_seen = [False] * self.n

    def _eps(self, v):
        l = self.layers[v]
        key = {"groupnorm": "eps", "elu": "alpha", "dropout": "p"}[l.kind]
        return R.decode_f32(l.opts[key])

    # ------------------------------------------------------------ forward
    def forward_node(self, v, acts):
        l = self.layers[v]
        u = l.inputs[0]
        ov = self.owner(v)
        x = acts[u]
        fi, fo = self.out_frac[self.owner(u)], self.out_frac[ov]
        st = self.out_st[ov]
        self.out_seen[ov] = True
        o = l.opts
        if l.kind == "conv2d":
            b = self.params.get((v, 1))
            return R.conv2d_forward(x, fi, self.wq[v], self.wq_frac[v], b, self.pfrac.get((v, 1), 0), fo,
                                    o["stride"], o["padding"], o["dilation"], o["groups"], st)
        if l.kind == "linear":
            b = self.params.get((v, 1))
            rows = x.shape[0]
            return R.linear_forward(x.reshape(rows, -1), fi, self.wq[v], self.wq_frac[v], b,
                                    self.pfrac.get((v, 1), 0), fo, st).reshape((rows,) + l.shape)
        if l.kind == "groupnorm":
            rows = x.shape[0]
            c = l.shape[0]
            g = self.params.get((v, 0))
            b = self.params.get((v, 1))
            y, mean, rstd = R.groupnorm_forward(x.reshape(rows, c, -1), fi, g, self.pfrac.get((v, 0), 0), b,
                                                self.pfrac.get((v, 1), 0), o["groups"], fo, *self._eps(v), st=st)
            self.saved[v] = (mean, rstd)
            return y.reshape(x.shape)
        if l.kind == "relu":
            if self.train and self.run_backward[v]:   # the planner keeps a one-bit mask
                y, self.saved[v] = R.relu_forward_mask(x, fi, fo, st)
                return y
            return R.relu_forward(x, fi, fo, st)
        if l.kind == "elu":
            return R.elu_forward(x, fi, fo, *self._eps(v), st)
        if l.kind in ("avgpool2d", "global_avgpool"):
            k, s, p = self._pool(v)
            return R.avgpool_forward(x, fi, fo, k, s, p, st)
        if l.kind == "maxpool2d":
            k, s, p = self._pool(v)
            y, am = R.maxpool_forward(x, fi, fo, k, s, p, st)
            self.saved[v] = am
            return y
        if l.kind == "add":
            u2 = l.inputs[1]
            return R.add_forward(x, fi, acts[u2], self.out_frac[self.owner(u2)], fo, st)
        if l.kind == "flatten":
            return x.reshape((x.shape[0],) + l.shape)
        if l.kind == "dropout":
            pm, pe = self._eps(v)
            if self.train and pm != 0:
                y, self.saved[v] = R.dropout_forward(x, fi, fo, pm, pe, self.rng, st)
                return y
            return R.requant(x, fi, fo, st)
        raise ValueError(f"fixed point does not run {l.kind}")

    def _pool(self, v):
        l = self.layers[v]
        if l.kind == "global_avgpool":
            h, w = self.layers[l.inputs[0]].shape[1:]
            return (h, w), (h, w), (0, 0)
        return l.opts["kernel"], l.opts["stride"], l.opts["padding"]

    def forward_pass(self, xq, x_frac, train=True):
        self.train = train
        acts = {}
        self.saved = {}
        self.out_seen[0] = True
        acts[0] = R.narrow7(xq, x_frac - self.out_frac[0], self.out_st[0])
        for v in range(1, self.n):
            acts[v] = self.forward_node(v, acts)
        return acts

    # ------------------------------------------------------------ backward
    def backward_input(self, c, k, acts, douts):
        l = self.layers[c]
        u = l.inputs[k]
        ou, oc = self.owner(u), self.owner(c)
        fdin, fdout, fi = self.dout_frac[ou], self.dout_frac[oc], self.out_frac[ou]
        st = self.dout_st[ou]
        self.dout_seen[ou] = True
        dy = douts[c]
        x = acts[u]
        o = l.opts
        if l.kind == "conv2d":
            return R.conv2d_backward_input(dy, fdout, self.wq[c], self.wq_frac[c], x.shape, fdin, o["stride"],
                                           o["padding"], o["dilation"], o["groups"], st)
        if l.kind == "linear":
            rows = dy.shape[0]
            return R.linear_backward_input(dy.reshape(rows, -1), fdout, self.wq[c], self.wq_frac[c], fdin,
                                           st).reshape(x.shape)
        if l.kind == "groupnorm":
            rows, c_ = x.shape[0], l.shape[0]
            mean, rstd = self.saved[c]
            return R.groupnorm_backward_input(dy.reshape(rows, c_, -1), fdout, x.reshape(rows, c_, -1), fi, mean,
                                              rstd, self.params.get((c, 0)), self.pfrac.get((c, 0), 0),
                                              o["groups"], fdin, st).reshape(x.shape)
        if l.kind == "relu":
            return R.relu_backward_mask(dy, fdout, self.saved[c], fdin, st)
        if l.kind == "elu":
            return R.elu_backward(dy, fdout, acts[c], self.out_frac[oc], fdin, *self._eps(c), st)
        if l.kind in ("avgpool2d", "global_avgpool"):
            kk, s, p = self._pool(c)
            return R.avgpool_backward(dy, fdout, x.shape, fdin, kk, s, p, st)
        if l.kind == "maxpool2d":
            return R.maxpool_backward(dy, fdout, self.saved[c], x.shape, fdin, st)
        if l.kind == "dropout" and self._eps(c)[0] != 0:
            return R.dropout_backward(dy, fdout, self.saved[c], fdin, *self._eps(c), st)
        if l.kind in ("add", "dropout"):
            return R.requant(dy, fdout, fdin, st)
        if l.kind == "flatten":
            return dy.reshape(x.shape)
        raise ValueError(f"fixed point does not run {l.kind}")

    def backward_weight(self, c, acts, douts):
        l = self.layers[c]
        u = l.inputs[0]
        dy = douts[c]
        x = acts[u]
        fdout, fi = self.dout_frac[self.owner(c)], self.out_frac[self.owner(u)]
        st = self.grad_st[(c, 0)]
        o = l.opts
        g0, g1 = self.grads.get((c, 0)), self.grads.get((c, 1))
        f0, f1 = self.grad_frac.get((c, 0), 0), self.grad_frac.get((c, 1), 0)
        if l.kind == "conv2d":
            dw, db = R.conv2d_backward_weight(g0, f0, g1, f1, dy, fdout, x, fi, g0.shape, o["stride"], o["padding"],
                                              o["dilation"], o["groups"], st)
        elif l.kind == "linear":
            rows = dy.shape[0]
            dw, db = R.linear_backward_weight(g0, f0, g1, f1, dy.reshape(rows, -1), fdout, x.reshape(rows, -1), fi,
                                              st)
        elif l.kind == "groupnorm":
            rows, c_ = x.shape[0], l.shape[0]
            mean, rstd = self.saved[c]
            dw, db = R.groupnorm_backward_weight(g0, f0, g1, f1, dy.reshape(rows, c_, -1), fdout,
                                                 x.reshape(rows, c_, -1), fi, mean, rstd, o["groups"], st)
        else:
            return
        if dw is not None:
            self.grads[(c, 0)] = dw.astype(np.int64)
        if db is not None:
            self.grads[(c, 1)] = db.astype(np.int64)

    def accumulate_batch(self, xq, x_frac, y, batch):
        self.grads = {key: np.zeros_like(self.params[key]) for key in self.trainable_keys()}
        train = bool(self.grads)
        last = self.owner(self.n - 1)
        total = 0
        for start in range(0, batch, self.micro_batch):
            rows = min(self.micro_batch, batch - start)
            lab = y[start:start + rows]
            acts = self.forward_pass(xq[start:start + rows], x_frac)
            z = acts[self.n - 1].reshape(rows, -1)
            loss, probs = R.cross_entropy_forward(z, self.out_frac[last], lab)
            total += loss * rows
            if not train:
                continue
            self.dout_seen[last] = True
            douts = {self.n - 1: R.cross_entropy_backward(probs, lab, batch, self.dout_frac[last],
                                                          self.dout_st[last]).reshape(acts[self.n - 1].shape)}
            for c in range(self.n - 1, 0, -1):
                if not self.run_backward[c]:
                    continue
                if self.weight_grad[c]:
                    self.backward_weight(c, acts, douts)
                ins = self.layers[c].inputs
                for k in range(len(ins) - 1, -1, -1):   # input slots last to first, as exec.c
                    u = ins[k]
                    if not self.run_backward[u]:
                        continue
                    din = self.backward_input(c, k, acts, douts)
                    if u in douts:  # a second consumer: its gradient is added in
                        ou = self.owner(u)
                        douts[u] = R.accumulate(douts[u], self.dout_frac[ou], din, self.dout_frac[ou],
                                                self.dout_st[ou])
                    else:
                        douts[u] = din
        return total

    # ------------------------------------------------------------ steps
    def count_saturations(self):
        total = sum(s.saturated for s in self.out_st) + sum(s.saturated for s in self.dout_st)
        total += sum(s.saturated for s in self.grad_st.values()) + sum(s.saturated for s in self.param_st.values())
        self.saturated_last = total

    @staticmethod
    def _adapt_act(frac, absmax, win, immediate):
        """Down at once on saturation; up after GROW_STEPS quiet steps, to fit their largest value."""
        if immediate or absmax > R.Q7_MAX:
            win[0], win[1] = 0, 0
            return R.frac_adapt(frac, absmax, ACT_TOP)
        win[0] = max(win[0], absmax)
        win[1] += 1
        if win[1] < GROW_STEPS:
            return frac
        f = R.frac_adapt(frac, win[0], ACT_TOP)
        win[0], win[1] = 0, 0
        return f

    def adapt(self, immediate=False):
        for v in range(self.n):
            if v > 0 and self.layers[v].kind == "flatten":
                continue
            if self.out_seen[v]:
                self.out_frac[v] = self._adapt_act(self.out_frac[v], self.out_st[v].absmax, self.out_win[v], immediate)
            if self.dout_seen[v]:
                self.dout_frac[v] = self._adapt_act(self.dout_frac[v], self.dout_st[v].absmax, self.dout_win[v],
                                                    immediate)
        for key in self.trainable_keys():
            g = self.grads[key]
            self.grad_frac[key] = R.frac_adapt(self.grad_frac[key], int(np.max(np.abs(g))), GRAD_TOP)

    def update(self):
        for key in self.trainable_keys():
            buf = self.buf.get(key)
            w, nb = R.sgd_update(self.params[key], self.pfrac[key], buf, self.mom_frac[key], self.grads[key],
                                 self.grad_frac[key], self.lr, self.mom, self.wd, st=self.param_st[key])
            self.params[key] = w.astype(np.int64)
            if buf is not None:
                self.buf[key] = nb.astype(np.int64)
                self.mom_frac[key] = self.grad_frac[key]
            if int(np.max(np.abs(self.params[key]))) > 2 ** 30 and self.pfrac[key] > R.FRAC_MIN:
                self.params[key] = R.shift_round(self.params[key], 1)
                self.pfrac[key] -= 1
        self.steps += 1

    def _begin(self):
        self.reset_stats()
        self.refresh_weights()

    def calibrate(self, xq, x_frac, y, rounds=3):
        y = np.asarray(y)
        for _ in range(rounds):
            self._begin()
            self.accumulate_batch(np.asarray(xq), x_frac, y, len(y))
            self.count_saturations()
            self.adapt(immediate=True)

    def train_step(self, xq, x_frac, y) -> int:
        y = np.asarray(y)
        self._begin()
        total = self.accumulate_batch(np.asarray(xq), x_frac, y, len(y))
        if self.trainable_keys():
            self.update()
        loss = int(np.clip(R.div_round(total, len(y)), -R.Q31_MAX, R.Q31_MAX))
        self.count_saturations()
        self.adapt()
        return loss

    def forward(self, xq, x_frac):
        """(int8 logits, frac) without changing any scale."""
        self._begin()
        xq = np.asarray(xq)
        outs = []
        for start in range(0, len(xq), self.micro_batch):
            acts = self.forward_pass(xq[start:start + self.micro_batch], x_frac, train=False)
            outs.append(acts[self.n - 1].reshape(acts[self.n - 1].shape[0], -1))
        return np.concatenate(outs).astype(np.int8), self.out_frac[self.owner(self.n - 1)]

    def checksum(self) -> int:
        h = 2166136261
        for v in range(self.n):
            for k in range(len(PARAM_NAMES)):
                if (v, k) not in self.params:
                    continue
                words = [int(w) & 0xFFFFFFFF for w in self.params[(v, k)].reshape(-1)]
                words.append(self.pfrac[(v, k)] & 0xFFFFFFFF)
                for w in words:
                    for i in range(4):
                        h ^= (w >> (8 * i)) & 0xFF
                        h = (h * 16777619) & 0xFFFFFFFF
        return h
