"""Deterministic verification of downloaded files, on real files built in the test."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest

from comfyfixer.models import Check, FileChecks
from comfyfixer.verify import (
    detect_format,
    looks_like_error_page,
    quarantine,
    sha256_file,
    sidecar_sha256,
    verify_download,
)
from tests import model_bytes


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _verify(path: Path, **kw: object) -> FileChecks:
    args: dict[str, object] = {
        "name": path.name,
        "directory": "checkpoints",
        "expected_size": None,
        "expected_sha256": None,
    }
    args.update(kw)
    return verify_download(path, **args)  # type: ignore[arg-type]


def test_valid_safetensors_passes_every_check(tmp_path: Path) -> None:
    data = model_bytes.safetensors(1000, metadata={"format": "pt"})
    path = _write(tmp_path, "model.safetensors", data)
    report = verify_download(
        path,
        name="sd15/model.safetensors",
        directory="checkpoints",
        expected_size=len(data),
        expected_sha256=hashlib.sha256(data).hexdigest().upper(),
        source="huggingface",
        url="https://huggingface.co/x",
    )
    assert report.ok, report.checks
    assert report.format == "safetensors"
    assert report.sha256 == hashlib.sha256(data).hexdigest()
    assert report.check_texts() == {
        "exists": "ok",
        "size": "ok",
        "format": "ok",
        "sha256": "ok",
        "pickle": "skipped: not a pickle format",
    }
    assert (report.source, report.url, report.size) == ("huggingface", "https://huggingface.co/x", len(data))


def test_truncated_safetensors_fails(tmp_path: Path) -> None:
    data = model_bytes.safetensors(1000)
    path = _write(tmp_path, "model.safetensors", data[:-100])
    report = _verify(path)
    assert not report.ok
    assert "truncated" in report.reason


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (struct.pack("<Q", 10**12) + b"{}", "implausible"),
        (struct.pack("<Q", 1000) + b'{"a": 1}', "runs past the end"),
        (struct.pack("<Q", 8) + b"{not js}", "not valid JSON"),
        (b"\x00\x01\x02", "should be safetensors"),
    ],
)
def test_broken_safetensors_headers_fail(tmp_path: Path, data: bytes, why: str) -> None:
    report = _verify(_write(tmp_path, "m.safetensors", data))
    assert not report.ok
    assert why in report.reason


def test_safetensors_tensor_without_offsets_fails(tmp_path: Path) -> None:
    header = b'{"w": {"dtype": "F16", "shape": [1]}}'
    report = _verify(_write(tmp_path, "m.safetensors", struct.pack("<Q", len(header)) + header))
    assert "no valid data_offsets" in report.reason


def test_gguf_passes_and_a_gguf_named_file_must_be_gguf(tmp_path: Path) -> None:
    assert _verify(_write(tmp_path, "q4.gguf", model_bytes.gguf())).ok
    report = _verify(_write(tmp_path, "q5.gguf", model_bytes.safetensors()))
    assert not report.ok
    assert "should be gguf" in report.reason


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE html><html><body>Log in</body></html>",
        b"\n\n  <html lang='en'>",
        b'{"error":"Unauthorized","message":"The creator requires you to be logged in"}',
        b'{ "message": "rate limited" }',
    ],
)
def test_error_pages_fail(tmp_path: Path, body: bytes) -> None:
    report = _verify(_write(tmp_path, "m.safetensors", body))
    assert not report.ok
    assert report.format == "error-page"
    assert "HTML page or a JSON error" in report.reason


def test_binary_headers_never_look_like_error_pages() -> None:
    assert not looks_like_error_page(model_bytes.safetensors())
    assert not looks_like_error_page(struct.pack("<Q", ord("{")) + b'{"error": 1}')
    assert not looks_like_error_page(model_bytes.gguf())
    assert not looks_like_error_page(model_bytes.benign_torch_zip())


def test_size_mismatch_fails(tmp_path: Path) -> None:
    data = model_bytes.safetensors()
    report = _verify(_write(tmp_path, "m.safetensors", data), expected_size=len(data) + 1)
    assert not report.ok
    assert report.reason.startswith("size:")


def test_sha_mismatch_fails(tmp_path: Path) -> None:
    report = _verify(_write(tmp_path, "m.safetensors", model_bytes.safetensors()), expected_sha256="0" * 64)
    assert not report.ok
    assert report.reason.startswith("sha256:")


def test_the_scripts_digest_is_used_instead_of_rehashing(tmp_path: Path) -> None:
    path = _write(tmp_path, "m.safetensors", model_bytes.safetensors())
    claimed = "b" * 64  # not the file's real digest: accepted only if no re-hash happens
    report = _verify(path, expected_sha256=claimed, actual_sha256=claimed)
    assert report.ok, report.checks
    assert report.sha256 == claimed


def test_a_matching_sidecar_spares_the_hash_and_a_stale_one_is_ignored(tmp_path: Path) -> None:
    data = model_bytes.safetensors()
    path = _write(tmp_path, "m.safetensors", data)
    st = path.stat()
    sidecar = tmp_path / "m.safetensors.sha256"
    stamp = f"{st.st_size} {int(st.st_mtime)} {st.st_ino}"
    sidecar.write_text(f"{'c' * 64}  m.safetensors\n# comfyfixer {stamp}\n")
    assert sidecar_sha256(path) == "c" * 64
    assert _verify(path).sha256 == "c" * 64
    assert _verify(path, trust_sidecar=False).sha256 == hashlib.sha256(data).hexdigest()
    os.utime(path, (st.st_atime, st.st_mtime + 10))
    assert sidecar_sha256(path) is None
    assert _verify(path).sha256 == hashlib.sha256(data).hexdigest()


def test_malicious_pickle_is_refused_unless_allowed(tmp_path: Path) -> None:
    path = _write(tmp_path, "evil.ckpt", model_bytes.malicious_pickle())
    report = _verify(path)
    assert not report.ok
    assert report.format == "pickle"
    assert report.checks["pickle"].failed and "os.system" in report.checks["pickle"].detail
    allowed = _verify(path, allow_pickle=True)
    assert allowed.ok, allowed.checks
    assert allowed.checks["pickle"].status == "skipped"
    assert allowed.checks["pickle"].detail.startswith("refused (os.system)")


def test_malicious_pickle_inside_a_torch_zip_is_refused(tmp_path: Path) -> None:
    report = _verify(_write(tmp_path, "evil.pt", model_bytes.malicious_torch_zip()))
    assert not report.ok
    assert report.format == "pickle-zip"
    assert "globals that weights files do not use: os.system" in report.reason


def test_benign_torch_zip_passes(tmp_path: Path) -> None:
    report = _verify(_write(tmp_path, "ok.pth", model_bytes.benign_torch_zip()))
    assert report.ok, report.checks
    assert report.checks["pickle"] == Check("ok")


def test_pickle_named_garbage_fails_the_format_check(tmp_path: Path) -> None:
    report = _verify(_write(tmp_path, "x.ckpt", b"\x01\x02garbage" * 20))
    assert not report.ok
    assert "format" in report.reason


def test_pickle_extension_comes_from_the_name_not_the_path(tmp_path: Path) -> None:
    # The script verifies `<dest>.part`; the scan must still treat it as a .ckpt.
    path = _write(tmp_path, "evil.ckpt.part", model_bytes.malicious_pickle())
    report = _verify(path, name="evil.ckpt")
    assert report.checks["pickle"].failed and "os.system" in report.checks["pickle"].detail


def test_onnx_and_unknown_formats(tmp_path: Path) -> None:
    assert _verify(_write(tmp_path, "m.onnx", b"\x08\x07\x12\x07pytorch")).ok
    report = _verify(_write(tmp_path, "m.engine", b"\x01\x02\x03"))
    assert report.ok
    assert report.checks["format"].status == "skipped"


def test_missing_file_fails(tmp_path: Path) -> None:
    report = _verify(tmp_path / "nope.safetensors")
    assert not report.ok
    assert "does not exist" in report.reason


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (model_bytes.safetensors(), "safetensors"),
        (model_bytes.gguf(), "gguf"),
        (model_bytes.benign_torch_zip(), "pickle-zip"),
        (model_bytes.malicious_pickle(), "pickle"),
        (b"random bytes", "unknown"),
    ],
)
def test_formats_are_recognised(tmp_path: Path, data: bytes, fmt: str) -> None:
    assert detect_format(_write(tmp_path, "f", data))[0] == fmt


def test_quarantine_moves_the_file_aside(tmp_path: Path) -> None:
    path = _write(tmp_path, "m.safetensors", b"<html>")
    (tmp_path / "m.safetensors.sha256").write_text("x")
    old = _write(tmp_path, "m.safetensors.rejected", b"older reject")
    moved = quarantine(path)
    assert moved == old
    assert moved.read_bytes() == b"<html>"
    assert not path.exists()
    assert not (tmp_path / "m.safetensors.sha256").exists()


def test_sha256_file(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    assert sha256_file(_write(tmp_path, "f", data)) == hashlib.sha256(data).hexdigest()
