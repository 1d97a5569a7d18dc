"""Every request is bounded: hostile servers (slow headers, endless bodies, gzip bombs, silence) against
our own client (catalogue, Civitai, validation), huggingface_hub's and the openai SDK's.

The bounds are shrunk to a second or two; each test has a pytest timeout instead of a timed assertion.
Peak memory under the bombs is measured in `bench/bounds_bench.py`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from comfyfixer.agent.client import ChatClient, make_openai_client
from comfyfixer.config import Settings
from comfyfixer.errors import LLMError, SourceError
from comfyfixer.http import HttpSession, build_client, hub_client
from comfyfixer.resolvers.huggingface import HuggingFaceSource, Publishers
from comfyfixer.retry import RetryPolicy
from comfyfixer.retry import RetryPolicy as HttpRetry
from comfyfixer.transport import Bounds, Breakers, HostDown
from tests.fakes import FileServer
from tests.fakes.hostile import HostileServer, Mode

pytestmark = pytest.mark.timeout(60)

SMALL = Bounds(connect=1.0, read=1.0, headers=0.5, total=1.0, max_body=8 << 20)
RETRY = HttpRetry(attempts=3, base_wait=0.01, max_backoff=0.02, server_wait_scale=0.01)
MODES: list[Mode] = ["slow_headers", "endless_body", "gzip_bomb", "silent"]


@pytest.fixture(params=MODES)
def hostile(request: pytest.FixtureRequest) -> Iterator[HostileServer]:
    # A 1 GiB bomb (≈1 MB on the wire) is enough to prove the cap: 8 MB decoded is the limit here.
    with HostileServer(request.param, interval=0.05, bomb_size=1 << 30) as server:
        yield server


def _host(server: HostileServer) -> str:
    return f"127.0.0.1:{server.port}"


def test_our_client_stops_every_hostile_answer_and_names_the_host(hostile: HostileServer) -> None:
    with build_client(bounds=SMALL) as client:
        session = HttpSession(client, policy=RETRY)
        with pytest.raises(SourceError) as caught:
            session.get_json(f"{hostile.url}/model-list.json", source="catalogue")
    assert _host(hostile) in caught.value.message
    # Not retried: a broken bound is not transient.
    assert session.counter.by_source["catalogue"] == 1


def test_the_hub_client_stops_every_hostile_answer(hostile: HostileServer) -> None:
    from huggingface_hub import HfApi, set_client_factory

    set_client_factory(lambda: hub_client(bounds=SMALL))
    try:
        source = HuggingFaceSource(
            Settings(hf_endpoint=hostile.url), HfApi(endpoint=hostile.url), publishers=Publishers.load({})
        )
        with pytest.raises(SourceError) as caught:
            source.list_files("someone/some-repo")
    finally:
        set_client_factory(lambda: hub_client())
    assert _host(hostile) in caught.value.message
    assert hostile.connections == 1  # huggingface_hub's own back-off did not retry it


def test_the_llm_client_stops_every_hostile_answer(hostile: HostileServer) -> None:
    settings = Settings(llm_base_url=f"{hostile.url}/v1", llm_model="qwen")
    chat = ChatClient(
        make_openai_client(settings, timeout=0.7),
        "qwen",
        retry=RetryPolicy(attempts=3, base_wait=0.0, max_backoff=0.0),
        owns_client=True,
    )
    with pytest.raises(LLMError) as caught:
        chat.complete([{"role": "user", "content": "hi"}])
    assert _host(hostile) in str(caught.value)
    assert hostile.connections == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_host_trips_its_breaker_and_is_not_called_again() -> None:
    breakers = Breakers(threshold=3)
    port = _closed_port()
    with build_client(bounds=SMALL, breakers=breakers) as client:
        session = HttpSession(client, policy=HttpRetry(attempts=10, base_wait=0.0, max_backoff=0.0))
        with pytest.raises(SourceError, match=f"127.0.0.1:{port}: unreachable"):
            session.get_json(f"http://127.0.0.1:{port}/a", source="civitai")
        assert breakers.is_open(f"127.0.0.1:{port}")
        with pytest.raises(SourceError, match="unreachable"):
            session.get_json(f"http://127.0.0.1:{port}/b", source="civitai")
    # Three connection attempts opened the breaker; the rest were refused without touching the network.
    assert session.counter.by_source["civitai"] == 5


def test_an_unresolvable_host_name_is_a_connect_error_that_trips_the_breaker() -> None:
    breakers = Breakers(threshold=2)
    with build_client(bounds=SMALL, breakers=breakers) as client:
        session = HttpSession(client, policy=HttpRetry(attempts=4, base_wait=0.0, max_backoff=0.0))
        with pytest.raises(SourceError, match="unreachable"):
            session.get_json("http://no-such-host.invalid/x", source="hub")
    assert breakers.is_open("no-such-host.invalid:80")


def test_a_tripped_breaker_refuses_at_once_on_both_stacks() -> None:
    import httpx2

    breakers = Breakers()
    breakers.trip("127.0.0.1:9", "the start-up probe could not connect")
    with pytest.raises(HostDown, match="start-up probe"), hub_client(breakers) as client:
        client.get("http://127.0.0.1:9/api/models")
    with pytest.raises(httpx2.TransportError), hub_client(breakers) as client:
        client.get("http://127.0.0.1:9/api/models")


def test_a_gzip_answer_within_the_cap_is_decoded(file_server: FileServer) -> None:
    import gzip

    body = b'{"models": [' + b",".join(b'{"n": %d}' % i for i in range(50000)) + b"]}"
    file_server.add(
        "/list.json",
        gzip.compress(body),
        content_type="application/json",
        headers={"Content-Encoding": "gzip"},
    )
    with build_client(bounds=SMALL) as client:
        value = HttpSession(client, policy=RETRY).get_json(
            file_server.url_for("/list.json"), source="catalogue"
        )
    assert isinstance(value, dict) and len(value["models"]) == 50000
