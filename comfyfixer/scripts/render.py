"""Rendering a download script: `ScriptPlan` in, bash text out. Pure: no I/O, no clock, no environment.

Every per-model value is set once at the top with `shlex.quote`; comment lines get an escaped
copy (no newline or control character can end a comment early). Then come the stdlib-only Python
programs in `carried/`, each as a quoted variable (a script runs alone, with no comfyfixer
installed), then the constant body: the BODY_PARTS (`download.sh`, ...), each from its marker line
on. The exit codes below are the contract with `run.py` and the pipeline.
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qsl, urlsplit

from comfyfixer.checks.formats import PICKLE_EXTENSIONS
from comfyfixer.checks.hosts import HostRule
from comfyfixer.config import Settings
from comfyfixer.errors import redact
from comfyfixer.models import Auth
from comfyfixer.safe_names import has_control_chars, safe_file_component

EXIT_OK = 0
EXIT_BAD_SETTING = 2
EXIT_NETWORK = 10
EXIT_AUTH = 11
EXIT_ERROR_PAGE = 12
EXIT_SIZE_MISMATCH = 13
EXIT_SHA256_MISMATCH = 14
EXIT_CANNOT_WRITE = 15
EXIT_UNSAFE_PICKLE = 16
EXIT_NO_TOOL = 17
EXIT_DEST_DIFFERS = 18
EXIT_BUSY = 20
EXIT_HOST_REFUSED = 21
EXIT_COMPRESSED = 22
EXIT_BAD_FORMAT = 23
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "installed, or already present and verified",
    EXIT_BAD_SETTING: "a setting in the environment is invalid (see the message)",
    EXIT_NETWORK: "network or HTTP error (after retries, or a status that retrying cannot fix)",
    EXIT_AUTH: "the server requires a login (HTTP 401/403): set HF_TOKEN or CIVITAI_API_TOKEN",
    EXIT_ERROR_PAGE: "the server sent an HTML page or JSON error instead of the model",
    EXIT_SIZE_MISMATCH: "the file has a different size than the source publishes (or the server sent more)",
    EXIT_SHA256_MISMATCH: "the file's sha256 differs from the one the source publishes",
    EXIT_CANNOT_WRITE: "cannot write the file (disk full or no permission)",
    EXIT_UNSAFE_PICKLE: "the pickle file imports globals weights do not use (or cannot be parsed)",
    EXIT_NO_TOOL: "a required tool is missing (curl or wget, python3, a sha256 tool)",
    EXIT_DEST_DIFFERS: "a different file already sits at the destination; it was left untouched",
    EXIT_BUSY: "another run is downloading the same file",
    EXIT_HOST_REFUSED: "the URL or a redirect points to a host that is not allowed; nothing came from it",
    EXIT_COMPRESSED: "the server sent the file compressed although it was asked not to",
    EXIT_BAD_FORMAT: "the file is not what its extension says (format check failed)",
    EXIT_INTERRUPTED: "interrupted; the partial file is kept for resume",
}

# Auth kind -> the environment variable the script reads (never a value).
TOKEN_VARIABLES: dict[str, str] = {"huggingface": "HF_TOKEN", "civitai": "CIVITAI_API_TOKEN"}

# The programs a script carries: shell variable -> (package, file), run as `python -S -c "$VAR"`.
# `comfyfixer.checks` holds the checks the run imports too; `carried/` what only a script needs.
CARRIED: dict[str, tuple[str, str]] = {
    "SHA256_STDIN_PY": ("comfyfixer.scripts.carried", "sha256_stdin.py"),
    "STREAM_PART_PY": ("comfyfixer.scripts.carried", "stream_part.py"),
    "HOSTS_PY": ("comfyfixer.checks", "hosts.py"),
    "FORMATS_PY": ("comfyfixer.checks", "formats.py"),
    "PICKLES_PY": ("comfyfixer.checks", "pickles.py"),
    # Installed from their texts by `loader.py`: the streamer above after `gates`, the segmented
    # downloader (one module per concept) in SEGMENT_MODULES order (segmented.sh passes them so).
    "LOADER_PY": ("comfyfixer.scripts.carried", "loader.py"),
    "OUTCOME_PY": ("comfyfixer.scripts.carried", "outcome.py"),
    "GATES_PY": ("comfyfixer.scripts.carried", "gates.py"),
    "RULES_PY": ("comfyfixer.scripts.carried", "rules.py"),
    "PIECES_PY": ("comfyfixer.scripts.carried", "pieces.py"),
    "HTTP_CLIENT_PY": ("comfyfixer.scripts.carried", "http_client.py"),
    "PREFIX_HASH_PY": ("comfyfixer.scripts.carried", "prefix_hash.py"),
    "TRANSFER_PY": ("comfyfixer.scripts.carried", "transfer.py"),
    "SEGMENTS_PY": ("comfyfixer.scripts.carried", "segments.py"),
}
# Module name -> its variable above, in the order the loader installs them (the program last).
SEGMENT_MODULES: dict[str, str] = {
    "outcome": "OUTCOME_PY",
    "gates": "GATES_PY",
    "rules": "RULES_PY",
    "pieces": "PIECES_PY",
    "http_client": "HTTP_CLIENT_PY",
    "prefix_hash": "PREFIX_HASH_PY",
    "transfer": "TRANSFER_PY",
    "segments": "SEGMENTS_PY",
}
BODY_MARKER = "# ---- body: render.py copies every line below into each script ----\n"
# The script's constant body, one concept per file: settings and shared helpers, the checks, the
# single stream, the segmented path, then the steps in order.
BODY_PARTS = ("download.sh", "checks.sh", "stream.sh", "segmented.sh", "flow.sh")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SECRET_PARAMS = frozenset({"token", "api_key", "apikey", "access_token", "hf_token"})
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def describe_exit(code: int) -> str:
    """The meaning of a script's exit code, in words (for the summary and the JSON report)."""
    if code in EXIT_CODES:
        return EXIT_CODES[code]
    if code > 128:
        return f"killed by signal {code - 128}"
    return f"unexpected exit code {code} (see the script's log)"


