#!/bin/sh
# spotload-expiry: powers this instance off once the time in its
# `spotload:expires-at` tag has come. Instances launch with shutdown
# behaviour `terminate`, so powering off ends them for good.
#
# spotload installs it as /opt/spotload/expiry/spotload-expiry, from user
# data at first boot and again on every `spotload deploy`. Where systemd
# runs, spotload-expiry.timer runs `spotload-expiry check` at boot and
# every minute; elsewhere `spotload-expiry watch` loops (until a reboot).
# Because every run reads the tag afresh, `spotload extend` only moves the
# tag, and a reboot re-arms from it.
#
# One `check`:
#   1. reads the tag from instance metadata (IMDSv2: a token, then
#      /latest/meta-data/tags/instance/spotload:expires-at; the instance
#      must allow tags in its metadata, which spotload's launch requests);
#   2. when that fails, takes SPOTLOAD_EXPIRES_AT (the expiry launch or
#      deploy knew), else the expiry the last run saved;
#   3. saves it in DIR/expires-at, where it came from in DIR/source;
#   4. powers off when now >= expiry, else says when it will.
# Times are RFC 3339 UTC to the second, as spotload writes them:
# 2025-06-01T14:30:00Z (compared as digits: no GNU date needed).
#
# Settings: the environment, else DIR/config (shell `name=value` lines
# written by spotload: imds_endpoint, poweroff_cmd, watch_seconds):
#   SPOTLOAD_EXPIRY_DIR     state directory DIR [/opt/spotload/expiry]
#   SPOTLOAD_IMDS_ENDPOINT  instance metadata [http://169.254.169.254];
#                           `off` never asks it
#   SPOTLOAD_EXPIRES_AT     the expiry to use when the tag cannot be read
#   SPOTLOAD_POWEROFF_CMD   run instead of powering off (it sees the expiry
#                           in SPOTLOAD_EXPIRY) [systemctl poweroff, else
#                           poweroff]
#   SPOTLOAD_WATCH_SECONDS  the `watch` loop's interval [60]
# Exit status of `check`: 0 armed, or powering off; 2 no expiry known;
# 3 powering off failed; 64 bad usage.

set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

TAG_KEY=spotload:expires-at
dir=${SPOTLOAD_EXPIRY_DIR:-/opt/spotload/expiry}
imds_endpoint=http://169.254.169.254
poweroff_cmd=
watch_seconds=60
if [ -r "$dir/config" ]; then
    . "$dir/config"
fi
imds_endpoint=${SPOTLOAD_IMDS_ENDPOINT:-$imds_endpoint}
poweroff_cmd=${SPOTLOAD_POWEROFF_CMD:-$poweroff_cmd}
watch_seconds=${SPOTLOAD_WATCH_SECONDS:-$watch_seconds}
case "$watch_seconds" in '' | *[!0-9]* | 0) watch_seconds=60 ;; esac

say() {
    echo "spotload-expiry: $*"
}

# Problems go to stderr and, where there is one, the system log.
warn() {
    echo "spotload-expiry: $*" >&2
    if command -v logger >/dev/null 2>&1; then
        logger -t spotload-expiry -- "$*" 2>/dev/null || true
    fi
}

# A time spotload writes: YYYY-MM-DDTHH:MM:SSZ, nothing else.
valid() {
    case "$1" in
    [0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]Z) return 0 ;;
    *) return 1 ;;
    esac
}

# 2025-06-01T14:30:00Z -> 20250601143000, which orders as the time does.
digits() {
    echo "$1" | tr -d 'TZ:-'
}

# request METHOD URL HEADER: the body in "$body_file", the HTTP status on
# stdout; fails when no answer came.
request() {
    if command -v curl >/dev/null 2>&1; then
        curl -sS --connect-timeout 2 --max-time 5 -o "$body_file" -w '%{http_code}' \
            -X "$1" -H "$3" "$2"
    elif command -v wget >/dev/null 2>&1; then
        # wget tells no status apart: an answer it dislikes is "no answer".
        wget -q -T 5 -t 1 -O "$body_file" --method="$1" --header="$3" "$2" && echo 200
    else
        echo "neither curl nor wget is installed" >&2
        return 1
    fi
}

