"""Which skips are allowed: a test may skip only for a program the machine lacks.

Any other skip (a first-party module that does not import, a static check that finds
nothing to check) would hide a regression, so it is a failure wherever skips are strict:
under CI (the `CI` variable every CI service sets) or with IMAGE_SYNC_STRICT_SKIPS=1.
Optional programs skip through `skip_without` / `require_program`, whose reason is marked;
setting IMAGE_SYNC_STRICT_SKIPS=all makes even those fail, for a machine that has them all.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator
from typing import Any, NoReturn

import pytest

OPTIONAL = "optional program missing: "
STRICT_ENV = "IMAGE_SYNC_STRICT_SKIPS"


def skip_without(program: str, how: str) -> NoReturn:
    """Skip because `program` (kubectl, promtool, a control plane, ...) is not available."""
    pytest.skip(f"{OPTIONAL}{program}: {how}")


def require_program(name: str, how: str) -> str:
    """The path of `name`, or an allowed skip."""
    found = shutil.which(name)
    if found is None:
        skip_without(name, how)
    return found


def strictness() -> str:
    """ "" (skips allowed), "unexpected" (only optional programs may skip) or "all"."""
    value = os.environ.get(STRICT_ENV, "").strip().lower()
    if value == "all":
        return "all"
    if value in ("1", "true", "yes") or (value == "" and os.environ.get("CI")):
        return "unexpected"
    return ""


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    mode = strictness()
    if not report.skipped or not mode or hasattr(report, "wasxfail"):
        return
    reason = _reason(report)
    if mode == "unexpected" and OPTIONAL in reason:
        return
    report.outcome = "failed"
    report.longrepr = f"skipped where skips are strict ({STRICT_ENV}/CI): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    """The same rule for a whole module skipped while it is collected."""
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    mode = strictness()
    if not report.skipped or not mode:
        return
    reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if mode == "unexpected" and OPTIONAL in reason:
        return
    report.outcome = "failed"
    report.longrepr = f"skipped where skips are strict ({STRICT_ENV}/CI): {reason}"
