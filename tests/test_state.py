"""State that survives runs: the script counter, downloaded_models.json and status.json."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from comfyfixer.cli.errors import explain
from comfyfixer.errors import StateError
from comfyfixer.state.counter import ScriptCounter
from comfyfixer.state.store import (
    RECORD_KEYS,
    DownloadedModels,
    DownloadRecord,
    StatusEntry,
    StatusFile,
    model_key,
)

REPO = Path(__file__).resolve().parents[1]


def _record(
    name: str = "a.safetensors", *, directory: str = "loras", path: str = "/m/a", size: int = 3
) -> DownloadRecord:
    return DownloadRecord(
        name=name,
        directory=directory,
        path=path,
        url="https://huggingface.co/x/y/resolve/main/a.safetensors",
        source="huggingface",
        sha256="ab" * 32,
        size=size,
        script="download_001_a.safetensors.sh",
        time="2025-01-01T00:00:00Z",
    )


# ---------------------------------------------------------------- counter

_TAKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from comfyfixer.state.counter import ScriptCounter
    counter = ScriptCounter(Path(sys.argv[1]))
    out = []
    for i in range(int(sys.argv[2])):
        if i % 2:
            out.append(counter.take())
        else:
            made = counter.create_script(lambda n: (f"download_{n:03d}_m.sh", f"#!/bin/bash\\n# {n}\\n"))
            out.append(made.number)
    print(" ".join(map(str, out)))
    """
)


def test_counter_never_hands_out_a_number_twice_across_processes(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _TAKER, str(tmp_path), "15"], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    numbers: list[int] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        numbers += [int(n) for n in out.split()]
    assert sorted(numbers) == list(range(1, 61))
    assert (tmp_path / "download_counter.txt").read_text() == "60\n"
    scripts = sorted(p.name for p in tmp_path.glob("download_*.sh"))
    assert len(scripts) == 4 * 8  # calls 0, 2, …, 14 of each process created one, none overwritten
    for script in tmp_path.glob("download_*.sh"):
        number = int(script.name.split("_")[1])
        assert script.read_text() == f"#!/bin/bash\n# {number}\n"


def test_counter_survives_instances_and_never_goes_below_existing_scripts(tmp_path: Path) -> None:
    assert ScriptCounter(tmp_path).take() == 1
    assert ScriptCounter(tmp_path).take() == 2
    # The counter file is lost but a later script exists: numbers continue after it.
    (tmp_path / "download_counter.txt").unlink()
    (tmp_path / "download_007_old.safetensors.sh").write_text("old")
    assert ScriptCounter(tmp_path).take() == 8
    assert ScriptCounter(tmp_path).last() == 8


def test_damaged_counter_is_recovered_from_scripts_and_repaired(tmp_path: Path) -> None:
    (tmp_path / "download_counter.txt").write_text("garbage\x00")
    (tmp_path / "download_004_x.sh").write_text("x")
    assert ScriptCounter(tmp_path).take() == 5
    assert (tmp_path / "download_counter.txt").read_text() == "5\n"


