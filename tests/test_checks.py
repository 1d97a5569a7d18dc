"""The checks every download script carries and the run imports: the pickle gate, the host rule, formats.

Pickles are built from opcodes in the test (never loaded with a real unpickler that could run them);
a recording unpickler, whose `find_class` only notes what it is asked for, proves that the globals the
gate reports are exactly those `pickle.load` would import.
"""

from __future__ import annotations

import gzip
import io
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from comfyfixer.checks import formats, hosts, pickles
from comfyfixer.config import Settings
from comfyfixer.errors import ComfyFixerError
from comfyfixer.loop.wiring import RenderedScripts
from comfyfixer.models import Candidate, MissingModel
from comfyfixer.resolvers.validate import catalogue_grant
from comfyfixer.scripts.render import carried_program
from tests import model_bytes
from tests.test_catalogue_real import _entries, _file_url

MALICIOUS = {
    "os.system": model_bytes.os_system_pickle,
    "fork_exec": model_bytes.fork_exec_pickle,
    "exec of a builtin": model_bytes.exec_builtin_pickle,
    "nested reduce": model_bytes.nested_reduce_pickle,
}


class _Stub:
    """What the recording unpickler hands back for every global: callable, fillable, inert."""

    def __call__(self, *args: Any, **kwargs: Any) -> _Stub:
        return _Stub()

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _Recorder(pickle.Unpickler):
    """Loads nothing real: notes each global pickle asks for and hands back a harmless stand-in."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.asked: list[str] = []

    def find_class(self, module: str, name: str) -> Any:
        self.asked.append(f"{module}.{name}")
        return _Stub()

    def persistent_load(self, pid: Any) -> Any:
        return ("storage", pid)


def _asked(data: bytes) -> list[str]:
    recorder = _Recorder(data)
    recorder.load()
    return recorder.asked


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _zip(data_pkl: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


# -- the pickle gate ---------------------------------------------------------------------------------


@pytest.mark.parametrize("proto", [2, 4])
@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_code_running_pickles_are_refused(tmp_path: Path, case: str, proto: int) -> None:
    data = MALICIOUS[case](proto)
    asked = _asked(data)  # what pickle.load would import, in order
    assert asked and not set(asked) <= pickles.ALLOWED_GLOBALS
    for name, payload in (
        ("x.pkl", data),
        ("x.pt", _zip(data)),
        ("old.pt", model_bytes.legacy_torch_checkpoint(data)),
    ):
        refused = pickles.refused_globals(_write(tmp_path, name, payload))
        assert refused == sorted(set(asked) - pickles.ALLOWED_GLOBALS), (case, name)


def test_fork_exec_is_refused_though_a_denylist_only_calls_it_suspicious(tmp_path: Path) -> None:
    path = _write(tmp_path, "sam.pt", _zip(model_bytes.fork_exec_pickle()))
    assert pickles.refused_globals(path) == ["_posixsubprocess.fork_exec"]


def test_a_global_built_at_load_time_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.pkl", model_bytes.stack_global_from_a_reduce_pickle())
    with pytest.raises(pickles.Unreadable, match="built at load time"):
        pickles.refused_globals(path)


@pytest.mark.parametrize("proto", [2, 4])
def test_torch_checkpoints_pass(tmp_path: Path, proto: int) -> None:
    pkl = model_bytes.torch_state_dict_pickle(proto)
    # Well formed: pickle itself reads it (with stand-ins) and asks for exactly these globals.
    assert _asked(pkl) == [
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor_v2",
        "torch.FloatStorage",
        "collections.OrderedDict",
    ]
    assert pickles.refused_globals(_write(tmp_path, "x.pt", model_bytes.torch_checkpoint(proto))) == []
    assert pickles.refused_globals(_write(tmp_path, "old.pth", model_bytes.legacy_torch_checkpoint())) == []


def test_plain_containers_and_bytes_pass(tmp_path: Path) -> None:
    data = {"w": [1.0, 2.0], "b": b"\x00\x01", "s": {1, 2}, "c": 1 + 2j}
    for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
        path = _write(tmp_path, f"x{proto}.pkl", pickle.dumps(data, protocol=proto))
        assert pickles.refused_globals(path) == [], proto


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x01\x02 not a pickle", "neither a pickle"),
        (b"\x80\x02ctorch\nFloat", "cannot be parsed"),
        (_zip(b"")[:40], "cannot be read"),
    ],
)
def test_what_the_gate_cannot_read_is_unreadable(tmp_path: Path, data: bytes, why: str) -> None:
    with pytest.raises(pickles.Unreadable, match=why):
        pickles.refused_globals(_write(tmp_path, "x.ckpt", data))


def test_a_zip_without_a_pickle_is_not_a_checkpoint(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/readme.txt", "hello")
    with pytest.raises(pickles.Unreadable, match="no pickle"):
        pickles.refused_globals(_write(tmp_path, "x.pt", buf.getvalue()))


def test_the_carried_gate_agrees_with_the_imported_one(tmp_path: Path) -> None:
    # The script runs the module's text with `python -S -c`: same verdicts, as exit codes.
    program = carried_program("PICKLES_PY")
    cases = {
        "ok.pt": (model_bytes.torch_checkpoint(), 0),
        "bad.pt": (_zip(model_bytes.fork_exec_pickle()), 1),
        "junk.ckpt": (b"junk", 2),
    }
    for name, (data, code) in cases.items():
        run = subprocess.run(
            [sys.executable, "-S", "-c", program, _write(tmp_path, name, data)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == code, (name, run.stderr)
        if code == 1:
            assert "_posixsubprocess.fork_exec" in run.stderr


# -- the host rule -------------------------------------------------------------------------------


def _hop(*args: str) -> subprocess.CompletedProcess[str]:
    rule = Settings(extra_allowed_hosts=("127.0.0.1",)).host_rule
    data = [" ".join(sorted(rule.allowed)), " ".join(sorted(rule.http_hosts)), " ".join(rule.suffixes)]
    return subprocess.run(
        [sys.executable, "-S", "-c", carried_program("HOSTS_PY"), *data, *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_script_host_check_is_the_settings_rule() -> None:
    start = "https://huggingface.co/o/r/resolve/main/x.safetensors"
    ok = _hop("", start, start, "https://cas-bridge.xethub.hf.co/x?sig=1")
    assert ok.returncode == 0 and ok.stdout.split() == ["https://cas-bridge.xethub.hf.co/x?sig=1", "no-token"]
    same = _hop("", start, start, "/api/resolve-cache/models/o/r/abc/x.safetensors")
    assert same.stdout.split()[1] == "token"  # a relative hop stays on the origin the token belongs to
    for target in ("https://evil.example/x", "http://cdn-lfs.hf.co/x", "https://user:pw@huggingface.co/x"):
        refused = _hop("", start, start, target)
        assert refused.returncode == 1 and "not allowed" in refused.stderr, target
        assert Settings().host_allowed(target, redirect=True) is False


def test_a_catalogue_grant_covers_that_exact_url_only() -> None:
    sam = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    assert _hop(sam, sam, sam).returncode == 0
    assert _hop("", sam, sam).returncode == 1
    assert _hop(sam, sam, sam.replace("vit_b", "vit_h")).returncode == 1
    assert _hop(sam, sam, sam, "https://dl.fbaipublicfiles.com/other.pth").returncode == 1


def test_token_goes_only_to_the_same_origin() -> None:
    assert hosts.origin("https://HF.co/x") == hosts.origin("https://hf.co:443/y")
    assert hosts.origin("http://127.0.0.1:8000/a") != hosts.origin("http://127.0.0.1:8001/a")


# -- the format check as the script runs it ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("x.safetensors", model_bytes.safetensors(), 0),
        ("x.safetensors", model_bytes.bogus_safetensors(), 1),
        ("x.safetensors", gzip.compress(model_bytes.safetensors()), 1),
        ("x.gguf", b"PK\x03\x04" + bytes(60), 1),
        ("x.safetensors", b"<!DOCTYPE html><html>login</html>", 3),
        ("x.pt", model_bytes.torch_checkpoint(), 0),
    ],
)
def test_the_carried_format_check(tmp_path: Path, name: str, data: bytes, code: int) -> None:
    path = _write(tmp_path, name, data)
    run = subprocess.run(
        [sys.executable, "-S", "-c", carried_program("FORMATS_PY"), path, name],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == code, run.stderr
    assert (formats.check(path, name) is None) == (code == 0)


# -- catalogue hosts ---------------------------------------------------------------------------------


def test_real_catalogue_hosts_outside_the_allowlist_are_granted_per_file(tmp_path: Path) -> None:
    settings = Settings()
    outside = [e for e in _entries() if _file_url(e) and not settings.host_allowed(str(e["url"]))]
    hosts_seen = {str(e["url"]).split("/")[2] for e in outside}
    assert {"dl.fbaipublicfiles.com", "storage.googleapis.com", "openaipublic.azureedge.net"} <= hosts_seen
    scripts = RenderedScripts(settings)
    for entry in outside:
        url, name = str(entry["url"]), str(entry["filename"])
        model = MissingModel(name=name, directory="checkpoints", workflows=["wf.json"])
        dest = tmp_path / "models" / "checkpoints" / name
        _, text = scripts.render(1, model, Candidate(url, name, "catalogue"), dest)
        assert f"GRANTED_URL={url}" in text or f"GRANTED_URL='{url}'" in text, url
        assert "# granted: " in text and "curated catalogue" in text
        # The grant belongs to the catalogue: the same URL from a hint or the agent is refused.
        for source in ("hint", "llm", "huggingface"):
            assert catalogue_grant(Candidate(url, name, source), settings) is None
            with pytest.raises(ComfyFixerError, match="not allowed"):
                scripts.render(1, model, Candidate(url, name, source), dest)
