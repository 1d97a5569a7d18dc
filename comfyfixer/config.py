"""Settings: everything the environment and the command line decide, read once at the CLI edge.

Nothing here is read at import time; `Settings.from_env(os.environ)` is called by the CLI and the
result is passed down, so tests build a `Settings` directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from comfyfixer.checks.hosts import HostRule
from comfyfixer.errors import SettingError

DEFAULT_HF_ENDPOINT = "https://huggingface.co"
DEFAULT_CIVITAI_URL = "https://civitai.com"
DEFAULT_CATALOG_URL = "https://raw.githubusercontent.com/Comfy-Org/ComfyUI-Manager/main/model-list.json"
# Hosts a download may come from without further configuration: the two hubs, their CDNs and
# GitHub release assets (ComfyUI-Manager's catalogue points at a few).
DEFAULT_ALLOWED_HOSTS = (
    "huggingface.co",
    "hf.co",
    "cdn-lfs.hf.co",
    "cdn-lfs-us-1.hf.co",
    "cdn-lfs-eu-1.hf.co",
    "cas-bridge.xethub.hf.co",
    "us.aws.cdn.hf.co",
    "civitai.com",
    "civitai.red",
    "github.com",
    "objects.githubusercontent.com",
    "release-assets.githubusercontent.com",
    "raw.githubusercontent.com",
)
# Download redirects land on signed storage URLs whose host varies (R2, B2, S3); they are
# accepted only as the target of a redirect from an allowed host, never as a starting URL.
DEFAULT_REDIRECT_HOST_SUFFIXES = (
    ".hf.co",
    ".huggingface.co",
    ".r2.cloudflarestorage.com",
    ".backblazeb2.com",
    ".amazonaws.com",
    ".civitai.com",
    ".githubusercontent.com",
)


TOKEN_VARIABLES = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "CIVITAI_API_TOKEN",
    "COMFYFIXER_LLM_API_KEY",
    "OPENAI_API_KEY",
)


def malformed_tokens(env: Mapping[str, str]) -> list[str]:
    """The token variables whose value holds a control character (a pasted newline or tab).

    Such a token cannot go into an HTTP header; the request fails with a library error that quotes it.
    Only the variable names are returned, never the values.
    """
    return [
        name
        for name in TOKEN_VARIABLES
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in env.get(name, "").strip())
    ]


def env_secrets(env: Mapping[str, str]) -> tuple[str, ...]:
    """Every token in the environment, as given and as it looks escaped (repr, JSON), for redaction."""
    out: list[str] = []
    for name in TOKEN_VARIABLES:
        value = env.get(name, "")
        for form in (value, value.strip(), repr(value)[1:-1], value.encode("unicode_escape").decode("ascii")):
            if len(form) >= 4 and form not in out:
                out.append(form)
        out.extend(part for part in value.split() if len(part) >= 8 and part not in out)
    return tuple(out)


def pickle_allowed(env: Mapping[str, str]) -> bool:
    """Whether the user lets a pickle file the scanner flagged be installed: `COMFYFIXER_ALLOW_PICKLE=1` only.

    The download scripts apply the same rule, so a file is never refused by one and installed by the other.
    """
    return env.get("COMFYFIXER_ALLOW_PICKLE", "").strip() == "1"


def _seconds(name: str, value: str | None, default: float) -> float:
    """A positive number of seconds from the environment; the default when unset.

    Anything else is refused rather than replaced by the default, so a typo never silently means ten minutes.
    """
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not math.isfinite(seconds) or seconds <= 0:
        raise SettingError(name, value, "a positive number of seconds")
    return seconds


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


@dataclass(frozen=True)
class Settings:
    comfyui_path: Path | None = None
    output_dir: Path = Path("output")
    log_dir: Path = Path("log")
    hf_endpoint: str = DEFAULT_HF_ENDPOINT
    hf_token: str | None = field(default=None, repr=False)
    civitai_url: str = DEFAULT_CIVITAI_URL
    civitai_token: str | None = field(default=None, repr=False)
    catalog_url: str | None = DEFAULT_CATALOG_URL
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = field(default=None, repr=False)
    # Seconds the LLM may spend on one model (all its requests and retries): minutes, because a model on
    # a CPU takes 15-40 s per answer. `COMFYFIXER_LLM_TIMEOUT`.
    llm_timeout: float = 600.0
    extra_allowed_hosts: tuple[str, ...] = ()
    hf_endpoint_overridden: bool = False
    civitai_url_overridden: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> Settings:
        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        hf_endpoint = get("HF_ENDPOINT")
        civitai = get("COMFYFIXER_CIVITAI_URL")
        catalog = get("COMFYFIXER_CATALOG_URL")
        comfy = get("COMFYUI_PATH")
        hosts = tuple(
            h.strip().lower() for h in (get("COMFYFIXER_ALLOW_HOSTS") or "").split(",") if h.strip()
        )
        settings = cls(
            comfyui_path=Path(comfy).expanduser() if comfy else None,
            hf_endpoint=(hf_endpoint or DEFAULT_HF_ENDPOINT).rstrip("/"),
            hf_token=get("HF_TOKEN") or get("HUGGING_FACE_HUB_TOKEN"),
            civitai_url=(civitai or DEFAULT_CIVITAI_URL).rstrip("/"),
            civitai_token=get("CIVITAI_API_TOKEN"),
            catalog_url=None if (catalog or "").lower() == "off" else (catalog or DEFAULT_CATALOG_URL),
            llm_base_url=get("COMFYFIXER_LLM_BASE_URL") or get("OPENAI_BASE_URL"),
            llm_model=get("COMFYFIXER_LLM_MODEL") or get("OPENAI_MODEL"),
            llm_api_key=get("COMFYFIXER_LLM_API_KEY") or get("OPENAI_API_KEY"),
            llm_timeout=_seconds("COMFYFIXER_LLM_TIMEOUT", get("COMFYFIXER_LLM_TIMEOUT"), 600.0),
            extra_allowed_hosts=hosts,
            hf_endpoint_overridden=hf_endpoint is not None,
            civitai_url_overridden=civitai is not None,
        )
        return replace(settings, **overrides) if overrides else settings  # type: ignore[arg-type]

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every token this run knows, for redaction of logs and messages."""
        return tuple(s for s in (self.hf_token, self.civitai_token, self.llm_api_key) if s)

    @property
    def allowed_hosts(self) -> frozenset[str]:
        """Hosts a download URL may start on: defaults, the configured endpoints, and the user's extras."""
        hosts = set(DEFAULT_ALLOWED_HOSTS) | set(self.extra_allowed_hosts)
        for url in (self.hf_endpoint, self.civitai_url, self.catalog_url or ""):
            if url:
                hosts.add(_host(url))
        hosts.discard("")
        return frozenset(hosts)

    @property
    def host_rule(self) -> HostRule:
        """The allowed-host rule, as data: the run's probe and every download script apply it."""
        return HostRule(self.allowed_hosts, self._configured_hosts, DEFAULT_REDIRECT_HOST_SUFFIXES)

    def host_allowed(self, url: str, *, redirect: bool = False) -> bool:
        """Whether a URL may be downloaded from; `redirect=True` also accepts signed storage hosts.

        Plain http only for hosts the user configured (local mirrors, tests); `checks.hosts` holds
        the rule, so a download script applies the very same one to every hop.
        """
        return self.host_rule.allows(url, redirect=redirect)

    @property
    def _configured_hosts(self) -> frozenset[str]:
        hosts = set(self.extra_allowed_hosts)
        if self.hf_endpoint_overridden:
            hosts.add(_host(self.hf_endpoint))
        if self.civitai_url_overridden:
            hosts.add(_host(self.civitai_url))
        if self.catalog_url and self.catalog_url != DEFAULT_CATALOG_URL:
            hosts.add(_host(self.catalog_url))
        return frozenset(hosts)
