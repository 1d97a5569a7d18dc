"""URL hygiene for links that come from workflows and catalogues.

Workflow links are hand-pasted: `.../blob/...` pages instead of `/resolve/` files, `?download=true`,
a `)` or `.` glued on from Markdown. This module cleans them, rewrites huggingface.co / civitai.com
to the configured endpoints when those are overridden (mirrors, tests), and tells what a link points
at: a Hub file, a Hub repo page, a Civitai download, a Civitai model page, or something else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from comfyfixer.checks.hosts import origin
from comfyfixer.config import Settings
from comfyfixer.models import Auth

HF_HOSTS = frozenset({"huggingface.co", "www.huggingface.co", "hf.co"})
CIVITAI_HOSTS = frozenset({"civitai.com", "www.civitai.com", "civitai.red"})
_TRAILING_JUNK = ".,;:!?'\"`>]}*"
_DROP_PARAMS = frozenset({"download"})
_HF_NON_REPO = frozenset({"api", "datasets", "spaces", "docs", "blog", "models", "organizations", "settings"})


def token_kind(url: str, settings: Settings) -> Auth | None:
    """Whose token a URL may be sent with, from its origin alone (the configured HF endpoint or Civitai
    URL, or their official https hosts), whatever source found it: catalogue, hint, resolver or agent.
    """
    where = origin(url)
    if where == origin(settings.hf_endpoint) or where in {("https", h, 443) for h in HF_HOSTS}:
        return "huggingface"
    if where == origin(settings.civitai_url) or where in {("https", h, 443) for h in CIVITAI_HOSTS}:
        return "civitai"
    return None


def _strip_trailing(url: str) -> str:
    while url:
        if url[-1] in _TRAILING_JUNK or (url[-1] == ")" and url.count("(") < url.count(")")):
            url = url[:-1]
        else:
            break
    return url


def clean_url(raw: str, settings: Settings | None = None) -> str | None:
    """A usable http(s) URL from a hand-written link, or None. Rewrites hub hosts when overridden."""
    url = raw.strip().strip("<>\"'` ")
    url = _strip_trailing(url)
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in _DROP_PARAMS
    ]
    cleaned = urlunsplit((parts.scheme.lower(), parts.netloc, parts.path, urlencode(query, doseq=True), ""))
    if settings is not None:
        cleaned = rewrite_endpoint(cleaned, settings)
        hub_path = _endpoint_path(cleaned, settings.hf_endpoint)
    else:
        hub_path = None
    if hub_path is None and parts.hostname.lower() in HF_HOSTS:
        hub_path = urlsplit(cleaned).path
    if hub_path is not None:
        segments = hub_path.split("/")
        # /{org}/{repo}/blob/{rev}/{file} is the page about a file; /resolve/ is the file itself.
        if len(segments) > 4 and segments[3] == "blob":
            segments[3] = "resolve"
            fixed = urlsplit(cleaned)
            prefix = fixed.path[: len(fixed.path) - len(hub_path)]
            cleaned = urlunsplit(fixed._replace(path=prefix + "/".join(segments)))
    return cleaned


def rewrite_endpoint(url: str, settings: Settings) -> str:
    """huggingface.co / civitai.com URLs pointed at the configured endpoints when they are overridden."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    base: str | None = None
    if settings.hf_endpoint_overridden and host in HF_HOSTS:
        base = settings.hf_endpoint
    elif settings.civitai_url_overridden and host in CIVITAI_HOSTS:
        base = settings.civitai_url
    if base is None:
        return url
    target = urlsplit(base.rstrip("/"))
    return urlunsplit((target.scheme, target.netloc, target.path + parts.path, parts.query, ""))


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """What a cleaned link points at."""

    kind: str  # hf_file | hf_repo | civitai_download | civitai_model | direct
    url: str
    repo: str | None = None
    revision: str | None = None
    path: str | None = None
    model_id: int | None = None
    version_id: int | None = None

    @property
    def file_name(self) -> str | None:
        """The file name the URL itself shows, when it shows one."""
        if self.kind == "hf_file" and self.path:
            return self.path.rsplit("/", 1)[-1]
        if self.kind == "direct":
            last = unquote(urlsplit(self.url).path).rsplit("/", 1)[-1]
            return last or None
        return None


def _endpoint_path(url: str, base: str) -> str | None:
    """The URL's path relative to `base` when they share scheme+host(+path prefix), else None."""
    u, b = urlsplit(url), urlsplit(base.rstrip("/"))
    if (u.hostname or "").lower() != (b.hostname or "").lower() or u.port != b.port:
        return None
    if not u.path.startswith(b.path):
        return None
    return u.path[len(b.path) :]


def classify(url: str, settings: Settings) -> LinkTarget:
    host = (urlsplit(url).hostname or "").lower()
    hf_path = _endpoint_path(url, settings.hf_endpoint)
    if hf_path is None and host in HF_HOSTS:
        hf_path = urlsplit(url).path
    if hf_path is not None:
        segs = [unquote(s) for s in hf_path.split("/") if s]
        if len(segs) >= 2 and segs[0] not in _HF_NON_REPO:
            repo = f"{segs[0]}/{segs[1]}"
            if len(segs) >= 5 and segs[2] == "resolve":
                return LinkTarget("hf_file", url, repo=repo, revision=segs[3], path="/".join(segs[4:]))
            if len(segs) == 2 or (len(segs) >= 3 and segs[2] == "tree"):
                return LinkTarget("hf_repo", url, repo=repo)
    cv_path = _endpoint_path(url, settings.civitai_url)
    if cv_path is None and host in CIVITAI_HOSTS:
        cv_path = urlsplit(url).path
    if cv_path is not None:
        download = re.match(r"^/api/download/models/(\d+)", cv_path)
        if download:
            return LinkTarget("civitai_download", url, version_id=int(download.group(1)))
        model = re.match(r"^/models/(\d+)", cv_path)
        if model:
            version = dict(parse_qsl(urlsplit(url).query)).get("modelVersionId", "")
            return LinkTarget(
                "civitai_model",
                url,
                model_id=int(model.group(1)),
                version_id=int(version) if version.isdigit() else None,
            )
    return LinkTarget("direct", url)


def hf_repo_of(url: str) -> str | None:
    """`org/repo` of a Hub resolve URL on any endpoint, or None."""
    segs = [s for s in urlsplit(url).path.split("/") if s]
    for i in range(len(segs) - 3):
        if segs[i + 2] == "resolve":
            return f"{unquote(segs[i])}/{unquote(segs[i + 1])}"
    return None


def hf_resolve_url(endpoint: str, repo_id: str, path: str, revision: str = "main") -> str:
    return f"{endpoint.rstrip('/')}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"
