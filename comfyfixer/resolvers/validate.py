"""Candidate validation: prove a URL serves a real file before any script is written for it.

A candidate passes when its URL is on an allowed host, every redirect hop lands on an allowed
host, and the last hop answers 2xx with a size and a type that is not HTML/JSON. Hugging Face
resolve URLs are probed with HEAD (the 302 also carries the size and sha256); Civitai download URLs
with a one-byte ranged GET, because a HEAD there counts as a download. Gated or login-only files
fail with `auth_required` and a message naming what the user must do.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from comfyfixer.config import Settings
from comfyfixer.errors import SourceError, redact
from comfyfixer.http import RETRY_STATUSES, HttpSession, error_message
from comfyfixer.models import Candidate
from comfyfixer.resolvers.urls import hf_repo_of, token_kind

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CD_FILENAME_STAR = re.compile(r"(?i)filename\*\s*=\s*(?:UTF-8|utf-8)?''([^;]+)")
_CD_FILENAME = re.compile(r'(?i)filename\s*=\s*"?([^";]+)"?')
_BAD_TYPES = ("text/html", "application/xhtml", "application/json", "text/xml", "application/xml")
MAX_HOPS = 8


class ValidationFailed(Exception):
    """A rejected candidate. `auth_required`: gated or login-only; `transient`: the source failed."""

    def __init__(
        self,
        reason: str,
        *,
        auth_required: bool = False,
        transient: bool = False,
        status: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.auth_required = auth_required
        self.transient = transient
        self.status = status


@dataclasses.dataclass(slots=True)
class Probe:
    """What the hops of one probe told us."""

    final_url: str
    status: int
    size: int | None = None
    sha256: str | None = None
    content_type: str = ""
    filename: str | None = None
    hops: int = 0


def _disposition_name(value: str | None) -> str | None:
    if not value:
        return None
    star = _CD_FILENAME_STAR.search(value)
    if star:
        return unquote(star.group(1).strip().strip('"'))
    plain = _CD_FILENAME.search(value)
    return plain.group(1).strip() if plain else None


def _total_from_range(value: str | None) -> int | None:
    if value and "/" in value:
        total = value.rsplit("/", 1)[1].strip()
        if total.isdigit():
            return int(total)
    return None


def _strip_etag(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"').lower()
    return value if _SHA256.match(value) else None


def catalogue_grant(candidate: Candidate, settings: Settings) -> str | None:
    """Why a catalogue's URL on a host outside the allowlist may still be used, or None.

    ComfyUI-Manager's catalogue is curated and fetched from an allowed host: a host it names for a
    file (Meta's SAM weights, OpenAI's decoder, Google storage) is allowed for that exact URL only.
    """
    if candidate.source != "catalogue" or settings.host_allowed(candidate.url):
        return None
    where = settings.catalog_url or "the cached catalogue"
    host = urlsplit(candidate.url).hostname or "?"
    return f"{host} is allowed for this exact URL because the curated catalogue {where} names it"



def _read_answer(probe: Probe, response: httpx.Response, url: str) -> None:
    """Fill `probe` from the final 2xx answer: status, URL, type, served name and size."""
    status = response.status_code
    probe.status = status
    probe.final_url = url
    probe.content_type = response.headers.get("content-type", "").lower()
    probe.filename = _disposition_name(response.headers.get("content-disposition"))
    if status == 206:
        probe.size = probe.size or _total_from_range(response.headers.get("content-range"))
    elif probe.size is None and response.headers.get("content-length", "").isdigit():
        # A 200 to a ranged GET means the server ignored Range: its length is the file's.
        probe.size = int(response.headers["content-length"])

class Validator:
    """Probes candidates over the run's HTTP session; never follows a redirect it has not checked."""

    def __init__(self, settings: Settings, session: HttpSession) -> None:
        self.settings = settings
        self.session = session

    # -- helpers -------------------------------------------------------------------------------------
    def _is_civitai_download(self, url: str) -> bool:
        return self._source_of(url) == "civitai" and "/api/download/" in urlsplit(url).path

    def _auth_headers(self, url: str) -> dict[str, str]:
        # A token only ever goes to the service it belongs to, never to a CDN or storage hop.
        source = self._source_of(url)
        if source == "huggingface" and self.settings.hf_token:
            return {"Authorization": f"Bearer {self.settings.hf_token}"}
        if source == "civitai" and self.settings.civitai_token:
            return {"Authorization": f"Bearer {self.settings.civitai_token}"}
        return {}

    def _source_of(self, url: str) -> str:
        # Origins (scheme, host, port), not hosts: in tests every server is 127.0.0.1 on its own port,
        # and a token must never reach a CDN just because it shares a host name.
        return token_kind(url, self.settings) or "download"

    def _redirect_target(self, response: httpx.Response, url: str, source: str) -> str:
        """Where a redirect leads, once it is known not to be a login page or a host not allowed."""
        status = response.status_code
        location = response.headers.get("location")
        if not location:
            raise ValidationFailed(f"redirect (HTTP {status}) without a Location")
        target = urljoin(url, str(location))
        if source == "civitai" and urlsplit(target).path.rstrip("/").endswith("/login"):
            raise ValidationFailed(
                "Civitai redirected to its login page: set CIVITAI_API_TOKEN",
                auth_required=True,
                status=status,
            )
        if not self.settings.host_allowed(target, redirect=True):
            host = urlsplit(target).hostname or "?"
            raise ValidationFailed(f"redirect to a host that is not allowed: {host}")
        return target

    def _refusal(self, response: httpx.Response, url: str, candidate: Candidate) -> ValidationFailed:
        status = response.status_code
        code = response.headers.get("x-error-code", "")
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) <= 65536:
            response.read()  # error bodies are small; the message says what the user must do
        message = redact(error_message(response), self.settings.secrets)
        source = self._source_of(url)
        if code == "GatedRepo":
            repo = candidate.repo or hf_repo_of(url) or "the repository"
            page = f"{self.settings.hf_endpoint}/{repo}"
            need = (
                "and check that HF_TOKEN belongs to the account that accepted it"
                if self.settings.hf_token
                else "then set HF_TOKEN"
            )
            return ValidationFailed(
                f"gated on Hugging Face: accept the licence of {repo} at {page} {need}",
                auth_required=True,
                status=status,
            )
        if source == "huggingface" and status == 401:
            # The Hub answers 401 without an error code for a missing repo and a private one alike.
            return ValidationFailed(
                f"Hugging Face: repository missing or private (HTTP 401{': ' + message if message else ''})",
                status=status,
            )
        if source == "civitai" and status in (401, 403):
            need = (
                "check CIVITAI_API_TOKEN (it was sent and refused)"
                if self.settings.civitai_token
                else "set CIVITAI_API_TOKEN to a Civitai API key"
            )
            return ValidationFailed(
                f"Civitai refused the download ({message or f'HTTP {status}'}): {need}",
                auth_required=True,
                status=status,
            )
        if status == 404 or status == 410:
            return ValidationFailed(f"not found at the URL (HTTP {status})", status=status)
        if status in RETRY_STATUSES:
            return ValidationFailed(
                f"server kept failing (HTTP {status}) after retries", transient=True, status=status
            )
        if status in (401, 403):
            return ValidationFailed(
                f"access refused (HTTP {status}): {message}", auth_required=True, status=status
            )
        return ValidationFailed(
            f"unexpected answer HTTP {status}" + (f": {message}" if message else ""), status=status
        )

    # -- probing -------------------------------------------------------------------------------------
    def probe(self, candidate: Candidate) -> Probe:
        """Walk the redirect chain of `candidate.url`; raise ValidationFailed on anything not a file."""
        url = candidate.url
        if not (self.settings.host_allowed(url) or catalogue_grant(candidate, self.settings)):
            raise ValidationFailed(f"host not allowed: {urlsplit(url).hostname or url!r}")
        ranged = self._is_civitai_download(url)
        method = "GET" if ranged else "HEAD"
        probe = Probe(final_url=url, status=0)
        for hop in range(MAX_HOPS + 1):
            headers = {"Accept-Encoding": "identity", **self._auth_headers(url)}
            if ranged:
                headers["Range"] = "bytes=0-0"
            source = self._source_of(url)
            try:
                response = self.session.request(method, url, source=source, headers=headers, stream=True)
            except SourceError as exc:
                raise ValidationFailed(f"{exc.message}", transient=True) from exc
            try:
                status = response.status_code
                probe.hops = hop
                if probe.size is None and response.headers.get("x-linked-size", "").isdigit():
                    probe.size = int(response.headers["x-linked-size"])
                probe.sha256 = probe.sha256 or _strip_etag(response.headers.get("x-linked-etag"))
                if status in (301, 302, 303, 307, 308):
                    url = self._redirect_target(response, url, source)
                    continue
                if not 200 <= status < 300:
                    raise self._refusal(response, url, candidate)
                _read_answer(probe, response, url)
                return probe
            finally:
                response.close()
        raise ValidationFailed(f"more than {MAX_HOPS} redirects")

    def validate(self, candidate: Candidate, *, check_name: bool = True) -> Candidate:
        """The candidate with size (and sha256 when the server publishes it) filled, or ValidationFailed.

        `check_name=False` only for a workflow's own name→URL pairing, where the remote name may differ.
        """
        probe = self.probe(candidate)
        kind = probe.content_type.split(";", 1)[0].strip()
        web_page = kind.startswith(("text/html", "application/xhtml"))
        if web_page and self._source_of(candidate.url) == "civitai":
            # Civitai answers a download it will not give anonymously with its login page, as a 200.
            need = (
                "check CIVITAI_API_TOKEN (it was sent and Civitai still showed its login page)"
                if self.settings.civitai_token
                else "set CIVITAI_API_TOKEN to a Civitai API key"
            )
            raise ValidationFailed(
                f"Civitai answered with a web page (its login page), not the file: {need}",
                auth_required=True,
                status=probe.status,
            )
        if any(kind.startswith(bad) for bad in _BAD_TYPES):
            raise ValidationFailed(f"server answered {kind or 'an unknown type'}, not a model file")
        if not probe.size or probe.size <= 0:
            raise ValidationFailed("server did not say how large the file is")
        if candidate.size is not None:
            # Civitai publishes sizes in rounded KiB; everyone else publishes exact bytes.
            tolerance = 1024 if candidate.source == "civitai" else 0
            if abs(candidate.size - probe.size) > tolerance:
                raise ValidationFailed(
                    f"size differs: the source says {candidate.size} bytes, the server {probe.size}"
                )
        if candidate.sha256 and probe.sha256 and candidate.sha256.lower() != probe.sha256:
            raise ValidationFailed("sha256 differs between the source's metadata and the server")
        if check_name and probe.filename and probe.filename.lower() != candidate.filename.lower():
            raise ValidationFailed(f"server names the file {probe.filename!r}, not {candidate.filename!r}")
        log.debug(
            "validated %s: %d bytes, %s, %d hop(s)",
            redact(candidate.url, self.settings.secrets),
            probe.size,
            kind or "no type",
            probe.hops,
        )
        return dataclasses.replace(
            candidate,
            size=probe.size,
            sha256=(candidate.sha256 or probe.sha256 or None),
        )
