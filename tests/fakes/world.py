"""A fake model world built from the real corpus names: where each model truly lives, and the traps.

Owns `World` (a `FakeHub`, a `FakeCivitai` and a catalogue, filled but not started), the answer key
`World.expected[(directory, normalised lower-case name)] -> ExpectedFile | None` (None: the model is
nowhere and must come out `not_found`), the decoys, `World.score()` and `start_world()`.

Placement rules (deterministic for a seed): a model with a URL in `truth.jsonl` lives at that URL's
repo/path (several URLs: the same bytes at each). Others go to a plausible repo (Comfy-Org
`split_files/<folder>/`, Kijai, city96 `*-gguf`, h94, Bingsu, ...), to Civitai only (LoRAs, and
checkpoints under Civitai's camelCase download name), or nowhere. Decoys: the same file name with
other bytes in look-alike re-upload repos whose names match a search better, and near-miss names
(`_fp8` for `_fp16`, `_v2`, `old_` prefixes) next to the real file or in place of a missing one.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from tests.fakes.civitai import FakeCivitai, camel_words, download_filename
from tests.fakes.content import model_bytes
from tests.fakes.files import FileServer
from tests.fakes.hub import FakeHub

if TYPE_CHECKING:
    from comfyfixer.config import Settings

Key = tuple[str | None, str]

WORLD_HF_TOKEN = "hf_world_test_token"
WORLD_CIVITAI_TOKEN = "civitai_world_test_token"
DECOY_ORGS = ("modelzoo-reupload", "free-ai-models", "comfy-mirror-unofficial", "aiuser2024", "models-backup")
GENERIC_NAMES = {
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "pytorch_model.bin",
    "diffusion_pytorch_model.bin",
    "model.pt",
    "model.pth",
}
CATALOGUE_TYPES = {
    "checkpoints": "checkpoint",
    "text_encoders": "text_encoders",
    "vae": "VAE",
    "loras": "lora",
    "controlnet": "controlnet",
    "clip_vision": "clip_vision",
    "upscale_models": "upscale",
    "embeddings": "embedding",
    "diffusion_models": "diffusion_model",
}
PRECISION_SWAPS = (
    ("fp16", "fp8_e4m3fn"),
    ("bf16", "fp16"),
    ("fp8", "fp16"),
    ("fp32", "fp16"),
    ("q8_0", "q4_k_m"),
    ("q4_k_m", "q8_0"),
    ("q5_k_m", "q6_k"),
    ("q6_k", "q5_k_m"),
)


def normalise(name: str) -> str:
    out = name.replace("\\", "/").strip()
    while out.startswith("./"):
        out = out[2:]
    return out.lstrip("/")


def world_key(directory: str | None, name: str) -> Key:
    """The answer-key key: folder and normalised lower-case name (as `MissingModel.key`)."""
    return (directory, normalise(name).lower())


@dataclass(frozen=True)
class ExpectedFile:
    """Where the right file for one referenced model is, and what it is."""

    directory: str | None
    name: str  # the referenced name, normalised, lower-case
    filename: str  # the file name as hosted
    sha256: str
    size: int
    source: str  # huggingface | civitai
    repo: str | None = None
    path: str | None = None  # path in the HF repo
    version_id: int | None = None  # Civitai model version
    hinted: bool = False  # a workflow carries its URL
    in_catalogue: bool = False
    gated: bool = False  # needs the world's HF token
    requires_token: bool = False  # Civitai download needs the world's Civitai token
    renamed: bool = False  # only a hint names it, under another file name
    locations: tuple[tuple[str, str], ...] = ()  # every authoritative HF (repo, path) with these bytes


@dataclass(frozen=True)
class Decoy:
    kind: str  # reupload | near_miss | civitai_near_miss
    filename: str
    sha256: str
    for_key: Key
    repo: str | None = None
    path: str | None = None
    version_id: int | None = None


@dataclass
class Score:
    right: list[Key] = field(default_factory=list)  # resolved to the expected bytes
    wrong: list[Key] = field(default_factory=list)  # resolved to other bytes (or to anything when nowhere)
    unresolved: list[Key] = field(default_factory=list)  # exists, but the tool gave up
    correct_not_found: list[Key] = field(default_factory=list)  # nowhere, and the tool said so
    unknown: list[Key] = field(default_factory=list)  # not in the answer key

    def summary(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.__dict__.items()}


def _rng(*parts: object) -> random.Random:
    return random.Random(":".join(map(str, parts)))


def _words(stem: str) -> list[str]:
    return [w for w in re.split(r"[^A-Za-z0-9]+", stem) if w]


def _human_size(n: int) -> str:
    return f"{n / 1024:.1f}KB"


class World:
    """A fake world; fill it by hand (`hf_model`, `civitai_model`, `nowhere`, decoys) or `from_corpus`."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.hub = FakeHub(tokens={WORLD_HF_TOKEN})
        self.civitai = FakeCivitai(tokens={WORLD_CIVITAI_TOKEN})
        self.files = FileServer()  # the catalogue host
        self.expected: dict[Key, ExpectedFile | None] = {}
        self.decoys: list[Decoy] = []
        self.catalogue: list[tuple[ExpectedFile, dict[str, Any]]] = []
        self.hint_urls: dict[str, Key] = {}  # original corpus URL -> the key it hints
        self.authoritative_orgs: set[str] = set()

    # -- lookup ----------------------------------------------------------------------------
    def expected_for(self, directory: str | None, name: str) -> ExpectedFile | None:
        return self.expected[world_key(directory, name)]

    def score(self, resolved: Mapping[Key, str | None]) -> Score:
        """Score a tool's answers: key -> sha256 of the file it chose, or None when it gave up."""
        out = Score()
        for raw_key, sha in resolved.items():
            key = world_key(raw_key[0], raw_key[1])
            if key not in self.expected:
                out.unknown.append(key)
                continue
            exp = self.expected[key]
            if exp is None:
                (out.wrong if sha else out.correct_not_found).append(key)
            elif not sha:
                out.unresolved.append(key)
            else:
                (out.right if sha.lower() == exp.sha256 else out.wrong).append(key)
        return out

    # -- building blocks -------------------------------------------------------------------
    def _repo(self, repo_id: str, *, decoy: bool = False) -> None:
        if self.hub.repo(repo_id) is not None:
            return
        rng = _rng(self.seed, "repo", repo_id)
        org = repo_id.split("/", 1)[0]
        if not decoy:
            self.authoritative_orgs.add(org)
        tags = ["region:us"]
        if repo_id.lower().endswith("gguf"):
            tags.insert(0, "gguf")
        gated: Any = "auto" if org == "black-forest-labs" and "schnell" not in repo_id.lower() else False
        repo = self.hub.add_repo(
            repo_id,
            downloads=rng.randrange(5, 400) if decoy else rng.randrange(20_000, 2_000_000),
            likes=rng.randrange(0, 5) if decoy else rng.randrange(50, 5000),
            trending_score=rng.randrange(0, 3) if decoy else rng.randrange(1, 100),
            tags=tags,
            gated=gated,
        )
        if gated:
            repo.granted.add(WORLD_HF_TOKEN)
        repo.add_file("README.md", f"# {repo_id}\n".encode(), lfs=False)

    def _put_hf(self, repo_id: str, path: str, data: bytes, *, decoy: bool = False) -> None:
        self._repo(repo_id, decoy=decoy)
        self.hub.add_file(repo_id, path, data)

    def hf_model(
        self,
        directory: str | None,
        name: str,
        repo: str,
        path: str | None = None,
        *,
        data: bytes | None = None,
        hinted: bool = False,
        catalogue: bool = False,
        also_at: tuple[tuple[str, str], ...] = (),
    ) -> ExpectedFile:
        """The right file for (directory, name) is at `repo`/`path` (default: the base name at the root)."""
        key = world_key(directory, name)
        base = key[1].rsplit("/", 1)[-1]
        filename = normalise(name).rsplit("/", 1)[-1]
        path = path or filename
        data = data if data is not None else model_bytes(filename, f"{self.seed}:{base}")
        locations = ((repo, path), *also_at)
        for r, p in locations:
            self._put_hf(r, p, data)
        hub_repo = self.hub.repo(repo)
        exp = ExpectedFile(
            directory,
            key[1],
            path.rsplit("/", 1)[-1],
            hashlib.sha256(data).hexdigest(),
            len(data),
            "huggingface",
            repo=repo,
            path=path,
            hinted=hinted,
            in_catalogue=catalogue,
            gated=bool(hub_repo and hub_repo.gated),
            renamed=path.rsplit("/", 1)[-1].lower() != base,
            locations=locations,
        )
        self.expected[key] = exp
        if catalogue and not exp.renamed:
            self._catalogue_entry(exp)
        return exp

    def civitai_model(
        self,
        directory: str | None,
        name: str,
        *,
        model_type: str = "LORA",
        model_name: str | None = None,
        version_name: str = "v1.0",
        require_auth: bool = False,
        version_id: int | None = None,
        hinted: bool = False,
        creator: str | None = None,
        trained_words: list[str] | None = None,
    ) -> ExpectedFile:
        """The right file lives on Civitai only; `files[].name` must equal the referenced base name."""
        key = world_key(directory, name)
        filename = normalise(name).rsplit("/", 1)[-1]
        stem = filename.rsplit(".", 1)[0]
        rng = _rng(self.seed, "civ", key)
        model = self.civitai.add_model(
            model_name or " ".join(w.capitalize() for w in _words(stem)) or stem,
            type=model_type,
            creator=creator
            or rng.choice(["pixelwizard", "loraforge", "anime_arts", "realism_lab", "sdcrafter"]),
            download_count=rng.randrange(1000, 200_000),
        )
        version = self.civitai.add_version(
            model,
            version_name,
            id=version_id,
            require_auth=require_auth,
            trained_words=trained_words if trained_words is not None else [],
        )
        data = model_bytes(filename, f"{self.seed}:{key[1].rsplit('/', 1)[-1]}")
        cfile = self.civitai.add_file(version, data, filename)
        if cfile.name.lower() != filename.lower():
            raise ValueError(f"Civitai would name {filename!r} {cfile.name!r}; pick model_name/version_name")
        exp = ExpectedFile(
            directory,
            key[1],
            cfile.name,
            cfile.sha256,
            len(data),
            "civitai",
            version_id=version.id,
            hinted=hinted,
            requires_token=require_auth,
        )
        self.expected[key] = exp
        return exp

    def nowhere(self, directory: str | None, name: str) -> None:
        self.expected[world_key(directory, name)] = None

    def hf_decoy(self, key: Key, filename: str, repo: str, path: str | None = None, *, kind: str) -> Decoy:
        """Other bytes under `filename` in `repo` (a re-upload or a near-miss name)."""
        data = model_bytes(filename, f"{self.seed}:decoy:{kind}:{repo}:{filename}")
        path = path or filename
        self._put_hf(repo, path, data, decoy=repo.split("/", 1)[0] in DECOY_ORGS)
        decoy = Decoy(kind, filename, hashlib.sha256(data).hexdigest(), key, repo=repo, path=path)
        self.decoys.append(decoy)
        return decoy

    def civitai_decoy(self, key: Key, filename: str, model_name: str) -> Decoy:
        model = self.civitai.add_model(model_name, type="LORA", creator="reuploader99", download_count=42)
        version = self.civitai.add_version(model, "v1.0")
        data = model_bytes(filename, f"{self.seed}:civdecoy:{filename}")
        cfile = self.civitai.add_file(version, data, filename)
        decoy = Decoy("civitai_near_miss", cfile.name, cfile.sha256, key, version_id=version.id)
        self.decoys.append(decoy)
        return decoy

    def _catalogue_entry(self, exp: ExpectedFile) -> None:
        directory = exp.directory or "etc"
        ctype = CATALOGUE_TYPES.get(directory)
        entry = {
            "name": f"{exp.filename.rsplit('.', 1)[0]} ({directory})",
            "type": ctype or directory,
            "base": "FLUX.1" if "flux" in exp.filename.lower() else "SDXL",
            "save_path": "default" if ctype else directory,
            "description": f"{exp.filename} for ComfyUI",
            "reference": f"https://huggingface.co/{exp.repo}",
            "filename": exp.filename,
            "url": "",  # filled in by start_world: the fake hub's resolve URL
            "size": _human_size(exp.size),
        }
        self.catalogue.append((exp, entry))

    # -- the corpus world ------------------------------------------------------------------
    @classmethod
    def from_corpus(cls, shared: Path, seed: int = 0) -> World:
        """Build the world for every (directory, name) in `shared/corpus/workflows/truth.jsonl`."""
        world = cls(seed)
        rows = [
            json.loads(line)
            for line in (shared / "corpus" / "workflows" / "truth.jsonl").read_text().splitlines()
            if line.strip()
        ]
        # identity: one online file per base name (per folder for generic names such as model.safetensors)
        identities: dict[tuple[str | None, str], dict[str, Any]] = {}
        for row in rows:
            key = world_key(row["directory"], row["name"])
            base = key[1].rsplit("/", 1)[-1]
            ident = (row["directory"] if base in GENERIC_NAMES else None, base)
            slot = identities.setdefault(ident, {"keys": {}, "urls": []})
            slot["keys"].setdefault(key, row)
            if row.get("url") and row["url"] not in slot["urls"]:
                slot["urls"].append(row["url"])
        all_bases = {ident[1] for ident in identities}
        for ident in sorted(identities, key=lambda i: (i[0] or "", i[1])):
            world._add_identity(ident[1], identities[ident], all_bases)
        return world

    def _add_identity(self, base: str, slot: dict[str, Any], all_bases: set[str]) -> None:
        keys: dict[Key, dict[str, Any]] = slot["keys"]
        first_key = next(iter(keys))
        directory = first_key[0]
        ref_name = normalise(next(iter(keys.values()))["name"])
        filename = ref_name.rsplit("/", 1)[-1]
        rng = _rng(self.seed, "identity", base)
        hf_locations: list[tuple[str, str]] = []
        civitai_vid: int | None = None
        for url in slot["urls"]:
            parsed = _parse_hint(url)
            if parsed is None:
                continue
            if parsed[0] == "civitai":
                civitai_vid = int(parsed[1])
            elif parsed not in hf_locations:
                hf_locations.append(parsed)
        # Prefer hinted locations whose file name is the referenced one.
        matching = [loc for loc in hf_locations if loc[1].rsplit("/", 1)[-1].lower() == base]
        exp: ExpectedFile | None
        if civitai_vid is not None and not matching:
            exp = self.civitai_model(
                directory, ref_name, model_type="LORA", version_id=civitai_vid, hinted=True
            )
        elif hf_locations:
            locs = matching or hf_locations
            exp = self.hf_model(
                directory,
                ref_name,
                locs[0][0],
                locs[0][1],
                hinted=True,
                catalogue=rng.random() < 0.3,
                also_at=tuple(locs[1:]),
            )
            for other in hf_locations:  # renamed hints still resolve to something real
                existing = self.hub.repo(other[0])
                # ...but never replace a file another model already placed there (a shared hint path).
                if other not in locs and (existing is None or other[1] not in existing.files):
                    self._put_hf(other[0], other[1], model_bytes(other[1], f"{self.seed}:{other}"))
        else:
            exp = self._place_unhinted(directory, ref_name, rng)
        for key in keys:
            self.expected[key] = exp
        for url in slot["urls"]:
            self.hint_urls[url] = first_key
        self._add_decoys(first_key, filename, exp, rng, all_bases)

    def _place_unhinted(self, directory: str | None, name: str, rng: random.Random) -> ExpectedFile | None:
        filename = name.rsplit("/", 1)[-1]
        roll = rng.random()
        if directory == "loras" and (roll < 0.45 or " " in filename):
            if " " in filename and roll < 0.3:
                return None  # a personal LoRA nobody published
            return self.civitai_model(directory, name, model_type="LORA", require_auth=rng.random() < 0.3)
        if directory == "checkpoints" and roll < 0.5 and (civ := _civitai_checkpoint_names(filename)):
            return self.civitai_model(
                directory,
                name,
                model_type="Checkpoint",
                model_name=civ[0],
                version_name=civ[1],
                require_auth=rng.random() < 0.3,
            )
        if roll > 0.88:
            return None
        repo, path = _plausible_location(directory, filename, rng)
        existing = self.hub.repo(repo)
        if existing is not None and path in existing.files:
            path = f"{directory or 'models'}/{path}"
        return self.hf_model(directory, name, repo, path, catalogue=rng.random() < 0.3)

    def _add_decoys(
        self, key: Key, filename: str, exp: ExpectedFile | None, rng: random.Random, all_bases: set[str]
    ) -> None:
        stem = filename.rsplit(".", 1)[0]
        if exp is not None and rng.random() < 0.35:
            org = rng.choice(DECOY_ORGS)
            # The re-upload's repo name contains the file stem: a "first search hit" resolver takes it.
            self.hf_decoy(key, filename, f"{org}/{stem[:80]}", kind="reupload")
        if rng.random() < (0.8 if exp is None else 0.35):
            variants = [v for v in _near_misses(filename) if v.lower() not in all_bases]
            if variants:
                variant = rng.choice(variants)
                if exp is not None and exp.source == "huggingface" and exp.repo and exp.path:
                    folder = exp.path.rsplit("/", 1)[0] + "/" if "/" in exp.path else ""
                    self.hf_decoy(key, variant, exp.repo, folder + variant, kind="near_miss")
                elif exp is not None and exp.source == "civitai":
                    self.civitai_decoy(key, variant, " ".join(_words(variant.rsplit(".", 1)[0])))
                else:
                    repo, path = _plausible_location(key[0], variant, rng)
                    self.hf_decoy(key, variant, repo, path, kind="near_miss")


