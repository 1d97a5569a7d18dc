# shellcheck shell=bash
# The constant body of every comfyfixer download script. `scripts/render.py` writes the header
# (what model, from where, why) and the per-model values, each shell-quoted, then the programs in
# `carried/` as quoted variables, then this file from the marker line on. It holds no per-model
# value, so one review of this text covers every script ever written. The numeric exit codes here
# must match the constants in `render.py` (a test checks each one).
#
# Notes on the choices below (why, not what):
# - Every guarantee is enforced here, where the bytes move, so a script run by hand is as safe as
#   one the run starts: Python 3 (standard library only) is required for that, and the checks are
#   the very modules the run imports (`comfyfixer/checks/`), carried as quoted text.
# - Redirects are followed one hop at a time (no `curl --location`): every target is checked
#   against the allowed hosts and suffixes written above (`checks/hosts.py`) before it is
#   requested, for curl and wget alike. A refused hop ends the script (exit 21) naming the host.
# - The token goes only to the origin of the download URL (the hub or Civitai endpoint it belongs
#   to), never to a redirect target elsewhere. It reaches curl through `--header @<(printf …)`:
#   printf is a bash builtin and the header travels through a pipe, so it appears neither in the
#   script, nor in `ps`, nor on disk. wget can only take it on its command line, so wget is used
#   only when no token is needed.
# - The sha256 is computed while the bytes stream (`carried/stream_part.py`): a retry re-hashes
#   what the part already holds, so the final digest covers the whole file and a successful
#   download is hashed once. The same program writes only a 2xx body, refuses a compressed one and
#   stops as soon as the part would pass the published (else announced) size. Since it runs anyway,
#   it also checks a redirect's target (`checks/hosts.py`) and the finished part's format
#   (`checks/formats.py`): every Python start costs tens of ms, and a download of a small file is
#   mostly starts. Its answer about a redirect is used only for the Location this script read.
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
SHA256_STDIN_PY='' STREAM_PART_PY='' HOSTS_PY='' FORMATS_PY='' PICKLES_PY='' SEGMENTS_PY=''
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