@dataclass(frozen=True)
class ScriptPlan:
    """Everything one script needs; validated on creation so a bad plan never becomes a script."""

    number: int
    name: str  # as referenced by the workflow
    directory: str | None
    dest: Path  # absolute, already proven safe by `layout.safe_destination`
    url: str
    sha256: str | None
    size: int | None
    auth: Auth | None
    source: str
    why: str
    python: str  # the interpreter that runs the carried checks (python3 on PATH if it is gone)
    user_agent: str
    hosts: HostRule = Settings().host_rule  # what every hop is checked against
    # Why the URL may be used although its host is not allowed (a curated catalogue names this file).
    granted_by: str | None = None

    def __post_init__(self) -> None:
        if self.number < 0:
            raise ValueError(f"script number must be >= 0, got {self.number}")
        if not self.dest.is_absolute():
            raise ValueError(f"destination must be absolute: {self.dest}")
        if has_control_chars(str(self.dest)):
            raise ValueError("destination contains a control character")
        self._check_url()
        if self.sha256 is not None and not _SHA256.match(self.sha256):
            raise ValueError(f"sha256 must be 64 lower-case hex digits: {self.sha256!r}")
        if self.size is not None and self.size < 0:
            raise ValueError(f"size must be >= 0: {self.size}")
        if self.granted_by is not None and has_control_chars(self.granted_by):
            raise ValueError("granted_by must be a single line")
        if self.auth is not None and self.auth not in TOKEN_VARIABLES:
            raise ValueError(f"unknown auth kind {self.auth!r}")
        for label, value in (("python", self.python), ("user_agent", self.user_agent)):
            if not value or has_control_chars(value):
                raise ValueError(f"{label} must be a non-empty single line")

    def _check_url(self) -> None:
        """http(s) with a host, one clean line, no credentials or token, on an allowed host (or granted)."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"download URL must be http(s) with a host: {redact(self.url)!r}")
        if has_control_chars(self.url) or any(ch.isspace() for ch in self.url):
            raise ValueError("download URL contains whitespace or a control character")
        if parts.username or parts.password:
            raise ValueError("download URL must not carry credentials")
        if any(k.lower() in _SECRET_PARAMS for k, _ in parse_qsl(parts.query, keep_blank_values=True)):
            raise ValueError("download URL must not carry a token; tokens come from the environment")
        if not (self.granted_by or self.hosts.allows(self.url)):
            raise ValueError(f"download URL is on a host that is not allowed: {parts.hostname}")

    @property
    def part(self) -> Path:
        return self.dest.with_name(self.dest.name + ".part")

    @property
    def pickle_extension(self) -> str | None:
        suffix = PurePosixPath(self.dest.name).suffix.lower()
        return suffix if suffix in PICKLE_EXTENSIONS else None


def script_file_name(number: int, name: str) -> str:
    """`download_007_<safe-name>.sh`: base name only, `[A-Za-z0-9._-]`, bounded length."""
    return f"download_{number:03d}_{safe_file_component(name)}.sh"


def comment_text(value: object) -> str:
    """A value made safe for one comment line: control, format and separator characters escaped."""
    out = []
    for ch in str(value):
        if unicodedata.category(ch) in _ESCAPED_CATEGORIES:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


@cache
def body() -> str:
    """The constant part of every script: each of BODY_PARTS after its marker (above it: notes, lint
    stand-ins), joined in order (functions first, `flow.sh` runs the steps)."""
    texts = []
    for name in BODY_PARTS:
        text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
        _, found, rest = text.partition(BODY_MARKER)
        if not found:
            raise RuntimeError(f"{name} has lost its body marker line")
        texts.append(rest)
    return "\n".join(texts)


@cache
def carried_program(variable: str) -> str:
    """The text of one program a script carries (a key of CARRIED), exactly as shipped."""
    package, file_name = CARRIED[variable]
    return resources.files(package).joinpath(file_name).read_text(encoding="utf-8")


def segments_program() -> list[str]:
    """What follows `python -S -c` to run the segmented downloader as a script does, before its ARGS."""
    texts = [carried_program(variable) for variable in SEGMENT_MODULES.values()]
    return [carried_program("LOADER_PY"), " ".join(SEGMENT_MODULES), *texts, "--"]


def _q(value: str) -> str:
    return shlex.quote(value)


def _host_lines(plan: ScriptPlan) -> list[str]:
    lines = ["the URL and every redirect must be on ALLOWED_HOSTS"]
    if plan.hosts.suffixes:
        lines.append("redirects may also reach signed storage under REDIRECT_SUFFIXES (https)")
    if plan.hosts.http_hosts:
        lines.append("plain http only for HTTP_HOSTS")
    return lines


def _header(plan: ScriptPlan) -> list[str]:
    token_var = TOKEN_VARIABLES.get(plan.auth or "")
    auth_line = f"{token_var} from the environment, sent only when set" if token_var else "none"
    lines = [
        "#!/usr/bin/env bash",
        f"# comfyfixer download script {plan.number:03d}: safe to run again at any time, from any folder.",
        "#",
        f"# model:   {comment_text(plan.name)}",
        f"# folder:  {comment_text(plan.directory or 'unknown')}",
        f"# file:    {comment_text(plan.dest)}",
        f"# source:  {comment_text(plan.source)}",
        f"# url:     {comment_text(plan.url)}",
        f"# why:     {comment_text(plan.why)}",
        f"# sha256:  {plan.sha256 or 'not published (computed while downloading)'}",
        f"# size:    {plan.size if plan.size is not None else 'not published'}",
        f"# token:   {auth_line}",
        f"# hosts:   {'; '.join(_host_lines(plan))}",
    ]
    if plan.granted_by:
        lines.append(f"# granted: {comment_text(plan.granted_by)}")
    lines += [
        "#",
        "# Downloads to '<file>.part' (resumed by the next run), following redirects one checked hop",
        "# at a time (ALLOWED_HOSTS below; the token only to the URL's own origin), never past the",
        "# published size. Rejects HTML/JSON error pages and compressed answers, checks size, sha256",
        "# and the file format, gates pickle files, then moves the file into place. Prints",
        "# COMFYFIXER_SHA256=<hex> and writes '<file>.sha256' so nothing hashes the file twice.",
        "# Environment: COMFYFIXER_ALLOW_PICKLE=1 installs a pickle the gate refused;",
        "# COMFYFIXER_MAX_ATTEMPTS, COMFYFIXER_RETRY_DELAY and COMFYFIXER_RETRY_MAX_DELAY tune the retries.",
        "# Files of COMFYFIXER_SEGMENT_MIN_MIB (32) MiB and more come over COMFYFIXER_SEGMENTS (16, at",
        "# most 32) connections at once, resumable piece by piece ('<file>.part.segments').",
        "#",
        "# Exit codes:",
    ]
    lines += [f"#   {code:<4} {text}" for code, text in EXIT_CODES.items()]
    return lines


def render_script(plan: ScriptPlan) -> str:
    """The complete bash script for one model."""
    values = [
        ("DEST", str(plan.dest)),
        ("DEST_DIR", str(plan.dest.parent)),
        ("BASE_NAME", plan.dest.name),
        ("URL", plan.url),
        ("EXPECTED_SIZE", "" if plan.size is None else str(plan.size)),
        ("EXPECTED_SHA256", plan.sha256 or ""),
        ("AUTH_VAR", TOKEN_VARIABLES.get(plan.auth or "", "")),
        ("PYTHON", plan.python),
        ("USER_AGENT", plan.user_agent),
        ("PICKLE_EXT", plan.pickle_extension or ""),
        ("ALLOWED_HOSTS", " ".join(sorted(plan.hosts.allowed))),
        ("HTTP_HOSTS", " ".join(sorted(plan.hosts.http_hosts))),
        ("REDIRECT_SUFFIXES", " ".join(plan.hosts.suffixes)),
        ("GRANTED_URL", plan.url if plan.granted_by else ""),
    ]
    lines = _header(plan)
    if any(ch in value for _, value in values for ch in "$`'\"\\"):
        # A name may hold `$(…)`, back-ticks or quotes: they are literal data here, as shellcheck's
        # quoting warnings would have us double-check. The directive must precede the first command.
        lines.insert(1, "# shellcheck disable=SC2016,SC2089,SC2090")
    lines += ["set -euo pipefail", "umask 022", ""]
    lines += [f"{name}={_q(value)}" for name, value in values]
    lines += ["", "# Programs this script carries (standard library only; run with $PYTHON -c)."]
    for name in CARRIED:
        # Literal program text: a `$` or back-tick in it is meant, not an expansion (SC2016).
        lines += ["# shellcheck disable=SC2016", f"{name}={_q(carried_program(name))}"]
    return "\n".join(lines) + "\n\n" + body()
