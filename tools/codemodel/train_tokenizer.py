"""Trains the SentencePiece BPE tokenizer on a sample of the train split and exports its
vocabulary as a vocabulary-only GGUF (gguf_vocab.py).

Usage: python3 tools/codemodel/train_tokenizer.py [--corpus /tmp/lazyllm-corpus/corpus]
       [--out DIR (default CORPUS/../tokenizer)] [--vocab-size 8192] [--sample-mb 24]
Writes DIR/code-bpe-<V>.model, .vocab, .gguf and tokenizer.json (settings, sample, timings).

Settings, and why (the engine's tokenizer is llama.cpp's `llama` SentencePiece: byte pieces,
"▁" for spaces, pair merges by piece score):
- model_type bpe: the engine merges pairs by score, which reproduces SentencePiece BPE exactly
  (unigram would need Viterbi);
- byte_fallback: any byte sequence encodes (<0x00>..<0xFF>, ids 3..258 after unk/bos/eos);
- normalization identity, remove_extra_whitespaces false: code is tokenized as written
  (indentation, runs of spaces, tabs); the engine does no normalization either;
- add_dummy_prefix false (GGUF add_space_prefix false): a source file starts at its first
  character, and a prompt cut anywhere tokenizes like the same text inside a file;
- allow_whitespace_only_pieces: indentation runs ("▁▁▁▁", "▁▁▁▁▁▁▁▁") become single pieces;
- split_digits: numbers are spelled digit by digit, so constants copy token by token;
- newline is not a piece: SentencePiece trains on lines, so "\\n" is the byte piece <0x0A>
  (as in Llama's tokenizer); one token per line end;
- vocab_size 8192 (default): the model must fit 64 MB as GGUF with >= 12 layers; at d = 384 the
  tied embedding of 8192 pieces is 3.1 M parameters against 6.3 M at 16384. tokenizer.json
  records the measured bytes per token so a larger vocabulary can be weighed against it.
"""
import argparse
import glob
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import docformat  # noqa: E402
import gguf_vocab  # noqa: E402
import spm_import  # noqa: E402

MAX_SENTENCE = 4096  # bytes; longer lines are left out of the sample


def sample_lines(shards, sample_bytes, salt="tokenizer"):
    """Lines of a deterministic sample of files: files in order of a salted hash of their path,
    until sample_bytes of text."""
    docs = []
    for shard in shards:
        for pkg, rel, text in docformat.read_docs(shard):
            key = hashlib.sha256(f"{salt}:{pkg}/{rel}".encode()).hexdigest()
            docs.append((key, text))
    docs.sort()
    lines, total = [], 0
    for _, text in docs:
        for line in text.split("\n"):
            if line.strip() and len(line.encode("utf-8")) <= MAX_SENTENCE:
                lines.append(line)
                total += len(line) + 1
        if total >= sample_bytes:
            break
    return lines, total, len(docs)


def train(spm, input_path, prefix, vocab_size, threads):
    spm.SentencePieceTrainer.train(
        input=input_path, model_prefix=prefix, model_type="bpe", vocab_size=vocab_size,
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=False, allow_whitespace_only_pieces=True, split_digits=True,
        split_by_whitespace=True, character_coverage=0.9999, max_sentence_length=MAX_SENTENCE,
        input_sentence_size=0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=threads,
        minloglevel=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="/tmp/lazyllm-corpus/corpus")
    ap.add_argument("--shards", nargs="*", help="shard files (default CORPUS/train-*.txt.xz)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--sample-mb", type=float, default=24.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    spm = spm_import.sentencepiece()
    shards = args.shards or sorted(glob.glob(os.path.join(args.corpus, "train-*.txt.xz")))
    if not shards:
        sys.exit(f"error: no train shards in {args.corpus} (run corpus.py first)")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.corpus)), "tokenizer")
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    lines, nbytes, ndocs = sample_lines(shards, int(args.sample_mb * 1e6))
    sample = os.path.join(out, "sample.txt")
    with open(sample, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    t_sample = time.time() - t0
    prefix = os.path.join(out, f"code-bpe-{args.vocab_size}")
    train(spm, sample, prefix, args.vocab_size, args.threads)
    t_train = time.time() - t0 - t_sample
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    gguf_bytes = gguf_vocab.export(sp, prefix + ".gguf")
    info = {"vocab_size": args.vocab_size, "sample_lines": len(lines), "sample_bytes": nbytes,
            "files_in_shards": ndocs, "shards": [os.path.basename(s) for s in shards],
            "shard_sha256": {os.path.basename(s): gguf_vocab_sha(s) for s in shards},
            "model_sha256": gguf_vocab_sha(prefix + ".model"), "gguf_bytes": gguf_bytes,
            "seconds_sample": round(t_sample, 1), "seconds_train": round(t_train, 1)}
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(info, f, indent=1)
    os.unlink(sample)
    print(json.dumps(info, indent=1))


def gguf_vocab_sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


if __name__ == "__main__":
    main()
