"""A minimal GGUF v3 writer: typed metadata and F32/F16 tensors, 32-byte aligned, the layout
src/format/gguf_writer.h describes. Pure Python (struct), tensors passed as raw bytes."""
import struct

ALIGN = 32
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
DTYPE_F32, DTYPE_F16 = 0, 1
_ELEM_FMT = {T_UINT32: "<I", T_INT32: "<i", T_FLOAT32: "<f", T_BOOL: "<?"}


def _str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


class GGUFWriter:
    def __init__(self):
        self.kv = [("general.alignment", struct.pack("<I", T_UINT32) + struct.pack("<I", ALIGN))]
        self.tensors = []  # (name, dims, dtype, bytes)

    def _add(self, key, payload):
        self.kv.append((key, payload))

    def u32(self, key, v):
        self._add(key, struct.pack("<II", T_UINT32, v))

    def f32(self, key, v):
        self._add(key, struct.pack("<If", T_FLOAT32, v))

    def boolean(self, key, v):
        self._add(key, struct.pack("<I?", T_BOOL, v))

    def string(self, key, v):
        self._add(key, struct.pack("<I", T_STRING) + _str(v))

    def array(self, key, elem_type, values):
        body = struct.pack("<IIQ", T_ARRAY, elem_type, len(values))
        if elem_type == T_STRING:
            body += b"".join(_str(v) for v in values)
        else:
            body += b"".join(struct.pack(_ELEM_FMT[elem_type], v) for v in values)
        self._add(key, body)

    def tensor(self, name, dims, dtype, data):
        """dims[0] is the row length (ggml order); data holds the encoded elements."""
        n = 1
        for d in dims:
            n *= d
        if len(data) != n * (4 if dtype == DTYPE_F32 else 2):
            raise ValueError(f"{name}: {len(data)} bytes do not fit dims {dims}")
        self.tensors.append((name, list(dims), dtype, data))

    def write(self, path):
        out = bytearray(b"GGUF")
        out += struct.pack("<IQQ", 3, len(self.tensors), len(self.kv))
        for key, payload in self.kv:
            out += _str(key) + payload
        offset = 0
        for name, dims, dtype, data in self.tensors:
            out += _str(name) + struct.pack("<I", len(dims))
            out += b"".join(struct.pack("<Q", d) for d in dims)
            out += struct.pack("<IQ", dtype, offset)
            offset += (len(data) + ALIGN - 1) // ALIGN * ALIGN
        out += b"\0" * (-len(out) % ALIGN)
        for _, _, _, data in self.tensors:
            out += data
            out += b"\0" * (-len(data) % ALIGN)
        with open(path + ".tmp", "wb") as f:
            f.write(out)
        import os
        os.replace(path + ".tmp", path)
        return len(out)
