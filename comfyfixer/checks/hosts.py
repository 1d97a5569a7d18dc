"""Which hosts a download may touch: one rule for the run's probe and for every redirect hop of a script.

A URL may start a download when its host is on the allowed list (plain http only for hosts the user
configured: local mirrors, tests), or when it is the exact URL a curated catalogue names (granted).
A redirect may also land on signed-storage hosts that end with one of the suffixes (https only).

As a program, run by a download script for every hop before it is requested:
    python -S -c <this file> ALLOWED HTTP_HOSTS SUFFIXES GRANTED START CURRENT [LOCATION]
The lists are space-separated. Without LOCATION it checks CURRENT as the first hop; with it, it
resolves LOCATION against CURRENT and checks the target as a redirect. On success it prints the URL
to request, then "token" when that URL has the origin of START (the only origin a token may go to)
or "no-token". Exit 1 (with a sentence naming the host on stderr) when the URL is refused.
"""

from __future__ import annotations

import sys
from urllib.parse import urljoin, urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port): what a token is bound to. Hosts are compared lower-case."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return (scheme, (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme, 0))


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def host_allowed(
    url: str,
    *,
    allowed: frozenset[str] | set[str],
    http_hosts: frozenset[str] | set[str],
    suffixes: tuple[str, ...],
    redirect: bool = False,
    granted: tuple[str, ...] = (),
) -> bool:
    """Whether `url` may be requested; `redirect=True` also accepts signed-storage hosts (https only)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        return False
    host = host_of(url)
    if not host or parts.username is not None or parts.password is not None:
        return False
    try:
        parts.port  # noqa: B018 - a malformed port raises here
    except ValueError:
        return False
    if url in granted:
        return True
    if host in allowed:
        return scheme == "https" or host in http_hosts
    if redirect and scheme == "https":
        return any(host.endswith(sfx) for sfx in suffixes)
    return False


class HostRule:
    """The allowed-host data of one run: what `Settings` decides, and what a script carries.

    A plain value class, not a dataclass: this module is carried in every script, and importing
    `dataclasses` there costs each Python start of a download ~12 ms.
    """

    __slots__ = ("allowed", "http_hosts", "suffixes")

    def __init__(
        self,
        allowed: frozenset[str],
        http_hosts: frozenset[str] = frozenset(),
        suffixes: tuple[str, ...] = (),
    ) -> None:
        object.__setattr__(self, "allowed", allowed)
        object.__setattr__(self, "http_hosts", http_hosts)
        object.__setattr__(self, "suffixes", suffixes)

    allowed: frozenset[str]
    http_hosts: frozenset[str]
    suffixes: tuple[str, ...]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"HostRule is immutable: cannot set {name}")

    def _key(self) -> tuple[frozenset[str], frozenset[str], tuple[str, ...]]:
        return (self.allowed, self.http_hosts, self.suffixes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostRule) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"HostRule({self.allowed!r}, {self.http_hosts!r}, {self.suffixes!r})"

    def allows(self, url: str, *, redirect: bool = False, granted: tuple[str, ...] = ()) -> bool:
        return host_allowed(
            url,
            allowed=self.allowed,
            http_hosts=self.http_hosts,
            suffixes=self.suffixes,
            redirect=redirect,
            granted=granted,
        )


def _words(value: str) -> list[str]:
    return [w for w in value.split() if w]


def main(argv: list[str]) -> int:
    if len(argv) not in (6, 7):
        sys.stderr.write("comfyfixer: usage: hosts ALLOWED HTTP SUFFIXES GRANTED START CURRENT [LOCATION]\n")
        return 2
    allowed = {h.lower() for h in _words(argv[0])}
    http_hosts = {h.lower() for h in _words(argv[1])}
    suffixes = tuple(s.lower() for s in _words(argv[2]))
    granted = tuple(_words(argv[3]))
    start, current = argv[4], argv[5]
    redirect = len(argv) == 7
    target = urljoin(current, argv[6].strip()) if redirect else current
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in target):
        sys.stderr.write("comfyfixer: the server redirected to a malformed URL\n")
        return 1
    if not host_allowed(
        target, allowed=allowed, http_hosts=http_hosts, suffixes=suffixes, redirect=redirect, granted=granted
    ):
        host = host_of(target) or target[:80]
        what = "the server redirected to" if redirect else "the download URL is on"
        scheme = urlsplit(target).scheme
        sys.stderr.write(
            f"comfyfixer: refused: {what} {host} ({scheme}), a host that is not allowed;"
            " nothing was requested from it\n"
        )
        return 1
    print(target)
    print("token" if origin(target) == origin(start) else "no-token")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
