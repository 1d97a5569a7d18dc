"""validate.py against loopback servers: HEAD/ranged GET, redirects hop by hop, HTML, gated, login-only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from comfyfixer.config import Settings
from comfyfixer.http import HttpSession, build_client
from comfyfixer.models import Candidate
from comfyfixer.resolvers.validate import ValidationFailed, Validator
from comfyfixer.retry import RetryPolicy
from tests.fakes import FileServer
from tests.fakes.civitai import FakeCivitai
from tests.fakes.hub import FakeHub

FAST = RetryPolicy(attempts=2, base_wait=0.01, max_backoff=0.02, server_wait_scale=0.01)
DATA = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(256)) * 4


def _settings(**kw: object) -> Settings:
    base: dict[str, object] = {"extra_allowed_hosts": ("127.0.0.1", "localhost"), "catalog_url": None}
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        yield fake
    assert not fake.errors and not fake.cdn.errors


@pytest.fixture
def civitai() -> Iterator[FakeCivitai]:
    with FakeCivitai() as fake:
        yield fake
    assert not fake.errors and not fake.storage.errors


def _validator(settings: Settings) -> tuple[Validator, HttpSession]:
    session = HttpSession(build_client(), policy=FAST, secrets=settings.secrets)
    return Validator(settings, session), session


def _cand(url: str, filename: str = "x.safetensors", **kw: object) -> Candidate:
    return Candidate(url=url, filename=filename, source=str(kw.pop("source", "hint")), **kw)  # type: ignore[arg-type]


def test_plain_file_passes_with_its_size(file_server: FileServer) -> None:
    file_server.add("/m/x.safetensors", DATA)
    validator, session = _validator(_settings())
    ok = validator.validate(_cand(file_server.url_for("/m/x.safetensors")))
    assert ok.size == len(DATA)
    assert [r.method for r in file_server.requests] == ["HEAD"]
    session.client.close()


def test_html_answer_is_rejected(file_server: FileServer) -> None:
    file_server.html("/m/x.safetensors")
    validator, session = _validator(_settings())
    with pytest.raises(ValidationFailed, match="text/html"):
        validator.validate(_cand(file_server.url_for("/m/x.safetensors")))
    session.client.close()


def test_disallowed_host_is_rejected_without_a_request(file_server: FileServer) -> None:
    validator, session = _validator(Settings(catalog_url=None))  # 127.0.0.1 not allowed here
    with pytest.raises(ValidationFailed, match="host not allowed"):
        validator.validate(_cand(file_server.url_for("/m/x.safetensors")))
    with pytest.raises(ValidationFailed, match="host not allowed"):
        validator.validate(_cand("https://evil.example.com/x.safetensors"))
    assert file_server.requests == []
    session.client.close()


def test_each_redirect_hop_is_checked(file_server: FileServer) -> None:
    file_server.add("/real/x.safetensors", DATA)
    file_server.redirect("/a", file_server.url_for("/real/x.safetensors", alt=True))  # other origin, allowed
    file_server.redirect("/b", "https://evil.example.com/x.safetensors")
    validator, session = _validator(_settings())
    assert validator.validate(_cand(file_server.url_for("/a"))).size == len(DATA)
    with pytest.raises(ValidationFailed, match=r"not allowed: evil\.example\.com"):
        validator.validate(_cand(file_server.url_for("/b")))
    session.client.close()


def test_size_and_name_must_agree(file_server: FileServer) -> None:
    file_server.add("/m/x.safetensors", DATA, filename="other.safetensors")
    validator, session = _validator(_settings())
    url = file_server.url_for("/m/x.safetensors")
    with pytest.raises(ValidationFailed, match="size differs"):
        validator.validate(_cand(url, size=len(DATA) + 1))
    with pytest.raises(ValidationFailed, match=r"names the file 'other\.safetensors'"):
        validator.validate(_cand(url))
    assert validator.validate(_cand(url), check_name=False).size == len(DATA)
    session.client.close()


def test_missing_file_is_a_plain_rejection(file_server: FileServer) -> None:
    validator, session = _validator(_settings())
    with pytest.raises(ValidationFailed) as info:
        validator.validate(_cand(file_server.url_for("/nope.safetensors")))
    assert info.value.status == 404 and not info.value.auth_required and not info.value.transient
    session.client.close()


def test_5xx_storm_is_transient(file_server: FileServer) -> None:
    file_server.add("/m/x.safetensors", DATA)
    file_server.fail("/m/x.safetensors", 502, times=None)
    validator, session = _validator(_settings())
    with pytest.raises(ValidationFailed) as info:
        validator.validate(_cand(file_server.url_for("/m/x.safetensors")))
    assert info.value.transient
    session.client.close()


def test_hub_file_gets_sha256_and_size_from_the_302(hub: FakeHub) -> None:
    hub_file = hub.add_file("Comfy-Org/repo", "split_files/vae/x.safetensors", DATA)
    settings = _settings(hf_endpoint=hub.url, hf_endpoint_overridden=True)
    validator, session = _validator(settings)
    ok = validator.validate(_cand(hub.resolve_url("Comfy-Org/repo", "split_files/vae/x.safetensors")))
    assert (ok.size, ok.sha256) == (hub_file.size, hub_file.sha256)
    with pytest.raises(ValidationFailed, match="sha256 differs"):
        validator.validate(
            _cand(hub.resolve_url("Comfy-Org/repo", "split_files/vae/x.safetensors"), sha256="00" * 32)
        )
    session.client.close()


def test_gated_hub_file_says_what_to_do(hub: FakeHub) -> None:
    hub.add_repo("black-forest-labs/FLUX.1-dev", gated="auto")
    hub.add_file("black-forest-labs/FLUX.1-dev", "ae.safetensors", DATA)
    settings = _settings(hf_endpoint=hub.url, hf_endpoint_overridden=True)
    validator, session = _validator(settings)
    with pytest.raises(ValidationFailed) as info:
        validator.validate(
            _cand(hub.resolve_url("black-forest-labs/FLUX.1-dev", "ae.safetensors"), "ae.safetensors")
        )
    assert info.value.auth_required
    assert "accept the licence" in info.value.reason and "HF_TOKEN" in info.value.reason
    assert f"{hub.url}/black-forest-labs/FLUX.1-dev" in info.value.reason
    session.client.close()


def test_hub_token_goes_to_the_hub_only(hub: FakeHub) -> None:
    hub.add_repo("org/gated", gated="manual")
    hub.add_file("org/gated", "m.safetensors", DATA)
    hub.repo("org/gated").granted.add("hf_secret_token")  # type: ignore[union-attr]
    settings = _settings(hf_endpoint=hub.url, hf_endpoint_overridden=True, hf_token="hf_secret_token")
    validator, session = _validator(settings)
    ok = validator.validate(_cand(hub.resolve_url("org/gated", "m.safetensors"), "m.safetensors"))
    assert ok.size == len(DATA)
    assert hub.authorization_seen == ["Bearer hf_secret_token"]
    assert hub.cdn.authorization_seen == []
    session.client.close()


def test_civitai_uses_a_one_byte_ranged_get_not_head(civitai: FakeCivitai) -> None:
    model = civitai.add_model("Squish", type="LORA")
    version = civitai.add_version(model)
    civitai.add_file(version, DATA, "squish_18.safetensors")
    settings = _settings(civitai_url=civitai.url, civitai_url_overridden=True)
    validator, session = _validator(settings)
    ok = validator.validate(
        _cand(civitai.download_url(version.id), "squish_18.safetensors", source="civitai")
    )
    assert ok.size == len(DATA)
    download = civitai.requests_to(f"/api/download/models/{version.id}")
    assert [(r.method, r.range) for r in download] == [("GET", "bytes=0-0")]
    assert civitai.storage.bytes_sent() <= 1
    session.client.close()


def test_civitai_login_required_is_an_auth_failure(civitai: FakeCivitai) -> None:
    model = civitai.add_model("Locked", type="LORA")
    version = civitai.add_version(model, require_auth=True)
    civitai.add_file(version, DATA, "locked.safetensors")
    settings = _settings(civitai_url=civitai.url, civitai_url_overridden=True)
    validator, session = _validator(settings)
    with pytest.raises(ValidationFailed) as info:
        validator.validate(_cand(civitai.download_url(version.id), "locked.safetensors", source="civitai"))
    assert info.value.auth_required and info.value.status == 401
    assert "CIVITAI_API_TOKEN" in info.value.reason and "logged in" in info.value.reason
    assert civitai.storage.requests == []
    session.client.close()


def test_civitai_token_never_reaches_storage(civitai: FakeCivitai) -> None:
    model = civitai.add_model("Locked", type="LORA")
    version = civitai.add_version(model, require_auth=True)
    civitai.add_file(version, DATA, "locked.safetensors")
    settings = _settings(civitai_url=civitai.url, civitai_url_overridden=True, civitai_token="cv_key_123")
    validator, session = _validator(settings)
    ok = validator.validate(_cand(civitai.download_url(version.id), "locked.safetensors", source="civitai"))
    assert ok.size == len(DATA)
    assert civitai.authorization_seen == ["Bearer cv_key_123"]
    assert civitai.storage.authorization_seen == []
    session.client.close()
