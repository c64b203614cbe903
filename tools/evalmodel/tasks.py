"""Seeded generators of the six synthetic long-context task families.

Each generator takes a random.Random, a target prompt length in tokens and the Vocab, and
returns a sample: context, input (the question), answer, all_classes. The prompt the model sees
is "{context}\\n\\n{input}" (the eval harness's generic template) followed by " {answer}".
Every piece of text that the answer depends on (needle, target entry, fact, examples of the
asked class, counted events) ends at least TAIL_MARGIN tokens before the end of the context, so
a model that only sees the last 256 context tokens has nothing to go on.

The retrieval families put the answer right after a cue of at most three tokens that is unique
in the context ("passkey is", "amber cat:", "ada is a"), and answers are one word or digits
that do not repeat: the model is a few MB trained for minutes, and these are the copy circuits
it can learn in that time (tools/evalmodel/README.md, "Runs"). A pruned-away cue or answer
still costs the answer, which is what the evaluation measures.
"""
import random

import words as W

TAIL_MARGIN = 300  # tokens of context after the last answer-bearing unit (> the 256 cut)
QUESTION_END = "\nanswer:"


def filler_sentence(rng):
    c = rng.choice
    t = rng.randrange(8)
    if t == 0:
        return f"the {c(W.FILLER_ADJ)} {c(W.FILLER_NOUNS)} {c(W.FILLER_VERB_T)} the {c(W.FILLER_NOUNS)} {c(W.PREPOSITIONS)} the {c(W.FILLER_NOUNS)}."
    if t == 1:
        return f"{c(W.FILLER_ADV)}, the {c(W.PEOPLE_NOUNS)} {c(W.FILLER_VERB_I)} {c(W.PREPOSITIONS)} the {c(W.FILLER_ADJ)} {c(W.FILLER_NOUNS)}."
    if t == 2:
        return f"a {c(W.PEOPLE_NOUNS)} {c(W.FILLER_VERB_I)} while the {c(W.PEOPLE_NOUNS)} {c(W.FILLER_VERB_I)}."
    if t == 3:
        return f"there was a {c(W.FILLER_ADJ)} {c(W.FILLER_NOUNS)} {c(W.PREPOSITIONS)} the {c(W.FILLER_NOUNS)}."
    if t == 4:
        return f"the {c(W.PEOPLE_NOUNS)} {c(W.FILLER_VERB_T)} a {c(W.FILLER_ADJ)} {c(W.FILLER_NOUNS)} and then {c(W.FILLER_VERB_I)} {c(W.FILLER_ADV)}."
    if t == 5:
        return f"in the {c(W.FILLER_NOUNS)} the {c(W.FILLER_ADJ)} {c(W.PEOPLE_NOUNS)} {c(W.FILLER_VERB_I)} for a {c(W.FILLER_ADJ)} {c(W.FILLER_NOUNS)}."
    if t == 6:
        return f"it was {c(W.FILLER_ADJ)} and {c(W.FILLER_ADJ)} when the {c(W.PEOPLE_NOUNS)} {c(W.FILLER_VERB_I)}."
    return f"every {c(W.FILLER_NOUNS)} {c(W.PREPOSITIONS)} the {c(W.FILLER_NOUNS)} was {c(W.FILLER_ADJ)}."


class Units:
    """Context built from units (sentences, entries, documents) joined by a separator, with
    each unit's exact token count, so positions can be chosen in tokens."""

    def __init__(self, vocab, margin, sep=" "):
        self.vocab, self.sep, self.margin = vocab, sep, margin
        self.texts, self.counts = [], []
        self.sep_tokens = 0 if sep == " " else len(vocab.encode(sep, add_bos=False, space_prefix=False))

    def count(self, text):
        # The first unit starts the text ("▁" added); later ones follow the separator, and a
        # unit after a newline does not start with "▁".
        if not self.texts or self.sep == " ":
            return len(self.vocab.encode(text, add_bos=False))
        return self.sep_tokens + len(self.vocab.encode(text, add_bos=False, space_prefix=False))

    def append(self, text):
        self.counts.append(self.count(text))
        self.texts.append(text)

    def total(self):
        return sum(self.counts)

    def fill(self, budget, make):
        while True:
            text = make()  # None: nothing more to add
            if text is None:
                return
            n = self.count(text)
            if self.total() + n > budget:
                return
            self.texts.append(text)
            self.counts.append(n)

    def head_slots(self, reserve):
        """Indices i such that inserting before unit i leaves >= self.margin tokens after
        what is inserted (not counting `reserve` other units inserted later)."""
        after, slots = 0, []
        for i in range(len(self.texts) - 1, -1, -1):
            after += self.counts[i]
            if after >= self.margin + reserve:
                slots.append(i)
        return sorted(slots) or [0]

    def text(self):
        return self.sep.join(self.texts)


def question(q, cue=""):
    """The input: a question, then "answer:" and, for the retrieval families, the words that
    precede the answer in the context (a cloze cue, as in the original passkey test's
    "The pass key is"), so the answer continues a phrase the context contains."""
    return "question: " + q + QUESTION_END + (" " + cue if cue else "")


