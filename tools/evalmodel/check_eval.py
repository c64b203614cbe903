"""Checks the evaluation sets and the vocabulary against the engine.

1. Tokenizer: the Python encoder (vocab.py) gives the engine's ids, token for token, on every
   eval prompt (`lazyllm tokenize --ids`), and the fast per-segment encoder equals one merge
   over the whole text.
2. Tail: nothing the answer depends on lies in the last 256 context tokens (the needle, the
   asked key, the asked person, the asked class's examples, the counted event).
3. Format: LongBench fields, one dataset name per file, lengths in 512..4064 matching `length`.

Usage: python3 tools/evalmodel/check_eval.py --lazyllm build/lazyllm [--model eval/models/X.gguf]
       [--data eval/data] [--tokenize-every 1]
Without --model, a vocabulary-only GGUF of vocab.py is written to a temporary folder and used.
Exits nonzero on the first kind of failure, after printing every failing sample.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_write as G  # noqa: E402
import tasks as T  # noqa: E402
import vocab as V  # noqa: E402
import words as W  # noqa: E402

FIELDS = {"input", "context", "answers", "all_classes", "length", "dataset", "_id"}


def asked_evidence(row):
    """The text that must not be visible in the last 256 context tokens."""
    fam, q, a = row["dataset"], row["input"], row["answers"][0]
    if fam == "synth_passkey":
        return [f"passkey is {a}"]
    if fam == "synth_kv_retrieval":
        key = q.split("value for ")[1].split("?")[0]
        return [f"{key}: {a}."]
    if fam in ("synth_singledoc_qa", "synth_multidoc_qa"):
        name = next(w.strip("?") for w in q.split() if w.strip("?") in W.NAMES)
        return [name]
    if fam == "synth_fewshot_cls":
        return ["label: " + a]
    if fam == "synth_count":
        return [q.split("say that ")[1].split("?")[0] + "."]
    raise ValueError(fam)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lazyllm", default="build/lazyllm")
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default="eval/data")
    ap.add_argument("--tokenize-every", type=int, default=1, help="check every n-th sample with the engine")
    args = ap.parse_args()
    vocab = V.Vocab()
    tmp = tempfile.TemporaryDirectory()
    if args.model is None:
        w = G.GGUFWriter()
        vocab.write_metadata(w)
        args.model = os.path.join(tmp.name, "vocab.gguf")
        w.write(args.model)
    failures = 0
    checked = 0
    for fam in T.FAMILIES:
        rows = [json.loads(l) for l in open(os.path.join(args.data, fam + ".jsonl"))]
        for k, row in enumerate(rows):
            if set(row) != FIELDS or row["dataset"] != fam:
                print(f"{fam} #{k}: fields {sorted(row)} / dataset {row['dataset']}")
                failures += 1
            prompt = T.prompt_text(row)
            ids = vocab.encode(prompt)
            if len(ids) - 1 != row["length"] or not 512 <= row["length"] <= 4064:
                print(f"{row['_id']}: length {row['length']} vs {len(ids) - 1} tokens")
                failures += 1
            tail_text = vocab.decode(vocab.encode(row["context"], add_bos=False)[-256:])
            for ev in asked_evidence(row):
                if ev in tail_text:
                    print(f"{row['_id']}: '{ev}' is in the last 256 context tokens")
                    failures += 1
            if k % args.tokenize_every:
                continue
            if ids != vocab.encode_exact(prompt):
                print(f"{row['_id']}: per-segment encoding differs from the whole-text merge")
                failures += 1
            with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
                f.write(prompt)
            out = subprocess.run([args.lazyllm, "tokenize", "-m", args.model, "-f", f.name, "--ids"],
                                 capture_output=True, text=True)
            os.unlink(f.name)
            if out.returncode != 0:
                print(f"{row['_id']}: lazyllm tokenize failed: {out.stderr.strip()}")
                failures += 1
                continue
            engine = [int(x) for x in out.stdout.replace(",", " ").replace("[", " ").replace("]", " ").split()]
            if engine != ids:
                first = next((i for i, (x, y) in enumerate(zip(engine, ids)) if x != y), min(len(engine), len(ids)))
                print(f"{row['_id']}: engine ids differ at {first}: {engine[first:first + 5]} vs {ids[first:first + 5]}")
                failures += 1
            checked += 1
    print(f"checked {checked} prompts against the engine; {failures} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
