"""Reads a GGUF v3 file written by gguf_write.py (F32/F16 tensors) back into a model.py Llama,
so PyTorch can inspect a trained model (attention_probe.py)."""
import numpy as np
import torch

from gguf_header import parse_header
from model import Config, Llama


def read_gguf(path):
    buf = open(path, "rb").read()
    meta, infos, base = parse_header(buf, path)
    tensors = {}
    for name, dims, t, o in infos:
        n = int(np.prod(dims))
        dt = {0: np.float32, 1: np.float16}[t]
        a = np.frombuffer(buf, dtype=dt, count=n, offset=base + o).astype(np.float32)
        tensors[name] = torch.from_numpy(a.reshape(list(reversed(dims))).copy())
    return meta, tensors


def load_llama(path):
    meta, t = read_gguf(path)
    a = meta["general.architecture"]
    cfg = Config(n_vocab=len(meta["tokenizer.ggml.tokens"]), d=meta[a + ".embedding_length"],
                 n_layers=meta[a + ".block_count"], n_heads=meta[a + ".attention.head_count"],
                 n_kv_heads=meta[a + ".attention.head_count_kv"], n_ff=meta[a + ".feed_forward_length"],
                 ctx=meta[a + ".context_length"], rope_base=meta[a + ".rope.freq_base"],
                 eps=meta[a + ".attention.layer_norm_rms_epsilon"])
    m = Llama(cfg)
    with torch.no_grad():
        m.embed.weight.copy_(t["token_embd.weight"])
        m.norm.weight.copy_(t["output_norm.weight"])
        for i, b in enumerate(m.blocks):
            p = f"blk.{i}."
            for mod, n in ((b.attn_norm, "attn_norm"), (b.wq, "attn_q"), (b.wk, "attn_k"), (b.wv, "attn_v"),
                           (b.wo, "attn_output"), (b.ffn_norm, "ffn_norm"), (b.w_gate, "ffn_gate"),
                           (b.w_up, "ffn_up"), (b.w_down, "ffn_down")):
                mod.weight.copy_(t[p + n + ".weight"])
    return m.eval()
