"""A git history of notebooks/ for the image, so each seat can merge course updates with nbgitpuller.

The image carries a bare repository whose main branch has one commit per course commit that changed
notebooks/ (first-parent history, same authors and dates, so the same commit ids every build), plus one
for uncommitted changes. A seat's clone of it shares that history with every later image, and
nbgitpuller merges the new commits into the student's copy.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from coursekit.errors import CoursekitError

FOLDER = "notebooks"
WORKING_TREE_DATE = "1700000000 +0000"  # fixed, so the same uncommitted content gives the same commit id
_FIELDS = "%H%x00%an%x00%ae%x00%ad%x00%cn%x00%ce%x00%cd%x00%s"


def _git(*args: str, cwd: Path, env: dict | None = None, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, input=stdin, timeout=120,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", **(env or {})},
    )
    if result.returncode != 0:
        command = " ".join(a for a in args if not a.startswith("-"))[:60]
        raise CoursekitError(f"`git {command}` failed while preparing the notebook history: {result.stderr.strip()}")
    return result.stdout.strip()


def _course_commits(root: Path) -> list[list[str]]:
    """First-parent commits that touched notebooks/, oldest first (empty outside git)."""
    inside = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=root, capture_output=True, text=True)
    if inside.returncode != 0:
        return []
    log = _git("log", "--first-parent", "--reverse", "--date=raw", f"--format={_FIELDS}", "HEAD", "--", FOLDER, cwd=root)
    return [line.split("\x00") for line in log.splitlines() if line]


def _commit(work: Path, tree: str, parent: str | None, message: str, who: dict) -> str:
    args = ["commit-tree", tree, *(["-p", parent] if parent else [])]
    return _git(*args, cwd=work, env=who, stdin=message + "\n")


def build_repo(root: Path, dest: Path) -> str:
    """Write a bare repository of notebooks/ history to dest; returns the head commit id."""
    root = root.resolve()
    work = Path(tempfile.mkdtemp(prefix="coursekit-history-"))
    try:
        _git("init", "-q", "--bare", cwd=work)
        commits = _course_commits(root)
        if commits:
            objects = Path(root, _git("rev-parse", "--git-common-dir", cwd=root), "objects").resolve()
            (work / "objects" / "info" / "alternates").write_text(f"{objects}\n")
        head, head_tree = None, None
        for sha, an, ae, ad, cn, ce, cd, subject in commits:
            tree = subprocess.run(["git", "rev-parse", "-q", "--verify", f"{sha}:{FOLDER}"], cwd=root, capture_output=True, text=True)
            if tree.returncode != 0:
                continue  # notebooks/ was deleted in this commit
            who = {"GIT_AUTHOR_NAME": an, "GIT_AUTHOR_EMAIL": ae, "GIT_AUTHOR_DATE": ad,
                   "GIT_COMMITTER_NAME": cn, "GIT_COMMITTER_EMAIL": ce, "GIT_COMMITTER_DATE": cd}
            head_tree = tree.stdout.strip()
            head = _commit(work, head_tree, head, subject, who)
        # The working tree's notebooks/, as a tree object in the throwaway repository.
        index = {"GIT_INDEX_FILE": str(work / "worktree-index"), "GIT_DIR": str(work)}
        exclude = ":(exclude,glob)**/.ipynb_checkpoints/**"
        _git("-c", "core.bare=false", "--work-tree", str(root / FOLDER), "add", "-A", "--", ".", exclude, cwd=root / FOLDER, env=index)
        tree_now = _git("write-tree", cwd=work, env=index)
        if tree_now != head_tree:
            who = {f"GIT_{role}_{key}": value for role in ("AUTHOR", "COMMITTER")
                   for key, value in (("NAME", "coursekit"), ("EMAIL", "coursekit@localhost"), ("DATE", WORKING_TREE_DATE))}
            head = _commit(work, tree_now, head, "Notebooks not yet committed", who)
        _git("update-ref", "refs/heads/main", head, cwd=work)
        _git("symbolic-ref", "HEAD", "refs/heads/main", cwd=work)
        shutil.rmtree(dest, ignore_errors=True)
        # A real clone copies only what main reaches: notebook trees, not the whole course history.
        _git("clone", "-q", "--bare", "--no-local", "--single-branch", "--branch", "main", f"file://{work}", str(dest), cwd=work)
        return head
    finally:
        shutil.rmtree(work, ignore_errors=True)
