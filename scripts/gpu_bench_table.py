#!/usr/bin/env python3
"""Merges gpu-check.sh's benchmark outputs into the Markdown table of docs/benchmarks.md.
Usage: gpu_bench_table.py bench_lazyllm.jsonl bench_torch.jsonl DECODE_LENS"""
import json
import os
import sys


def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


ours = {r["prompt_len"]: r for r in load(sys.argv[1])}
torch_rows = load(sys.argv[2])
torch_ttft = {r["prompt_len"]: r["ttft_ms"] for r in torch_rows if "ttft_ms" in r}
torch_dec = {r["decode_ctx"]: r["decode_ms_per_token"] for r in torch_rows if "decode_ms_per_token" in r}
decode_lens = {int(x) for x in sys.argv[3].split(",")}

dev = next((r["gpu"] for r in ours.values()), "?")
print(f"\nGPU: {dev}")
print("| prompt | transformers TTFT ms | baseline TTFT ms | LazyLLM TTFT ms | LazyLLM speedup | computed | "
      "transformers decode ms/tok | baseline decode ms/tok | LazyLLM decode ms/tok |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for n in sorted(ours):
    r = ours[n]
    fmt = lambda v: f"{v:.1f}" if isinstance(v, (int, float)) else "-"
    base_dec = 1000.0 / r["baseline"]["decode_tok_s"]["median"]
    lazy_dec = 1000.0 / r["lazy"]["decode_tok_s"]["median"]
    show_dec = n in decode_lens
    print(f"| {n} | {fmt(torch_ttft.get(n))} | {r['ttft_ms_baseline']:.1f} | {r['ttft_ms_lazy']:.1f} | "
          f"{r['speedup']:.2f}x | {100 * r['computed_fraction']:.1f}% | "
          f"{fmt(torch_dec.get(n)) if show_dec else '-'} | {base_dec:.2f} | {lazy_dec:.2f} |")
