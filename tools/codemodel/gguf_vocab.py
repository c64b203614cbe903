"""SentencePiece vocabularies as the engine reads them (tokenizer.ggml.model = llama).

- export(sp, path): a vocabulary-only GGUF of a trained SentencePiece model (tokens, scores,
  token types, unk/bos/eos ids, add_bos, add_space_prefix), written with
  tools/evalmodel/gguf_write.py, the keys tools/evalmodel/vocab.py writes and
  src/tokenizer/tokenizer.cpp reads.
- GgufVocab(path): reads those keys back from any GGUF and encodes text the way the engine's
  src/tokenizer/spm.cpp does (the pair merge of tools/evalmodel/vocab.py), so the task builder
  can count tokens with a GGUF when no SentencePiece model is at hand.
- load_tokenizer(path): a .model (SentencePiece) or a .gguf, behind one encode/decode API."""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "evalmodel"))
import gguf_write as G  # noqa: E402
from gguf_header import parse_header  # noqa: E402
from vocab import Vocab as _EvalVocab  # noqa: E402  (its pair merge is the engine's)

SPACE = "\u2581"
TYPE_NORMAL, TYPE_UNKNOWN, TYPE_CONTROL, TYPE_USER, TYPE_UNUSED, TYPE_BYTE = 1, 2, 3, 4, 5, 6


def _space_prefix(sp):
    """Whether the model adds a leading "▁" (SentencePiece's add_dummy_prefix)."""
    pieces = sp.EncodeAsPieces("x")
    return bool(pieces) and pieces[0].startswith(SPACE)


def vocab_arrays(sp):
    tokens, scores, types = [], [], []
    for i in range(sp.GetPieceSize()):
        tokens.append(sp.IdToPiece(i))
        scores.append(float(sp.GetScore(i)))
        if sp.IsUnknown(i):
            types.append(TYPE_UNKNOWN)
        elif sp.IsControl(i):
            types.append(TYPE_CONTROL)
        elif sp.IsUnused(i):
            types.append(TYPE_UNUSED)
        elif sp.IsByte(i):
            types.append(TYPE_BYTE)
        else:
            types.append(TYPE_NORMAL)
    return tokens, scores, types


def write_metadata(w, sp):
    tokens, scores, types = vocab_arrays(sp)
    for name, want in (("unk", sp.unk_id()), ("bos", sp.bos_id()), ("eos", sp.eos_id())):
        if want < 0:
            raise ValueError(f"the SentencePiece model has no {name} piece")
    w.string("tokenizer.ggml.model", "llama")
    w.array("tokenizer.ggml.tokens", G.T_STRING, tokens)
    w.array("tokenizer.ggml.scores", G.T_FLOAT32, scores)
    w.array("tokenizer.ggml.token_type", G.T_INT32, types)
    w.u32("tokenizer.ggml.bos_token_id", sp.bos_id())
    w.u32("tokenizer.ggml.eos_token_id", sp.eos_id())
    w.u32("tokenizer.ggml.unknown_token_id", sp.unk_id())
    w.boolean("tokenizer.ggml.add_bos_token", True)
    w.boolean("tokenizer.ggml.add_eos_token", False)
    w.boolean("tokenizer.ggml.add_space_prefix", _space_prefix(sp))


def export(sp, path):
    """Writes a vocabulary-only GGUF; returns its size in bytes."""
    w = G.GGUFWriter()
    w.string("general.name", "lazyllm code tokenizer")
    write_metadata(w, sp)
    return w.write(path)


def read_metadata(path):
    """The GGUF's key/value metadata (tensors are not read)."""
    with open(path, "rb") as f:
        return parse_header(f.read(), path)[0]


class GgufVocab:
    """The engine's SentencePiece encoder over a GGUF vocabulary."""

    _merge = _EvalVocab._merge  # uses self.index, self.scores, self.byte_ids

    def __init__(self, path):
        meta = read_metadata(path)
        if meta.get("tokenizer.ggml.model", "llama") != "llama":
            raise ValueError(f"{path}: tokenizer model {meta.get('tokenizer.ggml.model')!r} is not 'llama'")
        self.tokens = meta["tokenizer.ggml.tokens"]
        self.scores = meta.get("tokenizer.ggml.scores", [0.0] * len(self.tokens))
        self.types = meta.get("tokenizer.ggml.token_type", [TYPE_NORMAL] * len(self.tokens))
        self.space_prefix = meta.get("tokenizer.ggml.add_space_prefix", True)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        unk = meta.get("tokenizer.ggml.unknown_token_id", 0)
        self.byte_ids = [self.index.get("<0x%02X>" % b, unk) for b in range(256)]
        # Each piece is "▁"* then no "▁": no merge crosses a "▁" that follows another character,
        # so text splits there into segments that merge on their own (and are cached).
        shape = re.compile("^%s*[^%s]*$" % (SPACE, SPACE))
        self.segmentable = all(shape.match(t) for t, k in zip(self.tokens, self.types) if k == TYPE_NORMAL)
        self._cache = {}

    def encode(self, text):
        """Ids without BOS."""
        if not text:
            return []
        s = (SPACE if self.space_prefix else "") + text.replace(" ", SPACE)
        if not self.segmentable:
            return self._merge(s)
        ids = []
        for seg in re.findall("%s*[^%s]*" % (SPACE, SPACE), s):
            if not seg:
                continue
            got = self._cache.get(seg)
            if got is None:
                got = self._merge(seg)
                if len(self._cache) < 1_000_000:
                    self._cache[seg] = got
            ids.extend(got)
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            t = self.types[i]
            if t == TYPE_BYTE:
                out.append(int(self.tokens[i][3:5], 16))
            elif t not in (TYPE_CONTROL, TYPE_UNKNOWN):
                out += self.tokens[i].replace(SPACE, " ").encode("utf-8")
        text = out.decode("utf-8", errors="replace")
        return text[1:] if self.space_prefix and text.startswith(" ") else text


class SpmTokenizer:
    def __init__(self, path):
        import spm_import
        spm = spm_import.sentencepiece()
        self.sp = spm.SentencePieceProcessor(model_file=path)

    def encode(self, text):
        return self.sp.EncodeAsIds(text)

    def decode(self, ids):
        return self.sp.DecodeIds(ids)


def load_tokenizer(path):
    if path.endswith(".gguf"):
        return GgufVocab(path)
    return SpmTokenizer(path)
