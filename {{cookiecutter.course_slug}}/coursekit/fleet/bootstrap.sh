#!/bin/bash
# coursekit seat bootstrap, run by cloud-init on each VM (and by the tests in a container):
# install Docker and Caddy, pull the course image, start Jupyter with the seat's credential
# (its start hook fetches and verifies the course data), and serve it on HTTPS. Run again with a
# new IMAGE (coursekit-update does), it swaps the container and keeps the home volume.
# Usage: coursekit-bootstrap SEAT_ENV_FILE
set -euo pipefail
set -a  # export the settings: docker run passes JUPYTER_TOKEN from the environment, not the command line
# shellcheck disable=SC1090
source "$1"
set +a
: "${SEAT:?}" "${IMAGE:?}" "${JUPYTER_TOKEN:?}" "${SITE:?}"
HTTPS_PORT=${HTTPS_PORT:-443}
HTTP_PORT=${HTTP_PORT:-80}
JUPYTER_PORT=${JUPYTER_PORT:-8888}
HOMESTREAM_PORT=${HOMESTREAM_PORT:-8890}
HOMESTREAM=${HOMESTREAM:-/usr/local/sbin/coursekit-homestream}
READY_TIMEOUT=${READY_TIMEOUT:-900}
BASE_URL=${BASE_URL:-/}  # behind the course's gateway: /<seat>/, the path students' links carry
GATEWAY_PORT=${GATEWAY_PORT:-}  # set: serve plain HTTP on this port for the gateway, instead of HTTPS
CADDY_CONFIG=${CADDY_CONFIG:-/etc/caddy/Caddyfile}
STATE_DIR=${STATE_DIR:-/var/lib/coursekit}
log() { echo "coursekit-bootstrap: $*" >&2; }
# The token goes into Caddy's config; coursekit's tokens are URL-safe base64.
[[ "$JUPYTER_TOKEN" =~ ^[A-Za-z0-9_-]+$ ]] || { log "ERROR: JUPYTER_TOKEN may only hold letters, digits, - and _"; exit 1; }

missing=()
command -v docker > /dev/null || missing+=(docker.io)
command -v caddy > /dev/null || missing+=(caddy)
command -v curl > /dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
if ! docker info > /dev/null 2>&1; then
    systemctl enable --now docker 2> /dev/null || (nohup dockerd > /var/log/dockerd.log 2>&1 &)
    for _ in $(seq 60); do docker info > /dev/null 2>&1 && break; sleep 1; done
fi

