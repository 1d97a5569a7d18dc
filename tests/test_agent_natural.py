"""The agent with an independent-style model (`tests/fakes/natural_llm.py`) over a world where only the
agent can find most files: ≥ 90 % found, 0 wrong, whatever shape the model writes its calls and answers in.

Every model here is first put through the real direct search (`Finder.find`), which must come back
not_found: these are the "agent-only" models the issue measures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfyfixer.agent import AgentLimits, build_agent
from comfyfixer.agent.history import HISTORY_FILE
from comfyfixer.config import Settings
from comfyfixer.events import AgentAsked, AgentConcluded, Event
from comfyfixer.http import build_client
from comfyfixer.models import MissingModel
from comfyfixer.resolvers.catalogue import Catalogue
from comfyfixer.resolvers.finder import Finder
from comfyfixer.retry import RetryPolicy
from tests.fakes.civitai import FakeCivitai
from tests.fakes.fixtures import hf_env  # noqa: F401
from tests.fakes.hub import FakeHub
from tests.fakes.llm import FakeLLM
from tests.fakes.natural_llm import NaturalModel, Style
from tests.fakes.world import local_settings

FAST = RetryPolicy(attempts=2, base_wait=0.0, max_backoff=0.0, server_wait_scale=0.0)


def _bytes(tag: str) -> bytes:
    return b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + tag.encode() * 200


@dataclasses.dataclass(frozen=True)
class Placed:
    file: str
    directory: str
    repo: str
    path: str
    query: str
    style: Style


# Repos whose names share no word with the file: the direct search cannot reach them; a model that knows
# the family can. Every call shape and every answer shape appears.
AGENT_ONLY = [
    Placed(
        "detail_tweaker_xl.safetensors",
        "loras",
        "artisan-lab/sdxl-enhancers",
        "loras/detail_tweaker_xl.safetensors",
        "sdxl enhancers",
        Style("native", "repo_path"),
    ),
    Placed(
        "4x_NMKD-Siax_200k.pth",
        "upscale_models",
        "upscale-guild/esrgan-zoo",
        "4x_NMKD-Siax_200k.pth",
        "esrgan zoo",
        Style("json", "url"),
    ),
    Placed(
        "vae-ft-mse-840000-ema-pruned.safetensors",
        "vae",
        "northwind-ml/autoencoder-finetunes",
        "vae-ft-mse-840000-ema-pruned.safetensors",
        "northwind autoencoder",
        Style("fenced", "file_name"),
    ),
    Placed(
        "control_v11p_sd15_openpose.pth",
        "controlnet",
        "posecraft/guidance-nets",
        "control_v11p_sd15_openpose.pth",
        "posecraft guidance",
        Style("tags", "repo_basename"),
    ),
    Placed(
        "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
        "text_encoders",
        "lumen-video/encoders-repack",
        "split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
        "lumen encoders",
        Style("native", "url"),
    ),
    Placed(
        "clip_vision_h.safetensors",
        "clip_vision",
        "lumen-video/vision-towers",
        "split_files/clip_vision/clip_vision_h.safetensors",
        "lumen vision towers",
        Style("json", "repo_basename"),
    ),
    Placed(
        "ip-adapter-plus_sdxl_vit-h.safetensors",
        "ipadapter",
        "styletransfer-lab/conditioning-pack",
        "sdxl_models/ip-adapter-plus_sdxl_vit-h.safetensors",
        "styletransfer conditioning",
        Style("fenced", "repo_path"),
    ),
    Placed(
        "face_yolov8m.pt",
        "ultralytics",
        "retouch-tools/detector-weights",
        "face_yolov8m.pt",
        "retouch detector",
        Style("tags", "file_name"),
    ),
    Placed(
        "hunyuan_video_vae_bf16.safetensors",
        "vae",
        "framesmith/decoder-release",
        "split_files/vae/hunyuan_video_vae_bf16.safetensors",
        "framesmith decoder",
        Style("native", "file_name"),
    ),
    Placed(
        "RealESRGAN_x4plus_anime_6B.pth",
        "upscale_models",
        "cel-shade/restoration-weights",
        "RealESRGAN_x4plus_anime_6B.pth",
        "cel-shade restoration",
        Style("json", "repo_path"),
    ),
]
# Known to no one: the model must say so, and nothing may be installed.
NOWHERE = [
    ("my_private_lora_v7.safetensors", "loras", None),
    ("mystery_vae_q9.safetensors", "vae", "sdxl enhancers"),
]


@dataclasses.dataclass
class World:
    hub: FakeHub
    finder: Finder
    settings: Settings
    expected: dict[str, str]  # file name -> sha256 of the right bytes


@pytest.fixture
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    request.getfixturevalue("hf_env")
    from huggingface_hub import HfApi

    with FakeHub() as hub, FakeCivitai() as civitai:
        expected: dict[str, str] = {}
        for p in AGENT_ONLY:
            expected[p.file] = hub.add_file(p.repo, p.path, _bytes(p.file)).sha256
            # Traps: the same name with other bytes in a re-upload repo that matches the search words
            # better, and a near-miss name next to the real file.
            hub.add_file(f"modelzoo-reupload/{p.query.replace(' ', '-')}", p.file, _bytes("decoy" + p.file))
            stem, dot, ext = p.file.rpartition(".")
            hub.add_file(p.repo, f"{stem}_v2{dot}{ext}", _bytes("v2" + p.file))
        settings = local_settings(
            hub.url,
            civitai.url,
            log_dir=tmp_path / "log",
            llm_model="qwen2.5-coder",
            llm_api_key="sk-natural-key",
        )
        catalogue = Catalogue.from_entries(settings, [])
        with Finder(
            settings,
            http=build_client(),
            hf_api=HfApi(endpoint=hub.url),
            catalogue=catalogue,
            policy=FAST,
        ) as finder:
            yield World(hub, finder, settings, expected)
        assert not hub.errors and not civitai.errors


def test_an_independent_model_finds_the_agent_only_models_and_nothing_wrong(world: World) -> None:
    knowledge = {p.file.lower(): p.query for p in AGENT_ONLY}
    knowledge.update({name.lower(): q for name, _, q in NOWHERE if q})
    model = NaturalModel(knowledge, {p.file.lower(): p.style for p in AGENT_ONLY})
    events: list[Event] = []
    right: list[str] = []
    wrong: list[str] = []
    missed: list[tuple[str, str]] = []
    not_found: list[str] = []
    with FakeLLM(("qwen2.5-coder",)) as llm:
        llm.responder = model
        settings = dataclasses.replace(world.settings, llm_base_url=llm.base_url)
        with llm.client() as client:
            agent = build_agent(
                settings,
                world.finder,
                client=client,
                retry=FAST,
                limits=AgentLimits(time_budget=60),
                sink=events.append,
            )
            assert agent is not None
            targets = [(p.file, p.directory) for p in AGENT_ONLY] + [(n, d) for n, d, _ in NOWHERE]
            for name, directory in targets:
                missing = MissingModel(name, directory, workflows=["w.json"], node_types=["Loader"])
                prior = world.finder.find(missing)
                # Truly agent-only: no direct source settles it (a re-upload decoy may be seen, never taken).
                assert prior.outcome in ("not_found", "ambiguous") and prior.candidate is None, prior.reason
                res = agent.search(missing, prior)
                c = res.candidate
                if res.outcome == "found" and c is not None:
                    (right if world.expected.get(name) == c.sha256 else wrong).append(name)
                    # The product's own URL (the fake hub), never the model's huggingface.co text.
                    assert c.url.startswith(world.hub.url), c.url
                elif name in world.expected:
                    missed.append((name, res.reason))
                else:
                    not_found.append(name)
            assert agent.available
        llm.assert_done()
    assert not wrong, wrong
    assert len(right) >= 0.9 * len(AGENT_ONLY), missed
    assert sorted(not_found) == sorted(n for n, _, _ in NOWHERE)
    # The screen: one "asking" and one conclusion per model, in order.
    asked = [e.name for e in events if isinstance(e, AgentAsked)]
    concluded = [e for e in events if isinstance(e, AgentConcluded)]
    assert asked == [c.name for c in concluded] and len(asked) == len(AGENT_ONLY) + len(NOWHERE)
    found = {c.name: c for c in concluded if c.outcome == "found"}
    ip = found["ip-adapter-plus_sdxl_vit-h.safetensors"]
    assert ip.source == "huggingface"
    assert (
        ip.where == "styletransfer-lab/conditioning-pack/sdxl_models/ip-adapter-plus_sdxl_vit-h.safetensors"
    )
    # The history holds every model's task and every tool call with its result.
    history = (world.settings.log_dir / HISTORY_FILE).read_text(encoding="utf-8")
    for name, _ in targets:
        assert f"task: Find a download source for this ComfyUI model file.\\n\\nFile name: {name}" in history
    assert history.count("] tool: ") == model.calls_made
    assert '"shape": "tags"' in history and '"shape": "fenced"' in history and '"shape": "json"' in history
    assert "sk-natural-key" not in history
