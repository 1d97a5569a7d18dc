"""Hostile servers against the download script: every guarantee holds where the bytes move.

Each case runs a rendered script by hand (bash, from another folder, no comfyfixer on the path it
needs) against loopback fakes, and one `comfyfixer run` meets all of them at once and then runs the
scripts it wrote by hand again. The fakes listen on 127.0.0.1, the allowed host here; the same
servers reached as `localhost` stand for a foreign host that is not allowed.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from comfyfixer.config import Settings
from comfyfixer.scripts.render import (
    EXIT_AUTH,
    EXIT_BAD_FORMAT,
    EXIT_COMPRESSED,
    EXIT_ERROR_PAGE,
    EXIT_HOST_REFUSED,
    EXIT_SIZE_MISMATCH,
    EXIT_UNSAFE_PICKLE,
)
from tests import model_bytes
from tests.fakes.civitai import FakeCivitai
from tests.fakes.files import LOGIN_PAGE, FileServer
from tests.fakes.hub import FakeHub
from tests.test_run_e2e import Env, no_final_file_is_corrupt, outcomes, report_of, workflow
from tests.test_script_download import TOKEN, Rig, restricted_path

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

ONLY_127 = Settings(extra_allowed_hosts=("127.0.0.1",)).host_rule
# Every file through the segmented downloader (large files take it), four connections.
SEGMENTED = {"COMFYFIXER_SEGMENT_MIN_MIB": "0", "COMFYFIXER_SEGMENTS": "4"}
DATA = model_bytes.random_safetensors(200_000)
SHA = hashlib.sha256(DATA).hexdigest()


@dataclass
class Hostile:
    rig: Rig
    foreign: FileServer  # serves "evil" bytes; reached as localhost, a host that is not allowed

    def nothing_installed(self, dest: Path) -> None:
        assert not dest.exists(), f"{dest.name} reached its final path"
        assert (
            not dest.with_name(dest.name + ".part").exists()
            or dest.with_name(dest.name + ".part").stat().st_size == 0
        )


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[Hostile]:
    models = tmp_path / "ComfyUI" / "models"
    models.mkdir(parents=True)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    with FileServer() as server, FileServer() as foreign:
        foreign.add("/evil.safetensors", DATA)
        yield Hostile(Rig(server, tmp_path, models, elsewhere), foreign)
    assert not server.errors and not foreign.errors


def _redirect_on_get(h: Hostile, path: str) -> None:
    # HEAD answers as the file would (so a HEAD probe passes); only the GET is sent elsewhere.
    h.rig.server.add(path, DATA)
    location = h.foreign.url_for("/evil.safetensors", alt=True)
    h.rig.server.fail(path, 302, times=None, headers={"Location": location}, methods=["GET"])


@pytest.mark.parametrize("sha256", [None, SHA], ids=["no-hash", "hash"])
@pytest.mark.parametrize("tool", ["curl", "wget", "segments"])
def test_a_redirect_to_a_foreign_host_is_never_followed(
    hostile: Hostile, sha256: str | None, tool: str
) -> None:
    if tool == "wget" and shutil.which("wget") is None:
        pytest.skip("wget is not installed")
    rig = hostile.rig
    _redirect_on_get(hostile, "/m/x.safetensors")
    plan = rig.plan("/m/x.safetensors", sha256=sha256, size=len(DATA), hosts=ONLY_127)
    env = rig.env()
    if tool == "wget":
        env = rig.env(PATH=restricted_path(rig.tmp, without=("curl",)))
    elif tool == "segments":  # the segmented downloader, which large files take
        env = rig.env(**SEGMENTED)
    result = rig.run(rig.script(plan), env)
    assert result.returncode == EXIT_HOST_REFUSED, result.stderr
    last = result.stderr.strip().splitlines()[-1]  # the line the run reports as the reason
    assert "localhost" in last and "not allowed" in last, result.stderr
    assert hostile.foreign.requests == [], "the script asked the foreign host"
    hostile.nothing_installed(plan.dest)


@pytest.mark.parametrize("tail", ["/\xe9vil.safetensors", "/evil.safetensors "], ids=["latin-1", "blank"])
def test_an_odd_location_to_a_foreign_host_is_refused(hostile: Hostile, tail: str) -> None:
    # The hop's streamer judges the Location exactly as the script read it (a byte outside ASCII,
    # trailing blanks) before the fetch may start.
    rig = hostile.rig
    rig.server.add("/m/x.safetensors", DATA)
    location = hostile.foreign.url_for("/evil.safetensors", alt=True).removesuffix("/evil.safetensors") + tail
    rig.server.fail("/m/x.safetensors", 302, times=None, headers={"Location": location}, methods=["GET"])
    plan = rig.plan("/m/x.safetensors", sha256=SHA, size=len(DATA), hosts=ONLY_127)
    result = rig.run(rig.script(plan))
    assert result.returncode == EXIT_HOST_REFUSED, result.stderr
    assert "localhost" in result.stderr and "not allowed" in result.stderr
    assert hostile.foreign.requests == [], "the script asked the foreign host"
    hostile.nothing_installed(plan.dest)


def test_the_token_never_follows_a_redirect_to_another_origin(hostile: Hostile) -> None:
    # Same host, other port: allowed, but another origin, so the token stays behind.
    rig = hostile.rig
    other = hostile.foreign
    other.add("/cdn/x.safetensors", DATA)
    rig.server.redirect("/hub/x.safetensors", other.url_for("/cdn/x.safetensors"))
    plan = rig.plan("/hub/x.safetensors", sha256=SHA, size=len(DATA), auth="huggingface", hosts=ONLY_127)
    result = rig.run(rig.script(plan), rig.env(HF_TOKEN=TOKEN))
    assert result.returncode == 0, result.stderr
    assert rig.server.requests[0].authorization == f"Bearer {TOKEN}"
    assert other.authorization_seen == []


@pytest.mark.parametrize("segments", [False, True], ids=["one-stream", "segmented"])
def test_an_endless_body_stops_at_the_published_size(hostile: Hostile, segments: bool) -> None:
    rig = hostile.rig
    rig.server.endless("/m/e.safetensors", announce=256 << 10)
    plan = rig.plan("/m/e.safetensors", sha256=None, size=256 << 10, hosts=ONLY_127)
    result = rig.run(rig.script(plan), rig.env(**(SEGMENTED if segments else {})))
    assert result.returncode == EXIT_SIZE_MISMATCH, result.stderr
    assert "more bytes than the file has" in result.stderr
    hostile.nothing_installed(plan.dest)
    assert not plan.part.exists(), "the oversized part was left in models/"
    # The transfer stopped near the cap (socket buffers aside), far below what the fake would send.
    assert rig.server.bytes_sent("/m/e.safetensors") < 16 << 20


def test_a_compressed_answer_is_refused(hostile: Hostile) -> None:
    rig = hostile.rig
    rig.server.add("/m/z.safetensors", gzip.compress(DATA), headers={"Content-Encoding": "gzip"})
    plan = rig.plan("/m/z.safetensors", sha256=None, size=None, hosts=ONLY_127)
    result = rig.run(rig.script(plan))
    assert result.returncode == EXIT_COMPRESSED, result.stderr
    assert rig.server.requests_to("/m/z.safetensors", "GET")[0].headers["accept-encoding"] == "identity"
    hostile.nothing_installed(plan.dest)


@pytest.mark.parametrize("segments", [False, True], ids=["one-stream", "segmented"])
@pytest.mark.parametrize(
    ("name", "data", "why"),
    [
        ("g.safetensors", gzip.compress(DATA), "gzip-compressed data"),
        ("b.safetensors", model_bytes.bogus_safetensors(), "implausible safetensors header length"),
        ("z.gguf", model_bytes.torch_checkpoint(), "a .gguf file should be gguf"),
    ],
)
def test_a_file_that_is_not_what_its_name_says_never_reaches_its_path(
    hostile: Hostile, name: str, data: bytes, why: str, segments: bool
) -> None:
    rig = hostile.rig
    rig.server.add(f"/m/{name}", data)
    plan = rig.plan(f"/m/{name}", name=name, sha256=None, size=len(data), hosts=ONLY_127)
    result = rig.run(rig.script(plan), rig.env(**(SEGMENTED if segments else {})))
    assert result.returncode == EXIT_BAD_FORMAT, result.stderr
    assert why in result.stderr
    hostile.nothing_installed(plan.dest)
    assert plan.dest.with_name(name + ".rejected").read_bytes() == data


def test_a_pickle_that_forks_a_process_is_refused(hostile: Hostile) -> None:
    rig = hostile.rig
    data = model_bytes.legacy_torch_checkpoint(model_bytes.fork_exec_pickle())
    rig.server.add("/m/sam.pt", data)
    plan = rig.plan("/m/sam.pt", name="sam.pt", sha256=None, size=len(data), hosts=ONLY_127)
    result = rig.run(rig.script(plan))
    assert result.returncode == EXIT_UNSAFE_PICKLE, result.stderr
    assert "_posixsubprocess.fork_exec" in result.stderr
    hostile.nothing_installed(plan.dest)


def test_a_torch_checkpoint_is_installed(hostile: Hostile) -> None:
    rig = hostile.rig
    data = model_bytes.torch_checkpoint()
    rig.server.add("/m/ok.pth", data)
    plan = rig.plan(
        "/m/ok.pth", name="ok.pth", sha256=hashlib.sha256(data).hexdigest(), size=len(data), hosts=ONLY_127
    )
    result = rig.run(rig.script(plan))
    assert result.returncode == 0, result.stderr
    assert plan.dest.read_bytes() == data


def test_an_html_page_is_refused_and_civitai_s_says_what_to_do(hostile: Hostile) -> None:
    rig = hostile.rig
    rig.server.html("/m/page.safetensors")
    plan = rig.plan("/m/page.safetensors", sha256=None, size=None, hosts=ONLY_127)
    result = rig.run(rig.script(plan))
    assert result.returncode == EXIT_ERROR_PAGE, result.stderr
    hostile.nothing_installed(plan.dest)
    rig.server.html("/api/download/models/4242")
    civitai = rig.plan("/api/download/models/4242", sha256=None, size=None, auth="civitai", hosts=ONLY_127)
    result = rig.run(rig.script(civitai))
    assert result.returncode == EXIT_AUTH, result.stderr
    assert "set CIVITAI_API_TOKEN" in result.stderr
    hostile.nothing_installed(civitai.dest)


# ---------------------------------------------------------------- the pipeline meets them all


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Env]:
    root = tmp_path / "ComfyUI"
    (root / "models" / "loras").mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    with FileServer() as files, FakeHub() as hub, FakeCivitai() as civitai:
        yield Env(files, hub, civitai, root, work)
        errors = files.errors + hub.errors + civitai.errors
    assert not errors


# name -> (outcome of the run, exit code of its script when run again by hand)
EXPECTED: dict[str, tuple[str, int]] = {
    "redirect_nohash.safetensors": ("download_failed", EXIT_HOST_REFUSED),
    "redirect_hash.safetensors": ("download_failed", EXIT_HOST_REFUSED),
    "endless.safetensors": ("verify_failed", EXIT_SIZE_MISMATCH),
    "gz_encoded.safetensors": ("download_failed", EXIT_COMPRESSED),
    "gz_bytes.safetensors": ("verify_failed", EXIT_BAD_FORMAT),
    "bogus.safetensors": ("verify_failed", EXIT_BAD_FORMAT),
    "sam_fork.pt": ("verify_failed", EXIT_UNSAFE_PICKLE),
    "civitai_login.safetensors": ("source_error", -1),  # refused by the probe: no script is written
    "ae.safetensors": ("downloaded", 0),
}


def test_the_run_and_its_scripts_by_hand_refuse_every_hostile_server(world: Env) -> None:
    fs = world.files
    foreign = fs.url_for("/evil.safetensors", alt=True)  # localhost: not allowed in this run
    fs.add("/evil.safetensors", DATA)
    hints: list[tuple[str, str | None, str | None]] = []
    for name, sha in (("redirect_nohash", None), ("redirect_hash", SHA)):
        fs.add(f"/f/{name}.safetensors", DATA)
        fs.fail(f"/f/{name}.safetensors", 302, times=None, headers={"Location": foreign}, methods=["GET"])
        hints.append((f"{name}.safetensors", fs.url_for(f"/f/{name}.safetensors"), sha))
    fs.endless("/f/endless.safetensors", announce=256 << 10)
    fs.add("/f/gz_encoded.safetensors", DATA)
    fs.fail(
        "/f/gz_encoded.safetensors",
        200,
        times=None,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream"},
        body=gzip.compress(DATA),
        methods=["GET"],
    )
    fs.add("/f/gz_bytes.safetensors", gzip.compress(DATA))
    fs.add("/f/bogus.safetensors", model_bytes.bogus_safetensors())
    fs.add("/f/sam_fork.pt", model_bytes.legacy_torch_checkpoint(model_bytes.fork_exec_pickle()))
    for name in ("endless", "gz_encoded", "gz_bytes", "bogus"):
        hints.append((f"{name}.safetensors", fs.url_for(f"/f/{name}.safetensors"), None))
    hints.append(("sam_fork.pt", fs.url_for("/f/sam_fork.pt"), None))
    world.civitai.fail(
        "/api/download/models/4242",
        200,
        times=None,
        headers={"Content-Type": "text/html; charset=utf-8"},
        body=LOGIN_PAGE,
    )
    hints.append(("civitai_login.safetensors", f"{world.civitai.url}/api/download/models/4242", None))
    # FLUX.1-dev's VAE: gated on the Hub, found through the catalogue (no hint), HF_TOKEN set.
    ae = model_bytes.random_safetensors(150_000)
    repo = world.hub.add_repo("black-forest-labs/FLUX.1-dev", gated="auto")
    repo.granted.add("hf_granted_token")
    world.hub.add_file("black-forest-labs/FLUX.1-dev", "ae.safetensors", ae)
    catalogue = fs.set_catalogue(
        [
            {
                "name": "FLUX.1 VAE",
                "type": "lora",
                "base": "FLUX.1",
                "save_path": "loras",
                "description": "",
                "reference": "https://huggingface.co/black-forest-labs/FLUX.1-dev",
                "filename": "ae.safetensors",
                "url": "https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/ae.safetensors",
                "size": "335MB",
            }
        ]
    )
    hints.append(("ae.safetensors", None, None))
    wf = workflow(world.work / "hostile.json", hints)
    environ = world.environ()
    environ.update(
        COMFYFIXER_ALLOW_HOSTS="127.0.0.1", COMFYFIXER_CATALOG_URL=catalogue, HF_TOKEN="hf_granted_token"
    )
    proc = subprocess.run(
        world.command(wf), cwd=world.work, env=environ, capture_output=True, text=True, timeout=240
    )
    report = report_of(proc)
    assert outcomes(report) == {name: outcome for name, (outcome, _) in EXPECTED.items()}, proc.stderr
    no_final_file_is_corrupt(world, report)
    by_name = {m["name"]: m for m in report["models"]}
    assert "localhost" in by_name["redirect_nohash.safetensors"]["reason"]
    assert "_posixsubprocess.fork_exec" in by_name["sam_fork.pt"]["reason"]
    assert "set CIVITAI_API_TOKEN" in by_name["civitai_login.safetensors"]["reason"]
    assert by_name["ae.safetensors"]["source"] == "catalogue"
    assert (world.loras / "ae.safetensors").read_bytes() == ae
    assert fs.requests_to("/evil.safetensors") == [], "a script fetched from the foreign host"
    assert "hf_granted_token" not in "".join(p.read_text() for p in (world.work / "output").glob("*.sh"))
    # The same scripts, run by hand from another folder: the same refusals, and the gated file again.
    (world.loras / "ae.safetensors").unlink()
    for name, (_, code) in EXPECTED.items():
        script = by_name[name]["script"]
        if code < 0:
            assert script is None
            continue
        again = subprocess.run(
            ["bash", script],
            cwd=world.root,
            env={**environ, "COMFYFIXER_RETRY_DELAY": "0"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert again.returncode == code, (name, again.stderr)
    assert (world.loras / "ae.safetensors").read_bytes() == ae
    assert fs.requests_to("/evil.safetensors") == []


@pytest.mark.skipif(shutil.which("wget") is None, reason="wget is not installed")
def test_wget_follows_allowed_redirects_one_checked_hop_at_a_time(hostile: Hostile) -> None:
    rig = hostile.rig
    rig.server.add("/cdn/x.safetensors", DATA)
    rig.server.redirect("/a/x.safetensors", "/b/x.safetensors", status=301)
    rig.server.redirect("/b/x.safetensors", rig.server.url_for("/cdn/x.safetensors"), status=307)
    plan = rig.plan("/a/x.safetensors", sha256=SHA, size=len(DATA), hosts=ONLY_127)
    result = rig.run(rig.script(plan), rig.env(PATH=restricted_path(rig.tmp, without=("curl",))))
    assert result.returncode == 0, result.stderr
    assert plan.dest.read_bytes() == DATA
    assert [r.path for r in rig.server.requests] == [
        "/a/x.safetensors",
        "/b/x.safetensors",
        "/cdn/x.safetensors",
    ]