# The temporary folder (headers, the streamer's answers, a check's reason), made on first use.
need_work() {
  if [ -z "$WORK" ]; then
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/comfyfixer.XXXXXX") || fail 15 "cannot create a temporary folder"
  fi
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

# Runs one carried program (`python -S -c PROGRAM ARGS`): its output in OUT, its reason in WHY.
run_check() {
  local rc
  need_work
  while :; do
    rc=0
    OUT=$("$PYTHON" -S -c "$@" 2>"$WORK/why") || rc=$?
    python_failed "$rc" || break
  done
  WHY=""
  IFS= read -r -d '' WHY <"$WORK/why" || :
  WHY=${WHY%$'\n'}
  WHY=${WHY//comfyfixer: /}
  return "$rc"
}

# The format check of `checks/formats.py` (the one `comfyfixer verify` runs): 0 passes, 1 fails,
# 2 unreadable, 3 an HTML page or JSON error; the reason in WHY, what the header says in FORMAT.
format_check() {
  local rc=0
  run_check "$FORMATS_PY" "$1" "$BASE_NAME" || rc=$?
  FORMAT=$OUT
  return "$rc"
}

reject() {
  local code=$1
  shift
  mv -f -- "$PART" "$REJECTED" 2>/dev/null || rm -f -- "$PART"
  say "$* (nothing was installed; the rejected file was moved aside to $REJECTED)"
  exit "$code"
}

report() {
  printf 'COMFYFIXER_SIZE=%s\n' "$1"
  if [ -n "$2" ]; then printf 'COMFYFIXER_SHA256=%s\n' "$2"; fi
}

# The sidecar is `sha256sum -c` compatible; its second line ties the digest to the file's size,
# mtime and inode so a later run can trust it without re-reading a 27 GB file. $2: that stamp when
# already known (a rename keeps all three).
write_sidecar() {
  local tmp="$SIDECAR.tmp.$$" stamp=${2:-}
  if [ -z "$stamp" ]; then stamp=$(file_stamp "$DEST") || stamp=""; fi
  if [ -n "$stamp" ] && { printf '%s  %s\n' "$1" "$BASE_NAME" && printf '# comfyfixer %s\n' "$stamp"; } \
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
  if ! format_check "$DEST"; then
    fail 18 "$DEST already exists but is not a valid model file ($WHY); delete it and run again"
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

# Sets HTTP_STATUS, CONTENT_TYPE (PAGE_TYPE=1 for a web page or an error message), RETRY_AFTER,
# RANGE_TOTAL and LOCATION from the last response in the header dump (curl -D, or wget -S whose
# lines are indented).
# Header names match in any case (nocasematch, only here: a fork of `tr` per line was ~2 ms each).
read_headers() {
  local line name value
  HTTP_STATUS="" CONTENT_TYPE="" PAGE_TYPE="" RETRY_AFTER="" RANGE_TOTAL="" LOCATION=""
  [ -f "$WORK/headers" ] || return 0
  shopt -s nocasematch
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%$'\r'}"
    line="${line#"${line%%[![:space:]]*}"}"
    case $line in
      HTTP/*)
        value="${line#* }"
        HTTP_STATUS="${value%% *}"
        CONTENT_TYPE="" PAGE_TYPE="" RETRY_AFTER="" RANGE_TOTAL="" LOCATION="" ;;
      *:*)
        name="${line%%:*}"
        value="${line#*:}"
        value="${value#"${value%%[![:space:]]*}"}"
        case $name in
          content-type)
            CONTENT_TYPE=$value PAGE_TYPE=""
            case $value in
              text/html* | application/json* | application/problem+json* | application/xhtml*) PAGE_TYPE=1 ;;
            esac ;;
          retry-after) if is_uint "$value"; then RETRY_AFTER=$value; fi ;;
          content-range) case $value in *'*/'*) RANGE_TOTAL="${value##*/}" ;; esac ;;
          location) LOCATION=$value ;;
        esac ;;
    esac
  done <"$WORK/headers"
  shopt -u nocasematch
  is_uint "$HTTP_STATUS" || HTTP_STATUS=""
  is_uint "$RANGE_TOTAL" || RANGE_TOTAL=""
}

# One request, no redirect followed: the body of HOP_URL from byte `offset` on, to stdout, the
# headers to $WORK/headers. The token goes only where `next_hop` said it may (HOP_TOKEN=1).
fetch() {
  local offset=$1
  if [ "$FETCHER" = curl ]; then
    # Run by hand on a terminal: curl's progress bar. comfyfixer sends stderr to a log, so not there.
    local meter=--silent
    if [ -t 2 ]; then meter=--progress-bar; fi
    local -a args=(--fail "$meter" --show-error --proto '=http,https' --connect-timeout 30
      --speed-limit 1024 --speed-time 60 --user-agent "$USER_AGENT"
      --header 'Accept-Encoding: identity' --dump-header "$WORK/headers" --output -)
    if [ "$offset" -gt 0 ]; then args+=(--continue-at "$offset"); fi
    if [ -n "$TOKEN" ] && [ "$HOP_TOKEN" = 1 ]; then
      curl "${args[@]}" --header @<(printf 'Authorization: Bearer %s\n' "$TOKEN") --url "$HOP_URL"
    else
      curl "${args[@]}" --url "$HOP_URL"
    fi
  else
    local -a args=(--no-verbose --server-response --tries=1 --max-redirect=0 --timeout=60
      --user-agent="$USER_AGENT" --header=Accept-Encoding:identity --output-document=-)
    if [ "$offset" -gt 0 ]; then args+=("--start-pos=$offset"); fi
    wget "${args[@]}" -- "$HOP_URL" 2>"$WORK/headers"
  fi
}

# Checks a hop with `checks/hosts.py` before it is requested: the download URL itself (no
# location), or the target of a redirect from HOP_URL. Sets HOP_URL and HOP_TOKEN; a refused host
# ends the script with exit 21 and the host named (nothing was requested from it).
next_hop() {
  run_check "$HOSTS_PY" "$ALLOWED_HOSTS" "$HTTP_HOSTS" "$REDIRECT_SUFFIXES" "$GRANTED_URL" "$URL" "$@" ||
    fail 21 "$WHY"
  HOP_URL=${OUT%$'\n'*}
  case ${OUT##*$'\n'} in token) HOP_TOKEN=1 ;; *) HOP_TOKEN=0 ;; esac
}

# What the streamer printed: STREAM_SHA; PART_FORMAT ("NAME CODE") and PART_WHY once the part is
# complete; for a redirect, the Location it judged (NEXT_LOCATION) and NEXT_URL + NEXT_TOKEN, or
# NEXT_REFUSED (the reason).
read_stream() {
  local key value
  STREAM_SHA="" PART_FORMAT="" PART_WHY="" NEXT_LOCATION="" NEXT_URL="" NEXT_TOKEN="" NEXT_REFUSED=""
  while read -r key value || [ -n "$key" ]; do
    case $key in
      sha256) STREAM_SHA=$value ;;
      format) PART_FORMAT=$value ;;
      why) PART_WHY=$value ;;
      location) NEXT_LOCATION=$value ;;
      hop) NEXT_URL=$value ;;
      token) NEXT_TOKEN=$value ;;
      refused) NEXT_REFUSED=$value ;;
    esac
  done <"$WORK/stream"
}

