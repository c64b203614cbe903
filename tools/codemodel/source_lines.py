"""Source files as the task builder sees them: language, lines, per-line token counts, which
lines make a fair completion target, what a file imports and which names it defines."""
import os
import posixpath
import re

from filters import C_EXT, PY_EXT

SKIP_START = ("/*", "*", "\"\"\"", "'''", "\"", "'", "@")
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
C_WORDS = set("""auto break case char const continue default define do double else enum extern float for goto if
inline int long register restrict return short signed sizeof static struct switch typedef union unsigned void
volatile while bool true false NULL include ifdef ifndef endif undef elif pragma defined nullptr template
typename class public private protected namespace using virtual override noexcept constexpr operator""".split())
PY_WORDS = set("""False None True and as assert async await break class continue def del elif else except finally
for from global if import in is lambda nonlocal not or pass raise return try while with yield self cls super
print len str int dict list tuple set object isinstance range type""".split())


def language(rel):
    ext = os.path.splitext(rel)[1]
    if ext in PY_EXT:
        return "python"
    if ext in C_EXT or rel.startswith("usr/include/c++/"):
        return "c"
    return None


class SourceFile:
    def __init__(self, package, rel, text, tok):
        self.package, self.rel, self.text = package, rel, text
        self.lang = language(rel)
        self.lines = text.split("\n")[:-1]  # the text ends with "\n"
        self._tok = tok
        self._counts = None

    @property
    def counts(self):
        """Tokens of each line and its newline (no piece of our tokenizers spans a newline;
        the builder measures every finished prompt exactly anyway)."""
        if self._counts is None:
            self._counts = [len(self._tok.encode(l)) + 1 for l in self.lines]
        return self._counts

    def module(self):
        """Dotted module name of a Python file (dist-packages/site-packages/pythonX.Y relative)."""
        parts = self.rel.split("/")
        for anchor in ("dist-packages", "site-packages"):
            if anchor in parts:
                parts = parts[parts.index(anchor) + 1:]
                break
        else:
            if len(parts) > 3 and parts[1] == "lib" and parts[2].startswith("python"):
                parts = parts[3:]
        name = "/".join(parts)
        name = name.rsplit(".", 1)[0]
        if name.endswith("/__init__"):
            name = name[: -len("/__init__")]
        return name.replace("/", ".")

    def in_comment_mask(self):
        """Per line: inside a docstring / block comment (a cheap scan, not a parser)."""
        mask, inside = [], False
        for l in self.lines:
            s = l.strip()
            if self.lang == "python":
                n = s.count('"""') + s.count("'''")
                mask.append(inside or n > 0)
                if n % 2:
                    inside = not inside
            else:
                starts, ends = s.rfind("/*"), s.rfind("*/")
                mask.append(inside or starts >= 0)
                if starts > ends:
                    inside = True
                elif ends >= 0:
                    inside = False
        return mask

    def targets(self):
        """Indices of lines that make a fair completion target: real code with an identifier,
        8-160 characters, not a comment (LongBench's code_sim skips lines with '#', '//' or '`'),
        not inside a parenthesized import list, not a copy of the previous non-empty line."""
        mask = self.in_comment_mask()
        out, prev, in_import = [], "", False
        for j, l in enumerate(self.lines):
            s = l.strip()
            # the names of a parenthesized `from X import (...)` list are not targets
            was_import = in_import
            if self.lang == "python" and re.match(r"from\s+[.\w]+\s+import\s+\(", s) and ")" not in s:
                in_import = True
            elif in_import and ")" in s:
                in_import = False
            if s:
                if (not was_import and not mask[j] and 8 <= len(s) <= 160 and not s.startswith(SKIP_START)
                        and "#" not in l and "//" not in l and "`" not in l and NAME_RE.search(s) and s != prev):
                    out.append(j)
                prev = s
        return out

    def import_lines(self):
        """The lines, with parenthesized `from X import (a,\n b)` lists joined into one line."""
        if self.lang != "python":
            return self.lines
        joined = re.sub(r"(from\s+[.\w]+\s+import\s+)\(([^)]*)\)",
                        lambda m: m.group(1) + " ".join(re.sub(r"#[^\n]*", "", m.group(2)).split()), self.text)
        return joined.split("\n")

    def imports(self):
        """Module names (Python) or include paths (C) in the order the file names them."""
        out = []
        for l in self.import_lines():
            if self.lang == "python":
                m = re.match(r"\s*from\s+(\.*[\w.]*)\s+import\s+(.+)", l)
                if m:
                    base = m.group(1)
                    if base.startswith("."):
                        pkg = self.module().split(".")
                        if not self.rel.endswith("__init__.py"):
                            pkg = pkg[:-1]
                        dots = len(base) - len(base.lstrip("."))
                        pkg = pkg[: len(pkg) - (dots - 1)] if dots > 1 else pkg
                        base = ".".join(pkg + ([base.lstrip(".")] if base.lstrip(".") else []))
                    out.append(base)
                    for name in re.findall(r"\w+", m.group(2).split("#")[0]):
                        out.append(base + "." + name)  # `from pkg import module`
                    continue
                m = re.match(r"\s*import\s+([\w.]+)", l)
                if m:
                    out.append(m.group(1))
            else:
                m = re.match(r'\s*#\s*include\s*[<"]([^>"]+)[>"]', l)
                if m:
                    out.append(m.group(1))
        return out

    def definitions(self):
        """Names this file defines: functions, classes and top-level assignments (Python);
        macros, typedefs, prototypes and enum constants (C)."""
        names = set()
        for l in self.lines:
            if self.lang == "python":
                m = re.match(r"\s*(?:async\s+)?(?:def|class)\s+(\w+)", l) or re.match(r"([A-Za-z_]\w*)\s*(?::[^=]*)?=[^=]", l)
            else:
                m = (re.match(r"\s*#\s*define\s+(\w+)", l) or re.match(r".*\btypedef\b.*?(\w+)\s*;", l)
                     or re.match(r"(?:extern\s+)?[A-Za-z_][\w\s\*]*?\b([A-Za-z_]\w*)\s*\(", l)
                     or re.match(r"\s+([A-Z][A-Z0-9_]{3,})\s*(?:=[^=]|,)", l))
            if m and len(m.group(1)) >= 4 and m.group(1) not in C_WORDS and m.group(1) not in PY_WORDS:
                names.add(m.group(1))
        return names


def resolve_imports(target, by_module, by_path):
    """The package's files that target imports or includes, in the order it names them."""
    found, seen = [], {target.rel}
    for name in target.imports():
        if target.lang == "python":
            f = by_module.get(name)
        else:
            here = posixpath.normpath(posixpath.join(posixpath.dirname(target.rel), name))
            f = by_path.get(here) or next((g for p, g in by_path.items() if p.endswith("/" + name)), None)
        if f is not None and f.rel not in seen and f.lang == target.lang:
            seen.add(f.rel)
            found.append(f)
    return found
