"""`coursekit takehome --to DIR` after a teardown on a Docker host: per student a folder with exactly their work
(hidden files and links inside the home kept, a link out of it left out and named) and a README whose one
`docker run` line opens that work in the course's image."""
from __future__ import annotations

import re
import shlex

from conftest import run_coursekit
from helpers import build, edit_course, http
from services import free_port

SECRET = "takehome-secret-Zx3Cv6Bn9Mq2"
ENV = {"COURSEKIT_SECRET": SECRET}
SLUG = "takehome-docker"


def test_each_student_takes_home_exactly_their_work_and_it_opens_with_one_line(fleet_factory, base_image, docker_client,
                                                                              tmp_path):

    repo = fleet_factory(SLUG, students=["ann", "ben"])
    edit_course(repo, lambda d: (d["fleet"]["docker"].update(port_base=free_port()), d["schedule"].update(awake=[])))
    built = build(repo, base_image)
    assert built.returncode == 0
    assert run_coursekit(repo, "deploy", env=ENV).returncode == 0
    ann = docker_client.containers.get(f"coursekit-{SLUG}.ann")
    work = "echo mine > ~/a.txt && mkdir -p ~/.config/x && echo hidden > ~/.config/x/y && ln -s a.txt ~/alink && ln -s /etc/passwd ~/out"
    assert ann.exec_run(["bash", "-c", work], user="jovyan").exit_code == 0
    assert docker_client.containers.get(f"coursekit-{SLUG}.ben").exec_run(["bash", "-c", "echo his > ~/b.txt"], user="jovyan").exit_code == 0
    assert run_coursekit(repo, "teardown", "--yes", "--archive-dir", str(tmp_path / "arch"), env=ENV).returncode == 0

    made = run_coursekit(repo, "takehome", "--archive-dir", str(tmp_path / "arch"), "--to", str(tmp_path / "home"))
    assert made.returncode == 0, made.stdout + made.stderr
    folder = tmp_path / "home" / "ann"
    assert (folder / "work" / "a.txt").read_text() == "mine\n" and (folder / "work" / ".config" / "x" / "y").read_text() == "hidden\n"
    assert (folder / "work" / "alink").is_symlink() and not (folder / "work" / "out").exists()
    assert not (folder / "work" / "b.txt").exists() and (tmp_path / "home" / "ben" / "work" / "b.txt").read_text() == "his\n"
    readme = (folder / "README.txt").read_text()
    assert "out (a link to /etc/passwd)" in readme
    again = run_coursekit(repo, "takehome", "--archive-dir", str(tmp_path / "arch"), "--to", str(tmp_path / "home"))
    assert again.returncode == 1 and "never writes over" in again.stdout  # nothing is written over

    # The README's line, as a student runs it (here detached, on a free port, with a known token).
    (line,) = [x.strip() for x in readme.splitlines() if x.strip().startswith("docker run")]
    image = line.split()[-1]
    docker_client.images.get(built.stdout.strip()).tag(image)  # what publish pushes as :latest
    port, token = free_port(), "takehome-token-0123456789abcdef"
    args = shlex.split(line.replace("$PWD", str(folder)))
    args[args.index("-p") + 1] = f"127.0.0.1:{port}:8888"
    args[2:2] = ["-d", "--label", f"org.coursekit.course={SLUG}", "-e", f"JUPYTER_TOKEN={token}"]
    container_id = __import__("subprocess").run(args, capture_output=True, text=True, check=True).stdout.strip()
    try:
        import time

        code, body = 0, b""
        for _ in range(120):  # until Jupyter answers
            try:
                code, body = http(f"http://127.0.0.1:{port}/api/contents/work/a.txt", token)
            except OSError:
                code = 0
            if code == 200:
                break
            time.sleep(1)
        assert code == 200 and b"mine" in body, (code, body[:200])
    finally:
        docker_client.containers.get(container_id).remove(force=True)
        docker_client.images.remove(image, noprune=True)
    assert re.search(r"ann +│", made.stdout)  # the table names each seat
