"""PyTorch versions of the zoo's transformers, written from the papers'
descriptions independently of the runtime (nn.MultiheadAttention for CCT-2;
attention with rotary embedding written out for the EMG transformer), and
the pairing of their parameters with the runtime's state_dict keys. Used by
tests/test_transformers.py and benchmarks/test_bench_transformers.py."""
import math

import torch

nn = torch.nn
F = torch.nn.functional


def rope(x):
    """Rotary embedding on [B, H, S, hd], pairs (2i, 2i+1), base 10000."""
    b, h, s, hd = x.shape
    inv = 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(s, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cos(ang).to(x.dtype), torch.sin(ang).to(x.dtype)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x0 * sin + x1 * cos
    return out


class RopeAttention(nn.Module):
    def __init__(self, d, heads, qkv_bias=True):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.zeros(3 * d, d))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d)) if qkv_bias else None
        self.out_proj = nn.Linear(d, d)

    def forward(self, x):
        b, s, d = x.shape
        hd = d // self.heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).split(d, dim=-1)
        q, k, v = (t.reshape(b, s, self.heads, hd).transpose(1, 2) for t in (q, k, v))
        q, k = rope(q), rope(k)
        p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
        return self.out_proj((p @ v).transpose(1, 2).reshape(b, s, d))


class TorchCCT2(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(64, 128, 3, 1, 1, bias=False)
        self.pos = nn.Parameter(torch.zeros(1, 64, 128))
        self.blocks = nn.ModuleList()
        for _ in range(2):
            blk = nn.Module()
            blk.pre_norm = nn.LayerNorm(128)
            blk.attn = nn.MultiheadAttention(128, 2, batch_first=True)
            blk.norm1 = nn.LayerNorm(128)
            blk.linear1 = nn.Linear(128, 128)
            blk.linear2 = nn.Linear(128, 128)
            self.blocks.append(blk)
        self.norm = nn.LayerNorm(128)
        self.pool = nn.Linear(128, 1)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        for conv in (self.conv1, self.conv2):
            x = F.max_pool2d(F.relu(conv(x)), 3, 2, 1)
        x = x.flatten(2).transpose(1, 2) + self.pos
        for blk in self.blocks:
            h = blk.pre_norm(x)
            x = x + blk.attn(h, h, h, need_weights=False)[0]
            x = blk.norm1(x)
            x = x + blk.linear2(F.gelu(blk.linear1(x)))
        x = self.norm(x)
        a = torch.softmax(self.pool(x), dim=1)            # [B, S, 1]
        return self.fc((a.transpose(1, 2) @ x)[:, 0])


class TorchEMGTransformer(nn.Module):
    def __init__(self, d=32, heads=4, blocks=2, mlp=64, classes=6):
        super().__init__()
        self.patch = nn.Conv2d(1, d, (1, 20), (1, 20))
        self.blocks = nn.ModuleList()
        for _ in range(blocks):
            blk = nn.Module()
            blk.norm1 = nn.LayerNorm(d)
            blk.attn = RopeAttention(d, heads)
            blk.norm2 = nn.LayerNorm(d)
            blk.fc1 = nn.Linear(d, mlp)
            blk.fc2 = nn.Linear(mlp, d)
            self.blocks.append(blk)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        for blk in self.blocks:
            x = x + blk.attn(blk.norm1(x))
            x = x + blk.fc2(F.gelu(blk.fc1(blk.norm2(x))))
        return self.head(self.norm(x).mean(dim=1))


def _cct_pairs(tm):
    pairs = [("tokenizer.conv1.weight", tm.conv1.weight), ("tokenizer.conv2.weight", tm.conv2.weight),
             ("positional_emb.weight", tm.pos)]
    for b, blk in enumerate(tm.blocks):
        p = f"blocks.{b}."
        pairs += [(p + "pre_norm.weight", blk.pre_norm.weight), (p + "pre_norm.bias", blk.pre_norm.bias),
                  (p + "self_attn.in_proj_weight", blk.attn.in_proj_weight),
                  (p + "self_attn.out_proj.weight", blk.attn.out_proj.weight),
                  (p + "self_attn.out_proj.bias", blk.attn.out_proj.bias),
                  (p + "norm1.weight", blk.norm1.weight), (p + "norm1.bias", blk.norm1.bias),
                  (p + "linear1.weight", blk.linear1.weight), (p + "linear1.bias", blk.linear1.bias),
                  (p + "linear2.weight", blk.linear2.weight), (p + "linear2.bias", blk.linear2.bias)]
    pairs += [("norm.weight", tm.norm.weight), ("norm.bias", tm.norm.bias),
              ("attention_pool.weight", tm.pool.weight), ("attention_pool.bias", tm.pool.bias),
              ("fc.weight", tm.fc.weight), ("fc.bias", tm.fc.bias)]
    return pairs


def _emg_pairs(tm):
    pairs = [("patch_embed.weight", tm.patch.weight), ("patch_embed.bias", tm.patch.bias)]
    for b, blk in enumerate(tm.blocks):
        p = f"blocks.{b}."
        pairs += [(p + "norm1.weight", blk.norm1.weight), (p + "norm1.bias", blk.norm1.bias),
                  (p + "attn.in_proj_weight", blk.attn.in_proj_weight),
                  (p + "attn.in_proj_bias", blk.attn.in_proj_bias),
                  (p + "attn.out_proj.weight", blk.attn.out_proj.weight),
                  (p + "attn.out_proj.bias", blk.attn.out_proj.bias),
                  (p + "norm2.weight", blk.norm2.weight), (p + "norm2.bias", blk.norm2.bias),
                  (p + "mlp.fc1.weight", blk.fc1.weight), (p + "mlp.fc1.bias", blk.fc1.bias),
                  (p + "mlp.fc2.weight", blk.fc2.weight), (p + "mlp.fc2.bias", blk.fc2.bias)]
    pairs += [("norm.weight", tm.norm.weight), ("norm.bias", tm.norm.bias),
              ("head.weight", tm.head.weight), ("head.bias", tm.head.bias)]
    return pairs




def load_into(net, tm, pairs):
    """Copies the runtime network's weights into the torch model."""
    sd = net.state_dict()
    with torch.no_grad():
        for k, p in pairs(tm):
            p.copy_(torch.from_numpy(sd[k]).reshape(p.shape))
        for m in tm.modules():
            if isinstance(m, nn.MultiheadAttention):   # CCT's q/k/v have no bias
                m.in_proj_bias.zero_()
                m.in_proj_bias.requires_grad_(False)
