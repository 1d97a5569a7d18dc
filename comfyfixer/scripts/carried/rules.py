"""Where requests may go (the host rule of `checks/hosts.py`, executed from its text) and URL parts.

Part of the segmented downloader a script carries (`segments.py`). Standard library only.
"""

from __future__ import annotations

import os

from .gates import load_module


class Rules:
    """Where requests may go: the host lists the script carries (space-separated), one rule for all.

    The decision is `host_allowed` of `checks/hosts.py`, the module the run's validator imports and
    the script's curl hops run; its text comes as an argument and is executed here, so there is one
    implementation of the rule.
    """

    def __init__(self, allowed: str, http_hosts: str, suffixes: str, granted: str, hosts_py: str) -> None:
        self.allowed = frozenset(allowed.lower().split())
        self.http_hosts = frozenset(http_hosts.lower().split())
        self.suffixes = tuple(suffixes.lower().split())
        self.granted = tuple(granted.split())
        self.rule = load_module("comfyfixer_hosts", hosts_py).host_allowed

    def allows(self, url: str, *, redirect: bool) -> bool:
        if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
            return False  # a malformed target is never requested (it could split the request line)
        return bool(
            self.rule(
                url,
                allowed=self.allowed,
                http_hosts=self.http_hosts,
                suffixes=self.suffixes,
                redirect=redirect,
                granted=self.granted,
            )
        )


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, lower-case host, port, path?query) of an absolute http(s) URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return scheme, "", 0, ""
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    return scheme, (parts.hostname or "").lower(), port, target


def origin(url: str) -> tuple[str, str, int]:
    scheme, host, port, _ = split_url(url)
    return scheme, host, port


def proxied(url: str) -> bool:
    """Whether the environment routes this URL through a proxy (curl honours proxies; we do not)."""
    scheme, host, _, _ = split_url(url)
    names = (scheme + "_proxy", "all_proxy")
    if not any(os.environ.get(n) or os.environ.get(n.upper()) for n in names):
        return False
    no_proxy = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
    for entry in no_proxy.split(","):
        entry = entry.strip().lower().lstrip(".")
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return False
    return True
