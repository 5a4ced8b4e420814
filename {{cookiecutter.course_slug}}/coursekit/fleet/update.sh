#!/bin/bash
# coursekit seat updater, run every 20 s by a systemd timer on each VM. `coursekit deploy` puts the
# course's new image in the server's metadata (coursekit-image); when it differs from what the seat
# runs, this re-runs the bootstrap with it: same container name, same home volume, so the student
# keeps their work and nbgitpuller merges the course's new notebooks at start.
# Usage: coursekit-update SEAT_ENV_FILE
set -euo pipefail
ENV_FILE=$1
BOOTSTRAP=${BOOTSTRAP:-/usr/local/sbin/coursekit-bootstrap}
METADATA_URL=${METADATA_URL:-http://169.254.169.254/openstack/latest/meta_data.json}
log() { echo "coursekit-update: $*" >&2; }
# shellcheck disable=SC1090
source "$ENV_FILE"

# Nova's metadata is JSON; an image reference holds no quotes, so a pattern reads it safely.
want=$(curl -fsS --max-time 10 "$METADATA_URL" | grep -o '"coursekit-image": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/') || exit 0
running=$(docker inspect -f '{{if .State.Running}}{{.Config.Image}}{{end}}' "coursekit-$SEAT" 2> /dev/null || true)
[ -z "$want" ] || [ "$want" = "$running" ] && exit 0
[[ "$want" =~ ^[A-Za-z0-9][A-Za-z0-9._/:@-]*$ ]] || { log "ERROR: metadata coursekit-image is not an image reference"; exit 1; }

log "updating seat $SEAT from ${running:-nothing} to $want"
next=$(mktemp "$ENV_FILE.XXXXXX")
trap 'rm -f "$next"' EXIT
grep -v '^IMAGE=' "$ENV_FILE" > "$next"
echo "IMAGE=$want" >> "$next"
"$BOOTSTRAP" "$next"
mv "$next" "$ENV_FILE"  # only once the new image serves: a failed update is tried again next time
log "seat $SEAT runs $want"
