"""The segmented downloader a script carries (`scripts/carried/segments.py`), run as scripts run it.

Each case starts `python -S -c <program>` against loopback servers that misbehave the way CDNs do
(ranges ignored, signed links that expire, redirects to another host, a cut mid-way) and asserts
on the part file, the resume record and the servers' request logs. Small files with a low size
threshold keep it fast; pieces are 1 MiB, so 6 MiB gives several connections real work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from comfyfixer.checks import formats, hosts, pickles
from comfyfixer.scripts.carried import http_client, segments
from comfyfixer.scripts.carried.http_client import Connection, Response
from comfyfixer.scripts.carried.rules import Rules
from comfyfixer.scripts.render import segments_program
from tests.fakes.files import FileServer
from tests.fakes.server import Exchange

PROGRAM = segments_program()  # the loader, the module names, their texts, "--"
HOSTS_PY = Path(hosts.__file__).read_text(encoding="utf-8")
FORMATS_PY = Path(formats.__file__).read_text(encoding="utf-8")
PICKLES_PY = Path(pickles.__file__).read_text(encoding="utf-8")
MIB = 1 << 20
DATA = os.urandom(6 * MIB + 12345)
SHA = hashlib.sha256(DATA).hexdigest()


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def sha256(self) -> str | None:
        for line in self.stdout.splitlines():
            if line.startswith("sha256 "):
                return line.split()[1]
        return None


def command(part: Path, url: str, size: int | None, *, connections: int = 4, suffixes: str = "") -> list[str]:
    return [
        sys.executable,
        "-S",
        "-c",
        *PROGRAM,
        str(part),
        url,
        "" if size is None else str(size),
        str(connections),
        str(MIB),  # the size threshold
        "comfyfixer-test",
        "0",
        "127.0.0.1",  # allowed hosts: localhost (same server, other name) is a foreign host
        "127.0.0.1",  # plain http allowed there
        suffixes,
        "",
        HOSTS_PY,
        part.name.removesuffix(".part"),
        FORMATS_PY,
        PICKLES_PY,
        "",
    ]


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    out.update(COMFYFIXER_RETRY_DELAY="0", COMFYFIXER_MAX_ATTEMPTS="3")
    return out


def run(
    part: Path, url: str, size: int | None = len(DATA), *, token: str = "", connections: int = 4
) -> Outcome:
    proc = subprocess.run(
        command(part, url, size, connections=connections),
        input=token + "\n",
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def record_of(part: Path) -> dict[str, object] | None:
    path = Path(str(part) + ".segments")
    return json.loads(path.read_text()) if path.exists() else None


@pytest.fixture
def fs() -> Iterator[FileServer]:
    with FileServer() as server:
        yield server
        assert server.errors == []


def test_downloads_in_ranged_pieces_over_several_connections(fs: FileServer, tmp_path: Path) -> None:
    fs.add("/m.safetensors", DATA)
    part = tmp_path / "m.safetensors.part"
    out = run(part, fs.url_for("/m.safetensors"))
    assert out.code == 0, out.stderr
    assert out.sha256 == SHA
    assert part.read_bytes() == DATA
    assert record_of(part) is None  # finished: nothing left to resume
    ranges = [r.range for r in fs.requests]
    assert len(ranges) >= 4 and all(r and r.startswith("bytes=") for r in ranges)
    assert fs.bytes_sent() == len(DATA)  # every byte exactly once
    assert all(r.headers.get("accept-encoding") == "identity" for r in fs.requests)


def test_unknown_size_is_learnt_from_the_first_range(fs: FileServer, tmp_path: Path) -> None:
    fs.add("/m.bin", DATA)
    part = tmp_path / "m.bin.part"
    out = run(part, fs.url_for("/m.bin"), None)
    assert out.code == 0, out.stderr
    assert out.sha256 == SHA and part.read_bytes() == DATA
    assert fs.requests[0].range == "bytes=0-0"


def test_cut_mid_way_keeps_the_record_and_a_rerun_fetches_only_the_rest(
    fs: FileServer, tmp_path: Path
) -> None:
    # The server holds every body at 3 MiB (a piece boundary), so the download stalls there by
    # construction: the cut always lands mid-way, whatever the machine's load.
    hold = 3 * MIB
    blob = fs.add("/m.safetensors", DATA)
    blob.hold_after = hold
    part = tmp_path / "m.safetensors.part"
    proc = subprocess.Popen(
        command(part, fs.url_for("/m.safetensors"), len(DATA)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
    )
    try:
        # Waits for a state that cannot move on while the hold lasts (not for time to pass).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rec = record_of(part)
            if rec and int(str(rec["bytes"])) >= hold:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == segments.INTERRUPTED
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    rec = record_of(part)
    assert rec is not None
    kept = int(str(rec["bytes"]))
    assert kept == hold
    for a, b in rec["done"]:  # type: ignore[attr-defined]
        assert part.read_bytes()[a:b] == DATA[a:b]  # the record claims only bytes that are there
    first_run = fs.bytes_sent()
    fs.clear_log()
    blob.hold_after = None
    out = run(part, fs.url_for("/m.safetensors"))
    assert out.code == 0, out.stderr
    assert out.sha256 == SHA and part.read_bytes() == DATA
    # Only the missing bytes are asked for: no range of the rerun overlaps what the record kept.
    done = [(int(a), int(b)) for a, b in rec["done"]]  # type: ignore[attr-defined]
    assert fs.requests
    for r in fs.requests:
        assert r.range is not None
        first, last = (int(x) for x in r.range.removeprefix("bytes=").split("-"))
        assert all(last < a or first >= b for a, b in done), (r.range, done)
    assert first_run >= kept
    assert record_of(part) is None


def test_a_part_from_the_single_stream_is_kept_as_a_prefix(fs: FileServer, tmp_path: Path) -> None:
    fs.add("/m.safetensors", DATA)
    part = tmp_path / "m.safetensors.part"
    part.write_bytes(DATA[: 2 * MIB])
    out = run(part, fs.url_for("/m.safetensors"))
    assert out.code == 0, out.stderr
    assert out.sha256 == SHA
    assert fs.bytes_sent() == len(DATA) - 2 * MIB
    assert fs.requests[0].range == f"bytes={2 * MIB}-{3 * MIB - 1}"


def test_a_record_for_another_url_is_not_trusted(fs: FileServer, tmp_path: Path) -> None:
    fs.add("/m.safetensors", DATA)
    part = tmp_path / "m.safetensors.part"
    part.write_bytes(b"\0" * len(DATA))
    Path(str(part) + ".segments").write_text(
        json.dumps(
            {"version": 1, "url": "http://127.0.0.1:1/other", "size": len(DATA), "done": [[0, len(DATA)]]}
        )
    )
    out = run(part, fs.url_for("/m.safetensors"))
    assert out.code == 0, out.stderr
    assert out.sha256 == SHA and part.read_bytes() == DATA


class NoRanges(FileServer):
    """A server that ignores Range and always answers 200 with the whole body."""

    def handle(self, ex: Exchange) -> None:
        del ex.headers["Range"]
        super().handle(ex)


def test_a_server_that_ignores_ranges_hands_over_to_the_single_stream(tmp_path: Path) -> None:
    with NoRanges() as server:
        server.add("/m.safetensors", DATA)
        part = tmp_path / "m.safetensors.part"
        part.write_bytes(DATA[:1000])  # an earlier single-stream prefix stays for curl to judge
        out = run(part, server.url_for("/m.safetensors"))
        assert out.code == segments.FALLBACK, out.stderr
        assert "single connection" in out.stderr
        assert part.read_bytes() == DATA[:1000]
        assert record_of(part) is None
        assert len(server.requests) == 1  # nothing fetched after the 200
        assert server.bytes_sent() < len(DATA)


def test_a_server_that_stops_honouring_ranges_leaves_a_clean_prefix(tmp_path: Path) -> None:
    class Flaky(FileServer):
        def handle(self, ex: Exchange) -> None:
            if len(self.requests) > 2:
                del ex.headers["Range"]
            super().handle(ex)

    with Flaky() as server:
        server.add("/m.safetensors", DATA)
        part = tmp_path / "m.safetensors.part"
        out = run(part, server.url_for("/m.safetensors"), connections=1)
        assert out.code == segments.FALLBACK, out.stderr
        kept = part.read_bytes()
        assert kept == DATA[: len(kept)]  # what remains is a prefix of the file, never a hole
        assert record_of(part) is None


def test_small_file_of_unknown_size_goes_to_the_single_stream(fs: FileServer, tmp_path: Path) -> None:
    fs.add("/small.bin", DATA[:5000])
    part = tmp_path / "small.bin.part"
    out = run(part, fs.url_for("/small.bin"), None)
    assert out.code == segments.FALLBACK
    assert not part.exists() or part.stat().st_size == 0


def test_redirect_to_a_foreign_host_is_refused_before_any_byte(fs: FileServer, tmp_path: Path) -> None:
    fs.add("/cdn/m.safetensors", DATA)
    fs.redirect("/m.safetensors", fs.url_for("/cdn/m.safetensors", alt=True))  # localhost: not allowed
    part = tmp_path / "m.safetensors.part"
    out = run(part, fs.url_for("/m.safetensors"))
    assert out.code == segments.HOST
    assert "localhost" in out.stderr
    assert fs.requests_to("/cdn/*") == []
    assert record_of(part) is None


class Expiring(FileServer):
    """A hub: `/orig` redirects to a signed link on its CDN (`self.cdn`, another origin); each link
    stops working after `uses` requests, as signed URLs expire during a long download."""

    def __init__(self, uses: int, foreign_after: int | None = None) -> None:
        super().__init__()
        self.uses = uses
        self.foreign_after = foreign_after  # from this signature on, redirect to another host
        self.signature = 0
        self.served: dict[str, int] = {}
        outer = self

        class Cdn(FileServer):
            def handle(self, ex: Exchange) -> None:
                sig = ex.param("sig") or ""
                outer.served[sig] = outer.served.get(sig, 0) + 1
                if sig != str(outer.signature) or outer.served[sig] > outer.uses:
                    ex.reply(
                        403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
                    )
                    return
                super().handle(ex)

        self.cdn = Cdn()

    def start(self) -> Expiring:
        self.cdn.start()
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        self.cdn.stop()

    def handle(self, ex: Exchange) -> None:
        self.signature += 1
        foreign = self.foreign_after is not None and self.signature > self.foreign_after
        base = self.cdn.alt_url if foreign else self.cdn.url
        ex.reply(302, b"", [("Location", f"{base}/cdn/blob?sig={self.signature}")])


def test_an_expired_signed_link_is_resolved_again_from_the_original_url(tmp_path: Path) -> None:
    with Expiring(uses=3) as hub:
        hub.cdn.add("/cdn/blob", DATA)
        part = tmp_path / "m.safetensors.part"
        out = run(part, hub.url_for("/orig"), token="hf_secret_token")
        assert out.code == 0, out.stderr
        assert out.sha256 == SHA and part.read_bytes() == DATA
        assert hub.signature >= 2  # resolved more than once
        assert "expired" in out.stderr
        # The token went to the original URL's origin only, never to the storage links.
        assert all(r.authorization == "Bearer hf_secret_token" for r in hub.requests)
        assert hub.cdn.authorization_seen == []
        assert hub.errors == [] and hub.cdn.errors == []


def test_a_re_resolved_link_to_a_foreign_host_is_refused(tmp_path: Path) -> None:
    with Expiring(uses=2, foreign_after=1) as hub:
        hub.cdn.add("/cdn/blob", DATA)
        part = tmp_path / "m.safetensors.part"
        out = run(part, hub.url_for("/orig"))
        assert out.code == segments.HOST
        assert "localhost" in out.stderr
        assert all(r.host == f"127.0.0.1:{hub.cdn.port}" for r in hub.cdn.requests)  # never fetched
        assert record_of(part) is None
        kept = part.read_bytes() if part.exists() else b""
        assert DATA.startswith(kept)  # without a record the part is a clean prefix, never holes


def test_401_on_the_original_url_asks_for_a_login(fs: FileServer, tmp_path: Path) -> None:
    fs.fail("/m.safetensors", 401, times=None)
    fs.add("/m.safetensors", DATA)
    part = tmp_path / "m.safetensors.part"
    out = run(part, fs.url_for("/m.safetensors"))
    assert out.code == segments.AUTH
    assert "http_status 401" in out.stdout


def test_a_size_other_than_the_published_one_is_refused(fs: FileServer, tmp_path: Path) -> None:
    fs.add("/m.safetensors", DATA)
    part = tmp_path / "m.safetensors.part"
    out = run(part, fs.url_for("/m.safetensors"), len(DATA) + 1)
    assert out.code == segments.SIZE
    assert not part.exists() or part.stat().st_size == 0


def test_an_html_answer_is_refused(fs: FileServer, tmp_path: Path) -> None:
    fs.add("/m.safetensors", DATA, content_type="text/html; charset=utf-8")
    out = run(tmp_path / "m.part", fs.url_for("/m.safetensors"))
    assert out.code == segments.NOT_MODEL


def test_a_compressed_answer_is_refused(fs: FileServer, tmp_path: Path) -> None:
    fs.add("/m.safetensors", DATA, headers={"Content-Encoding": "gzip"})
    out = run(tmp_path / "m.part", fs.url_for("/m.safetensors"))
    assert out.code == segments.COMPRESSED


def test_a_dropped_connection_is_resumed_within_its_piece(fs: FileServer, tmp_path: Path) -> None:
    fs.add("/m.safetensors", DATA)
    fs.drop("/m.safetensors", after=300_000, times=2)
    part = tmp_path / "m.safetensors.part"
    out = run(part, fs.url_for("/m.safetensors"))
    assert out.code == 0, out.stderr
    assert out.sha256 == SHA and part.read_bytes() == DATA


def test_server_errors_are_retried_then_given_up_with_the_record_kept(fs: FileServer, tmp_path: Path) -> None:
    fs.add("/m.safetensors", DATA)
    fs.fail("/m.safetensors", 503, times=None)
    part = tmp_path / "m.safetensors.part"
    out = run(part, fs.url_for("/m.safetensors"))
    assert out.code == segments.NETWORK
    assert len(fs.requests) == 3  # COMFYFIXER_MAX_ATTEMPTS


def test_host_rule_is_the_one_of_checks_hosts() -> None:
    from comfyfixer.config import Settings

    rule = Settings(extra_allowed_hosts=("mirror.local",)).host_rule
    rules = Rules(
        " ".join(rule.allowed),
        " ".join(rule.http_hosts),
        " ".join(rule.suffixes),
        "https://x.example/f",
        HOSTS_PY,
    )
    urls = [
        "https://huggingface.co/a/b/resolve/main/x.safetensors",
        "https://cdn-lfs-us-1.hf.co/x?sig=1",
        "https://evil.example/x",
        "http://huggingface.co/x",
        "http://mirror.local/x",
        "https://bucket.s3.amazonaws.com/x",
        "http://bucket.s3.amazonaws.com/x",
        "ftp://huggingface.co/x",
    ]
    for url in urls:
        for redirect in (False, True):
            assert rules.allows(url, redirect=redirect) == rule.allows(url, redirect=redirect), url
    assert rules.allows("https://x.example/f", redirect=False)  # granted by a catalogue, that file only
    assert not rules.allows("https://x.example/g", redirect=False)
    assert not rules.allows("https://huggingface.co/a b", redirect=True)
    assert not rules.allows("https://huggingface.co/a\r\nX-Evil: 1", redirect=True)


def _trickling_server(body: bytes, chunk: int, pause: float, stop_after: int) -> tuple[int, threading.Thread]:
    """One connection: a 206 with `body`, sent `chunk` bytes every `pause` s, silent after `stop_after`."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        with listener, listener.accept()[0] as conn, contextlib.suppress(OSError):  # the client may hang up
            conn.recv(65536)
            head = f"HTTP/1.1 206 Partial Content\r\nContent-Length: {len(body)}\r\n"
            conn.sendall(f"{head}Content-Range: bytes 0-{len(body) - 1}/{len(body)}\r\n\r\n".encode())
            for pos in range(0, stop_after, chunk):
                conn.sendall(body[pos : min(stop_after, pos + chunk)])
                time.sleep(pause)
            time.sleep(1.5)  # silent: longer than the client's timeout

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def _read_body(port: int, size: int, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, Connection]:
    monkeypatch.setattr(http_client, "TIMEOUT", 0.4)  # seconds without a byte (30 in scripts)
    conn = Connection("http", "127.0.0.1", port, None)
    status, headers = conn.request("/m", {"Range": f"bytes=0-{size - 1}"})
    answer = Response(conn, status, headers, f"http://127.0.0.1:{port}/m")
    buf = bytearray(MIB)
    got = bytearray()
    try:
        while answer.remaining:
            n = answer.readinto(memoryview(buf))
            if not n:
                break
            got += buf[:n]
    finally:
        conn.close()
    return bytes(got), conn


