"""Security round 3: no pull request, dataset or student crosses a boundary (build context, lock, archive target)."""
from __future__ import annotations

import os
import time

import pytest
from conftest import run_coursekit
from helpers import commit, copy_course, edit_course

SECRET = "boundaries-secret-Zq8Rw3Lp5Xt7"
PASSWORD = "registry-password-9Vb2Nm4Kc6Hj"


@pytest.fixture
def repo(course_repo, tmp_path):
    return copy_course(course_repo, tmp_path / "course")


@pytest.mark.parametrize("link,why", [
    ("/proc/self/environ", "is a link to /proc/"),
    ("/etc/hostname", "is a link to /etc/hostname, outside this repository"),
    ("../../../../../../../root/.ssh/id_rsa", "is a link to nothing"),
    (".", "is a link to a folder (notebooks/sub)"),
    ("../../.git/config", "is a link into .git"),
    ("/dev/zero", "is a link to /dev/zero, outside this repository"),
])
def test_a_notebook_link_out_of_the_repository_is_refused_by_validate(repo, link, why):
    (repo / ".git").mkdir()
    (repo / ".git" / "config").write_text("[core]\n")
    (repo / "notebooks" / "sub").mkdir()
    (repo / "notebooks" / "sub" / "extra.ipynb").symlink_to(link)
    result = run_coursekit(repo, "validate")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "notebooks/sub/extra.ipynb: " in result.stderr and why in result.stderr, result.stderr


def test_a_link_to_a_file_inside_the_repository_is_copied_as_that_file(repo, coursekit):
    from coursekit.config import load_course
    from coursekit.image import stage

    (repo / "notebooks" / "table.csv").symlink_to("../data/brain_volumes.csv")
    assert run_coursekit(repo, "validate").returncode == 0
    staged = stage(load_course(repo / "course.yaml"), None) / "course" / "notebooks" / "table.csv"
    assert not staged.is_symlink() and staged.read_bytes() == (repo / "data" / "brain_volumes.csv").read_bytes()


def test_a_fifo_in_notebooks_is_refused_not_read_forever(repo):
    os.mkfifo(repo / "notebooks" / "pipe.ipynb")
    result = run_coursekit(repo, "validate")
    assert result.returncode == 1 and "notebooks/pipe.ipynb: is not a regular file" in result.stderr


def test_staging_refuses_the_links_validate_refuses(repo, coursekit):
    from coursekit.config import load_course
    from coursekit.errors import CoursekitError
    from coursekit.image import stage

    course = load_course(repo / "course.yaml")
    (repo / "notebooks" / "extra.ipynb").symlink_to("/proc/self/environ")
    with pytest.raises(CoursekitError, match="notebooks/extra.ipynb is a link to /proc/"):
        stage(course, None)
    assert not (repo / ".coursekit" / "course").exists()


def test_a_lock_link_out_of_the_repository_is_refused(repo):
    (repo / "requirements.lock").symlink_to("/proc/self/environ")
    result = run_coursekit(repo, "validate")
    assert result.returncode == 1 and "requirements.lock: is a link to /proc/" in result.stderr


@pytest.mark.parametrize("line", [
    "--extra-index-url http://127.0.0.1:1/simple",
    "-e git+https://example.org/x.git#egg=x",
    "--find-links /tmp",
    "-r other.txt",
    "nibabel @ https://example.org/nibabel.whl",
    "nibabel==5.3.2",
    "nibabel==5.3.2 --hash=sha256:" + "0" * 63,
    "nibabel==5.3.2 --hash=md5:" + "0" * 32,
    "nibabel==5.3.2 --hash=sha256:" + "0" * 64 + " --index-url http://127.0.0.1:1/",
])
def test_every_lock_line_is_a_pinned_hashed_requirement(repo, line, coursekit):
    from_yaml = (repo / "course.yaml").read_text()
    header = _lock_header(repo)
    (repo / "requirements.lock").write_text(header + line + "\n")
    result = run_coursekit(repo, "validate")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "requirements.lock line 2 is not `name==version --hash=sha256:<64 hex>`" in result.stderr
    assert (repo / "course.yaml").read_text() == from_yaml


def _lock_header(repo) -> str:
    import yaml
    from coursekit.validate import lock_inputs

    packages = yaml.safe_load((repo / "course.yaml").read_text())["image"]["python_packages"]
    return f"# coursekit lock {lock_inputs(packages)}: made by hand for a test\n"


