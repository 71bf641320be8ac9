"""`make monitor` reports an alert as an alert, not as a make error, while the CLI keeps its exit codes
for cron and CI; a failure to monitor still fails make."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from monitoring.__main__ import ERROR_EXIT_CODE
from monitoring.alerts import ALERT_EXIT_CODE
from tests.paths import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def make(target: str, exit_code: int) -> subprocess.CompletedProcess:
    """Run a target's recipe with a stand-in for Python that exits with `exit_code` (the venv counts as
    built: `-o`, so make never installs anything here)."""
    return subprocess.run(["make", "-s", "-o", ".venv/.installed", target, f"PY=sh -c 'exit {exit_code}' sh"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_an_alert_is_reported_and_make_succeeds():
    result = make("monitor", ALERT_EXIT_CODE)
    assert result.returncode == 0, result.stderr
    assert "ALERT" in result.stdout and "Error" not in result.stderr


def test_could_not_monitor_still_fails_make():
    assert make("monitor", ERROR_EXIT_CODE).returncode != 0
    assert make("monitor", 0).returncode == 0
