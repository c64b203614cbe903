"""Builds the long-context task sets (LongBench JSONL) from one split of the code corpus.

Usage: python3 tools/codemodel/make_tasks.py --tokenizer TOK (.model or .gguf) [--split test]
       [--corpus /tmp/lazyllm-corpus/corpus | --shards FILE...] [--out DIR] [--samples 200]
       [--min-tokens 1024] [--max-tokens 4000] [--tail-tokens 256] [--seed codemodel]
Writes into DIR (default CORPUS/../tasks/SPLIT):
- code_lcc.jsonl, code_repobench.jsonl, header_define_qa.jsonl (task_builders.py says what
  each holds); `length` is the prompt's token count (template filled, BOS not counted), in
  [min-tokens, max-tokens]; max 4000 leaves room for BOS and 64 new tokens in a 4096 context;
- NAME.last256.jsonl: the same samples with the prompt cut to its last --tail-tokens tokens (the
  whole prompt for the code sets, the context for the retrieval set, whose question stays);
  `lazyllm eval` only cuts prompts in the middle, so the variant is a file of its own;
- NAME.sources.jsonl: where each sample came from (file, line, name), for checking;
- config.json: template, metric and generation length per dataset (`lazyllm eval --config`);
- manifest.json: seed, settings, SHA256 of the tokenizer and of every shard read, counts and
  length statistics.
Deterministic: the same shards, tokenizer, seed and settings give the same files."""
import argparse
import glob
import hashlib
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import docformat  # noqa: E402
import gguf_vocab  # noqa: E402
import task_builders as B  # noqa: E402
from source_lines import SourceFile  # noqa: E402

DATASETS = ("code_lcc", "code_repobench", "header_define_qa")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def render(s):
    return B.TEMPLATES[s["dataset"]].format(context=s["context"], input=s["input"])


def tail_variant(s, tok, n):
    """The sample with its prompt cut to the last n tokens."""
    t = dict(s)
    if s["dataset"] == "header_define_qa":
        ids = tok.encode(s["context"])
        t["context"] = tok.decode(ids[-n:]).lstrip("\ufffd")
    else:
        ids = tok.encode(s["context"] + s["input"])
        t["context"], t["input"] = tok.decode(ids[-n:]).lstrip("\ufffd"), ""
    t["length"] = len(tok.encode(render(t)))
    return t


def by_key(items, key, rng):
    """items grouped by key (groups in key order), each group shuffled."""
    groups = {}
    for it in items:
        groups.setdefault(key(it), []).append(it)
    out = []
    for k in sorted(groups):
        rng.shuffle(groups[k])
        out.append(groups[k])
    return out


def interleave(groups):
    """One item of each non-empty group in turn."""
    out, k = [], 0
    while any(k < len(g) for g in groups):
        out.extend(g[k] for g in groups if k < len(g))
        k += 1
    return out


def draw(name, rng, files, by_pkg, args, tok):
    """args.samples samples of one dataset; each drawn file/cut must fit the length bounds."""
    # Python and C files take turns (and packages take turns within each), so neither the
    # largest language nor the largest package fills a set alone
    code = interleave([interleave(by_key([f for f in files if f.lang == lang], lambda f: f.package, rng))
                       for lang in ("python", "c")])
    out, tries, k = [], 0, 0
    sites = None
    if name == "header_define_qa":
        sites = []
        for pkg, fs in sorted(by_pkg.items()):
            headers = [f for f in fs if f.lang == "c" and f.rel.endswith((".h", ".hpp", ".hh"))]
            sites.append([(headers, s) for s in B.define_sites(headers)])
            rng.shuffle(sites[-1])
        sites = interleave(sites)
    used = set()
    while len(out) < args.samples and tries < args.samples * 50:
        tries += 1
        target = rng.randint(args.min_tokens, args.max_tokens)
        if name == "header_define_qa":
            if not sites:
                break
            headers, site = sites[k % len(sites)]
            k += 1
            key = (site[0].rel, site[2])
            s = None if key in used else B.build_define_qa(rng, headers, site, target, args.tail_tokens + 8)
        else:
            if not code:
                break
            f = code[k % len(code)]
            k += 1
            key = (f.package, f.rel)
            if key in used and k <= len(code):
                continue
            if name == "code_lcc":
                s = B.build_lcc(rng, f, target, args.min_tokens)
            else:
                pf = by_pkg[f.package]
                s = B.build_repobench(rng, f, pf, pf.by_module, pf.by_path, target, args.min_tokens)
        if s is None:
            continue
        s["length"] = len(tok.encode(render(s)))
        if not args.min_tokens <= s["length"] <= args.max_tokens:
            continue
        used.add(key)
        s["_id"] = f"{name}:{args.split}:{len(out)}"
        out.append(s)
    return out


