"""The code passes the project's ruff rules (pyproject.toml, [tool.ruff])."""

import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.no_ray


def test_ruff_passes():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
