"""Value shapes: what a model file name looks like, what is a sentinel, and what text and notes carry.

Everything here is a pure function of strings; the graph walkers decide where to apply it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
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
# Enough trailing characters to hold the longest extension: the only part an extension test reads.
_TAIL = max(len(ext) for ext in _EXTENSIONS)
_ANNOTATION = re.compile(r"\s\[(?:input|output|temp)\]$")
_LORA_TAG = re.compile(r"<lora:([^:>]+)(?::[^>]*)?>", re.IGNORECASE)
_EMBEDDING = re.compile(r"embedding:([^\s,()\[\]{}<>:]+)", re.IGNORECASE)
_URL = re.compile(r"https?://[^\s<>\"'`)\]]+", re.IGNORECASE)
# Cheap tests before the lower-cased ones below, so long prompts are not lower-cased for nothing:
# each tag regex needs a literal `:` (and `<`, and a URL `://`), and every character that lower-cases
# to a letter of `embedding:` matches it case-insensitively here.
_TAG = re.compile(r"embedding:", re.IGNORECASE)


def is_sentinel(value: str) -> bool:
    return value.strip().lower() in SENTINELS


def looks_like_model(value: object) -> bool:
    """True for a single-line string naming a file with a model extension (not a URL, not a sentinel)."""
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
        return False
    # The extension test first: it rejects almost every value (prompts, sampler names) and only
    # lower-cases the tail, where the other tests read the whole string.
    stripped = value.rstrip()
    if not stripped[-_TAIL:].lower().endswith(_EXTENSIONS):
        return False
    if "\n" in value or "://" in value or _ANNOTATION.search(value):
        return False
    stem = stripped.lower().replace("\\", "/").rsplit("/", 1)[-1]
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
    return may_hold_reference(values, False, depth)


def may_hold_reference(values: object, text: bool, depth: int = 0) -> bool:
    """`may_hold_model(values)`, or with `text` also `may_hold_text_reference(values)`, in one pass.

    The graph walk asks this of every node, so it is written for speed: one loop, strings tested
    inline (only the tail is lower-cased: prompts can be long), recursion only into containers.
    """
    if isinstance(values, str):
        return _string_may_hold(values, text)
    if depth >= MAX_VALUE_DEPTH:
        return False
    if isinstance(values, dict):
        if text and "strength" in values:
            return True
        items: Iterable[object] = values.values()
    elif isinstance(values, list):
        items = values
    else:
        return False
    for item in items:
        if isinstance(item, str):
            if item[-_TAIL:].lower().endswith(_EXTENSIONS) or (
                text and ("embedding:" in item or ("ora:" in item and "<lora:" in item.lower()))
            ):
                return True
        elif isinstance(item, (list, dict)) and may_hold_reference(item, text, depth + 1):
            return True
    return False


def _string_may_hold(value: str, text: bool) -> bool:
    if value[-_TAIL:].lower().endswith(_EXTENSIONS):
        return True
    return text and ("embedding:" in value or ("ora:" in value and "<lora:" in value.lower()))


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


def iter_strings(value: object, depth: int = 0) -> list[str]:
    """Every string inside a widget value (lists and dict values), to a bounded depth.

    A list, not a generator: it is asked of every value of every node read, mostly numbers.
    """
    if isinstance(value, str):
        return [value]
    out: list[str] = []
    if isinstance(value, (list, dict)):
        _gather_strings(value, depth, out)
    return out


def _gather_strings(value: list[object] | dict[object, object], depth: int, out: list[str]) -> None:
    if depth >= MAX_VALUE_DEPTH:
        return
    for item in value.values() if isinstance(value, dict) else value:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, (list, dict)):
            _gather_strings(item, depth + 1, out)


def model_strings(value: object) -> list[str]:
    """The model-looking strings inside a widget value."""
    return [text for text in iter_strings(value) if looks_like_model(text)]


def lora_tags(text: str) -> list[str]:
    """Names inside `<lora:NAME:weight>` tags, in order (names usually lack an extension)."""
    if "<" not in text or ":" not in text or "<lora:" not in text.lower():
        return []
    return [m.strip() for m in _LORA_TAG.findall(text) if m.strip()]


def embedding_names(text: str) -> list[str]:
    """Names after `embedding:` in prompt text, without weights or brackets."""
    if ":" not in text or not _TAG.search(text) or "embedding:" not in text.lower():
        return []
    out = []
    for raw in _EMBEDDING.findall(text):
        name = raw.rstrip(".")
        if name:
            out.append(name)
    return out


def model_urls(text: str) -> list[tuple[str, str]]:
    """(url, file name) for every link in a text whose path ends in a model file name."""
    if "://" not in text or "http" not in text.lower():
        return []
    out = []
    for raw in _URL.findall(text):
        url = raw.rstrip(".,;:!*_")
        head = url.split("#", 1)[0].split("?", 1)[0].rstrip("/")
        tail = head[head.rfind("/") + 1 :]  # the file name urlsplit would give (or the host: no harm)
        if "%" not in tail and "[" not in url and not tail.lower().endswith(_EXTENSIONS):
            continue  # no model extension: skip urlsplit (a `[` host is left to it, which may reject it)
        try:
            path = urlsplit(url).path
        except ValueError:  # e.g. "http://[abc": not a URL anyone can download from
            continue
        file_name = unquote(path.rstrip("/").rsplit("/", 1)[-1])
        if looks_like_model(file_name):
            out.append((url, file_name))
    return out
