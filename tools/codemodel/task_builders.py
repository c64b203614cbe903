"""The three task families, built from the source files of one split (make_tasks.py drives them).
Each builder returns a sample dict (LongBench fields, `length` filled later) or None when the
drawn file/cut does not fit; the driver draws again.

- code_lcc (LongBench lcc): a window of one long file ending just before a target line; the
  answer is that line, indentation included (the model writes it after the newline).
- code_repobench (RepoBench-P, cross-file-first): files of the same package that the target
  imports/includes (then its directory's other files, as room allows) as context, then the
  target file cut before a line that uses a name defined in an imported/included file, not
  defined in the target, not used before the cut (import lines aside) and, in Python, reached
  through an import (imported by name, or qualified by an imported module's name). The file
  that defines the name always stands in the context (a window around the definition if the
  whole file does not fit).
- header_define_qa (retrieval): C headers of one package, with `#define NAME VALUE` (a number)
  at a depth of 5-75% of the context and defined once in it; the input repeats `#define NAME`
  after a comment asking for its value; the answer is VALUE (qa_f1, first line)."""
import re

from docformat import file_header

DEFINE_RE = re.compile(r"\s*#\s*define\s+([A-Za-z_][A-Za-z0-9_]{3,})[ \t]+\(?(-?(?:0[xX][0-9A-Fa-f]+|\d+)[uUlL]*)\)?\s*(?:/\*.*\*/)?\s*$")

TEMPLATES = {"code_lcc": "{context}{input}", "code_repobench": "{context}{input}",
             "header_define_qa": "{context}\n\n{input}"}
CONFIG = {"code_lcc": {"template": TEMPLATES["code_lcc"], "metric": "code_sim", "max_new_tokens": 64},
          "code_repobench": {"template": TEMPLATES["code_repobench"], "metric": "code_sim", "max_new_tokens": 64},
          "header_define_qa": {"template": TEMPLATES["header_define_qa"], "metric": "qa_f1", "max_new_tokens": 16,
                               "first_line_only": True}}


def window(f, end, budget):
    """First line of the longest run of whole lines ending before line `end` that fits `budget` tokens."""
    start, used = end, 0
    while start > 0 and used + f.counts[start - 1] <= budget:
        start -= 1
        used += f.counts[start]
    return start, used


def sample(dataset, context, inp, answer):
    return {"input": inp, "context": context, "answers": [answer], "all_classes": None,
            "length": 0, "dataset": dataset, "_id": ""}


def build_lcc(rng, f, target_tokens, min_tokens):
    before = [0]
    for c in f.counts:
        before.append(before[-1] + c)
    cuts = [j for j in f.targets() if before[j] >= min_tokens]
    if not cuts:
        return None
    full = [j for j in cuts if before[j] >= target_tokens]  # cuts whose window fills the target
    j = rng.choice(full or cuts)
    head = file_header(f"{f.package}/{f.rel}")
    start, _ = window(f, j, target_tokens - len(f._tok.encode(head)))
    ctx = head + "".join(l + "\n" for l in f.lines[start:j])
    s = sample("code_lcc", ctx, "", f.lines[j].rstrip())
    s["source"] = {"file": f"{f.package}/{f.rel}", "line": j}
    return s


