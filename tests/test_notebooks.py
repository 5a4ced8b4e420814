"""`coursekit test` runs notebooks as course.yaml says and as a seat would: kernels from the kernelspec,
the seat's memory limit, cell tags, skips with reasons, allowed errors, timeouts, in parallel; and the
data a course really has (archives unpacked, library data homes set through image.env)."""
from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from conftest import run_coursekit
from helpers import build, commit, copy_course, edit_course

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("course_containers")]


def _cell(source: str, tags: tuple[str, ...] = ()) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": {"tags": list(tags)}, "outputs": [], "source": source}


def _markdown(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _notebook(cells: list[dict], kernel: str = "python3", language: str = "python") -> str:
    return json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 4,
                       "metadata": {"kernelspec": {"name": kernel, "display_name": kernel, "language": language}}})


NOTEBOOKS = {
    "deep_learning/train.ipynb": _notebook([_cell("import torch")]),
    "tagged.ipynb": _notebook([
        _cell("x = 1"), _cell("download_everything()", ("skip-execution",)), _cell("1 / 0", ("raises-exception",)),
        _cell("assert x == 1"),
    ]),
    "errors.ipynb": _notebook([_cell("y = 2"), _cell("raise RuntimeError('a known problem')"), _cell("assert y == 2")]),
    "r_basics.ipynb": _notebook([_cell("x <- c(1, 2, 3)\nstopifnot(mean(x) == 2)\nprint(sessionInfo()$R.version$language)")],
                                kernel="ir", language="R"),
    "julia.ipynb": _notebook([_cell("println(1)")], kernel="julia-1.10", language="julia"),
    "broken.ipynb": _notebook([_markdown("# Setup"), _cell("import math"), _markdown("## Then"),
                               _cell("value = math.sqrt(16)\nif value != 5:\n    raise ValueError(f'expected 5, got {value}')")]),
    "hungry.ipynb": _notebook([_cell("block = bytearray(900 * 2**20)\nblock[::4096] = b'x' * len(block[::4096])")]),
    "slow.ipynb": _notebook([_cell("import time\ntime.sleep(60)")]),
    "library_data.ipynb": _notebook([_cell(
        "import os\nhome = os.environ['DIPY_HOME']\n"
        "assert open(os.path.join(home, 'stanford_hardi', 'HARDI150.bval')).read() == '0 1000\\n'\n"
        "assert os.environ['MNE_DATA'] == '/home/jovyan/data/mne'"
    )]),
}


@pytest.fixture
def real_course(course_repo, tmp_path) -> Path:
    """A course as instructors have them: skipped, erroring, R, missing-kernel, hungry and slow notebooks,
    an archive of library data unpacked at start and found through image.env."""
    repo = copy_course(course_repo, tmp_path / "course")
    for rel, text in NOTEBOOKS.items():
        (repo / "notebooks" / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / "notebooks" / rel).write_text(text)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("stanford_hardi/HARDI150.bval", "0 1000\n")
    (repo / "data" / "dipy.zip").write_bytes(archive.getvalue())
    import hashlib

    def change(data: dict) -> None:
        data["course"]["slug"] = "real-course"
        data["image"]["env"] = {"DIPY_HOME": "/home/jovyan/data/dipy", "MNE_DATA": "/home/jovyan/data/mne"}
        data["data"].append({"url": "data/dipy.zip", "sha256": hashlib.sha256(archive.getvalue()).hexdigest(),
                             "path": "dipy", "unpack": True})
        data["fleet"]["docker"]["memory"] = "512m"
        data["test"] = {"timeout": 120, "notebooks": {
            "deep_learning/*.ipynb": {"skip": "needs a GPU"},
            "errors.ipynb": {"allow_errors": True},
            "slow.ipynb": {"timeout": 3},
        }}
    edit_course(repo, change)
    commit(repo, "a real course")
    return repo


def _rows(stdout: str) -> dict[str, str]:
    """notebook path → its report (first line and the indented lines under it)."""
    rows: dict[str, str] = {}
    current = None
    for line in stdout.splitlines():
        if found := re.match(r"(pass|FAIL|skip)  notebook (\S+?)( \[|:)", line):
            current = found[2]
            rows[current] = line
        elif line.startswith("        ") and current:
            rows[current] += "\n" + line.strip()
        else:
            current = None
    return rows


def test_a_real_course_tests_exactly_as_its_course_yaml_says(real_course, base_image):
    assert run_coursekit(real_course, "validate").returncode == 0
    built = build(real_course, base_image)
    assert built.returncode == 0, built.stderr
    tested = run_coursekit(real_course, "test")
    rows = _rows(tested.stdout)
    assert tested.returncode == 1
    failed = {"notebook julia.ipynb", "notebook broken.ipynb", "notebook hungry.ipynb", "notebook slow.ipynb"}
    error = next(line for line in tested.stderr.splitlines() if line.startswith("error: "))
    assert error.startswith("error: 4 checks failed: ")
    assert set(error.split(": ", 2)[2].split(" (details")[0].split(", ")) == failed

    assert rows["deep_learning/train.ipynb"].startswith("skip  notebook deep_learning/train.ipynb: skipped: needs a GPU")
    assert "pass" in rows["tagged.ipynb"]
    assert "3 code cells ran, 1 skipped by tag, 1 expected error (raises-exception) (python3 kernel)" in rows["tagged.ipynb"]
    assert "3 code cells ran, 1 error allowed (python3 kernel)" in rows["errors.ipynb"]
    assert "pass" in rows["r_basics.ipynb"] and "1 code cell ran (ir kernel)" in rows["r_basics.ipynb"]
    assert "pass" in rows["library_data.ipynb"]
    assert "pass" in rows["01-welcome.ipynb"] and "3 code cells ran" in rows["01-welcome.ipynb"]

    assert "the notebook asks for kernel 'julia-1.10' (julia-1.10), which the image does not have (it has: ir, python3)" \
        in rows["julia.ipynb"]
    broken = rows["broken.ipynb"]
    assert "code cell 2: ValueError: expected 5, got 4.0" in broken
    assert "at: raise ValueError(f'expected 5, got {value}')" in broken
    assert "| ValueError: expected 5, got 4.0" in broken
    assert "memory" in rows["hungry.ipynb"] and "FAIL" in rows["hungry.ipynb"]
    assert "timed out after 3s" in rows["slow.ipynb"]
    timing = next(line for line in tested.stdout.splitlines() if "notebook timing" in line)
    assert f"{len(NOTEBOOKS) + 1} notebooks in " in timing and "one after another they took" in timing


def test_a_course_without_data_runs_its_notebooks(course_repo, tmp_path, base_image):
    repo = copy_course(course_repo, tmp_path / "course")
    edit_course(repo, lambda d: (d["course"].update(slug="no-data-course"), d.update(data=[])))
    (repo / "notebooks" / "01-welcome.ipynb").unlink()  # it reads the sample data
    (repo / "notebooks" / "plain.ipynb").write_text(_notebook([_cell("assert sum(range(4)) == 6")]))
    commit(repo, "no data")
    built = build(repo, base_image)
    assert built.returncode == 0, built.stderr
    tested = run_coursekit(repo, "test")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "pass  notebook plain.ipynb" in tested.stdout and "1 code cell ran" in tested.stdout