def context_budget(vocab, target_len, inp):
    # "{context}\n\n{input}": the input after two newlines does not start with "▁".
    return target_len - len(vocab.encode("\n\n" + inp, add_bos=False, space_prefix=False))


def insert_units(rng, units, items):
    """Inserts each item (text) before a random head slot; later items shift earlier ones
    only backwards in token terms, so every item keeps >= the margin of tokens after it."""
    for text in items:
        slots = units.head_slots(0)
        i = rng.choice(slots)
        units.texts.insert(i, text)
        units.counts.insert(i, units.count(text))


def passkey(rng, vocab, target_len, margin):
    # Five different digits: a repeated digit would make "the digit after this one" ambiguous
    # for the copy circuit a small model learns; the key space is still 27216 numbers.
    first = rng.choice("123456789")
    key = first + "".join(rng.sample([d for d in "0123456789" if d != first], 4))
    inp = question("what is the passkey?", "the passkey is")
    needle = f"the passkey is {key}. remember it. {key} is the passkey."
    u = Units(vocab, margin)
    u.fill(context_budget(vocab, target_len, inp) - u.count(needle), lambda: filler_sentence(rng))
    insert_units(rng, u, [needle])
    return dict(context=u.text(), input=inp, answer=key, all_classes=None)


def kv_retrieval(rng, vocab, target_len, margin):
    keys = [(a, b) for a in W.KV_ADJ for b in W.ANIMALS]
    rng.shuffle(keys)
    target = keys.pop()
    # Values are single words: a multi-token number shares its digits with hundreds of other
    # entries, which a 4 MB model cannot tell apart; the key (two words) must be matched.
    value = rng.choice(W.FILLER_NOUNS)
    inp = question(f"what is the value for {target[0]} {target[1]}?", f"{target[0]} {target[1]}:")
    u = Units(vocab, margin)
    u.append("here is a list of keys and values.")
    entry = lambda k, v: f"{k[0]} {k[1]}: {v}."
    target_text = entry(target, value)
    it = iter(keys)
    u.fill(context_budget(vocab, target_len, inp) - u.count(target_text),
           lambda: entry(next(it), rng.choice(W.FILLER_NOUNS)))
    insert_units(rng, u, [target_text])
    u.texts.insert(0, u.texts.pop(u.texts.index("here is a list of keys and values.")))
    return dict(context=u.text(), input=inp, answer=value, all_classes=None)


FACTS = [
    ("hide", lambda r: dict(name=None, obj=r.choice(W.OBJECTS), ans=r.choice(W.HIDING_PLACES)),
     lambda f: f"{f['name']} hid the {f['obj']} in the {f['ans']}.",
     lambda f: f"where did {f['name']} hide the {f['obj']}?",
     lambda f: f"{f['name']} hid the {f['obj']} in the"),
    ("move", lambda r: dict(name=None, ans=r.choice(W.CITIES)),
     lambda f: f"{f['name']} moved to {f['ans']}.",
     lambda f: f"which city did {f['name']} move to?",
     lambda f: f"{f['name']} moved to"),
    ("buy", lambda r: dict(name=None, obj=r.choice(W.OBJECTS), ans=r.choice(W.COLORS)),
     lambda f: f"the {f['obj']} that {f['name']} bought was {f['ans']}.",
     lambda f: f"what color was the {f['obj']} that {f['name']} bought?",
     lambda f: f"the {f['obj']} that {f['name']} bought was"),
    ("job", lambda r: dict(name=None, ans=r.choice(W.PROFESSIONS)),
     lambda f: f"{f['name']} is a {f['ans']}.",
     lambda f: f"what is the job of {f['name']}?",
     lambda f: f"{f['name']} is a"),
]


def singledoc_qa(rng, vocab, target_len, margin):
    names = rng.sample(W.NAMES, 5)
    facts = []
    for k, name in enumerate(names):
        kind = rng.choice(FACTS)
        f = kind[1](rng)
        f["name"] = name
        facts.append((kind, f))
    (kind, target) = facts[0]
    inp = question(kind[3](target), kind[4](target))
    fact_texts = [k[2](f) for k, f in facts]
    u = Units(vocab, margin)
    budget = context_budget(vocab, target_len, inp) - sum(u.count(t) for t in fact_texts)
    u.fill(budget, lambda: filler_sentence(rng))
    insert_units(rng, u, [fact_texts[0]])
    for t in fact_texts[1:]:  # distractors about other people, anywhere
        i = rng.randrange(len(u.texts) + 1)
        u.texts.insert(i, t)
        u.counts.insert(i, u.count(t))
    return dict(context=u.text(), input=inp, answer=target["ans"], all_classes=None)


ATTRS = [
    ("city", W.CITIES, lambda n, v: f"{n} lives in {v}.", lambda n: f"which city does {n} live in?",
     lambda n: f"{n} lives in"),
    ("job", W.PROFESSIONS, lambda n, v: f"{n} is a {v}.", lambda n: f"what is the job of {n}?",
     lambda n: f"{n} is a"),
    ("pet", W.ANIMALS, lambda n, v: f"{n} keeps a {v}.", lambda n: f"what pet does {n} have?",
     lambda n: f"{n} keeps a"),
    ("color", W.COLORS, lambda n, v: f"the favorite color of {n} is {v}.", lambda n: f"what is the favorite color of {n}?",
     lambda n: f"the favorite color of {n} is"),
]


