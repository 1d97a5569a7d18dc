# shellcheck shell=bash
# Variables are shared across the parts: set in one, read in another (SC2034 here; the joined
# script is checked whole, where an unused variable still shows).
# shellcheck disable=SC2034
# What every script does, in order: settings and tools, the lock, a file already there, the
# transfer (segmented or the single stream, with retries), the checks, the installation.
# Part of the body of every comfyfixer download script: render.py joins download.sh, checks.sh,
# stream.sh, segmented.sh and flow.sh (each from its marker line on), in that order, into one
# self-contained script. The notes on the choices are at the top of download.sh.
#
# ---- body: render.py copies every line below into each script ----
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
  # A check of the finished part counts only from the attempt that finished it.
  PART_FORMAT="" PART_WHY="" PART_PICKLE="" PART_PICKLE_WHY=""
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
