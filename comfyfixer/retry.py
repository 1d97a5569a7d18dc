"""The one retry policy and the one reading of a server's "wait before retrying" headers.

Both network clients use these: `http.HttpSession` (the hubs, Civitai, the catalogue) and
`agent.client.ChatClient` (the LLM). Each retries for itself with tenacity; the OpenAI SDK's own
retries are switched off (`max_retries=0`) so a failed LLM call is never retried twice over.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

_RATELIMIT_T = re.compile(r"(?:^|;)\s*t=(\d+(?:\.\d+)?)")
_RATELIMIT_R = re.compile(r"(?:^|;)\s*r=(\d+)")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry a transient failure. Tests pass tiny waits; the defaults suit the real hubs."""

    attempts: int = 4
    base_wait: float = 1.0  # first back-off when the server names no wait, doubled on each retry
    max_backoff: float = 30.0
    # A server asking for a longer pause fails the call now (reported as rate-limited) rather than
    # stalling the whole run; 120 s is also the OpenAI SDK's limit.
    max_server_wait: float = 120.0
    server_wait_scale: float = 1.0  # tests shrink server-requested waits with this

    def backoff(self, attempt: int) -> float:
        return float(min(self.max_backoff, self.base_wait * (2 ** max(0, attempt - 1))))

    def wait(self, attempt: int, asked: float | None) -> float:
        """The pause before retry number `attempt`: the server's own wait if it named one, else back-off."""
        if asked is not None and asked > 0:
            return asked * self.server_wait_scale
        return self.backoff(attempt)

    def too_long(self, asked: float | None) -> bool:
        """Whether the server asked for a pause longer than this policy waits."""
        return asked is not None and asked > self.max_server_wait


def requested_wait(headers: Mapping[str, str], status: int | None = None) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, `Retry-After` (seconds or HTTP date), or the
    Hub's `RateLimit: ...;r=0;t=<seconds>` on a 429. None when it named no wait.

    `headers` must look names up case-insensitively (httpx's and the OpenAI SDK's headers do).
    """
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = (headers.get("retry-after") or "").strip()
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
    ratelimit = headers.get("ratelimit")
    if ratelimit and status == 429:
        remaining = _RATELIMIT_R.search(ratelimit)
        reset = _RATELIMIT_T.search(ratelimit)
        if reset and (remaining is None or remaining.group(1) == "0"):
            # The Hub's window resets after t seconds; one more second avoids landing on the edge.
            return float(reset.group(1)) + 1.0
    return None
