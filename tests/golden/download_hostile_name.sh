#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2089,SC2090
# comfyfixer download script 003: safe to run again at any time, from any folder.
#
# model:   x $(touch pwned) `id` it's\x0a# evil
# folder:  checkpoints
# file:    /srv/ComfyUI/models/loras/x $(touch pwned) `id` it's.safetensors
# source:  hint\u202e
# url:     http://127.0.0.1:8080/files/x.safetensors?a=1&b=$(id)
# why:     workflow hint\x0d\x0arm -rf /
# sha256:  not published (computed while downloading)
# size:    1234
# token:   none
#
# Downloads to '<file>.part' (resumed by the next run), rejects HTML/JSON error pages, checks
# size and sha256, scans pickle files, then moves the file into place. Prints
# COMFYFIXER_SHA256=<hex> and writes '<file>.sha256' so nothing hashes the file twice.
# Environment: COMFYFIXER_ALLOW_PICKLE=1 installs a flagged pickle; COMFYFIXER_MAX_ATTEMPTS,
# COMFYFIXER_RETRY_DELAY and COMFYFIXER_RETRY_MAX_DELAY (seconds) tune the retries.
#
# Exit codes:
#   0    installed, or already present and verified
#   2    a setting in the environment is invalid (see the message)
#   10   network or HTTP error (after retries, or a status that retrying cannot fix)
#   11   the server requires a login (HTTP 401/403): set HF_TOKEN or CIVITAI_API_TOKEN
#   12   the server sent an HTML page or JSON error instead of the model
#   13   the file has a different size than the source publishes
#   14   the file's sha256 differs from the one the source publishes
#   15   cannot write the file (disk full or no permission)
#   16   the pickle file imports code that could run on load (or cannot be parsed)
#   17   a required tool is missing (curl or wget, a sha256 tool)
#   18   a different file already sits at the destination; it was left untouched
#   19   picklescan cannot run, so the pickle file was not installed
#   20   another run is downloading the same file
#   130  interrupted; the partial file is kept for resume
set -euo pipefail
umask 022

DEST='/srv/ComfyUI/models/loras/x $(touch pwned) `id` it'"'"'s.safetensors'
DEST_DIR=/srv/ComfyUI/models/loras
BASE_NAME='x $(touch pwned) `id` it'"'"'s.safetensors'
URL='http://127.0.0.1:8080/files/x.safetensors?a=1&b=$(id)'
EXPECTED_SIZE=1234
EXPECTED_SHA256=''
AUTH_VAR=''
PYTHON='/opt/py env/bin/python3'
USER_AGENT=comfyfixer/0.1.0
PICKLE_EXT=''

# Programs this script carries (standard library only; run with $PYTHON -c).
SHA256_STDIN_PY='"""Print the sha256 of standard input: the hasher of a script when openssl is missing.

Carried verbatim by every download script and run as python -S -c <this file>: standard library only.
"""

import hashlib
import sys


def main() -> int:
    h = hashlib.sha256()
    for block in iter(lambda: sys.stdin.buffer.read(1 << 20), b""):
        h.update(block)
    print(h.hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main())
'
STREAM_PART_PY='"""Append standard input to the partial file and print the sha256 of the whole part.

What was already there is re-read first (a retry), then the new bytes are hashed as they arrive,
so a successful download is hashed exactly once. Unbuffered writes keep the part a clean prefix of
the file even when the process is killed. Carried verbatim by every download script and run as
python -S -c <this file> PART: standard library only.
"""

import hashlib
import sys


def main(part: str) -> int:
    h = hashlib.sha256()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    try:
        with open(part, "rb") as old:
            for n in iter(lambda: old.readinto(buf), 0):
                h.update(view[:n])
        # Unbuffered stdin: readinto returns what the pipe holds at once instead of waiting for 1 MiB.
        with (
            open(sys.stdin.fileno(), "rb", buffering=0, closefd=False) as src,
            open(part, "ab", buffering=0) as out,
        ):
            for n in iter(lambda: src.readinto(buf), 0):
                done = 0
                while done < n:
                    done += out.write(view[done:n])
                h.update(view[:n])
    except OSError as exc:
        sys.stderr.write(f"comfyfixer: cannot write the partial file: {exc}\n")
        return 1
    print(h.hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
'
PICKLESCAN_GATE_PY='"""Scan a pickle (or a zip of pickles) with picklescan before the script installs it.