def _parse_hint(url: str) -> tuple[str, str] | None:
    """(repo, path) of a huggingface.co resolve/blob URL, ("civitai", versionId), or None."""
    parts = urlsplit(url)
    if parts.hostname == "civitai.com":
        m = re.match(r"/api/download/models/(\d+)", parts.path)
        return ("civitai", m.group(1)) if m else None
    m = re.match(r"/([^/]+/[^/]+)/(?:resolve|blob)/[^/]+/(.+)", unquote(parts.path))
    return (m.group(1), m.group(2)) if m and parts.hostname in ("huggingface.co", "hf.co") else None


def _civitai_checkpoint_names(filename: str) -> tuple[str, str] | None:
    """(model name, version name) whose Civitai download name is exactly `filename`, if any."""
    stem, _, _ext = filename.rpartition(".")
    if "_" not in stem:
        return None
    head, version = stem.split("_", 1)
    words = re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", head)
    model_name = " ".join(words)
    if download_filename(model_name, "Checkpoint", version, filename, []) != filename:
        return None
    if camel_words(model_name) != head:
        return None
    return model_name, version


def _near_misses(filename: str) -> list[str]:
    stem, _, ext = filename.rpartition(".")
    out = []
    low = stem.lower()
    for a, b in PRECISION_SWAPS:
        i = low.find(a)
        if i >= 0:
            out.append(f"{stem[:i]}{b}{stem[i + len(a) :]}.{ext}")
            break
    out += [f"{stem}_v2.{ext}", f"old_{filename}", f"{stem}-pruned.{ext}"]
    return [o for o in out if o.lower() != filename.lower()]