@pytest.mark.parametrize("content", ["²", "٣", "1²", "-3", " ", "9" * 5 + "\u0663"])
def test_counter_holding_non_ascii_digits_is_repaired_not_a_crash(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    # "²".isdigit() is True but int("²") fails; "٣" is a digit int() accepts: neither is a counter.
    (tmp_path / "download_counter.txt").write_text(content, encoding="utf-8")
    (tmp_path / "download_002_x.sh").write_text("x")
    (tmp_path / "download_\u0669\u0669_y.sh").write_text("y")  # not a script number either
    assert ScriptCounter(tmp_path).last() == 2
    assert ScriptCounter(tmp_path).take() == 3
    assert (tmp_path / "download_counter.txt").read_text() == "3\n"
    assert "not a number (ASCII digits)" in caplog.text and "rewritten" in caplog.text


def test_create_script_never_overwrites_and_is_executable(tmp_path: Path) -> None:
    counter = ScriptCounter(tmp_path)
    # A foreign file already holds the name number 1 would get (as if written by hand).
    (tmp_path / "download_001_m.sh").write_text("user's file")
    (tmp_path / "download_counter.txt").write_text("0\n")
    made = counter.create_script(
        lambda n: ("download_001_m.sh" if n == 1 else f"download_{n:03d}_m.sh", "body")
    )
    # 001 exists on disk, so the highest-script rule already skips it.
    assert made.number == 2
    assert (tmp_path / "download_001_m.sh").read_text() == "user's file"
    assert made.path.read_text() == "body"
    assert os.access(made.path, os.X_OK)
    # A clash that the number rule cannot see (a name without a number) takes the next number.
    (tmp_path / "clash.sh").write_text("keep")
    made = counter.create_script(lambda n: ("clash.sh" if n == 3 else f"download_{n:03d}_m.sh", "new"))
    assert made.number == 4
    assert (tmp_path / "clash.sh").read_text() == "keep"
    assert not list(tmp_path.glob(".*.tmp"))


def test_create_script_refuses_a_path_as_name(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="plain file name"):
        ScriptCounter(tmp_path).create_script(lambda n: ("../evil.sh", "x"))
    assert not (tmp_path.parent / "evil.sh").exists()


# ---------------------------------------------------------------- downloaded_models.json

# Frozen payloads: files earlier versions wrote. They must keep loading.
SCHEMA0_LIST = """[
  {"name": "sd15/model.safetensors", "directory": "checkpoints",
   "path": "/c/models/checkpoints/sd15/model.safetensors",
   "url": "https://huggingface.co/r/m/resolve/main/model.safetensors", "hash": "ABCDEF", "size": 10,
   "downloaded_at": "2024-05-01T10:00:00Z"},
  {"name": "", "path": "/nowhere"},
  "not an object"
]"""
SCHEMA1 = {
    "schema": 1,
    "models": [
        {
            "name": "x.pt",
            "directory": "upscale_models",
            "path": "/c/models/upscale_models/x.pt",
            "url": "https://civitai.com/api/download/models/1",
            "source": "civitai",
            "sha256": "AA" * 32,
            "size": 5,
            "script": "download_003_x.pt.sh",
            "time": "2025-02-02T00:00:00Z",
        }
    ],
}


def test_schema0_list_is_migrated_and_rewritten_with_exact_keys(tmp_path: Path) -> None:
    store = DownloadedModels(tmp_path)
    store.path.write_text(SCHEMA0_LIST)
    records = store.load()
    assert len(records) == 1
    rec = records[0]
    assert (rec.name, rec.sha256, rec.time, rec.source) == (
        "sd15/model.safetensors",
        "abcdef",
        "2024-05-01T10:00:00Z",
        None,
    )
    assert any("ignored 2 entry(ies)" in w for w in store.warnings)
    store.record(_record())
    payload = json.loads(store.path.read_text())
    assert payload["schema"] == 1
    assert [set(m) for m in payload["models"]] == [set(RECORD_KEYS)] * 2


def test_schema1_loads_and_find_matches_folder_and_name_case_insensitively(tmp_path: Path) -> None:
    store = DownloadedModels(tmp_path)
    store.path.write_text(json.dumps(SCHEMA1))
    rec = store.find("upscale_models", "X.pt")
    assert rec is not None and rec.sha256 == "aa" * 32 and rec.script == "download_003_x.pt.sh"
    assert store.find("loras", "x.pt") is None


def test_record_replaces_same_model_and_redacts_urls(tmp_path: Path) -> None:
    store = DownloadedModels(tmp_path)
    store.record(_record(size=1))
    store.record(_record("b.pt", size=2))
    again = _record(size=9)
    store.record(
        DownloadRecord(**{**again.to_json(), "url": "https://civitai.com/api/download/models/1?token=SECRET"})
    )
    records = {r.name: r for r in store.load()}
    assert records["a.safetensors"].size == 9 and records["b.pt"].size == 2
    assert "SECRET" not in store.path.read_text()


def test_another_comfyui_root_gets_its_own_record(tmp_path: Path) -> None:
    store = DownloadedModels(tmp_path)
    a, b = tmp_path / "A" / "models", tmp_path / "B" / "models"
    store.record(_record(path=str(a / "loras" / "a.safetensors")))
    assert store.find("loras", "a.safetensors", roots=[b]) is None
    store.record(_record(path=str(b / "loras" / "a.safetensors"), size=4))
    assert len(store.load()) == 2
    found_a = store.find("loras", "a.safetensors", roots=[a])
    found_b = store.find("loras", "a.safetensors", roots=[b])
    assert found_a is not None and found_a.size == 3 and found_b is not None and found_b.size == 4
    # A sibling folder whose name merely starts like the root is not inside it.
    assert not _record(path=str(tmp_path / "A" / "models2" / "x")).under([a])


def test_corrupt_file_is_moved_aside_with_a_clear_warning(tmp_path: Path) -> None:
    store = DownloadedModels(tmp_path)
    store.path.write_bytes(b'{"schema": 1, "models": [tru')
    assert store.load() == []
    asides = list(tmp_path.glob("downloaded_models.json.corrupt-*"))
    assert len(asides) == 1 and asides[0].read_bytes() == b'{"schema": 1, "models": [tru'
    assert "was damaged" in store.warnings[0] and "moved to" in store.warnings[0]
    store.record(_record())
    assert [r.name for r in store.load()] == ["a.safetensors"]


def test_newer_schema_is_refused_and_never_overwritten(tmp_path: Path) -> None:
    store = DownloadedModels(tmp_path)
    future = json.dumps({"schema": 99, "models": [], "new_field": True})
    store.path.write_text(future)
    with pytest.raises(StateError) as info:
        store.record(_record())
    assert "newer comfyfixer" in info.value.message and "Upgrade" in explain(info.value).next_step
    assert store.path.read_text() == future


def test_failed_write_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DownloadedModels(tmp_path)
    store.record(_record())
    before = store.path.read_bytes()

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        store.record(_record("b.pt"))
    monkeypatch.undo()
    assert store.path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_file_intact_checks_presence_and_size(tmp_path: Path) -> None:
    f = tmp_path / "m.bin"
    f.write_bytes(b"abc")
    assert _record(path=str(f), size=3).file_intact()
    assert not _record(path=str(f), size=4).file_intact()
    assert not _record(path=str(tmp_path / "gone"), size=3).file_intact()


def _installed(tmp_path: Path, data: bytes, *, verified: str) -> DownloadRecord:
    import hashlib

    f = tmp_path / "models" / "loras" / "m.safetensors"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(data)
    return DownloadRecord(
        name="m.safetensors",
        directory="loras",
        path=str(f),
        url=None,
        source="huggingface",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        script=None,
        time=verified,
    )


def test_installed_files_are_checked_size_always_sha_when_modified(tmp_path: Path) -> None:
    from comfyfixer.state.store import utc_now
    from comfyfixer.verify import check_installed, recorded_damage

    data = bytes(range(256)) * 40
    roots = [tmp_path / "models"]
    rec = _installed(tmp_path, data, verified="2099-01-01T00:00:00Z")  # verified after every change
    assert recorded_damage(rec) is None and check_installed([rec], roots) == []
    # Truncated: the size says so without hashing.
    path = Path(rec.path)
    path.write_bytes(data[:1000])
    [(_, what)] = check_installed([rec], roots)
    assert "1,000 bytes, not the 10,240 verified" in what and "moved aside to m.safetensors.rejected" in what
    assert not path.exists() and path.with_name("m.safetensors.rejected").exists()
    # One byte flipped after verification: same size, modified later, so the sha256 is read again.
    rec = _installed(tmp_path, data, verified=utc_now())
    os.utime(path, (0, 0))  # written "before" it was verified: trusted without hashing
    assert recorded_damage(rec) is None
    flipped = bytearray(data)
    flipped[5000] ^= 0xFF
    path.write_bytes(bytes(flipped))
    os.utime(path, None)
    future = path.stat().st_mtime + 10
    os.utime(path, (future, future))
    assert recorded_damage(rec) == "changed since it was verified (its sha256 no longer matches)"
    # Files of another ComfyUI install are not this run's business.
    assert check_installed([rec], [tmp_path / "elsewhere"]) == []
    assert path.exists()


# ---------------------------------------------------------------- status.json


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_status_entries_of_dead_runs_are_stale(tmp_path: Path) -> None:
    dead = StatusFile(tmp_path, run_pid=_dead_pid())
    dead.set(
        StatusEntry(key="loras/a", name="a", directory="loras", state="downloading", bytes=5, pid=os.getpid())
    )
    dead.set(StatusEntry(key="loras/b", name="b", directory="loras", state="done"))
    dead.flush(force=True)
    alive = StatusFile(tmp_path)  # this process: alive
    alive.set(StatusEntry(key="vae/c", name="c", directory="vae", state="downloading", pid=os.getpid()))
    alive.flush(force=True)
    states = {e.key: e.state for e in alive.read()}
    assert states == {"loras/a": "stale", "loras/b": "done", "vae/c": "downloading"}


def test_status_download_process_gone_is_stale_and_merges_keep_other_runs(tmp_path: Path) -> None:
    first = StatusFile(tmp_path)
    first.set(StatusEntry(key="k1", name="one", directory=None, state="downloading", pid=_dead_pid()))
    first.flush(force=True)
    second = StatusFile(tmp_path, run_pid=os.getpid())
    second.set(StatusEntry(key="k2", name="two", directory=None, state="queued"))
    second.flush(force=True)
    by_key = {e.key: e for e in second.read()}
    assert by_key["k1"].state == "stale" and by_key["k2"].state == "queued"
    raw = json.loads((tmp_path / "status.json").read_text())
    assert raw["schema"] == 1 and {m["key"] for m in raw["models"]} == {"k1", "k2"}
    assert {"state", "bytes", "speed", "eta", "pid", "updated_at"} <= set(raw["models"][0])


def test_status_flush_is_throttled_unless_forced(tmp_path: Path) -> None:
    status = StatusFile(tmp_path, min_interval=3600)
    status.set(StatusEntry(key="k", name="n", directory=None, state="queued"))
    assert status.flush() is True  # first write always happens
    status.set(StatusEntry(key="k", name="n", directory=None, state="searching"))
    assert status.flush() is False
    assert status.flush(force=True) is True
    assert status.flush(force=True) is False  # nothing changed


def test_corrupt_status_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "status.json").write_text("{not json")
    status = StatusFile(tmp_path)
    assert status.read() == []
    assert status.warnings
    assert list(tmp_path.glob("status.json.corrupt-*"))


