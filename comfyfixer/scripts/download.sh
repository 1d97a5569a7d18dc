# shellcheck shell=bash
# Variables are shared across the parts: set in one, read in another (SC2034 here; the joined
# script is checked whole, where an unused variable still shows).
# shellcheck disable=SC2034
# The constant body of every comfyfixer download script. `scripts/render.py` writes the header
# (what model, from where, why) and the per-model values, each shell-quoted, then the programs in
# `carried/` as quoted variables, then this file from the marker line on, followed the same way by
# checks.sh, stream.sh, segmented.sh and flow.sh (one concept each; flow.sh runs the steps). It
# holds no per-model value, so one review of these texts covers every script ever written. The
# numeric exit codes here must match the constants in `render.py` (a test checks each one).
# This file: the settings, the traps, and the helpers every part uses.
#
# Notes on the choices below (why, not what):
# - Every guarantee is enforced here, where the bytes move, so a script run by hand is as safe as
#   one the run starts: Python 3 (standard library only) is required for that, and the checks are
#   the very modules the run imports (`comfyfixer/checks/`), carried as quoted text.
# - Redirects are followed one hop at a time (no `curl --location`): every target is checked
#   against the allowed hosts and suffixes written above (`checks/hosts.py`) before it is
#   requested, for curl and wget alike. A refused hop ends the script (exit 21) naming the host.
# - The token goes only to the origin of the download URL (the hub or Civitai endpoint it belongs
#   to), never to a redirect target elsewhere. It reaches the Python programs on their stdin
#   (`< <(printf …)`: printf is a bash builtin) and curl through a pipe (`--header @/dev/fd/3`), so
#   it appears neither in the script, nor in `ps`, nor on disk. wget can only take it on its command
#   line, so wget is used only when no token is needed.
# - The single stream is one program per attempt (`carried/stream_part.py`): it checks each hop
#   (`checks/hosts.py`) before it starts that hop's curl (or wget) with the command built here,
#   and computes the sha256 while the bytes stream: a retry re-hashes what the part already holds,
#   so the final digest covers the whole file and a successful download is hashed once. It writes
#   only a 2xx body, refuses a compressed one, stops as soon as the part would pass the published
#   (else announced) size, and runs the checks of the finished part (`checks/formats.py`, then
#   `checks/pickles.py` for a pickle). One program because every Python start costs tens of ms,
#   and a download of a small file is mostly starts: one per attempt (there were six).
# - Nothing here starts Python just to see that it works: the first Python step (which always comes
#   before any request) finds out, and exit 126/127 from it switches to python3 once.
# - Few forks: the temporary folder only when the single stream needs one, builtins over `$(…)`.
# - Large files come over several connections (`carried/segments.py`), as aria2c and hf_transfer
#   fetch them: CDNs cap what one connection gets. The pieces go into one preallocated part, in
#   file order, so the sha256 follows the transfer; each piece and each redirect obeys the rules
#   above (hosts through `checks/hosts.py` itself, token by origin, identity, size). Servers without
#   ranges and small files keep the single stream.
# - The format check and the pickle gate run on `<file>.part`, before anything is moved into place.
# - The hasher for files already on disk is picked by a self-test on empty input: openssl, then
#   Python, then sha256sum/shasum (openssl and hashlib use the CPU's SHA extensions).
#
# Lint-only stand-ins for what render.py writes (shellcheck reads this file on its own):
DEST='' DEST_DIR='' BASE_NAME='' URL='' EXPECTED_SIZE='' EXPECTED_SHA256='' AUTH_VAR=''
PYTHON='' USER_AGENT='' PICKLE_EXT=''
ALLOWED_HOSTS='' HTTP_HOSTS='' REDIRECT_SUFFIXES='' GRANTED_URL=''
SHA256_STDIN_PY='' STREAM_PART_PY='' HOSTS_PY='' FORMATS_PY='' PICKLES_PY='' LOADER_PY='' OUTCOME_PY=''
GATES_PY=''
RULES_PY='' PIECES_PY='' HTTP_CLIENT_PY='' PREFIX_HASH_PY='' TRANSFER_PY='' SEGMENTS_PY=''
# ---- body: render.py copies every line below into each script ----
PART="$DEST.part"
REJECTED="$DEST.rejected"
SIDECAR="$DEST.sha256"
LOCK="$DEST.part.lock"
MAX_ATTEMPTS="${COMFYFIXER_MAX_ATTEMPTS:-5}"
RETRY_DELAY="${COMFYFIXER_RETRY_DELAY:-2}"
RETRY_MAX_DELAY="${COMFYFIXER_RETRY_MAX_DELAY:-300}"
SEGMENTS="${COMFYFIXER_SEGMENTS:-16}"
SEGMENT_MIN_MIB="${COMFYFIXER_SEGMENT_MIN_MIB:-32}"
SEGMENT_SHA=""
PART_FORMAT=""
PART_WHY=""
PART_PICKLE=""
PART_PICKLE_WHY=""
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
WORK=""
OUT=""
WHY=""
HOLD_LOCK=0
HASHER=""
FORMAT=""
MAX_HOPS=10

