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