def test_a_lock_whose_version_is_not_the_pin_is_refused(repo, coursekit):
    import yaml

    packages = yaml.safe_load((repo / "course.yaml").read_text())["image"]["python_packages"]
    name, version = packages[0].split("==")
    lines = [f"{p.split('==')[0]}=={p.split('==')[1]} --hash=sha256:{'1' * 64}" for p in packages[1:]]
    lines.append(f"{name}=={version}.1 --hash=sha256:{'2' * 64}")
    (repo / "requirements.lock").write_text(_lock_header(repo) + "\n".join(lines) + "\n")
    result = run_coursekit(repo, "validate")
    assert result.returncode == 1
    assert f"requirements.lock has {name} {version}.1, but course.yaml pins {version}" in result.stderr
    lines[-1] = f"{name}=={version} --hash=sha256:{'2' * 64}"
    (repo / "requirements.lock").write_text(_lock_header(repo) + "\n".join(lines) + "\n")
    assert run_coursekit(repo, "validate").returncode == 0


@pytest.mark.parametrize("target", ["notebooks/archives", "data/kept", ".coursekit/a", "./notebooks/../notebooks/x"])
def test_an_archive_folder_inside_what_the_build_copies_is_refused(repo, target):
    edit_course(repo, lambda d: d.setdefault("archive", {}).update(target=target))
    result = run_coursekit(repo, "validate")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "which the build copies into the image" in result.stderr, result.stderr


def test_an_archive_folder_through_a_link_is_refused(repo):
    (repo / "notebooks" / ".kept").mkdir()
    (repo / "archives").symlink_to("notebooks/.kept")
    result = run_coursekit(repo, "validate")
    assert result.returncode == 1 and "archive.target: 'archives' goes through a link" in result.stderr, result.stderr


def test_an_archive_folder_the_dockerfile_copies_is_refused(repo):
    with (repo / "Dockerfile").open("a") as dockerfile:
        dockerfile.write("COPY --chown=1000:100 kept/ /opt/kept/\n")
    edit_course(repo, lambda d: d.setdefault("archive", {}).update(target="kept/2027"))
    result = run_coursekit(repo, "validate")
    assert result.returncode == 1 and "'kept/2027' is inside kept" in result.stderr, result.stderr


def test_teardown_refuses_an_archive_dir_inside_notebooks(repo):
    result = run_coursekit(repo, "teardown", "--yes", "--archive-dir", "notebooks/keep",
                           env={"COURSEKIT_SECRET": SECRET})
    assert result.returncode == 1 and "which the build copies into the image" in result.stderr, result.stderr


def test_the_secret_is_in_no_image_built_from_a_repository_with_hostile_links(repo, base_image, docker_client):
    """Links committed as a pull request would bring them: the build refuses them; without them (an in-repository
    link kept), the build succeeds with the secrets in its environment, and nothing in the image holds them."""
    from helpers import BUILT, SYSTEM_CA

    (repo / "notebooks" / "extra.ipynb").symlink_to("/proc/self/environ")
    (repo / "notebooks" / "hostname.ipynb").symlink_to("/etc/hostname")
    (repo / "notebooks" / "table.csv").symlink_to("../data/brain_volumes.csv")
    edit_course(repo, lambda d: d["course"].update(slug="boundaries"))
    commit(repo, "hostile links")
    env = {"COURSEKIT_SECRET": SECRET, "REGISTRY_PASSWORD": PASSWORD}
    args = ("build", "--base-image", base_image, "--ca-bundle", str(SYSTEM_CA))
    refused = run_coursekit(repo, *args, env=env)
    assert refused.returncode == 1 and "notebooks/extra.ipynb: is a link to /proc/" in refused.stderr, refused.stderr
    assert "notebooks/hostname.ipynb: is a link to /etc/hostname" in refused.stderr
    (repo / "notebooks" / "extra.ipynb").unlink()
    (repo / "notebooks" / "hostname.ipynb").unlink()
    commit(repo, "links removed")
    built = run_coursekit(repo, *args, env=env)
    assert built.returncode == 0, built.stderr
    ref = built.stdout.strip()
    BUILT.append(ref)
    assert SECRET not in built.stdout + built.stderr
    config = docker_client.images.get(ref).attrs["Config"]
    assert not any(SECRET in e or PASSWORD in e for e in config.get("Env") or [])
    found = docker_client.containers.run(
        ref, ["sh", "-c", f"grep -rl -e {SECRET} -e {PASSWORD} /opt/course /usr/local/share/coursekit /tmp; echo done"],
        remove=True, user="root").decode()
    assert found.strip() == "done", found


