# shellcheck shell=bash
# Variables are shared across the parts: set in one, read in another (SC2034 here; the joined
# script is checked whole, where an unused variable still shows).
# shellcheck disable=SC2034
# The single stream: one curl (or wget) request per hop, each redirect checked before it is
# followed, the body appended and hashed by `carried/stream_part.py`; retries and their waits.
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

# One request, no redirect followed: the body of HOP_URL from byte `offset` on, to stdout, the
# headers to $WORK/headers. The token goes only where the hop's check said it may (HOP_TOKEN=1).
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

# The left side of a hop's pipeline: waits for the streamer's verdict on the hop (one line through
# the FIFO on stdin: "go TOKEN URL", TOKEN 1 when the token may go there), and only then fetches that
# URL. Anything else (a refusal, a streamer that never started) means nothing is requested: 125.
gated_fetch() {
  local verdict="" token="" url=""
  IFS=' ' read -r verdict token url || :
  [ "$verdict" = go ] && [ -n "$url" ] || return 125
  HOP_URL=$url HOP_TOKEN=$token fetch "$1" </dev/null
}

# What the streamer printed: the hop it checked (NEXT_URL) or why it refused it (NEXT_REFUSED);
# STREAM_SHA; PART_FORMAT ("NAME CODE") and PART_WHY once the part is complete, and for a pickle
# PART_PICKLE (the gate's code) and PART_PICKLE_WHY.
read_stream() {
  local key value
  STREAM_SHA="" PART_FORMAT="" PART_WHY="" PART_PICKLE="" PART_PICKLE_WHY="" NEXT_URL="" NEXT_REFUSED=""
  while read -r key value || [ -n "$key" ]; do
    case $key in
      hop) NEXT_URL=$value ;;
      refused) NEXT_REFUSED=$value ;;
      sha256) STREAM_SHA=$value ;;
      format) PART_FORMAT=$value ;;
      why) PART_WHY=$value ;;
      pickle) PART_PICKLE=$value ;;
      pickle_why) PART_PICKLE_WHY=$value ;;
    esac
  done <"$WORK/stream"
}

# One attempt: request the URL and follow its redirects one hop at a time, one pipeline per hop.
# Its streamer (`stream_part.py`) first checks the hop with `checks/hosts.py` (the URL itself, then
# each Location exactly as read here) and only then lets the fetch start (gated_fetch, through the
# FIFO $WORK/gate): so each hop costs one Python start, not two. The 2xx body is appended to the
# part while the whole part streams through one sha256 pass, and the finished part's format is
# checked (read_stream). Leaves the last response in $WORK/headers and "fetch_rc stream_rc" in
# $WORK/status.
transfer() {
  local offset=$1 hops=0 location="" fetch_rc stream_rc
  HOP_URL=$URL
  need_work
  if [ ! -p "$WORK/gate" ]; then
    mkfifo -- "$WORK/gate" || fail 15 "cannot create a named pipe in $WORK (TMPDIR must allow them)"
  fi
  while :; do
    # Emptied, not removed: builtins, and a fetch that fails early must not leave old headers.
    : >"$WORK/headers"
    : >"$WORK/status"
    set +e
    # The FIFO is read by the fetch and written by the streamer: that is the gate (SC2094 is meant).
    # shellcheck disable=SC2094
    gated_fetch "$offset" <"$WORK/gate" |
      "$PYTHON" -S -c "$STREAM_PART_PY" "$PART" "$WORK/headers" "$EXPECTED_SIZE" "$BASE_NAME" \
        "$FORMATS_PY" "$PICKLES_PY" "$PICKLE_EXT" "$HOSTS_PY" "$ALLOWED_HOSTS" "$HTTP_HOSTS" "$REDIRECT_SUFFIXES" "$GRANTED_URL" \
        "$URL" "$HOP_URL" ${location:+"$location"} 3>"$WORK/gate" >"$WORK/stream"
    fetch_rc=${PIPESTATUS[0]} stream_rc=${PIPESTATUS[1]}
    set -e
    # The interpreter could not start (nothing was requested): python3, then the same hop again.
    if python_failed "$stream_rc"; then continue; fi
    printf '%s %s\n' "$fetch_rc" "$stream_rc" >"$WORK/status"
    read_stream
    if [ -n "$NEXT_REFUSED" ]; then fail 21 "$NEXT_REFUSED"; fi
    if [ -n "$NEXT_URL" ]; then HOP_URL=$NEXT_URL; fi
    read_headers
    case $HTTP_STATUS in 301 | 302 | 303 | 307 | 308) ;; *) return 0 ;; esac
    hops=$((hops + 1))
    if [ "$hops" -gt "$MAX_HOPS" ]; then fail 10 "more than $MAX_HOPS redirects for $URL"; fi
    if [ -z "$LOCATION" ]; then fail 10 "the server redirected (HTTP $HTTP_STATUS) without saying where"; fi
    location=$LOCATION
  done
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
