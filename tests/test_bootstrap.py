"""The Jetstream2 boot path: cloud-init user-data that validates, and the bootstrap run for real."""
from __future__ import annotations

import contextlib
import http.client
import io
import json
import shutil
import socket
import ssl
import subprocess
import tarfile
import time
import urllib.request

import docker.errors
import pytest
import yaml
from conftest import run_coursekit
from helpers import build, commit, copy_course
from services import free_port
from standin import ensure_rootfs

TOKEN = "bootstrap-test-token-0123456789abcdef"


@pytest.fixture
def cloudinit(coursekit):
    from coursekit.fleet import cloudinit

    return cloudinit


def _schema_checked(text: str, tmp_path) -> dict:
    """user-data that cloud-init's own schema check accepts, parsed."""
    path = tmp_path / "user-data"
    path.write_text(text)
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return yaml.safe_load(text)


def test_user_data_passes_cloud_init_schema(cloudinit, tmp_path):
    text = cloudinit.user_data("alice", "docker.io/me/course:abc123", TOKEN, "127.77.0.5", "course-alice")
    assert text.startswith("#cloud-config\n")
    config = _schema_checked(text, tmp_path)
    env = next(f for f in config["write_files"] if f["path"] == "/etc/coursekit/seat.env")
    assert env["permissions"] == "0600" and f"JUPYTER_TOKEN={TOKEN}" in env["content"]
    assert config["runcmd"] == [
        ["/usr/local/sbin/coursekit-bootstrap", "/etc/coursekit/seat.env"],
        ["systemctl", "enable", "--now", "coursekit-update.timer"],
    ]
    timer = next(f for f in config["write_files"] if f["path"] == "/etc/systemd/system/coursekit-update.timer")
    assert "OnUnitInactiveSec=20s" in timer["content"]


def test_gateway_user_data_passes_cloud_init_schema_and_holds_no_cloud_credential(cloudinit, tmp_path):
    text = cloudinit.gateway_user_data("127.77.0.9", "gateway-token-0123456789", "course-gateway", None,
                                       "https://ghcr.io", ("instructor", "registry-token-xyz"))
    config = _schema_checked(text, tmp_path)
    env = next(f for f in config["write_files"] if f["path"] == "/etc/coursekit/gateway.env")
    assert env["permissions"] == "0600" and "REGISTRY_UPSTREAM=https://ghcr.io" in env["content"]
    assert "application_credential" not in text and "OS_" not in text and "clouds" not in text
    assert config["runcmd"] == [["/usr/local/sbin/coursekit-gateway-bootstrap", "/etc/coursekit/gateway.env"]]


def test_cloud_init_schema_check_can_fail(tmp_path):
    bad = tmp_path / "user-data"
    bad.write_text("#cloud-config\nwrite_files: not-a-list\n")
    assert subprocess.run(["cloud-init", "schema", "--config-file", str(bad)], capture_output=True).returncode != 0


def test_hostile_values_stay_quoted(cloudinit):
    env = cloudinit.seat_env("alice", "img", "tok'; rm -rf / #", "host")
    result = subprocess.run(["bash", "-c", f"{env}\nprintf %s \"$JUPYTER_TOKEN\""], capture_output=True, text=True)
    assert result.stdout == "tok'; rm -rf / #"


def _https(url: str, token: str | None) -> int:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # Caddy's internal CA
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _https_json(url: str, token: str) -> dict:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return json.loads(response.read())


def _publish_commit(repo, base_image, docker_client, message: str) -> str:
    """Commit, build and publish; the local copy is removed, so the VM must pull it from the registry."""
    commit(repo, message)
    built = build(repo, base_image)
    assert built.returncode == 0, built.stderr
    assert run_coursekit(repo, "publish", "--no-latest").returncode == 0
    docker_client.images.remove(built.stdout.strip())
    return built.stdout.strip()


