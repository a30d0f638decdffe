"""The model zoo: the exact graphs of the papers biotrain-rt builds on, and
the EMG models of the calibration (``emgnet``, ``emgnet_logenergy``).

The papers' convolutions are bias-free; ``norm="group"`` is LayerNorm exported as
GroupNorm(num_groups=1) (batch-independent, so gradients accumulate one
sample at a time), ``norm="batch"`` is BatchNorm (the baseline that needs the
whole batch in memory).
"""
from __future__ import annotations

from .network import Network


def _norm(net: Network, x: int, norm: str, name: str) -> int:
    if norm == "group":
        return net.groupnorm(x, 1, name=name)
    if norm == "batch":
        return net.batchnorm(x, name=name)
    raise ValueError(f"norm must be 'group' or 'batch', got {norm!r}")


def mibminet(channels: int = 8, samples: int = 1900, classes: int = 2, norm: str = "group", seed: int = 0) -> Network:
    """MI-BMInet (EEG motor imagery), input 1 x channels x samples.

    conv channels x 1 spatial 1->8 · norm · depthwise 1x64 · norm · ReLU ·
    avgpool 1x8 · depthwise 1x16 · pointwise 8->8 · norm · ReLU · avgpool 1x8 ·
    flatten · linear. At 8 x 1900 and 2 classes: 1,234 parameters.
    """
    net = Network((1, channels, samples), name="mibminet", seed=seed)
    x = net.conv2d(0, 8, (channels, 1), name="spatial")
    x = _norm(net, x, norm, "norm1")
    x = net.conv2d(x, 8, (1, 64), groups=8, name="temporal")
    x = _norm(net, x, norm, "norm2")
    x = net.relu(x, name="relu1")
    x = net.avgpool2d(x, (1, 8), name="pool1")
    x = net.conv2d(x, 8, (1, 16), groups=8, name="depthwise")
    x = net.conv2d(x, 8, (1, 1), name="pointwise")
    x = _norm(net, x, norm, "norm3")
    x = net.relu(x, name="relu2")
    x = net.avgpool2d(x, (1, 8), name="pool2")
    x = net.flatten(x, name="flatten")
    net.linear(x, classes, name="classifier")
    return net.finish()


def epidenet(channels: int = 2, samples: int = 1000, classes: int = 11, norm: str = "group", seed: int = 0) -> Network:
    """EpiDeNet (EOG), input 1 x channels x samples: five blocks of
    conv · norm · ReLU (· avgpool). At 2 x 1000 and 11 classes: 4,179 parameters."""
    net = Network((1, channels, samples), name="epidenet", seed=seed)
    x = 0
    blocks = [  # (out channels, kernel, pool)
        (4, (1, 4), (1, 8)),
        (16, (1, 16), (1, 4)),
        (16, (1, 8), (1, 4)),
        (16, (channels, 1), None),
        (16, (1, 1), (1, 5)),
    ]
    for i, (c_out, k, pool) in enumerate(blocks, start=1):
        x = net.conv2d(x, c_out, k, name=f"conv{i}")
        x = _norm(net, x, norm, f"norm{i}")
        x = net.relu(x, name=f"relu{i}")
        if pool is not None:
            x = net.avgpool2d(x, pool, name=f"pool{i}")
    x = net.flatten(x, name="flatten")
    net.linear(x, classes, name="classifier")
    return net.finish()


def eegnet(channels: int = 22, samples: int = 1125, classes: int = 4, F1: int = 8, D: int = 2,
           norm: str = "batch", dropout: float = 0.25, seed: int = 0) -> Network:
    """EEGNet-8,2 (Lawhern et al. 2018) for 22-channel motor imagery at 250 Hz
    (4.5 s windows): temporal conv 1x64 · norm · depthwise spatial channels x 1
    (depth D) · norm · ELU · avgpool 1x4 · dropout · separable conv (depthwise
    1x16 + pointwise) · norm · ELU · avgpool 1x8 · dropout · flatten · linear."""
    F2 = F1 * D
    net = Network((1, channels, samples), name="eegnet", seed=seed)
    x = net.conv2d(0, F1, (1, 64), padding=(0, 32), name="temporal")
    x = _norm(net, x, norm, "norm1")
    x = net.conv2d(x, F2, (channels, 1), groups=F1, name="spatial")
    x = _norm(net, x, norm, "norm2")
    x = net.elu(x, name="elu1")
    x = net.avgpool2d(x, (1, 4), name="pool1")
    x = net.dropout(x, dropout, name="drop1")
    x = net.conv2d(x, F2, (1, 16), padding=(0, 8), groups=F2, name="sep_depthwise")
    x = net.conv2d(x, F2, (1, 1), name="sep_pointwise")
    x = _norm(net, x, norm, "norm3")
    x = net.elu(x, name="elu2")
    x = net.avgpool2d(x, (1, 8), name="pool2")
    x = net.dropout(x, dropout, name="drop2")
    x = net.flatten(x, name="flatten")
    net.linear(x, classes, name="classifier")
    return net.finish()