class PackageFiles(list):
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True, help="SentencePiece .model or a GGUF with a llama vocabulary")
    ap.add_argument("--corpus", default="/tmp/lazyllm-corpus/corpus")
    ap.add_argument("--split", default="test", choices=("test", "calib", "train"))
    ap.add_argument("--shards", nargs="*", help="shard files (default CORPUS/SPLIT-*.txt.xz)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--min-tokens", type=int, default=1024)
    ap.add_argument("--max-tokens", type=int, default=4000)
    ap.add_argument("--tail-tokens", type=int, default=256)
    ap.add_argument("--seed", default="codemodel")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    args = ap.parse_args()
    if not 0 < args.min_tokens <= args.max_tokens:
        sys.exit("error: need 0 < --min-tokens <= --max-tokens")
    names = [d for d in args.datasets.split(",") if d]
    bad = [d for d in names if d not in DATASETS]
    if bad:
        sys.exit(f"error: unknown dataset(s) {bad}; known: {', '.join(DATASETS)}")
    shards = args.shards or sorted(glob.glob(os.path.join(args.corpus, f"{args.split}-*.txt.xz")))
    if not shards:
        sys.exit(f"error: no {args.split} shards in {args.corpus} (run corpus.py first)")
    if not os.path.exists(args.tokenizer):
        sys.exit(f"error: no tokenizer at {args.tokenizer}")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.corpus)), "tasks", args.split)
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    tok = gguf_vocab.load_tokenizer(args.tokenizer)
    files, by_pkg = [], {}
    for shard in shards:
        for pkg, rel, text in docformat.read_docs(shard):
            f = SourceFile(pkg, rel, text, tok)
            files.append(f)
            by_pkg.setdefault(pkg, PackageFiles()).append(f)
    for pf in by_pkg.values():
        pf.by_module = {f.module(): f for f in pf if f.lang == "python"}
        pf.by_path = {f.rel: f for f in pf if f.lang == "c"}
    manifest = {"builder": "tools/codemodel/make_tasks.py", "split": args.split, "seed": args.seed,
                "settings": {k: getattr(args, k) for k in ("samples", "min_tokens", "max_tokens", "tail_tokens")},
                "tokenizer": {"file": os.path.basename(args.tokenizer), "sha256": sha256(args.tokenizer)},
                "shards": {os.path.basename(s): sha256(s) for s in shards},
                "files_read": len(files), "datasets": {}}
    cm = os.path.join(os.path.dirname(shards[0]), "manifest.json")
    if os.path.exists(cm):
        manifest["corpus_manifest_sha256"] = sha256(cm)
    status = 0
    for name in names:
        rng = random.Random(f"{args.seed}:{args.split}:{name}")
        t1 = time.time()
        rows = draw(name, rng, files, by_pkg, args, tok)
        pkgs = sorted({s["source"]["file"].split("/")[0] for s in rows})
        if len(rows) < args.samples:
            print(f"error: {name}: only {len(rows)} of {args.samples} samples fit (too few files in the split?)")
            status = 1
        with open(os.path.join(out, name + ".jsonl"), "w") as f, \
                open(os.path.join(out, name + ".sources.jsonl"), "w") as src, \
                open(os.path.join(out, name + f".last{args.tail_tokens}.jsonl"), "w") as tail:
            for s in rows:
                info = s.pop("source")
                s["group"] = info["file"].split("/")[0]  # the package: calibrate's unit of generalisation
                f.write(json.dumps(s, ensure_ascii=False) + "\n")
                src.write(json.dumps({"_id": s["_id"], **info}, ensure_ascii=False) + "\n")
                tail.write(json.dumps(tail_variant(s, tok, args.tail_tokens), ensure_ascii=False) + "\n")
        lengths = sorted(s["length"] for s in rows)
        manifest["datasets"][name] = {
            "samples": len(rows), "packages": pkgs,
            "length_min": lengths[0] if lengths else None, "length_median": lengths[len(lengths) // 2] if lengths else None,
            "length_max": lengths[-1] if lengths else None, "sha256": sha256(os.path.join(out, name + ".jsonl")),
            "seconds": round(time.time() - t1, 1)}
        print(f"{name}: {len(rows)} samples, lengths {lengths[:1]}..{lengths[-1:]} ({time.time() - t1:.0f} s)", flush=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({n: B.CONFIG[n] for n in names}, f, indent=1)
    manifest["seconds"] = round(time.time() - t0, 1)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"wrote {out} in {time.time() - t0:.0f} s")
    sys.exit(status)


if __name__ == "__main__":
    main()