@pytest.mark.browser
def test_bootstrap_pulls_fetches_serves_https_and_updates_in_place(
    course_repo, tmp_path, base_image, registry, docker_client, cloudinit, data_server
):
    repo = copy_course(course_repo, tmp_path / "course")
    (repo / "course.yaml").write_text((repo / "course.yaml").read_text().replace('registry: "docker.io"', f'registry: "{registry}"'))
    image = _publish_commit(repo, base_image, docker_client, "course")

    from coursekit import keys
    from coursekit.errors import CoursekitError
    from coursekit.fleet import seattls
    from coursekit.seatclient import SeatClient, UntrustedSeat

    https_port, http_port, jupyter_port, stream_port = free_port(), free_port(), free_port(), free_port()
    work = tmp_path / "vm"
    work.mkdir()
    key = keys.tls_key("bootstrap-secret-7Qx2Lm9Kp4Zt", "course", "bootstrap-test")
    cert_pem, key_pem = seattls.seat_certificate(key, "bootstrap-test", "127.0.0.1")
    (work / "seat.crt").write_text(cert_pem)
    (work / "seat.key").write_text(key_pem)
    (work / "seat.env").write_text(cloudinit.seat_env(
        "bootstrap-test", image, TOKEN, "127.0.0.1", HTTPS_PORT=https_port, HTTP_PORT=http_port,
        JUPYTER_PORT=jupyter_port, CADDY_CONFIG="/tmp/Caddyfile", READY_TIMEOUT=300,
        TLS_CERT="/vm/seat.crt", TLS_KEY="/vm/seat.key", HOMESTREAM="/vm/homestream.py", HOMESTREAM_PORT=stream_port,
    ))
    for source, name in ((cloudinit.BOOTSTRAP, "bootstrap.sh"), (cloudinit.UPDATER, "update.sh"),
                         (cloudinit.HOMESTREAM, "homestream.py")):
        shutil.copyfile(source, work / name)
        (work / name).chmod(0o755)  # as cloud-init writes them
    # A VM runs its own engine, so a volume's files are on its disk; here the host's engine keeps them.
    upstream_name = ""
    vm = docker_client.containers.run(
        ensure_rootfs(docker_client), ["bash", "-c", "bash /vm/bootstrap.sh /vm/seat.env && sleep infinity"],
        detach=True, network_mode="host", labels={"org.coursekit.role": "image-test"},
        cap_add=["DAC_READ_SEARCH"],  # a VM's root has it; the home streamer keeps only it once it is the student
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock"}, str(work): {"bind": "/vm"},
                 "/var/lib/docker/volumes": {"bind": "/var/lib/docker/volumes"}},
    )
    try:
        _wait_for_log(vm, "coursekit-bootstrap: ready", 900)
        status = f"https://127.0.0.1:{https_port}/api/status"
        # The VM serves the seat's own key: the pinned client trusts it, and a client pinned to another seat's
        # key refuses before sending its token.
        pinned = SeatClient("bootstrap-test", f"https://127.0.0.1:{https_port}", TOKEN, keys.public_key_der(key))
        assert pinned.get("/api/status")[0] == 200
        other = keys.public_key_der(keys.tls_key("bootstrap-secret-7Qx2Lm9Kp4Zt", "course", "someone-else"))
        with pytest.raises(UntrustedSeat):
            SeatClient("bootstrap-test", f"https://127.0.0.1:{https_port}", TOKEN, other).get("/api/status")
        assert _https(status, TOKEN) == 200
        assert _https(status, None) == 403
        assert _https(status, "x" + TOKEN[1:]) == 403
        redirect = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        redirect.request("GET", "/api/status")
        response = redirect.getresponse()
        assert response.status == 301 and response.getheader("Location") == f"https://127.0.0.1:{https_port}/api/status"
        seat = docker_client.containers.get("coursekit-bootstrap-test")
        assert seat.attrs["HostConfig"]["PortBindings"]["8888/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(jupyter_port)}]
        assert "brain_volumes.csv: fetched" in seat.logs().decode()
        report = f"https://127.0.0.1:{https_port}/coursekit/seat.json"
        assert _https_json(report, TOKEN)["image"] == image
        assert _https(report, None) != 200 and _https(report, "x" + TOKEN[1:]) != 200

        # Class is on: the student works, the instructor fixes a notebook and deploys the new image.
        assert seat.exec_run(["sh", "-c", "echo 'morning work' > /home/jovyan/work/answer.txt"]).exit_code == 0
        assert seat.exec_run(["sh", "-c", "mkdir -p ~/.config && echo hidden > ~/.config/x"]).exit_code == 0
        # The home streamer behind Caddy: only with the token, hidden files included, verified by the archive.
        assert _https(f"https://127.0.0.1:{https_port}/coursekit/home.tar", None) != 200
        from coursekit import archive

        done = archive.archive_seat("bootstrap-test", lambda: pinned.stream("/coursekit/home.tar"), tmp_path / "arch", {})
        with tarfile.open(done.path) as tar:
            assert tar.extractfile("home/.config/x").read() == b"hidden\n"
            assert tar.extractfile("home/work/answer.txt").read() == b"morning work\n"
        # A swap onto this seat: the streamer takes a home in through Caddy, only with the token, written as the student.
        upload = io.BytesIO()
        with tarfile.open(fileobj=upload, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo("jovyan/moved/from-another-seat.txt")
            info.size = 5
            tar.addfile(info, io.BytesIO(b"moved"))
        size = upload.tell()
        upload.seek(0)
        with pytest.raises(CoursekitError, match="HTTP"):
            SeatClient("bootstrap-test", pinned.base_url, "x" + TOKEN[1:], pinned.pinned_key).upload(
                "/coursekit/home.tar", upload, size, "application/x-tar")
        upload.seek(0)
        assert pinned.upload("/coursekit/home.tar", upload, size, "application/x-tar") == {"entries": 1}
        placed = seat.exec_run(["stat", "-c", "%u %n", "/home/jovyan/moved", "/home/jovyan/moved/from-another-seat.txt"])
        assert placed.output.decode().split() == ["1000", "/home/jovyan/moved", "1000", "/home/jovyan/moved/from-another-seat.txt"]
        assert seat.exec_run(["cat", "/home/jovyan/moved/from-another-seat.txt"]).output == b"moved"
        notebook = repo / "notebooks" / "01-welcome.ipynb"
        nb = json.loads(notebook.read_text())
        nb["cells"][0]["source"].append("\nFixed during class.")
        notebook.write_text(json.dumps(nb, indent=1))
        newer = _publish_commit(repo, base_image, docker_client, "fix a notebook")
        metadata, _ = data_server.add("meta_data.json", json.dumps({"uuid": "vm-1", "meta": {"coursekit-image": newer}}).encode())
        update = ["bash", "/vm/update.sh", "/vm/seat.env"]
        updater_env = {"METADATA_URL": metadata, "BOOTSTRAP": "/vm/bootstrap.sh"}
        exit_code, output = vm.exec_run(update, environment=updater_env)
        assert exit_code == 0, output.decode()
        assert f"coursekit-update: seat bootstrap-test runs {newer}" in output.decode()

        seat = docker_client.containers.get("coursekit-bootstrap-test")
        assert seat.attrs["Config"]["Image"] == newer
        assert seat.exec_run(["cat", "/home/jovyan/work/answer.txt"]).output == b"morning work\n"
        merged = seat.exec_run(["cat", "/home/jovyan/notebooks/01-welcome.ipynb"]).output.decode()
        assert "Fixed during class." in merged  # nbgitpuller brought the fix into the student's copy
        assert _https_json(report, TOKEN)["image"] == newer and _https(status, TOKEN) == 200
        assert f"IMAGE={newer}" in (work / "seat.env").read_text()
        exit_code, output = vm.exec_run(update, environment=updater_env)  # nothing new: nothing happens
        assert exit_code == 0 and b"updating" not in output

        # Behind a gateway: plain HTTP on the gateway's port under /<seat>/, and the image pulled through the
        # gateway's cache (here the loopback registry stands in for it) under its upstream name.
        gateway_port = free_port()
        upstream_name = "docker.io/" + newer.split("/", 1)[1]
        (work / "gateway-seat.env").write_text((work / "seat.env").read_text().replace(f"IMAGE={newer}", f"IMAGE={upstream_name}")
                                               + f"GATEWAY_PORT={gateway_port}\nBASE_URL=/bootstrap-test/\nMIRROR={registry}\n")
        exit_code, output = vm.exec_run(["bash", "/vm/bootstrap.sh", "/vm/gateway-seat.env"])
        assert exit_code == 0, output.decode()
        behind = f"http://127.0.0.1:{gateway_port}/bootstrap-test"
        assert SeatClient("bootstrap-test", behind, TOKEN).get("/api/status")[0] == 200
        assert SeatClient("bootstrap-test", behind, "x" + TOKEN[1:]).get("/api/status")[0] == 403
        assert SeatClient("bootstrap-test", behind, TOKEN).get("/coursekit/seat.json")[1]["image"] == upstream_name
        assert docker_client.containers.get("coursekit-bootstrap-test").attrs["Config"]["Image"] == upstream_name
        assert b"work/answer.txt" in b"".join(SeatClient("bootstrap-test", behind, TOKEN).stream("/coursekit/home.tar"))

        # What the student sees through this front door: the link opens JupyterLab, a cell runs through the seat's
        # Caddy (the kernel's websocket), Ctrl+S saves, and the output is in what the VM streams for the archive.
        from browser import CHECK_NOTEBOOK, CHECK_OUTPUT, chromium, lab_shown, run_first_cell_and_save, wait_for

        seat_client = SeatClient("bootstrap-test", behind, TOKEN)
        body = json.dumps({"type": "notebook", "content": CHECK_NOTEBOOK}).encode()
        assert seat_client.get("/api/contents/check.ipynb", method="PUT", body=body)[0] == 201
        with chromium(tmp_path / "profile", "jetstream2-seat") as driver:
            driver.get(f"{behind}/?token={TOKEN}")
            wait_for("JupyterLab", lambda: lab_shown(driver))
            driver.get(f"{behind}/lab/tree/check.ipynb")
            run_first_cell_and_save(driver, CHECK_OUTPUT)
            wait_for("the saved output", lambda: CHECK_OUTPUT in json.dumps(seat_client.get("/api/contents/check.ipynb")[1]))
        streamed = b"".join(seat_client.stream("/coursekit/home.tar"))
        assert b"check.ipynb" in streamed and CHECK_OUTPUT.encode() in streamed
    finally:
        vm.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get("coursekit-bootstrap-test").remove(force=True)
        for volume in docker_client.volumes.list(filters={"name": "coursekit-bootstrap-test-home"}):
            volume.remove(force=True)
        if upstream_name:
            with contextlib.suppress(docker.errors.APIError):
                docker_client.images.remove(upstream_name)  # the tag the gateway-mode run gave it


def _wait_for_log(vm, marker: str, timeout: float) -> None:
    """Until the VM's container logs marker; fails with its log if it stops or takes longer than timeout."""
    deadline = time.monotonic() + timeout
    while marker not in (logs := vm.logs().decode()):
        vm.reload()
        assert vm.status == "running", logs
        assert time.monotonic() < deadline, logs
        time.sleep(2)


@contextlib.contextmanager
def _gateway_vm(docker_client, cloudinit, work, settings: dict):
    """The gateway VM's boot script run in a container on the host's network; yields it once it is ready."""
    work.mkdir(exist_ok=True)
    (work / "gateway.env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    for source in (cloudinit.GATEWAY_BOOTSTRAP, cloudinit.GATEWAY_ROUTES, cloudinit.GATEWAY_RENDER):
        shutil.copyfile(source, work / source.name)
    vm = docker_client.containers.run(
        ensure_rootfs(docker_client), ["bash", "-c", "bash /vm/gateway.sh /vm/gateway.env && sleep infinity"],
        detach=True, network_mode="host", labels={"org.coursekit.role": "image-test"}, volumes={str(work): {"bind": "/vm"}},
    )
    try:
        _wait_for_log(vm, "coursekit-gateway: ready", 600)
        yield vm
    finally:
        vm.remove(force=True)


def test_gateway_boot_path_routes_seats_with_real_caddy(cloudinit, tmp_path, docker_client):
    """The gateway VM's boot script in a container: Debian's Caddy and the control service route /<seat>/ to
    two seat stand-ins (plain HTTP on loopback, as seats serve the gateway), routes changed while it runs, the
    seat's own credential checked by the seat behind it, and the gateway's token guarding its routes."""
    from coursekit import keys
    from coursekit.fleet import seattls
    from coursekit.seatclient import SeatClient
    from os_emulator import SeatStandIn

    https_port, http_port, control_port = free_port(), free_port(), free_port()
    secret, slug, gateway_token = "gateway-boot-secret-4Rt7Yu1Io9Pa", "course", "gateway-token-0123456789abcdef"
    key = keys.tls_key(secret, slug, keys.GATEWAY)
    tls = seattls.seat_certificate(key, "gateway", "127.0.0.1")
    work = tmp_path / "vm"
    work.mkdir()
    (work / "gateway.crt").write_text(tls[0])
    (work / "gateway.key").write_text(tls[1])
    settings = {"SITE": "127.0.0.1", "TOKEN": gateway_token, "ROUTES": "/vm/gatewayroutes.py", "PORT": control_port,
                "HTTPS_PORT": https_port, "HTTP_PORT": http_port, "TLS_CERT": "/vm/gateway.crt", "TLS_KEY": "/vm/gateway.key",
                "CADDY_CONFIG": "/tmp/Caddyfile", "STATE": "/tmp/routes.json", "ADMIN": f"localhost:{free_port()}"}
    homes = {seat: tmp_path / seat for seat in ("ann", "ben")}
    for home in homes.values():
        home.mkdir()
    tokens = {"ann": "ann-token-abcdef0123456789", "ben": "ben-token-abcdef0123456789"}
    stack = contextlib.ExitStack()
    seats = {seat: SeatStandIn("127.0.0.1", free_port(), tokens[seat], "img", None, homes[seat], prefix=f"/{seat}")
             for seat in ("ann", "ben")}
    try:
        vm = stack.enter_context(_gateway_vm(docker_client, cloudinit, work, settings))
        front = f"https://127.0.0.1:{https_port}"
        control = SeatClient("gateway", front, gateway_token, keys.public_key_der(key))

        def put(*routes: dict) -> int:
            return control.get("/coursekit/routes", method="PUT", body=json.dumps({"routes": list(routes)}).encode())[0]

        def upstream(seat: str) -> str:
            return f"127.0.0.1:{seats[seat].httpd.server_port}"

        assert _https(f"{front}/ann/api/status", tokens["ann"]) == 404  # a fresh gateway routes no seat
        assert put({"seat": "ann", "upstream": upstream("ann")}) == 200, vm.exec_run(["cat", "/var/log/coursekit-gateway.log", "/tmp/Caddyfile"]).output.decode()[-3000:]
        assert _https(f"{front}/ann/api/status", tokens["ann"]) == 200
        assert _https(f"{front}/ann/api/status", tokens["ben"]) == 403  # the seat behind checks its own credential
        assert _https(f"{front}/ben/api/status", tokens["ben"]) == 404
        # A seat added, and one removed, while the gateway runs.
        assert put({"seat": "ben", "upstream": upstream("ben")}) == 200
        assert _https(f"{front}/ben/api/status", tokens["ben"]) == 200
        assert _https(f"{front}/ann/api/status", tokens["ann"]) == 404
        # A paused seat gets its page; a seat that does not answer, the starting page.
        assert put({"seat": "ann", "paused_until": "Tue 08:00"}, {"seat": "ben", "upstream": upstream("ben")}) == 200
        assert _https(f"{front}/ann/", None) == 503
        seats["ben"].stop()
        assert _https(f"{front}/ben/", None) == 503
        # Only the gateway's token changes its routes; nonsense is refused.
        assert SeatClient("gateway", front, "wrong", keys.public_key_der(key)).get(
            "/coursekit/routes", method="PUT", body=b'{"routes": []}')[0] == 403
        assert put({"seat": "../etc", "upstream": "127.0.0.1:1"}) == 400
        # A Content-Length that is not one is refused at once (no hang, no traceback); routes Caddy refuses (one seat
        # twice) leave the Caddyfile it serves as it was.
        for length in ("-1", "abc", "1e3"):
            raw = socket.create_connection(("127.0.0.1", control_port), timeout=10)
            raw.sendall(f"PUT /coursekit/routes HTTP/1.1\r\nHost: x\r\nAuthorization: token {gateway_token}\r\n"
                        f"Content-Length: {length}\r\n\r\n".encode())
            assert raw.recv(100).startswith(b"HTTP/1.0 411"), length
            raw.close()
        served = vm.exec_run(["cat", "/tmp/Caddyfile"]).output
        assert put({"seat": "ben", "upstream": upstream("ben")}, {"seat": "ben", "upstream": upstream("ben")}) == 500
        assert vm.exec_run(["cat", "/tmp/Caddyfile"]).output == served
        log = vm.exec_run(["cat", "/var/log/coursekit-gateway.log"]).output.decode()
        assert "Traceback" not in log, log[-2000:]
        plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        plain.request("GET", "/ann/?token=x")
        answer = plain.getresponse()
        assert answer.status == 308 and answer.getheader("Location") == f"{front}/ann/?token=x"
    finally:
        stack.close()
        for seat in seats.values():
            with contextlib.suppress(OSError):
                seat.stop()


def test_gateway_image_cache_pulls_each_image_once_from_upstream(cloudinit, tmp_path, docker_client, registry):
    """The gateway's pull-through cache for real (Debian's docker-registry in proxy mode, started by the gateway's
    boot script) in front of a loopback registry serving the course image: deploy names the image with the routes,
    the gateway pulls it into its cache once, five seats then pull it at the same moment, and the upstream
    registry's own log shows one pull of the manifest and of each blob, not five."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import datetime, timezone

    from coursekit.engine import Engine

    image = docker_client.images.get(Engine(docker_client).scratch_image())
    image.tag(f"{registry}/course/tiny", "v1")
    assert "error" not in docker_client.images.push(f"{registry}/course/tiny", tag="v1")
    upstream = docker_client.containers.list(filters={"publish": registry.rsplit(":", 1)[1]})[0]
    stack = contextlib.ExitStack()
    mirror_port = free_port()
    control_port, token = free_port(), "gateway-token-0123456789abcdef"
    settings = {"SITE": "127.0.0.1", "TOKEN": token, "ROUTES": "/vm/gatewayroutes.py", "PORT": control_port, "HTTPS_PORT": free_port(), "HTTP_PORT": free_port(), "ADMIN": f"localhost:{free_port()}",
                "CADDY_CONFIG": "/tmp/Caddyfile", "STATE": "/tmp/routes.json", "REGISTRY_UPSTREAM": f"http://{registry}",
                "MIRROR_PORT": mirror_port, "MIRROR_CONFIG": "/tmp/registry.json", "MIRROR_STORAGE": "/tmp/mirror"}
    try:
        vm = stack.enter_context(_gateway_vm(docker_client, cloudinit, tmp_path / "vm", settings))
        deadline = time.monotonic() + 120
        since = datetime.now(timezone.utc)
        routes = f"http://127.0.0.1:{control_port}/coursekit/routes"  # behind Caddy on a real gateway
        put = urllib.request.Request(routes, method="PUT", data=json.dumps({"routes": [], "image": "course/tiny:v1"}).encode(),
                                     headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(put, timeout=30) as answer:
            assert answer.status == 200
        while "course/tiny:v1" not in json.loads(urllib.request.urlopen(urllib.request.Request(
                routes, headers={"Authorization": f"token {token}"}), timeout=30).read())["cached"]:
            assert time.monotonic() < deadline, vm.logs().decode()
            time.sleep(0.5)
        accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"

        def seat_pulls(_: int) -> list[str]:
            """What a seat's engine fetches: the manifest by tag, then every blob it names."""
            base = f"http://127.0.0.1:{mirror_port}/v2/course/tiny"
            with urllib.request.urlopen(urllib.request.Request(f"{base}/manifests/v1", headers={"Accept": accept}), timeout=30) as answer:
                manifest = json.loads(answer.read())
            digests = [manifest["config"]["digest"]] + [layer["digest"] for layer in manifest["layers"]]
            for digest in digests:
                with urllib.request.urlopen(f"{base}/blobs/{digest}", timeout=30) as answer:
                    answer.read()
            return digests

        def upstream_gets() -> list[str]:
            return [line for line in upstream.logs(since=since).decode().splitlines() if '"GET /v2/course/tiny/' in line]

        with ThreadPoolExecutor(max_workers=5) as pool:
            pulled = list(pool.map(seat_pulls, range(5)))
        assert len({tuple(p) for p in pulled}) == 1
        time.sleep(1)
        first = upstream_gets()
        assert len([line for line in first if "/manifests/" in line]) == 1, first
        # The registry's cache fetches a new blob twice (one copy for its client, one it stores): a constant per
        # blob, paid once by the gateway's own pull; the seats' pulls cost the upstream no GET at all.
        assert 1 <= len([line for line in first if "/blobs/" in line]) <= 2 * len(pulled[0]), first
        with ThreadPoolExecutor(max_workers=5) as pool:
            list(pool.map(seat_pulls, range(5)))
        time.sleep(1)
        assert upstream_gets() == first  # five more seats: nothing more from upstream (only HEADs of the tag)
    finally:
        stack.close()
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(f"{registry}/course/tiny:v1")
