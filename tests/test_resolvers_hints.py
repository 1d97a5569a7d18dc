"""Workflow hints, URL hygiene, derived queries and the decision rules (pure functions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfyfixer.config import Settings
from comfyfixer.models import Candidate, Hint, MissingModel
from comfyfixer.resolvers.decide import decide, folder_matches
from comfyfixer.resolvers.hints import plan_hints
from comfyfixer.resolvers.queries import core_tokens, derive_queries, relevance
from comfyfixer.resolvers.urls import classify, clean_url

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LOCAL = Settings(
    hf_endpoint="http://127.0.0.1:9000",
    hf_endpoint_overridden=True,
    civitai_url="http://127.0.0.1:9001",
    civitai_url_overridden=True,
    extra_allowed_hosts=("127.0.0.1",),
)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (
            "https://huggingface.co/Comfy-Org/sigclip_vision_384/resolve/main/sigclip_vision_patch14_384.safetensors?download=true)",
            "https://huggingface.co/Comfy-Org/sigclip_vision_384/resolve/main/sigclip_vision_patch14_384.safetensors",
        ),
        (
            "https://huggingface.co/Kijai/HunyuanVideo_comfy/blob/main/FramePackI2V_HY_fp8_e4m3fn.safetensors",
            "https://huggingface.co/Kijai/HunyuanVideo_comfy/resolve/main/FramePackI2V_HY_fp8_e4m3fn.safetensors",
        ),
        (
            "<https://civitai.com/api/download/models/1513385?type=Model&format=SafeTensor>.",
            "https://civitai.com/api/download/models/1513385?type=Model&format=SafeTensor",
        ),
        ("ftp://example.com/x.safetensors", None),
        ("not a url", None),
    ],
)
def test_clean_url(raw: str, clean: str | None) -> None:
    assert clean_url(raw) == clean


def test_overridden_endpoints_rewrite_hub_urls() -> None:
    url = clean_url("https://huggingface.co/a/b/blob/main/sub/x.safetensors?download=true", LOCAL)
    assert url == "http://127.0.0.1:9000/a/b/resolve/main/sub/x.safetensors"
    cv = clean_url("https://civitai.com/api/download/models/5", LOCAL)
    assert cv == "http://127.0.0.1:9001/api/download/models/5"
    # Without the override, the real hosts stay.
    assert clean_url("https://huggingface.co/a/b/resolve/main/x.pt", Settings()) == (
        "https://huggingface.co/a/b/resolve/main/x.pt"
    )


def test_every_corpus_hint_url_cleans_to_a_file_or_page() -> None:
    truth = SHARED / "corpus" / "workflows" / "truth.jsonl"
    if not truth.is_file():
        pytest.skip(f"shared corpus not found at {truth}")
    kinds = set()
    for line in truth.read_text().splitlines():
        row = json.loads(line)
        if not row["url"]:
            continue
        url = clean_url(row["url"])
        assert url is not None and "download=true" not in url and not url.endswith(")")
        kinds.add(classify(url, Settings()).kind)
    assert kinds <= {"hf_file", "civitai_download"}


def test_classify_links() -> None:
    assert classify("http://127.0.0.1:9000/city96/FLUX.1-dev-gguf", LOCAL).kind == "hf_repo"
    page = classify("https://civitai.com/models/12/name?modelVersionId=34", Settings())
    assert (page.kind, page.model_id, page.version_id) == ("civitai_model", 12, 34)
    hf = classify("http://127.0.0.1:9000/o/r/resolve/main/split_files/vae/v.safetensors", LOCAL)
    assert (hf.kind, hf.repo, hf.path, hf.file_name) == (
        "hf_file",
        "o/r",
        "split_files/vae/v.safetensors",
        "v.safetensors",
    )


def _model(name: str, *hints: Hint, directory: str = "vae") -> MissingModel:
    return MissingModel(name=name, directory=directory, hints=list(hints))


def test_note_link_must_name_the_file() -> None:
    model = _model(
        "sub/wan_2.1_vae.safetensors",
        Hint("https://huggingface.co/o/r/resolve/main/wan_2.1_vae_fp8.safetensors", source="note"),
        Hint("https://huggingface.co/o/r/resolve/main/WAN_2.1_VAE.safetensors", source="note"),
    )
    plan = plan_hints(model, LOCAL)
    assert [c.filename for c, _ in plan.candidates] == ["WAN_2.1_VAE.safetensors"]
    assert plan.candidates[0][1] is True  # the validator also checks the served name
    assert "wan_2.1_vae_fp8" in plan.rejected[0]


def test_explicit_pairing_keeps_a_differently_named_remote_file() -> None:
    sha = "ab" * 32
    model = _model(
        "LBM_relighting.safetensors",
        Hint(
            "https://huggingface.co/jasperai/LBM_relighting/resolve/main/model.safetensors",
            hash=sha.upper(),
            hash_type="sha256",
        ),
    )
    plan = plan_hints(model, LOCAL)
    (candidate, check_name), *_ = plan.candidates
    assert candidate.filename == "model.safetensors" and check_name is False
    assert candidate.sha256 == sha and candidate.repo == "jasperai/LBM_relighting"
    assert "pairs" in candidate.note


def test_repo_and_model_page_links_are_places_to_look() -> None:
    model = _model(
        "x.safetensors",
        Hint("https://huggingface.co/city96/FLUX.1-dev-gguf", source="note"),
        Hint("https://civitai.com/models/7?modelVersionId=8", source="note"),
    )
    plan = plan_hints(model, LOCAL)
    assert not plan.candidates
    assert [link.kind for link in plan.links] == ["hf_repo", "civitai_model"]


def test_derived_queries_strip_precision_and_quantisation() -> None:
    assert core_tokens("umt5_xxl_fp8_e4m3fn_scaled.safetensors") == ["umt5", "xxl"]
    assert core_tokens("Wan2.2-T2V-A14B-HighNoise-Q6_K.gguf") == ["Wan2.2", "T2V", "A14B", "HighNoise"]
    queries = derive_queries("wan2.1-i2v-14b-720p-Q4_K_M.gguf")
    assert queries[0] == "wan2.1-i2v-14b-720p-Q4_K_M"
    assert "Wan_2.1" in queries and "wan" in queries
    assert len(queries) == len({q.lower() for q in queries}) <= 8  # bounded: each is a Hub request
    assert derive_queries("ae.safetensors") == []  # too short to search for
    assert relevance("wan_2.1_vae.safetensors", "Comfy-Org/Wan_2.1_ComfyUI_repackaged") > relevance(
        "wan_2.1_vae.safetensors", "Comfy-Org/Wan_2.2_ComfyUI_Repackaged"
    )


def _cand(url: str, sha: str | None, *, trusted: bool = False, path: str | None = None) -> Candidate:
    return Candidate(
        url=url, filename="clip_l.safetensors", source="huggingface", sha256=sha, authoritative=trusted,
        path_in_repo=path, repo=url.split("/")[3] + "/" + url.split("/")[4],
    )  # fmt: skip


def test_same_bytes_in_two_places_is_one_file() -> None:
    a = _cand("http://h/a/r/resolve/main/clip_l.safetensors", "aa" * 32)
    b = _cand("http://h/b/r/resolve/main/clip_l.safetensors", "aa" * 32, trusted=True)
    decision = decide([a, b], "text_encoders")
    assert decision.winner == b and len(decision.groups) == 1


def test_look_alikes_with_nothing_to_decide_are_ambiguous() -> None:
    a = _cand("http://h/u1/r/resolve/main/clip_l.safetensors", "aa" * 32)
    b = _cand("http://h/u2/r/resolve/main/clip_l.safetensors", "bb" * 32)
    decision = decide([a, b], "text_encoders")
    assert decision.winner is None and decision.ambiguous and len(decision.groups) == 2


def test_trusted_publisher_then_folder_path_decide() -> None:
    decoy = _cand("http://h/u1/r/resolve/main/text_encoders/clip_l.safetensors", "aa" * 32,
                  path="text_encoders/clip_l.safetensors")  # fmt: skip
    real = _cand(
        "http://h/Comfy-Org/r/resolve/main/clip_l.safetensors",
        "bb" * 32,
        trusted=True,
        path="clip_l.safetensors",
    )
    assert decide([decoy, real], "text_encoders").winner == real
    in_folder = _cand("http://h/Comfy-Org/s/resolve/main/split_files/clip/clip_l.safetensors", "cc" * 32,
                      trusted=True, path="split_files/clip/clip_l.safetensors")  # fmt: skip
    assert folder_matches(in_folder, "text_encoders")  # `clip` is an alias of text_encoders
    assert decide([real, in_folder], "text_encoders").winner == in_folder


def test_workflow_hash_decides_and_excludes() -> None:
    a = _cand("http://h/u1/r/resolve/main/clip_l.safetensors", "aa" * 32)
    b = _cand("http://h/u2/r/resolve/main/clip_l.safetensors", "bb" * 32)
    assert decide([a, b], None, expected_sha256="BB" * 32).winner == b
    none = decide([a, b], None, expected_sha256="cc" * 32)
    assert none.winner is None and not none.ambiguous
