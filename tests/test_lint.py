"""The code stays as ruff (configured in pyproject.toml) wants it: lint clean and formatted."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUFF = pathlib.Path(sys.executable).parent / "ruff"


def ruff(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RUFF), *arguments], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_ruff_check_passes():
    result = ruff("check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_check_passes():
    result = ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr
