"""Rendering download scripts: golden files, quoting, comment safety, plan validation, exit codes.

Golden files live in tests/golden/; refresh them with `COMFYFIXER_UPDATE_GOLDEN=1 pytest tests/test_render.py`
and review the diff.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest

from comfyfixer.config import Settings
from comfyfixer.scripts.render import (
    BODY_MARKER,
    BODY_PARTS,
    CARRIED,
    EXIT_CODES,
    SEGMENT_MODULES,
    ScriptPlan,
    body,
    carried_program,
    describe_exit,
    render_script,
)

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("COMFYFIXER_UPDATE_GOLDEN") == "1"
SHA = "a" * 64

BASE = ScriptPlan(
    number=7,
    name="flux1-dev-fp8.safetensors",
    directory="checkpoints",
    dest=Path("/srv/ComfyUI/models/checkpoints/flux1-dev-fp8.safetensors"),
    url="https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/flux1-dev-fp8.safetensors",
    sha256=SHA,
    size=17246524772,
    auth="huggingface",
    source="huggingface",
    why="exact file name in Comfy-Org/flux1-dev; sha256 from LFS metadata",
    python="/usr/bin/python3",
    user_agent="comfyfixer/0.1.0",
)
PLANS = {
    "hf_safetensors": BASE,
    "civitai_pickle": replace(
        BASE,
        number=12,
        name="sd15/realisticVision_v60.ckpt",
        dest=Path("/srv/ComfyUI/models/checkpoints/sd15/realisticVision_v60.ckpt"),
        url="https://civitai.com/api/download/models/130072",
        sha256=None,
        size=None,
        auth="civitai",
        source="civitai",
        why="Civitai file name matches exactly",
    ),
    "hostile_name": replace(
        BASE,
        number=3,
        name="x $(touch pwned) `id` it's\n# evil",
        dest=Path("/srv/ComfyUI/models/loras/x $(touch pwned) `id` it's.safetensors"),
        url="http://127.0.0.1:8080/files/x.safetensors?a=1&b=$(id)",
        sha256=None,
        size=1234,
        auth=None,
        source="hint\u202e",
        why="workflow hint\r\nrm -rf /",
        python="/opt/py env/bin/python3",
        hosts=Settings(extra_allowed_hosts=("127.0.0.1",)).host_rule,
    ),
}


def _assignments(script: str) -> dict[str, str]:
    """The value-block assignments (`NAME=<quoted>`), shell-unquoted."""
    out: dict[str, str] = {}
    for line in script.splitlines():
        m = re.match(r"^([A-Z0-9_]+)=(.*)$", line)
        if m and m.group(1) not in out:
            words = shlex.split(m.group(2))
            out[m.group(1)] = words[0] if words else ""
        if line.startswith("# Programs this script carries"):
            break
    return out


@pytest.mark.parametrize("key", sorted(PLANS))
def test_golden(key: str) -> None:
    text = render_script(PLANS[key])
    path = GOLDEN / f"download_{key}.sh"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; run with COMFYFIXER_UPDATE_GOLDEN=1 and review it")
    assert text == path.read_text(encoding="utf-8"), (
        f"{path.name} changed; if intended, rerun with COMFYFIXER_UPDATE_GOLDEN=1 and review the diff"
    )


def test_render_is_deterministic() -> None:
    assert render_script(BASE) == render_script(BASE)


@pytest.mark.parametrize("key", sorted(PLANS))
def test_bash_syntax(key: str, tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text(render_script(PLANS[key]))
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("key", sorted(PLANS))
def test_shellcheck(key: str, tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    script = tmp_path / "s.sh"
    script.write_text(render_script(PLANS[key]))
    result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("key", sorted(PLANS))
def test_values_round_trip_through_quoting(key: str) -> None:
    plan = PLANS[key]
    values = _assignments(render_script(plan))
    assert values["DEST"] == str(plan.dest)
    assert values["DEST_DIR"] == str(plan.dest.parent)
    assert values["URL"] == plan.url
    assert values["PYTHON"] == plan.python
    assert values["EXPECTED_SHA256"] == (plan.sha256 or "")
    assert values["EXPECTED_SIZE"] == ("" if plan.size is None else str(plan.size))


@pytest.mark.parametrize("part", BODY_PARTS)
def test_each_body_part_is_shellcheck_clean_as_a_file(part: str) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    source = Path(__file__).parents[1] / "comfyfixer" / "scripts" / part
    result = subprocess.run(["shellcheck", str(source)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert subprocess.run(["bash", "-n", str(source)], check=False).returncode == 0


def test_the_segmented_downloader_gets_its_modules_in_the_loader_order() -> None:
    # download.sh's segments_py hands the loader the names and texts in render.SEGMENT_MODULES order.
    names = " ".join(SEGMENT_MODULES)
    texts = " ".join(f'"${variable}"' for variable in SEGMENT_MODULES.values())
    flat = re.sub(r"\s*\\\n\s*", " ", body())
    assert f'-c "$LOADER_PY" "{names}" {texts} -- ' in flat


def test_lint_stand_ins_name_exactly_what_render_writes() -> None:
    # download.sh declares, above its marker, every variable render.py assigns: nothing more, nothing less.
    text = resources.files("comfyfixer.scripts").joinpath("download.sh").read_text(encoding="utf-8")
    stand_ins = set(re.findall(r"\b([A-Z0-9_]+)=''", text.split(BODY_MARKER, 1)[0]))
    rendered = set(_assignments(render_script(BASE))) | set(CARRIED)
    assert stand_ins == rendered


def test_carried_programs_travel_verbatim(tmp_path: Path) -> None:
    script = render_script(BASE)
    probe = tmp_path / "probe.sh"
    shown = "".join(f'printf "%s\\0" "${variable}"\n' for variable in CARRIED)
    probe.write_text(script.split("\nPART=", 1)[0] + "\n" + shown)
    out = subprocess.run(["bash", str(probe)], capture_output=True, text=True, check=True).stdout
    assert out.split("\0")[:-1] == [carried_program(variable) for variable in CARRIED]


def test_carried_programs_need_nothing_but_the_standard_library() -> None:
    # A script runs on a machine without comfyfixer: its programs may not import the package.
    for variable in CARRIED:
        assert not re.search(r"^\s*(from|import)\s+comfyfixer", carried_program(variable), re.M), variable


def test_bash_reads_the_exact_values(tmp_path: Path) -> None:
    plan = PLANS["hostile_name"]
    prelude = render_script(plan).split("\nPART=", 1)[0]
    script = tmp_path / "prelude.sh"
    script.write_text(prelude + '\nprintf "%s\\n%s\\n%s\\n" "$DEST" "$URL" "$PYTHON"\n')
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(plan.dest), plan.url, plan.python]
    assert not (tmp_path / "pwned").exists()


def test_comments_cannot_be_broken_out_of() -> None:
    text = render_script(PLANS["hostile_name"])
    header = text.split("set -euo pipefail", 1)[0]
    for line in header.splitlines():
        assert line.startswith("#"), line
    assert "\\x0a# evil" in header
    assert "\\x0d\\x0arm -rf /" in header
    assert "\\u202e" in header  # a right-to-left override would hide text in a terminal
    assert "\u202e" not in text and "\r" not in text


def test_auth_names_the_variable_never_a_value() -> None:
    hf = _assignments(render_script(BASE))
    civ = _assignments(render_script(PLANS["civitai_pickle"]))
    none = _assignments(render_script(PLANS["hostile_name"]))
    assert (hf["AUTH_VAR"], civ["AUTH_VAR"], none["AUTH_VAR"]) == ("HF_TOKEN", "CIVITAI_API_TOKEN", "")
    head = render_script(BASE).split("PART=", 1)[0]
    for variable in CARRIED:  # a carried program builds the header from the token it is handed
        head = head.replace(f"{variable}={shlex.quote(carried_program(variable))}", "")
    assert "Bearer" not in head


def test_pickle_extension_is_flagged_for_scanning() -> None:
    assert _assignments(render_script(PLANS["civitai_pickle"]))["PICKLE_EXT"] == ".ckpt"
    assert _assignments(render_script(BASE))["PICKLE_EXT"] == ""


def test_no_redirect_is_followed_blindly() -> None:
    # Every hop goes through next_hop (checks/hosts.py); neither tool may follow one on its own.
    assert "--location" not in body() and "-L " not in body()
    assert "--max-redirect=0" in body()


def test_the_host_rule_is_written_as_data() -> None:
    values = _assignments(render_script(BASE))
    rule = Settings().host_rule
    assert values["ALLOWED_HOSTS"].split() == sorted(rule.allowed)
    assert values["REDIRECT_SUFFIXES"].split() == list(rule.suffixes)
    assert values["HTTP_HOSTS"] == "" and values["GRANTED_URL"] == ""
    local = _assignments(render_script(PLANS["hostile_name"]))
    assert "127.0.0.1" in local["HTTP_HOSTS"].split()


def test_a_url_on_a_host_that_is_not_allowed_needs_a_grant() -> None:
    url = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    with pytest.raises(ValueError, match="not allowed"):
        replace(BASE, url=url)
    granted = replace(BASE, url=url, granted_by="the ComfyUI-Manager catalogue names this file")
    text = render_script(granted)
    assert "# granted: the ComfyUI-Manager catalogue names this file" in text
    assert _assignments(text)["GRANTED_URL"] == url


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dest": Path("relative/x.safetensors")}, "absolute"),
        ({"url": "ftp://example.com/x"}, "http(s)"),
        ({"url": "https://user:pw@example.com/x"}, "credentials"),
        ({"url": "https://civitai.com/api/download/models/1?token=abc"}, "token"),
        ({"url": "https://example.com/x y"}, "whitespace"),
        ({"sha256": "ABC"}, "sha256"),
        ({"sha256": "A" * 64}, "sha256"),
        ({"size": -1}, "size"),
        ({"auth": "github"}, "auth"),
        ({"number": -1}, "number"),
        ({"python": ""}, "python"),
        ({"user_agent": "x\ny"}, "user_agent"),
        ({"dest": Path("/srv/models/x\n.safetensors")}, "control"),
    ],
)
def test_bad_plans_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        replace(BASE, **change)  # type: ignore[arg-type]


def test_every_exit_code_in_the_body_is_documented() -> None:
    used = {int(n) for n in re.findall(r"\b(?:fail|reject|exit) (\d+)\b", body())}
    documented = set(EXIT_CODES)
    assert used - documented == set(), "an exit code in the script body is not in EXIT_CODES"
    assert documented - used - {0} == set(), "EXIT_CODES lists a code the script never uses"


def test_exit_code_table_is_in_the_script_header() -> None:
    text = render_script(BASE)
    for code, meaning in EXIT_CODES.items():
        assert f"#   {code:<4} {meaning}" in text


def test_describe_exit() -> None:
    assert "sha256" in describe_exit(14)
    assert describe_exit(137) == "killed by signal 9"
    assert "unexpected exit code 99" in describe_exit(99)
