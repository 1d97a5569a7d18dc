"""http.py: retries honouring Retry-After/RateLimit, 5xx storms, memoisation, counters, user agent."""

from __future__ import annotations

import socket

import httpx
import pytest

from comfyfixer.errors import SourceError
from comfyfixer.http import USER_AGENT, HttpSession, RequestCounter, build_client
from comfyfixer.retry import RetryPolicy, requested_wait
from comfyfixer.transport import Bounds
from tests.fakes import FileServer

FAST = RetryPolicy(attempts=3, base_wait=0.01, max_backoff=0.02, server_wait_scale=0.01)


def server_wait(response: httpx.Response) -> float | None:
    return requested_wait(response.headers, response.status_code)


def _response(status: int, headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "http://x/"))


def test_server_wait_reads_every_header_form() -> None:
    assert server_wait(_response(429, {"Retry-After": "7"})) == 7.0
    assert server_wait(_response(429, {"retry-after-ms": "250"})) == 0.25
    assert server_wait(_response(429, {"RateLimit": '"api";r=0;t=12'})) == 13.0
    # A RateLimit header with quota left is not a request to wait.
    assert server_wait(_response(429, {"RateLimit": '"api";r=5;t=12'})) is None
    assert server_wait(_response(503, {})) is None
    http_date = server_wait(_response(503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    assert http_date == 0.0  # a date in the past means "now"


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(base_wait=1.0, max_backoff=5.0)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


def test_retry_after_429_then_success(file_server: FileServer) -> None:
    file_server.add("/api/thing.json", b'{"ok": true}', content_type="application/json")
    file_server.fail("/api/thing.json", 429, times=2, headers={"Retry-After": "2"})
    waits: list[float] = []
    with build_client() as client:
        session = HttpSession(client, policy=FAST, sleep=waits.append)
        body = session.get_json(file_server.url_for("/api/thing.json"), source="test")
    assert body == {"ok": True}
    assert waits == [pytest.approx(0.02), pytest.approx(0.02)]  # Retry-After 2 s, scaled for tests
    assert session.counter.by_source["test"] == 3


def test_5xx_storm_is_a_source_error_not_a_miss(file_server: FileServer) -> None:
    file_server.add("/api/thing.json", b"{}", content_type="application/json")
    file_server.fail("/api/thing.json", 503, times=None)
    with build_client() as client:
        session = HttpSession(client, policy=FAST)
        with pytest.raises(SourceError) as info:
            session.get_json(file_server.url_for("/api/thing.json"), source="civitai")
    assert info.value.status == 503
    assert "server error" in info.value.message
    assert len(file_server.requests_to("/api/thing.json")) == FAST.attempts


def test_a_too_long_retry_after_fails_at_once(file_server: FileServer) -> None:
    file_server.fail("/slow", 429, times=None, headers={"Retry-After": "3600"})
    with build_client() as client:
        session = HttpSession(client, policy=FAST)
        with pytest.raises(SourceError, match="rate limited"):
            session.get_json(file_server.url_for("/slow"), source="x")
    assert len(file_server.requests_to("/slow")) == 1


def test_404_is_none_and_memoised_success_is_not_refetched(file_server: FileServer) -> None:
    file_server.add("/a.json", b"[1, 2]", content_type="application/json")
    with build_client() as client:
        session = HttpSession(client, policy=FAST)
        assert session.get_json(file_server.url_for("/missing.json"), source="x") is None
        first = session.get_json(file_server.url_for("/a.json"), source="x", params={"q": "1"})
        second = session.get_json(file_server.url_for("/a.json"), source="x", params={"q": "1"})
    assert first == second == [1, 2]
    assert len(file_server.requests_to("/a.json")) == 1


def test_failures_are_not_memoised(file_server: FileServer) -> None:
    file_server.add("/b.json", b"{}", content_type="application/json")
    file_server.fail("/b.json", 500, times=FAST.attempts)
    with build_client() as client:
        session = HttpSession(client, policy=FAST)
        with pytest.raises(SourceError):
            session.get_json(file_server.url_for("/b.json"), source="x")
        assert session.get_json(file_server.url_for("/b.json"), source="x") == {}


def test_network_failure_after_retries_is_a_source_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again at once: nothing listens there
    with build_client(bounds=Bounds(connect=1.0)) as client:
        session = HttpSession(client, policy=FAST)
        with pytest.raises(SourceError, match="ConnectError"):
            session.get_json(f"http://127.0.0.1:{port}/x", source="hub")
    assert session.counter.by_source["hub"] == FAST.attempts


def test_user_agent_names_the_tool_and_is_not_a_browser(file_server: FileServer) -> None:
    file_server.add("/ua.json", b"{}", content_type="application/json")
    with build_client() as client:
        HttpSession(client, policy=FAST).get_json(file_server.url_for("/ua.json"), source="x")
    agent = file_server.requests[-1].headers["user-agent"]
    assert agent == USER_AGENT and agent.startswith("comfyfixer/")
    assert not any(word in agent.lower() for word in ("mozilla", "chrome", "safari"))


def test_counter_averages_per_model() -> None:
    counter = RequestCounter()
    for n in (3, 1, 2):
        counter.begin_model()
        counter.add("huggingface", n)
        assert counter.end_model() == n
    assert counter.average_per_model == 2.0
    assert counter.total == 6
