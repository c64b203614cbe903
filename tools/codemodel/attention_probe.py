"""Where does the code model's last prompt token look, layer by layer? The probe of
tools/evalmodel/attention_probe.py (median rank of the evidence under the last token's
head-averaged attention, LazyLLM's importance) on the held-out task sets of make_tasks.py:

- header_define_qa: the evidence is the value on the one `#define NAME VALUE` line of the
  context (the tokens from the space before the value to the line's end);
- code_repobench: every occurrence in the context (the other files) of the name that the target
  line uses, the best one counting (optimistic, as the synthetic probe's default).

code_lcc has no single evidence position (the next line of a file draws on all of it), so it has
no row. LazyLLM prunes at layer l by layer l-1's ranking: a layer that ranks the evidence low
cannot drive a pruning layer without losing it.

Usage: python3 tools/codemodel/attention_probe.py MODEL.gguf --tasks /tmp/lazyllm-corpus/tasks/test
       --spm code-bpe-8192.model [--per-set 12]
"""
import argparse
import json
import os
import re
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "evalmodel"))
sys.path.insert(0, HERE)
from spm_import import sentencepiece  # noqa: E402  (re-runs under /usr/bin/python3 when needed)


def define_sources(sp, context, name):
    """Token positions (after BOS) of the value on the `#define NAME VALUE` line."""
    m = re.search(r"^#define[ \t]+" + re.escape(name) + r"[ \t]+(\S.*)$", context, re.M)
    if not m:
        return []
    start = len(sp.encode(context[:m.start(1) - 1]))
    end = len(sp.encode(context[:m.end(1)]))
    return list(range(1 + start, 1 + end))


def name_sources(sp, context, name):
    """Token positions (after BOS) covering each whole-word occurrence of `name` in the context."""
    out = []
    for m in re.finditer(r"\b" + re.escape(name) + r"\b", context):
        start = len(sp.encode(context[:m.start()]))
        end = len(sp.encode(context[:m.end()]))
        out += range(1 + start, 1 + max(end, start + 1))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--tasks", required=True, help="a split's folder of make_tasks.py")
    ap.add_argument("--spm", required=True, help="the SentencePiece model the tasks were built with")
    ap.add_argument("--per-set", type=int, default=12)
    a = ap.parse_args()
    sp = sentencepiece().SentencePieceProcessor(model_file=a.spm)
    import importlib.util  # tools/evalmodel's probe has this file's name: load it by path
    spec = importlib.util.spec_from_file_location("evalmodel_probe", os.path.join(HERE, "..", "evalmodel",
                                                                                   "attention_probe.py"))
    P = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(P)
    from gguf_read import load_llama
    m = load_llama(a.model)
    config = json.load(open(os.path.join(a.tasks, "config.json")))
    print("| set | samples | " + " | ".join(f"L{i}" for i in range(m.cfg.n_layers)) + " |")
    print("| --- | ---: | " + " | ".join("---" for _ in range(m.cfg.n_layers)) + " |")
    for name, find in (("header_define_qa", define_sources), ("code_repobench", name_sources)):
        rows = [json.loads(l) for l in open(os.path.join(a.tasks, name + ".jsonl"))]
        srcs = {json.loads(l)["_id"]: json.loads(l) for l in open(os.path.join(a.tasks, name + ".sources.jsonl"))}
        rows = rows[:: max(1, len(rows) // a.per_set)][: a.per_set]
        per_layer = [[] for _ in range(m.cfg.n_layers)]
        for r in rows:
            prompt = config[name]["template"].format(context=r["context"], input=r["input"])
            ids = [sp.bos_id()] + sp.encode(prompt)
            sources = [s for s in find(sp, r["context"], srcs[r["_id"]]["name"]) if s < len(ids) - 1]
            if not sources:
                continue
            for li, rk in enumerate(P.answer_ranks(m, ids, sources)):
                per_layer[li].append(rk)
        cells = [f"{100 * statistics.median(v):.0f}% ({sum(x < 0.5 for x in v)}/{sum(x < 0.3 for x in v)})"
                 for v in per_layer]
        print(f"| {name} | {len(per_layer[0])} | " + " | ".join(cells) + " |", flush=True)
    print("\ncell: median rank of the evidence under the last token's head-averaged attention "
          "(0% = most attended), then (kept at 50% / kept at 30%) counts")


if __name__ == "__main__":
    main()
