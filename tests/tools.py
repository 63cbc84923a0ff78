"""Command-line tools some tests run (promtool, amtool, prometheus, hadolint)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def tool(name: str) -> str:
    """The tool's path. Missing, it fails the test in CI (``.ci/run`` installs it) and skips it on a
    developer machine, with the install command either way."""
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        message = f"{name} is not installed (Debian: apt-get install prometheus prometheus-alertmanager)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(*command: str | Path, cwd: Path | None = None) -> str:
    """Run a tool; its output on success, an assertion error with the output on failure."""
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(map(str, command))} exited {result.returncode}:\n{output}"
    return output
