"""Data archives unpack by construction (never through a link), never stall or crash a seat's start, and an
updated archive replaces only what it brought: a student's own files stay, at every level."""
from __future__ import annotations

import io
import lzma
import os
import struct
import tarfile
import time
import zipfile
import zlib

import pytest


@pytest.fixture
def data(coursekit, monkeypatch):
    from coursekit import data

    monkeypatch.setattr(data, "BACKOFF", 0.01)
    return data


def _tar(entries: list[tuple[str, bytes | str, str]], mode: str = "w") -> bytes:
    """A tar from (name, content or link target, kind) entries, in order, duplicates allowed."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode, format=tarfile.PAX_FORMAT) as tar:
        for name, payload, kind in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = payload
                tar.addfile(info)
    return buffer.getvalue()


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _fetch(data, data_server, tmp_path, name: str, payload: bytes, path: str = "set", more: list | None = None):
    url, sha = data_server.add(name, payload)
    manifest = [{"url": url, "sha256": sha, "path": path, "unpack": True}, *(more or [])]
    return data.fetch(manifest, tmp_path / "home" / "data")


def _everything(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# Links: the PATH_MAX chain (CVE-2025-4517's shape), the chain that escapes Pythons without tarfile's filter, and a
# link whose target passes through another link.
def _path_max_chain() -> list:
    steps = "abcdefghijklmnop"
    comp = "d" * 247
    entries, path = [], ""
    for step in steps:
        entries.append((os.path.join(path, comp), b"", "dir"))
        entries.append((os.path.join(path, step), comp, "symlink"))
        path = os.path.join(path, comp)
    link_path = os.path.join(*steps)
    entries.append((os.path.join(link_path, "l" * 254), "../" * len(steps), "symlink"))
    entries.append(("escape", os.path.join(link_path, "l" * 254, "../../../../../../../../../tmp"), "symlink"))
    entries.append(("escape/planted", b"owned", "file"))
    return entries


@pytest.mark.parametrize("entries", [
    _path_max_chain(),
    [("a", ".", "symlink"), ("a/b", "..", "symlink"), ("a/b/planted", b"owned", "file")],
    [("deep/er/l2", "../..", "symlink"), ("deep/er/l3", "l2/..", "symlink"), ("deep/er/l3/planted", b"owned", "file")],
    [("sub/up", "../..", "symlink")],
    [("sub/x", "a/../../..", "symlink")],
    [("link", "/tmp", "symlink"), ("link/planted", b"owned", "file")],
    [("dir", b"", "dir"), ("dir", "/tmp", "symlink"), ("dir/planted", b"owned", "file")],
], ids=["path-max-chain", "no-filter-chain", "through-a-link", "climbs", "dots-inside", "absolute", "dir-swapped"])
def test_no_archive_writes_outside_its_folder(data, data_server, tmp_path, entries):
    (tmp_path / "home" / "data").mkdir(parents=True)
    outside = sorted(os.listdir(tmp_path))
    (failure,) = _fetch(data, data_server, tmp_path, "evil.tar", _tar(entries))
    assert "refusing to unpack it" in failure, failure
    assert sorted(os.listdir(tmp_path)) == outside
    assert not os.path.lexists(tmp_path / "home" / "data" / "set")
    assert _everything(tmp_path / "home" / "data") == []
    assert not any(p.name == "planted" for p in tmp_path.rglob("planted"))


def test_links_inside_the_folder_are_unpacked_as_links(data, data_server, tmp_path):
    entries = [("a/b/file.csv", b"1,2\n", "file"), ("a/b/same", "file.csv", "symlink"), ("top", "a/b/file.csv", "symlink"),
               ("a/up", "../top", "symlink"), ("a/hard", "a/b/file.csv", "hardlink")]
    assert _fetch(data, data_server, tmp_path, "ok.tar", _tar(entries)) == []
    folder = tmp_path / "home" / "data" / "set"
    assert os.readlink(folder / "a/up") == "../top" and (folder / "a/up").read_bytes() == b"1,2\n"
    assert os.stat(folder / "a/hard").st_ino == os.stat(folder / "a/b/file.csv").st_ino


def _zip_with(flag_bits: int = 0, method: int | None = None, bad_crc: bool = False) -> bytes:
    raw = bytearray(_zip({"a.csv": b"x" * 1000}, zipfile.ZIP_STORED))
    if bad_crc:
        at = raw.index(b"x" * 1000)
        raw[at] = ord("y")
    for signature, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        at = raw.index(signature)
        if flag_bits:
            raw[at + flag_at:at + flag_at + 2] = struct.pack("<H", flag_bits)
        if method is not None:
            raw[at + method_at:at + method_at + 2] = struct.pack("<H", method)
    return bytes(raw)


def _truncated_targz() -> bytes:
    whole = _tar([("a.csv", os.urandom(50_000), "file")], "w:gz")
    return whole[: len(whole) // 2]


def _corrupt_xz() -> bytes:
    whole = bytearray(lzma.compress(_tar([("a.csv", b"y" * 50_000, "file")])))
    whole[len(whole) // 2] ^= 0xFF
    return bytes(whole)


@pytest.mark.parametrize("name,payload,why", [
    ("child.tar", _tar([("a", b"file", "file"), ("a/b", b"child", "file")]), "which is a file or a link, not a folder"),
    ("child.zip", _zip({"a": b"file", "a/b": b"child"}), "which is a file or a link, not a folder"),
    ("deep.tar", _tar([("/".join(["d"] * 2100) + "/f", b"x", "file")]), "folders deep"),
    ("truncated.tar.gz", _truncated_targz(), "damaged"),
    ("corrupt.tar.xz", _corrupt_xz(), "damaged"),
    ("crc.zip", _zip_with(bad_crc=True), "damaged"),
    ("method99.zip", _zip_with(method=99), "damaged"),
    ("encrypted.zip", _zip_with(flag_bits=1), "is encrypted"),
    ("twice.tar", _tar([("a", b"", "dir"), ("a", b"file", "file")]), "as a folder and as a file"),
])
def test_a_malformed_archive_is_one_clear_message_and_the_next_entry_still_loads(data, data_server, tmp_path, name,
                                                                                 payload, why):
    url, sha = data_server.add("after.csv", b"still here\n")
    (failure,) = _fetch(data, data_server, tmp_path, name, payload, more=[{"url": url, "sha256": sha, "path": "after.csv"}])
    assert failure.startswith("set: ") and why in failure, failure
    assert "Traceback" not in failure and len(failure) < 600
    assert (tmp_path / "home" / "data" / "after.csv").read_bytes() == b"still here\n"
    assert _everything(tmp_path / "home" / "data") == [".coursekit-verified", ".coursekit-verified/after.csv.json", "after.csv"]


def _overlapping_zip(records: int, member: int) -> bytes:
    """One stored member whose data every central-directory record points at (the overlapping-records bomb)."""
    payload = b"\0" * member
    crc = zlib.crc32(payload)
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, member, member, 1, 0) + b"a"
    body = local + payload
    central = b"".join(
        struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, member, member,
                    len(name := f"f{i}".encode()), 0, 0, 0, 0, 0, 0) + name
        for i in range(records))
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, records, records, len(central), len(body), 0)
    return body + central + end


def test_an_overlapping_zip_bomb_is_refused_at_once(data, data_server, tmp_path):
    bomb = _overlapping_zip(2000, 10 * 2**20)
    started = time.monotonic()
    (failure,) = _fetch(data, data_server, tmp_path, "bomb.zip", bomb)
    assert time.monotonic() - started < 5
    assert "overlapping records" in failure


def test_a_small_zip_that_unpacks_bigger_than_the_ratio_is_refused(data, data_server, tmp_path):
    (failure,) = _fetch(data, data_server, tmp_path, "ratio.zip", _zip({"zeros": b"\0" * (64 * 2**20)}))
    assert "looks like an archive bomb" in failure
    assert _everything(tmp_path / "home" / "data") == []


def test_an_archive_bigger_than_the_free_space_is_refused_before_unpacking(data, data_server, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_free_bytes", lambda path: 32 * 2**20)  # a 32 MiB home, as bounded homes have
    payload = _zip({f"part{i}": os.urandom(2**20) for i in range(24)}, zipfile.ZIP_STORED)
    (failure,) = _fetch(data, data_server, tmp_path, "big.zip", payload)
    assert "unpacks to 24.0 MiB and ~/data has 16.0 MiB free" in failure
    assert _everything(tmp_path / "home" / "data") == []


def test_unpacking_stops_at_its_time_bound(data, data_server, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "UNPACK_SECONDS", 0.0)
    (failure,) = _fetch(data, data_server, tmp_path, "slow.tar", _tar([("a.csv", b"1", "file")]))
    assert "longer than 0 s" in failure


# Updates --------------------------------------------------------------------------------------------------------

def test_two_updates_keep_every_file_the_student_made_at_every_level(data, data_server, tmp_path):
    home = tmp_path / "home" / "data"
    v1 = _tar([("README", b"v1", "file"), ("sub/data.csv", b"1", "file"), ("sub/deeper/old.csv", b"old", "file"),
               ("changed.csv", b"course", "file")])
    v2 = _tar([("README", b"v2", "file"), ("sub/data.csv", b"2", "file"), ("changed.csv", b"course 2", "file"),
               ("mine.ipynb", b"course's own mine.ipynb", "file")])
    v3 = _tar([("README", b"v3", "file"), ("sub/data.csv", b"3", "file"), ("new/x.csv", b"x", "file")])
    assert _fetch(data, data_server, tmp_path, "v1.tar", v1) == []
    student = {"student-analysis-day1.ipynb": b"day 1", "sub/notes.txt": b"n", "sub/deeper/mine.csv": b"m",
               ".hidden/cfg": b"h", "mine.ipynb": b"the student's"}
    for rel, content in student.items():
        (home / "set" / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / "set" / rel).write_bytes(content)
    (home / "set" / "changed.csv").write_bytes(b"edited by the student")
    assert _fetch(data, data_server, tmp_path, "v2.tar", v2) == []
    (home / "set" / "student-analysis-day2.ipynb").write_bytes(b"day 2")
    assert _fetch(data, data_server, tmp_path, "v3.tar", v3) == []
    folder = home / "set"
    for rel, content in {**student, "student-analysis-day2.ipynb": b"day 2"}.items():
        if rel == "mine.ipynb":
            continue
        assert (folder / rel).read_bytes() == content, rel
    assert (folder / "mine.ipynb.mine").read_bytes() == b"the student's"  # the course's file took its place in v2
    assert not (folder / "mine.ipynb").exists()  # v3 no longer brings it, and nobody changed it
    assert (folder / "changed.csv.mine").read_bytes() == b"edited by the student"
    assert not (folder / "changed.csv").exists()
    assert not (folder / "sub/deeper/old.csv").exists()  # v1's file, untouched, gone with v2
    assert (folder / "README").read_bytes() == b"v3" and (folder / "sub/data.csv").read_bytes() == b"3"
    assert (folder / "new/x.csv").read_bytes() == b"x"
    assert not [p for p in home.iterdir() if p.name.startswith(".set")]  # no work folders left behind
