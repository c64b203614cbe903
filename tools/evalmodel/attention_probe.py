"""Where does the last prompt token look, layer by layer? For each eval sample, ranks the
context position the answer is copied from (the first answer token's occurrences in the
context) under the last token's attention averaged over heads - LazyLLM's importance - and
reports per layer the median rank (percent of the prompt) and how often that position would
survive keeping the top 50% / 30%. LazyLLM prunes at layer l by layer l-1's ranking, so a layer
whose ranking buries the answer cannot be a pruning layer without losing it.

With --exact-source the source is the one position the answer is copied from (where the context
continues the longest match of the prompt's end, train.evidence_rows) instead of the best of all
occurrences of the first answer token, which is optimistic where answer words repeat (kv values).

Usage: python3 tools/evalmodel/attention_probe.py MODEL.gguf [--per-family 8] [--data eval/data]
       [--families a,b] [--exact-source]
"""
import argparse
import json
import math
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402
import tasks as T  # noqa: E402
import vocab as V  # noqa: E402
from gguf_read import load_llama  # noqa: E402


@torch.no_grad()
def answer_ranks(m, ids, sources):
    """Per layer: the best rank (0 = most attended) among `sources` under the last token's
    head-averaged attention, as a fraction of the prompt length."""
    c, T_ = m.cfg, len(ids)
    cos, sin = M.rope_tables(c, T_, "cpu")
    h = m.embed(torch.tensor([ids]))
    ranks = []
    for b in m.blocks:
        x = b.attn_norm(h)
        q = b.wq(x[:, -1:]).view(1, 1, c.n_heads, b.hd).transpose(1, 2)
        k = b.wk(x).view(1, T_, c.n_kv_heads, b.hd).transpose(1, 2)
        q = M.apply_rope(q, cos[-1:], sin[-1:])
        k = M.apply_rope(k, cos, sin).repeat_interleave(c.n_heads // c.n_kv_heads, 1)
        p = ((q @ k.transpose(-1, -2)) / math.sqrt(b.hd)).softmax(-1)[0, :, 0].mean(0)
        order = p.argsort(descending=True).tolist()
        pos = {t: i for i, t in enumerate(order)}
        ranks.append(min(pos[s] for s in sources) / T_)
        h, _ = b(h, cos, sin)
    return ranks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--data", default="eval/data")
    ap.add_argument("--per-family", type=int, default=8)
    ap.add_argument("--families", default="", help="comma list (default: all but counting)")
    ap.add_argument("--exact-source", action="store_true")
    args = ap.parse_args()
    if args.exact_source:
        import train
        train._vocab = V.Vocab()
    m, voc = load_llama(args.model), V.Vocab()
    print("| family | samples | " + " | ".join(f"L{i}" for i in range(m.cfg.n_layers)) + " |")
    print("| --- | ---: | " + " | ".join("---" for _ in range(m.cfg.n_layers)) + " |")
    for fam in T.FAMILIES:
        if fam == "synth_count" or (args.families and fam not in args.families.split(",")):
            continue  # counting: the answer is a number the context does not contain
        rows = [json.loads(l) for l in open(os.path.join(args.data, fam + ".jsonl"))]
        rows = rows[:: max(1, len(rows) // args.per_family)][: args.per_family]
        per_layer = [[] for _ in range(m.cfg.n_layers)]
        for r in rows:
            ctx = voc.encode(r["context"], add_bos=False)
            tail = voc.encode("\n\n" + r["input"], add_bos=False, space_prefix=False)
            ids = [V.BOS] + ctx + tail
            first = voc.encode(" " + r["answers"][0], add_bos=False, space_prefix=False)[0]
            sources = [i for i in range(1, 1 + len(ctx)) if ids[i] == first]
            if args.exact_source:
                where = train.evidence_rows(ids + [first], len(ids), fam, r)[0][1]
                sources = [i for i in where if ids[i] == first]
            if not sources:
                continue
            for li, rk in enumerate(answer_ranks(m, ids, sources)):
                per_layer[li].append(rk)
        cells = [f"{100 * statistics.median(v):.0f}% ({sum(x < 0.5 for x in v)}/{sum(x < 0.3 for x in v)})"
                 for v in per_layer]
        print(f"| {fam} | {len(per_layer[0])} | " + " | ".join(cells) + " |")
    print("\ncell: median rank of the answer's source token under the last token's head-averaged attention "
          "(0% = most attended), then (kept at 50% / kept at 30%) counts")


if __name__ == "__main__":
    main()