def test_a_slow_link_is_not_taken_for_a_dead_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # A read waits for a whole block (SO_RCVLOWAT) where the kernel supports it; a link too slow to
    # fill one within the timeout still delivers, byte by byte, instead of failing the piece.
    body = os.urandom(200_000)
    port, server = _trickling_server(body, 8192, 0.03, len(body))  # ~270 KB/s: 0.75 s for the body
    got, conn = _read_body(port, len(body), monkeypatch)
    server.join(5)
    assert got == body
    if sys.platform.startswith("linux"):
        assert not conn.batching and conn.low_water == 1  # the mark was met by the timeout, then dropped


def test_a_silent_link_still_fails_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    body = os.urandom(200_000)
    port, server = _trickling_server(body, 8192, 0.0, 50_000)  # then silence
    with pytest.raises(OSError):
        _read_body(port, len(body), monkeypatch)
    server.join(5)


def test_over_tls_the_mark_never_waits_for_bytes_openssl_already_took(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenSSL reads what the kernel has of a record it cannot finish yet; the rest of the body then
    # sends less than the body owes. The last part of the answer comes late here: a mark of all
    # that is owed would wait for bytes that never come (until the timeout), one TLS record less
    # does not.
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    body = os.urandom(200_000)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(cert, key)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = server.wrap_bio(incoming, outgoing, server_side=True)
        with listener, listener.accept()[0] as raw, contextlib.suppress(OSError):
            raw.settimeout(10)

            def pump(step: Callable[[], bytes | None]) -> bytes | None:
                while True:
                    try:
                        return step()
                    except ssl.SSLWantReadError:
                        raw.sendall(outgoing.read())
                        data = raw.recv(65536)
                        if not data:
                            raise OSError("the client hung up") from None
                        incoming.write(data)

            pump(tls.do_handshake)
            raw.sendall(outgoing.read())
            request = b""
            while b"\r\n\r\n" not in request:
                request += pump(lambda: tls.read(65536)) or b""
            head = f"HTTP/1.1 206 Partial Content\r\nContent-Length: {len(body)}\r\n"
            tls.write(f"{head}Content-Range: bytes 0-{len(body) - 1}/{len(body)}\r\n\r\n".encode() + body)
            wire = outgoing.read()
            raw.sendall(wire[:-8000])  # the end of the last records comes later
            time.sleep(0.4)
            raw.sendall(wire[-8000:])
            time.sleep(1.5)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    monkeypatch.setattr(http_client, "TIMEOUT", 1.0)
    conn = Connection(
        "https", "127.0.0.1", listener.getsockname()[1], ssl.create_default_context(cafile=str(cert))
    )
    try:
        status, headers = conn.request("/m", {"Range": f"bytes=0-{len(body) - 1}"})
        answer = Response(conn, status, headers, "https://127.0.0.1/m")
        buf, got = bytearray(MIB), bytearray()
        while answer.remaining:
            n = answer.readinto(memoryview(buf))
            assert n, "the connection closed early"
            got += buf[:n]
    finally:
        conn.close()
    server.join(5)
    assert bytes(got) == body
    if sys.platform.startswith("linux"):
        assert conn.batching  # no read waited into the timeout


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("6.18.44-fc-v1147", True),
        ("4.19.0-27-amd64", True),
        ("4.15.0-213-generic", False),
        ("3.10.0-1160.el7", False),
        ("weird", False),
    ],
)
def test_read_marks_only_where_the_kernel_grows_the_buffer_to_fit_them(
    monkeypatch: pytest.MonkeyPatch, release: str, expected: bool
) -> None:
    real = os.uname()
    monkeypatch.setattr(os, "uname", lambda: os.uname_result((*real[:2], release, *real[3:])))
    assert http_client.marks_fit() is (expected and sys.platform.startswith("linux"))
