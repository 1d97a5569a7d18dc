"""finder.py end to end against the fake Hub and Civitai: the outcomes users must be able to trust."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from comfyfixer.config import Settings
from comfyfixer.http import build_client
from comfyfixer.models import Hint, MissingModel
from comfyfixer.resolvers.finder import Finder
from comfyfixer.resolvers.huggingface import Publishers
from comfyfixer.retry import RetryPolicy
from tests.fakes.civitai import FakeCivitai
from tests.fakes.hub import FakeHub

FAST = RetryPolicy(attempts=3, base_wait=0.01, max_backoff=0.02, server_wait_scale=0.01)
PUBLISHERS = Publishers(frozenset({"comfy-org"}), ("Comfy-Org/Wan_2.1_ComfyUI_repackaged",))


def blob(tag: str) -> bytes:
    return f"model bytes for {tag} ".encode() * 40


@dataclass
class Net:
    hub: FakeHub
    civitai: FakeCivitai

    def finder(self, publishers: Publishers = PUBLISHERS, **settings: object) -> Finder:
        from huggingface_hub import HfApi

        base: dict[str, object] = {
            "hf_endpoint": self.hub.url,
            "hf_endpoint_overridden": True,
            "civitai_url": self.civitai.url,
            "civitai_url_overridden": True,
            "catalog_url": None,
            "extra_allowed_hosts": ("127.0.0.1", "localhost"),
        }
        base.update(settings)
        s = Settings(**base)  # type: ignore[arg-type]
        api = HfApi(endpoint=s.hf_endpoint, token=s.hf_token or False)
        return Finder(s, http=build_client(), hf_api=api, policy=FAST, publishers=publishers)


@pytest.fixture
def net(hf_env: Path) -> Iterator[Net]:
    with FakeHub() as hub, FakeCivitai() as civitai:
        yield Net(hub, civitai)
    for server in (hub, hub.cdn, civitai, civitai.storage):
        assert not server.errors


def test_found_in_a_publisher_repo_with_sha256_and_size(net: Net) -> None:
    f = net.hub.add_file(
        "Comfy-Org/Wan_2.1_ComfyUI_repackaged", "split_files/vae/wan_2.1_vae.safetensors", blob("vae")
    )
    with net.finder() as finder:
        r = finder.find(MissingModel("wan/wan_2.1_vae.safetensors", "vae"))
    assert r.outcome == "found" and r.candidate is not None
    assert (r.candidate.sha256, r.candidate.size) == (f.sha256, f.size)
    assert r.candidate.url.endswith("/split_files/vae/wan_2.1_vae.safetensors")
    assert r.requests > 0 and r.evidence


def test_look_alike_decoys_are_ambiguous_not_guessed(net: Net) -> None:
    net.hub.add_file("someone/clip-stuff", "clip_l.safetensors", blob("a"))
    net.hub.add_file("another/clip_l_reupload", "clip_l.safetensors", blob("b"))
    net.hub.add_file("another/clip_l_reupload", "clip_l_fp8.safetensors", blob("near miss"))
    with net.finder() as finder:
        r = finder.find(MissingModel("clip_l.safetensors", "text_encoders"))
    assert r.outcome == "ambiguous" and r.candidate is None
    assert {c.repo for c in r.candidates} == {"someone/clip-stuff", "another/clip_l_reupload"}
    assert all(c.filename == "clip_l.safetensors" for c in r.candidates)


def test_a_lone_reupload_is_not_taken(net: Net) -> None:
    net.hub.add_file("modelzoo-reupload/juggernautXL_v9", "juggernautXL_v9.safetensors", blob("decoy"))
    with net.finder() as finder:
        r = finder.find(MissingModel("juggernautXL_v9.safetensors", "checkpoints"))
    assert r.outcome == "ambiguous" and r.candidate is None
    assert "unknown uploader" in r.reason


def test_trusted_publisher_beats_a_reupload(net: Net) -> None:
    net.hub.add_file("modelzoo-reupload/wan_2.1_vae", "wan_2.1_vae.safetensors", blob("decoy"))
    real = net.hub.add_file(
        "Comfy-Org/Wan_2.1_ComfyUI_repackaged", "split_files/vae/wan_2.1_vae.safetensors", blob("v")
    )
    with net.finder() as finder:
        r = finder.find(MissingModel("wan_2.1_vae.safetensors", "vae"))
    assert r.outcome == "found" and r.candidate is not None and r.candidate.sha256 == real.sha256


def test_nothing_with_that_exact_name_is_not_found(net: Net) -> None:
    net.hub.add_file(
        "Comfy-Org/Wan_2.1_ComfyUI_repackaged", "split_files/vae/wan_2.1_vae_fp8.safetensors", blob("x")
    )
    with net.finder() as finder:
        r = finder.find(MissingModel("wan_2.1_vae.safetensors", "vae"))
    assert r.outcome == "not_found" and r.candidate is None


def test_gated_file_is_a_source_error_with_the_licence_step(net: Net) -> None:
    net.hub.add_repo("Comfy-Org/gated_flux", gated="auto")
    net.hub.add_file("Comfy-Org/gated_flux", "flux1-dev.safetensors", blob("flux"))
    with net.finder() as finder:
        r = finder.find(MissingModel("flux1-dev.safetensors", "diffusion_models"))
    assert r.outcome == "source_error"
    assert "accept the licence" in r.reason and "Comfy-Org/gated_flux" in r.reason and "HF_TOKEN" in r.reason


def test_civitai_match_keeps_the_version_holding_the_file(net: Net) -> None:
    model = net.civitai.add_model("Squish Effect", type="LORA")
    wanted = net.civitai.add_version(model, "v1.8")
    data = blob("squish")
    net.civitai.add_file(wanted, data, "squish_18.safetensors")
    newer = net.civitai.add_version(model, "v2.0")  # modelVersions[0] holds another file
    net.civitai.add_file(newer, blob("squish2"), "squish_20.safetensors")
    with net.finder() as finder:
        r = finder.find(MissingModel("squish_18.safetensors", "loras"))
    assert r.outcome == "found" and r.candidate is not None
    assert r.candidate.repo == f"civitai:{model.id}/{wanted.id}"
    assert r.candidate.size == len(data) and r.candidate.pickle_scan == "Success"


def test_civitai_login_required_is_a_source_error(net: Net) -> None:
    model = net.civitai.add_model("Locked Style", type="LORA")
    version = net.civitai.add_version(model, require_auth=True)
    net.civitai.add_file(version, blob("locked"), "locked_style.safetensors")
    with net.finder() as finder:
        r = finder.find(MissingModel("locked_style.safetensors", "loras"))
    assert r.outcome == "source_error" and "CIVITAI_API_TOKEN" in r.reason
    with net.finder(civitai_token="any-key") as finder:
        assert finder.find(MissingModel("locked_style.safetensors", "loras")).outcome == "found"


def test_429_with_retry_after_then_success(net: Net) -> None:
    model = net.civitai.add_model("Retry Me", type="LORA")
    net.civitai.add_file(net.civitai.add_version(model), blob("r"), "retry_me.safetensors")
    net.civitai.overload_search(times=2)  # 503 + Retry-After: 2, twice
    net.civitai.fail("/api/download/models/*", 429, times=1, headers={"Retry-After": "1"})
    with net.finder() as finder:
        r = finder.find(MissingModel("retry_me.safetensors", "loras"))
    assert r.outcome == "found"
    assert len(net.civitai.requests_to("/api/v1/models")) >= 3


def test_5xx_storm_is_a_source_error_not_not_found(net: Net) -> None:
    net.civitai.fail("/api/v1/*", 503, times=None)
    with net.finder() as finder:
        r = finder.find(MissingModel("storm_lora.safetensors", "loras"))
    assert r.outcome == "source_error" and "server error" in r.reason


def test_hint_on_a_disallowed_host_is_rejected(net: Net) -> None:
    hint = Hint("https://evil.example.com/models/x.safetensors?download=true)", source="note")
    with net.finder() as finder:
        r = finder.find(MissingModel("x.safetensors", "loras", hints=[hint]))
    assert r.outcome == "not_found"
    assert any("host not allowed" in line for line in r.evidence)


def test_hint_serving_html_is_rejected_and_search_goes_on(net: Net) -> None:
    net.hub.cdn.html("/login")
    net.hub.add_file(
        "Comfy-Org/Wan_2.1_ComfyUI_repackaged", "split_files/vae/wan_2.1_vae.safetensors", blob("v")
    )
    hint = Hint(f"{net.hub.cdn.url}/login", source="properties.models")
    with net.finder() as finder:
        r = finder.find(MissingModel("wan_2.1_vae.safetensors", "vae", hints=[hint]))
    assert any("text/html" in line for line in r.evidence)
    assert r.outcome == "found" and r.candidate is not None and r.candidate.source == "huggingface"


def test_workflow_hint_is_used_first_and_cleaned(net: Net) -> None:
    net.hub.add_file("someone/odd-repo", "my_lora.safetensors", blob("hinted"))
    url = f"{net.hub.url}/someone/odd-repo/blob/main/my_lora.safetensors?download=true)"
    with net.finder() as finder:
        r = finder.find(MissingModel("my_lora.safetensors", "loras", hints=[Hint(url)]))
        assert finder.counter.by_source.get("civitai", 0) == 0, r.evidence
    assert r.outcome == "found" and r.candidate is not None and r.candidate.source == "hint"
    assert r.candidate.url == f"{net.hub.url}/someone/odd-repo/resolve/main/my_lora.safetensors"


def test_searches_and_trees_are_fetched_once_per_run(net: Net) -> None:
    net.hub.add_file(
        "Comfy-Org/Wan_2.1_ComfyUI_repackaged", "split_files/vae/wan_2.1_vae.safetensors", blob("v")
    )
    with net.finder() as finder:
        finder.find(MissingModel("wan_2.1_vae.safetensors", "vae"))
        net.hub.clear_log()
        finder.find(MissingModel("wan_2.1_vae.safetensors", "vae"))
    assert net.hub.requests_to("/api/*") == []  # memoised; only the validation HEAD went out
    assert finder.counter.models == 2 and finder.counter.average_per_model > 0


def test_the_last_resort_sweep_of_a_big_publisher_is_capped_per_model(net: Net) -> None:
    # A namespace with 60 repos and none holding the file: a miss must not list all 60 trees.
    for i in range(60):
        net.hub.add_repo(f"BigOrg/pack-{i:02d}", downloads=i)
        net.hub.add_file(f"BigOrg/pack-{i:02d}", "readme.safetensors", blob(f"r{i}"))
    publishers = Publishers(frozenset({"bigorg"}), (), sweep_authors=("BigOrg",))
    with net.finder(publishers) as finder:
        assert finder.huggingface is not None
        cap = finder.huggingface.max_sweep_repos
        first = finder.find(MissingModel("nowhere_at_all.safetensors", "checkpoints"))
        trees = [r.path for r in net.hub.requests_to("/api/models/BigOrg/*/tree/*")]
        net.hub.clear_log()
        finder.find(MissingModel("also_missing.safetensors", "loras"))
        more = [r.path for r in net.hub.requests_to("/api/models/BigOrg/*/tree/*")]
    assert first.outcome == "not_found"
    assert len(trees) == cap < 60
    assert all("pack-5" in p or "pack-4" in p or "pack-3" in p for p in trees)  # most downloaded first
    assert len(more) <= cap and not set(more) & set(trees)  # trees already listed are reused, not re-fetched
