# shellcheck shell=bash
# Variables are shared across the parts: set in one, read in another (SC2034 here; the joined
# script is checked whole, where an unused variable still shows).
# shellcheck disable=SC2034
# Large files over several connections: `carried/segments.py` (and its modules) and its answer.
# Part of the body of every comfyfixer download script: render.py joins download.sh, checks.sh,
# stream.sh, segmented.sh and flow.sh (each from its marker line on), in that order, into one
# self-contained script. The notes on the choices are at the top of download.sh.
#
# ---- body: render.py copies every line below into each script ----
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
      'pickle '*) PART_PICKLE=${line#* } ;;
      'pickle_why '*) PART_PICKLE_WHY=${line#* } ;;
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

# `carried/segments.py` with its arguments; $1: DURABLE (1: sync the part before each record). It
# and the modules it imports (one concept each) are installed from their texts by `carried/loader.py`,
# in this order (render.py's SEGMENT_MODULES).
segments_py() {
  "$PYTHON" -S -c "$LOADER_PY" "outcome gates rules pieces http_client prefix_hash transfer segments" \
    "$OUTCOME_PY" "$GATES_PY" "$RULES_PY" "$PIECES_PY" "$HTTP_CLIENT_PY" "$PREFIX_HASH_PY" "$TRANSFER_PY" \
    "$SEGMENTS_PY" -- "$PART" "$URL" "$EXPECTED_SIZE" "$SEGMENTS" \
    "$((SEGMENT_MIN_MIB * 1048576))" "$USER_AGENT" "$1" "$ALLOWED_HOSTS" "$HTTP_HOSTS" \
    "$REDIRECT_SUFFIXES" "$GRANTED_URL" "$HOSTS_PY" "$BASE_NAME" "$FORMATS_PY" "$PICKLES_PY" "$PICKLE_EXT"
}
