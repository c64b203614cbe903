"""Checks that the engine computes what model.py computes: a random model (weights scaled up so
greedy choices are clear-cut) is written as an F32 GGUF, and the engine's greedy continuation of
a few prompts must equal PyTorch's, token for token.

Usage: python3 tools/evalmodel/check_engine.py [--lazyllm build/lazyllm]
Needs PyTorch (Debian's python3-torch is enough: CPU only, float32).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_write as G  # noqa: E402
import vocab as V  # noqa: E402
from model import Config, Llama, to_gguf  # noqa: E402

PROMPTS = [
    "the passkey is 48213. remember it.\n\nquestion: what is the passkey?\nanswer:",
    "document 1: alice lives in oslo. alice works as a pilot.\n\nquestion: which city does alice live in?\nanswer:",
    "text: we talked about the apple, the pear and the plum.\nlabel: sigma\n\ntext: someone mentioned a mango",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lazyllm", default="build/lazyllm")
    ap.add_argument("--n", type=int, default=12)
    args = ap.parse_args()
    torch.manual_seed(7)
    vocab = V.Vocab()
    cfg = Config(n_vocab=len(vocab), d=64, n_layers=3, n_heads=4, n_kv_heads=2, n_ff=96, rope_base=10000.0)
    model = Llama(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.15)
            else:
                p.uniform_(0.8, 1.2)
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "random.gguf")
        to_gguf(model, vocab, path, "random check", G.DTYPE_F32)
        for prompt in PROMPTS:
            ids = vocab.encode(prompt)
            want = []
            with torch.no_grad():
                for _ in range(args.n):
                    logits = model(torch.tensor([ids + want]))[0, -1]
                    top2 = logits.topk(2).values
                    want.append(int(logits.argmax()))
            pf = os.path.join(d, "p.txt")
            open(pf, "w").write(prompt)
            out = subprocess.run([args.lazyllm, "run", "-m", path, "-f", pf, "--temp", "0", "-n", str(args.n),
                                  "--json"], capture_output=True, text=True)
            if out.returncode != 0:
                print("lazyllm run failed:", out.stderr)
                return 1
            got = json.loads(out.stdout.strip().splitlines()[-1])["tokens"]
            want_until_eos = want[:want.index(V.EOS) + 1] if V.EOS in want else want
            ok = got == want_until_eos or got == want
            failures += not ok
            print(("ok  " if ok else "DIFF"), "engine", got, "\n     torch ", want)
    print("engine matches PyTorch" if not failures else f"{failures} prompts differ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
