"""The loop in-process: order, overlap, batches, state, interruption and resume.

Scripts, launcher, placement and checks are the real stages (`comfyfixer.loop.wiring`): real rendered
bash scripts run against the loopback file server, so bytes, `.part` files, process groups and
Range resume are real. Only the finder (and the reviewer) are small classes implementing the
`comfyfixer.loop.stages` Protocols, answering from a table that points at the file server.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from comfyfixer import events
from comfyfixer.config import Settings
from comfyfixer.errors import SourceError
from comfyfixer.layout import Layout
from comfyfixer.loop.pipeline import LoopOptions, Pipeline
from comfyfixer.loop.result import RunResult, exit_code, run_json
from comfyfixer.loop.stages import LLM_SKIPPED, Stages
from comfyfixer.loop.wiring import ScriptLauncher, build_stages
from comfyfixer.models import Candidate, FileChecks, LLMVerdict, MissingModel, Resolution
from comfyfixer.scripts.run import ScriptProcess
from comfyfixer.state.store import RECORD_KEYS, pid_alive
from tests.fakes.files import FileServer

# The fakes listen on 127.0.0.1 over plain http: allowed as a user's COMFYFIXER_ALLOW_HOSTS would.
LOCAL = Settings(extra_allowed_hosts=("127.0.0.1",))


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as fs:
        yield fs
    assert not fs.errors


# ---------------------------------------------------------------- collaborators


def safetensors(payload: bytes) -> bytes:
    """A valid safetensors file holding `payload` as one uint8 tensor (verify.py checks the header)."""
    header = json.dumps({"t": {"dtype": "U8", "shape": [len(payload)], "data_offsets": [0, len(payload)]}})
    raw = header.encode().ljust(len(header) + (-len(header) % 8))
    return struct.pack("<Q", len(raw)) + raw + payload


class WatchedLauncher(ScriptLauncher):
    """The real launcher, keeping the processes it started so tests can look at them."""

    def __init__(self) -> None:
        super().__init__({**os.environ, "COMFYFIXER_RETRY_DELAY": "0"})
        self.processes: list[ScriptProcess] = []
        self.max_alive = 0

    def alive(self) -> int:
        return sum(1 for p in self.processes if p.poll() is None)

    def start(self, script: Path, *, log_path: Path, dest: Path) -> ScriptProcess:
        process = super().start(script, log_path=log_path, dest=dest)
        self.processes.append(process)
        self.max_alive = max(self.max_alive, self.alive())
        return process


class TableFinder:
    """Answers from a table; remembers, for each search, how many downloads were running."""

    def __init__(self, table: dict[str, Candidate | str], launcher: WatchedLauncher | None = None) -> None:
        self.table = table
        self.launcher = launcher
        self.running_during_search: list[int] = []
        self.searched: list[str] = []

    def find(self, model: MissingModel) -> Resolution:
        self.searched.append(model.name)
        if self.launcher is not None:
            before = self.launcher.alive()
            time.sleep(0.15)  # a search takes a while, so the loop has downloads to overlap with
            self.running_during_search.append(max(before, self.launcher.alive()))
        answer = self.table.get(model.name, "not_found")
        if isinstance(answer, Candidate):
            return Resolution(model, "found", candidate=answer, candidates=[answer])
        if answer == "raise":
            raise SourceError("huggingface", "HTTP 503 after 3 attempts", status=503)
        if answer == "bug":
            raise KeyError("a bug in a resolver")
        return Resolution(model, answer, reason=f"{answer} in test table")  # type: ignore[arg-type]


class RecordingReviewer:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def review(self, reports: list[FileChecks]) -> list[LLMVerdict]:
        self.batches.append([r.name for r in reports])
        return [LLMVerdict(r.name, "suspicious" if "odd" in r.name else "ok", "looks fine") for r in reports]


def _setup(
    tmp_path: Path,
    server: FileServer,
    names: list[str],
    *,
    reviewer: RecordingReviewer | None = None,
    slow: bool = False,
    extra: dict[str, Candidate | str] | None = None,
) -> tuple[list[MissingModel], Stages, TableFinder, WatchedLauncher]:
    root = tmp_path / "ComfyUI"
    (root / "models" / "loras").mkdir(parents=True, exist_ok=True)
    launcher = WatchedLauncher()
    table: dict[str, Candidate | str] = {}
    for name in names:
        # Slow blobs take ~0.5 s each (the fake paces 16 KiB chunks), long against a 0.15 s search.
        data = safetensors((name * (8000 if slow else 200)).encode())
        server.add(f"/f/{name}", data, rate=len(data) * 2 if slow else None)
        table[name] = Candidate(
            server.url_for(f"/f/{name}"), name, "hint", hashlib.sha256(data).hexdigest(), len(data)
        )
    table.update(extra or {})
    models = [
        MissingModel(name=n, directory="loras", workflows=["wf.json"]) for n in [*names, *(extra or {})]
    ]
    finder = TableFinder(table, launcher if slow else None)
    stages = build_stages(finder, Layout.load(root), launcher.env, settings=LOCAL, reviewer=reviewer)
    stages = replace(stages, launcher=launcher)  # the real launcher, watched
    return models, stages, finder, launcher


def _run(
    tmp_path: Path,
    stages: Stages,
    models: list[MissingModel],
    sink: events.EventSink = events.null_sink,
    **options: object,
) -> RunResult:
    pipeline = Pipeline(
        stages,
        output_dir=tmp_path / "output",
        log_dir=tmp_path / "log",
        options=LoopOptions(poll_interval=0.02, **options),  # type: ignore[arg-type]
        sink=sink,
    )
    return pipeline.run(models)


# ---------------------------------------------------------------- tests


def test_outcomes_state_files_and_report_shape(tmp_path: Path, server: FileServer) -> None:
    bad = b"this is not what the catalogue advertised" * 10
    server.add("/f/bad.pt", bad, corrupt=True)  # one byte differs from the published sha256
    bad_candidate = Candidate(
        server.url_for("/f/bad.pt"), "bad.pt", "hint", hashlib.sha256(bad).hexdigest(), len(bad)
    )
    server.add("/f/fake.safetensors", b"\0" * 4096)  # no hash published, and not a safetensors file
    fake_candidate = Candidate(server.url_for("/f/fake.safetensors"), "fake.safetensors", "hint")
    models, stages, _, _ = _setup(
        tmp_path,
        server,
        ["good.safetensors"],
        extra={
            "bad.pt": bad_candidate,
            "fake.safetensors": fake_candidate,
            "gone.ckpt": "not_found",
            "amb.pt": "ambiguous",
            "err.pt": "raise",
            "../escape.pt": Candidate(server.url_for("/f/good.safetensors"), "escape.pt", "hint"),
        },
    )
    result = _run(tmp_path, stages, models)
    outcomes = {r.name: r.outcome for r in result.results}
    assert outcomes == {
        "good.safetensors": "downloaded",
        "bad.pt": "verify_failed",
        "fake.safetensors": "verify_failed",
        "gone.ckpt": "not_found",
        "amb.pt": "ambiguous",
        "err.pt": "source_error",
        "../escape.pt": "skipped",
    }
    by_name = {r.name: r for r in result.results}
    assert "'..'" in by_name["../escape.pt"].reason and by_name["../escape.pt"].script is None
    assert "503" in by_name["err.pt"].reason
    assert "sha256" in by_name["bad.pt"].reason and "(exit 14)" in by_name["bad.pt"].reason
    assert (
        "format" in by_name["fake.safetensors"].reason and ".rejected" in by_name["fake.safetensors"].reason
    )
    # Neither wrong file sits at its final path; the one our checks failed is quarantined.
    loras = tmp_path / "ComfyUI/models/loras"
    assert not (loras / "bad.pt").exists() and not (loras / "fake.safetensors").exists()
    assert (loras / "fake.safetensors.rejected").exists()
    assert (loras / "good.safetensors").read_bytes() == safetensors(b"good.safetensors" * 200)
    # Scripts: one number per started download, in order; the counter remembers the last.
    out = tmp_path / "output"
    assert sorted(p.name for p in out.glob("download_*.sh")) == [
        "download_001_good.safetensors.sh",
        "download_002_bad.pt.sh",
        "download_003_fake.safetensors.sh",
    ]
    assert (out / "download_counter.txt").read_text() == "3\n"
    recorded = json.loads((out / "downloaded_models.json").read_text())
    assert recorded["schema"] == 1 and [m["name"] for m in recorded["models"]] == ["good.safetensors"]
    assert list(recorded["models"][0]) == list(RECORD_KEYS)
    status = {m["name"]: m["state"] for m in json.loads((out / "status.json").read_text())["models"]}
    assert status["good.safetensors"] == "done" and status["fake.safetensors"] == "failed"
    report = run_json(result.results, result.verifications)
    assert set(report["models"][0]) >= {
        "name",
        "directory",
        "outcome",
        "source",
        "url",
        "sha256",
        "size",
        "script",
        "path",
        "reason",
        "candidates",
    }
    assert report["counts"]["downloaded"] == 1 and report["counts"]["failed"] == 6
    [verification] = report["verifications"]  # fewer than six: one pass at the end, deterministic only
    # The fake never reached its final path: the script's own format check refused it on the part.
    assert sorted(verification["models"]) == ["good.safetensors"]
    assert verification["llm"] is False and verification["reason"] == LLM_SKIPPED
    assert exit_code(result.results) == 1


def test_verification_passes_every_six_downloads_and_the_remainder(
    tmp_path: Path, server: FileServer
) -> None:
    reviewer = RecordingReviewer()
    names = [f"m{i:02d}.safetensors" for i in range(13)] + ["odd.safetensors"]
    models, stages, _, _ = _setup(tmp_path, server, names, reviewer=reviewer)
    seen: list[events.Event] = []
    result = _run(tmp_path, stages, models, seen.append, jobs=3)
    # Only a finished download is reviewed: if one failed (a machine under load), say which and why,
    # rather than report a batch one short.
    failed = [(r.name, r.outcome, r.reason) for r in result.results if r.outcome != "downloaded"]
    assert not failed
    assert [len(b) for b in reviewer.batches] == [6, 6, 2]
    assert sorted(n for b in reviewer.batches for n in b) == sorted(names)
    assert [len(v.models) for v in result.verifications] == [6, 6, 2]
    assert all(v.llm for v in result.verifications)
    odd = next(r for r in result.results if r.name == "odd.safetensors")
    assert odd.outcome == "downloaded" and "suspicious" in odd.reason
    assert [e.count for e in seen if isinstance(e, events.VerificationPass)] == [6, 6, 2]
    done = [e for e in seen if isinstance(e, events.ModelDone)]
    assert len(done) == 14 and {e.total for e in done} == {14}


def test_searches_overlap_downloads_and_jobs_bound_concurrency(tmp_path: Path, server: FileServer) -> None:
    names = [f"s{i}.safetensors" for i in range(5)]
    models, stages, finder, launcher = _setup(tmp_path, server, names, slow=True)
    result = _run(tmp_path, stages, models, jobs=2)
    assert [r.outcome for r in result.results] == ["downloaded"] * 5
    assert finder.searched == names  # in plan order
    # While later models were searched, earlier downloads were running: real overlap.
    assert max(finder.running_during_search) >= 1
    assert launcher.max_alive <= 2


def test_second_run_skips_verified_models_and_dry_run_runs_nothing(
    tmp_path: Path, server: FileServer
) -> None:
    models, stages, _, _ = _setup(tmp_path, server, ["a.safetensors"])
    assert _run(tmp_path, stages, models).results[0].outcome == "downloaded"
    requests = len(server.requests)
    second = _run(tmp_path, stages, models)
    assert second.results[0].outcome == "already_present"
    assert second.results[0].script == "download_001_a.safetensors.sh"
    assert len(server.requests) == requests
    # The file is gone: the record no longer counts, and a dry run only plans, rewriting the model's
    # own script under its number rather than taking a new one.
    (tmp_path / "ComfyUI/models/loras/a.safetensors").unlink()
    dry = _run(tmp_path, stages, models, dry_run=True)
    assert dry.results[0].outcome == "planned"
    assert dry.results[0].script and Path(dry.results[0].script).name == "download_001_a.safetensors.sh"
    assert "rewritten" in dry.results[0].reason
    assert len(server.requests) == requests
    assert exit_code(dry.results) == 0


def test_interrupt_stops_downloads_keeps_part_and_next_run_resumes(
    tmp_path: Path, server: FileServer
) -> None:
    data = safetensors(os.urandom(400_000))
    server.add("/f/big.safetensors", data, rate=200_000)
    cand = Candidate(
        server.url_for("/f/big.safetensors"),
        "big.safetensors",
        "hint",
        hashlib.sha256(data).hexdigest(),
        len(data),
    )
    models, stages, _, launcher = _setup(tmp_path, server, [], extra={"big.safetensors": cand})

    def ctrl_c_once_bytes_arrive(event: events.Event) -> None:
        if isinstance(event, events.DownloadProgress) and event.done > 50_000:
            raise KeyboardInterrupt

    result = _run(tmp_path, stages, models, ctrl_c_once_bytes_arrive)
    assert result.interrupted and exit_code(result.results, interrupted=True) == 130
    assert result.results[0].outcome == "skipped" and "interrupted" in result.results[0].reason
    proc = launcher.processes[0]
    assert proc.returncode is not None and not pid_alive(proc.pid)
    part = tmp_path / "ComfyUI/models/loras/big.safetensors.part"
    kept = part.stat().st_size
    assert 0 < kept < len(data)
    status = json.loads((tmp_path / "output/status.json").read_text())["models"][0]
    assert status["state"] == "interrupted" and status["bytes"] > 0
    assert not (tmp_path / "ComfyUI/models/loras/big.safetensors").exists()

    server.clear_log()
    again = _run(tmp_path, stages, models)
    assert again.results[0].outcome == "downloaded"
    assert (tmp_path / "ComfyUI/models/loras/big.safetensors").read_bytes() == data
    ranges = [r.range for r in server.requests_to("/f/big.safetensors", "GET")]
    assert ranges and ranges[0] is not None and ranges[0].startswith(f"bytes={kept}")
    assert Path(again.results[0].script or "").name == "download_001_big.safetensors.sh"  # its own script


def test_an_error_in_the_loop_stops_running_downloads(tmp_path: Path, server: FileServer) -> None:
    data = safetensors(os.urandom(300_000))
    server.add("/f/slow.safetensors", data, rate=100_000)
    cand = Candidate(server.url_for("/f/slow.safetensors"), "slow.safetensors", "hint", None, len(data))
    models, stages, _, launcher = _setup(tmp_path, server, [], extra={"slow.safetensors": cand})
    started = threading.Event()

    def broken_sink(event: events.Event) -> None:
        if isinstance(event, events.DownloadStarted):
            started.set()
        if isinstance(event, events.DownloadProgress):
            raise RuntimeError("display crashed")

    with pytest.raises(RuntimeError, match="display crashed"):
        _run(tmp_path, stages, models, broken_sink)
    assert started.is_set()
    assert all(not pid_alive(p.pid) for p in launcher.processes)


class CrashingChecker:
    """The real checker, but one file name makes it raise what no check should (a bug)."""

    def __init__(self, inner: Any, crash_on: str) -> None:
        self.inner = inner
        self.crash_on = crash_on

    def verify(
        self, model: MissingModel, candidate: Candidate, path: Path, reported: str | None
    ) -> FileChecks:
        if model.name == self.crash_on:
            raise ZeroDivisionError("a bug in a check")
        result: FileChecks = self.inner.verify(model, candidate, path, reported)
        return result

    def quarantine(self, path: Path) -> Path | None:
        moved: Path | None = self.inner.quarantine(path)
        return moved


class CrashingReviewer:
    def review(self, reports: list[FileChecks]) -> list[LLMVerdict]:
        raise TypeError("a bug in the reviewer")


@pytest.mark.timeout(60)
def test_an_exception_in_any_worker_thread_is_that_models_outcome_and_the_run_ends(
    tmp_path: Path, server: FileServer
) -> None:
    names = ["good.safetensors", "checked.safetensors"]
    models, stages, _, _ = _setup(tmp_path, server, names, extra={"searched.safetensors": "bug"})
    stages = replace(
        stages, checker=CrashingChecker(stages.checker, "checked.safetensors"), reviewer=CrashingReviewer()
    )
    result = _run(tmp_path, stages, models)
    by = {r.name: r for r in result.results}
    assert by["good.safetensors"].outcome == "downloaded"
    assert by["searched.safetensors"].outcome == "source_error"
    assert by["searched.safetensors"].reason.startswith("internal error while searching: KeyError")
    assert by["checked.safetensors"].outcome == "verify_failed"
    assert "internal error while verifying: ZeroDivisionError" in by["checked.safetensors"].reason
    # The unchecked file is not left at its final path.
    root = tmp_path / "ComfyUI" / "models" / "loras"
    assert not (root / "checked.safetensors").exists() and (root / "checked.safetensors.rejected").exists()
    assert [v.llm for v in result.verifications] == [False]
    assert "internal error while reviewing: TypeError" in result.verifications[0].reason
    assert exit_code(result.results) == 1
