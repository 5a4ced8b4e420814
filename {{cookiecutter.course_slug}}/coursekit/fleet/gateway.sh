#!/bin/bash
# coursekit gateway bootstrap, run by cloud-init on the course's gateway VM (and by the tests in a container):
# install Caddy, then start the control service, which writes Caddy's routes and keeps Caddy running.
# Seats register nothing themselves: coursekit's deploy puts the routes here, with the gateway's token.
# Usage: coursekit-gateway-bootstrap GATEWAY_ENV_FILE
set -euo pipefail
GATEWAY_ENV=$1
# shellcheck disable=SC1090
source "$GATEWAY_ENV"
: "${SITE:?}" "${TOKEN:?}"
ROUTES=${ROUTES:-/usr/local/lib/coursekit/gatewayroutes.py}
PORT=${PORT:-8081}
log() { echo "coursekit-gateway: $*" >&2; }

missing=()
command -v caddy > /dev/null || missing+=(caddy)
command -v python3 > /dev/null || missing+=(python3)
command -v curl > /dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

if [ -n "${TLS_KEY:-}" ] && getent group caddy > /dev/null; then
    chgrp caddy "$TLS_KEY" && chmod 0640 "$TLS_KEY"  # Caddy runs as its own user
fi
if systemctl is-system-running > /dev/null 2>&1; then
    systemctl enable --now caddy > /dev/null 2>&1
    systemctl enable --now coursekit-gateway > /dev/null 2>&1
else
    nohup python3 "$ROUTES" "$GATEWAY_ENV" > /var/log/coursekit-gateway.log 2>&1 &
fi
for _ in $(seq 60); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
    sleep 1
done
curl -s -o /dev/null "http://127.0.0.1:$PORT/" || { log "ERROR: the control service did not start"; exit 1; }
log "ready: https://$SITE/ (no seat is routed until coursekit deploy puts the routes)"
