"""Builds the code corpus from the pinned Debian 12 packages (packages.py): download with apt,
check each .deb's SHA256 against apt's index, unpack with dpkg-deb, filter (filters.py), dedup,
split by package and write xz shards (docformat.py) and manifest.json.

Usage: python3 tools/codemodel/corpus.py [--cache /tmp/lazyllm-corpus] [--full] [--out DIR]
Outputs (default DIR = CACHE/corpus): {train,calib,test}-NNN.txt.xz and manifest.json.
Dedup runs over the splits in the order test, calib, train (packages by name, files by path
within each), so a file that also appears in a held-out package is dropped from training."""
import argparse
import json
import lzma
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import docformat  # noqa: E402
import fetch  # noqa: E402
import filters  # noqa: E402
import packages  # noqa: E402

SPLIT_ORDER = ("test", "calib", "train")


class ShardWriter:
    """Writes one split's documents into NAME-NNN.txt.xz files of about shard_bytes of text."""

    def __init__(self, out, split, shard_bytes, preset):
        self.out, self.split, self.limit, self.preset = out, split, shard_bytes, preset
        self.shards, self.f, self.n = [], None, 0

    def add(self, doc):
        if self.f is None:
            name = f"{self.split}-{len(self.shards):03d}.txt.xz"
            self.shards.append({"file": name})
            self.f = lzma.open(os.path.join(self.out, name), "wt", encoding="utf-8", preset=self.preset)
            self.n = 0
        self.f.write(doc)
        self.n += len(doc.encode("utf-8"))
        if self.n >= self.limit:
            self.close()

    def close(self):
        if self.f is None:
            return
        self.f.close()
        s = self.shards[-1]
        path = os.path.join(self.out, s["file"])
        s.update(text_bytes=self.n, xz_bytes=os.path.getsize(path), sha256=fetch.file_sha256(path))
        self.f = None


def collect(root):
    """(relative path, kind) of every candidate file under an unpacked package, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            rel = os.path.relpath(full, root)
            kind = filters.kind_of(rel)
            if kind:
                found.append((rel, kind))
    return sorted(found)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default="/tmp/lazyllm-corpus", help="downloads and unpacked trees (outside the repo)")
    ap.add_argument("--out", default=None, help="shards and manifest (default CACHE/corpus)")
    ap.add_argument("--full", action="store_true", help="every package of packages.py, not only the default set")
    ap.add_argument("--shard-mb", type=float, default=100.0, help="text per shard before xz (MB)")
    ap.add_argument("--xz-preset", type=int, default=3)
    args = ap.parse_args()
    out = args.out or os.path.join(args.cache, "corpus")
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    chosen = packages.selected(args.full)
    try:
        entries = fetch.download([(n, v) for n, v, _ in chosen], args.cache)
    except fetch.FetchError as e:
        sys.exit(f"error: {e}")
    t_fetch = time.time() - t0
    print(f"{len(chosen)} packages checked in {t_fetch:.0f} s", flush=True)

    seen_exact, seen_loose = set(), set()
    writers = {s: ShardWriter(out, s, int(args.shard_mb * 1e6), args.xz_preset) for s in SPLIT_ORDER}
    report = []
    for split in SPLIT_ORDER:
        for name, version, role in sorted(p for p in chosen if p[2] == split):
            e = entries[name]
            try:
                root = fetch.unpack(name, e, args.cache)
            except fetch.FetchError as err:
                sys.exit(f"error: {err}")
            pk = {"package": name, "version": version, "split": split, "deb": e["file"],
                  "deb_sha256": e["sha256"], "deb_bytes": e["size"], "files": 0, "text_bytes": 0,
                  "by_kind": {}, "dropped": {}}
            for rel, kind in collect(root):
                text, reason = filters.check(filters.read_text(os.path.join(root, rel)))
                if text is not None:
                    exact, loose = filters.dedup_keys(text)
                    if exact in seen_exact:
                        reason = "duplicate"
                    elif loose in seen_loose:
                        reason = "near_duplicate"
                    seen_exact.add(exact)
                    seen_loose.add(loose)
                if reason:
                    pk["dropped"][reason] = pk["dropped"].get(reason, 0) + 1
                    continue
                rel_out = rel[:-3] if rel.endswith(".gz") else rel
                writers[split].add(docformat.render(name, rel_out, text))
                n = len(text.encode("utf-8"))
                pk["files"] += 1
                pk["text_bytes"] += n
                k = pk["by_kind"].setdefault(kind, {"files": 0, "text_bytes": 0})
                k["files"] += 1
                k["text_bytes"] += n
            report.append(pk)
            print(f"  {split:5s} {name:28s} {pk['files']:6d} files {pk['text_bytes'] / 1e6:8.1f} MB", flush=True)
        writers[split].close()

    splits = {}
    for s in SPLIT_ORDER:
        ps = [p for p in report if p["split"] == s]
        splits[s] = {"packages": [p["package"] for p in ps], "files": sum(p["files"] for p in ps),
                     "text_bytes": sum(p["text_bytes"] for p in ps), "shards": writers[s].shards}
    manifest = {
        "recipe": "tools/codemodel/corpus.py",
        "distribution": "Debian 12 (bookworm) amd64",
        "full": args.full,
        "format": {"file_header": docformat.FILE_MARK + " PACKAGE/PATH", "end_of_file": docformat.END_MARK},
        "filters": {"min_bytes": filters.MIN_BYTES, "max_bytes": filters.MAX_BYTES, "max_line": filters.MAX_LINE,
                    "max_mean_line": filters.MAX_MEAN_LINE, "min_alnum": filters.MIN_ALNUM,
                    "dedup": "sha256 of normalized text; sha256 of lowercased text without whitespace",
                    "dedup_order": list(SPLIT_ORDER)},
        "splits": splits,
        "packages": report,
        "seconds": round(time.time() - t0, 1),
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    for s in SPLIT_ORDER:
        d = splits[s]
        xz = sum(x["xz_bytes"] for x in d["shards"])
        print(f"{s}: {len(d['packages'])} packages, {d['files']} files, {d['text_bytes'] / 1e6:.1f} MB text, "
              f"{len(d['shards'])} shards, {xz / 1e6:.1f} MB xz")
    print(f"wrote {out}/manifest.json in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
