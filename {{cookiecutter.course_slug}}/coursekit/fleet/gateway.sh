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

MIRROR_PORT=${MIRROR_PORT:-5000}
MIRROR_CONFIG=${MIRROR_CONFIG:-/etc/docker/registry/config.yml}
MIRROR_STORAGE=${MIRROR_STORAGE:-/var/lib/docker-registry}

missing=()
command -v caddy > /dev/null || missing+=(caddy)
[ -z "${REGISTRY_UPSTREAM:-}" ] || command -v docker-registry > /dev/null || missing+=(docker-registry)
command -v python3 > /dev/null || missing+=(python3)
command -v curl > /dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

# The course image's registry, cached: seats pull through here over the private network, so the upstream
# sees one pull per image (and layer) whatever the class size; its credentials, if any, stay on this VM.
if [ -n "${REGISTRY_UPSTREAM:-}" ]; then
    mkdir -p "$(dirname "$MIRROR_CONFIG")" "$MIRROR_STORAGE"
    # JSON is YAML: python3 quotes the credentials, whatever they hold.
    (umask 077 && MIRROR_PORT=$MIRROR_PORT MIRROR_STORAGE=$MIRROR_STORAGE REGISTRY_UPSTREAM=$REGISTRY_UPSTREAM \
        REGISTRY_USERNAME=${REGISTRY_USERNAME:-} REGISTRY_PASSWORD=${REGISTRY_PASSWORD:-} python3 -c '
import json, os
proxy = {"remoteurl": os.environ["REGISTRY_UPSTREAM"]}
if os.environ["REGISTRY_USERNAME"]:
    proxy.update(username=os.environ["REGISTRY_USERNAME"], password=os.environ["REGISTRY_PASSWORD"])
print(json.dumps({"version": 0.1, "log": {"level": "info"}, "proxy": proxy, "http": {"addr": ":" + os.environ["MIRROR_PORT"]},
                  "storage": {"filesystem": {"rootdirectory": os.environ["MIRROR_STORAGE"]}, "delete": {"enabled": True}}}))
' > "$MIRROR_CONFIG")
    getent passwd docker-registry > /dev/null && chown -R docker-registry "$MIRROR_STORAGE" "$MIRROR_CONFIG"
    if systemctl is-system-running > /dev/null 2>&1; then
        systemctl restart docker-registry
    else
        nohup docker-registry serve "$MIRROR_CONFIG" > /var/log/coursekit-mirror.log 2>&1 &
    fi
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
if [ -n "${REGISTRY_UPSTREAM:-}" ]; then
    for _ in $(seq 60); do
        curl -s -o /dev/null "http://127.0.0.1:$MIRROR_PORT/v2/" && break
        sleep 1
    done
    curl -s -o /dev/null "http://127.0.0.1:$MIRROR_PORT/v2/" || { log "ERROR: the image cache did not start"; exit 1; }
fi
log "ready: https://$SITE/ (no seat is routed until coursekit deploy puts the routes)"
