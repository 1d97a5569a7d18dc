"""Bytes to JSON documents: plain JSON text, or the `workflow`/`prompt` strings embedded in PNG and WebP.

Hand-rolled stdlib chunk readers (no Pillow) keep the scan fast and let a truncated or hostile image fail
with a one-line reason instead of an exception.
"""

from __future__ import annotations

import json
import logging
import struct
import zlib
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A workflow is a few MB at most; this bounds what a decompression bomb can cost.
MAX_TEXT_BYTES = 64 * 1024 * 1024
_EMBED_KEYS = ("workflow", "prompt")


class LoadError(ValueError):
    """The bytes hold no readable workflow; the message is the one-line reason."""


@dataclass(slots=True)
class Loaded:
    """What a file held: its container kind and the decoded documents under their keys."""

    container: str  # json | png | webp
    documents: dict[str, object] = field(default_factory=dict)  # "json" | "workflow" | "prompt" -> value


def decode_text(data: bytes) -> str:
    """Text of a JSON file: UTF-8 (BOM or not), UTF-16 with BOM, else Windows-1252 as a last resort."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise LoadError("file starts with a UTF-16 mark but is not valid UTF-16") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Files saved by Windows editors; cp1252 keeps accented names right where latin-1 would not.
        log.warning("workflow is not valid UTF-8; reading it as Windows-1252")
        return data.decode("cp1252", errors="replace")


def loads(text: str) -> object:
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise LoadError("JSON is nested too deeply to be a workflow") from exc
    except json.JSONDecodeError as exc:
        raise LoadError(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc


def load_bytes(data: bytes) -> Loaded:
    """Find the workflow documents in a file's bytes; raise LoadError with a one-line reason."""
    if not data or data.isspace():  # `not data.strip()` without copying the whole file
        raise LoadError("file is empty")
    if data.startswith(PNG_SIGNATURE):
        return _embedded("png", _png_texts(data))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _embedded("webp", _webp_texts(data))
    if b"\x00" in data[:1024] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise LoadError("binary file that is not a PNG or WebP image")
    return Loaded("json", {"json": loads(decode_text(data))})


def _embedded(container: str, texts: dict[str, str]) -> Loaded:
    found = {}
    for key in _EMBED_KEYS:
        text = texts.get(key)
        if text is None:
            continue
        try:
            found[key] = loads(text)
        except LoadError as exc:
            log.warning("%s %s chunk unreadable: %s", container, key, exc)
    if not found:
        if any(key in texts for key in _EMBED_KEYS):
            raise LoadError(f"{container.upper()} has workflow metadata but it is not valid JSON")
        raise LoadError(
            f"{container.upper()} image carries no ComfyUI workflow (no 'workflow' or 'prompt' text)"
        )
    return Loaded(container, found)


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_TEXT_BYTES)
    if inflater.unconsumed_tail:
        raise LoadError("compressed metadata is too large")
    return out


def _png_texts(data: bytes) -> dict[str, str]:
    """Keyword -> text of the tEXt, zTXt and iTXt chunks (keywords lower-cased)."""
    texts: dict[str, str] = {}
    pos = len(PNG_SIGNATURE)
    end = len(data)
    while pos + 8 <= end:
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if len(body) < length:
            break  # truncated file: keep what was read
        if kind == b"IEND":
            break
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        try:
            keyword, text = _png_text_chunk(kind, body)
        except (ValueError, zlib.error) as exc:
            log.warning("skipping unreadable PNG %s chunk: %s", kind.decode("ascii"), exc)
            continue
        texts.setdefault(keyword.lower(), text)
    return texts


def _png_text_chunk(kind: bytes, body: bytes) -> tuple[str, str]:
    keyword_raw, sep, rest = body.partition(b"\x00")
    if not sep:
        raise ValueError("no keyword separator")
    keyword = keyword_raw.decode("latin-1")
    if kind == b"tEXt":
        return keyword, _text(rest)
    if kind == b"zTXt":
        return keyword, _text(_inflate(rest[1:]))
    # iTXt: compression flag, method, language tag \0, translated keyword \0, UTF-8 text
    if len(rest) < 2:
        raise ValueError("iTXt chunk too short")
    compressed = rest[0] == 1
    _lang, _, rest2 = rest[2:].partition(b"\x00")
    _translated, _, payload = rest2.partition(b"\x00")
    if compressed:
        payload = _inflate(payload)
    return keyword, payload.decode("utf-8", errors="replace")


def _text(raw: bytes) -> str:
    # ComfyUI's JSON is ASCII-escaped; other writers put UTF-8 into tEXt despite the spec.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _webp_texts(data: bytes) -> dict[str, str]:
    """`key:value` strings from the IFD0 ASCII tags of the RIFF EXIF chunk (keys lower-cased)."""
    pos = 12
    end = min(len(data), 8 + struct.unpack("<I", data[4:8])[0])
    while pos + 8 <= end:
        kind = data[pos : pos + 4]
        size = struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size & 1)
        if kind == b"EXIF":
            return _exif_texts(body)
    return {}


def _exif_texts(body: bytes) -> dict[str, str]:
    if body.startswith(b"Exif\x00\x00"):
        body = body[6:]
    if body[:4] == b"II*\x00":
        order = "<"
    elif body[:4] == b"MM\x00*":
        order = ">"
    else:
        log.warning("WebP EXIF chunk has no TIFF header")
        return {}
    texts: dict[str, str] = {}
    try:
        ifd = struct.unpack(order + "I", body[4:8])[0]
        count = struct.unpack(order + "H", body[ifd : ifd + 2])[0]
        for i in range(count):
            entry = body[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
            if len(entry) < 12:
                break
            _tag, typ, n, value_or_offset = struct.unpack(order + "HHII", entry)
            if typ not in (2, 7):  # ASCII, UNDEFINED
                continue
            raw = entry[8 : 8 + n] if n <= 4 else body[value_or_offset : value_or_offset + n]
            text = _text(raw.rstrip(b"\x00"))
            key, sep, value = text.partition(":")
            if sep:
                texts.setdefault(key.strip().lower(), value)
    except struct.error as exc:
        log.warning("WebP EXIF chunk truncated: %s", exc)
    return texts
