"""The gateway VM's control service: coursekit's deploy puts the class's routes here; Caddy is reloaded.

Standard library only; it runs on the gateway VM as root (systemd unit coursekit-gateway), on the loopback
interface, behind Caddy's /coursekit/ path. A request must carry the course's gateway token (derived from
COURSEKIT_SECRET by coursekit, never a cloud credential). The routes it receives are written as the
Caddyfile (rendered by gateway.py, shipped next to it) and Caddy reloads them without dropping connections.

    python3 gatewayroutes.py SETTINGS_FILE      # KEY=VALUE lines: SITE, TOKEN, PORT, TLS_CERT, TLS_KEY, CADDY_CONFIG, STATE
"""
from __future__ import annotations

import hmac
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _sibling(name: str):
    """A module shipped next to this file (on the VM there is no coursekit package), loaded without sys.path."""
    spec = importlib.util.spec_from_file_location(f"coursekit_gateway_{name}", Path(__file__).resolve().with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while they are made
    spec.loader.exec_module(module)
    return module


render = _sibling("gateway")
Route, caddyfile = render.Route, render.caddyfile

ROUTES_PATH = "/coursekit/routes"
SEAT = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,28}[a-z0-9])?")
UPSTREAM = re.compile(r"[0-9.]+:[0-9]{1,5}|\[[0-9a-fA-F:]+\]:[0-9]{1,5}")
IMAGE = re.compile(r"[a-z0-9]+(?:[._/-][a-z0-9]+)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MANIFESTS = ("application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, "
             "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json")
MAX_BODY = 4 << 20


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": MANIFESTS}), timeout=120) as answer:
        return json.loads(answer.read())


def read_settings(path: str) -> dict[str, str]:
    """KEY=VALUE lines as the bootstrap writes them (values shell-quoted)."""
    settings = {}
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition("=")
        if key and not key.startswith("#"):
            settings[key.strip()] = " ".join(shlex.split(value))
    return settings


def parse_routes(body: bytes) -> list[Route]:
    """The routes in a PUT body; ValueError for anything that is not a list of well-formed routes."""
    data = json.loads(body)
    routes = []
    for item in data.get("routes", []) if isinstance(data, dict) else None:
        seat, upstream, until = item.get("seat", ""), item.get("upstream", ""), item.get("paused_until", "")
        if not SEAT.fullmatch(seat) or (upstream and not UPSTREAM.fullmatch(upstream)) or "`" in until or len(until) > 100:
            raise ValueError(f"bad route: {item!r}"[:200])
        routes.append(Route(seat, upstream, until))
    return routes


class Gateway:
    """The current routes and the Caddyfile they make."""

    def __init__(self, settings: dict[str, str]):
        self.settings = settings
        self.lock = threading.Lock()
        self.routes: list[Route] = []
        self.cached: set[str] = set()  # images pulled through the image cache
        self.warming: set[str] = set()

    def render(self, routes: list[Route]) -> str:
        s = self.settings
        tls = (s["TLS_CERT"], s["TLS_KEY"]) if s.get("TLS_CERT") else None
        return caddyfile(s["SITE"], int(s.get("HTTPS_PORT", 443)), int(s.get("HTTP_PORT", 80)), routes, tls=tls,
                         control=f"127.0.0.1:{s.get('PORT', 8081)}", admin=s.get("ADMIN", "localhost:2019"),
                         title=s.get("TITLE", ""), subdomains=s.get("SUBDOMAINS") == "1")

    def apply(self, routes: list[Route]) -> None:
        """Write the Caddyfile for routes, reload Caddy (start it if it is not running) and keep the routes
        for the next boot; RuntimeError when Caddy refuses them."""
        config = Path(self.settings.get("CADDY_CONFIG", "/etc/caddy/Caddyfile"))
        state = Path(self.settings.get("STATE", "/var/lib/coursekit/routes.json"))
        with self.lock:
            before = config.read_text() if config.is_file() else None
            _write(config, self.render(routes))
            done = _caddy("reload", config)
            if done.returncode and "connection refused" in done.stderr.lower():
                done = _caddy("start", config)
            if done.returncode:
                if before is not None:  # never leave a refused file for the next Caddy restart to serve
                    _write(config, before)
                raise RuntimeError((done.stderr or f"caddy {done.args[1]} failed").strip()[-300:])
            _write(state, json.dumps({"routes": [vars(r) for r in routes]}))
            self.routes = routes

    def warm(self, image: str) -> None:
        """Pull image (a path:tag in the cached registry) through the image cache once, in the background, so
        seats that boot together find it cached: the cache fetches from upstream only what it lacks, and
        requests that arrive at the same moment would each go upstream."""
        port = self.settings.get("MIRROR_PORT")
        if not port or not IMAGE.fullmatch(image or "") or image in self.cached or image in self.warming:
            return
        self.warming.add(image)
        threading.Thread(target=self._pull, args=(f"http://127.0.0.1:{port}", image), daemon=True).start()

    def _pull(self, base: str, image: str) -> None:
        name, _, tag = image.rpartition(":")
        try:
            manifest = _get_json(f"{base}/v2/{name}/manifests/{tag}")
            if "manifests" in manifest:  # an index: the platform the seats run
                chosen = next(m for m in manifest["manifests"] if m.get("platform", {}).get("architecture") == "amd64")
                manifest = _get_json(f"{base}/v2/{name}/manifests/{chosen['digest']}")
            for blob in [manifest["config"], *manifest["layers"]]:
                with urllib.request.urlopen(f"{base}/v2/{name}/blobs/{blob['digest']}", timeout=600) as answer:
                    while answer.read(1 << 20):
                        pass
            self.cached.add(image)
        except (OSError, ValueError, KeyError, StopIteration):
            pass  # the seats pull it themselves, through the cache, as they would have
        finally:
            self.warming.discard(image)

    def saved(self) -> list[Route]:
        """The routes kept by the last apply (none on a fresh gateway)."""
        state = Path(self.settings.get("STATE", "/var/lib/coursekit/routes.json"))
        try:
            return parse_routes(state.read_bytes())
        except (OSError, ValueError, TypeError, AttributeError):
            return []


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".next")
    partial.write_text(text)
    os.replace(partial, path)


