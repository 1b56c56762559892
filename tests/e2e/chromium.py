"""The browser the browser tests drive: Debian's chromium through Playwright (never a downloaded
browser), and what to do when it is missing.

On a developer's machine a missing chromium or playwright skips the browser tests. Under CI (the
environment variable CI set to true or 1, as .ci/run and hosted CI runners do) it fails them: CI
installs both, so a missing browser is a broken CI, not a reason to go green without the tests.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("PEZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_browser():
    """playwright.sync_api when chromium and playwright are installed; else the calling test module
    is skipped, or failed under CI. Call it at a browser test module's top."""
    missing = [] if Path(CHROMIUM).exists() or shutil.which("chromium") else [f"chromium ({CHROMIUM})"]
    try:
        from playwright import sync_api
    except ImportError:
        missing.append("playwright")
    if not missing:
        return sync_api
    why = f"{' and '.join(missing)} not installed"
    if under_ci():
        pytest.fail(
            f"{why}: CI must run the browser tests (.ci/run installs chromium; pip the dev requirements)", False
        )
    pytest.skip(why, allow_module_level=True)
