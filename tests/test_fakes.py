"""The fakes speak the real wire shapes: real huggingface_hub against FakeHub, httpx against the rest.

Shapes are checked against ../shared/reference/samples where a sample exists.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import FakeCivitai, FakeHub, FileServer, World, sparse_file, start_world
from tests.fakes.content import model_bytes
from tests.fakes.files import parse_range
from tests.fakes.world import WORLD_CIVITAI_TOKEN, WORLD_HF_TOKEN, WorldEndpoints, world_key

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SAMPLES = SHARED / "reference" / "samples"


def sample(name: str) -> Any:
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"reference sample {path} not found (../shared is absent)")
    return json.loads(path.read_text())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# 1. File server / CDN
# ---------------------------------------------------------------------------------------------


def test_range_requests_answer_206_416_and_full_headers(file_server: FileServer) -> None:
    data = bytes(range(256)) * 40
    file_server.add("/m/x.safetensors", data)
    url = file_server.url_for("/m/x.safetensors")
    with httpx.Client() as client:
        full = client.get(url)
        part = client.get(url, headers={"Range": "bytes=100-199"})
        tail = client.get(url, headers={"Range": "bytes=10000-"})
        suffix = client.get(url, headers={"Range": "bytes=-5"})
        bad = client.get(url, headers={"Range": f"bytes={len(data)}-"})
        head = client.head(url)
    assert full.status_code == 200 and full.content == data
    assert full.headers["content-type"] == "application/octet-stream"
    assert full.headers["accept-ranges"] == "bytes"
    assert full.headers["etag"] == f'"{sha(data)}"'
    assert 'filename="x.safetensors"' in full.headers["content-disposition"]
    assert "content-encoding" not in full.headers
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert tail.status_code == 206 and tail.content == data[10000:]
    assert suffix.content == data[-5:]
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(data)}"
    assert (
        head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(data))
    )
    assert [(r.method, r.range, r.status) for r in file_server.requests][:2] == [
        ("GET", None, 200),
        ("GET", "bytes=100-199", 206),
    ]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-", (0, 9)),
        ("bytes=3-99", (3, 9)),
        ("bytes=-3", (7, 9)),
        ("bytes=10-", "unsatisfiable"),
        ("bytes=5-2", None),
        ("bytes=0-1,4-5", None),
        ("items=1-2", None),
        (None, None),
    ],
)
def test_parse_range(header: str | None, expected: object) -> None:
    assert parse_range(header, 10) == expected


def test_redirect_chain_across_origins_drops_authorization(file_server: FileServer) -> None:
    with FileServer() as other:
        other.add("/final.bin", b"payload")
        file_server.redirect("/start", "/hop2", status=301)  # relative
        file_server.redirect("/hop2", file_server.url_for("/hop3", alt=True), status=307)  # localhost origin
        file_server.redirect("/hop3", other.url_for("/final.bin"), status=302)  # another server
        with httpx.Client(follow_redirects=True) as client:
            r = client.get(file_server.url_for("/start"), headers={"Authorization": "Bearer secret"})
        assert r.content == b"payload"
        assert [h.status_code for h in r.history] == [301, 307, 302]
        hosts = [q.host for q in file_server.requests]
        assert hosts[0] is not None and hosts[0].startswith("127.0.0.1")
        assert hosts[2] is not None and hosts[2].startswith("localhost")
        assert file_server.requests[0].authorization == "Bearer secret"
        assert other.authorization_seen == []  # httpx strips it on the cross-origin hop
        assert other.errors == []


def test_html_login_json_error_and_scripted_failures(file_server: FileServer) -> None:
    file_server.add("/model.safetensors", b"abc")
    file_server.html("/login-wall.safetensors")
    file_server.json_error("/api-error.safetensors", {"error": "Unauthorized"}, status=401)
    file_server.fail("/model.safetensors", 429, times=2, headers={"Retry-After": "3"})
    with httpx.Client() as client:
        page = client.get(file_server.url_for("/login-wall.safetensors"))
        err = client.get(file_server.url_for("/api-error.safetensors"))
        statuses = [client.get(file_server.url_for("/model.safetensors")) for _ in range(3)]
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<html" in page.text
    assert err.status_code == 401 and err.json() == {"error": "Unauthorized"}
    assert [r.status_code for r in statuses] == [429, 429, 200]
    assert statuses[0].headers["retry-after"] == "3" and statuses[2].content == b"abc"


def test_dropped_connection_then_resume(file_server: FileServer) -> None:
    data = model_bytes("x.safetensors", "drop") * 20
    file_server.add("/x.safetensors", data)
    file_server.drop("/x.safetensors", after=1000)
    url = file_server.url_for("/x.safetensors")
    got = bytearray()
    with httpx.Client() as client:
        with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", url) as r:
            assert r.headers["content-length"] == str(len(data))
            for chunk in r.iter_raw():
                got += chunk
        assert len(got) == 1000
        rest = client.get(url, headers={"Range": f"bytes={len(got)}-"})
    assert rest.status_code == 206 and bytes(got) + rest.content == data
    assert file_server.bytes_sent("/x.safetensors") == len(data)


def test_corrupt_body_keeps_size_but_not_hash(file_server: FileServer) -> None:
    data = b"0123456789" * 100
    blob = file_server.add("/bad.safetensors", data, corrupt=True)
    body = httpx.get(file_server.url_for("/bad.safetensors")).content
    assert blob.sha256 == sha(data) and blob.size == len(body)
    assert sha(body) != blob.sha256


def test_disk_file_and_throttle_serve_intact_bytes(file_server: FileServer, tmp_path: Path) -> None:
    on_disk = tmp_path / "weights.bin"
    on_disk.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    sparse = sparse_file(tmp_path / "sparse.bin", 3 << 20)
    file_server.add("/disk.bin", file=on_disk, rate=500e6)
    file_server.add("/sparse.bin", file=sparse)
    with httpx.Client() as client:
        body = client.get(file_server.url_for("/disk.bin")).content
        mid = client.get(file_server.url_for("/sparse.bin"), headers={"Range": "bytes=1048576-1048591"})
    assert body == on_disk.read_bytes()
    assert mid.status_code == 206 and mid.content == b"\0" * 16
    assert file_server.bytes_sent("/disk.bin") == 1 << 20


def test_catalogue_etag_and_last_modified(file_server: FileServer) -> None:
    entry = {
        "name": "ae",
        "type": "VAE",
        "base": "FLUX.1",
        "save_path": "default",
        "description": "d",
        "reference": "https://huggingface.co/x/y",
        "filename": "ae.safetensors",
        "url": "https://huggingface.co/x/y/resolve/main/ae.safetensors",
        "size": "319.8MB",
    }
    url = file_server.set_catalogue([entry])
    with httpx.Client() as client:
        first = client.get(url)
        again = client.get(url, headers={"If-None-Match": first.headers["etag"]})
        since = client.get(url, headers={"If-Modified-Since": first.headers["last-modified"]})
    assert first.status_code == 200 and json.loads(first.content) == {"models": [entry]}
    assert again.status_code == 304 and again.content == b""
    assert since.status_code == 304


def test_stop_with_an_open_keep_alive_connection_is_clean() -> None:
    fs = FileServer().start()
    fs.add("/a", b"x")
    url = fs.url_for("/a")
    client = httpx.Client()
    try:
        assert client.get(url).content == b"x"
        fs.stop()  # the keep-alive connection is still open on the client side
        assert not fs.running
        with pytest.raises(httpx.TransportError):
            client.get(url)
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------
# 2. Hugging Face Hub, driven by the real huggingface_hub client
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def hub(hf_env: Path) -> Any:
    with FakeHub(tokens={"hf_good", "hf_other"}, models_page_size=2, tree_page_size=3) as hub:
        repo = hub.add_repo("Comfy-Org/Wan_2.1_ComfyUI_repackaged", downloads=900, tags=["region:us"])
        hub.add_file(repo.id, "split_files/vae/wan_2.1_vae.safetensors", model_bytes("v.safetensors", "vae"))
        hub.add_file(repo.id, "split_files/text_encoders/umt5.safetensors", model_bytes("u.safetensors", "u"))
        hub.add_file(repo.id, "README.md", b"# Wan\n")
        gated = hub.add_repo("black-forest-labs/FLUX.1-dev", gated="auto", downloads=5000)
        gated.granted.add("hf_good")
        hub.add_file(gated.id, "ae.safetensors", model_bytes("ae.safetensors", "ae"))
        hub.add_repo("comfyanonymous/flux_text_encoders", downloads=100)
        hub.add_file(
            "comfyanonymous/flux_text_encoders", "clip_l.safetensors", model_bytes("c.safetensors", "c")
        )
        yield hub
    assert hub.errors == [] and hub.cdn.errors == []


def test_hf_list_models_search_full_and_link_paging(hub: FakeHub) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url)
    everything = list(api.list_models())  # page size 2: follows the Link header
    found = list(api.list_models(search="flux", full=True, sort="downloads"))
    assert {m.id for m in everything} == {r.id for r in hub.repos.values()}
    assert len(hub.requests_to("/api/models")) == 1 + 2  # three pages of 2, 2, 1
    assert [m.id for m in found] == ["black-forest-labs/FLUX.1-dev", "comfyanonymous/flux_text_encoders"]
    assert found[0].gated == "auto" and found[0].siblings and found[0].sha
    assert "cursor=" in (hub.requests_to("/api/models")[1].query)


def test_hf_model_info_with_blobs_matches_the_sample_shape(hub: FakeHub) -> None:
    from huggingface_hub import HfApi

    info = HfApi(endpoint=hub.url).model_info("Comfy-Org/Wan_2.1_ComfyUI_repackaged", files_metadata=True)
    repo = hub.repo("Comfy-Org/Wan_2.1_ComfyUI_repackaged")
    assert repo is not None
    vae = repo.files["split_files/vae/wan_2.1_vae.safetensors"]
    sib = {s.rfilename: s for s in info.siblings or []}
    lfs = sib["split_files/vae/wan_2.1_vae.safetensors"].lfs
    assert lfs is not None and lfs.sha256 == vae.sha256 and lfs.size == vae.size
    assert sib["README.md"].lfs is None
    raw = httpx.get(f"{hub.url}/api/models/{repo.id}", params={"blobs": "True"}).json()  # 0.x spelling
    expected = sample("hf_model_info_blobs.json")
    assert set(expected) <= set(raw)
    lfs_sibling = next(s for s in raw["siblings"] if "lfs" in s)
    assert set(lfs_sibling) == set(expected["siblings"][2]) and set(lfs_sibling["lfs"]) == {
        "sha256",
        "size",
        "pointerSize",
    }


def test_hf_search_items_carry_the_sample_keys(hub: FakeHub) -> None:
    plain = httpx.get(f"{hub.url}/api/models", params={"search": "wan"}).json()
    full = httpx.get(f"{hub.url}/api/models", params={"search": "wan", "full": "TRUE"}).json()
    optional = {"pipeline_tag", "library_name"}
    assert set(plain[0]) | optional == set(sample("hf_models_search.json")[0]) | optional
    assert set(full[0]) | optional == set(sample("hf_models_search_full.json")[0]) | optional


def test_hf_tree_recursive_paged_and_subpath(hub: FakeHub) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile, RepoFolder

    api = HfApi(endpoint=hub.url)
    repo_id = "Comfy-Org/Wan_2.1_ComfyUI_repackaged"
    entries = list(api.list_repo_tree(repo_id, recursive=True))  # 7 entries, page size 3
    sub = list(api.list_repo_tree(repo_id, path_in_repo="split_files/vae"))
    paths = [e.path for e in entries]
    assert paths == sorted(paths) and "split_files/text_encoders" in paths
    assert sum(isinstance(e, RepoFolder) for e in entries) == 3
    vae = next(e for e in entries if e.path.endswith("wan_2.1_vae.safetensors"))
    assert (
        isinstance(vae, RepoFile)
        and vae.lfs is not None
        and vae.lfs.sha256 == sha(model_bytes("v.safetensors", "vae"))
    )
    assert [e.path for e in sub] == ["split_files/vae/wan_2.1_vae.safetensors"]  # relative to the root
    assert len(hub.requests_to(f"/api/models/{repo_id}/tree/main")) == 3
    raw = httpx.get(f"{hub.url}/api/models/{repo_id}/tree/main/split_files%2Fvae").json()
    keys = set(sample("hf_tree.json")[-1]) - {"xetHash"}
    assert set(raw[0]) == keys and "xetHash" not in json.dumps(raw)


def test_hf_paths_info_form_and_json(hub: FakeHub) -> None:
    from huggingface_hub import HfApi

    repo_id = "comfyanonymous/flux_text_encoders"
    got = HfApi(endpoint=hub.url).get_paths_info(repo_id, ["clip_l.safetensors", "nope.safetensors"])
    assert [e.path for e in got] == ["clip_l.safetensors"]
    as_json = httpx.post(
        f"{hub.url}/api/models/{repo_id}/paths-info/main", json={"paths": ["clip_l.safetensors"]}
    )
    assert set(as_json.json()[0]) == set(sample("hf_paths_info.json")[0]) - {"xetHash"}


def test_hf_download_lfs_via_cdn_keeps_the_token_on_the_hub(hub: FakeHub, tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download

    repo_id = "black-forest-labs/FLUX.1-dev"
    path = hf_hub_download(repo_id, "ae.safetensors", endpoint=hub.url, token="hf_good", local_dir=tmp_path)
    assert sha(Path(path).read_bytes()) == sha(model_bytes("ae.safetensors", "ae"))
    head = hub.requests_to(f"/{repo_id}/resolve/main/ae.safetensors", "HEAD")
    assert head and head[0].authorization == "Bearer hf_good" and head[0].status == 302
    assert hub.cdn.requests and hub.cdn.authorization_seen == []
    readme = hf_hub_download("Comfy-Org/Wan_2.1_ComfyUI_repackaged", "README.md", endpoint=hub.url)
    assert Path(readme).read_bytes() == b"# Wan\n"


def test_hf_resolve_headers_are_the_real_contract(hub: FakeHub) -> None:
    repo = hub.repo("Comfy-Org/Wan_2.1_ComfyUI_repackaged")
    assert repo is not None
    vae = repo.files["split_files/vae/wan_2.1_vae.safetensors"]
    with httpx.Client() as client:
        r = client.head(hub.resolve_url(repo.id, vae.path))
        cdn = client.get(r.headers["location"], headers={"Range": "bytes=8-"})
        small = client.head(hub.resolve_url(repo.id, "README.md"))
        blob_page = client.get(f"{hub.url}/{repo.id}/blob/main/{vae.path}")
    assert r.status_code == 302 and r.headers["x-repo-commit"] == repo.sha
    assert r.headers["x-linked-etag"] == f'"{vae.sha256}"' and r.headers["x-linked-size"] == str(vae.size)
    assert r.headers["location"].startswith(hub.cdn.url) and r.headers["accept-ranges"] == "bytes"
    assert not any(h.lower().startswith("x-xet") for h in r.headers) and "xet" not in r.headers.get(
        "link", ""
    )
    assert cdn.status_code == 206 and cdn.content == vae.data[8:]
    assert cdn.headers["etag"].strip('"') != vae.sha256  # the CDN etag is not the sha256 (read X-Linked-Etag)
    assert "wan_2.1_vae.safetensors" in cdn.headers["content-disposition"]
    assert small.status_code == 200 and small.headers["etag"] == f'"{repo.files["README.md"].git_sha1}"'
    assert small.headers["x-repo-commit"] == repo.sha
    assert blob_page.headers["content-type"].startswith("text/html")


def test_hf_errors_map_to_the_real_exceptions(hub: FakeHub) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    def dl(repo: str, name: str, token: str | bool = False, revision: str | None = None) -> str:
        return hf_hub_download(repo, name, endpoint=hub.url, token=token, revision=revision)

    with pytest.raises(GatedRepoError) as anon:
        dl("black-forest-labs/FLUX.1-dev", "ae.safetensors")
    with pytest.raises(GatedRepoError) as no_grant:
        dl("black-forest-labs/FLUX.1-dev", "ae.safetensors", token="hf_other")
    with pytest.raises(RepositoryNotFoundError) as missing_anon:
        dl("nobody/nothing", "x.safetensors")
    with pytest.raises(RepositoryNotFoundError) as missing_tok:
        dl("nobody/nothing", "x.safetensors", token="hf_good")
    with pytest.raises(RemoteEntryNotFoundError):
        dl("comfyanonymous/flux_text_encoders", "clip_g.safetensors")
    with pytest.raises(RevisionNotFoundError):
        dl("comfyanonymous/flux_text_encoders", "clip_l.safetensors", revision="nosuchbranch")
    statuses = [e.value.response.status_code for e in (anon, no_grant, missing_anon, missing_tok)]
    assert statuses == [401, 403, 401, 404]
    miss = hub.requests_to("/comfyanonymous/flux_text_encoders/resolve/main/clip_g.safetensors")[0]
    assert miss.status == 404
    repo = hub.repo("comfyanonymous/flux_text_encoders")
    served = httpx.head(hub.resolve_url("comfyanonymous/flux_text_encoders", "clip_g.safetensors"))
    assert repo is not None and served.headers["x-repo-commit"] == repo.sha
    bad = httpx.get(
        f"{hub.url}/api/models/comfyanonymous/flux_text_encoders", headers={"Authorization": "Bearer x"}
    )
    assert bad.status_code == 401 and "Invalid credentials" in bad.headers["x-error-message"]


def test_hf_rate_limit_flaky_and_rename(hub: FakeHub) -> None:
    hub.rate_limit("/api/models", times=1)
    hub.fail("/comfyanonymous/flux_text_encoders/resolve/*", 503, times=2)
    hub.rename("comfyanonymous/old_encoders", "comfyanonymous/flux_text_encoders")
    url = hub.resolve_url("comfyanonymous/flux_text_encoders", "clip_l.safetensors")
    with httpx.Client() as client:
        limited, ok = client.get(f"{hub.url}/api/models"), client.get(f"{hub.url}/api/models")
        flaky = [client.head(url).status_code for _ in range(3)]
        moved = client.get(f"{hub.url}/api/models/comfyanonymous/old_encoders")
        followed = client.get(f"{hub.url}/api/models/comfyanonymous/old_encoders", follow_redirects=True)
    assert limited.status_code == 429 and limited.headers["ratelimit"] == '"api";r=0;t=0'
    assert "ratelimit-policy" in limited.headers and ok.status_code == 200
    assert flaky == [503, 503, 302]
    assert (
        moved.status_code == 307
        and moved.headers["location"] == "/api/models/comfyanonymous/flux_text_encoders"
    )
    assert followed.json()["id"] == "comfyanonymous/flux_text_encoders"


# ---------------------------------------------------------------------------------------------
# 3. Civitai
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def civ() -> Any:
    with FakeCivitai(tokens={"civ_good"}) as civ:
        wai = civ.add_model("WAI-illustrious-SDXL", type="Checkpoint", creator="WAI0731", download_count=9)
        v = civ.add_version(wai, "v16.0", base_model="Illustrious", require_auth=True, id=2514310)
        civ.add_file(v, model_bytes("a.safetensors", "wai"), "upload_name.safetensors")
        civ.add_file(v, model_bytes("b.safetensors", "vae"), "sdxl_vae.safetensors", type="VAE", fp="fp16")
        lora = civ.add_model("XLabs Flux Realism LoRA", type="LORA", creator="xlabs_ai", download_count=50)
        lv = civ.add_version(lora, "v1.0", trained_words=["photorealism"], base_model="Flux.1 D")
        civ.add_file(lv, model_bytes("c.safetensors", "lora"), "xlabs_flux_realism_lora_comfui.safetensors")
        raw = civ.add_model("Raw Pickle", type="Checkpoint", creator="old_timer")
        rv = civ.add_version(raw, "v1")
        civ.add_file(rv, model_bytes("d.ckpt", "pickle"), "raw.ckpt", sha256=False, pickle_scan="Danger")
        yield civ
    assert civ.errors == [] and civ.storage.errors == []


def test_civitai_search_shape_matches_the_sample(civ: FakeCivitai) -> None:
    body = httpx.get(f"{civ.url}/api/v1/models", params={"query": "flux", "types": "LORA"}).json()
    ref = sample("civitai_models_search.json")
    item, ref_item = body["items"][0], ref["items"][0]
    assert set(ref_item) <= set(item)
    assert set(ref_item["modelVersions"][0]) <= set(item["modelVersions"][0])
    ref_file = ref_item["modelVersions"][0]["files"][0]
    got_file = item["modelVersions"][0]["files"][0]
    assert set(ref_file) == set(got_file) and set(ref_file["hashes"]) == set(got_file["hashes"])
    assert got_file["primary"] is True and body["metadata"] == {}


def test_civitai_query_matches_names_creators_words_hashes_not_file_names(civ: FakeCivitai) -> None:
    wai_sha = civ.versions[2514310].files[0].hashes["SHA256"]
    with httpx.Client(base_url=civ.url) as client:

        def names(**params: str | list[str]) -> list[str]:
            r = client.get("/api/v1/models", params=params)
            return sorted(m["name"] for m in r.json()["items"])

        assert names(query="illustrious sdxl") == ["WAI-illustrious-SDXL"]
        assert names(query="xlabs_ai") == ["XLabs Flux Realism LoRA"]
        assert names(query="photorealism") == ["XLabs Flux Realism LoRA"]
        assert names(query=wai_sha.lower()) == ["WAI-illustrious-SDXL"]
        assert names(query="xlabs_flux_realism_lora_comfui") == []  # file names are not indexed
        assert names(types=["LORA", "Checkpoint"]) == names(types="LORA,Checkpoint") != names(types="LORA")


def test_civitai_cursor_paging_and_page_errors(civ: FakeCivitai) -> None:
    seen: list[int] = []
    url: str | None = f"{civ.url}/api/v1/models?limit=1"
    with httpx.Client() as client:
        while url:
            body = client.get(url).json()
            seen += [m["id"] for m in body["items"]]
            url = body["metadata"].get("nextPage")
            assert ("nextCursor" in body["metadata"]) == (url is not None)
        both = client.get(f"{civ.url}/api/v1/models", params={"query": "x", "page": 2})
        deep = client.get(f"{civ.url}/api/v1/models", params={"page": 20, "limit": 100})
        civ.overload_search(times=1)
        busy = client.get(f"{civ.url}/api/v1/models", params={"query": "x"})
    assert sorted(seen) == sorted(civ.models)
    assert both.status_code == 400 and "cursor" in both.json()["error"]
    assert deep.status_code == 429 and "too many pages" in deep.json()["error"]
    assert busy.status_code == 503 and busy.headers["retry-after"] == "2"


def test_civitai_lookups_and_404_bodies(civ: FakeCivitai) -> None:
    version = civ.versions[2514310]
    with httpx.Client(base_url=civ.url) as client:
        by_id = client.get("/api/v1/model-versions/2514310").json()
        by_hash = client.get(
            f"/api/v1/model-versions/by-hash/{version.files[0].sha256}"
        ).json()  # lower-case in
        by_autov2 = client.get(f"/api/v1/model-versions/by-hash/{version.files[0].hashes['AutoV2']}")
        missing = [
            client.get(p)
            for p in (
                "/api/v1/models/0",
                "/api/v1/model-versions/9",
                "/api/v1/model-versions/by-hash/DEADBEEF00",
            )
        ]
    ref = sample("civitai_model_version.json")
    assert set(ref) - {"licensingFee", "paidAccess"} <= set(by_id)
    assert by_id["files"][0]["name"] == "waiIllustriousSDXL_v160.safetensors"
    assert [f["primary"] for f in by_id["files"]] == [True, False]
    assert by_id["files"][1]["downloadUrl"].endswith("?type=VAE&format=SafeTensor&fp=fp16")
    assert by_hash["id"] == 2514310 and by_autov2.json()["id"] == 2514310
    assert [(r.status_code, r.json()) for r in missing] == [
        (404, {"error": "No model with id 0"}),
        (404, {"error": "Model not found"}),
        (404, {"error": "Model not found"}),
    ]


def test_civitai_file_metadata_is_true_to_the_bytes(civ: FakeCivitai) -> None:
    for version in civ.versions.values():
        for f in version.files:
            assert f.size_bytes == round(f.json(version.id, "", list_mode=False)["sizeKB"] * 1024)
            if "SHA256" in f.hashes:
                assert (
                    f.hashes["SHA256"] == f.sha256.upper() and f.hashes["AutoV2"] == f.hashes["SHA256"][:10]
                )
    raw = next(v for v in civ.versions.values() if v.model.name == "Raw Pickle").files[0]
    assert "SHA256" not in raw.hashes and raw.pickle_scan == "Danger"


def test_civitai_download_auth_browser_and_storage(civ: FakeCivitai) -> None:
    vid = 2514310
    primary = civ.versions[vid].files[0]
    with httpx.Client() as client:
        anon = client.get(civ.download_url(vid))
        browser = client.get(
            civ.download_url(vid), headers={"User-Agent": "Mozilla/5.0 Chrome"}, follow_redirects=True
        )
        bad_key = client.get(civ.download_url(vid, token="wrong"))
        ok = client.get(civ.download_url(vid), headers={"Authorization": "Bearer civ_good"})
        stored = client.get(ok.headers["location"], headers={"Range": "bytes=0-99"})
        by_query = client.get(civ.download_url(vid, token="civ_good"), follow_redirects=True)
        vae = client.get(civ.download_url(vid, type="VAE", format="SafeTensor", token="civ_good"))
        nothing = client.get(civ.download_url(vid, type="Config", token="civ_good"))
    assert anon.status_code == 401 and anon.json()["error"] == "Unauthorized"
    assert browser.history[0].status_code == 307
    assert (
        "/login?returnUrl=%2Fmodel-versions%2F2514310&reason=download-auth"
        in browser.history[0].headers["location"]
    )
    assert browser.headers["content-type"].startswith("text/html")
    assert bad_key.status_code == 401
    assert ok.status_code == 307 and ok.headers["location"].startswith(civ.storage.url)
    assert ok.headers["cache-control"] == "no-store, max-age=0"
    assert stored.status_code == 206 and stored.content == primary.data[:100]
    assert by_query.content == primary.data
    assert by_query.headers["content-disposition"] == f'attachment; filename="{primary.name}"'
    assert "sdxl_vae.safetensors" in httpx.get(vae.headers["location"]).headers["content-disposition"]
    assert nothing.status_code == 404 and nothing.json() == {"error": "File not found"}
    assert civ.storage.authorization_seen == []
    assert civ.versions[vid].download_count == 3


# ---------------------------------------------------------------------------------------------
# 4. World
# ---------------------------------------------------------------------------------------------


def test_content_is_deterministic_and_well_formed() -> None:
    st = model_bytes("a.safetensors", "s")
    (n,) = struct.unpack("<Q", st[:8])
    header = json.loads(st[8 : 8 + n])
    assert header["weight"]["data_offsets"][1] == len(st) - 8 - n
    assert model_bytes("a.gguf", "s")[:4] == b"GGUF" and model_bytes("a.pt", "s")[:2] == b"PK"
    assert model_bytes("a.safetensors", "s") == st != model_bytes("a.safetensors", "t")


def test_corpus_world_covers_every_truth_model(corpus_world: World, figures: list[str]) -> None:
    truth = (SHARED / "corpus" / "workflows" / "truth.jsonl").read_text().splitlines()
    keys = {world_key(r["directory"], r["name"]) for r in map(json.loads, filter(None, truth))}
    assert set(corpus_world.expected) == keys
    found = [e for e in corpus_world.expected.values() if e]
    sources = {s: sum(e.source == s for e in found) for s in ("huggingface", "civitai")}
    nowhere = len(keys) - len(found)
    kinds = {
        k: sum(d.kind == k for d in corpus_world.decoys)
        for k in ("reupload", "near_miss", "civitai_near_miss")
    }
    assert all(sources.values()) and nowhere > 0 and all(kinds.values())
    assert any(e.path and e.path.startswith("split_files/") for e in found)
    assert any(e.source == "civitai" and e.filename[0].islower() and "_v" in e.filename for e in found)
    figures.append(f"fake world: {len(keys)} models, {sources}, nowhere {nowhere}, decoys {kinds}")


def test_corpus_world_is_deterministic(corpus_world: World) -> None:
    again = World.from_corpus(SHARED, seed=0)
    other = World.from_corpus(SHARED, seed=1)
    assert again.expected == corpus_world.expected
    assert again.expected != other.expected


def test_corpus_world_decoys_never_collide_with_the_answer(corpus_world: World) -> None:
    expected_bases = {k[1].rsplit("/", 1)[-1] for k in corpus_world.expected}
    for decoy in corpus_world.decoys:
        exp = corpus_world.expected[decoy.for_key]
        if decoy.kind == "reupload":
            assert exp is not None and decoy.sha256 != exp.sha256
            assert decoy.filename.lower() == decoy.for_key[1].rsplit("/", 1)[-1]  # the very name asked for
            assert decoy.repo and decoy.repo.split("/")[0] not in corpus_world.authoritative_orgs
        else:
            assert decoy.filename.lower() not in expected_bases
    # a model that is nowhere has no file of its exact name anywhere
    hosted = {p.rsplit("/", 1)[-1].lower() for r in corpus_world.hub.repos.values() for p in r.files}
    hosted |= {f.name.lower() for v in corpus_world.civitai.versions.values() for f in v.files}
    for key, exp in corpus_world.expected.items():
        if exp is None:
            assert key[1].rsplit("/", 1)[-1] not in hosted, key


def test_corpus_world_serves_what_the_answer_key_says(world_endpoints: WorldEndpoints) -> None:
    world = world_endpoints.world
    found = sorted((e for e in world.expected.values() if e), key=lambda e: (e.source, e.name))
    picks = found[::25] + [e for e in found if e.gated][:1] + [e for e in found if e.requires_token][:1]
    with httpx.Client(follow_redirects=True, timeout=5) as client:
        for exp in picks:
            url = world_endpoints.url_of(exp)
            if exp.source == "civitai":
                r = client.get(url, params={"token": WORLD_CIVITAI_TOKEN})
            else:
                r = client.get(url, headers={"Authorization": f"Bearer {WORLD_HF_TOKEN}"})
            assert r.status_code == 200 and sha(r.content) == exp.sha256, (exp, r.status_code)
        catalogue = client.get(world_endpoints.catalog_url).json()["models"]
        entry = catalogue[0]
        head = client.head(
            entry["url"], headers={"Authorization": f"Bearer {WORLD_HF_TOKEN}"}, follow_redirects=False
        )
    assert head.status_code in (200, 302) and entry["filename"] in entry["url"]
    assert world_endpoints.hub.cdn.authorization_seen == []
    hint = next(u for u in world.hint_urls if "huggingface.co" in u)
    assert world_endpoints.rewrite(hint).startswith(world_endpoints.hf_endpoint)
    settings = world_endpoints.settings()
    assert settings.host_allowed(world_endpoints.url_of(found[0]))


def test_small_hand_built_world_and_score() -> None:
    world = World(seed=3)
    good = world.hf_model(
        "vae", "sub/ae.safetensors", "Comfy-Org/z_image_turbo", "split_files/vae/ae.safetensors"
    )
    decoy = world.hf_decoy(
        world_key("vae", "sub/ae.safetensors"), "ae.safetensors", "modelzoo-reupload/ae", kind="reupload"
    )
    lora = world.civitai_model("loras", "Detail Tweaker XL.safetensors")
    world.nowhere("checkpoints", "mine.safetensors")
    with start_world(world) as ep:
        found = httpx.get(f"{ep.civitai_url}/api/v1/models", params={"query": "detail tweaker"}).json()
        assert found["items"][0]["modelVersions"][0]["files"][0]["name"] == "Detail Tweaker XL.safetensors"
        search = httpx.get(f"{ep.hf_endpoint}/api/models", params={"search": "ae"}).json()
        assert {m["id"] for m in search} >= {"modelzoo-reupload/ae"}
    score = world.score(
        {
            ("vae", "sub/ae.safetensors"): decoy.sha256,
            ("loras", "detail tweaker xl.safetensors"): lora.sha256,
            ("checkpoints", "mine.safetensors"): None,
            ("vae", "unknown.safetensors"): good.sha256,
        }
    )
    assert score.summary() == {"right": 1, "wrong": 1, "unresolved": 0, "correct_not_found": 1, "unknown": 1}
