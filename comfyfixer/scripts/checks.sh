# shellcheck shell=bash
# Variables are shared across the parts: set in one, read in another (SC2034 here; the joined
# script is checked whole, where an unused variable still shows).
# shellcheck disable=SC2034
# What decides whether bytes may be installed: hashing, the carried checks (format, pickle
# gate) and their outcomes, the sidecar, a file already in place.
# Part of the body of every comfyfixer download script: render.py joins download.sh, checks.sh,
# stream.sh, segmented.sh and flow.sh (each from its marker line on), in that order, into one
# self-contained script. The notes on the choices are at the top of download.sh.
#
# ---- body: render.py copies every line below into each script ----
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
  if is_uint "$PART_PICKLE"; then
    rc=$PART_PICKLE WHY=$PART_PICKLE_WHY # the streamer or segments.py ran this very gate on the part
  else
    run_check "$PICKLES_PY" "$1" || rc=$?
  fi
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
