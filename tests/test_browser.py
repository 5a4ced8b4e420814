"""What students see, in a real browser (Debian's Chromium through Selenium), through every front door of a
Docker host: the roster link opens JupyterLab in one step, a cell runs through that door's websocket and shows
its output, Ctrl+S saves, the saved output is in the teardown archive, another seat's credential opens
nothing; behind the gateway the starting page becomes JupyterLab by itself and the paused page says when the
seat wakes. Then the printed roster (one slip per seat, never split across pages) and axe-core on the pages
coursekit serves. The Jetstream2 boot path serves seats the same way and is driven in test_bootstrap.py."""
from __future__ import annotations

import base64
import csv
import io
import json
import math
import time

import pytest
from browser import (
    CHECK_NOTEBOOK,
    CHECK_OUTPUT,
    axe_violations,
    chromium,
    lab_shown,
    pdf_pages,
    run_first_cell_and_save,
    wait_for,
)
from conftest import run_coursekit
from helpers import archive_file, build, edit_course, insecure_tls
from selenium.webdriver.common.by import By
from services import ensure_rootfs, free_port

pytestmark = pytest.mark.browser  # docker comes with the fixtures (conftest)

SECRET = "browser-tests-secret-Hq4Zr8Nw2Kc6"
ENV = {"COURSEKIT_SECRET": SECRET}
def _roster(repo) -> dict[str, dict]:
    result = run_coursekit(repo, "roster", env=ENV)
    assert result.returncode == 0, result.stderr
    return {row["seat"]: row for row in csv.DictReader(io.StringIO(result.stdout))}


def _put_notebook(url: str, token: str, name: str) -> None:
    """The notebook a student makes, put through the seat's own contents API (through the same front door)."""
    import urllib.request

    body = json.dumps({"type": "notebook", "content": CHECK_NOTEBOOK}).encode()
    request = urllib.request.Request(f"{url}api/contents/{name}", data=body, method="PUT",
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30, context=insecure_tls() if url.startswith("https") else None) as answer:
        assert answer.status in (200, 201)


def _deployed(fleet_factory, base_image, docker_client, access: str, slug: str = "", **docker):
    """A two-seat course on this Docker host with the given front door (and fleet.docker settings), built and
    deployed."""
    repo = fleet_factory(slug or f"browser-{access}", students=["ann", "ben"])
    edit_course(repo, lambda d: (
        d["fleet"]["docker"].update(access=access, **({"https_port": free_port(), "http_port": free_port(),
                                                        "gateway_base": ensure_rootfs(docker_client)}
                                                       if access == "gateway" else {"port_base": free_port()}), **docker),
        d["schedule"].update(awake=[]),
    ))
    assert build(repo, base_image).returncode == 0
    deployed = run_coursekit(repo, "deploy", env=ENV)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    return repo


@pytest.fixture(params=["ports", "gateway"])
def access(request):
    return request.param


@pytest.fixture
def course(fleet_factory, base_image, docker_client, access):
    yield _deployed(fleet_factory, base_image, docker_client, access)
    for container in docker_client.containers.list(all=True, filters={"label": f"org.coursekit.course=browser-{access}"}):
        container.remove(force=True)  # the gateway too


@pytest.fixture
def gateway_course(fleet_factory, base_image, docker_client):
    yield _deployed(fleet_factory, base_image, docker_client, "gateway")
    for container in docker_client.containers.list(all=True, filters={"label": "org.coursekit.course=browser-gateway"}):
        container.remove(force=True)


