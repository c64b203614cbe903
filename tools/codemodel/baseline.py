"""The copy-the-previous-line baseline: for every sample, the prediction is the last non-empty
line of the prompt, scored as `lazyllm eval` scores the dataset (code_sim: LongBench's
fuzz.ratio over difflib, which the engine's src/eval/code_sim.cpp reproduces; qa_f1 on the first
line for header_define_qa). A trained model must be well above it on the code sets.

Usage: python3 tools/codemodel/baseline.py TASK.jsonl [TASK.jsonl ...]   (prints one JSON line each)"""
import difflib
import json
import os
import re
import string
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import task_builders as B  # noqa: E402


def code_sim(prediction, truth):
    """LongBench's code_sim_score: the first line without '`', '#' or '//', fuzz.ratio / 100."""
    line = ""
    for l in prediction.lstrip("\n").split("\n"):
        if "`" not in l and "#" not in l and "//" not in l:
            line = l
            break
    return int(round(100 * difflib.SequenceMatcher(None, line, truth).ratio())) / 100


def normalize_answer(s):
    s = s.lower()
    s = "".join(c for c in s if c not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def qa_f1(prediction, truth):
    p, t = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = sum((Counter(p) & Counter(t)).values())
    if not common:
        return 0.0
    precision, recall = common / len(p), common / len(t)
    return 2 * precision * recall / (precision + recall)


def previous_line(prompt):
    lines = [l for l in prompt.split("\n") if l.strip()]
    return lines[-1] if lines else ""


def score_file(path):
    rows = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
    if any(r.get("dataset") not in B.TEMPLATES for r in rows):
        sys.exit(f"error: {path}: not a task set of make_tasks.py (datasets {', '.join(B.TEMPLATES)})")
    total = 0.0
    for r in rows:
        prompt = B.TEMPLATES[r["dataset"]].format(context=r["context"], input=r["input"])
        pred = previous_line(prompt)
        if B.CONFIG[r["dataset"]]["metric"] == "code_sim":
            total += max(code_sim(pred, a) for a in r["answers"])
        else:
            total += max(qa_f1(pred.split("\n")[0], a) for a in r["answers"])
    return {"file": os.path.basename(path), "samples": len(rows),
            "copy_previous_line": round(100 * total / max(len(rows), 1), 2)}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for p in sys.argv[1:]:
        print(json.dumps(score_file(p)))


if __name__ == "__main__":
    main()
