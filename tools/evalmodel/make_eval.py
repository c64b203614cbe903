"""Writes the evaluation sets eval/data/<family>.jsonl in LongBench's format.

Fields: input, context, answers (list), all_classes (list or null), length, dataset, _id.
`length` is the prompt's length in tokens of the model's tokenizer ("{context}\\n\\n{input}",
<s> not counted). Prompt lengths are spread evenly over 512..4064 tokens (room is left for the
answer within the 4096-token context). Seeds "eval:<i>" never occur in training ("train:...").

Usage: python3 tools/evalmodel/make_eval.py [--n 64] [--out eval/data]
"""
import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasks as T  # noqa: E402
import vocab as V  # noqa: E402

MIN_LEN, MAX_LEN = 512, 4064


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--out", default="eval/data")
    args = ap.parse_args()
    vocab = V.Vocab()
    os.makedirs(args.out, exist_ok=True)
    for fam in T.FAMILIES:
        rng = random.Random(f"eval-lengths:{fam}")
        with open(os.path.join(args.out, fam + ".jsonl"), "w") as f:
            for i in range(args.n):
                target = int(MIN_LEN + (MAX_LEN - MIN_LEN) * (i + rng.random()) / args.n)
                while True:  # whole documents/examples can undershoot: aim higher until in range
                    s = T.make_sample(fam, f"eval:{i}", vocab, target)
                    n_tokens = len(vocab.encode(T.prompt_text(s), add_bos=False))
                    if n_tokens >= MIN_LEN or target >= MAX_LEN:
                        break
                    target += 16
                row = {"input": s["input"], "context": s["context"], "answers": [s["answer"]],
                       "all_classes": s["all_classes"], "length": n_tokens, "dataset": fam,
                       "_id": f"{fam}-{i:03d}"}
                f.write(json.dumps(row) + "\n")
        print(f"{fam}: {args.n} samples")


if __name__ == "__main__":
    main()
