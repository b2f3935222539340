"""Lint is part of the test command: `ruff check` over the whole tree (its rules in pyproject.toml) must be clean,
so unsorted imports and names used before they are bound (the `prev_end` of chunking.py) fail the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None and os.environ.get("CI"):
        pytest.fail("ruff is not installed: CI must lint (make setup installs the dev dependencies)")
    if ruff is None:
        pytest.skip("ruff is not installed (it is a dev dependency: make setup installs it)")
    done = subprocess.run([ruff, "check", "--output-format", "concise", "."], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