Exit 0: clean; 1: dangerous imports; 2: not a pickle or cannot be parsed; 3: picklescan is missing.
Carried verbatim by every download script and run as python -c <this file> PART EXT.
"""

import sys


def main(path: str, ext: str) -> int:
    try:
        from picklescan.scanner import scan_bytes
    except Exception as exc:
        sys.stderr.write(f"comfyfixer: picklescan cannot be imported: {exc}\n")
        return 3
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
            if not (magic == b"PK\x03\x04" or magic[:1] == b"\x80"):
                sys.stderr.write("comfyfixer: the file is neither a pickle nor a zip of pickles\n")
                return 2
            fh.seek(0)
            result = scan_bytes(fh, path, ext)
    except Exception as exc:
        sys.stderr.write(f"comfyfixer: the pickle could not be scanned: {exc}\n")
        return 2
    bad = sorted({f"{g.module}.{g.name}" for g in result.globals if g.safety.name == "Dangerous"})
    if result.issues_count:
        sys.stderr.write("comfyfixer: dangerous imports in the pickle: {}\n".format(", ".join(bad)))
        return 1
    return 2 if result.scan_err else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
'

PART="$DEST.part"
REJECTED="$DEST.rejected"
SIDECAR="$DEST.sha256"
LOCK="$DEST.part.lock"
MAX_ATTEMPTS="${COMFYFIXER_MAX_ATTEMPTS:-5}"
RETRY_DELAY="${COMFYFIXER_RETRY_DELAY:-2}"
RETRY_MAX_DELAY="${COMFYFIXER_RETRY_MAX_DELAY:-300}"
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
WORK=""
HOLD_LOCK=0
HASHER=""
STREAMER=pipeline

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

# "size mtime inode" of a file (GNU stat, then BSD stat).
file_stamp() { stat -c '%s %Y %i' -- "$1" 2>/dev/null || stat -f '%z %m %i' -- "$1"; }
file_size() {
  local stamp
  stamp=$(file_stamp "$1")
  printf '%s\n' "${stamp%% *}"
}

hash_stream() {
  case $HASHER in
    openssl) openssl dgst -sha256 -r ;;
    python) "$PYTHON" -S -c "$SHA256_STDIN_PY" ;;
    sha256sum) sha256sum ;;
    shasum) shasum -a 256 ;;
  esac
}
pick_hasher() {
  local out
  for HASHER in openssl python sha256sum shasum; do
    out=$(hash_stream </dev/null 2>/dev/null) || continue
    if [ "${out%% *}" = "$EMPTY_SHA256" ]; then return 0; fi
  done
  fail 17 "no working sha256 tool (openssl, python, sha256sum or shasum); install one and run again"
}
hash_file() {
  local out
  if [ -z "$HASHER" ]; then pick_hasher; fi
  out=$(hash_stream <"$1") || fail 15 "cannot read $1"
  printf '%s\n' "${out%% *}"
}

# An HTML page or a JSON error saved in place of a model. NULs become \001 so that binary headers
# (safetensors' length prefix, pickle opcodes) can never look like text.
looks_like_error_page() {
  local head
  head=$(LC_ALL=C head -c 512 -- "$1" | LC_ALL=C tr '\000' '\001' |
    LC_ALL=C tr '[:upper:]' '[:lower:]') || return 1
  head="${head#"${head%%[![:space:]]*}"}"
  case $head in
    '<!doctype'* | '<html'* | '<?xml'* | '<head'* | '<body'* | '<!--'*) return 0 ;;
    '{'*)
      head="${head#\{}"
      head="${head#"${head%%[![:space:]]*}"}"
      case $head in '"error'* | '"message'* | '"detail'* | '"code'*) return 0 ;; esac ;;
  esac
  return 1
}

reject() {
  local code=$1
  shift
  mv -f -- "$PART" "$REJECTED" 2>/dev/null || rm -f -- "$PART"
  say "$*"
  say "the rejected file was moved aside to $REJECTED; nothing was installed"
  exit "$code"
}

report() {
  printf 'COMFYFIXER_SIZE=%s\n' "$1"
  if [ -n "$2" ]; then printf 'COMFYFIXER_SHA256=%s\n' "$2"; fi
}

# The sidecar is `sha256sum -c` compatible; its second line ties the digest to the file's size,
# mtime and inode so a later run can trust it without re-reading a 27 GB file.
write_sidecar() {
  local tmp="$SIDECAR.tmp.$$"
  if { printf '%s  %s\n' "$1" "$BASE_NAME" && printf '# comfyfixer %s\n' "$(file_stamp "$DEST")"; } \
    >"$tmp" 2>/dev/null && mv -f -- "$tmp" "$SIDECAR"; then
    return 0
  fi
  rm -f -- "$tmp"
  say "note: could not write $SIDECAR (the model itself is installed)"
}
sidecar_sha256() {
  local line1="" line2="" sha
  [ -f "$SIDECAR" ] || return 1
  { IFS= read -r line1 && IFS= read -r line2; } <"$SIDECAR" || return 1
  [ "$line2" = "# comfyfixer $(file_stamp "$DEST")" ] || return 1
  sha=${line1%% *}
  case $sha in *[!0-9a-f]* | '') return 1 ;; esac
  [ "${#sha}" = 64 ] || return 1
  printf '%s\n' "$sha"
}

check_existing() {
  local size sha=""
  [ -f "$DEST" ] || fail 18 "$DEST exists but is not a regular file; move it away and run again"
  size=$(file_size "$DEST")
  if [ -n "$EXPECTED_SIZE" ] && [ "$size" != "$EXPECTED_SIZE" ]; then
    fail 18 "$DEST already exists with $size bytes, expected $EXPECTED_SIZE;" \
      "it was left untouched: move it away and run again"
  fi
  if looks_like_error_page "$DEST"; then
    fail 18 "$DEST already exists but is an HTML/JSON page, not a model; delete it and run again"
  fi
  if sha=$(sidecar_sha256); then
    :
  elif [ -n "$EXPECTED_SHA256" ]; then
    sha=$(hash_file "$DEST")
    if [ "$sha" = "$EXPECTED_SHA256" ]; then write_sidecar "$sha"; fi
  else
    sha=""
  fi
  if [ -n "$EXPECTED_SHA256" ] && [ "$sha" != "$EXPECTED_SHA256" ]; then
    fail 18 "$DEST already exists but its sha256 is $sha, expected $EXPECTED_SHA256;" \
      "it was left untouched: move it away and run again"
  fi
  say "already present and verified: $DEST"
  printf 'COMFYFIXER_ALREADY_PRESENT=1\n'
  report "$size" "$sha"
  exit 0
}

# Sets HTTP_STATUS, CONTENT_TYPE, RETRY_AFTER and RANGE_TOTAL from the last response in the
# header dump (curl -D, or wget -S whose lines are indented).
read_headers() {
  local line name value
  HTTP_STATUS="" CONTENT_TYPE="" RETRY_AFTER="" RANGE_TOTAL=""
  [ -f "$WORK/headers" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%$'\r'}"
    line="${line#"${line%%[![:space:]]*}"}"
    case $line in
      HTTP/*)
        value="${line#* }"
        HTTP_STATUS="${value%% *}"
        CONTENT_TYPE="" RETRY_AFTER="" RANGE_TOTAL="" ;;
      *:*)
        name=$(printf '%s' "${line%%:*}" | LC_ALL=C tr '[:upper:]' '[:lower:]')
        value="${line#*:}"
        value="${value#"${value%%[![:space:]]*}"}"
        case $name in
          content-type) CONTENT_TYPE=$(printf '%s' "$value" | LC_ALL=C tr '[:upper:]' '[:lower:]') ;;
          retry-after) if is_uint "$value"; then RETRY_AFTER=$value; fi ;;
          content-range) case $value in *'*/'*) RANGE_TOTAL="${value##*/}" ;; esac ;;
        esac ;;
    esac
  done <"$WORK/headers"
  is_uint "$HTTP_STATUS" || HTTP_STATUS=""
  is_uint "$RANGE_TOTAL" || RANGE_TOTAL=""
}

# Body bytes from `offset` on, to stdout.
fetch() {
  local offset=$1
  if [ "$FETCHER" = curl ]; then
    local -a args=(--fail --silent --show-error --location --max-redirs 10
      --proto "$PROTOCOLS" --proto-redir "$PROTOCOLS" --connect-timeout 30
      --speed-limit 1024 --speed-time 60 --user-agent "$USER_AGENT"
      --dump-header "$WORK/headers" --output -)
    if [ "$offset" -gt 0 ]; then args+=(--continue-at "$offset"); fi
    if [ -n "$TOKEN" ]; then
      curl "${args[@]}" --header @<(printf 'Authorization: Bearer %s\n' "$TOKEN") --url "$URL"
    else
      curl "${args[@]}" --url "$URL"
    fi
  else
    local -a args=(--no-verbose --server-response --tries=1 --max-redirect=10 --timeout=60
      --user-agent="$USER_AGENT" --output-document=-)
    if [ "$offset" -gt 0 ]; then args+=("--start-pos=$offset"); fi
    wget "${args[@]}" -- "$URL" 2>"$WORK/headers"
  fi
}

# One attempt: the bytes missing from the part are appended to it while the whole part streams
# through a single sha256 pass. The Python streamer does it in one process; without Python,
# `{ cat part; fetch | tee -a part; } | hasher` does the same with more copies.
transfer() {
  local offset=$1
  rm -f -- "$WORK/status" "$WORK/sha" "$WORK/headers"
  if [ "$STREAMER" = python ]; then
    set +e
    fetch "$offset" | "$PYTHON" -S -c "$STREAM_PART_PY" "$PART" >"$WORK/sha"
    printf '0 %s %s\n' "${PIPESTATUS[0]}" "${PIPESTATUS[1]}" >"$WORK/status"
    set -e
    return 0
  fi
  {
    set +e
    local cat_rc=0
    if [ "$offset" -gt 0 ]; then
      cat -- "$PART"
      cat_rc=$?
    fi
    fetch "$offset" | tee -a -- "$PART"
    printf '%s %s %s\n' "$cat_rc" "${PIPESTATUS[0]}" "${PIPESTATUS[1]}" >"$WORK/status"
  } | hash_stream >"$WORK/sha" || true
}

backoff() {
  local exponent=$((attempt - 1)) delay
  if [ "$exponent" -gt 10 ]; then exponent=10; fi
  delay=$((RETRY_DELAY * (1 << exponent)))
  if [ -n "$RETRY_AFTER" ] && [ "$RETRY_AFTER" -gt "$delay" ]; then delay=$RETRY_AFTER; fi
  if [ "$delay" -gt "$RETRY_MAX_DELAY" ]; then delay=$RETRY_MAX_DELAY; fi
  say "$1; retrying in ${delay}s (attempt $((attempt + 1)) of $MAX_ATTEMPTS)"
  sleep "$delay"
}

# Undo bytes an error response may have slipped into the part (curl --fail is not airtight on 401).
restore_part() {
  local offset=$1 size
  [ -f "$PART" ] || return 0
  size=$(file_size "$PART")
  [ "$size" -gt "$offset" ] || return 0
  if command -v truncate >/dev/null 2>&1; then
    truncate -s "$offset" -- "$PART"
  else
    "$PYTHON" -S -c 'import os, sys; os.truncate(sys.argv[1], int(sys.argv[2]))' "$PART" "$offset"
  fi
}

# Throw the part away and start from byte 0 (bounded by the attempts like every other retry).
restart_part() {
  if [ "$attempt" -ge "$MAX_ATTEMPTS" ]; then
    fail 10 "$1, and $attempt attempts are used up; run this script again later"
  fi
  say "$1; starting again from zero"
  : >"$PART"
}

auth_failure() {
  if [ -z "$AUTH_VAR" ]; then
    fail 11 "the server refused access (HTTP $HTTP_STATUS): this file needs a login" \
      "that the source does not offer to scripts"
  elif [ -z "$TOKEN" ]; then
    fail 11 "the server refused access (HTTP $HTTP_STATUS): set $AUTH_VAR in the environment and run again"
  fi
  fail 11 "the server refused access with your $AUTH_VAR (HTTP $HTTP_STATUS): check the token," \
    "accept the model's licence on its page, then run again"
}

# Same rule as the Python side: any value but empty or 0 allows.
pickle_allowed() { [ "${COMFYFIXER_ALLOW_PICKLE:-0}" = 1 ]; }

scan_pickle() {
  local rc=0
  "$PYTHON" -c "$PICKLESCAN_GATE_PY" "$PART" "$PICKLE_EXT" || rc=$?
  case $rc in
    0) return 0 ;;
    1 | 2)
      if pickle_allowed; then
        say "warning: installing a pickle file the scanner flagged, because COMFYFIXER_ALLOW_PICKLE=1"
        return 0
      fi
      if [ "$rc" = 1 ]; then
        reject 16 "refusing to install: the pickle file imports code that can run on load;" \
          "set COMFYFIXER_ALLOW_PICKLE=1 only if you trust the source"
      fi
      reject 16 "refusing to install: the pickle file could not be scanned;" \
        "set COMFYFIXER_ALLOW_PICKLE=1 only if you trust the source" ;;
    *)
      if pickle_allowed; then
        say "warning: installing an unscanned pickle file, because COMFYFIXER_ALLOW_PICKLE=1"
        return 0
      fi
      fail 19 "cannot scan the pickle file: run '$PYTHON -m pip install picklescan'" \
        "and run this script again (the download is kept)" ;;
  esac
}

case $URL in
  https://*) PROTOCOLS='=https' ;;
  http://*) PROTOCOLS='=http,https' ;;
  *) fail 2 "the URL is not http(s): $URL" ;;
esac
TOKEN=""
case $AUTH_VAR in
  HF_TOKEN) TOKEN="${HF_TOKEN:-${HUGGING_FACE_HUB_TOKEN:-}}" ;;
  CIVITAI_API_TOKEN) TOKEN="${CIVITAI_API_TOKEN:-}" ;;
esac
case $TOKEN in *[[:cntrl:]]*) fail 2 "$AUTH_VAR contains a control character; fix it and run again" ;; esac

mkdir -p -- "$DEST_DIR" 2>/dev/null ||
  fail 15 "cannot create the folder $DEST_DIR; check permissions and free space"
if command -v flock >/dev/null 2>&1; then
  : >>"$LOCK" 2>/dev/null || fail 15 "cannot write in $DEST_DIR; check permissions and free space"
  exec 9>>"$LOCK"
  flock -n 9 || fail 20 "another download of $DEST is running; wait for it to finish"
  HOLD_LOCK=1
fi

if [ -e "$DEST" ]; then check_existing; fi

if command -v curl >/dev/null 2>&1; then
  FETCHER=curl
elif command -v wget >/dev/null 2>&1; then
  FETCHER=wget
  if [ -n "$TOKEN" ]; then
    fail 17 "curl is needed to send $AUTH_VAR safely (wget forwards it to redirect targets);" \
      "install curl and run again"
  fi
else
  fail 17 "neither curl nor wget is installed; install curl and run this script again"
fi
# -S: the streamer needs only the standard library, and starts in a third of the time without site.
if "$PYTHON" -S -c 'import hashlib' >/dev/null 2>&1; then STREAMER=python; else pick_hasher; fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/comfyfixer.XXXXXX") || fail 15 "cannot create a temporary folder"
: >>"$PART" 2>/dev/null || fail 15 "cannot write $PART; check permissions and free space"

attempt=0
SHA=""
while :; do
  attempt=$((attempt + 1))
  offset=$(file_size "$PART")
  if [ -n "$EXPECTED_SIZE" ] && [ "$offset" -gt "$EXPECTED_SIZE" ]; then
    say "the partial file is larger than the expected $EXPECTED_SIZE bytes; starting again"
    : >"$PART"
    offset=0
  fi
  if [ -n "$EXPECTED_SIZE" ] && [ "$offset" -gt 0 ] && [ "$offset" = "$EXPECTED_SIZE" ]; then
    SHA=$(hash_file "$PART")   # every byte arrived before an interruption; only the hash is missing
    break
  fi
  if [ "$offset" -gt 0 ]; then say "resuming at byte $offset"; fi
  transfer "$offset"
  if ! read -r cat_rc fetch_rc tee_rc <"$WORK/status" 2>/dev/null; then
    fail 15 "the download pipeline stopped unexpectedly; run this script again to resume"
  fi
  if [ "$cat_rc" != 0 ] || [ "$tee_rc" != 0 ]; then
    fail 15 "cannot write $PART (disk full?); free some space and run again: the download resumes"
  fi
  read_headers
  status=$HTTP_STATUS
  if [ "$fetch_rc" = 0 ] && [ -n "$status" ] && [ "$status" -ge 200 ] && [ "$status" -lt 300 ]; then
    case $CONTENT_TYPE in
      text/html* | application/json* | application/problem+json* | application/xhtml*)
        reject 12 "the server answered with a web page or an error message ($CONTENT_TYPE), not the model" ;;
    esac
    read -r SHA _ <"$WORK/sha" || SHA=""
    size=$(file_size "$PART")
    if [ -z "$EXPECTED_SIZE" ] || [ "$size" -ge "$EXPECTED_SIZE" ]; then break; fi
    if [ "$attempt" -ge "$MAX_ATTEMPTS" ]; then
      fail 10 "the transfer kept ending early ($size of $EXPECTED_SIZE bytes);" \
        "run this script again later: the download resumes"
    fi
    backoff "the transfer ended early at $size of $EXPECTED_SIZE bytes"
    continue
  fi
  if [ "$status" = 416 ] && [ "$offset" -gt 0 ]; then
    if [ -n "$RANGE_TOTAL" ] && [ "$RANGE_TOTAL" = "$offset" ] && [ -z "$EXPECTED_SIZE" ]; then
      SHA=$(hash_file "$PART")   # the part was already complete
      break
    fi
    if [ -n "$EXPECTED_SIZE" ] && [ -n "$RANGE_TOTAL" ] && [ "$RANGE_TOTAL" != "$EXPECTED_SIZE" ]; then
      reject 13 "the server's file has $RANGE_TOTAL bytes, expected $EXPECTED_SIZE"
    fi
    restart_part "the server cannot resume at byte $offset"
    continue
  fi
  if [ "$FETCHER" = curl ] && [ "$fetch_rc" = 33 ]; then
    restart_part "the server does not support resuming"
    continue
  fi
  case $status in 2??) ;; ?*) restore_part "$offset" ;; esac
  case $status in
    401 | 403) auth_failure ;;
    408 | 425 | 429 | 500 | 502 | 503 | 504) reason="HTTP $status from the server" ;;
    4[0-9][0-9] | 5[0-9][0-9])
      fail 10 "HTTP $status from the server for $URL;" \
        "the file may have moved: run comfyfixer again to search anew" ;;
    *)
      if [ "$FETCHER" = curl ]; then
        case $fetch_rc in
          1 | 47) fail 10 "the server redirected to a URL that is not allowed (https only, 10 hops)" ;;
          23) fail 15 "cannot write $PART (disk full?); free some space and run again" ;;
          35 | 51 | 53 | 54 | 58 | 59 | 60 | 77 | 80 | 83 | 90 | 91)
            fail 10 "TLS error talking to the server (curl exit $fetch_rc);" \
              "check the system clock and CA certificates" ;;
        esac
      fi
      reason="network error ($FETCHER exit $fetch_rc)" ;;
  esac
  if [ "$attempt" -ge "$MAX_ATTEMPTS" ]; then
    fail 10 "$reason after $attempt attempts; run this script again later: the download resumes"
  fi
  backoff "$reason"
done

size=$(file_size "$PART")
if looks_like_error_page "$PART"; then
  reject 12 "the download is a web page or an error message, not the model (a login may be required)"
fi
if [ -n "$EXPECTED_SIZE" ] && [ "$size" != "$EXPECTED_SIZE" ]; then
  reject 13 "size mismatch: got $size bytes, expected $EXPECTED_SIZE"
fi
case $SHA in
  *[!0-9a-f]* | '') fail 15 "could not compute the sha256 of $PART; run this script again" ;;
esac
if [ -n "$EXPECTED_SHA256" ] && [ "$SHA" != "$EXPECTED_SHA256" ]; then
  reject 14 "sha256 mismatch: got $SHA, expected $EXPECTED_SHA256 (wrong or corrupted file)"
fi
if [ -n "$PICKLE_EXT" ]; then scan_pickle; fi
mv -f -- "$PART" "$DEST" || fail 15 "cannot move $PART into place; check permissions and free space"
write_sidecar "$SHA"
say "installed $DEST ($size bytes, sha256 $SHA)"
report "$size" "$SHA"