def _plausible_location(directory: str | None, filename: str, rng: random.Random) -> tuple[str, str]:
    """A realistic repo/path for a file the corpus gives no URL for."""
    low = filename.lower()
    stem = filename.rsplit(".", 1)[0]
    folder = directory or "models"
    if low.endswith(".gguf"):
        core = re.sub(r"[-_.](?:q\d[a-z0-9_]*|iq\d\w*|f16|bf16|f32|ud-\w+)$", "", stem, flags=re.IGNORECASE)
        return (f"{rng.choice(['city96', 'QuantStack'])}/{core}-gguf", filename)
    if "wan" in low:
        if rng.random() < 0.4:
            return ("Kijai/WanVideo_comfy", filename)
        repo = (
            "Comfy-Org/Wan_2.2_ComfyUI_Repackaged"
            if ("2.2" in low or "2_2" in low)
            else "Comfy-Org/Wan_2.1_ComfyUI_repackaged"
        )
        return (repo, f"split_files/{folder}/{filename}")
    for word, repo in (
        ("hunyuan", "Comfy-Org/HunyuanVideo_repackaged"),
        ("qwen", "Comfy-Org/Qwen-Image_ComfyUI"),
        ("z_image", "Comfy-Org/z_image_turbo"),
        ("z-image", "Comfy-Org/z_image_turbo"),
        ("hidream", "Comfy-Org/HiDream-I1_ComfyUI"),
    ):
        if word in low:
            return (repo, f"split_files/{folder}/{filename}")
    if "ltx" in low:
        return ("Kijai/LTXV2_comfy", f"{folder}/{filename}")
    if "flux" in low:
        return rng.choice(
            [
                ("Kijai/flux-fp8", filename),
                ("black-forest-labs/FLUX.1-dev", filename),
                ("Comfy-Org/flux1-dev", filename),
            ]
        )
    by_folder = {
        "upscale_models": ("uwg/upscaler", f"ESRGAN/{filename}"),
        "ultralytics": ("Bingsu/adetailer", filename),
        "sams": ("ybelkada/segment-anything", f"checkpoints/{filename}"),
        "ipadapter": ("h94/IP-Adapter", f"models/{filename}"),
        "clip_vision": ("h94/IP-Adapter", f"models/image_encoder/{filename}"),
        "controlnet": ("comfyanonymous/ControlNet-v1-1_fp16_safetensors", filename),
        "text_encoders": ("comfyanonymous/flux_text_encoders", filename),
        "vae": ("Comfy-Org/Lumina_Image_2.0_Repackaged", f"split_files/vae/{filename}"),
    }
    if folder in by_folder:
        return by_folder[folder]
    title = "_".join(w.capitalize() for w in _words(stem)[:3]) or "models"
    if folder == "checkpoints":
        return (f"{rng.choice(['SG161222', 'Lykon', 'RunDiffusion', 'stabilityai'])}/{title}", filename)
    if folder == "loras":
        return (
            f"{rng.choice(['lightx2v', 'alimama-creative', 'ByteDance', 'XLabs-AI'])}/{title}",
            f"loras/{filename}",
        )
    return (f"Comfy-Org/{title}", f"{folder}/{filename}")


