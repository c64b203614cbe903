"""Checks a folder written by make_tasks.py against the shards and tokenizer it was built from.

Per sample: LongBench fields plus `group` (the package) and nothing else; `length` equals the tokens of the filled template
and lies in the manifest's bounds; code sets: the prompt ends with the lines before the source
line and the answer is that line; repobench: the answer uses the name, the context files hold
its definition and the target file does not define it; header_define_qa: `#define NAME VALUE`
stands exactly once in the context, outside the tail variant's context; the tail variants fit
their token budget.
Usage: python3 tools/codemodel/check_tasks.py DIR --tokenizer TOK --shards FILE... (exit 1 on failure)"""
import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import docformat  # noqa: E402
import gguf_vocab  # noqa: E402
import task_builders as B  # noqa: E402

FIELDS = {"input", "context", "answers", "all_classes", "length", "dataset", "_id", "group"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--shards", nargs="+", required=True)
    args = ap.parse_args()
    tok = gguf_vocab.load_tokenizer(args.tokenizer)
    docs = {f"{p}/{r}": t for s in args.shards for p, r, t in docformat.read_docs(s)}
    man = json.load(open(os.path.join(args.dir, "manifest.json")))
    lo, hi, tail_n = man["settings"]["min_tokens"], man["settings"]["max_tokens"], man["settings"]["tail_tokens"]
    failures, checked = [], 0
    for name in man["datasets"]:
        rows = [json.loads(l) for l in open(os.path.join(args.dir, name + ".jsonl"), encoding="utf-8")]
        srcs = [json.loads(l) for l in open(os.path.join(args.dir, name + ".sources.jsonl"), encoding="utf-8")]
        tails = [json.loads(l) for l in open(os.path.join(args.dir, f"{name}.last{tail_n}.jsonl"), encoding="utf-8")]
        if not (len(rows) == len(srcs) == len(tails) == man["datasets"][name]["samples"]):
            failures.append(f"{name}: row counts differ")
            continue
        for r, src, t in zip(rows, srcs, tails):
            bad = lambda why: failures.append(f"{r.get('_id')}: {why}")  # noqa: E731
            checked += 1
            if (set(r) != FIELDS or r["dataset"] != name or src["_id"] != r["_id"]
                    or r["group"] != src["file"].split("/")[0]):
                bad(f"fields {sorted(r)}")
                continue
            prompt = B.TEMPLATES[name].format(context=r["context"], input=r["input"])
            n = len(tok.encode(prompt))
            if n != r["length"] or not lo <= n <= hi:
                bad(f"length {r['length']}, measured {n}, bounds {lo}..{hi}")
            cut = t["context"] if name == "header_define_qa" else t["context"] + t["input"]
            if len(tok.encode(cut)) > tail_n + 2 or t["length"] != len(tok.encode(B.TEMPLATES[name].format(context=t["context"], input=t["input"]))):
                bad(f"tail variant length {t['length']}")
            lines = docs[src["file"]].split("\n")
            ans = r["answers"][0]
            if name in ("code_lcc", "code_repobench"):
                j = src["line"]
                if ans != lines[j].rstrip():
                    bad("answer is not the source line")
                if j > 0 and not prompt.endswith(lines[j - 1] + "\n"):
                    bad("prompt does not end before the source line")
                if not prompt.endswith("\n"):
                    bad("prompt does not end with a newline")
            if name == "code_repobench":
                nm = src["name"]
                if not re.search(r"\b%s\b" % re.escape(nm), ans):
                    bad(f"answer does not use {nm}")
                if src["defined_in"] not in src["context_files"] or not re.search(r"\b%s\b" % re.escape(nm), r["context"]):
                    bad(f"context lacks the definition of {nm}")
                if src["defined_in"] == src["file"]:
                    bad("name defined in the target file")
            if name == "header_define_qa":
                nm = src["name"]
                hits = re.findall(r"#\s*define\s+%s\b[ \t]+\(?(\S+?)\)?[ \t]*(?:/\*|$)" % re.escape(nm), r["context"], re.M)
                if hits != [ans]:
                    bad(f"#define {nm} in the context: {hits}, answer {ans}")
                if not r["input"].endswith(f"#define {nm}"):
                    bad("input does not end with the cue")
                if re.search(r"#\s*define\s+%s\b" % re.escape(nm), t["context"]):
                    bad("the definition is inside the tail variant's context")
    print(f"checked {checked} samples of {len(man['datasets'])} datasets; {len(failures)} failures")
    for f in failures[:50]:
        print("  " + f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
