"""The data fetcher that runs in the image at start: retries, atomic writes, checksums, fast restarts."""
from __future__ import annotations

import pytest


@pytest.fixture
def data(coursekit, monkeypatch):
    from coursekit import data

    monkeypatch.setattr(data, "BACKOFF", 0.01)
    return data


def test_fetches_and_verifies(data, data_server, tmp_path):
    url, sha = data_server.add("scan.csv", b"a,b\n1,2\n")
    manifest = [{"url": url, "sha256": sha, "path": "mri/scan.csv"}]
    assert data.fetch(manifest, tmp_path / "home") == []
    assert (tmp_path / "home" / "mri" / "scan.csv").read_bytes() == b"a,b\n1,2\n"
    assert data.verify(manifest, tmp_path / "home") == []


def test_retries_transient_failures(data, data_server, tmp_path, capsys):
    url, sha = data_server.add("scan.csv", b"payload")
    data_server.failures["/scan.csv"] = 2
    assert data.fetch([{"url": url, "sha256": sha, "path": "scan.csv"}], tmp_path) == []
    assert data_server.requests == ["/scan.csv"] * 3
    assert "scan.csv: HTTP 503 try again; retrying in 0.01s (1/5)" in capsys.readouterr().err


def test_gives_up_after_the_retries(data, data_server, tmp_path):
    url, sha = data_server.add("scan.csv", b"payload")
    data_server.failures["/scan.csv"] = 99
    (failure,) = data.fetch([{"url": url, "sha256": sha, "path": "scan.csv"}], tmp_path / "home")
    assert failure == f"scan.csv: {url}: HTTP 503 try again (gave up after 5 attempts)"
    assert list((tmp_path / "home").iterdir()) == []  # no partial file anywhere


def test_a_missing_file_is_not_retried(data, data_server, tmp_path):
    (failure,) = data.fetch([{"url": f"{data_server.url}/nope.csv", "sha256": "0" * 64, "path": "nope.csv"}], tmp_path)
    assert failure == f"nope.csv: {data_server.url}/nope.csv: HTTP 404 File not found"
    assert data_server.requests == ["/nope.csv"]


def test_checksum_mismatch_leaves_nothing_under_the_final_name(data, data_server, tmp_path):
    url, _ = data_server.add("scan.csv", b"tampered")
    home = tmp_path / "home"
    (failure,) = data.fetch([{"url": url, "sha256": "a" * 64, "path": "scan.csv"}], home)
    assert failure.startswith(f"scan.csv: sha256 mismatch: expected {'a' * 64}, got ")
    assert not (home / "scan.csv").exists()
    assert not [p for p in home.rglob("*") if p.is_file()]


def test_restart_skips_verified_files_without_fetching(data, data_server, tmp_path, capsys):
    url, sha = data_server.add("scan.csv", b"x" * 10_000)
    manifest = [{"url": url, "sha256": sha, "path": "scan.csv"}]
    data.fetch(manifest, tmp_path)
    data.fetch(manifest, tmp_path)
    assert data_server.requests == ["/scan.csv"]
    assert "scan.csv: present, verified" in capsys.readouterr().err


def test_a_corrupted_file_is_fetched_again(data, data_server, tmp_path):
    url, sha = data_server.add("scan.csv", b"good content")
    manifest = [{"url": url, "sha256": sha, "path": "scan.csv"}]
    data.fetch(manifest, tmp_path)
    (tmp_path / "scan.csv").write_bytes(b"bad content!")  # same size, new mtime: the stamp no longer matches
    assert data.verify(manifest, tmp_path) == ["scan.csv: missing or sha256 mismatch"]
    assert data.fetch(manifest, tmp_path) == []
    assert (tmp_path / "scan.csv").read_bytes() == b"good content"
    assert len(data_server.requests) == 2


def test_command_line_exit_codes(data, data_server, tmp_path):
    import json

    url, sha = data_server.add("scan.csv", b"payload")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps([{"url": url, "sha256": sha, "path": "scan.csv"}]))
    assert data.main(["verify", str(manifest), str(tmp_path / "home")]) == 1
    assert data.main(["fetch", str(manifest), str(tmp_path / "home")]) == 0
    assert data.main(["verify", str(manifest), str(tmp_path / "home")]) == 0
    assert data.main(["bogus"]) == 2


# Archives: unpacked into a folder of ~/data, safely, once ----------------------------------------------