@dataclass
class WorldEndpoints:
    """A started world: base URLs, tokens, and helpers to turn answer-key entries into URLs."""

    world: World
    hf_endpoint: str
    civitai_url: str
    catalog_url: str
    cdn_url: str
    storage_url: str
    hf_token: str = WORLD_HF_TOKEN
    civitai_token: str = WORLD_CIVITAI_TOKEN

    @property
    def hub(self) -> FakeHub:
        return self.world.hub

    @property
    def civitai(self) -> FakeCivitai:
        return self.world.civitai

    def url_of(self, exp: ExpectedFile) -> str:
        """The canonical download URL of an expected file on the fakes."""
        if exp.source == "civitai":
            return f"{self.civitai_url}/api/download/models/{exp.version_id}"
        return f"{self.hf_endpoint}/{exp.repo}/resolve/main/{quote(exp.path or exp.filename)}"

    def rewrite(self, url: str) -> str:
        """A real huggingface.co / civitai.com URL (a workflow hint) pointed at the fakes."""
        parts = urlsplit(url)
        base = {
            "huggingface.co": self.hf_endpoint,
            "hf.co": self.hf_endpoint,
            "civitai.com": self.civitai_url,
        }.get(parts.hostname or "")
        if base is None:
            return url
        return base + parts.path + (f"?{parts.query}" if parts.query else "")

    def settings(self, *, tokens: bool = True, **overrides: Any) -> Any:
        """A `comfyfixer.config.Settings` pointed at this world (tokens included unless tokens=False)."""
        return local_settings(
            self.hf_endpoint,
            self.civitai_url,
            catalog_url=self.catalog_url,
            hf_token=self.hf_token if tokens else None,
            civitai_token=self.civitai_token if tokens else None,
            **overrides,
        )