# One attempt: request the URL and follow its redirects one checked hop at a time; the 2xx body is
# appended to the part while the whole part streams through one sha256 pass (`stream_part.py`,
# which also checks a redirect's target and the finished part's format: see read_stream).
# Leaves the last response in $WORK/headers and "fetch_rc stream_rc" in $WORK/status.
transfer() {
  local offset=$1 hops=0
  next_hop "$URL"
  while :; do
    # Emptied, not removed: builtins, and a fetch that fails early must not leave old headers.
    : >"$WORK/headers"
    : >"$WORK/status"
    set +e
    fetch "$offset" | "$PYTHON" -S -c "$STREAM_PART_PY" "$PART" "$WORK/headers" "$EXPECTED_SIZE" \
      "$BASE_NAME" "$FORMATS_PY" "$HOSTS_PY" "$ALLOWED_HOSTS" "$HTTP_HOSTS" "$REDIRECT_SUFFIXES" \
      "$GRANTED_URL" "$URL" "$HOP_URL" >"$WORK/stream"
    printf '%s %s\n' "${PIPESTATUS[0]}" "${PIPESTATUS[1]}" >"$WORK/status"
    set -e
    read_headers
    read_stream
    case $HTTP_STATUS in 301 | 302 | 303 | 307 | 308) ;; *) return 0 ;; esac
    hops=$((hops + 1))
    if [ "$hops" -gt "$MAX_HOPS" ]; then fail 10 "more than $MAX_HOPS redirects for $URL"; fi
    if [ -z "$LOCATION" ]; then fail 10 "the server redirected (HTTP $HTTP_STATUS) without saying where"; fi
    if [ "$NEXT_LOCATION" != "$LOCATION" ]; then
      next_hop "$HOP_URL" "$LOCATION" # the streamer did not judge this very Location: check it here
    elif [ -n "$NEXT_REFUSED" ]; then
      fail 21 "$NEXT_REFUSED"
    elif [ -n "$NEXT_URL" ]; then
      HOP_URL=$NEXT_URL HOP_TOKEN=$NEXT_TOKEN
    else
      next_hop "$HOP_URL" "$LOCATION"
    fi
  done
}

# Large files over several connections at once (`carried/segments.py`: ranged pieces written into
# the preallocated part, the same host, size, encoding and page rules per piece and per redirect,
# its resume record in "$PART.segments"). Sets SEGMENT_SHA when every byte is there. It answers 3
# when the server serves no ranges (or a proxy is set, or this Python cannot verify TLS): the
# single stream below takes over, the part cut back to a clean prefix. The token travels through a
# pipe, as for curl.
segmented() {
  local rc durable=0 out line
  # With no published sha256 nothing would notice a hole a crash left: sync before each record.
  if [ -z "$EXPECTED_SHA256" ]; then durable=1; fi
  while :; do
    rc=0
    if [ -n "$TOKEN" ]; then
      out=$(segments_py "$durable" < <(printf '%s\n' "$TOKEN")) || rc=$?
    else
      out=$(segments_py "$durable" </dev/null) || rc=$?
    fi
    python_failed "$rc" || break
  done
  # Its answer, one "key value" per line (parameter expansion: no file, no fork).
  out=$out$'\n'
  while [ -n "$out" ]; do
    line=${out%%$'\n'*}
    out=${out#*$'\n'}
    case $line in
      'sha256 '*) SEGMENT_SHA=${line#* } ;;
      'http_status '*) HTTP_STATUS=${line#* } ;;
      'format '*) PART_FORMAT=${line#* } ;;
      'why '*) PART_WHY=${line#* } ;;
    esac
  done
  case $rc in
    0) [ -n "$SEGMENT_SHA" ] || fail 15 "could not compute the sha256 of $PART; run this script again" ;;
    3) ;;
    11) auth_failure ;;
    12) error_page "the server answered with a web page or an error message, not the model" ;;
    13) reject 13 "the server's file does not have the published size ($EXPECTED_SIZE bytes)" ;;
    15) fail 15 "cannot write $PART (disk full?); free some space and run again: the download resumes" ;;
    21) exit 21 ;; # segments.py has named the refused host, nothing came from it (the part is kept)
    22) fail 22 "the server compressed the model (Content-Encoding) although it was asked not to;" \
      "nothing was installed" ;;
    130) say "interrupted; the partial file is kept and the next run resumes it: $PART"
      exit 130 ;;
    *) fail 10 "the download stopped (see above); run this script again later: the download resumes" ;;
  esac
}