# Sets tag_value from instance metadata, or `reason` when it cannot.
read_tag() {
    tag_value=
    if [ "$imds_endpoint" = off ]; then
        reason="instance metadata is off (imds_endpoint=off)"
        return 1
    fi
    body_file="$dir/.imds.$$"
    if ! code=$(request PUT "$imds_endpoint/latest/api/token" \
        "X-aws-ec2-metadata-token-ttl-seconds: 60" 2>/dev/null); then
        rm -f "$body_file"
        reason="instance metadata at $imds_endpoint did not answer"
        return 1
    fi
    if [ "$code" != 200 ]; then
        rm -f "$body_file"
        reason="instance metadata refused a session token (HTTP $code)"
        return 1
    fi
    token=$(cat "$body_file")
    code=$(request GET "$imds_endpoint/latest/meta-data/tags/instance/$TAG_KEY" \
        "X-aws-ec2-metadata-token: $token" 2>/dev/null) || code=none
    value=$(cat "$body_file" 2>/dev/null || true)
    rm -f "$body_file"
    case "$code" in
    200) ;;
    404)
        reason="the instance metadata shows no tag $TAG_KEY (the tag is missing, or the instance's metadata options do not allow tags: InstanceMetadataTags=enabled)"
        return 1
        ;;
    none)
        reason="instance metadata at $imds_endpoint did not answer for the tag"
        return 1
        ;;
    *)
        reason="instance metadata answered HTTP $code for the tag"
        return 1
        ;;
    esac
    if ! valid "$value"; then
        reason="the tag $TAG_KEY holds \"$value\", not a UTC time like 2025-06-01T14:30:00Z"
        return 1
    fi
    tag_value=$value
}

# Writes $1 to file $2 whole (a reader never sees half of it).
save() {
    printf '%s\n' "$1" >"$2.new" && mv -f "$2.new" "$2"
}

power_off() {
    SPOTLOAD_EXPIRY=$expiry
    export SPOTLOAD_EXPIRY
    save "$now" "$dir/powered-off-at"
    if [ -n "$poweroff_cmd" ]; then
        sh -c "$poweroff_cmd"
    elif [ -d /run/systemd/system ]; then
        systemctl poweroff
    else
        poweroff || shutdown -h now
    fi
}

check() {
    if ! mkdir -p "$dir"; then
        warn "cannot create $dir"
        return 2
    fi
    reason=
    saved=$(cat "$dir/expires-at" 2>/dev/null || true)
    if read_tag; then
        expiry=$tag_value
        source="instance's tag"
    elif [ -n "${SPOTLOAD_EXPIRES_AT:-}" ] && valid "$SPOTLOAD_EXPIRES_AT"; then
        expiry=$SPOTLOAD_EXPIRES_AT
        source="given expiry; the tag is unreadable: $reason"
    elif valid "$saved"; then
        expiry=$saved
        source="saved expiry; the tag is unreadable: $reason"
    else
        warn "NOT ARMED: no expiry known: $reason; set one with \`spotload extend --ttl DURATION\`"
        return 2
    fi
    if ! save "$expiry" "$dir/expires-at" || ! save "$source" "$dir/source"; then
        warn "cannot save the expiry in $dir; checking it anyway"
    fi
    now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    if [ "$(digits "$now")" -ge "$(digits "$expiry")" ]; then
        warn "expired at $expiry (now $now; from the $source): powering off"
        if ! power_off; then
            warn "powering off failed"
            return 3
        fi
        return 0
    fi
    say "armed: powers off at $expiry (from the $source)"
}

case "${1:-check}" in
check)
    check
    ;;
watch)
    while :; do
        check || true
        sleep "$watch_seconds"
    done
    ;;
*)
    echo "usage: spotload-expiry [check|watch]" >&2
    exit 64
    ;;
esac
