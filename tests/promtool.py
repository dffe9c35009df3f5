"""Prometheus's own checker (`promtool`), found on PATH; tests skip without it unless CI requires it.

`scripts/ensure-promtool` (run by `make install`) installs it from Debian's `prometheus`
package. With `IMAGE_SYNC_REQUIRE_PROMTOOL=1` (set by `.ci/run`) a missing promtool fails the
tests instead of skipping them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REQUIRE_ENV = "IMAGE_SYNC_REQUIRE_PROMTOOL"


def promtool() -> str:
    """The promtool binary, or skip (fail when required)."""
    found = shutil.which("promtool")
    if found is None:
        message = "promtool not found: run scripts/ensure-promtool (Debian package prometheus)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def run(*args: str, stdin: str | None = None, cwd: Path | None = None) -> str:
    """Run `promtool ARGS`; fail the test with its output unless it exits 0. Returns stdout."""
    result = subprocess.run(
        [promtool(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )
    assert result.returncode == 0, (
        f"promtool {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )
    return result.stdout + result.stderr


def check_metrics(exposition: str) -> None:
    """`promtool check metrics`: the text format parses and follows the naming conventions."""
    output = run("check", "metrics", stdin=exposition)
    assert output.strip() == "", f"promtool check metrics found problems:\n{output}"
