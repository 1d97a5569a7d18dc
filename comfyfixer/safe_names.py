"""Untrusted names made safe: a model's name relative to its folder, and a script's file name.

A reference name comes from an untrusted workflow. It may carry sub-folders (kept) and Windows
back-slashes (turned into `/`), and it may contain quotes, `$(…)`, back-ticks or spaces (allowed:
every value is shell-quoted where it is used). It may not leave the models folder: `..`
components, absolute paths, drive letters, NUL and control characters are refused with a reason.
Where the name then goes is `layout.py`.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath

from comfyfixer.errors import UnsafePathError
from comfyfixer.models import base_name

# Most file systems limit one component to 255 bytes.
MAX_COMPONENT_BYTES = 255
MAX_NAME_CHARS = 1024
SCRIPT_NAME_MAX = 80

_DRIVE = re.compile(r"^[A-Za-z]:")
_UNSAFE_SCRIPT_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def has_control_chars(text: str) -> bool:
    """True for C0/C1 controls, DEL and the Unicode line/paragraph separators."""
    return any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)


def safe_relative_name(name: str) -> PurePosixPath:
    """The name as a relative POSIX path inside a model folder, or `UnsafePathError` saying why not."""
    if not name or not name.strip():
        raise UnsafePathError(name, "the name is empty")
    if len(name) > MAX_NAME_CHARS:
        raise UnsafePathError(name, f"the name is longer than {MAX_NAME_CHARS} characters")
    if "\x00" in name:
        raise UnsafePathError(name, "the name contains a NUL byte")
    if has_control_chars(name):
        raise UnsafePathError(name, "the name contains a control character or line break")
    text = name.replace("\\", "/")
    if _DRIVE.match(text):
        raise UnsafePathError(name, "the name starts with a drive letter")
    if text.startswith("/"):
        raise UnsafePathError(name, "the name is an absolute path")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts:
        raise UnsafePathError(name, "the name has no file component")
    for part in parts:
        if part == "..":
            raise UnsafePathError(name, "the name contains a '..' component")
        if len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
            raise UnsafePathError(name, f"a path component is longer than {MAX_COMPONENT_BYTES} bytes")
    if text.endswith("/"):
        raise UnsafePathError(name, "the name ends with a folder separator")
    return PurePosixPath(*parts)


def safe_file_component(name: str, *, max_len: int = SCRIPT_NAME_MAX) -> str:
    """The base name reduced to `[A-Za-z0-9._-]`, bounded in length, never empty or hidden."""
    cleaned = _UNSAFE_SCRIPT_CHARS.sub("_", base_name(name)).lstrip("._-")
    cleaned = cleaned[:max_len].rstrip("_") if len(cleaned) > max_len else cleaned
    return cleaned or "model"
