"""The pickle gate: a pickle (or torch's zip of pickles) passes only if every global it names is one
that weights files legitimately use.

The allowlist is what `torch.load(weights_only=True)` accepts (OrderedDict, the tensor, parameter and
storage rebuild functions, storages, dtypes, layouts, numpy array reconstruction) plus the few
globals ComfyUI adds to it for old checkpoints (comfy/utils.py). Anything else, a scanner's
"suspicious" included, is refused: an allowlist cannot miss a new way to run code, a denylist can.
The walk uses `pickletools` and never unpickles. Globals pushed by STACK_GLOBAL are resolved from
the strings just before it; when they cannot be (built at load time), the file is refused.

As a program, run by a download script on the partial file before it is moved into place:
    python -S -c <this file> PATH
Exit 0: every global is allowed; 1: refused (the globals on stderr); 2: not a pickle or unreadable.
"""

from __future__ import annotations

import pickletools
import sys
import zipfile

# Annotations only (postponed): importing typing would cost every download script's gate ~3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_TORCH_UTILS = "torch._utils."
_REBUILDS = (
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_sparse_tensor",
    "_rebuild_meta_tensor_no_storage",
    "_rebuild_nested_tensor",
    "_rebuild_qtensor",
    "_rebuild_device_tensor_from_cpu_tensor",
    "_rebuild_device_tensor_from_numpy",
    "_rebuild_wrapper_subclass",
)
_BUILTINS = _words("set frozenset bytearray complex slice")
_STORAGES = _words(
    "Float Double Half BFloat16 Long Int Short Char Byte Bool ComplexFloat ComplexDouble QUInt8 "
    "QInt8 QInt32 QUInt4x2 QUInt2x4 Untyped"
)
_DTYPES = _words(
    "float32 float float64 double float16 half bfloat16 uint8 uint16 uint32 uint64 int8 int16 "
    "short int32 int int64 long bool complex32 complex64 cfloat complex128 cdouble quint8 qint8 "
    "qint32 quint4x2 quint2x4 float8_e4m3fn float8_e5m2 float8_e4m3fnuz float8_e5m2fnuz"
)
_TORCH_NAMES = _words(
    "Size Tensor device strided sparse_coo sparse_csr sparse_csc sparse_bsr sparse_bsc _mkldnn "
    "contiguous_format channels_last channels_last_3d preserve_format per_tensor_affine "
    "per_channel_affine per_tensor_symmetric per_channel_symmetric "
    "per_channel_affine_float_qparams"
)
_NUMPY_DTYPES = _words(
    "Float16 Float32 Float64 LongDouble Int8 Int16 Int32 Int64 UInt8 UInt16 UInt32 UInt64 Bool "
    "Complex64 Complex128 Byte UByte Short UShort Int UInt Long ULong LongLong ULongLong Str "
    "Bytes"
)