def _tar(entries: list[tuple[str, bytes | str, str]], mode: str = "w:gz") -> bytes:
    """A tar from (name, content or link target, kind) entries."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, payload, kind in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = payload
                tar.addfile(info)
    return buffer.getvalue()


def _zip(entries: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_a_tar_and_a_zip_are_unpacked_into_their_folders(data, data_server, tmp_path):
    tar_url, tar_sha = data_server.add("dipy.tar.gz", _tar([("dipy/stanford_hardi/HARDI150.bval", b"0 1000\n", "file"),
                                                             ("dipy/link", "stanford_hardi/HARDI150.bval", "symlink")]))
    zip_url, zip_sha = data_server.add("mne.zip", _zip({"MNE-sample-data/raw.fif": b"\x00fif", "README": b"mne"}))
    manifest = [{"url": tar_url, "sha256": tar_sha, "path": "libs/dipy-home", "unpack": True},
                {"url": zip_url, "sha256": zip_sha, "path": "mne", "unpack": True}]
    home = tmp_path / "data"
    assert data.fetch(manifest, home) == []
    assert (home / "libs/dipy-home/dipy/stanford_hardi/HARDI150.bval").read_bytes() == b"0 1000\n"
    assert (home / "libs/dipy-home/dipy/link").is_symlink()
    assert (home / "mne/MNE-sample-data/raw.fif").read_bytes() == b"\x00fif"
    assert data.verify(manifest, home) == []
    # A restart finds it unpacked and leaves what the student changed in it.
    (home / "mne/README").write_bytes(b"my notes")
    requests = len(data_server.requests)
    assert data.fetch(manifest, home) == []
    assert len(data_server.requests) == requests and (home / "mne/README").read_bytes() == b"my notes"
    assert not [p for p in home.iterdir() if p.name.startswith(".") and p.name != ".coursekit-verified"]


@pytest.mark.parametrize("entries,why", [
    ([("../escape.txt", b"x", "file")], "points outside its folder"),
    ([("/etc/cron.d/evil", b"x", "file")], "points outside its folder"),
    ([("ok/link", "../../../etc/passwd", "symlink")], "outside its folder"),
    ([("ok/link", "/etc/passwd", "symlink")], "outside its folder"),
    ([("a.txt", b"x", "file"), ("hard", "../a.txt", "hardlink")], "points outside its folder"),
])
def test_an_archive_that_reaches_outside_its_folder_is_refused(data, data_server, tmp_path, entries, why):
    url, sha = data_server.add("evil.tar", _tar(entries, "w"))
    (failure,) = data.fetch([{"url": url, "sha256": sha, "path": "set", "unpack": True}], tmp_path / "data")
    assert why in failure
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "data" / "set").exists()
    assert [p.name for p in (tmp_path / "data").iterdir()] == []  # nothing half-unpacked is left


def test_a_zip_that_climbs_out_is_refused(data, data_server, tmp_path):
    url, sha = data_server.add("evil.zip", _zip({"../../x.txt": b"x"}))
    (failure,) = data.fetch([{"url": url, "sha256": sha, "path": "set", "unpack": True}], tmp_path / "data")
    assert "points outside its folder" in failure


def test_a_students_own_folder_of_that_name_is_never_overwritten(data, data_server, tmp_path):
    url, sha = data_server.add("set.zip", _zip({"a.csv": b"1"}))
    (tmp_path / "data" / "set").mkdir(parents=True)
    (tmp_path / "data" / "set" / "mine.txt").write_text("student's")
    (failure,) = data.fetch([{"url": url, "sha256": sha, "path": "set", "unpack": True}], tmp_path / "data")
    assert "~/data/set exists and did not come from the course" in failure
    assert (tmp_path / "data" / "set" / "mine.txt").read_text() == "student's"


def test_a_file_that_is_no_archive_says_so(data, data_server, tmp_path):
    url, sha = data_server.add("plain.csv", b"a,b\n")
    (failure,) = data.fetch([{"url": url, "sha256": sha, "path": "set", "unpack": True}], tmp_path / "data")
    assert "not a zip or tar archive" in failure and "unpack: false" in failure


def test_image_env_goes_into_the_dockerfile_quoted_after_from(coursekit, course_repo, tmp_path):
    import dataclasses

    from coursekit.config import load_course
    from coursekit.image import course_dockerfile

    course = load_course(course_repo / "course.yaml")
    env = (("DIPY_HOME", "/home/jovyan/data/dipy"), ("ODD", 'a "quoted" $HOME \\ value'))
    text = course_dockerfile(dataclasses.replace(course, image=dataclasses.replace(course.image, env=env)))
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("FROM "))
    assert lines[at + 2] == 'ENV DIPY_HOME="/home/jovyan/data/dipy" ODD="a \\"quoted\\" \\$HOME \\\\ value"'
    assert course_dockerfile(course) == (course_repo / "Dockerfile").read_text()