def multidoc_qa(rng, vocab, target_len, margin):
    names = W.NAMES[:]
    rng.shuffle(names)
    attr = rng.choice(ATTRS)
    inp = question(attr[3](names[0]), attr[4](names[0]))

    def document(name):
        values = [rng.choice(a[1]) for a in ATTRS]
        sents = [a[2](name, v) for a, v in zip(ATTRS, values)]
        sents += [filler_sentence(rng) for _ in range(rng.randint(3, 7))]
        rng.shuffle(sents)
        return sents, values[ATTRS.index(attr)]

    target_sents, answer = document(names[0])
    u = Units(vocab, margin, sep="\n\n")
    others = iter(names[1:])
    reserve = u.count("document 99: " + " ".join(target_sents)) + 4
    u.fill(context_budget(vocab, target_len, inp) - reserve,
           lambda: (lambda n: n and "document 99: " + " ".join(document(n)[0]))(next(others, None)))
    # Place the target document, then number the documents in order.
    slots = u.head_slots(0)
    i = rng.choice(slots)
    u.texts.insert(i, "document 99: " + " ".join(target_sents))
    u.texts = [f"document {k + 1}:" + t[len("document 99:"):] for k, t in enumerate(u.texts)]
    u.counts = [u.count(t) for t in u.texts]
    return dict(context=u.text(), input=inp, answer=answer, all_classes=None)


def fewshot_cls(rng, vocab, target_len, margin):
    """Examples "text: <a sentence naming three things of one topic> label: <class>", one per
    line; labels are drawn per sample, so only the examples tell which label a topic has. The
    sentence ends on a topic word, and some example of the asked class ends on the same word
    as the query: a label is then found by a three-token cue ("<word> label:"), which the small
    model learns; examples of the asked class only stand before the last TAIL_MARGIN tokens."""
    n_classes = rng.randint(4, 8)
    topics = rng.sample(sorted(W.TOPICS), n_classes)
    labels = rng.sample(W.LABELS, n_classes)

    def example(k, last=None):
        frame = rng.choice(W.FEWSHOT_FRAMES).rstrip(".")
        slot = int(frame.rsplit("{", 1)[1][0])  # which word the sentence ends on
        ws = rng.sample([w for w in W.TOPICS[topics[k]] if w != last], 3)
        if last is not None:
            ws[slot] = last
        return "text: " + frame.format(*ws), ws[slot]

    def line(k, last=None):
        return example(k, last)[0] + " label: " + labels[k]

    q = rng.randrange(n_classes)
    query, q_last = example(q)
    inp = query + " label:"
    u = Units(vocab, margin, sep="\n")
    u.fill(context_budget(vocab, target_len, inp), lambda: line(rng.randrange(n_classes)))
    head = set(u.head_slots(0))
    others = [k for k in range(n_classes) if k != q]
    for i in range(len(u.texts)):
        if i not in head and u.texts[i].endswith("label: " + labels[q]):  # none of the asked class near the end
            u.texts[i] = line(rng.choice(others))
    # Two examples of the asked class in the head, one of them ending on the query's last word.
    for n, i in enumerate(rng.sample(sorted(head), min(len(head), 2))):
        u.texts[i] = line(q, q_last if n == 0 else None)
    u.counts = [u.count(t) for t in u.texts]
    return dict(context=u.text(), input=inp, answer=labels[q], all_classes=labels)


def count_events(rng, vocab, target_len, margin):
    events = rng.sample(W.EVENTS, rng.randint(2, 4))
    counts = [rng.randint(1, 5) for _ in events]
    inp = question(f"how many times does the text say that {events[0][1]}?")
    items = [e[0] + "." for e, n in zip(events, counts) for _ in range(n)]
    u = Units(vocab, margin)
    u.fill(context_budget(vocab, target_len, inp) - sum(u.count(t) for t in items), lambda: filler_sentence(rng))
    rng.shuffle(items)
    insert_units(rng, u, items)
    return dict(context=u.text(), input=inp, answer=str(counts[0]), all_classes=None)


FAMILIES = {
    "synth_multidoc_qa": multidoc_qa,
    "synth_singledoc_qa": singledoc_qa,
    "synth_passkey": passkey,
    "synth_kv_retrieval": kv_retrieval,
    "synth_fewshot_cls": fewshot_cls,
    "synth_count": count_events,
}


def prompt_text(sample):
    return sample["context"] + "\n\n" + sample["input"]


def make_sample(family, seed, vocab, target_len, margin=TAIL_MARGIN):
    """One sample of a family; seeded by (family, seed) alone. Training uses margin 0 (the
    evidence may stand anywhere); the eval sets keep TAIL_MARGIN."""
    rng = random.Random(f"{family}:{seed}")
    s = FAMILIES[family](rng, vocab, target_len, margin)
    s["dataset"] = family
    return s
