"""State a later run relies on, end to end: installed files checked at start, one record set per ComfyUI."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.content import safetensors_bytes
from tests.test_run_e2e import Env, env, outcomes, report_of, workflow

__all__ = ["env"]  # the fixture, shared with the e2e module


def test_a_damaged_install_is_fetched_again_and_another_root_gets_its_own(env: Env) -> None:
    data = safetensors_bytes("kept", 50_000)
    blob = env.files.add("/f/kept.safetensors", data)
    wf = workflow(
        env.work / "kept.json", [("kept.safetensors", env.files.url_for("/f/kept.safetensors"), blob.sha256)]
    )
    first = env.run(wf)
    assert outcomes(report_of(first)) == {"kept.safetensors": "downloaded"}, first.stderr
    installed = env.loras / "kept.safetensors"
    # Truncated behind the tool's back: the next run notices, moves it aside and fetches it again.
    installed.write_bytes(data[:1000])
    second = env.run(wf)
    assert second.returncode == 0, second.stderr
    assert outcomes(report_of(second)) == {"kept.safetensors": "downloaded"}
    assert "is 1,000 bytes, not the" in " ".join(second.stderr.split())
    assert installed.read_bytes() == data
    assert (env.loras / "kept.safetensors.rejected").stat().st_size == 1000

    # The same output folder, another ComfyUI: its models are its own, never "already present" elsewhere.
    other = env.work / "OtherComfy"
    (other / "models" / "loras").mkdir(parents=True)
    args = env.args(wf)
    args[args.index("--comfyui") + 1] = str(other)
    third = env.cli(*args)
    assert third.returncode == 0, third.stderr
    report = report_of(third)
    assert outcomes(report) == {"kept.safetensors": "downloaded"}
    assert (other / "models" / "loras" / "kept.safetensors").read_bytes() == data
    assert Path(report["models"][0]["path"]).is_relative_to(other)


def test_unreadable_workflows_are_listed_and_nothing_readable_is_a_usage_error(env: Env) -> None:
    folder = env.work / "broken"
    folder.mkdir()
    (folder / "truncated.json").write_text('{"nodes": [')
    (folder / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    args = env.args(folder)
    proc = env.cli(*args)
    assert proc.returncode == 2, proc.stderr
    text = " ".join(proc.stderr.split())
    assert "truncated.json" in text and "binary.json" in text
    assert "nothing to run: none of the 2 workflow files could be read" in text
    assert "Traceback" not in text and proc.stdout == ""
    # One readable workflow among them: the run goes on, and still lists the unreadable ones.
    workflow(folder / "fine.json", [])
    ok = env.cli(*args)
    assert ok.returncode == 0, ok.stderr
    assert "truncated.json" in ok.stderr and "binary.json" in ok.stderr
