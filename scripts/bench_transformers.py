#!/usr/bin/env python3
"""Reference timings: PyTorch + transformers LlamaForCausalLM with the llama2-7b shape (random
weights, bf16, SDPA attention), TTFT as a forward pass with logits_to_keep=1, and decode ms/token,
timed with CUDA events, median of several runs after warm-up. Prints one JSON object a line."""
import argparse
import json
import statistics

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM


def timed(fn, reps, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompt-len", default="4096,8192,16384,32768")
    ap.add_argument("--decode-ctx", default="4096,16384")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--decode-steps", type=int, default=32)
    args = ap.parse_args()
    # llama2-7b: gen-model's shape of the same name.
    cfg = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=32768 + 64,
                      rms_norm_eps=1e-5, rope_theta=10000.0, torch_dtype=torch.bfloat16)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    dev = torch.cuda.get_device_name(0)
    info = {"torch": torch.__version__, "transformers": transformers.__version__, "device": dev,
            "attn_implementation": model.config._attn_implementation}
    print(json.dumps({"info": info}), flush=True)
    with torch.inference_mode():
        for n in [int(x) for x in args.prompt_len.split(",")]:
            ids = torch.randint(3, cfg.vocab_size, (1, n), device="cuda")
            ms = timed(lambda: model(input_ids=ids, logits_to_keep=1, use_cache=True), args.reps, args.warmup)
            print(json.dumps({"prompt_len": n, "ttft_ms": ms}), flush=True)
            torch.cuda.empty_cache()
        for n in [int(x) for x in args.decode_ctx.split(",")]:
            ids = torch.randint(3, cfg.vocab_size, (1, n), device="cuda")
            per_token = []
            for r in range(args.warmup + 2):
                out = model(input_ids=ids, logits_to_keep=1, use_cache=True)
                cache = out.past_key_values
                tok = out.logits[:, -1:].argmax(-1)
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                for _ in range(args.decode_steps):
                    out = model(input_ids=tok, past_key_values=cache, use_cache=True, logits_to_keep=1)
                    cache = out.past_key_values
                    tok = out.logits[:, -1:].argmax(-1)
                b.record()
                torch.cuda.synchronize()
                if r >= args.warmup:
                    per_token.append(a.elapsed_time(b) / args.decode_steps)
                del cache, out
                torch.cuda.empty_cache()
            print(json.dumps({"decode_ctx": n, "decode_ms_per_token": statistics.median(per_token)}), flush=True)


if __name__ == "__main__":
    main()
