"""A small SentencePiece-style vocabulary for the synthetic tasks, and an encoder that matches
the engine's (src/tokenizer/tokenizer.cpp) token for token.

Pieces: <unk>, <s>, </s>, the 256 byte pieces <0xNN>, single characters, "▁0".."▁9", and every
prefix of "▁word" for each word of words.py (so pair merges can build each word), plus every
prefix of the few words that start a line ("\\n" is not "▁", so they need their own chain).
Scores make the "▁" chains win over the line-start chains, and a longer piece win over a shorter
one, so each word ends up as one token wherever it stands.
"""
import heapq

from words import LINE_START, all_words

SPACE = "\u2581"  # SentencePiece's word-start marker
UNK, BOS, EOS = 0, 1, 2
TYPE_NORMAL, TYPE_UNKNOWN, TYPE_CONTROL, TYPE_BYTE = 1, 2, 3, 6
SINGLE_CHARS = [SPACE, "\n"] + list("abcdefghijklmnopqrstuvwxyz0123456789") + list(".,:;?!'\"-=()/")


class Vocab:
    def __init__(self):
        self.tokens, self.scores, self.types = [], [], []
        self.index = {}

        def add(piece, score, kind):
            if piece in self.index:
                return
            self.index[piece] = len(self.tokens)
            self.tokens.append(piece)
            self.scores.append(float(score))
            self.types.append(kind)

        add("<unk>", 0.0, TYPE_UNKNOWN)
        add("<s>", 0.0, TYPE_CONTROL)
        add("</s>", 0.0, TYPE_CONTROL)
        for b in range(256):
            add("<0x%02X>" % b, 0.0, TYPE_BYTE)
        for c in SINGLE_CHARS:
            add(c, 0.0, TYPE_NORMAL)
        for d in "0123456789":
            add(SPACE + d, -1.0, TYPE_NORMAL)
        for w in all_words():
            for n in range(2, len(w) + 2):  # "▁w", "▁wo", ..., "▁word"
                add((SPACE + w)[:n], -100.0 + n, TYPE_NORMAL)
        for w in LINE_START:
            for n in range(2, len(w) + 1):
                add(w[:n], -1000.0 + n, TYPE_NORMAL)
        self.byte_ids = [self.index["<0x%02X>" % b] for b in range(256)]
        self.word_ids = [self.index[SPACE + w] for w in all_words()]
        self._segment_cache = {}

    def write_metadata(self, w):
        """The tokenizer.ggml.* keys the engine reads (w: a gguf_write.GGUFWriter)."""
        import gguf_write as G
        w.string("tokenizer.ggml.model", "llama")
        w.array("tokenizer.ggml.tokens", G.T_STRING, self.tokens)
        w.array("tokenizer.ggml.scores", G.T_FLOAT32, self.scores)
        w.array("tokenizer.ggml.token_type", G.T_INT32, self.types)
        w.u32("tokenizer.ggml.bos_token_id", BOS)
        w.u32("tokenizer.ggml.eos_token_id", EOS)
        w.u32("tokenizer.ggml.unknown_token_id", UNK)
        w.boolean("tokenizer.ggml.add_bos_token", True)
        w.boolean("tokenizer.ggml.add_eos_token", False)
        w.boolean("tokenizer.ggml.add_space_prefix", True)

    def __len__(self):
        return len(self.tokens)

    def _merge(self, s):
        """The engine's pair merge over one string (already with "▁" for spaces)."""
        syms = list(s)  # code points; the engine splits UTF-8 the same way
        n = len(syms)
        if n == 0:
            return []
        text = syms[:]  # current text of each symbol ("" once merged away)
        nxt = list(range(1, n)) + [-1]
        prv = list(range(-1, n - 1))
        heap = []

        def try_add(l, r):
            if l < 0 or r < 0:
                return
            piece = text[l] + text[r]
            i = self.index.get(piece)
            if i is not None:
                heapq.heappush(heap, (-self.scores[i], l, r, len(piece)))

        for i in range(1, n):
            try_add(i - 1, i)
        while heap:
            _, l, r, ln = heapq.heappop(heap)
            if not text[l] or not text[r] or len(text[l]) + len(text[r]) != ln:
                continue
            text[l] += text[r]
            text[r] = ""
            nxt[l] = nxt[r]
            if nxt[r] >= 0:
                prv[nxt[r]] = l
            try_add(prv[l], l)
            try_add(l, nxt[l])
        out, i = [], 0
        while i != -1:
            piece = text[i]
            if piece in self.index:
                out.append(self.index[piece])
            else:
                out.extend(self.byte_ids[b] for b in piece.encode("utf-8"))
            i = nxt[i]
        return out

    def encode(self, text, add_bos=True, space_prefix=True):
        """Token ids of text as the engine encodes it. No piece holds "▁" past its first
        character, so no merge crosses a "▁" and each "▁"-led segment is merged on its own
        (and cached): the result equals one merge over the whole text."""
        ids = [BOS] if add_bos else []
        if not text:
            return ids
        s = (SPACE if space_prefix else "") + text.replace(" ", SPACE)
        cache = self._segment_cache
        for k, seg in enumerate(s.split(SPACE)):
            if k > 0:
                seg = SPACE + seg
            if not seg:
                continue
            got = cache.get(seg)
            if got is None:
                got = self._merge(seg)
                if len(cache) < 2_000_000:
                    cache[seg] = got
            ids.extend(got)
        return ids

    def encode_exact(self, text, add_bos=True):
        """One merge over the whole text, as the engine does it (slow; for checking encode)."""
        ids = [BOS] if add_bos else []
        if text:
            ids.extend(self._merge(SPACE + text.replace(" ", SPACE)))
        return ids

    def decode(self, ids):
        out = []
        for i in ids:
            if self.types[i] == TYPE_BYTE:
                out.append(chr(int(self.tokens[i][3:5], 16)))
            elif self.types[i] in (TYPE_CONTROL, TYPE_UNKNOWN):
                continue
            else:
                out.append(self.tokens[i].replace(SPACE, " "))
        return "".join(out)
