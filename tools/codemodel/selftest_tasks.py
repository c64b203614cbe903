"""The task builder on the committed fixture (tests/data/codemodel/test-000.txt, a toy Python
package and toy C headers written for this test), counted with the vocabulary of
tools/evalmodel (a GGUF written here, no SentencePiece needed): builds the three sets twice
(same bytes: deterministic), validates them with check_tasks.py, and scores the
copy-the-previous-line baseline (a number in [0, 100), 0 on the retrieval set). A ctest; seconds."""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "..", "evalmodel"))
import gguf_write as G  # noqa: E402
import vocab as V  # noqa: E402

FIXTURE = os.path.join(ROOT, "tests", "data", "codemodel", "test-000.txt")


def run(args):
    out = subprocess.run([sys.executable] + args, capture_output=True, text=True)
    print(out.stdout, end="")
    if out.returncode != 0:
        print(out.stderr, end="")
        sys.exit(f"FAILED: {' '.join(args)}")
    return out.stdout


def main():
    tmp = tempfile.TemporaryDirectory()
    vocab = os.path.join(tmp.name, "vocab.gguf")
    w = G.GGUFWriter()
    V.Vocab().write_metadata(w)
    w.write(vocab)
    common = ["--tokenizer", vocab, "--shards", FIXTURE, "--samples", "4", "--min-tokens", "200",
              "--max-tokens", "700", "--tail-tokens", "64"]
    digests = []
    for k in range(2):
        out = os.path.join(tmp.name, f"tasks{k}")
        run([os.path.join(HERE, "make_tasks.py"), "--out", out] + common)
        man = json.load(open(os.path.join(out, "manifest.json")))
        digests.append({n: d["sha256"] for n, d in man["datasets"].items()})
    if digests[0] != digests[1]:
        sys.exit(f"FAILED: two builds differ: {digests}")
    out = os.path.join(tmp.name, "tasks0")
    run([os.path.join(HERE, "check_tasks.py"), out, "--tokenizer", vocab, "--shards", FIXTURE])
    names = sorted(digests[0])
    if names != ["code_lcc", "code_repobench", "header_define_qa"]:
        sys.exit(f"FAILED: datasets {names}")
    lines = run([os.path.join(HERE, "baseline.py")] + [os.path.join(out, n + ".jsonl") for n in names])
    scores = {json.loads(l)["file"]: json.loads(l)["copy_previous_line"] for l in lines.splitlines()}
    if not all(0 <= scores[f"{n}.jsonl"] < 100 for n in names) or scores["header_define_qa.jsonl"] != 0:
        sys.exit(f"FAILED: baseline scores {scores}")
    # a bad request is a clear error, not a crash
    bad = subprocess.run([sys.executable, os.path.join(HERE, "make_tasks.py"), "--out", os.path.join(tmp.name, "bad"),
                          "--datasets", "nope"] + common, capture_output=True, text=True)
    if bad.returncode == 0 or "unknown dataset" not in bad.stderr:
        sys.exit(f"FAILED: an unknown dataset was not refused: {bad.stderr}")
    print("codemodel task builder: OK")


if __name__ == "__main__":
    main()
