"""The template's own code, the bundled coursekit and the tests pass ruff (config in pyproject.toml)."""
import subprocess
import sys

from conftest import TEMPLATE


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=TEMPLATE, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