def test_model_key_is_case_and_slash_insensitive() -> None:
    assert model_key("loras", "Sub\\A.safetensors") == model_key("loras", "sub/a.safetensors")
    assert model_key(None, "a") != model_key("loras", "a")


def test_create_script_rewrites_the_models_own_script_under_its_number(tmp_path: Path) -> None:
    counter = ScriptCounter(tmp_path)
    first = counter.create_script(lambda n: (f"download_{n:03d}_a.sh", "DEST=/m/a\nold\n"))
    counter.create_script(lambda n: (f"download_{n:03d}_b.sh", "DEST=/m/b\n"))

    def owns_a(path: Path) -> bool:
        return path.read_text().startswith("DEST=/m/a\n")

    again = counter.create_script(lambda n: (f"download_{n:03d}_a.sh", "DEST=/m/a\nnew\n"), owns=owns_a)
    assert (again.number, again.path, again.reused) == (first.number, first.path, True)
    assert again.path.read_text() == "DEST=/m/a\nnew\n" and os.access(again.path, os.X_OK)
    assert (tmp_path / "download_counter.txt").read_text() == "2\n"  # the last number used, unchanged
    # A model with no script of its own still takes a new number; the old numbers are never reused.
    fresh = counter.create_script(lambda n: (f"download_{n:03d}_c.sh", "DEST=/m/c\n"), owns=lambda p: False)
    assert (fresh.number, fresh.reused) == (3, False)
    assert sorted(p.name for p in counter.scripts()) == [
        "download_001_a.sh",
        "download_002_b.sh",
        "download_003_c.sh",
    ]
    assert not list(tmp_path.glob(".*.tmp"))