# The seats' home streamer ---------------------------------------------------------------------------------------

class _SwapWhileStreaming:
    """An output that, once the stream is inside b/, swaps b/ for a link out of the home."""

    def __init__(self, home, outside):
        self.home, self.outside, self.chunks, self.swapped = home, outside, [], False

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        if not self.swapped and b"first file" in data:
            (self.home / "b").rename(self.home / "b.before")
            (self.home / "b").symlink_to(self.outside)
            self.swapped = True
        return len(data)


def test_the_home_streamer_never_follows_a_link_swapped_in_mid_stream(coursekit, tmp_path):
    import io
    import tarfile

    from coursekit.fleet import homestream

    home, outside = tmp_path / "home", tmp_path / "outside"
    (home / "b" / "inner").mkdir(parents=True)
    (home / "b" / "big").write_bytes(b"first file" + b"." * 200_000)
    (home / "b" / "inner" / "notes.txt").write_text("the student's")
    (outside / "inner").mkdir(parents=True)
    (outside / "shadow").write_text("SECRET-OUTSIDE-THE-HOME")
    (outside / "inner" / "notes.txt").write_text("SECRET-OUTSIDE-THE-HOME")
    (home / "escape").symlink_to(outside / "shadow")
    out = _SwapWhileStreaming(home, outside)
    homestream.write_tar(str(home), out)
    stream = b"".join(out.chunks)
    assert out.swapped and b"SECRET-OUTSIDE" not in stream
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r|") as tar:
        members = {m.name: m for m in tar}
    assert members["jovyan/escape"].issym() and members["jovyan/escape"].linkname == str(outside / "shadow")
    assert members["jovyan/b/inner/notes.txt"].size == len("the student's")


def _listing(folder) -> dict[bytes, tuple]:
    """Every entry under folder, by its name as bytes: (type, content or link target, mode)."""
    import stat

    found = {}
    for root, dirs, files in os.walk(os.fsencode(folder)):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, os.fsencode(folder))
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("folder", stat.S_IMODE(st.st_mode))
            else:
                with open(path, "rb") as handle:
                    found[rel] = ("file", handle.read(), stat.S_IMODE(st.st_mode), st.st_nlink)
    return found


def test_the_home_streamer_takes_in_a_home_as_it_gives_one_and_the_students_files_win(coursekit, tmp_path):
    """A swap's upload: what write_tar streams, read_tar puts back, entry for entry (hidden folders, any name, links
    out of the home kept as links, hard links, modes), over a spare's fresh home whose own files stay beside."""
    import io

    from coursekit.fleet import homestream

    student, spare = tmp_path / "student", tmp_path / "spare"
    (student / ".hidden" / "deep").mkdir(parents=True)
    (student / ".hidden" / "deep" / "notes").write_text("kept")
    (student / "notebooks").mkdir()
    (student / "notebooks" / "01.ipynb").write_text("the student's answers")
    (student / "report").write_text("a file where the spare has a folder")
    (student / os.fsdecode(b"caf\xe9 \n" + "\u2028.txt".encode())).write_text("odd name")  # not UTF-8, a newline, U+2028
    (student / "escape").symlink_to("/etc/shadow")
    os.link(student / "notebooks" / "01.ipynb", student / "same.ipynb")
    (student / "readonly").mkdir()
    (student / "readonly" / "inside").write_text("in a folder the student made read-only")
    (student / "readonly").chmod(0o555)
    (spare / "notebooks").mkdir(parents=True)
    (spare / "notebooks" / "01.ipynb").write_text("the image's blank notebook")
    (spare / "notebooks" / "02.ipynb").write_text("only the spare's")
    (spare / "report").mkdir()
    (spare / "report" / "x").write_text("the spare's own folder")
    (spare / "escape").write_text("the spare's own file")

    stream = io.BytesIO()
    homestream.write_tar(str(student), stream)
    stream.seek(0)
    assert homestream.read_tar(str(spare), stream) > 8
    have, want = _listing(spare), _listing(student)
    assert {k: v for k, v in have.items() if k in want} == want
    assert set(have) - set(want) == {b"notebooks/02.ipynb", b"report.before-swap", b"report.before-swap/x"}
    assert have[b"escape"] == ("link", b"/etc/shadow") and have[b"same.ipynb"][3] == 2