# `carried/segments.py` with its arguments; $1: DURABLE (1: sync the part before each record).
segments_py() {
  "$PYTHON" -S -c "$SEGMENTS_PY" "$PART" "$URL" "$EXPECTED_SIZE" "$SEGMENTS" \
    "$((SEGMENT_MIN_MIB * 1048576))" "$USER_AGENT" "$1" "$ALLOWED_HOSTS" "$HTTP_HOSTS" \
    "$REDIRECT_SUFFIXES" "$GRANTED_URL" "$HOSTS_PY" "$BASE_NAME" "$FORMATS_PY"
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

# An HTML page instead of the model. From Civitai that is its login page (it answers 200 to a
# download it will not give anonymously): a login problem, exit 11, with what to do.
error_page() {
  if [ "$AUTH_VAR" = CIVITAI_API_TOKEN ]; then
    rm -f -- "$PART"
    if [ -n "$TOKEN" ]; then
      fail 11 "Civitai answered with its login page instead of the file although CIVITAI_API_TOKEN" \
        "was sent: check the token, then run again"
    fi
    fail 11 "Civitai answered with its login page instead of the file: set CIVITAI_API_TOKEN" \
      "to a Civitai API key and run again"
  fi
  reject 12 "$1"
}

# Same rule as the Python side: any value but empty or 0 allows.
pickle_allowed() { [ "${COMFYFIXER_ALLOW_PICKLE:-0}" = 1 ]; }

# The pickle gate of `checks/pickles.py` (the one `comfyfixer verify` runs): every global the
# pickle names must be one weights files use; anything else is refused unless the user allows it.
pickle_gate() {
  local rc=0
  run_check "$PICKLES_PY" "$1" || rc=$?
  [ "$rc" = 0 ] && return 0
  if pickle_allowed; then
    say "warning: installing a pickle file the gate refused ($WHY), because COMFYFIXER_ALLOW_PICKLE=1"
    return 0
  fi
  reject 16 "refusing to install: $WHY; set COMFYFIXER_ALLOW_PICKLE=1 only if you trust the source"
}

# What `checks/` says about the finished part, before it is moved into place: the format check
# (its exit code in $1, an error page already handled), then the pickle gate.
check_part() {
  case $1 in
    0) ;;
    2) fail 15 "cannot read $PART to check it; run this script again" ;;
    *) reject 23 "the download is not a valid model file: $WHY" ;;
  esac
  case $PICKLE_EXT/$FORMAT in ?*/* | */pickle | */pickle-zip) pickle_gate "$PART" ;; esac
}

case $URL in
  https://* | http://*) ;;
  *) fail 2 "the URL is not http(s): $URL" ;;
esac
# The checks are Python (standard library only): the interpreter that wrote the script, else any
# python3 on PATH (a script copied to another machine). Looked up, not started: the first Python
# step, before any request, switches to python3 if this one cannot run (python_failed).
# -S: no site, a third of the start-up time.
if ! command -v -- "$PYTHON" >/dev/null 2>&1; then PYTHON=python3; fi
command -v -- "$PYTHON" >/dev/null 2>&1 || python_missing
TOKEN=""
case $AUTH_VAR in
  HF_TOKEN) TOKEN="${HF_TOKEN:-${HUGGING_FACE_HUB_TOKEN:-}}" ;;
  CIVITAI_API_TOKEN) TOKEN="${CIVITAI_API_TOKEN:-}" ;;
esac
case $TOKEN in *[[:cntrl:]]*) fail 2 "$AUTH_VAR contains a control character; fix it and run again" ;; esac

