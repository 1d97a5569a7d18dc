# shellcheck shell=bash
# Variables are shared across the parts: set in one, read in another (SC2034 here; the joined
# script is checked whole, where an unused variable still shows).
# shellcheck disable=SC2034
# The single stream: `carried/stream_part.py` runs one curl (or wget) request per hop, each hop
# checked before it is requested, and appends and hashes the body; retries and their waits.
# Part of the body of every comfyfixer download script: render.py joins download.sh, checks.sh,
# stream.sh, segmented.sh and flow.sh (each from its marker line on), in that order, into one
# self-contained script. The notes on the choices are at the top of download.sh.
#
# Lint-only stand-in for what flow.sh sets (shellcheck reads this file on its own):
attempt=0
# ---- body: render.py copies every line below into each script ----
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

# The fetch command for one attempt, without its URL (`stream_part.py` adds the URL of each checked
# hop, and the token through a pipe when that hop may have it): FETCH_ARGS. The body goes to stdout,
# the headers to $WORK/headers (wget: its stderr, which the streamer points there).
fetch_command() {
  local offset=$1
  if [ "$FETCHER" = curl ]; then
    # Run by hand on a terminal: curl's progress bar. comfyfixer sends stderr to a log, so not there.
    local meter=--silent
    if [ -t 2 ]; then meter=--progress-bar; fi
    FETCH_ARGS=(curl --fail "$meter" --show-error --proto '=http,https' --connect-timeout 30
      --speed-limit 1024 --speed-time 60 --user-agent "$USER_AGENT"
      --header 'Accept-Encoding: identity' --dump-header "$WORK/headers" --output -)
    if [ "$offset" -gt 0 ]; then FETCH_ARGS+=(--continue-at "$offset"); fi
  else
    FETCH_ARGS=(wget --no-verbose --server-response --tries=1 --max-redirect=0 --timeout=60
      --user-agent="$USER_AGENT" --header=Accept-Encoding:identity --output-document=-)
    if [ "$offset" -gt 0 ]; then FETCH_ARGS+=("--start-pos=$offset"); fi
  fi
}

# What the streamer printed: why it refused a hop (NEXT_REFUSED; the hops it fetched are `hop URL`),
# the last fetch's exit code (STREAM_FETCH_RC); STREAM_SHA; PART_FORMAT ("NAME CODE") and PART_WHY
# once the part is complete, and for a pickle PART_PICKLE (the gate's code) and PART_PICKLE_WHY.
read_stream() {
  local key value
  STREAM_SHA="" PART_FORMAT="" PART_WHY="" PART_PICKLE="" PART_PICKLE_WHY="" NEXT_REFUSED=""
  STREAM_FETCH_RC=125
  while read -r key value || [ -n "$key" ]; do
    case $key in
      refused) NEXT_REFUSED=$value ;;
      fetch_rc) STREAM_FETCH_RC=$value ;;
      sha256) STREAM_SHA=$value ;;
      format) PART_FORMAT=$value ;;
      why) PART_WHY=$value ;;
      pickle) PART_PICKLE=$value ;;
      pickle_why) PART_PICKLE_WHY=$value ;;
    esac
  done <"$WORK/stream"
}

# `carried/stream_part.py` with its arguments, installed after `carried/gates.py` (the checks it
# runs in-process) by `carried/loader.py`; the token (if any) on its stdin, through a pipe.
stream_part_py() {
  "$PYTHON" -S -c "$LOADER_PY" "gates stream_part" "$GATES_PY" "$STREAM_PART_PY" -- "$PART" "$WORK/headers" "$EXPECTED_SIZE" "$BASE_NAME" \
    "$FORMATS_PY" "$PICKLES_PY" "$PICKLE_EXT" "$HOSTS_PY" "$MAX_HOPS" "$ALLOWED_HOSTS" "$HTTP_HOSTS" \
    "$REDIRECT_SUFFIXES" "$GRANTED_URL" "$URL" -- "${FETCH_ARGS[@]}"
}

# One attempt: one run of `stream_part.py`, which follows the URL's redirects one checked hop at a
# time (each checked with `checks/hosts.py` before its fetch starts; the token only to the URL's
# origin), appends the 2xx body to the part while the whole part streams through one sha256 pass,
# and checks the finished part (read_stream): one Python start per attempt. Leaves the last response
# in $WORK/headers and "fetch_rc stream_rc" in $WORK/status.
transfer() {
  local stream_rc
  need_work
  fetch_command "$1"
  while :; do
    stream_rc=0
    if [ -n "$TOKEN" ]; then
      stream_part_py < <(printf '%s\n' "$TOKEN") >"$WORK/stream" || stream_rc=$?
    else
      stream_part_py </dev/null >"$WORK/stream" || stream_rc=$?
    fi
    # The interpreter could not start (nothing was requested): python3, then the attempt again.
    python_failed "$stream_rc" || break
  done
  read_stream
  if [ -n "$NEXT_REFUSED" ]; then fail 21 "$NEXT_REFUSED"; fi # nothing came from that host
  printf '%s %s\n' "$STREAM_FETCH_RC" "$stream_rc" >"$WORK/status"
  read_headers
  case $HTTP_STATUS in 301 | 302 | 303 | 307 | 308) ;; *) return 0 ;; esac
  if [ -z "$LOCATION" ]; then fail 10 "the server redirected (HTTP $HTTP_STATUS) without saying where"; fi
  fail 10 "more than $MAX_HOPS redirects for $URL"
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
