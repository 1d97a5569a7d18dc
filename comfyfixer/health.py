"""The start-up health probe: one cheap request per configured source, all at once, a few seconds in all.

A source whose host cannot be reached (refused, name not resolvable, no answer in time) is reported once,
in words, and its host's breaker is opened (`transport.Breakers.trip`): every later request to it fails
at once, so each model gets a `source_error` naming the source instead of a fresh round of retries.
An HTTP answer of any status counts as reachable (a 5xx or 429 is the resolvers' business).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from comfyfixer.config import Settings
from comfyfixer.errors import redact
from comfyfixer.transport import BoundExceeded, Bounds, Breakers, host_key

# Per source: the words users read, and the cheap request that proves the host answers.
TITLES = {
    "huggingface": "Hugging Face",
    "civitai": "Civitai",
    "catalogue": "catalogue",
    "llm": "LLM endpoint",
}
PROBE_SECONDS = 5.0


@dataclass(frozen=True)
class SourceHealth:
    source: str  # "huggingface", "civitai", "catalogue", "llm"
    url: str  # the probed URL, secrets removed
    host: str  # host:port, the breaker's key
    ok: bool
    detail: str  # "answered HTTP 200 in 0.1 s" / "cannot connect: …"
    seconds: float = 0.0

    @property
    def title(self) -> str:
        return TITLES.get(self.source, self.source)

    @property
    def sentence(self) -> str:
        """`Hugging Face unreachable: …` / `Hugging Face OK (…)`."""
        return f"{self.title} {'OK' if self.ok else 'unreachable'}: {self.detail}"


def probe_targets(settings: Settings) -> dict[str, str]:
    """The URL probed per configured source."""
    targets = {
        "huggingface": f"{settings.hf_endpoint}/api/models?limit=1",
        "civitai": f"{settings.civitai_url}/api/v1/models?limit=1",
    }
    if settings.catalog_url:
        targets["catalogue"] = settings.catalog_url
    if settings.llm_base_url:
        targets["llm"] = f"{settings.llm_base_url.rstrip('/')}/models"
    return targets


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = 443 if parts.scheme == "https" else 80
    return host_key((parts.hostname or "").lower(), port or default)


def _headers(settings: Settings, source: str) -> dict[str, str]:
    if source == "llm" and settings.llm_api_key:
        return {"Authorization": f"Bearer {settings.llm_api_key}"}
    return {}


def _describe(exc: Exception) -> str:
    if isinstance(exc, BoundExceeded):
        return exc.reason
    if isinstance(exc, httpx.ConnectTimeout):
        return f"no connection within the probe's time ({exc})" if str(exc) else "no connection in time"
    if isinstance(exc, httpx.TimeoutException):
        return "no answer within the probe's time"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    return f"{type(exc).__name__}: {exc}"


def probe_sources(
    settings: Settings,
    *,
    breakers: Breakers | None = None,
    seconds: float = PROBE_SECONDS,
    transport: httpx.BaseTransport | None = None,
    skip: tuple[str, ...] = (),
) -> list[SourceHealth]:
    """Probe every configured source (but `skip`) in parallel, within `seconds`; trip the breaker of
    each host found down. Never raises. The order of the result follows `probe_targets`.
    """
    from comfyfixer.http import build_client

    targets = {k: v for k, v in probe_targets(settings).items() if k not in skip}
    bounds = Bounds(connect=seconds, read=seconds, headers=seconds, total=seconds, max_body=1 << 20)
    # A private breaker set for the probe's own client: its failures are counted once, below.
    client = build_client(bounds=bounds, breakers=Breakers(threshold=1 << 30), transport=transport)
    results: dict[str, SourceHealth] = {}
    lock = threading.Lock()

    def probe(source: str, url: str) -> None:
        shown = redact(url, settings.secrets)
        host = _host_of(url)
        started = time.monotonic()
        try:
            method = "HEAD" if source == "catalogue" else "GET"
            with client.stream(method, url, headers=_headers(settings, source)) as response:
                status = response.status_code
            took = time.monotonic() - started
            health = SourceHealth(source, shown, host, True, f"answered HTTP {status} in {took:.1f} s", took)
        except Exception as exc:  # every failure is a finding, never a crash of the probe
            took = time.monotonic() - started
            detail = redact(f"{host}: {_describe(exc)}", settings.secrets)
            health = SourceHealth(source, shown, host, False, detail, took)
        with lock:
            results[source] = health

    threads = [
        threading.Thread(target=probe, args=(s, u), name=f"probe {s}", daemon=True)
        for s, u in targets.items()
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + seconds + 1.0
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    client.close()
    out: list[SourceHealth] = []
    for source, url in targets.items():
        with lock:
            health = results.get(source)
        if health is None:  # the bounds should make this impossible; the join timeout makes it certain
            host = _host_of(url)
            health = SourceHealth(source, redact(url, settings.secrets), host, False, f"{host}: no answer")
        out.append(health)
    if breakers is not None:
        for health in out:
            if not health.ok:
                breakers.trip(health.host, health.sentence)
    return out


def down(results: list[SourceHealth]) -> Mapping[str, SourceHealth]:
    """The sources found down, by source key."""
    return {h.source: h for h in results if not h.ok}