def emgnet(channels: int = 8, samples: int = 40, classes: int = 6, filters: int = 16, depth: int = 2,
           hidden: int = 32, kernel: int = 5, norm: str = "group", seed: int = 0) -> Network:
    """EMG gesture model for short armband windows (UCI EMG: 8 channels, 200 ms
    at 1 kHz decimated to 200 Hz = 40 samples, 6 gestures).

    spatial conv channels x 1 (1 -> filters) · depthwise temporal 1 x kernel
    (depth multiplier `depth`) · ReLU · global average pool (a learned
    band-power per filter: EMG gestures are told apart by which muscles are
    active, not by the timing inside a 200 ms window) · pointwise conv with
    bias (-> hidden) · norm · ReLU · linear. The same family as MI-BMInet
    (spatial and depthwise temporal convs, GroupNorm, average pooling), sized
    to the window."""
    net = Network((1, channels, samples), name="emgnet", seed=seed)
    x = net.conv2d(0, filters, (channels, 1), name="spatial")
    x = net.conv2d(x, filters * depth, (1, kernel), groups=filters, name="temporal")
    x = net.relu(x, name="relu1")
    x = net.global_avgpool(x, name="power")
    if hidden:
        x = net.conv2d(x, hidden, (1, 1), bias=True, name="mix")
        x = _norm(net, x, norm, "norm1")
        x = net.relu(x, name="relu2")
    else:
        x = _norm(net, x, norm, "norm1")
    x = net.flatten(x, name="flatten")
    net.linear(x, classes, name="classifier")
    return net.finish()


def emgnet_logenergy(channels: int = 8, samples: int = 8, classes: int = 6, filters: int = 16, hidden: int = 32,
                     norm: str = "group", seed: int = 0) -> Network:
    """EMG gesture model on log-energy features (``biotrain_rt.data.log_energy(X, 25)``):
    input 1 x channels x blocks, the log mean-square of each channel over 25 ms
    blocks of the 200 ms window (8 x 8 for the MYO armband).

    spatial conv channels x 1 with bias (1 -> filters) · norm · ReLU ·
    pointwise conv 1x1 with bias (filters -> hidden) · norm · ReLU · global
    average pool over the blocks · flatten · linear. At 8 x 8 and 6 gestures:
    982 parameters, about 5.3 k multiply-adds per window forward.

    Why this shape: new users differ mostly in where the armband sits
    (a rotation, i.e. a permutation of the channels) and in electrode gain. In
    the log domain a gain is an additive offset, so both are linear in the first
    (spatial) layer's inputs: fine-tuning that layer fixes them from a few
    windows, which retraining the last layer alone cannot. GroupNorm(1, C)
    keeps the model batch-independent (gradients accumulate one sample at a
    time) and normalises each window's overall level. The 1x1 stage gives the
    non-linear class boundaries that differ across subjects (removing it or the
    norms was worse). A gesture is static within 200 ms, so averaging the
    per-block features is a cheap ensemble. Widths 8-32 and a third 1x1 stage
    scored within noise of each other; 16/32 was the best under 1 k parameters.
    Same family as MI-BMInet (spatial conv, GroupNorm, average pooling); the
    temporal filtering is done by the log-energy itself.
    """
    net = Network((1, channels, samples), name="emgnet_logenergy", seed=seed)
    x = net.conv2d(0, filters, (channels, 1), bias=True, name="spatial")
    x = _norm(net, x, norm, "norm1")
    x = net.relu(x, name="relu1")
    x = net.conv2d(x, hidden, (1, 1), bias=True, name="mix")
    x = _norm(net, x, norm, "norm2")
    x = net.relu(x, name="relu2")
    x = net.global_avgpool(x, name="pool")
    x = net.flatten(x, name="flatten")
    net.linear(x, classes, name="classifier")
    return net.finish()


ZOO = {"mibminet": mibminet, "epidenet": epidenet, "eegnet": eegnet, "emgnet": emgnet,
       "emgnet_logenergy": emgnet_logenergy}