def build_repobench(rng, f, package_files, by_module, by_path, target_tokens, min_tokens):
    from source_lines import resolve_imports
    imported = resolve_imports(f, by_module, by_path)
    same_dir = [g for g in package_files if g.rel != f.rel and g.lang == f.lang and g not in imported
                and g.rel.rsplit("/", 1)[0] == f.rel.rsplit("/", 1)[0]]
    others = imported + sorted(same_dir, key=lambda g: g.rel)
    if not others:
        return None
    own = f.definitions()
    defined = {}
    for g in imported:  # only what the file imports/includes counts as cross-file
        for n in g.definitions() - own:
            defined.setdefault(n, g)
    # a Python name counts where the file reaches it through an import: imported by name, or
    # qualified by an imported module's name (not any attribute that happens to match)
    reach = imported_names(f) if f.lang == "python" else set()
    import_line = re.compile(r"\s*(from\s|import\s|#\s*include)")
    used_before, cuts, targets = set(), [], set(f.targets())
    for j, l in enumerate(f.lines):
        names = set(re.findall(r"[A-Za-z_]\w*", l))
        if j in targets and not import_line.match(l):
            fresh = [n for n in names if n in defined and n not in used_before
                     and (f.lang != "python" or n in reach
                          or any(m in reach for m in re.findall(r"\b(\w+)\.%s\b" % n, l)))]
            if fresh:
                cuts.append((j, sorted(fresh)))
        if not import_line.match(l):
            used_before |= names
    cuts = [(j, n) for j, n in cuts if sum(f.counts[:j]) >= 32]
    if not cuts:
        return None
    j, names = rng.choice(cuts)
    name = rng.choice(names)
    source = defined[name]
    head = file_header(f"{f.package}/{f.rel}")
    in_budget = min(target_tokens // 2, sum(f.counts[:j]) + 1)
    start, in_used = window(f, j, in_budget)
    inp = head + "".join(l + "\n" for l in f.lines[start:j])
    budget = target_tokens - in_used - len(f._tok.encode(head))
    if budget < min_tokens // 4:
        return None
    parts, order = [], [source] + [g for g in others if g is not source]
    for g in order:
        gh = file_header(f"{g.package}/{g.rel}")
        cost = sum(g.counts) + len(f._tok.encode(gh))
        if cost <= budget:
            parts.append((g, gh + g.text))
            budget -= cost
        elif g is source:
            # the defining file does not fit: the window of it that ends after the definition
            d = next((k for k, l in enumerate(g.lines) if re.search(r"\b%s\b" % re.escape(name), l)), 0)
            end = min(len(g.lines), d + 1 + 8)
            s0, used = window(g, end, budget - len(f._tok.encode(gh)))
            if s0 > d:
                return None
            parts.append((g, gh + "".join(l + "\n" for l in g.lines[s0:end])))
            budget -= used + len(f._tok.encode(gh))
    # imported files first (as the target names them), the defining file among them
    rank = {id(g): k for k, g in enumerate(others)}
    parts.sort(key=lambda p: rank[id(p[0])])
    ctx = "".join(t for _, t in parts)
    s = sample("code_repobench", ctx, inp, f.lines[j].rstrip())
    s["source"] = {"file": f"{f.package}/{f.rel}", "line": j, "name": name,
                   "defined_in": f"{source.package}/{source.rel}",
                   "context_files": [f"{g.package}/{g.rel}" for g, _ in parts]}
    return s


def imported_names(f):
    """Names a Python file binds by `from X import a, b as c` (a, b) and module names it imports."""
    names = set()
    for l in f.import_lines():
        m = re.match(r"\s*from\s+\.*[\w.]*\s+import\s+([^#]+)", l)
        if m:
            for part in m.group(1).split(","):
                names.update(re.findall(r"^\s*(\w+)", part))
        m = re.match(r"\s*import\s+([\w.]+)", l)
        if m:
            names.add(m.group(1).split(".")[0])
    return names


def define_sites(files):
    """(file, line, NAME, VALUE) of every numeric #define whose NAME the package defines once."""
    seen, sites = {}, []
    for f in files:
        for j, l in enumerate(f.lines):
            m = re.match(r"\s*#\s*define\s+(\w+)", l)
            if m:
                seen[m.group(1)] = seen.get(m.group(1), 0) + 1
            d = DEFINE_RE.match(l)
            if d:
                sites.append((f, j, d.group(1), d.group(2)))
    return [s for s in sites if seen[s[2]] == 1]


def build_define_qa(rng, files, site, target_tokens, min_after):
    """files: the package's C headers in a fixed order; site: (file, line, NAME, VALUE)."""
    f, j, name, value = site
    seq = []  # (text, tokens) of every line of the package's headers, file headers included
    at = None
    for g in files:
        gh = file_header(f"{g.package}/{g.rel}")
        seq.append((gh, len(g._tok.encode(gh))))
        for k, l in enumerate(g.lines):
            if g is f and k == j:
                at = len(seq)
            seq.append((l + "\n", g.counts[k]))
    depth = rng.uniform(0.05, 0.75)
    before = int(target_tokens * depth)
    lo, used = at, 0
    while lo > 0 and used + seq[lo - 1][1] <= before:
        lo -= 1
        used += seq[lo][1]
    hi, total = at, used
    while hi < len(seq) and total + seq[hi][1] <= target_tokens:
        total += seq[hi][1]
        hi += 1
    # the definition stays out of the last min_after tokens (the cut-context variant loses it)
    if hi <= at or total < target_tokens * 0.8 or total - used - seq[at][1] < min_after:
        return None
    ctx = "".join(t for t, _ in seq[lo:hi])
    if len(re.findall(r"#\s*define\s+%s\b" % re.escape(name), ctx)) != 1 or re.search(r"#\s*undef\s+%s\b" % re.escape(name), ctx):
        return None
    inp = f"/* {name}, defined in the headers above, has the value: */\n#define {name}"
    s = sample("header_define_qa", ctx, inp, value)
    s["source"] = {"file": f"{f.package}/{f.rel}", "line": j, "name": name, "depth": round(depth, 3)}
    return s
