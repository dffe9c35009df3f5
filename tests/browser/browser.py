"""Headless Chromium for the page tests, and what a page weighs in it.

The browser is Debian's `chromium` (installed by `scripts/ensure-chromium`, run by
`make install`), driven by Playwright, which never downloads a browser of its own here:
`executable_path` points at the system one. Without it the browser tests skip, unless
`IMAGE_SYNC_REQUIRE_BROWSER=1` (set by `.ci/run`) makes them fail.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

REQUIRE_ENV = "IMAGE_SYNC_REQUIRE_BROWSER"
CHROMIUM = "/usr/bin/chromium"
# Headless, no sandbox (tests run as root), and nothing that reaches out to the network:
# without the background-networking flags Chromium keeps dialling Google's hosts.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WIDTH, HEIGHT = 1360, 900


def _missing(message: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(message)
    pytest.skip(message)


def chromium() -> str:
    """The system Chromium and Playwright to drive it, or skip (fail when required)."""
    found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if found is None:
        _missing("chromium not found: run scripts/ensure-chromium (Debian package chromium)")
    if importlib.util.find_spec("playwright") is None:
        _missing("playwright is not installed: make install")
    assert found is not None
    return found


@contextmanager
def browser(**options: Any) -> Iterator[Any]:
    """A Playwright BrowserContext of a fresh headless Chromium with its own profile folder."""
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory(prefix="image-sync-chromium-") as profile,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=list(FLAGS),
            viewport={"width": WIDTH, "height": HEIGHT},
            **options,
        )
        try:
            yield context
        finally:
            context.close()


def page_weight(page: Any) -> dict[str, float]:
    """What the page cost: bytes transferred, DOM elements, milliseconds to the load event."""
    timing = page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")
    return {
        "bytes": float(timing["decodedBodySize"]),
        "elements": float(page.locator("*").count()),
        "loadMs": float(timing["loadEventEnd"]),
    }
