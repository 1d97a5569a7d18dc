"""The start-up probe: every configured source at once, in a few seconds; a host down trips its breaker."""

from __future__ import annotations

import socket

import pytest

from comfyfixer.config import Settings
from comfyfixer.health import probe_sources
from comfyfixer.transport import Breakers
from tests.fakes import FakeCivitai, FakeHub, FileServer
from tests.fakes.hostile import HostileServer

pytestmark = pytest.mark.timeout(60)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_source_up(fake_hub: FakeHub, fake_civitai: FakeCivitai, file_server: FileServer) -> None:
    file_server.set_catalogue([])
    settings = Settings(
        hf_endpoint=fake_hub.url,
        civitai_url=fake_civitai.url,
        catalog_url=file_server.url_for("/model-list.json"),
        llm_base_url=f"{file_server.url}/v1",
        llm_api_key="sk-probe-secret",
    )
    breakers = Breakers()
    results = probe_sources(settings, breakers=breakers)
    assert [h.source for h in results] == ["huggingface", "civitai", "catalogue", "llm"]
    # The LLM's /v1/models is a 404 on a file server: an HTTP answer still means the host is up.
    assert all(h.ok for h in results), results
    assert breakers.down() == {}
    assert fake_hub.requests_to("/api/models") and fake_civitai.requests_to("/api/v1/models")
    llm_request = file_server.requests_to("/v1/models")[0]
    assert llm_request.authorization == "Bearer sk-probe-secret"


def test_refused_unresolvable_and_silent_sources_are_down_in_one_probe_time() -> None:
    port = _closed_port()
    with HostileServer("silent") as silent:
        settings = Settings(
            hf_endpoint=f"http://127.0.0.1:{port}",
            civitai_url="http://civitai.invalid",
            catalog_url=f"{silent.url}/model-list.json",
            llm_base_url=None,
        )
        breakers = Breakers()
        results = probe_sources(settings, breakers=breakers, seconds=1.0)
    by = {h.source: h for h in results}
    assert not any(h.ok for h in results)
    assert by["huggingface"].sentence.startswith(
        f"Hugging Face unreachable: 127.0.0.1:{port}: cannot connect"
    )
    assert "civitai.invalid" in by["civitai"].sentence
    assert "no complete answer headers" in by["catalogue"].detail
    # Every host found down has its breaker open: later calls fail at once.
    assert set(breakers.down()) == {f"127.0.0.1:{port}", "civitai.invalid:80", f"127.0.0.1:{silent.port}"}