[ -d "$DEST_DIR" ] || mkdir -p -- "$DEST_DIR" 2>/dev/null ||
  fail 15 "cannot create the folder $DEST_DIR; check permissions and free space"
if command -v flock >/dev/null 2>&1; then
  : >>"$LOCK" 2>/dev/null || fail 15 "cannot write in $DEST_DIR; check permissions and free space"
  exec 9>>"$LOCK"
  if ! flock -n 9; then
    # Another run (or one just killed, whose script is stopping) holds it: wait, then resume or find it done.
    LOCK_WAIT=${COMFYFIXER_LOCK_WAIT:-3600}
    say "another download of $DEST is running; waiting for it (up to $LOCK_WAIT s)"
    flock -w "$LOCK_WAIT" 9 || fail 20 "another download of $DEST is still running after $LOCK_WAIT s; run again later"
  fi
  HOLD_LOCK=1
fi

if [ -e "$DEST" ]; then check_existing; fi

if command -v curl >/dev/null 2>&1; then
  FETCHER=curl
elif command -v wget >/dev/null 2>&1; then
  FETCHER=wget
  if [ -n "$TOKEN" ]; then
    fail 17 "curl is needed to send $AUTH_VAR safely (wget would show it on its command line);" \
      "install curl and run again"
  fi
else
  fail 17 "neither curl nor wget is installed; install curl and run this script again"
fi
: >>"$PART" 2>/dev/null || fail 15 "cannot write $PART; check permissions and free space"

# A part with a record was laid out by pieces: only the segmented download may resume it. A file
# of unknown size keeps the single stream (the run's probe gives nearly every plan a size).
if [ -f "$PART.segments" ] || { [ "$SEGMENTS" -gt 1 ] && [ -n "$EXPECTED_SIZE" ] &&
  [ "$EXPECTED_SIZE" -ge $((SEGMENT_MIN_MIB * 1048576)) ]; }; then
  segmented
fi

attempt=0
SHA=""
while :; do
  if [ -n "$SEGMENT_SHA" ]; then
    SHA=$SEGMENT_SHA
    break
  fi
  attempt=$((attempt + 1))
  PART_FORMAT="" PART_WHY="" # a check of the finished part counts only from the attempt that finished it
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
  if ! read -r fetch_rc stream_rc <"$WORK/status" 2>/dev/null; then
    fail 15 "the download pipeline stopped unexpectedly; run this script again to resume"
  fi
  case $stream_rc in
    0) ;;
    4) restore_part "$offset"
      fail 22 "the server compressed the model (Content-Encoding) although it was asked not to;" \
        "nothing was installed" ;;
    5) rm -f -- "$PART"
      fail 13 "the server sent more bytes than the file has (${EXPECTED_SIZE:-announced size});" \
        "the partial file was removed and nothing was installed" ;;
    *) fail 15 "cannot write $PART (disk full?); free some space and run again: the download resumes" ;;
  esac
  status=$HTTP_STATUS
  if [ "$fetch_rc" = 0 ] && [ -n "$status" ] && [ "$status" -ge 200 ] && [ "$status" -lt 300 ]; then
    if [ "$PAGE_TYPE" = 1 ]; then
      error_page "the server answered with a web page or an error message ($CONTENT_TYPE), not the model"
    fi
    SHA=$STREAM_SHA
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
          1) fail 10 "the server answered with a URL curl does not support (http and https only)" ;;
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

stamp=$(file_stamp "$PART") || fail 15 "cannot read $PART; run this script again"
size=${stamp%% *}
format_rc=${PART_FORMAT##* }
if [ -n "$PART_FORMAT" ] && is_uint "$format_rc"; then
  # The streamer or segments.py ran this very check (checks/formats.py) on the finished part.
  FORMAT=${PART_FORMAT% *}
  WHY=$PART_WHY
else
  format_rc=0
  format_check "$PART" || format_rc=$?
fi
if [ "$format_rc" = 3 ]; then
  error_page "the download is a web page or an error message, not the model (a login may be required)"
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
check_part "$format_rc"
mv -f -- "$PART" "$DEST" || fail 15 "cannot move $PART into place; check permissions and free space"
write_sidecar "$SHA" "$stamp" # the rename kept size, mtime and inode
say "installed $DEST ($size bytes, sha256 $SHA)"
report "$size" "$SHA"
