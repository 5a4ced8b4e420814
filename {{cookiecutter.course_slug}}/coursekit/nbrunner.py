"""Run one notebook inside the course image, as a seat would, and print one JSON line about it.

Runs in the image with the image's own nbclient (`coursekit test` starts it through start.sh, so the course
data is fetched first). The kernel is the one the notebook's kernelspec names; cells tagged skip-execution
are not run and cells tagged raises-exception may fail, as nbclient does; cells are counted as Jupyter
numbers them (code cells only).

    python3 nbrunner.py NOTEBOOK TIMEOUT ALLOW_ERRORS(0|1)
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time

MARK = "COURSEKIT-RESULT "
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TRACEBACK_TAIL = 6


def _tags(cell) -> set:
    return set(cell.get("metadata", {}).get("tags", []))


def _error_output(cell) -> dict | None:
    return next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)


def _failure(cell, number: int, error: dict | None, fallback: str) -> dict:
    """Where and why a cell failed: its number, the line that raised, the exception and the traceback's end."""
    lines = ANSI.sub("", "\n".join((error or {}).get("traceback", []))).splitlines()
    # IPython marks the failing line "----> 3     raise ...": keep the code, not the arrow and line number.
    pointed = [re.sub(r"^\d+\s+", "", line.split("---->", 1)[1].strip()) for line in lines if "---->" in line]
    source = [line for line in cell.get("source", "").splitlines() if line.strip()]
    failing = pointed[-1] if pointed else (source[-1].strip() if source else "")
    what = f"{error['ename']}: {error['evalue']}" if error else fallback
    return {"cell": number, "line": failing[:300], "error": what[:500], "traceback": [line[:300] for line in lines if line.strip()][-TRACEBACK_TAIL:]}


def run(source: str, timeout: int, allow_errors: bool) -> dict:
    """Execute a copy of source (its folder copied too, for relative paths); returns what happened."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    work = tempfile.mkdtemp(prefix="coursekit-test-")
    shutil.copytree(os.path.dirname(source), work, dirs_exist_ok=True)
    nb = nbformat.read(os.path.join(work, os.path.basename(source)), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    spec = nb.metadata.get("kernelspec") or {}
    kernel = spec.get("name") or "python3"
    result = {"kernel": kernel, "code_cells": len(code), "skipped": sum("skip-execution" in _tags(c) for c in code)}
    available = sorted(KernelSpecManager().find_kernel_specs())
    if kernel not in available:
        shown = f" ({spec['display_name']})" if spec.get("display_name") else ""
        return {**result, "ok": False, "ran": 0,
                "error": f"the notebook asks for kernel {kernel!r}{shown}, which the image does not have "
                         f"(it has: {', '.join(available) or 'none'}); install it, or skip the notebook in course.yaml"}
    current = {"cell": None}
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel, allow_errors=allow_errors,
                            resources={"metadata": {"path": work}},
                            on_cell_start=lambda cell, cell_index: current.update(cell=cell))
    started = time.monotonic()
    failure = None
    try:
        client.execute()
    except CellTimeoutError:
        failure = "timed out after %ds" % timeout
    except CellExecutionError as exc:
        failure = f"{exc.ename}: {exc.evalue}"
    except DeadKernelError as exc:
        failure = f"the kernel died ({exc}); a cell may have used more memory than the seat has"
    result["seconds"] = round(time.monotonic() - started, 3)
    errored = [c for c in code if _error_output(c)]
    result["expected_errors"] = sum("raises-exception" in _tags(c) for c in errored)
    result["allowed_errors"] = len(errored) - result["expected_errors"] if allow_errors else 0
    last = current["cell"]
    reached = code.index(last) + 1 if last in code else 0
    result["ran"] = sum(1 for c in code[:reached] if "skip-execution" not in _tags(c)) - (1 if failure else 0)
    result["ok"] = failure is None
    if failure:
        result.update(_failure(last, reached, _error_output(last) if last is not None else None, failure))
        if failure.startswith(("timed out", "the kernel died")):
            result["error"] = failure
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    print(MARK + json.dumps(run(args[0], int(args[1]), args[2] == "1")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