def local_settings(
    hub_url: str, civitai_url: str, *, catalog_url: str | None = None, **overrides: Any
) -> Settings:
    """A `comfyfixer.config.Settings` whose Hub and Civitai are the fakes at these URLs (no catalogue
    unless given), with loopback allowed as a download host; `overrides` replace any other field."""
    from dataclasses import replace

    from comfyfixer.config import Settings

    settings = Settings(
        hf_endpoint=hub_url,
        civitai_url=civitai_url,
        catalog_url=catalog_url,
        extra_allowed_hosts=("127.0.0.1", "localhost"),
        hf_endpoint_overridden=True,
        civitai_url_overridden=True,
    )
    return replace(settings, **overrides) if overrides else settings


@contextmanager
def start_world(world: World) -> Iterator[WorldEndpoints]:
    """Start the world's hub (+CDN), Civitai (+storage) and catalogue server; stop them on exit."""
    with world.hub, world.civitai, world.files:
        for server in (world.hub, world.hub.cdn, world.civitai, world.civitai.storage, world.files):
            server.clear_log()
            server.clear_failures()  # scripted failures of an earlier test must not leak into this one
        endpoints = WorldEndpoints(
            world,
            world.hub.url,
            world.civitai.url,
            world.files.url_for("/model-list.json"),
            world.hub.cdn.url,
            world.civitai.storage.url,
        )
        entries = [entry | {"url": endpoints.url_of(exp)} for exp, entry in world.catalogue]
        world.files.set_catalogue(entries)
        yield endpoints