@pytest.mark.parametrize("name,why", [
    ("jovyan/../outside.txt", "not inside"),
    ("other/file.txt", "not inside"),
    ("/jovyan/file.txt", "not inside"),
    ("jovyan/through/file.txt", None),  # through a link the home already holds: the link gives way, nothing outside
    ("jovyan/disk", "a device"),
])
def test_an_uploaded_home_never_writes_outside_the_home(coursekit, tmp_path, name, why):
    import io
    import tarfile

    from coursekit.fleet import homestream

    home, outside = tmp_path / "home", tmp_path / "outside"
    home.mkdir()
    outside.mkdir()
    (home / "through").symlink_to(outside)
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        if why == "a device":
            info.type, info.devmajor, info.devminor = tarfile.BLKTYPE, 8, 0
            tar.addfile(info)
        else:
            info.size = 5
            tar.addfile(info, io.BytesIO(b"owned"))
    stream.seek(0)
    if why:
        with pytest.raises(ValueError, match=why):
            homestream.read_tar(str(home), stream)
    else:
        homestream.read_tar(str(home), stream)
        assert (home / "through").is_dir() and not (home / "through").is_symlink()
        assert (home / "through" / "file.txt").read_text() == "owned"
    assert list(outside.iterdir()) == [] and not (tmp_path / "outside.txt").exists()


# A seat's answers are data -------------------------------------------------------------------------------------

@pytest.mark.cloud
def test_one_students_status_answers_never_stop_status_or_the_schedule_for_the_class(course_repo, tmp_path, cloud):
    """ann's Jupyter says month 13, ben's the year 9999, cy's drips a byte every 2 s: status and the schedule
    still answer for everyone, in bounded time, and dan (an honest seat) is paused for being idle."""
    import json
    import time
    from datetime import datetime, timedelta, timezone

    from helpers import make_course

    repo = make_course(course_repo, tmp_path / "course", "answers", ["ann", "ben", "cy", "dan"])
    edit_course(repo, lambda d: (
        d["fleet"].update(provider="openstack"),
        d["fleet"]["openstack"].update(poll_seconds=0.2, boot_timeout_minutes=0.25, access="floating-ip"),
        d["schedule"].update(awake=[], idle_pause_hours=1, expire=False),
    ))
    cloud.clouds_yaml(tmp_path / "clouds.yaml")
    env = {"COURSEKIT_SECRET": SECRET, "OS_CLIENT_CONFIG_FILE": str(tmp_path / "clouds.yaml")}
    assert run_coursekit(repo, "deploy", "--image", "docker.io/your-user/answers:abc1234", env=env).returncode == 0
    status = json.loads(run_coursekit(repo, "status", "--json", env=env).stdout)
    addresses = {r["seat"]: r["url"].split("//", 1)[1].split(":", 1)[0].split("/", 1)[0] for r in status}
    stand_ins = {seat: cloud.stand_ins[address] for seat, address in addresses.items()}
    stand_ins["ann"].status_answer = {"started": "2027-13-45T10:00:00Z", "last_activity": "2027-13-45T99:99:99Z"}
    stand_ins["ben"].status_answer = {"started": "9999-12-31T23:59:59Z", "last_activity": "9999-12-31T23:59:59Z"}
    stand_ins["cy"].drip_seconds = 2.0
    started = time.monotonic()
    shown = run_coursekit(repo, "status", "--json", env=env)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    rows = {r["seat"]: r for r in json.loads(shown.stdout)}
    assert rows["ann"]["last_activity"] == "unknown" and rows["ben"]["last_activity"] == "unknown"
    assert rows["cy"]["health"] == "no answer"
    assert time.monotonic() - started < 30
    later = (datetime.now(timezone.utc) + timedelta(hours=3)).isoformat()
    started = time.monotonic()
    ran = run_coursekit(repo, "schedule", "--at", later, env=env)
    assert ran.returncode == 0 and "Traceback" not in ran.stderr, ran.stdout + ran.stderr
    assert time.monotonic() - started < 60
    after = {r["seat"]: r["state"] for r in json.loads(run_coursekit(repo, "status", "--json", env=env).stdout)}
    assert after["dan"] == "paused", after


