"""The corpus shard format, shared by the writer (corpus.py) and the readers (tokenizer
training, task builder, the training script).

A shard is UTF-8 text: for each file, a header line `<|file|> PACKAGE/PATH`, the file's
normalized text (ending in a newline), then a line `<|endoftext|>`. Files of one package are
adjacent and sorted by path, so files of a directory follow each other and a model trained on
the shards sees cross-file context. The training script maps `<|endoftext|>` to the EOS token;
the header stays text, so the task sets can name files the same way (`<|file|> path`)."""
import lzma

FILE_MARK = "<|file|>"
END_MARK = "<|endoftext|>"


def render(package, path, text):
    return f"{FILE_MARK} {package}/{path}\n{text}{END_MARK}\n"


def file_header(path):
    """The header line a task prompt puts before a file of its cross-file context."""
    return f"{FILE_MARK} {path}\n"


def open_text(path):
    return lzma.open(path, "rt", encoding="utf-8") if path.endswith(".xz") else open(path, encoding="utf-8")


def read_docs(path):
    """Yields (package, path, text) for every file of a shard (.txt or .txt.xz)."""
    with open_text(path) as f:
        data = f.read()
    for chunk in data.split(END_MARK + "\n"):
        if not chunk:
            continue
        head, sep, text = chunk.partition("\n")
        if not sep or not head.startswith(FILE_MARK + " ") or "/" not in head:
            raise ValueError(f"{path}: malformed document header {head[:80]!r}")
        package, _, rel = head[len(FILE_MARK) + 1:].partition("/")
        yield package, rel, text
