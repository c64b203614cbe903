"""A Llama-architecture model in PyTorch laid out exactly as the engine computes `llama` GGUFs:
RMSNorm, GQA attention with interleaved-pair RoPE (pairs 2i, 2i+1: what llama.cpp's converters
produce after permuting Q/K, so no permutation is needed here), SwiGLU, tied embeddings.
to_gguf writes it with the vocabulary of vocab.py."""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import gguf_write as G


@dataclass
class Config:
    n_vocab: int
    d: int = 256
    n_layers: int = 8
    n_heads: int = 8
    n_kv_heads: int = 2
    n_ff: int = 768
    ctx: int = 4096
    rope_base: float = 10000.0
    eps: float = 1e-5


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight.to(x.dtype)


def rope_tables(cfg, T, device):
    hd = cfg.d // cfg.n_heads
    inv = cfg.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float64, device=device) / hd)
    ang = torch.arange(T, dtype=torch.float64, device=device)[:, None] * inv[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()


def apply_rope(x, cos, sin):
    # x: (B, H, T, hd); rotate interleaved pairs (2i, 2i+1)
    x0, x1 = x[..., 0::2].float(), x[..., 1::2].float()
    r0 = x0 * cos - x1 * sin
    r1 = x0 * sin + x1 * cos
    return torch.stack((r0, r1), dim=-1).flatten(-2).to(x.dtype)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        hd = cfg.d // cfg.n_heads
        self.cfg, self.hd = cfg, hd
        self.attn_norm = RMSNorm(cfg.d, cfg.eps)
        self.wq = nn.Linear(cfg.d, cfg.d, bias=False)
        self.wk = nn.Linear(cfg.d, cfg.n_kv_heads * hd, bias=False)
        self.wv = nn.Linear(cfg.d, cfg.n_kv_heads * hd, bias=False)
        self.wo = nn.Linear(cfg.d, cfg.d, bias=False)
        self.ffn_norm = RMSNorm(cfg.d, cfg.eps)
        self.w_gate = nn.Linear(cfg.d, cfg.n_ff, bias=False)
        self.w_up = nn.Linear(cfg.d, cfg.n_ff, bias=False)
        self.w_down = nn.Linear(cfg.n_ff, cfg.d, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        c, hd = self.cfg, self.hd
        h = self.attn_norm(x)
        q = self.wq(h).view(B, T, c.n_heads, hd).transpose(1, 2)
        k = self.wk(h).view(B, T, c.n_kv_heads, hd).transpose(1, 2)
        v = self.wv(h).view(B, T, c.n_kv_heads, hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rep = c.n_heads // c.n_kv_heads
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        if hasattr(F, "scaled_dot_product_attention"):
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # PyTorch < 2.0 (local CPU checks only)
            s = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(hd)
            s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
            a = (s.softmax(-1) @ v.float()).to(q.dtype)
        x = x + self.wo(a.transpose(1, 2).reshape(B, T, c.d))
        h = self.ffn_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


class Llama(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.n_vocab, cfg.d)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d, cfg.eps)
        for n, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
            if n.endswith("wo.weight") or n.endswith("w_down.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layers))

    def forward(self, ids, exits=()):
        # exits: layer indices l whose input (the output of block l - 1) also goes through the
        # final norm and the tied output (deep supervision); then returns (logits, [exit logits]).
        T = ids.shape[1]
        cos, sin = rope_tables(self.cfg, T, ids.device)
        x = self.embed(ids)
        extra = []
        for i, b in enumerate(self.blocks):
            if i in exits:
                extra.append(self.norm(x) @ self.embed.weight.to(x.dtype).t())
            x = b(x, cos, sin)
        logits = self.norm(x) @ self.embed.weight.to(x.dtype).t()  # tied output
        return (logits, extra) if exits else logits


def _bytes(t, dtype):
    t = t.detach().float().cpu().contiguous()
    if dtype == G.DTYPE_F16:
        return t.half().numpy().tobytes()
    return t.numpy().tobytes()


def to_gguf(model, vocab, path, name, wdtype=G.DTYPE_F16):
    c = model.cfg
    w = G.GGUFWriter()
    a = "llama"
    w.string("general.architecture", a)
    w.string("general.name", name)
    vocab.write_metadata(w)
    w.u32(a + ".vocab_size", c.n_vocab)
    w.u32(a + ".context_length", c.ctx)
    w.u32(a + ".embedding_length", c.d)
    w.u32(a + ".block_count", c.n_layers)
    w.u32(a + ".feed_forward_length", c.n_ff)
    w.u32(a + ".attention.head_count", c.n_heads)
    w.u32(a + ".attention.head_count_kv", c.n_kv_heads)
    w.u32(a + ".rope.dimension_count", c.d // c.n_heads)
    w.f32(a + ".attention.layer_norm_rms_epsilon", c.eps)
    w.f32(a + ".rope.freq_base", c.rope_base)

    def mat(n, lin_or_emb):
        wt = lin_or_emb.weight  # (out, in): rows of `in` values, ggml dims [in, out]
        w.tensor(n, [wt.shape[1], wt.shape[0]], wdtype, _bytes(wt, wdtype))

    def vec(n, norm):
        w.tensor(n, [norm.weight.shape[0]], G.DTYPE_F32, _bytes(norm.weight, G.DTYPE_F32))

    mat("token_embd.weight", model.embed)
    vec("output_norm.weight", model.norm)
    for i, b in enumerate(model.blocks):
        p = f"blk.{i}."
        vec(p + "attn_norm.weight", b.attn_norm)
        mat(p + "attn_q.weight", b.wq)
        mat(p + "attn_k.weight", b.wk)
        mat(p + "attn_v.weight", b.wv)
        mat(p + "attn_output.weight", b.wo)
        vec(p + "ffn_norm.weight", b.ffn_norm)
        mat(p + "ffn_gate.weight", b.w_gate)
        mat(p + "ffn_up.weight", b.w_up)
        mat(p + "ffn_down.weight", b.w_down)
    return w.write(path)