def test_with_subdomains_every_seat_is_its_own_site_and_the_front_door_serves_none(coursekit):
    """The Jetstream2 gateway's renderer, as the VM runs it: each seat only on https://<seat>.<site>/<seat>/ (the
    browser test drives the same Caddyfile on a Docker host); the user-data turns it on."""
    from coursekit.fleet import cloudinit
    from coursekit.fleet.gateway import Route
    from os_emulator import gatewayroutes

    routes = [Route("ann", "10.0.0.5:8080"), Route("ben", paused_until="Tue 08:00")]
    text = gatewayroutes.Gateway({"SITE": "gw.zone.example.org", "SUBDOMAINS": "1"}).render(routes)
    assert "https://gw.zone.example.org:443, https://ann.gw.zone.example.org:443, https://ben.gw.zone.example.org:443 {" in text
    ann = text.split("@ann.origin host ann.gw.zone.example.org", 1)[1].split("@ben.origin", 1)[0]
    assert "reverse_proxy 10.0.0.5:8080" in ann and text.count("reverse_proxy 10.0.0.5:8080") == 1
    assert "redir https://ann.gw.zone.example.org{uri} 302" in text  # the front door's /ann/ goes to ann's origin
    assert "ann.gw" not in gatewayroutes.Gateway({"SITE": "gw.zone.example.org"}).render(routes)
    assert "SUBDOMAINS=1" in cloudinit.gateway_user_data("gw.zone.example.org", "t" * 32, "gw", subdomains=True)


@pytest.mark.docker
def test_the_streamer_reads_a_home_as_its_owner_with_one_capability(coursekit, docker_client, tmp_path):
    """The streamer as the seat VM runs it (as root, over a real Docker volume): each stream is read by a process
    that is the home's owner with only CAP_DAC_READ_SEARCH, which still reads the student's mode-000 file."""
    import io
    import subprocess
    import sys
    import tarfile
    import urllib.request
    from pathlib import Path

    from coursekit.fleet import homestream
    from services import free_port

    assert os.geteuid() == 0, "the streamer runs as root on a seat VM; run the tests as root (scripts/setup does)"
    volume = docker_client.volumes.create("coursekit-test-streamer-home", labels={"org.coursekit.role": "image-test"})
    home = Path(volume.attrs["Mountpoint"])
    try:
        (home / "notes.txt").write_text("mine")
        (home / "private.txt").write_text("mine too")
        (home / "big.bin").write_bytes(os.urandom(1 << 20) * 48)  # keeps the stream busy while it is looked at
        (home / "escape").symlink_to("/etc/shadow")
        for path in (home, *home.iterdir()):
            os.chown(path, 1000, 100, follow_symlinks=False)
        (home / "private.txt").chmod(0)
        port = free_port()
        server = subprocess.Popen([sys.executable, homestream.__file__, volume.name, str(port)], stderr=subprocess.PIPE)
        try:
            children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
            listening = f":{port:04X} 00000000:0000 0A"  # in /proc/net/tcp: no connection made to find out
            for _ in range(100):
                if listening in Path("/proc/net/tcp").read_text():
                    break
                time.sleep(0.1)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{homestream.PATH}", timeout=60) as answer:
                first = answer.read(1 << 16)
                (child,) = children.read_text().split()
                status = Path(f"/proc/{child}/status").read_text()
                stream = first + answer.read()
        finally:
            server.kill()
            server.wait()
        uid = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
        effective = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("CapEff:"))
        assert uid == ["1000"] * 4 and effective == 1 << homestream.CAP_DAC_READ_SEARCH, status
        with tarfile.open(fileobj=io.BytesIO(stream), mode="r|") as tar:
            found = {m.name: (m, tar.extractfile(m).read() if m.isfile() else None) for m in tar}
        assert found["jovyan/private.txt"][1] == b"mine too" and found["jovyan/notes.txt"][1] == b"mine"
        assert found["jovyan/escape"][0].issym() and found["jovyan/escape"][0].linkname == "/etc/shadow"
    finally:
        volume.remove(force=True)
