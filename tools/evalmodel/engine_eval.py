"""Scores a model on the eval sets with the engine (`lazyllm run --temp 0 --json`), full context
or the context cut to its last N tokens, and compares with PyTorch's predictions when given.

Usage: python3 tools/evalmodel/engine_eval.py --model eval/models/X.gguf [--per-family 10]
         [--cut 256] [--torch-preds eval_predictions.jsonl] [--lazyllm build/lazyllm]
The prompt is "{context}\\n\\n{input}" (the harness's generic template); a prediction is right
when, stripped of surrounding spaces, it equals one of the answers.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasks as T  # noqa: E402
import vocab as V  # noqa: E402


def run_engine(lazyllm, model, prompt, n_predict, extra):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(prompt)
    try:
        out = subprocess.run([lazyllm, "run", "-m", model, "-f", f.name, "--temp", "0", "-n", str(n_predict),
                              "--json"] + extra, capture_output=True, text=True, check=True)
    finally:
        os.unlink(f.name)
    return json.loads(out.stdout.strip().splitlines()[-1])["text"].strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--lazyllm", default="build/lazyllm")
    ap.add_argument("--data", default="eval/data")
    ap.add_argument("--per-family", type=int, default=10, help="samples per family, spread over the lengths")
    ap.add_argument("--cut", type=int, default=0, help="keep only the last N context tokens (0: all)")
    ap.add_argument("--torch-preds", default=None)
    ap.add_argument("--extra", default="", help="more flags for lazyllm run, e.g. '--lazy'")
    args = ap.parse_args()
    vocab = V.Vocab()
    torch_preds = {}
    if args.torch_preds:
        for line in open(args.torch_preds):
            r = json.loads(line)
            torch_preds[r["_id"]] = r["pred_last256" if args.cut else "pred_full"]
    total_right = total = agree = compared = 0
    for fam in T.FAMILIES:
        rows = [json.loads(l) for l in open(os.path.join(args.data, fam + ".jsonl"))]
        step = max(1, len(rows) // args.per_family)
        picked = rows[::step][:args.per_family]
        right = 0
        for row in picked:
            context = row["context"]
            if args.cut:
                context = vocab.decode(vocab.encode(context, add_bos=False)[-args.cut:]).lstrip(" ")
            pred = run_engine(args.lazyllm, args.model, context + "\n\n" + row["input"], 8, args.extra.split())
            ok = pred in row["answers"]
            right += ok
            if row["_id"] in torch_preds:
                compared += 1
                agree += pred == torch_preds[row["_id"]]
            print(f"{row['_id']} len {row['length']}: {pred!r} vs {row['answers']} {'ok' if ok else 'WRONG'}", flush=True)
        print(f"== {fam}: {right}/{len(picked)}", flush=True)
        total_right += right
        total += len(picked)
    print(f"total {total_right}/{total}" + (f"; same answer as PyTorch on {agree}/{compared}" if compared else ""))


if __name__ == "__main__":
    main()
