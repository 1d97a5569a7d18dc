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


# -- pickles built from opcodes: names that run code, and checkpoints laid out as torch writes them --


def _unicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def _call(module: str, name: str, *args: bytes, proto: int = 2) -> bytes:
    """`module.name(*args)` as pickle opcodes: GLOBAL (protocol 2) or STACK_GLOBAL (protocol 4)."""
    if proto >= 4:
        target = _unicode(module) + b"\x94" + _unicode(name) + b"\x94" + b"\x93"  # MEMOIZE, STACK_GLOBAL
    else:
        target = b"c" + module.encode() + b"\n" + name.encode() + b"\n"
    return target + b"(" + b"".join(args) + b"t" + b"R"  # MARK args TUPLE REDUCE


def _pickle(body: bytes, proto: int = 2) -> bytes:
    return b"\x80" + bytes([proto]) + body + b"."


def os_system_pickle(proto: int = 2) -> bytes:
    """`os.system("id")`: the textbook payload every scanner knows."""
    return _pickle(_call("os", "system", _unicode("id"), proto=proto), proto)


def fork_exec_pickle(proto: int = 2) -> bytes:
    """The only global is `_posixsubprocess.fork_exec`: picklescan rates it "Suspicious", not dangerous."""
    return _pickle(_call("_posixsubprocess", "fork_exec", _unicode("/bin/sh"), proto=proto), proto)


def exec_builtin_pickle(proto: int = 2) -> bytes:
    """`builtins.exec("import os; os.system('id')")`: a builtin, no module to import."""
    return _pickle(_call("builtins", "exec", _unicode("import os; os.system('id')"), proto=proto), proto)


def nested_reduce_pickle(proto: int = 2) -> bytes:
    """`getattr(__import__("os"), "system")("id")`: the callable is itself the result of a reduce."""
    module = _call("builtins", "__import__", _unicode("os"), proto=proto)
    system = b"c" + b"builtins\ngetattr\n" + b"(" + module + _unicode("system") + b"t" + b"R"
    return _pickle(system + b"(" + _unicode("id") + b"t" + b"R", proto)


def stack_global_from_a_reduce_pickle() -> bytes:
    """A STACK_GLOBAL whose module name is computed at load time (a reduce), not a constant string."""
    name = _call("builtins", "str", _unicode("os"), proto=4)
    return _pickle(name + _unicode("system") + b"\x93" + b"(" + _unicode("id") + b"t" + b"R", 4)


def torch_state_dict_pickle(proto: int = 2) -> bytes:
    """What `torch.save({"weight": tensor})` pickles: OrderedDict, _rebuild_tensor_v2 and a storage id."""
    storage = (
        b"("
        + _unicode("storage")
        + (
            _unicode("torch") + _unicode("FloatStorage") + b"\x93"
            if proto >= 4
            else b"ctorch\nFloatStorage\n"
        )
        + _unicode("0")
        + _unicode("cpu")
        + b"K\x04"
        + b"t"
        + b"Q"
    )  # persistent id tuple, BINPERSID
    tensor = _call(
        "torch._utils",
        "_rebuild_tensor_v2",
        storage,
        b"K\x00",  # storage offset
        b"K\x02K\x02\x86",  # size (2, 2)
        b"K\x02K\x01\x86",  # stride (2, 1)
        b"\x89",  # requires_grad False
        _call("collections", "OrderedDict", proto=proto),  # backward hooks
        proto=proto,
    )
    state = _call("collections", "OrderedDict", proto=proto)
    return _pickle(state + _unicode("weight") + tensor + b"s", proto)  # SETITEM


def torch_checkpoint(proto: int = 2) -> bytes:
    """A checkpoint laid out as `torch.save` writes it (zip: data.pkl, data/0, version, byteorder)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", torch_state_dict_pickle(proto))
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/data/0", struct.pack("<4f", 1.0, 2.0, 3.0, 4.0))
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def legacy_torch_checkpoint(payload: bytes | None = None) -> bytes:
    """The pre-1.6 torch format: magic, protocol, sys info, the data, storage keys, then raw bytes."""
    pickles = [
        pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2),
        pickle.dumps(1001, protocol=2),
        pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2),
        payload or torch_state_dict_pickle(),
        pickle.dumps(["0"], protocol=2),
    ]
    return b"".join(pickles) + struct.pack("<q", 4) + struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)


def bogus_safetensors() -> bytes:
    """A safetensors-looking file whose header length is 2^63."""
    return struct.pack("<Q", 1 << 63) + b'{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}' + bytes(64)
