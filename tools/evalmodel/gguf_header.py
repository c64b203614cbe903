"""Parses a GGUF v3 header: the key/value metadata and the tensor table (no tensor data).
Pure Python (struct), so tools without PyTorch can read a vocabulary."""
import struct

_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def parse_header(buf, name="GGUF"):
    """Returns (metadata dict, [(tensor name, dims, type, offset)], the data section's start)."""
    if buf[:4] != b"GGUF":
        raise ValueError(f"{name}: not a GGUF file")
    off = 8  # magic, version

    def take(fmt):
        nonlocal off
        v = struct.unpack_from("<" + fmt, buf, off)[0]
        off += struct.calcsize("<" + fmt)
        return v

    def string():
        nonlocal off
        n = take("Q")
        s = buf[off:off + n].decode("utf-8")
        off += n
        return s

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        if t not in _SCALAR:
            raise ValueError(f"{name}: unknown GGUF value type {t}")
        return take(_SCALAR[t])

    n_tensors, n_kv = take("Q"), take("Q")
    meta = {}
    for _ in range(n_kv):
        k = string()
        meta[k] = value(take("I"))
    infos = []
    for _ in range(n_tensors):
        tname = string()
        dims = [take("Q") for _ in range(take("I"))]
        infos.append((tname, dims, take("I"), take("Q")))
    align = meta.get("general.alignment", 32)
    return meta, infos, (off + align - 1) // align * align
