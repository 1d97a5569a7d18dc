"""pytest fixtures for the fakes. `tests/conftest.py` re-exports them with
`from tests.fakes.fixtures import *  # noqa: F403`.

Every server fixture is function-scoped (a start costs about a millisecond) and fails the test at
teardown if a handler crashed (`FakeServer.errors`), so a bug in a fake cannot hide as a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.civitai import FakeCivitai
from tests.fakes.files import FileServer
from tests.fakes.hub import FakeHub
from tests.fakes.server import FakeServer
from tests.fakes.world import World, WorldEndpoints, start_world

SHARED = Path(__file__).resolve().parents[2].parent / "shared"

__all__ = [
    "corpus_world",
    "fake_civitai",
    "fake_hub",
    "file_server",
    "hf_env",
    "shared_dir",
    "world_endpoints",
]


def _check(*servers: FakeServer) -> None:
    errors = [e for s in servers for e in s.errors]
    if errors:
        pytest.fail("fake server handler crashed:\n" + "\n".join(errors), pytrace=False)


@pytest.fixture
def shared_dir() -> Path:
    """`../shared` beside the repo; skips the test when it is absent."""
    if not (SHARED / "corpus" / "workflows" / "truth.jsonl").is_file():
        pytest.skip(f"shared folder not found at {SHARED} (corpus and references live there)")
    return SHARED


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    """A started `FileServer` (file host / CDN) on 127.0.0.1."""
    with FileServer() as fs:
        yield fs
    _check(fs)


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    """A started, empty `FakeHub` (any bearer token counts as a valid user) with its CDN."""
    with FakeHub() as hub:
        yield hub
    _check(hub, hub.cdn)


@pytest.fixture
def fake_civitai() -> Iterator[FakeCivitai]:
    """A started, empty `FakeCivitai` (any non-empty key is valid) with its storage."""
    with FakeCivitai() as civ:
        yield civ
    _check(civ, civ.storage)


@pytest.fixture(scope="session")
def corpus_world() -> World:
    """The world built from the shared corpus (seed 0), built once per session. Do not mutate it."""
    if not (SHARED / "corpus" / "workflows" / "truth.jsonl").is_file():
        pytest.skip(f"shared folder not found at {SHARED} (the corpus world needs truth.jsonl)")
    return World.from_corpus(SHARED, seed=0)


@pytest.fixture
def world_endpoints(corpus_world: World) -> Iterator[WorldEndpoints]:
    """The corpus world, started for one test (logs cleared at start)."""
    with start_world(corpus_world) as endpoints:
        yield endpoints
    w = corpus_world
    _check(w.hub, w.hub.cdn, w.civitai, w.civitai.storage, w.files)


@pytest.fixture
def hf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Environment for the real huggingface_hub client: tmp cache, no Xet, no telemetry, no token.

    The endpoint is *not* set here (its port is only known once a hub starts): pass `endpoint=`
    explicitly, as `huggingface_hub` reads HF_ENDPOINT once at import. Returns the HF_HOME dir.
    """
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    for name, value in {
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DOWNLOAD_TIMEOUT": "5",
        "HF_HUB_ETAG_TIMEOUT": "5",
    }.items():
        monkeypatch.setenv(name, value)
    for name in (
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_ENDPOINT",
        "HF_OIDC_RESOURCE",
    ):
        monkeypatch.delenv(name, raising=False)
    # huggingface_hub reads these once at import; the env alone is too late if it is already imported.
    from huggingface_hub import constants

    patches: dict[str, object] = {
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_OFFLINE": False,
        "HF_HUB_ETAG_TIMEOUT": 5,
        "HF_HUB_DOWNLOAD_TIMEOUT": 5,
    }
    for attr, patched in patches.items():
        if hasattr(constants, attr):
            monkeypatch.setattr(constants, attr, patched)
    return home