# Behind the gateway the image comes through its cache (MIRROR, host:port on the private network): the same
# path without the registry's host (Docker Hub's official images under library/), tagged back as IMAGE.
source_image=$IMAGE
if [ -n "${MIRROR:-}" ]; then
    path=$IMAGE
    first=${IMAGE%%/*}
    host=docker.io
    if [[ "$IMAGE" == */* ]] && { [[ "$first" == *.* ]] || [[ "$first" == *:* ]] || [ "$first" = localhost ]; }; then
        path=${IMAGE#*/}
        host=$first
    fi
    if [[ "${path%%:*}" != */* ]] && { [ "$host" = docker.io ] || [ "$host" = index.docker.io ]; }; then
        path="library/$path"
    fi
    source_image="$MIRROR/$path"
    if systemctl is-system-running > /dev/null 2>&1 && ! grep -qs "\"$MIRROR\"" /etc/docker/daemon.json; then
        printf '{"insecure-registries": ["%s"]}\n' "$MIRROR" > /etc/docker/daemon.json  # plain HTTP on the private network
        systemctl restart docker
        for _ in $(seq 60); do docker info > /dev/null 2>&1 && break; sleep 1; done
    fi
fi
log "pulling $IMAGE${MIRROR:+ through the image cache on the gateway}"
for attempt in 1 2 3 4 5; do docker pull -q "$source_image" > /dev/null && break; log "pull failed ($attempt/5)"; sleep $((attempt * 5)); done
if [ "$source_image" != "$IMAGE" ]; then
    if docker image inspect "$source_image" > /dev/null 2>&1; then
        docker tag "$source_image" "$IMAGE"
    else
        log "the gateway's cache did not serve it; pulling $IMAGE directly"
        docker pull -q "$IMAGE" > /dev/null
    fi
fi
docker image inspect "$IMAGE" > /dev/null

# Only Caddy is reachable from outside; Jupyter listens on the loopback interface.
docker volume create "coursekit-$SEAT-home" > /dev/null
docker rm -f "coursekit-$SEAT" > /dev/null 2>&1 || true
[[ "$BASE_URL" =~ ^/([a-z0-9-]+/)?$ ]] || { log "ERROR: BASE_URL must be / or /<seat>/"; exit 1; }
# The image's own command starts Jupyter (docker-stacks: start-notebook.py); behind the gateway the base URL goes
# in NOTEBOOK_ARGS, after the image's own, as docker-stacks documents.
base_url_args=()
if [ "$BASE_URL" != / ]; then
    image_args=$(docker image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE" | sed -n 's/^NOTEBOOK_ARGS=//p')
    base_url_args=(-e "NOTEBOOK_ARGS=${image_args:+$image_args }--ServerApp.base_url=$BASE_URL")
fi
docker run -d --name "coursekit-$SEAT" --restart unless-stopped \
    --label org.coursekit.seat="$SEAT" -e JUPYTER_TOKEN "${base_url_args[@]}" \
    -p "127.0.0.1:$JUPYTER_PORT:8888" -v "coursekit-$SEAT-home:/home/jovyan" "$IMAGE" > /dev/null

log "waiting for Jupyter (the course data is fetched and verified first)"
deadline=$((SECONDS + READY_TIMEOUT))
until curl -fs -o /dev/null -H "Authorization: token $JUPYTER_TOKEN" "http://127.0.0.1:$JUPYTER_PORT${BASE_URL}api/status"; do
    if [ "$(docker inspect -f '{{.State.Running}}' "coursekit-$SEAT")" != true ] || [ $SECONDS -gt $deadline ]; then
        docker logs --tail 20 "coursekit-$SEAT" >&2 || true
        log "ERROR: Jupyter did not start"
        exit 1
    fi
    sleep 2
done

# What the seat runs, for `coursekit deploy` to read (with the token) at /coursekit/seat.json.
www="$STATE_DIR/www${BASE_URL%/}/coursekit"
mkdir -p "$www"
image_id=$(docker inspect -f '{{.Image}}' "coursekit-$SEAT")
printf '{"seat": "%s", "image": "%s", "image_id": "%s"}\n' "$SEAT" "$IMAGE" "$image_id" > "$www/seat.json.new"
mv "$www/seat.json.new" "$www/seat.json"

# The home folder as one tar stream, for coursekit's archive (loopback only; Caddy asks for the token).
if systemctl is-system-running > /dev/null 2>&1; then
    systemctl enable --now coursekit-homestream > /dev/null 2>&1
elif ! curl -s -o /dev/null "http://127.0.0.1:$HOMESTREAM_PORT/"; then
    nohup python3 "$HOMESTREAM" "coursekit-$SEAT-home" "$HOMESTREAM_PORT" > /var/log/coursekit-homestream.log 2>&1 &
fi

# A DNS name gets a real certificate from Let's Encrypt; a bare address serves the seat's own key, which
# coursekit derives from its secret and pins (TLS_CERT, TLS_KEY), or else Caddy's internal CA. Behind the
# gateway the seat serves plain HTTP on GATEWAY_PORT, which its security group opens to the gateway only.
tls=""
if [ -n "${TLS_CERT:-}" ] && [[ "$SITE" =~ ^[0-9.]+$ ]]; then
    tls="tls $TLS_CERT $TLS_KEY"
elif [[ "$SITE" =~ ^[0-9.]+$ ]]; then
    tls="tls internal"
fi
if [ -n "$GATEWAY_PORT" ]; then
    global="auto_https off"
    site="http://:$GATEWAY_PORT"
    tls=""
    redirect=""
else
    global="http_port $HTTP_PORT
	https_port $HTTPS_PORT"
    site="https://$SITE:$HTTPS_PORT"
    redirect="http://$SITE:$HTTP_PORT {
	redir https://{host}:$HTTPS_PORT{uri} permanent
}"
fi
mkdir -p "$(dirname "$CADDY_CONFIG")"
umask 027  # the config holds the token: readable by root and Caddy's group only
cat > "$CADDY_CONFIG" <<CADDY
{
	$global
}
$site {
	$tls
	@seat {
		path ${BASE_URL}coursekit/seat.json
		header Authorization "token $JUPYTER_TOKEN"
	}
	handle @seat {
		root * $STATE_DIR/www
		file_server
	}
	@home {
		path ${BASE_URL}coursekit/home.tar
		header Authorization "token $JUPYTER_TOKEN"
	}
	handle @home {
		rewrite * /coursekit/home.tar
		reverse_proxy 127.0.0.1:$HOMESTREAM_PORT
	}
	handle {
		reverse_proxy 127.0.0.1:$JUPYTER_PORT
	}
}
$redirect
CADDY
chmod 0640 "$CADDY_CONFIG"
getent group caddy > /dev/null && chgrp caddy "$CADDY_CONFIG"
caddy validate --config "$CADDY_CONFIG" --adapter caddyfile > /dev/null 2>&1
if systemctl is-system-running > /dev/null 2>&1; then
    systemctl restart caddy
else
    caddy stop > /dev/null 2>&1 || true
    caddy start --config "$CADDY_CONFIG" --adapter caddyfile > /dev/null 2>&1
fi
log "ready: ${GATEWAY_PORT:+behind the gateway on port $GATEWAY_PORT, }${site}${BASE_URL}"
