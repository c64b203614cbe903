"""Compares the engine's tokenizer (`lazyllm tokenize --ids` on the exported GGUF) with
SentencePiece's ids, on snippets of held-out code and on edge cases, and the pure-Python engine
encoder of gguf_vocab.py with both. Prints the number of differences (and each differing input).

Usage:
  python3 tools/codemodel/check_tokenizer.py --lazyllm build/lazyllm --model M.model
      [--gguf M.gguf (default: exported here)] [--shards test-000.txt.xz ...] [--snippets 300]
  python3 tools/codemodel/check_tokenizer.py --lazyllm build/lazyllm --dir /tmp/lazyllm-corpus [--snippets N]
      the same with the model and held-out shards found in a corpus.py cache (exit 77 without)
  python3 tools/codemodel/check_tokenizer.py --lazyllm build/lazyllm --tiny
      trains a tiny model (a few KB of text written here, vocabulary 400) and checks its export:
      needs no corpus (the ctest `codemodel_tokenizer_tiny`; exit 77 without sentencepiece).
Snippets: from each held-out file drawn (seeded), a run of 1-40 lines starting at a random line,
sometimes cut inside a line."""
import argparse
import glob
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import docformat  # noqa: E402
import gguf_vocab  # noqa: E402
import spm_import  # noqa: E402

EDGE_CASES = [
    "", " ", "  ", "\n", "\n\n\n", "\t", "x", " x", "x ", "a  b   c", "\tif (x)\n\t\treturn 0;\n",
    "def f(x):\n    return x  # comment   \n", "    \n        \n", "0x7fffffff 1234567890 3.14159e-10",
    "<s> </s> <unk> <0x41> not special", "\u2581 literal lower one-eighth block \u2581\u2581",
    "unicode: caf\u00e9 na\u00efve \u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9 \u4e2d\u6587 \U0001F600 \u0928\u092e\u0938\u094d\u0924\u0947",
    "mixed\r\nline\rends", "#include <stdio.h>\n#define MAX(a, b) ((a) > (b) ? (a) : (b))\n",
    "a" * 300, " " * 40 + "deeply_indented()", "\u00a0non-breaking\u2003spaces", "\x01\x02 control \x7f",
]

TINY_TEXT = """def add(left, right):
    return left + right


class Counter:
    def __init__(self):
        self.count = 0

    def increment(self, step=1):
        self.count += step
        return self.count
"""
TINY_C = """#include <stdio.h>

static int square(int value)
{
    return value * value;
}

int main(void)
{
    for (int i = 0; i < 10; ++i)
        printf("%d squared is %d\\n", i, square(i));
    return 0;
}
"""


def snippets(shards, n, seed="tokenizer-check"):
    files = [t for s in shards for _, _, t in docformat.read_docs(s)]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lines = rng.choice(files).split("\n")
        a = rng.randrange(len(lines))
        text = "\n".join(lines[a:a + rng.randint(1, 40)])
        if rng.random() < 0.3 and len(text) > 2:
            text = text[rng.randrange(len(text) // 2):]
        out.append(text)
    return out


def engine_ids(lazyllm, gguf, text, tmp):
    path = os.path.join(tmp, "in.txt")
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    out = subprocess.run([lazyllm, "tokenize", "-m", gguf, "-f", path, "--ids"], capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip()
    return [int(x) for x in out.stdout.strip().strip("[]").replace(",", " ").split()], None


def compare(lazyllm, sp, gguf, texts):
    py = gguf_vocab.GgufVocab(gguf)
    diffs = 0
    with tempfile.TemporaryDirectory() as tmp:
        for k, text in enumerate(texts):
            want = [sp.bos_id()] + sp.EncodeAsIds(text)
            got, err = engine_ids(lazyllm, gguf, text, tmp)
            mine = [sp.bos_id()] + py.encode(text)
            if got != want or mine != want:
                diffs += 1
                first = next((i for i, (a, b) in enumerate(zip(got or [], want)) if a != b), None)
                print(f"DIFF #{k} {text[:60]!r}: engine {err or (got or [])[first or 0:][:6]} python {mine[:8]} "
                      f"sentencepiece {want[first or 0:][:6]}")
    return diffs


def train_tiny(spm, tmp):
    import train_tokenizer as T
    path = os.path.join(tmp, "tiny.txt")
    with open(path, "w", encoding="utf-8") as f:
        for k in range(12):  # a few KB: the two programs with renamed identifiers
            f.write(TINY_TEXT.replace("Counter", f"Counter{k}").replace("add", f"add_{k}"))
            f.write(TINY_C.replace("square", f"square{k}"))
    prefix = os.path.join(tmp, "tiny")
    T.train(spm, path, prefix, 400, 1)
    return prefix + ".model"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lazyllm", default="build/lazyllm")
    ap.add_argument("--model")
    ap.add_argument("--gguf")
    ap.add_argument("--shards", nargs="*", default=[])
    ap.add_argument("--snippets", type=int, default=300)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--dir", help="a corpus.py cache folder: its tokenizer/code-bpe-*.model and corpus/test-*.txt.xz")
    args = ap.parse_args()
    if args.dir:
        models = sorted(glob.glob(os.path.join(args.dir, "tokenizer", "code-bpe-*.model")))
        args.shards = sorted(glob.glob(os.path.join(args.dir, "corpus", "test-*.txt.xz")))
        if not models or not args.shards:
            print(f"SKIPPED: no tokenizer or held-out shards under {args.dir} (see tools/codemodel/README.md)")
            sys.exit(77)
        args.model = models[0]
    spm = spm_import.sentencepiece_or_none()
    if spm is None:
        # CI installs it (scripts/test.sh): there a missing module is a failure, not a skip
        ci = os.environ.get("CI", "") not in ("", "0", "false")
        print(("FAILED" if ci else "SKIPPED") + ": the sentencepiece module is missing (bash tools/codemodel/setup.sh)")
        sys.exit(1 if ci else 77)
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            args.model = train_tiny(spm, tmp)
            texts = EDGE_CASES + [TINY_TEXT, TINY_C, TINY_TEXT.replace("count", "amount")]
        else:
            if not args.model:
                sys.exit("error: --model or --tiny")
            missing = [s for s in args.shards if not os.path.exists(s)]
            if missing or not args.shards:
                print(f"SKIPPED: no held-out shards ({missing or 'none given'}; run corpus.py)")
                sys.exit(77)
            texts = EDGE_CASES + snippets(args.shards, args.snippets)
        sp = spm.SentencePieceProcessor(model_file=args.model)
        gguf = args.gguf
        if not gguf:
            gguf = os.path.join(tmp, "vocab.gguf")
            gguf_vocab.export(sp, gguf)
        diffs = compare(args.lazyllm, sp, gguf, texts)
    print(f"checked {len(texts)} inputs ({len(EDGE_CASES)} edge cases): {diffs} differences")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
