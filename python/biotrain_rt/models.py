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


# ------------------------------------------------------------------ transformers
def _attention(net: Network, x: int, heads: int, qkv_bias: bool, rope: bool, name: str) -> int:
    return net.mhsa(x, heads, qkv_bias=qkv_bias, out_bias=True, rope=rope, name=name)


def cct2(classes: int = 10, image: int = 32, channels: int = 3, embed: int = 128, heads: int = 2, blocks: int = 2,
         mlp: int = 128, drop_path: float = 0.0, seed: int = 0) -> Network:
    """CCT-2 as TrainDeeploy trains it: input 3 x 32 x 32, 10 classes.

    Tokenizer: two stages of conv 3x3 (stride 1, pad 1, no bias) · ReLU ·
    maxpool 3 (stride 2, pad 1), channels 3 -> 64 -> 128, giving 8 x 8 = 64
    tokens; a learned positional embedding 64 x 128; 2 encoder blocks of CCT's
    form ``x += attn(LN(x)); x = LN(x); x += MLP(x)`` (2 heads of 64, q/k/v
    without bias, output projection with bias, MLP 128 -> 128 -> 128 with
    exact GELU); a final LayerNorm; sequence pooling; linear 128 -> 10.

    283,723 parameters: the paper states 283,979; the 256 more are one
    LayerNorm(128)'s weight and bias, which CCT-2's block form above does not
    have (its two norms per block and the final one are counted here).
    """
    net = Network((channels, image, image), name="cct2", seed=seed)
    x = 0
    for i, c_out in enumerate((64, embed), start=1):
        x = net.conv2d(x, c_out, (3, 3), padding=(1, 1), name=f"tokenizer.conv{i}")
        x = net.relu(x, name=f"tokenizer.relu{i}")
        x = net.maxpool2d(x, (3, 3), stride=(2, 2), padding=(1, 1), name=f"tokenizer.pool{i}")
    x = net.tokens(x, name="tokens")
    x = net.pos_embed(x, name="positional_emb")
    for b in range(blocks):
        p = f"blocks.{b}."
        h = net.layernorm(x, name=p + "pre_norm")
        h = _attention(net, h, heads, False, False, p + "self_attn")
        if drop_path:
            h = net.drop_path(h, drop_path, name=p + "drop_path1")
        x = net.add(x, h, name=p + "res1")
        x = net.layernorm(x, name=p + "norm1")
        h = net.token_linear(x, mlp, name=p + "linear1")
        h = net.gelu(h, name=p + "gelu")
        h = net.token_linear(h, embed, name=p + "linear2")
        if drop_path:
            h = net.drop_path(h, drop_path, name=p + "drop_path2")
        x = net.add(x, h, name=p + "res2")
    x = net.layernorm(x, name="norm")
    x = net.seq_pool(x, name="attention_pool")
    net.linear(x, classes, name="fc")
    return net.finish()


def emg_transformer(channels: int = 8, samples: int = 200, classes: int = 6, patch: int | None = None, embed: int = 32,
                    heads: int = 4, blocks: int = 2, mlp: int = 64, seed: int = 0) -> Network:
    """A tiny EMG transformer in TinyMyo's style, sized for the MCU: input
    1 x channels x samples (raw UCI EMG windows, 8 x 200 at 1 kHz).

    Channel-independent patches (by default a tenth of the window: 20 samples
    at 1 kHz, 4 of the 200 Hz stream): a conv 1 x patch with stride patch (one
    linear map of each channel's 20-sample patch to ``embed`` features, the
    same for every channel) gives channels x samples/patch = 80 tokens; pre-LN
    encoder blocks ``x += attn(LN(x)); x += MLP(LN(x))`` with rotary position
    embedding on q and k (``heads`` heads), MLP embed -> mlp -> embed with exact
    GELU; a final LayerNorm; the mean over tokens; a linear head. At the
    defaults: 17,990 parameters.
    """
    patch = max(1, samples // 10) if patch is None else int(patch)   # 10 patches per channel: 20 at 1 kHz
    if samples % patch:
        raise ValueError(f"emg_transformer: samples={samples} is not a multiple of the patch length {patch}")
    net = Network((1, channels, samples), name="emg_transformer", seed=seed)
    x = net.conv2d(0, embed, (1, patch), stride=(1, patch), bias=True, name="patch_embed")
    x = net.tokens(x, name="tokens")
    for b in range(blocks):
        p = f"blocks.{b}."
        h = net.layernorm(x, name=p + "norm1")
        h = _attention(net, h, heads, True, True, p + "attn")
        x = net.add(x, h, name=p + "res1")
        h = net.layernorm(x, name=p + "norm2")
        h = net.token_linear(h, mlp, name=p + "mlp.fc1")
        h = net.gelu(h, name=p + "mlp.gelu")
        h = net.token_linear(h, embed, name=p + "mlp.fc2")
        x = net.add(x, h, name=p + "res2")
    x = net.layernorm(x, name="norm")
    x = net.token_mean(x, name="pool")
    net.linear(x, classes, name="head")
    return net.finish()


ZOO = {"mibminet": mibminet, "epidenet": epidenet, "eegnet": eegnet, "emgnet": emgnet,
       "emgnet_logenergy": emgnet_logenergy, "cct2": cct2, "emg_transformer": emg_transformer}
