"""Deterministic small model files: valid enough for format checks, a few KB each.

`model_bytes(filename, seed)` returns a safetensors file (8-byte header length + JSON header +
tensor bytes), a GGUF v3 file (magic, one metadata string), a torch-style zip with a harmless
`data.pkl`, or plain bytes for other extensions. The same (filename, seed) always gives the same
bytes; a different seed gives a different file of the same kind (look-alike decoys).
"""

from __future__ import annotations

import io
import json
import pickle
import random
import struct
import zipfile


def _rng(seed: str) -> random.Random:
    return random.Random(seed)  # str seeds are hashed with sha512: stable across runs and processes


def safetensors_bytes(seed: str, n_values: int) -> bytes:
    header = {
        "__metadata__": {"format": "pt", "fake_seed": seed[:48]},
        "weight": {"dtype": "F16", "shape": [n_values], "data_offsets": [0, 2 * n_values]},
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + _rng(seed).randbytes(2 * n_values)


def gguf_bytes(seed: str, n_bytes: int) -> bytes:
    key, value = b"general.name", seed[:48].encode()
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)  # version 3, 0 tensors, 1 metadata entry
    out += struct.pack("<Q", len(key)) + key + struct.pack("<I", 8) + struct.pack("<Q", len(value)) + value
    return out + _rng(seed).randbytes(n_bytes)


def torch_zip_bytes(seed: str, n_bytes: int) -> bytes:
    buf = io.BytesIO()
    stem = "archive"
    payload = pickle.dumps({"fake_seed": seed[:48], "values": list(range(8))}, protocol=2)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in (
            (f"{stem}/data.pkl", payload),
            (f"{stem}/version", b"3\n"),
            (f"{stem}/data/0", _rng(seed).randbytes(n_bytes)),
        ):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))  # fixed: deterministic bytes
            zf.writestr(info, data)
    return buf.getvalue()


def model_bytes(filename: str, seed: str) -> bytes:
    """A deterministic 1–6 KB file whose format matches the extension of `filename`."""
    size = 1024 + _rng("size:" + seed).randrange(5 * 1024)
    ext = filename.lower().rsplit(".", 1)[-1] if "." in filename else ""
    if ext in ("safetensors", "sft"):
        return safetensors_bytes(seed, size // 2)
    if ext == "gguf":
        return gguf_bytes(seed, size)
    if ext in ("pt", "pth", "ckpt", "bin", "pt2"):
        return torch_zip_bytes(seed, size)
    return _rng(seed).randbytes(size)