def _caddy(verb: str, config: Path) -> subprocess.CompletedProcess:
    command = ["caddy", verb, "--config", str(config), "--adapter", "caddyfile"]
    if verb == "start":  # it leaves Caddy running in the background, holding any pipe it was given open
        with open(os.devnull, "w") as quiet:
            return subprocess.run(command, stdin=subprocess.DEVNULL, stdout=quiet, stderr=quiet, text=True, timeout=60)
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def handler(gateway: Gateway, token: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 60  # seconds a connection may sit idle between reads: a slow client holds one thread, not forever

        def _authorized(self) -> bool:
            given = self.headers.get("Authorization", "").removeprefix("token ")
            return bool(token) and hmac.compare_digest(given.encode(), token.encode())

        def _reply(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path != ROUTES_PATH or not self._authorized():
                return self._reply(403 if self.path == ROUTES_PATH else 404, {"message": "no"})
            self._reply(200, {"routes": [vars(r) for r in gateway.routes], "cached": sorted(gateway.cached)})

        def do_PUT(self):
            if self.path != ROUTES_PATH or not self._authorized():
                return self._reply(403 if self.path == ROUTES_PATH else 404, {"message": "no"})
            given = self.headers.get("Content-Length", "")
            if not given.isdigit():  # "-1" would read until the client closes, "abc" is no length at all
                return self._reply(411, {"message": "a Content-Length of digits is needed"})
            length = int(given)
            if length > MAX_BODY:
                return self._reply(413, {"message": "too many routes"})
            try:
                body = self.rfile.read(length)
                routes = parse_routes(body)
                gateway.apply(routes)
                gateway.warm(json.loads(body).get("image", ""))
            except (ValueError, TypeError, AttributeError, RecursionError) as exc:
                return self._reply(400, {"message": str(exc)[:300]})
            except OSError as exc:  # the client went away mid-body
                return self._reply(400, {"message": f"the body did not arrive: {exc}"[:300]})
            except RuntimeError as exc:
                return self._reply(500, {"message": f"caddy refused the routes: {exc}"})
            self._reply(200, {"routes": len(routes)})

        def log_message(self, *args):
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that goes away before its answer is sent is one line, not a traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            sys.stderr.write(f"coursekit-gateway: {client_address[0]} went away before its answer was sent\n")
            return
        super().handle_error(request, client_address)


def main(argv: list[str]) -> None:
    settings = read_settings(argv[1])
    gateway = Gateway(settings)
    gateway.apply(gateway.saved())  # after a reboot the last routes; a fresh gateway serves no seat until deploy tells it
    server = _Server(("127.0.0.1", int(settings.get("PORT", 8081))), handler(gateway, settings["TOKEN"]))
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv)
