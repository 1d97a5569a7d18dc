"""Search queries derived from a model file name.

Hub search matches repo names, Civitai search matches model names; neither matches file names. So a
file name is cut into what a repo or model would be called: the stem, the stem without its
precision/quantisation suffixes, its leading tokens, and the model family it belongs to.
Queries only find places to look; acceptance is always an exact file-name match elsewhere.
"""

from __future__ import annotations

import re

from comfyfixer.models import base_name

# Suffix tokens that name a precision, a quantisation or a packaging detail, not a model.
_NOISE_TOKENS = frozenset(
    {
        "fp32", "fp16", "bf16", "fp8", "fp4", "nf4", "int8", "int4", "mxfp8", "nvfp4", "fp8mixed",
        "e4m3fn", "e5m2", "e4m3", "scaled", "mixed", "input", "pruned", "ema", "noema", "emaonly",
        "full", "safetensors", "gguf", "comfy", "comfyui", "repackaged", "split", "only", "model",
        "q2", "q3", "q4", "q5", "q6", "q8", "k", "s", "m", "l", "0", "1", "v", "k_m", "k_s",
    }
)  # fmt: skip
_QUANT = re.compile(r"(?i)^(?:i?q\d(?:_[a-z0-9]+)*|f16|f32|bf16|v\d+(?:\.\d+)*|\d+steps?)$")
_SPLIT = re.compile(r"[-_\s]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z][a-z])|(?<=[a-z])(?=[A-Z])")
# wan2.1 -> wan, flux1 -> flux (but not umt5 -> umt: too short to name a family)
_VERSION_JOIN = re.compile(r"(?i)^([a-z]{4,}|[a-z]{3}(?=\d+\.))(\d+(?:\.\d+)*)$")

# Families whose files live in repos named differently from the file (wan2.1_vae -> "Wan_2.1").
_FAMILIES: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"(?i)wan[_-]?2[._]2"), ("Wan_2.2", "Wan2.2")),
    (re.compile(r"(?i)wan[_-]?2[._]1|wan21"), ("Wan_2.1", "Wan2.1")),
    (re.compile(r"(?i)umt5"), ("Wan_2.1",)),
    (re.compile(r"(?i)hunyuan[_-]?video[_-]?1\.5"), ("HunyuanVideo_1.5",)),
    (re.compile(r"(?i)hunyuan[_-]?video|llava_llama3"), ("HunyuanVideo",)),
    (re.compile(r"(?i)hunyuan3d"), ("hunyuan3D",)),
    (re.compile(r"(?i)qwen[_-]?image[_-]?edit"), ("Qwen-Image-Edit",)),
    (re.compile(r"(?i)qwen[_-]?image|qwen_2\.5_vl"), ("Qwen-Image",)),
    (re.compile(r"(?i)z[_-]?image"), ("z_image",)),
    (re.compile(r"(?i)hidream"), ("HiDream",)),
    (re.compile(r"(?i)lumina"), ("Lumina",)),
    (re.compile(r"(?i)ltx[_-]?2\.3|ltx23"), ("LTX-2.3",)),
    (re.compile(r"(?i)ltx[_-]?2"), ("LTX-2",)),
    (re.compile(r"(?i)ltx"), ("LTX-Video",)),
    (re.compile(r"(?i)flux[_-]?2|flux2"), ("flux2",)),
    (re.compile(r"(?i)flux|t5xxl|clip_l\b|clip_l\."), ("flux",)),
    (re.compile(r"(?i)sd3\.5|sd35"), ("stable-diffusion-3.5",)),
    (re.compile(r"(?i)sdxl"), ("stable-diffusion-xl",)),
    (re.compile(r"(?i)ace[_-]?step"), ("ace_step",)),
    (re.compile(r"(?i)stable[_-]?audio"), ("stable-audio",)),
    (re.compile(r"(?i)esrgan"), ("ESRGAN",)),
)


def stem(file_name: str) -> str:
    name = base_name(file_name)
    dot = name.rfind(".")
    return name[:dot] if dot > 0 else name


def _is_noise(token: str) -> bool:
    t = token.lower()
    return t in _NOISE_TOKENS or bool(_QUANT.match(t))


def core_tokens(file_name: str) -> list[str]:
    """The stem's tokens with precision/quantisation tokens removed from the end."""
    tokens = [t for t in _SPLIT.split(stem(file_name)) if t]
    while len(tokens) > 1 and _is_noise(tokens[-1]):
        tokens.pop()
    return tokens


def core_stem(file_name: str) -> str:
    """The stem cut before its trailing precision/quantisation tokens, separators kept as written."""
    raw = stem(file_name)
    keep = len(core_tokens(file_name))
    pieces = re.split(r"([-_\s]+)", raw)  # token, separator, token, ...
    out: list[str] = []
    seen = 0
    for piece in pieces:
        if not piece:
            continue
        if _SPLIT.fullmatch(piece):
            if seen >= keep:
                break
            out.append(piece)
        else:
            if seen >= keep:
                break
            out.append(piece)
            seen += 1
    return "".join(out).strip("-_ ")


def _words(text: str) -> list[str]:
    spaced = _CAMEL.sub(" ", text)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


