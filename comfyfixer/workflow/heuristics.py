"""Value shapes: what a model file name looks like, what is a sentinel, and what text and notes carry.

Everything here is a pure function of strings; the graph walkers decide where to apply it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

from comfyfixer.folders import MODEL_EXTENSIONS

# Combo values that mean "no file" (§1.9 D, §8.12). Compared lower-cased.
SENTINELS = frozenset(
    {
        "",
        "none",
        "[none]",
        "baked vae",
        "(use same)",
        "choose",
        "disable loras",
        "default",
        "disabled",
        "pixel_space",
        "taesd",
        "taesdxl",
        "taesd3",
        "taef1",
        "esam",
        "auto",
        "automatic",
    }
)

MAX_NAME_LENGTH = 512
# How deep the value scan descends into nested widget values; real nodes nest two or three levels.
MAX_VALUE_DEPTH = 6

_EXTENSIONS = tuple(sorted(MODEL_EXTENSIONS))
_ANNOTATION = re.compile(r"\s\[(?:input|output|temp)\]$")
_LORA_TAG = re.compile(r"<lora:([^:>]+)(?::[^>]*)?>", re.IGNORECASE)
_EMBEDDING = re.compile(r"embedding:([^\s,()\[\]{}<>:]+)", re.IGNORECASE)
_URL = re.compile(r"https?://[^\s<>\"'`)\]]+", re.IGNORECASE)


def is_sentinel(value: str) -> bool:
    return value.strip().lower() in SENTINELS


def looks_like_model(value: object) -> bool:
    """True for a single-line string naming a file with a model extension (not a URL, not a sentinel)."""
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
        return False
    if "\n" in value or "://" in value or _ANNOTATION.search(value):
        return False
    lowered = value.rstrip().lower()
    if not lowered.endswith(_EXTENSIONS):
        return False
    stem = lowered.replace("\\", "/").rsplit("/", 1)[-1]
    return stem.rfind(".") > 0


def looks_like_dir_model(value: object) -> bool:
    """A plausible directory-type model name (diffusers folder, snapshot): one line, no spaces."""
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
        return False
    if "\n" in value or "://" in value or " " in value.strip() or is_sentinel(value):
        return False
    return not value.strip().startswith(("<", "{", "["))


def may_hold_model(values: object, depth: int = 0) -> bool:
    """Cheap pre-check: could any string in these widget values name a model file?

    Most nodes of a workflow hold only numbers and prompts; this keeps the full scan off them.
    """
    if isinstance(values, str):
        # Only the tail matters, and prompts can be long: lower-case the last 12 characters only.
        return values[-12:].lower().endswith(_EXTENSIONS)
    if depth >= MAX_VALUE_DEPTH:
        return False
    if isinstance(values, dict):
        values = values.values()
    elif not isinstance(values, list):
        return False
    for item in values:
        if isinstance(item, str):
            if item[-12:].lower().endswith(_EXTENSIONS):
                return True
        elif isinstance(item, (list, dict)) and may_hold_model(item, depth + 1):
            return True
    return False


def may_hold_text_reference(values: object, depth: int = 0) -> bool:
    """Cheap pre-check for the text pass: a prompt tag (`embedding:`, `<lora:`) or a Lora-Manager list."""
    if isinstance(values, str):
        return "embedding:" in values or ("ora:" in values and "<lora:" in values.lower())
    if depth >= MAX_VALUE_DEPTH:
        return False
    if isinstance(values, dict):
        if "strength" in values:
            return True
        values = values.values()
    elif not isinstance(values, list):
        return False
    return any(
        isinstance(item, (str, list, dict)) and may_hold_text_reference(item, depth + 1) for item in values
    )


def iter_strings(value: object, depth: int = 0) -> Iterator[str]:
    """Every string inside a widget value (lists and dict values), to a bounded depth."""
    if isinstance(value, str):
        yield value
    elif depth >= MAX_VALUE_DEPTH:
        return
    elif isinstance(value, list):
        for item in value:
            yield from iter_strings(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_strings(item, depth + 1)


def model_strings(value: object) -> Iterator[str]:
    """The model-looking strings inside a widget value."""
    for text in iter_strings(value):
        if looks_like_model(text):
            yield text


def lora_tags(text: str) -> list[str]:
    """Names inside `<lora:NAME:weight>` tags, in order (names usually lack an extension)."""
    if "<lora:" not in text.lower():
        return []
    return [m.strip() for m in _LORA_TAG.findall(text) if m.strip()]


def embedding_names(text: str) -> list[str]:
    """Names after `embedding:` in prompt text, without weights or brackets."""
    if "embedding:" not in text.lower():
        return []
    out = []
    for raw in _EMBEDDING.findall(text):
        name = raw.rstrip(".")
        if name:
            out.append(name)
    return out


def model_urls(text: str) -> list[tuple[str, str]]:
    """(url, file name) for every link in a text whose path ends in a model file name."""
    if "http" not in text.lower():
        return []
    out = []
    for raw in _URL.findall(text):
        url = raw.rstrip(".,;:!*_")
        path = urlsplit(url).path
        file_name = unquote(path.rstrip("/").rsplit("/", 1)[-1])
        if looks_like_model(file_name):
            out.append((url, file_name))
    return out
