"""Small model-shaped byte strings for download and verification tests (built by hand, never loaded).

The malicious pickle is assembled from opcodes: it names `os.system` but nothing here ever
unpickles it, so building it runs nothing.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile


def safetensors(tensor_bytes: int = 64, *, metadata: dict[str, str] | None = None) -> bytes:
    """A valid safetensors file with one uint8 tensor of `tensor_bytes` bytes."""
    header: dict[str, object] = {
        "weight": {"dtype": "U8", "shape": [tensor_bytes], "data_offsets": [0, tensor_bytes]}
    }
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return (
        struct.pack("<Q", len(raw))
        + raw
        + bytes(range(256)) * (tensor_bytes // 256)
        + bytes(tensor_bytes % 256)
    )


def random_safetensors(tensor_bytes: int) -> bytes:
    """A valid safetensors file whose tensor bytes are random: a resume at a wrong offset shows."""
    valid = safetensors(tensor_bytes)
    return valid[: len(valid) - tensor_bytes] + os.urandom(tensor_bytes)


def gguf(extra: int = 64) -> bytes:
    """The start of a GGUF v3 file: magic, version, tensor and metadata counts, padding."""
    return b"GGUF" + struct.pack("<IQQ", 3, 0, 0) + bytes(extra)


def malicious_pickle() -> bytes:
    """Protocol 2: GLOBAL os.system, arg 'echo pwned', REDUCE, STOP."""
    arg = b"echo pwned"
    return (
        b"\x80\x02"
        + b"cos\nsystem\n"
        + b"X"
        + struct.pack("<I", len(arg))
        + arg
        + b"\x85"  # TUPLE1
        + b"R"  # REDUCE
        + b"."  # STOP
    )


def benign_torch_zip() -> bytes:
    """A zip laid out like `torch.save`: archive/data.pkl (a plain dict) and archive/version."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"state_dict": {"w": [1.0, 2.0]}}, protocol=2))
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def malicious_torch_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", malicious_pickle())
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()
