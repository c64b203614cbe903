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

    def forward(self, x, cos, sin, keep=None, rows=None, row_keep=None, want_probs=False):
        """keep: (B, T) bool, the keys still alive at this layer (None: all); rows: (batch index,
        position) tensors of query rows; row_keep: (R, T) bool, the keys each row attends to
        instead of `keep` (a decode step's own selection); want_probs: also return the rows'
        head-averaged attention (R, T)."""
        B, T, _ = x.shape
        c, hd = self.cfg, self.hd
        h = self.attn_norm(x)
        q = self.wq(h).view(B, T, c.n_heads, hd).transpose(1, 2)
        k = self.wk(h).view(B, T, c.n_kv_heads, hd).transpose(1, 2)
        v = self.wv(h).view(B, T, c.n_kv_heads, hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        probs = row_attention(q, k, rows, row_keep) if want_probs else None
        rep = c.n_heads // c.n_kv_heads
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        mask = None
        if keep is not None:  # pruned keys are gone for every query; a query always sees itself
            idx = torch.arange(T, device=x.device)
            mask = ((idx[:, None] >= idx[None, :])[None] & keep[:, None, :]) | (idx[:, None] == idx[None, :])[None]
            if row_keep is not None:
                qb, qt = rows
                mask[qb, qt] = ((idx[None, :] <= qt[:, None]) & row_keep) | (idx[None, :] == qt[:, None])
            mask = mask[:, None]
        if hasattr(F, "scaled_dot_product_attention") and mask is not None:
            # cuDNN's kernel failed on some masked batches (run 11); the memory-efficient one
            # takes any boolean mask.
            from torch.nn.attention import SDPBackend, sdpa_kernel
            with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        elif hasattr(F, "scaled_dot_product_attention"):
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # PyTorch < 2.0 (local CPU checks only)
            s = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(hd)
            if mask is None:
                mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            s = s.masked_fill(~mask, float("-inf"))
            a = (s.softmax(-1) @ v.float()).to(q.dtype)
        x = x + self.wo(a.transpose(1, 2).reshape(B, T, c.d))
        h = self.ffn_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h)), probs


def row_attention(q, k, rows, row_keep):
    """Head-averaged attention of the query rows (qb, qt) over their causal keys, or those of
    row_keep (R, T) (LazyLLM's importance when the row is the last token). q: (B, H, T, hd),
    k: (B, Hkv, T, hd)."""
    qb, qt = rows
    B, H, T, hd = q.shape
    g = k.shape[1]
    qr = q[qb, :, qt, :].reshape(-1, g, H // g, hd)
    with torch.autocast(device_type=q.device.type, enabled=False):  # ranks of near-equal values need fp32
        s = torch.einsum("rgqd,rgtd->rgqt", qr.float(), k[qb].float()) / math.sqrt(hd)
    dead = torch.arange(T, device=q.device)[None, :] > qt[:, None]
    if row_keep is not None:
        dead = dead | ~row_keep
    return s.masked_fill(dead[:, None, None, :], float("-inf")).softmax(-1).mean((1, 2))


def select_rows(keep, imp, frac, qt, pruned):
    """LazyLLM's choice at one pruning layer for each query row (R rows): of the tokens before
    the row's position qt still alive for it, keep the ceil(frac * (alive + 1)) - 1 with the
    highest importance `imp` (R, T), the row's own attention one layer up; the row itself and
    what follows stay. For the last prompt token this is the prefill selection, for an answer
    token the re-selection of its decode step (pruned tokens can come back). Rows not in
    `pruned` keep everything."""
    R, T = imp.shape
    pos = torch.arange(T, device=imp.device)[None, :]
    cand = pos < qt[:, None]
    alive = cand if keep is None else cand & keep
    n_keep = (torch.ceil(frac * (alive.sum(1) + 1).float() - 1e-6) - 1).clamp(min=0)
    order = imp.masked_fill(~alive, -1.0).argsort(1, descending=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(T, device=imp.device).expand(R, T).contiguous())
    new = (alive & (rank < n_keep[:, None])) | ~cand
    return torch.where(pruned[:, None], new, torch.ones_like(new))


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
            x, _ = b(x, cos, sin)
        logits = self.norm(x) @ self.embed.weight.to(x.dtype).t()  # tied output
        return (logits, extra) if exits else logits

    def forward_rows(self, ids, rows, prob_layers=(), prune=None):
        """Forward pass that also returns {layer: (R, T) head-averaged attention of the query
        rows} for prob_layers, optionally with LazyLLM's prefill pruning: prune = dict(layers
        {layer: keep fraction}, last_row (B,) the row of each sequence's last prompt token,
        seq (B,) bool: which sequences are pruned). In a pruned sequence, prompt tokens see the
        prefill's selection (the last prompt row's), and every row (the last prompt token, the
        answer tokens) makes its own selection as LazyLLM's decode does; a pruned token's key is
        gone for those queries from its pruning layer on."""
        T = ids.shape[1]
        cos, sin = rope_tables(self.cfg, T, ids.device)
        x = self.embed(ids)
        need = set(prob_layers) | ({l - 1 for l in prune["layers"]} if prune else set())
        keep, row_keep, probs = None, None, {}
        for i, b in enumerate(self.blocks):
            if prune and i in prune["layers"]:
                row_keep = select_rows(row_keep, probs[i - 1], prune["layers"][i], rows[1], prune["seq"][rows[0]])
                keep = torch.where(prune["seq"][:, None], row_keep[prune["last_row"]], True)
            x, p = b(x, cos, sin, keep, rows, row_keep, i in need)
            if p is not None:
                probs[i] = p
        return self.norm(x) @ self.embed.weight.to(x.dtype).t(), probs


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