ALLOWED_GLOBALS: frozenset[str] = frozenset(
    {
        "collections.OrderedDict",
        "collections.Counter",
        # Protocol 2 names the builtins module __builtin__ (Python 2 spelling); pickle maps it back.
        *(f"{module}.{name}" for module in ("builtins", "__builtin__") for name in _BUILTINS),
        "_codecs.encode",  # how protocol 2 stores bytes under Python 3
        "torch.nn.parameter.Parameter",
        "torch.serialization._get_layout",
        "torch._tensor._rebuild_from_type_v2",
        *(_TORCH_UTILS + name for name in _REBUILDS),
        *(f"torch.{kind}Storage" for kind in _STORAGES),
        *(f"torch.cuda.{kind}Storage" for kind in _STORAGES),
        *(f"torch.{name}" for name in _DTYPES + _TORCH_NAMES),
        *(
            f"{module}.{name}"
            for module in ("numpy.core.multiarray", "numpy._core.multiarray")
            for name in ("_reconstruct", "scalar")
        ),
        "numpy.ndarray",
        "numpy.dtype",
        *(f"numpy.dtypes.{kind}DType" for kind in _NUMPY_DTYPES),
        # ComfyUI's own additions (comfy/utils.py): old SD checkpoints pickle a Lightning callback.
        "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    }
)
_STRING_OPS = frozenset(
    {"UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "STRING", "BINSTRING", "SHORT_BINSTRING"}
)
_NO_STACK_EFFECT = frozenset({"PROTO", "FRAME"})
# The legacy torch format is five pickles in a row (magic, protocol, sys info, the data, storage keys)
# followed by raw storage bytes; torch reads exactly these, so the walk does too.
LEGACY_PICKLES = 5


class Unreadable(Exception):
    """Not a pickle, or one the walk cannot follow."""


def _index(arg: object) -> int:
    if isinstance(arg, int):
        return arg
    if isinstance(arg, str) and arg.isdigit():
        return int(arg)
    raise Unreadable(f"a memo index that is not a number: {arg!r}")


def globals_in(stream: IO[bytes]) -> list[str]:
    """Every `module.name` one pickle imports, in order (`Unreadable` when one cannot be resolved)."""
    found: list[str] = []
    recent: list[object] = []  # the values on top of the stack, as far as strings are concerned
    memo: dict[int, object] = {}
    try:
        for op, arg, _ in pickletools.genops(stream):
            name = op.name
            if name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                found.append(f"{module}.{attr}")
                recent.append(None)
            elif name == "STACK_GLOBAL":
                if len(recent) < 2 or not isinstance(recent[-1], str) or not isinstance(recent[-2], str):
                    raise Unreadable("a STACK_GLOBAL whose module and name are built at load time")
                found.append(f"{recent[-2]}.{recent[-1]}")
                recent[-2:] = [None]
            elif name in _STRING_OPS:
                recent.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[_index(arg)] = recent[-1] if recent else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                recent.append(memo.get(_index(arg)))
            elif name in ("EXT1", "EXT2", "EXT4"):
                found.append(f"copyreg extension code {arg}")
                recent.append(None)
            elif name not in _NO_STACK_EFFECT:
                recent.append(None)  # anything else: the top of the stack is no longer a known string
    except (ValueError, EOFError, UnicodeDecodeError) as exc:
        raise Unreadable(f"the pickle cannot be parsed ({exc})") from exc
    return found


def _legacy_globals(fh: IO[bytes]) -> list[str]:
    found: list[str] = []
    for index in range(LEGACY_PICKLES):
        start = fh.tell()
        if fh.read(1) != b"\x80":
            if index == 0:
                raise Unreadable("the file is neither a pickle nor a zip of pickles")
            break
        fh.seek(start)
        found += globals_in(fh)
    return found


def _zip_globals(path: str) -> list[str]:
    found: list[str] = []
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [i for i in archive.infolist() if i.filename.endswith(".pkl")]
            if not pickles:
                raise Unreadable("the zip holds no pickle (not a torch checkpoint)")
            for info in pickles:
                with archive.open(info) as member:
                    found += globals_in(member)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as exc:
        raise Unreadable(f"the zip cannot be read ({exc})") from exc
    return found


def refused_globals(path: str) -> list[str]:
    """The globals of the file that are not on the allowlist, sorted (empty: it passes).

    `Unreadable` when the file is not a pickle or the walk cannot follow it; `OSError` as usual.
    """
    with open(path, "rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        found = _zip_globals(path) if magic == b"PK\x03\x04" else _legacy_globals(fh)
    return sorted({g for g in found if g not in ALLOWED_GLOBALS})


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("comfyfixer: usage: pickles PATH\n")
        return 2
    try:
        refused = refused_globals(argv[0])
    except Unreadable as exc:
        sys.stderr.write(f"comfyfixer: the pickle could not be checked: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"comfyfixer: cannot read the pickle: {exc}\n")
        return 2
    if refused:
        shown = ", ".join(refused[:8]) + (f" and {len(refused) - 8} more" if len(refused) > 8 else "")
        sys.stderr.write(f"comfyfixer: the pickle imports globals that weights files do not use: {shown}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