say() { printf 'comfyfixer: %s\n' "$*" >&2; }
fail() {
  local code=$1
  shift
  say "$*"
  exit "$code"
}
cleanup() {
  if [ -n "$WORK" ]; then rm -rf -- "$WORK"; fi
  if [ -f "$PART" ] && [ ! -s "$PART" ]; then rm -f -- "$PART"; fi
  if [ "$HOLD_LOCK" = 1 ]; then rm -f -- "$LOCK"; fi
}
trap cleanup EXIT
trap 'say "interrupted; the partial file is kept and the next run resumes it: $PART"; exit 130' INT TERM HUP

is_uint() { case $1 in '' | *[!0-9]*) return 1 ;; esac; }
if ! is_uint "$MAX_ATTEMPTS" || [ "$MAX_ATTEMPTS" -lt 1 ]; then
  fail 2 "COMFYFIXER_MAX_ATTEMPTS must be a whole number >= 1"
fi
is_uint "$RETRY_DELAY" || fail 2 "COMFYFIXER_RETRY_DELAY must be a whole number of seconds"
is_uint "$RETRY_MAX_DELAY" || fail 2 "COMFYFIXER_RETRY_MAX_DELAY must be a whole number of seconds"
if ! is_uint "$SEGMENTS" || [ "$SEGMENTS" -lt 1 ]; then
  fail 2 "COMFYFIXER_SEGMENTS must be a whole number >= 1 (1: one connection; at most 32 are used)"
fi
if [ "$SEGMENTS" -gt 32 ]; then SEGMENTS=32; fi
is_uint "$SEGMENT_MIN_MIB" || fail 2 "COMFYFIXER_SEGMENT_MIN_MIB must be a whole number of MiB"

# "size mtime inode" of a file (GNU stat, then BSD stat).
file_stamp() { stat -c '%s %Y %i' -- "$1" 2>/dev/null || stat -f '%z %m %i' -- "$1"; }
file_size() {
  local stamp
  stamp=$(file_stamp "$1")
  printf '%s\n' "${stamp%% *}"
}

# "python3 is needed": no interpreter on PATH or at $PYTHON.
python_missing() {
  fail 17 "python3 is needed to check the file before it is installed; install it and run again"
}
# After a Python step ended with $1: 126/127 mean the interpreter never started (gone, broken, not
# executable). Then python3 from PATH is tried once (return 0: run the step again); otherwise the
# script stops before anything was requested. Any other code is the step's own answer (return 1).
python_failed() {
  case $1 in 126 | 127) ;; *) return 1 ;; esac
  if [ "$PYTHON" != python3 ] && command -v python3 >/dev/null 2>&1; then
    say "note: $PYTHON cannot run; using python3 from PATH"
    PYTHON=python3
    return 0
  fi
  python_missing
}

# The temporary folder (headers, the streamer's answers, a check's reason), made on first use:
# every function that uses $WORK calls this first (an empty WORK would mean files in /).
need_work() {
  if [ -z "$WORK" ]; then
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/comfyfixer.XXXXXX") || fail 15 "cannot create a temporary folder"
  fi
}