def test_a_student_opens_runs_saves_and_finds_the_work_archived(course, access, docker_client, tmp_path):
    started = time.monotonic()
    roster = _roster(course)
    for seat in ("ann", "ben"):
        _put_notebook(roster[seat]["url"], roster[seat]["credential"], f"{seat}-check.ipynb")
    for seat in ("ann", "ben"):
        with chromium(tmp_path / f"profile-{seat}", f"{access}-{seat}") as driver:
            driver.get(roster[seat]["link"])  # one step: the slip's link logs in and opens JupyterLab
            wait_for("JupyterLab", lambda: lab_shown(driver))
            driver.get(f"{roster[seat]['url']}lab/tree/{seat}-check.ipynb")
            run_first_cell_and_save(driver, CHECK_OUTPUT)
            wait_for("the saved notebook to hold the output",
                     lambda row=roster[seat], name=f"{seat}-check.ipynb": _saved_output(row, name))

    # Another seat's credential opens nothing: Jupyter's login page, not JupyterLab.
    with chromium(tmp_path / "profile-other", f"{access}-other") as driver:
        driver.get(f"{roster['ann']['url']}?token={roster['ben']['credential']}")
        wait_for("the login page", lambda: driver.find_elements(By.CSS_SELECTOR, "input[type=password], #password_input"))
        assert not lab_shown(driver)
        driver.get(f"{roster['ann']['url']}lab")
        time.sleep(2)
        assert not lab_shown(driver)

    torn = run_coursekit(course, "teardown", "--yes", "--archive-dir", str(tmp_path / "arch"), env=ENV)
    assert torn.returncode == 0, torn.stdout + torn.stderr
    for seat in ("ann", "ben"):
        saved = json.loads(archive_file(tmp_path / "arch" / f"{seat}.tar.gz", f"{seat}-check.ipynb"))
        assert any("answer 42" in "".join(o.get("text", "")) for o in saved["cells"][0]["outputs"])
    print(f"\nbrowser, access {access}: two seats opened, run, saved and archived in {time.monotonic() - started:.1f} s")


def _saved_output(row: dict, name: str) -> bool:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{row['url']}api/contents/{name}", headers={"Authorization": f"token {row['credential']}"})
    try:
        with urllib.request.urlopen(request, timeout=30, context=insecure_tls() if row["url"].startswith("https") else None) as answer:
            cells = json.loads(answer.read())["content"]["cells"]
    except urllib.error.HTTPError as exc:
        if exc.code == 400:  # "Unreadable Notebook": read while JupyterLab was still writing it; ask again
            return False
        raise
    return any("answer 42" in "".join(o.get("text", "")) for o in cells[0]["outputs"])


def test_behind_the_gateway_the_waiting_pages_turn_into_jupyterlab(gateway_course, docker_client, tmp_path):
    course = gateway_course
    roster = _roster(course)
    front = roster["ann"]["url"].removesuffix("ann/")
    ann = docker_client.containers.get("coursekit-browser-gateway.ann")
    with chromium(tmp_path / "profile", "gateway-pages") as driver:
        driver.get(front)
        assert "Use the link on your slip" in driver.page_source and "Intro to Data Science" in driver.title
        assert axe_violations(driver) == []

        ann.stop()
        driver.get(roster["ann"]["link"])
        wait_for("the starting page", lambda: "is starting" in driver.page_source)
        assert axe_violations(driver) == []
        ann.start()
        wait_for("JupyterLab, by itself", lambda: lab_shown(driver), timeout=120)

        assert run_coursekit(course, "pause", "--seat", "ben", env=ENV).returncode == 0
        driver.get(roster["ben"]["link"])
        wait_for("the paused page", lambda: "paused" in driver.page_source)
        assert "your files are kept" in driver.page_source and "It wakes" in driver.page_source
        assert axe_violations(driver) == []


