"""Generic and short names (`ae.safetensors`, `clip_l.safetensors`): the workflow's other models decide.

`ae.safetensors` is the VAE file of several official repositories, not all the same bytes. Beside
`flux1-dev.safetensors` it is FLUX.1-dev's; from a workflow that loads nothing else it is ambiguous,
with the candidates listed, never a guess. Fakes at the wire (FakeHub), real HfApi client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfyfixer.config import Settings
from comfyfixer.http import build_client
from comfyfixer.models import MissingModel
from comfyfixer.resolvers.finder import Finder
from comfyfixer.resolvers.huggingface import Publishers
from comfyfixer.resolvers.queries import context_queries, derive_queries, distinctive_tokens, is_generic
from comfyfixer.retry import RetryPolicy
from comfyfixer.scan import scan
from tests.fakes.hub import FakeHub
from tests.model_bytes import safetensors

FAST = RetryPolicy(attempts=2, base_wait=0.01, max_backoff=0.02, server_wait_scale=0.01)
PUBLISHERS = Publishers(
    frozenset({"comfy-org", "black-forest-labs"}),
    (
        "black-forest-labs/FLUX.1-dev",
        "black-forest-labs/FLUX.1-schnell",
        "Comfy-Org/Lumina_Image_2.0_Repackaged",
    ),
)
FLUX_VAE = safetensors(metadata={"model": "flux ae"})
LUMINA_VAE = safetensors(metadata={"model": "another ae"})


@pytest.fixture
def hub(hf_env: Path) -> Iterator[FakeHub]:
    with FakeHub() as hub:
        hub.add_file("black-forest-labs/FLUX.1-dev", "ae.safetensors", FLUX_VAE)
        hub.add_file(
            "black-forest-labs/FLUX.1-dev", "flux1-dev.safetensors", safetensors(metadata={"m": "dev"})
        )
        hub.add_file("black-forest-labs/FLUX.1-schnell", "ae.safetensors", FLUX_VAE)
        hub.add_file("Comfy-Org/Lumina_Image_2.0_Repackaged", "split_files/vae/ae.safetensors", LUMINA_VAE)
        hub.add_file("someone/ae-reupload", "ae.safetensors", safetensors(metadata={"m": "decoy"}))
        yield hub
    assert not hub.errors and not hub.cdn.errors


def finder(hub: FakeHub) -> Finder:
    from huggingface_hub import HfApi

    settings = Settings(
        hf_endpoint=hub.url,
        hf_endpoint_overridden=True,
        catalog_url=None,
        extra_allowed_hosts=("127.0.0.1", "localhost"),
    )
    api = HfApi(endpoint=settings.hf_endpoint, token=False)
    return Finder(
        settings, http=build_client(), hf_api=api, policy=FAST, publishers=PUBLISHERS, civitai=False
    )


def test_ae_beside_flux1_dev_is_the_official_flux_file(hub: FakeHub) -> None:
    model = MissingModel("ae.safetensors", "vae", context=["flux1-dev.safetensors", "t5xxl_fp16.safetensors"])
    with finder(hub) as f:
        r = f.find(model)
    assert r.outcome == "found" and r.candidate is not None, r.reason
    assert r.candidate.repo == "black-forest-labs/FLUX.1-dev"
    assert r.candidate.sha256 == hub.repo("black-forest-labs/FLUX.1-dev").files["ae.safetensors"].sha256  # type: ignore[union-attr]


def test_ae_with_no_context_is_ambiguous_with_the_candidates(hub: FakeHub) -> None:
    with finder(hub) as f:
        r = f.find(MissingModel("ae.safetensors", "vae"))
    assert r.outcome == "ambiguous" and r.candidate is None
    repos = {c.repo for c in r.candidates}
    # Two different official files; the folder-named path (split_files/vae) decides nothing.
    assert "Comfy-Org/Lumina_Image_2.0_Repackaged" in repos and len(r.candidates) == 2
    assert repos & {"black-forest-labs/FLUX.1-dev", "black-forest-labs/FLUX.1-schnell"}


def test_generic_and_distinctive_query_rules() -> None:
    assert is_generic("ae.safetensors") and is_generic("diffusion_pytorch_model.safetensors")
    assert is_generic("model.safetensors") and is_generic("clip_l.safetensors")
    assert not is_generic("flux1-dev.safetensors") and not is_generic("4x_NMKD-Siax_200k.pth")
    queries = derive_queries("4x_NMKD-Siax_200k.pth")
    assert {"NMKD", "Siax"} <= set(queries) and "4x_NMKD-Siax_200k" in queries
    assert distinctive_tokens("qwen_image_layered_control_bf16.safetensors") == ["qwen", "layered"]
    assert "qwen-image-layered-control" in derive_queries("qwen_image_layered_control_bf16.safetensors")
    context = [
        "anima-base-v1.0.safetensors",
        "qwen_image_vae.safetensors",
        "anima-lllite-depth-1.safetensors",
    ]
    assert context_queries(context)[0] == "anima"


def test_scan_gives_each_planned_model_its_workflows_other_models(tmp_path: Path) -> None:
    doc = {
        "nodes": [
            {"id": 1, "type": "UNETLoader", "widgets_values": ["flux1-dev.safetensors", "default"]},
            {"id": 2, "type": "VAELoader", "widgets_values": ["ae.safetensors"]},
            {
                "id": 3,
                "type": "DualCLIPLoader",
                "widgets_values": ["t5xxl_fp16.safetensors", "clip_l.safetensors"],
            },
        ]
    }
    (tmp_path / "flux.json").write_text(json.dumps(doc), encoding="utf-8")
    report = scan([tmp_path / "flux.json"], None)
    ae = next(m for m in report.missing if m.name == "ae.safetensors")
    assert set(ae.context) == {"flux1-dev.safetensors", "t5xxl_fp16.safetensors", "clip_l.safetensors"}


def test_decide_for_a_generic_name_ignores_the_folder_path_and_needs_context() -> None:
    from comfyfixer.models import Candidate
    from comfyfixer.resolvers.decide import TRUSTED, decide
    from comfyfixer.resolvers.queries import context_relevance

    flux = Candidate(
        "https://h/black-forest-labs/FLUX.1-dev/resolve/main/ae.safetensors",
        "ae.safetensors",
        "huggingface",
        sha256="a" * 64,
        repo="black-forest-labs/FLUX.1-dev",
        path_in_repo="ae.safetensors",
    )
    lumina = Candidate(
        "https://h/Comfy-Org/Lumina/resolve/main/split_files/vae/ae.safetensors",
        "ae.safetensors",
        "huggingface",
        sha256="c" * 64,
        repo="Comfy-Org/Lumina_Image_2.0_Repackaged",
        path_in_repo="split_files/vae/ae.safetensors",
    )
    blind = decide([flux, lumina], "vae", trust=lambda c: TRUSTED, generic=True)
    assert blind.winner is None and blind.ambiguous
    # Without the generic rule the vae/ path would have picked Lumina's file: exactly the guess refused.
    assert decide([flux, lumina], "vae", trust=lambda c: TRUSTED).winner is lumina
    context = ["flux1-dev.safetensors"]
    seen = decide(
        [flux, lumina], "vae", trust=lambda c: TRUSTED, generic=True,
        relevance=lambda c: context_relevance(context, c.repo or ""),
    )  # fmt: skip
    assert seen.winner is flux and "other models" in seen.reason
