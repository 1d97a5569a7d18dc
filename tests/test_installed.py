"""Installed models in the run report: what is known of them without hashing, and misplaced copies."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from comfyfixer.loop.installed import installed_results
from comfyfixer.models import Reference
from comfyfixer.state.store import DownloadRecord


def _ref(tmp: Path, name: str, status: str, path: Path | None, workflow: str = "a.json") -> Reference:
    return Reference(
        workflow=str(tmp / workflow),
        name=name,
        directory="loras",
        status=status,  # type: ignore[arg-type]
        local_path=str(path) if path else None,
    )


def test_installed_models_carry_path_and_the_sha256_known_without_hashing(tmp_path: Path) -> None:
    loras = tmp_path / "models" / "loras"
    loras.mkdir(parents=True)
    ours, scripted, foreign, elsewhere = (loras / n for n in ("ours.pt", "scripted.pt", "foreign.pt", "x.pt"))
    for path in (ours, scripted, foreign, elsewhere):
        path.write_bytes(path.name.encode() * 100)
    record = DownloadRecord(
        name="ours.pt",
        directory="loras",
        path=str(ours),
        url="https://example.org/ours.pt",
        source="huggingface",
        sha256=hashlib.sha256(ours.read_bytes()).hexdigest(),
        size=ours.stat().st_size,
        script="download_004_ours.pt.sh",
        time="2026-01-01T00:00:00Z",
    )
    # The script's sidecar: digest, then the size/mtime/inode stamp of the file it describes.
    st = scripted.stat()
    digest = hashlib.sha256(scripted.read_bytes()).hexdigest()
    scripted.with_name("scripted.pt.sha256").write_text(
        f"{digest}  scripted.pt\n# comfyfixer {st.st_size} {int(st.st_mtime)} {st.st_ino}\n"
    )
    refs = [
        _ref(tmp_path, "ours.pt", "present", ours),
        _ref(tmp_path, "ours.pt", "present", ours, workflow="b.json"),
        _ref(tmp_path, "scripted.pt", "present", scripted),
        _ref(tmp_path, "foreign.pt", "present", foreign),
        _ref(tmp_path, "sub/x.pt", "misplaced", elsewhere),
        _ref(tmp_path, "gone.pt", "missing", None),
    ]
    got = {r.name: r for r in installed_results(refs, [record])}
    assert set(got) == {"ours.pt", "scripted.pt", "foreign.pt", "sub/x.pt"}  # one per model
    assert got["ours.pt"].outcome == "already_present" and got["ours.pt"].sha256 == record.sha256
    assert got["ours.pt"].script == record.script and len(got["ours.pt"].workflows) == 2
    assert got["scripted.pt"].sha256 == digest and got["scripted.pt"].path == str(scripted)
    assert got["foreign.pt"].sha256 is None and "not computed" in got["foreign.pt"].reason
    assert got["foreign.pt"].size == foreign.stat().st_size
    assert got["sub/x.pt"].outcome == "skipped" and "move or link" in got["sub/x.pt"].reason
    # A stale sidecar (the file changed since) is not believed.
    os.utime(scripted, (1, 1))
    again = {r.name: r for r in installed_results(refs, [record])}
    assert again["scripted.pt"].sha256 is None