def test_the_printed_roster_has_one_whole_slip_per_seat(course_repo, coursekit, tmp_path):
    """Nine seats print on ceil(9 / 4) = 3 pages; each slip has the course, the name, a link that logs in, its QR
    code and the credential in groups of four; the instructor's sheet has no credential."""
    from coursekit import roster
    from coursekit.config import load_course
    from coursekit.seats import SeatTokens
    from helpers import copy_course

    repo = copy_course(course_repo, tmp_path / "course")
    edit_course(repo, lambda d: d["seats"].update(students=[{"id": f"s{i}", "name": f"Student {i}"} for i in range(1, 8)],
                                                  spares=1))
    course = load_course(repo / "course.yaml")
    rows = roster.rows(course, SeatTokens(SECRET, course.course.slug),
                       {f"s{i}": f"https://class.example.org/s{i}/" for i in range(1, 8)})
    (tmp_path / "slips.html").write_text(roster.to_html(course, rows))
    sheet = run_coursekit(repo, "roster", "--format", "sheet", env=ENV)
    assert sheet.returncode == 0, sheet.stderr
    assert len(rows) == 9 and not any(r.credential in sheet.stdout for r in rows)
    with chromium(tmp_path / "profile", "roster") as driver:
        driver.get((tmp_path / "slips.html").as_uri())
        slips = driver.find_elements(By.CSS_SELECTOR, "section.slip")
        assert len(slips) == 9
        for slip, row in zip(slips, rows, strict=True):
            text = slip.text
            assert course.course.name in text and row.name in text
            assert roster.grouped(row.credential) in text
            if row.login_url:  # deployed seats: the link that logs in, and its QR code
                assert row.login_url in text and slip.find_elements(By.CSS_SELECTOR, ".qr svg")
        assert sum(1 for row in rows if row.login_url) == 7
        assert axe_violations(driver) == []
        pdf = base64.b64decode(driver.print_page())
        assert pdf_pages(pdf) == math.ceil(9 / 4), pdf_pages(pdf)
        driver.get("data:text/html;base64," + base64.b64encode(sheet.stdout.encode()).decode())
        assert "Student 7" in driver.page_source and axe_violations(driver) == []


# Run in a page of ann's seat (as a notebook's output or a file she serves would): try to read a file of ben's
# seat, which the same browser is logged into, at ben's own address and at ben's path on ann's origin.
READ_OTHER_SEAT = """
const [urls, done] = [arguments[0], arguments[arguments.length - 1]];
Promise.all(urls.map(u => fetch(u, {credentials: 'include'})
    .then(r => r.text().then(t => r.status + ' ' + t.slice(0, 400)))
    .catch(e => 'refused ' + e))).then(done);
"""
BEN_ONLY = "ben-only-7f3c9a"


@pytest.fixture(params=[False, True], ids=["shared-origin", "subdomains"])
def origins_course(request, fleet_factory, base_image, docker_client):
    subdomains = request.param
    slug = f"browser-origins-{'sub' if subdomains else 'shared'}"
    yield _deployed(fleet_factory, base_image, docker_client, "gateway", slug,
                    **({"public_host": "localhost", "subdomains": True} if subdomains else {})), subdomains, slug
    for container in docker_client.containers.list(all=True, filters={"label": f"org.coursekit.course={slug}"}):
        container.remove(force=True)


def test_a_page_in_one_seat_cannot_read_another_seat_in_the_same_browser(origins_course, docker_client, tmp_path):
    """An instructor logged into two seats in one browser: with subdomains each seat is its own origin, and a
    script in ann's seat reads nothing of ben's; on one shared origin it can (what the README warns about)."""
    course, subdomains, slug = origins_course
    roster = _roster(course)
    ben = docker_client.containers.get(f"coursekit-{slug}.ben")
    assert ben.exec_run(["sh", "-c", f'echo {BEN_ONLY} > "$HOME/secret.txt"']).exit_code == 0
    with chromium(tmp_path / "profile", f"origins-{slug}") as driver:
        for seat in ("ben", "ann"):  # logged into both; ann's JupyterLab stays open
            driver.get(roster[seat]["link"])
            wait_for(f"{seat}'s JupyterLab", lambda: lab_shown(driver))
        targets = [f"{roster['ben']['url']}api/contents/secret.txt", "/ben/api/contents/secret.txt",
                   f"{roster['ben']['url']}files/secret.txt"]
        answers = driver.execute_async_script(READ_OTHER_SEAT, targets)
        if subdomains:
            assert roster["ann"]["url"].startswith("https://ann.localhost:") and "/ann/" in driver.current_url
            assert not any(BEN_ONLY in answer for answer in answers), answers
            front = roster["ann"]["url"].replace("ann.localhost", "localhost").removesuffix("ann/")
            driver.get(f"{front}ben/lab")  # the front door sends a seat's old path to the seat's own origin
            assert driver.current_url.startswith(roster["ben"]["url"]), driver.current_url
        else:
            assert any(BEN_ONLY in answer for answer in answers), answers
        # Either way each seat's cookies are scoped to its own path: no other seat's path is ever sent them.
        assert {c["path"] for c in driver.get_cookies()} <= {"/ann/", "/ben/"}, driver.get_cookies()