def civitai_queries(file_name: str, *, limit: int = 3) -> list[str]:
    """Civitai searches model names word by word: `realisticVision_v60` -> "realistic vision v60"."""
    raw = stem(file_name)
    candidates = [
        " ".join(_words(raw)),
        " ".join(_words(core_stem(file_name))),
        " ".join(_words(raw.split("_", 1)[0])),
    ]
    seen: set[str] = set()
    out: list[str] = []
    for query in candidates:
        query = query.strip().lower()
        if len(query) < 3 or query in seen:
            continue
        seen.add(query)
        out.append(query)
    return out[:limit]


def family_queries(file_name: str) -> list[str]:
    """Repo-name fragments for the model families the file name mentions."""
    out: list[str] = []
    for pattern, names in _FAMILIES:
        if pattern.search(file_name):
            out.extend(n for n in names if n not in out)
    return out


# Words too common to single out a repo when searched alone (they match thousands of repo names).
_COMMON_WORDS = frozenset(
    {
        "base", "lite", "large", "small", "tiny", "turbo", "high", "low", "noise", "lora", "loras",
        "control", "image", "video", "text", "encoder", "diffusion", "pytorch", "dev", "schnell",
        "step", "steps", "distill", "distilled", "instruct", "upscale", "upscaler", "detail", "style",
        "realistic", "anime", "edit", "inpaint", "inpainting", "depth", "canny", "pose", "face", "english",
    }
)  # fmt: skip
_ALPHA_RUN = re.compile(r"[A-Za-z]+")
# Names ComfyUI workflows share across unrelated models: the name alone says nothing about which file.
GENERIC_STEMS = frozenset(
    {
        "ae", "vae", "model", "diffusion_pytorch_model", "pytorch_model", "adapter_model", "clip_l",
        "clip_g", "clip", "t5xxl", "unet", "lora", "text_encoder", "image_encoder", "ip-adapter",
        "ip_adapter", "controlnet", "pytorch_lora_weights", "model_index", "encoder", "decoder",
    }
)  # fmt: skip


def is_generic(file_name: str) -> bool:
    """A name many publishers use for different files (`ae.safetensors`, `model.safetensors`)."""
    s = stem(file_name).lower()
    return s in GENERIC_STEMS or len(s) <= 2


def distinctive_tokens(file_name: str) -> list[str]:
    """Words of the stem that could name a repo on their own: `4x_NMKD-Siax_200k` -> NMKD, Siax."""
    out: list[str] = []
    for token in core_tokens(file_name):
        for word in _ALPHA_RUN.findall(token):
            low = word.lower()
            if len(word) >= 4 and not _is_noise(low) and low not in _COMMON_WORDS and word not in out:
                out.append(word)
    return out


def derive_queries(file_name: str, *, limit: int = 8) -> list[str]:
    """Search queries for a file name, most specific first, without duplicates (case-insensitive).

    Hub search matches repo ids by substring, so the core stem is also tried with its separators
    swapped (`qwen_image_layered_control` finds `Qwen-Image-Layered-Control`), and every distinctive
    word is tried alone (`4x_NMKD-Siax_200k` finds repos named after `nmkd` or `siax`).
    """
    raw_stem = stem(file_name)
    tokens = core_tokens(file_name)
    core = core_stem(file_name)
    candidates: list[str] = [raw_stem, core]
    swapped = core.translate(str.maketrans("_-", "-_"))
    if swapped != core:
        candidates.append(swapped)
    if len(tokens) > 2:
        separator = "-" if "-" in raw_stem and "_" not in raw_stem else "_"
        candidates.append(separator.join(tokens[:2]))
    candidates.extend(family_queries(file_name))
    if tokens:
        first = tokens[0]
        versioned = _VERSION_JOIN.match(first)
        if versioned:
            candidates.append(versioned.group(1))
        if len(first) >= 3 and not _is_noise(first):
            candidates.append(first)
    candidates.extend(distinctive_tokens(file_name))
    seen: set[str] = set()
    out: list[str] = []
    for query in candidates:
        query = query.strip(" ._-")
        if len(query) < 3 or query.lower() in seen:
            continue
        seen.add(query.lower())
        out.append(query)
    return out[:limit]


def context_queries(context: list[str], *, limit: int = 3) -> list[str]:
    """Queries from the other models a workflow loads: their families, then their distinctive words."""
    counts: dict[str, int] = {}
    spelling: dict[str, str] = {}
    for name in context:
        for query in dict.fromkeys((*family_queries(name), *distinctive_tokens(name)[:1])):
            counts[query.lower()] = counts.get(query.lower(), 0) + 1
            spelling.setdefault(query.lower(), query)
    # What most of the workflow's models share names its family best (`anima` in anima-base, anima-lllite).
    ranked = sorted(counts, key=lambda q: -counts[q])
    return [spelling[q] for q in ranked[:limit]]


def context_relevance(context: list[str], repo_id: str) -> int:
    """How strongly the workflow's other models point at a repo (`flux1-dev` -> black-forest-labs/FLUX.1-dev).

    Dots are ignored on both sides so `flux1` meets `FLUX.1`."""
    repo = repo_id.replace(".", "")
    return sum(relevance(stem(name).replace(".", "") + ".x", repo) for name in context)


def relevance(file_name: str, repo_id: str) -> int:
    """How many of the file's core tokens (and family names) appear in a repo id: orders repo sweeps."""
    repo = repo_id.lower().replace("-", "_").replace(" ", "_")
    score = 0
    for token in core_tokens(file_name):
        t = token.lower()
        if len(t) >= 3 and not _is_noise(t) and t.replace("-", "_") in repo:
            score += 1
    for family in family_queries(file_name):
        if family.lower().replace("-", "_") in repo:
            score += 2
    return score
